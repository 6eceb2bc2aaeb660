/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "file-lock.h"
#include "migrate-conn-slots.h"

#include <ctype.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

struct migrate_conn_slot {
	struct file_lock *lock;
};

void migrate_conn_slots_prepare(const char *dir)
{
	mode_t old_mask;

	if (geteuid() != 0)
		return;
	old_mask = umask(0);
	/* sticky and world-writable: runs of different mail uids share it */
	if (mkdir(dir, 01777) < 0 && errno != EEXIST)
		i_warning("migrate: mkdir(%s) failed: %m", dir);
	umask(old_mask);
}

/* host names become file names: keep only what can't escape the dir */
static const char *slot_path(const char *dir, const char *host,
			     unsigned int port, unsigned int i)
{
	string_t *path = t_str_new(128);
	const char *p;

	str_printfa(path, "%s/", dir);
	for (p = host; *p != '\0' && str_len(path) < 200; p++) {
		if (i_isalnum(*p) || *p == '-' || *p == '.' || *p == ':')
			str_append_c(path, *p);
		else
			str_append_c(path, '_');
	}
	str_printfa(path, "_%u.%u", port, i);
	return str_c(path);
}

int migrate_conn_slot_try(const char *dir, const char *host,
			  unsigned int port, unsigned int max,
			  struct migrate_conn_slot **slot_r,
			  const char **error_r)
{
	struct file_lock_settings lock_set = {
		.lock_method = FILE_LOCK_METHOD_FCNTL,
		.close_on_free = TRUE,
	};
	struct file_lock *lock;
	const char *path, *error;
	unsigned int i;
	int fd, ret;

	for (i = 0; i < max; i++) {
		path = slot_path(dir, host, port, i);
		fd = open(path, O_RDWR | O_CREAT, 0666);
		if (fd == -1) {
			*error_r = t_strdup_printf("open(%s) failed: %m "
				"(create %s with mode 1777, or set "
				"migrate_connection_slots_dir)", path, dir);
			return -1;
		}
		/* other mail uids must be able to lock it too */
		(void)fchmod(fd, 0666);
		ret = file_try_lock(fd, path, F_WRLCK, &lock_set, &lock,
				    &error);
		if (ret > 0) {
			*slot_r = i_new(struct migrate_conn_slot, 1);
			(*slot_r)->lock = lock;
			return 1;
		}
		i_close_fd(&fd);
		if (ret < 0) {
			*error_r = error;
			return -1;
		}
	}
	return 0;
}

void migrate_conn_slot_release(struct migrate_conn_slot **_slot)
{
	struct migrate_conn_slot *slot = *_slot;

	if (slot == NULL)
		return;
	*_slot = NULL;
	file_lock_free(&slot->lock);
	i_free(slot);
}
