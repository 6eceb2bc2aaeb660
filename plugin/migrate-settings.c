/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "istream.h"
#include "ioloop.h"
#include "settings-parser.h"
#include "mail-user.h"
#include "mail-storage-settings.h"
#include "mail-storage-service.h"
#include "safe-memset.h"
#include "migrate-settings.h"

#include <stdio.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>

#define MIGRATE_PASSWORD_ENV "MIGRATE_SOURCE_PASSWORD"
#define MIGRATE_PASSWORD_FILE_MAX 4096

static const char *
migrate_getenv(struct mail_user *user, const char *name)
{
	const char *value = mail_user_plugin_getenv(user, name);

	return value == NULL || *value == '\0' ? NULL : value;
}

static int
migrate_get_bool(struct mail_user *user, const char *name, bool def,
		 bool *value_r, const char **error_r)
{
	const char *value = migrate_getenv(user, name);

	if (value == NULL) {
		*value_r = def;
		return 0;
	}
	if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "y") == 0 ||
	    strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0)
		*value_r = TRUE;
	else if (strcasecmp(value, "no") == 0 || strcasecmp(value, "n") == 0 ||
		 strcmp(value, "0") == 0 || strcasecmp(value, "false") == 0)
		*value_r = FALSE;
	else {
		*error_r = t_strdup_printf(
			"Invalid setting %s=%s: expected yes or no", name, value);
		return -1;
	}
	return 0;
}

static int
migrate_get_uint(struct mail_user *user, const char *name, unsigned int def,
		 unsigned int *value_r, const char **error_r)
{
	const char *value = migrate_getenv(user, name);

	if (value == NULL) {
		*value_r = def;
		return 0;
	}
	if (str_to_uint(value, value_r) < 0) {
		*error_r = t_strdup_printf(
			"Invalid setting %s=%s: expected a number", name, value);
		return -1;
	}
	return 0;
}

/* A time interval: plain seconds or Dovecot's "2 mins" style */
static int
migrate_get_secs(struct mail_user *user, const char *name, unsigned int def,
		 unsigned int *value_r, const char **error_r)
{
	const char *value = migrate_getenv(user, name), *error;

	if (value == NULL) {
		*value_r = def;
		return 0;
	}
	if (settings_get_time(value, value_r, &error) < 0) {
		*error_r = t_strdup_printf("Invalid setting %s=%s: %s",
					   name, value, error);
		return -1;
	}
	return 0;
}

int migrate_settings_parse_size(const char *str, uoff_t *size_r)
{
	const char *error;

	return settings_get_size(str, size_r, &error);
}

static int
migrate_get_size(struct mail_user *user, const char *name, uoff_t def,
		 uoff_t *value_r, const char **error_r)
{
	const char *value = migrate_getenv(user, name), *error;

	if (value == NULL) {
		*value_r = def;
		return 0;
	}
	if (settings_get_size(value, value_r, &error) < 0) {
		*error_r = t_strdup_printf("Invalid setting %s=%s: %s",
					   name, value, error);
		return -1;
	}
	return 0;
}

int migrate_settings_parse_date(const char *str, time_t now, time_t *time_r)
{
	unsigned int num, year, mon, mday;
	const char *end;
	struct tm tm;

	if (str_parse_uint(str, &num, &end) == 0 && end[0] != '\0' &&
	    end[1] == '\0') {
		unsigned int days;

		switch (end[0]) {
		case 'd': days = 1; break;
		case 'w': days = 7; break;
		case 'm': days = 30; break;
		case 'y': days = 365; break;
		default: return -1;
		}
		*time_r = now - (time_t)num * days * 24 * 3600;
		return 0;
	}
	if (sscanf(str, "%4u-%2u-%2u", &year, &mon, &mday) != 3 ||
	    strlen(str) != 10 || mon < 1 || mon > 12 || mday < 1 || mday > 31)
		return -1;
	i_zero(&tm);
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	*time_r = timegm(&tm);
	return 0;
}

