/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-settings.h"

#include <stddef.h>

/* The table of settings alone: Dovecot 2.4's config process loads it (via
   migrate-settings-decl.c) without lib-storage. */

#define FIELD(name) offsetof(struct migrate_settings, name)
#define NO_FIELD MIGRATE_SETTING_NO_FIELD

/* Every migrate_* setting, once. A name not in here is reported as
   unknown; reading one that isn't in here is a programming error. */
const struct migrate_setting_def migrate_setting_defs[] = {
	{ "migrate_source_host", MIGRATE_SETTING_STR, "", FIELD(source_host) },
	{ "migrate_source_port", MIGRATE_SETTING_UINT, "", NO_FIELD },
	{ "migrate_source_ssl", MIGRATE_SETTING_ENUM, "imaps:starttls:no",
	  NO_FIELD },
	{ "migrate_source_ssl_verify", MIGRATE_SETTING_BOOL, "yes",
	  FIELD(source_ssl_verify) },
	{ "migrate_source_ssl_ca_file", MIGRATE_SETTING_STR, "",
	  FIELD(source_ssl_ca_file) },
	{ "migrate_source_user", MIGRATE_SETTING_STR, "", FIELD(source_user) },
	{ "migrate_source_password", MIGRATE_SETTING_STR, "", NO_FIELD },
	{ "migrate_source_password_file", MIGRATE_SETTING_STR, "", NO_FIELD },
	{ "migrate_source_oauth2_token", MIGRATE_SETTING_STR, "", NO_FIELD },
	{ "migrate_source_oauth2_token_command", MIGRATE_SETTING_STR, "",
	  FIELD(source_oauth2_token_command) },
	{ "migrate_source_master_user", MIGRATE_SETTING_STR, "",
	  FIELD(source_master_user) },
	{ "migrate_source_sasl_mechanisms", MIGRATE_SETTING_STR, "",
	  FIELD(source_sasl_mechanisms) },
	{ "migrate_source_timeout", MIGRATE_SETTING_SECS, "120",
	  FIELD(source_timeout_secs) },
	{ "migrate_source_greeting_timeout", MIGRATE_SETTING_SECS, "30",
	  FIELD(source_greeting_timeout_secs) },
	{ "migrate_source_rawlog_dir", MIGRATE_SETTING_STR, "",
	  FIELD(source_rawlog_dir) },
	{ "migrate_source_compress", MIGRATE_SETTING_BOOL, "no",
	  FIELD(source_compress) },
	{ "migrate_pop3_uidls", MIGRATE_SETTING_BOOL, "no",
	  FIELD(pop3_uidls) },
	{ "migrate_pop3_port", MIGRATE_SETTING_UINT, "", NO_FIELD },
	{ "migrate_source_prefix", MIGRATE_SETTING_STR, "",
	  FIELD(source_prefix) },

	{ "migrate_state_dict", MIGRATE_SETTING_STR, "", NO_FIELD },
	{ "migrate_lock_timeout", MIGRATE_SETTING_SECS, "600",
	  FIELD(lock_timeout_secs) },

	{ "migrate_automap", MIGRATE_SETTING_BOOL, "yes", FIELD(automap) },
	{ "migrate_folder_map", MIGRATE_SETTING_STR, "", FIELD(folder_map) },
	{ "migrate_include", MIGRATE_SETTING_STR, "", FIELD(include) },
	{ "migrate_exclude", MIGRATE_SETTING_STR, "", FIELD(exclude) },
	{ "migrate_subscriptions", MIGRATE_SETTING_BOOL, "yes",
	  FIELD(subscriptions) },
	{ "migrate_preserve_uids", MIGRATE_SETTING_BOOL, "yes",
	  FIELD(preserve_uids) },
	{ "migrate_dedupe_across_folders", MIGRATE_SETTING_BOOL, "no",
	  FIELD(dedupe_across_folders) },
	/* set but empty: skip nothing (empty isn't the default here) */
	{ "migrate_gmail_skip", MIGRATE_SETTING_STR, "\\Junk \\Trash",
	  NO_FIELD },

	{ "migrate_batch_messages", MIGRATE_SETTING_UINT, "500",
	  FIELD(batch_messages) },
	{ "migrate_batch_bytes", MIGRATE_SETTING_SIZE, "64M",
	  FIELD(batch_bytes) },
	{ "migrate_fsync", MIGRATE_SETTING_ENUM, "batch:mail", NO_FIELD },
	{ "migrate_pipeline_depth", MIGRATE_SETTING_UINT, "200",
	  FIELD(pipeline_depth) },
	{ "migrate_parallel_folders", MIGRATE_SETTING_UINT, "4",
	  FIELD(parallel_folders) },
	{ "migrate_worker_messages", MIGRATE_SETTING_UINT, "100",
	  FIELD(worker_messages) },
	{ "migrate_max_messages_per_second", MIGRATE_SETTING_UINT, "0",
	  FIELD(max_messages_per_second) },
	{ "migrate_max_bytes_per_second", MIGRATE_SETTING_SIZE, "0",
	  FIELD(max_bytes_per_second) },
	{ "migrate_max_connections", MIGRATE_SETTING_UINT, "0",
	  FIELD(max_connections) },
	{ "migrate_connection_slots_dir", MIGRATE_SETTING_STR, "", NO_FIELD },

	{ "migrate_reconnect_max", MIGRATE_SETTING_UINT, "10",
	  FIELD(reconnect_max) },
	{ "migrate_backoff_max", MIGRATE_SETTING_SECS, "300",
	  FIELD(backoff_max_secs) },
	{ "migrate_throttle_max_wait", MIGRATE_SETTING_SECS, "3600",
	  FIELD(throttle_max_wait_secs) },
	{ "migrate_errors_max", MIGRATE_SETTING_UINT, "50",
	  FIELD(errors_max) },
	{ "migrate_item_retries", MIGRATE_SETTING_UINT, "3",
	  FIELD(item_retries) },
	{ "migrate_max_message_size", MIGRATE_SETTING_SIZE, "2G",
	  FIELD(max_message_size) },

	{ "migrate_sieve", MIGRATE_SETTING_BOOL, "no", FIELD(sieve) },
	{ "migrate_sieve_port", MIGRATE_SETTING_UINT, "4190", NO_FIELD },

	{ "migrate_max_size", MIGRATE_SETTING_SIZE, "", FIELD(max_size) },
	{ "migrate_min_size", MIGRATE_SETTING_SIZE, "", FIELD(min_size) },
	{ "migrate_since", MIGRATE_SETTING_DATE, "", FIELD(since) },
	{ "migrate_before", MIGRATE_SETTING_DATE, "", FIELD(before) },
};
const unsigned int migrate_setting_defs_count =
	N_ELEMENTS(migrate_setting_defs);

const struct migrate_setting_def *migrate_setting_find(const char *name)
{
	for (unsigned int i = 0; i < N_ELEMENTS(migrate_setting_defs); i++) {
		if (strcmp(migrate_setting_defs[i].name, name) == 0)
			return &migrate_setting_defs[i];
	}
	return NULL;
}
