#ifndef MIGRATE_MANAGESIEVE_H
#define MIGRATE_MANAGESIEVE_H

#include "migrate-error.h"

/* A ManageSieve client (RFC 5804) for reading a user's scripts from the
   source: capabilities, STARTTLS as migrate_source_ssl says, AUTHENTICATE
   with the IMAP side's credentials and SASL mechanism, LISTSCRIPTS,
   GETSCRIPT, LOGOUT. Built on migrate-line-conn. */

struct mail_user;
struct event;
struct migrate_settings;
struct migrate_managesieve;

struct migrate_managesieve_script {
	const char *name;
	bool active;
};
ARRAY_DEFINE_TYPE(migrate_managesieve_script,
		  struct migrate_managesieve_script);

/* Connect to migrate_source_host:migrate_sieve_port and log in. -1 with
   an error naming the settings to check. */
int migrate_managesieve_connect(const struct migrate_settings *set,
				struct mail_user *user, struct event *event,
				struct migrate_managesieve **ms_r,
				enum migrate_error *error_code_r,
				const char **error_r);
/* LOGOUT (when still connected) and free */
void migrate_managesieve_close(struct migrate_managesieve **ms);

/* The server's "IMPLEMENTATION" capability, or "" */
const char *migrate_managesieve_implementation(struct migrate_managesieve *ms);

/* LISTSCRIPTS into scripts (names allocated from pool) */
int migrate_managesieve_list(struct migrate_managesieve *ms, pool_t pool,
			     ARRAY_TYPE(migrate_managesieve_script) *scripts,
			     enum migrate_error *error_code_r,
			     const char **error_r);
/* GETSCRIPT name into content */
int migrate_managesieve_get(struct migrate_managesieve *ms, const char *name,
			    string_t *content,
			    enum migrate_error *error_code_r,
			    const char **error_r);

#endif