static int
migrate_get_date(struct mail_user *user, const char *name, time_t *value_r,
		 const char **error_r)
{
	const char *value = migrate_getenv(user, name);

	*value_r = 0;
	if (value == NULL)
		return 0;
	if (migrate_settings_parse_date(value, ioloop_time, value_r) < 0) {
		*error_r = t_strdup_printf("Invalid setting %s=%s: "
			"expected YYYY-MM-DD or an age like 90d, 12w, 6m, 1y",
			name, value);
		return -1;
	}
	return 0;
}

static int
migrate_read_password_file(const char *path, pool_t pool,
			   const char **password_r, const char **error_r)
{
	char buf[MIGRATE_PASSWORD_FILE_MAX];
	ssize_t ret;
	size_t len;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd == -1) {
		*error_r = t_strdup_printf(
			"Invalid setting migrate_source_password_file=%s: "
			"open() failed: %m", path);
		return -1;
	}
	ret = read(fd, buf, sizeof(buf));
	i_close_fd(&fd);
	if (ret < 0) {
		*error_r = t_strdup_printf(
			"Invalid setting migrate_source_password_file=%s: "
			"read() failed: %m", path);
		return -1;
	}
	len = (size_t)ret;
	if (len == sizeof(buf)) {
		*error_r = t_strdup_printf(
			"Invalid setting migrate_source_password_file=%s: "
			"file is too large for a password", path);
		return -1;
	}
	/* only the first line is the password */
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n' || buf[i] == '\r') {
			len = i;
			break;
		}
	}
	if (len == 0) {
		*error_r = t_strdup_printf(
			"Invalid setting migrate_source_password_file=%s: "
			"file is empty", path);
		return -1;
	}
	*password_r = p_strndup(pool, buf, len);
	safe_memset(buf, 0, sizeof(buf));
	return 0;
}

static int
migrate_settings_read_source(struct mail_user *user, pool_t pool,
			     struct migrate_settings *set,
			     const char **error_r)
{
	const char *value;
	unsigned int port;

	set->source_host = p_strdup(pool, migrate_getenv(user,
		"migrate_source_host"));
	if (set->source_host == NULL) {
		*error_r = "Missing setting migrate_source_host "
			"(the source IMAP server)";
		return -1;
	}
	value = migrate_getenv(user, "migrate_source_ssl");
	if (value == NULL || strcmp(value, "imaps") == 0 ||
	    strcmp(value, "yes") == 0)
		set->source_ssl = MIGRATE_SSL_IMAPS;
	else if (strcmp(value, "starttls") == 0)
		set->source_ssl = MIGRATE_SSL_STARTTLS;
	else if (strcmp(value, "no") == 0)
		set->source_ssl = MIGRATE_SSL_NONE;
	else {
		*error_r = t_strdup_printf("Invalid setting "
			"migrate_source_ssl=%s: expected imaps, starttls or no",
			value);
		return -1;
	}
	value = migrate_getenv(user, "migrate_source_port");
	if (value == NULL)
		port = set->source_ssl == MIGRATE_SSL_IMAPS ? 993 : 143;
	else if (str_to_uint(value, &port) < 0 || port == 0 || port > 65535) {
		*error_r = t_strdup_printf("Invalid setting "
			"migrate_source_port=%s: expected 1..65535", value);
		return -1;
	}
	set->source_port = port;
	if (migrate_get_bool(user, "migrate_source_ssl_verify", TRUE,
			     &set->source_ssl_verify, error_r) < 0)
		return -1;
	set->source_ssl_ca_file = p_strdup(pool, migrate_getenv(user,
		"migrate_source_ssl_ca_file"));

	set->source_user = p_strdup(pool, migrate_getenv(user,
		"migrate_source_user"));
	if (set->source_user == NULL)
		set->source_user = p_strdup(pool, user->username);
	set->source_master_user = p_strdup(pool, migrate_getenv(user,
		"migrate_source_master_user"));
	set->source_sasl_mechanisms = p_strdup(pool, migrate_getenv(user,
		"migrate_source_sasl_mechanisms"));
	set->source_oauth2_token_command = p_strdup(pool, migrate_getenv(user,
		"migrate_source_oauth2_token_command"));
	set->source_rawlog_dir = p_strdup(pool, migrate_getenv(user,
		"migrate_source_rawlog_dir"));
	if (migrate_get_secs(user, "migrate_source_timeout", 120,
			     &set->source_timeout_secs, error_r) < 0 ||
	    migrate_get_bool(user, "migrate_source_compress", TRUE,
			     &set->source_compress, error_r) < 0)
		return -1;
	if (set->source_timeout_secs == 0) {
		*error_r = "Invalid setting migrate_source_timeout=0: "
			"must be at least 1 second";
		return -1;
	}

	/* password: setting, file, token or environment, in that order */
	value = migrate_getenv(user, "migrate_source_password");
	if (value == NULL)
		value = migrate_getenv(user, "migrate_source_oauth2_token");
	if (value != NULL)
		set->source_password = p_strdup(pool, value);
	else if ((value = migrate_getenv(user,
			"migrate_source_password_file")) != NULL) {
		if (migrate_read_password_file(value, pool,
				&set->source_password, error_r) < 0)
			return -1;
	} else if ((value = getenv(MIGRATE_PASSWORD_ENV)) != NULL &&
		   *value != '\0')
		set->source_password = p_strdup(pool, value);
	else if (set->source_oauth2_token_command == NULL) {
		*error_r = "Missing setting migrate_source_password_file "
			"(or migrate_source_password, "
			"migrate_source_oauth2_token[_command], or the "
			MIGRATE_PASSWORD_ENV " environment variable)";
		return -1;
	}
	return 0;
}

