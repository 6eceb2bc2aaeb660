/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#ifndef _GNU_SOURCE
#  define _GNU_SOURCE /* syncfs() */
#endif
#include "lib.h"
#include "migrate-syncfs.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

struct migrate_syncfs {
	char *path;
	int fd;
	bool thread_started;
	pthread_t thread;
	/* written by the thread: errno of syncfs(), then done */
	int error;
	int done;
};

static int migrate_syncfs_open(const char *path, const char **error_r)
{
	int fd;

	fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd == -1)
		*error_r = t_strdup_printf("open(%s) failed: %m", path);
	return fd;
}

int migrate_syncfs(const char *path, const char **error_r)
{
#ifdef MIGRATE_HAVE_SYNCFS
	int fd, ret = 0;

	if ((fd = migrate_syncfs_open(path, error_r)) == -1)
		return -1;
	if (syncfs(fd) < 0) {
		*error_r = t_strdup_printf("syncfs(%s) failed: %m", path);
		ret = -1;
	}
	i_close_fd(&fd);
	return ret;
#else
	(void)path; (void)error_r;
	return 0;
#endif
}

#ifdef MIGRATE_HAVE_SYNCFS
static void *migrate_syncfs_thread(void *context)
{
	struct migrate_syncfs *sync = context;

	sync->error = syncfs(sync->fd) < 0 ? errno : 0;
	__atomic_store_n(&sync->done, 1, __ATOMIC_RELEASE);
	return NULL;
}
#endif

static void migrate_syncfs_free(struct migrate_syncfs *sync)
{
	if (sync->fd != -1)
		i_close_fd(&sync->fd);
	i_free(sync->path);
	i_free(sync);
}

struct migrate_syncfs *
migrate_syncfs_start(const char *path, const char **error_r)
{
	struct migrate_syncfs *sync;

	sync = i_new(struct migrate_syncfs, 1);
	sync->path = i_strdup(path);
	sync->fd = -1;
#ifdef MIGRATE_HAVE_SYNCFS
	sigset_t all, old;
	int ret;

	if ((sync->fd = migrate_syncfs_open(path, error_r)) == -1) {
		migrate_syncfs_free(sync);
		return NULL;
	}
	/* the thread takes no signal: Dovecot's handlers stay with the
	   process's own thread */
	sigfillset(&all);
	if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0)
		i_unreached();
	ret = pthread_create(&sync->thread, NULL, migrate_syncfs_thread, sync);
	if (pthread_sigmask(SIG_SETMASK, &old, NULL) != 0)
		i_unreached();
	if (ret != 0) {
		*error_r = t_strdup_printf("pthread_create() failed: %s",
					   strerror(ret));
		migrate_syncfs_free(sync);
		return NULL;
	}
	sync->thread_started = TRUE;
#else
	(void)error_r;
	sync->done = 1;
#endif
	return sync;
}

bool migrate_syncfs_is_done(const struct migrate_syncfs *sync)
{
	return __atomic_load_n(&sync->done, __ATOMIC_ACQUIRE) != 0;
}

int migrate_syncfs_finish(struct migrate_syncfs **_sync, const char **error_r)
{
	struct migrate_syncfs *sync = *_sync;
	int ret = 0;

	*_sync = NULL;
	if (sync->thread_started && pthread_join(sync->thread, NULL) != 0)
		i_unreached();
	if (sync->error != 0) {
		*error_r = t_strdup_printf("syncfs(%s) failed: %s",
					   sync->path, strerror(sync->error));
		ret = -1;
	}
	migrate_syncfs_free(sync);
	return ret;
}
