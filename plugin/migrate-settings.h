#ifndef MIGRATE_SETTINGS_H
#define MIGRATE_SETTINGS_H

#include "net.h"

struct mail_user;
struct mail_storage_service_user;

enum migrate_ssl_mode {
	MIGRATE_SSL_IMAPS = 0,
	MIGRATE_SSL_STARTTLS,
	MIGRATE_SSL_NONE,
};

/* All migrate_* settings of one user, validated. Read once per run from
   plugin {}, userdb extra fields and doveadm -o (highest priority). This
   file is the only one that knows where settings come from, so a port to
   Dovecot 2.4's typed settings touches only it. */
struct migrate_settings {
	const char *source_host;
	in_port_t source_port;
	enum migrate_ssl_mode source_ssl;
	bool source_ssl_verify;
	const char *source_ssl_ca_file;
	const char *source_user;
	/* secret: never logged, never printed */
	const char *source_password;
	const char *source_master_user;
	const char *source_sasl_mechanisms;
	const char *source_oauth2_token_command;
	unsigned int source_timeout_secs;
	/* TCP connect, TLS handshake and the greeting */
	unsigned int source_greeting_timeout_secs;
	const char *source_rawlog_dir;
	/* COMPRESS=DEFLATE (RFC 4978) when the source offers it */
	bool source_compress;
	/* carry the source's POP3 UIDLs (migrate-pop3.h) from its POP3
	   service on source_host:pop3_port, same TLS and login */
	bool pop3_uidls;
	in_port_t pop3_port;
	/* the source's personal namespace prefix, overriding NAMESPACE and
	   the guess; "none" = no prefix; NULL = unset */
	const char *source_prefix;

	const char *state_dict;

	bool preserve_uids;
	bool automap;
	bool subscriptions;
	bool dedupe_across_folders;
	const char *folder_map;
	const char *include;
	const char *exclude;
	const char *gmail_skip;

	unsigned int batch_messages;
	uoff_t batch_bytes;
	unsigned int pipeline_depth;
	/* folders imported at once, each by a worker process with its own
	   source connection (migrate-workers.h) */
	unsigned int parallel_folders;
	/* a worker per this many messages to import (or per
	   MIGRATE_WORKER_BYTES or MIGRATE_WORKER_FOLDERS), up to
	   parallel_folders; 0 = always parallel_folders */
	unsigned int worker_messages;
	uoff_t max_message_size;

	unsigned int reconnect_max;
	unsigned int backoff_max_secs;
	unsigned int throttle_max_wait_secs;
	unsigned int errors_max;
	unsigned int item_retries;

	/* pre-stage filters; 0 = unset */
	uoff_t max_size, min_size;
	time_t since, before;

	unsigned int max_messages_per_second;
	uoff_t max_bytes_per_second;
	unsigned int lock_timeout_secs;
	/* 0 = no cap on connections to the source host (all runs here) */
	unsigned int max_connections;
	const char *connection_slots_dir;

	/* copy the user's Sieve scripts over ManageSieve (migrate-sieve.h) */
	bool sieve;
	in_port_t sieve_port;
};

enum migrate_setting_type {
	MIGRATE_SETTING_STR,
	MIGRATE_SETTING_BOOL,	/* yes/no */
	MIGRATE_SETTING_UINT,
	/* an interval: plain seconds ("120") or Dovecot's "2 mins" */
	MIGRATE_SETTING_SECS,
	MIGRATE_SETTING_SIZE,	/* "10M", "1G", plain bytes */
	/* YYYY-MM-DD or an age: 90d, 12w, 6m (= 6mo, 6 months), 2y */
	MIGRATE_SETTING_DATE,
	/* the values, ':'-separated, the first is the default */
	MIGRATE_SETTING_ENUM,
};

#define MIGRATE_SETTING_NO_FIELD ((size_t)-1)

/* One known setting. The table migrate_setting_defs[] lists every
   migrate_* name once: it is what "unknown setting" checks against, and
   it reads every setting that has a field (offset in struct
   migrate_settings, of the C type its type implies: const char *, bool,
   unsigned int, uoff_t, time_t). NO_FIELD settings are read by code of
   their own (passwords, port, TLS mode, defaults computed at run time). */
struct migrate_setting_def {
	const char *name;
	enum migrate_setting_type type;
	/* as it would be written in the config; "" = unset (0, NULL, no) */
	const char *default_value;
	size_t offset;
};
extern const struct migrate_setting_def migrate_setting_defs[];
extern const unsigned int migrate_setting_defs_count;

/* NULL if name isn't a known setting */
const struct migrate_setting_def *migrate_setting_find(const char *name);

/* Unknown migrate_* names (and near misses of known names) among the
   user's plugin settings, which on Dovecot 2.3 hold plugin {}, userdb
   extra fields and doveadm -o plugin/... alike. Each is named with the
   nearest known name. fatal: -1 with *error_r; else a warning is logged
   and 0 returned. */
int migrate_settings_check_names(struct mail_user *user, bool fatal,
				 const char **error_r);
/* "name (did you mean known_name?)" or just "name" for an unknown
   setting of ours; NULL for a known one or a name not ours */
const char *migrate_settings_unknown_name_hint(const char *name);
/* Edit distance of two names (setting or folder names): insertions,
   deletions, substitutions and swaps of neighbours, byte by byte */
unsigned int migrate_name_distance(const char *a, const char *b);
const char *migrate_settings_nearest_name(const char *name,
					  unsigned int *distance_r);

/* Returns 0 on success, -1 with an error naming the setting. Doesn't
   touch the network. */
int migrate_settings_read(struct mail_user *user, pool_t pool,
			  struct migrate_settings **set_r,
			  const char **error_r);

/* Only what reading the state needs (status, report, reset): works even
   when the source settings are missing. */
int migrate_settings_read_state(struct mail_user *user, pool_t pool,
				struct migrate_settings **set_r,
				const char **error_r);

/* Called before the user's storage is created (doveadm's prerun). With
   migrate_fsync=batch (the default) the session's mail_fsync becomes
   "never" and *batch_fsync_r is TRUE: the importer then makes each
   committed batch durable with one syncfs() before the state records it,
   instead of one fsync() per message. migrate_fsync=mail, mail_fsync=never
   or a system without syncfs() leave mail_fsync alone. */
int migrate_settings_prerun(struct mail_storage_service_user *service_user,
			    bool *batch_fsync_r, const char **error_r);

/* The default migrate_connection_slots_dir under Dovecot's base_dir */
const char *migrate_settings_default_slots_dir(const char *base_dir);

/* Parse an interval: plain seconds or "5 mins" */
int migrate_settings_parse_secs(const char *str, unsigned int *secs_r,
				const char **error_r);
/* Parse a size ("10M", "1G", "512k", "300") */
int migrate_settings_parse_size(const char *str, uoff_t *size_r);
/* Parse an absolute date (YYYY-MM-DD) or an age relative to now: a number
   and a unit d/day(s), w/week(s), m/mo/month(s) (30 days), y/year(s)
   (365 days): "90d", "12w", "6m", "6months", "2 years". */
int migrate_settings_parse_date(const char *str, time_t now, time_t *time_r);

#endif