static int
migrate_settings_read_dict(struct mail_user *user, pool_t pool,
			   struct migrate_settings *set, const char **error_r)
{
	const char *value;

	value = migrate_getenv(user, "migrate_state_dict");
	if (value == NULL) {
		const char *home;

		/* embedded default: a file dict in the user's home */
		if (mail_user_get_home(user, &home) <= 0 || home == NULL) {
			*error_r = "Missing setting migrate_state_dict "
				"(the user has no home directory for the "
				"default file dict)";
			return -1;
		}
		/* fcntl: the kernel drops the lock of a killed run, a
		   dotlock would block the next run until it goes stale */
		value = t_strdup_printf("file:%s/.dovecot-migrate.dict:"
					"lock=fcntl", home);
	}
	set->state_dict = p_strdup(pool, value);
	return 0;
}

int migrate_settings_read_state(struct mail_user *user, pool_t pool,
				struct migrate_settings **set_r,
				const char **error_r)
{
	struct migrate_settings *set;

	set = p_new(pool, struct migrate_settings, 1);
	if (migrate_settings_read_dict(user, pool, set, error_r) < 0)
		return -1;
	*set_r = set;
	return 0;
}

int migrate_settings_read(struct mail_user *user, pool_t pool,
			  struct migrate_settings **set_r,
			  const char **error_r)
{
	struct migrate_settings *set;
	const char *value;

	set = p_new(pool, struct migrate_settings, 1);
	if (migrate_settings_read_source(user, pool, set, error_r) < 0 ||
	    migrate_settings_read_dict(user, pool, set, error_r) < 0)
		return -1;

	set->folder_map = p_strdup(pool, migrate_getenv(user,
		"migrate_folder_map"));
	set->include = p_strdup(pool, migrate_getenv(user, "migrate_include"));
	set->exclude = p_strdup(pool, migrate_getenv(user, "migrate_exclude"));
	/* set but empty: skip nothing (unlike the other settings, empty
	   isn't the default here) */
	value = mail_user_plugin_getenv(user, "migrate_gmail_skip");
	set->gmail_skip = p_strdup(pool, value != NULL ? value :
				   "\\Junk \\Trash");

	if (migrate_get_bool(user, "migrate_preserve_uids", TRUE,
			     &set->preserve_uids, error_r) < 0 ||
	    migrate_get_bool(user, "migrate_automap", TRUE,
			     &set->automap, error_r) < 0 ||
	    migrate_get_bool(user, "migrate_subscriptions", TRUE,
			     &set->subscriptions, error_r) < 0 ||
	    migrate_get_bool(user, "migrate_dedupe_across_folders", FALSE,
			     &set->dedupe_across_folders, error_r) < 0 ||
	    migrate_get_uint(user, "migrate_batch_messages", 500,
			     &set->batch_messages, error_r) < 0 ||
	    migrate_get_size(user, "migrate_batch_bytes", 64*1024*1024,
			     &set->batch_bytes, error_r) < 0 ||
	    migrate_get_uint(user, "migrate_pipeline_depth", 200,
			     &set->pipeline_depth, error_r) < 0 ||
	    migrate_get_uint(user, "migrate_parallel_folders", 4,
			     &set->parallel_folders, error_r) < 0 ||
	    migrate_get_size(user, "migrate_max_message_size",
			     2ULL*1024*1024*1024,
			     &set->max_message_size, error_r) < 0 ||
	    migrate_get_uint(user, "migrate_reconnect_max", 10,
			     &set->reconnect_max, error_r) < 0 ||
	    migrate_get_secs(user, "migrate_backoff_max", 300,
			     &set->backoff_max_secs, error_r) < 0 ||
	    migrate_get_secs(user, "migrate_throttle_max_wait", 3600,
			     &set->throttle_max_wait_secs, error_r) < 0 ||
	    migrate_get_uint(user, "migrate_errors_max", 50,
			     &set->errors_max, error_r) < 0 ||
	    migrate_get_uint(user, "migrate_item_retries", 3,
			     &set->item_retries, error_r) < 0 ||
	    migrate_get_size(user, "migrate_max_size", 0,
			     &set->max_size, error_r) < 0 ||
	    migrate_get_size(user, "migrate_min_size", 0,
			     &set->min_size, error_r) < 0 ||
	    migrate_get_date(user, "migrate_since", &set->since, error_r) < 0 ||
	    migrate_get_date(user, "migrate_before", &set->before,
			     error_r) < 0 ||
	    migrate_get_uint(user, "migrate_max_messages_per_second", 0,
			     &set->max_messages_per_second, error_r) < 0 ||
	    migrate_get_size(user, "migrate_max_bytes_per_second", 0,
			     &set->max_bytes_per_second, error_r) < 0 ||
	    migrate_get_secs(user, "migrate_lock_timeout", 600,
			     &set->lock_timeout_secs, error_r) < 0 ||
	    migrate_get_uint(user, "migrate_max_connections", 0,
			     &set->max_connections, error_r) < 0)
		return -1;
	value = migrate_getenv(user, "migrate_connection_slots_dir");
	set->connection_slots_dir = value != NULL ? p_strdup(pool, value) :
		p_strdup(pool, migrate_settings_default_slots_dir(
			user->set->base_dir));
	value = migrate_getenv(user, "migrate_fsync");
	if (value != NULL && strcmp(value, "batch") != 0 &&
	    strcmp(value, "mail") != 0) {
		*error_r = t_strdup_printf("Invalid setting migrate_fsync=%s: "
					   "expected batch or mail", value);
		return -1;
	}
	if (set->batch_messages == 0)
		set->batch_messages = 1;
	if (set->pipeline_depth == 0)
		set->pipeline_depth = 1;
	*set_r = set;
	return 0;
}

