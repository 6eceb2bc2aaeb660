/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "test-common.h"
#include "migrate-syncfs.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char test_dir[] = "/tmp/test-migrate-syncfs.XXXXXX";

static void test_write_file(const char *name)
{
	const char *path = t_strconcat(test_dir, "/", name, NULL);
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	test_assert(fd != -1);
	test_assert(write(fd, "x\n", 2) == 2);
	i_close_fd(&fd);
}

static void test_syncfs_foreground(void)
{
	const char *error = NULL;

	test_begin("syncfs in the foreground");
	test_write_file("fg");
	test_assert(migrate_syncfs(test_dir, &error) == 0);
	test_assert(migrate_syncfs("/nonexistent-dir/x", &error) == -1);
	test_assert(error != NULL && strstr(error, "/nonexistent-dir/x") != NULL);
	test_end();
}

static void test_syncfs_background(void)
{
	struct migrate_syncfs *sync;
	sigset_t before, after;
	const char *error = NULL;
	unsigned int i;

	test_begin("syncfs in the background");
	test_write_file("bg");
	test_assert(sigprocmask(SIG_SETMASK, NULL, &before) == 0);
	sync = migrate_syncfs_start(test_dir, &error);
	test_assert(sync != NULL);
	/* the process's own thread keeps its signal mask */
	test_assert(sigprocmask(SIG_SETMASK, NULL, &after) == 0);
	test_assert(sigismember(&before, SIGTERM) == sigismember(&after, SIGTERM));
	test_assert(sigismember(&before, SIGINT) == sigismember(&after, SIGINT));
	test_assert(sigismember(&before, SIGCHLD) == sigismember(&after, SIGCHLD));
	if (sync != NULL) {
		/* bounded: 10 s at most */
		for (i = 0; i < 1000 && !migrate_syncfs_is_done(sync); i++)
			usleep(10000);
		test_assert(migrate_syncfs_is_done(sync));
		test_assert(migrate_syncfs_finish(&sync, &error) == 0);
		test_assert(sync == NULL);
	}
	/* finish waits when it isn't done yet */
	sync = migrate_syncfs_start(test_dir, &error);
	test_assert(sync != NULL);
	if (sync != NULL)
		test_assert(migrate_syncfs_finish(&sync, &error) == 0);
	test_end();
}

static void test_syncfs_background_error(void)
{
	const char *error = NULL;

	test_begin("syncfs in the background: a path that isn't there");
	test_assert(migrate_syncfs_start("/nonexistent-dir/y", &error) == NULL);
	test_assert(error != NULL && strstr(error, "/nonexistent-dir/y") != NULL);
	test_end();
}

static void test_syncfs_cleanup(void)
{
	(void)unlink(t_strconcat(test_dir, "/fg", NULL));
	(void)unlink(t_strconcat(test_dir, "/bg", NULL));
	(void)rmdir(test_dir);
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_syncfs_foreground,
		test_syncfs_background,
		test_syncfs_background_error,
		test_syncfs_cleanup,
		NULL
	};

	if (mkdtemp(test_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	return test_run(test_functions);
}
