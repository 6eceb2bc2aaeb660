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
	const char *source_rawlog_dir;
	/* COMPRESS=DEFLATE (RFC 4978) when the source offers it */
	bool source_compress;

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
};

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

/* Parse a size ("10M", "1G", "512k", "300") */
int migrate_settings_parse_size(const char *str, uoff_t *size_r);
/* Parse an absolute date (YYYY-MM-DD) or an age ("90d", "12w", "6m", "2y")
   relative to now. */
int migrate_settings_parse_date(const char *str, time_t now, time_t *time_r);

#endif
