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

#include "migrate-error.h"

struct migrate_folder;
struct migrate_importer_ctx;
struct migrate_live_counters;
struct migrate_pacing;

/* What the run's process knows of its workers while they run */
struct migrate_workers_progress {
	unsigned int workers;
	/* folders handed to the workers, and those done */
	unsigned int folders, folders_done;
	/* messages and bytes the workers saved so far */
	uint32_t saved;
	uint64_t bytes;
};

/* What the run's process does while its workers run. context is
   migrate_workers_params.context. */
struct migrate_workers_hooks {
	/* The workers are about to start: close the run's own source
	   connection and give back its connection slot (at most N
	   connections are open at once, and this one would only idle) */
	void (*start)(void *context);
	/* Once a second: keep the run lock alive, save the run's progress
	   (the workers' counts, for status from another process) */
	void (*tick)(void *context,
		     const struct migrate_workers_progress *progress);
	/* The progress line */
	void (*progress)(void *context,
			 const struct migrate_workers_progress *progress);
};

struct migrate_workers_params {
	/* the run's importer context: the template each worker builds its
	   own from (its settings, user, state, connection, pacing and
	   counters are the worker's own; the Gmail label lookup and the
	   save_begin hook go on to the template's, in the worker's copy of
	   the run's process) */
	const struct migrate_importer_ctx *importer;
	/* the run's pacing: each worker's starts from it, with its share of
	   the rate caps */
	const struct migrate_pacing *pacing;
	/* how often hooks->progress() draws the progress line */
	unsigned int progress_interval_msecs;
	const struct migrate_workers_hooks *hooks;
	void *context;
};

/* Import these folders in up to migrate_parallel_folders workers (a run
   that imports calls it; plan and verify don't). Uses none (*used_r =
   FALSE) for fewer than two destination folders, with
   migrate_parallel_folders <= 1, and when migrate_dedupe_across_folders
   needs every identity in one process (the run leaves Gmail's All Mail
   out of folders). The folders' results are filled in (strings from the
   template's pool) as if this process had imported them; folders the
   workers left undone keep result == NULL. The workers' counters are
   added to *counters. Returns -1 if a worker hit an error that stops
   the run (code_r, error_r), else 0. */
int migrate_workers_run(const struct migrate_workers_params *params,
			struct migrate_folder *const *folders,
			unsigned int count, bool *used_r,
			struct migrate_live_counters *counters,
			enum migrate_error *code_r, const char **error_r);

#endif
