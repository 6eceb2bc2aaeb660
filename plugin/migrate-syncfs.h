#ifndef MIGRATE_SYNCFS_H
#define MIGRATE_SYNCFS_H

/* Durability barriers: syncfs() of the file system holding a path, in the
   foreground or on a thread of its own while the process goes on (the
   next batch is fetched meanwhile). The thread makes that one system call
   and touches nothing of Dovecot's. Where the system has no syncfs() both
   are no-ops: migrate_fsync=batch is refused there. */

struct migrate_syncfs;

/* Flush the file system holding path (a directory) now. Returns 0, -1
   with error_r. */
int migrate_syncfs(const char *path, const char **error_r);

/* Start flushing it in the background. Returns NULL with error_r when
   that can't start (the caller flushes in the foreground). */
struct migrate_syncfs *
migrate_syncfs_start(const char *path, const char **error_r);
/* Whether the flush started is over (never waits) */
bool migrate_syncfs_is_done(const struct migrate_syncfs *sync);
/* Wait for the flush to end and free it. Returns 0 when everything
   written before migrate_syncfs_start() is durable, -1 with error_r. */
int migrate_syncfs_finish(struct migrate_syncfs **sync, const char **error_r);

#endif
