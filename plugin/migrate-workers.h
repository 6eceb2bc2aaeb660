#ifndef MIGRATE_WORKERS_H
#define MIGRATE_WORKERS_H

/* migrate_parallel_folders: a run imports up to N folders at once, each in
   a worker process of its own with its own source connection, mail user
   and state dict connection. The run's process lists, maps, holds the run
   lock and collects the results; it closes its own source connection
   first, so at most N connections are open at once.

   Workers take folders from a queue in shared memory, largest first. A
   folder a worker didn't finish (it couldn't connect, died, was killed)
   is imported again by the run's process afterwards: the destination is
   ground truth, so that costs nothing twice. */

struct migrate_run;
struct migrate_folder;
struct migrate_workers;

/* Import these folders in up to migrate_parallel_folders workers. Uses
   none (*used_r = FALSE) in a run that isn't an import, for fewer than two
   destination folders, with migrate_parallel_folders <= 1, and when a
   Gmail All Mail (\All) folder or migrate_dedupe_across_folders needs
   every identity in one process. The folders' results are filled in as
   if this process had imported them; folders the workers left undone
   keep result == NULL. Returns -1 if a worker hit an error that stops the
   run (run->error_code, run->error), else 0. */
int migrate_workers_run(struct migrate_run *run,
			struct migrate_folder *const *folders,
			unsigned int count, bool *used_r);

/* Progress line of the run's process while workers run */
void migrate_workers_progress(struct migrate_run *run);
/* Parent: messages and bytes the workers saved so far */
void migrate_workers_done(struct migrate_run *run, uint32_t *messages_r,
			  uint64_t *bytes_r);

#endif
