#ifndef MIGRATE_CONN_SLOTS_H
#define MIGRATE_CONN_SLOTS_H

/* migrate_max_connections: at most N connections from this server to one
   source host:port, across every run (users, doveadm -A workers, doveadm
   server requests). Slot i is an fcntl lock on <dir>/<host>_<port>.<i>;
   the kernel drops it when the holder exits, however it exits. */

struct migrate_conn_slot;

/* Create the slot directory (mode 1777) when the process may: called once
   by doveadm as root, before it drops privileges to a mail user. */
void migrate_conn_slots_prepare(const char *dir);

/* Try to take a free slot: 1 with *slot_r set, 0 when all max are taken,
   -1 with an error. */
int migrate_conn_slot_try(const char *dir, const char *host,
			  unsigned int port, unsigned int max,
			  struct migrate_conn_slot **slot_r,
			  const char **error_r);
void migrate_conn_slot_release(struct migrate_conn_slot **slot);

#endif