const char *migrate_settings_default_slots_dir(const char *base_dir)
{
	return t_strconcat(base_dir, "/migrate-slots", NULL);
}

int migrate_settings_prerun(struct mail_storage_service_user *service_user,
			    bool *batch_fsync_r, const char **error_r)
{
	void **sets = mail_storage_service_user_get_set(service_user);
	const struct mail_user_settings *user_set = sets[0];
	const struct mail_storage_settings *mail_set =
		mail_storage_service_user_get_mail_set(service_user);
	const char *value, *error;

	*batch_fsync_r = FALSE;
	value = mail_user_set_plugin_getenv(user_set, "migrate_fsync");
	/* an invalid value fails in migrate_settings_read(), with EX_CONFIG */
	if (value != NULL && *value != '\0' && strcmp(value, "batch") != 0)
		return 0;
#ifdef MIGRATE_HAVE_SYNCFS
	if (mail_set->parsed_fsync_mode == FSYNC_MODE_NEVER)
		return 0;
	if (mail_storage_service_user_set_setting(service_user, "mail_fsync",
						  "never", &error) <= 0) {
		*error_r = t_strdup_printf("mail_fsync=never: %s", error);
		return -1;
	}
	*batch_fsync_r = TRUE;
#else
	(void)mail_set; (void)error;
#endif
	return 0;
}
