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
#include "eacces-error.h"
#include "array.h"
#include "migrate-compat.h"
#include "migrate-settings.h"

#include <stdio.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>

#define MIGRATE_PASSWORD_ENV "MIGRATE_SOURCE_PASSWORD"
#define MIGRATE_PASSWORD_FILE_MAX 4096

/* The value as set, NULL when unset or empty */
static const char *
migrate_getenv(struct mail_user *user, const char *name)
{
	const char *value;

	if (migrate_setting_find(name) == NULL)
		i_panic("migrate setting %s is missing in migrate_setting_defs",
			name);
	value = migrate_compat_setting(user, name);
	return value == NULL || *value == '\0' ? NULL : value;
}

static int
migrate_parse_bool(const char *value, bool *value_r)
{
	if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "y") == 0 ||
	    strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0)
		*value_r = TRUE;
	else if (strcasecmp(value, "no") == 0 || strcasecmp(value, "n") == 0 ||
		 strcmp(value, "0") == 0 || strcasecmp(value, "false") == 0)
		*value_r = FALSE;
	else
		return -1;
	return 0;
}

int migrate_settings_parse_secs(const char *str, unsigned int *secs_r,
				const char **error_r)
{
	/* a plain number is seconds (Dovecot's parser wants a unit) */
	if (str_to_uint(str, secs_r) == 0)
		return 0;
	return migrate_compat_parse_interval(str, secs_r, error_r);
}

/* Parse one value of a table setting into its field */
static int
migrate_setting_parse(const struct migrate_setting_def *def,
		      const char *value, void *field, pool_t pool,
		      const char **error_r)
{
	const char *error = NULL;
	int ret = 0;

	switch (def->type) {
	case MIGRATE_SETTING_STR:
		*(const char **)field = p_strdup_empty(pool, value);
		break;
	case MIGRATE_SETTING_BOOL:
		if (migrate_parse_bool(value, field) < 0) {
			error = "expected yes or no";
			ret = -1;
		}
		break;
	case MIGRATE_SETTING_UINT:
		if (str_to_uint(value, field) < 0) {
			error = "expected a number";
			ret = -1;
		}
		break;
	case MIGRATE_SETTING_SECS:
		ret = migrate_settings_parse_secs(value, field, &error);
		break;
	case MIGRATE_SETTING_SIZE:
		ret = migrate_compat_parse_size(value, field, &error);
		break;
	case MIGRATE_SETTING_DATE:
		if (migrate_settings_parse_date(value, ioloop_time,
						field) < 0) {
			error = "expected YYYY-MM-DD or an age like 90d, 12w, "
				"6mo, 1y (months are mo or months: a bare m "
				"would be minutes elsewhere)";
			ret = -1;
		}
		break;
	case MIGRATE_SETTING_ENUM:
		i_unreached();
	}
	if (ret < 0) {
		*error_r = t_strdup_printf("Invalid setting %s=%s: %s",
					   def->name, value, error);
	}
	return ret;
}

/* Read every table setting that has a field: the value set, or else the
   default. */
static int
migrate_settings_read_table(struct mail_user *user, pool_t pool,
			    struct migrate_settings *set,
			    const char **error_r)
{
	for (unsigned int i = 0; i < migrate_setting_defs_count; i++) {
		const struct migrate_setting_def *def = &migrate_setting_defs[i];
		const char *value;

		if (def->offset == MIGRATE_SETTING_NO_FIELD)
			continue;
		value = migrate_getenv(user, def->name);
		if (value == NULL) {
			/* "" = unset: 0, NULL or FALSE */
			if (def->default_value[0] == '\0')
				continue;
			value = def->default_value;
		}
		if (migrate_setting_parse(def, value,
					  PTR_OFFSET(set, def->offset),
					  pool, error_r) < 0)
			return -1;
	}
	return 0;
}

/* Edit distance (insert, delete, substitute, swap two neighbours) */
unsigned int migrate_name_distance(const char *a, const char *b)
{
	size_t alen = strlen(a), blen = strlen(b), i, j;
	unsigned int *d, cost, best;

	d = t_new(unsigned int, (alen + 1) * (blen + 1));
#define D(i, j) d[(i) * (blen + 1) + (j)]
	for (i = 0; i <= alen; i++)
		D(i, 0) = i;
	for (j = 0; j <= blen; j++)
		D(0, j) = j;
	for (i = 1; i <= alen; i++) {
		for (j = 1; j <= blen; j++) {
			cost = a[i-1] == b[j-1] ? 0 : 1;
			best = D(i-1, j-1) + cost;
			best = I_MIN(best, D(i-1, j) + 1);
			best = I_MIN(best, D(i, j-1) + 1);
			if (i > 1 && j > 1 && a[i-1] == b[j-2] &&
			    a[i-2] == b[j-1])
				best = I_MIN(best, D(i-2, j-2) + 1);
			D(i, j) = best;
		}
	}
	best = D(alen, blen);
#undef D
	return best;
}

const char *migrate_settings_nearest_name(const char *name,
					  unsigned int *distance_r)
{
	const char *nearest = NULL;
	unsigned int dist, best = UINT_MAX;

	for (unsigned int i = 0; i < migrate_setting_defs_count; i++) {
		dist = migrate_name_distance(
			name, migrate_setting_defs[i].name);
		if (dist < best) {
			best = dist;
			nearest = migrate_setting_defs[i].name;
		}
	}
	*distance_r = best;
	return nearest;
}

const char *migrate_settings_unknown_name_hint(const char *name)
{
	const char *nearest;
	unsigned int dist;

	if (migrate_setting_find(name) != NULL)
		return NULL;
	nearest = migrate_settings_nearest_name(name, &dist);
	/* ours: the migrate prefix, or a near miss of one of our names */
	if (strncasecmp(name, "migrate", 7) != 0 && dist > 2)
		return NULL;
	if (dist <= I_MAX(strlen(name) / 3, 2U))
		return t_strdup_printf("%s (did you mean %s?)", name, nearest);
	return name;
}

int migrate_settings_check_names(struct mail_user *user, bool fatal,
				 const char **error_r)
{
	const char *const *envs, *hint, *msg;
	unsigned int i, count, unknown = 0;
	string_t *str = NULL;

	/* plugin {}, userdb extra fields and doveadm -o plugin/... all end
	   up here as name, value pairs (2.4: the migrate_* userdb fields and
	   -o names; its config process rejects unknown names in the config
	   itself) */
	envs = migrate_compat_plugin_envs(user, &count);
	for (i = 0; i + 1 < count; i += 2) {
		hint = migrate_settings_unknown_name_hint(envs[i]);
		if (hint == NULL)
			continue;
		unknown++;
		if (str == NULL)
			str = t_str_new(128);
		else
			str_append(str, ", ");
		str_append(str, hint);
	}
	if (str == NULL)
		return 0;
	msg = t_strdup_printf("Unknown setting%s %s in plugin {}, the "
			      "userdb or doveadm -o", unknown > 1 ? "s" : "",
			      str_c(str));
	if (fatal) {
		*error_r = msg;
		return -1;
	}
	e_warning(user->event, "migrate: %s (ignored)", msg);
	return 0;
}

int migrate_settings_parse_size(const char *str, uoff_t *size_r)
{
	const char *error;

	return migrate_compat_parse_size(str, size_r, &error);
}

/* An age's unit: an abbreviation or the word. A bare "m" is refused: it
   is minutes in every interval setting, so "6m" here would be read one
   way and meant the other ("mo" or "months"). */
static int migrate_parse_age_unit(const char *unit, unsigned int *days_r)
{
	static const struct {
		const char *abbrev, *word;
		unsigned int days;
	} units[] = {
		{ "d", "days", 1 },
		{ "w", "weeks", 7 },
		{ "mo", "months", 30 },
		{ "y", "years", 365 },
	};
	size_t len = strlen(unit);

	for (unsigned int i = 0; i < N_ELEMENTS(units); i++) {
		/* "6mo", "6month", "6months", "2 years" */
		if (strcmp(unit, units[i].abbrev) == 0 ||
		    (len >= strlen(units[i].word) - 1 &&
		     strncmp(unit, units[i].word, len) == 0)) {
			*days_r = units[i].days;
			return 0;
		}
	}
	return -1;
}

int migrate_settings_parse_date(const char *str, time_t now, time_t *time_r)
{
	unsigned int num, year, mon, mday, days;
	const char *end;
	struct tm tm;

	if (str_parse_uint(str, &num, &end) == 0 && end[0] != '\0' &&
	    end[0] != '-') {
		while (*end == ' ')
			end++;
		if (migrate_parse_age_unit(t_str_lcase(end), &days) < 0)
			return -1;
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
	/* timegm() makes "2023-02-29" March 1: that is no date */
	if (tm.tm_mday != (int)mday || tm.tm_mon != (int)mon - 1)
		return -1;
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
		/* EACCES: name the uid doveadm runs this user's command as
		   and what lacks the permission */
		*error_r = t_strdup_printf(
			"Invalid setting migrate_source_password_file=%s: %s",
			path, errno == EACCES ? eacces_error_get("open", path) :
			t_strdup_printf("open() failed: %m"));
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

/* A port setting; unset: the protocol's default for the TLS mode */
static int migrate_settings_port(struct mail_user *user, const char *name,
				 in_port_t default_port, in_port_t *port_r,
				 const char **error_r)
{
	const char *value = migrate_getenv(user, name);
	unsigned int port;

	if (value == NULL) {
		*port_r = default_port;
		return 0;
	}
	if (str_to_uint(value, &port) < 0 || port == 0 || port > 65535) {
		*error_r = t_strdup_printf("Invalid setting %s=%s: expected "
					   "1..65535", name, value);
		return -1;
	}
	*port_r = port;
	return 0;
}

/* The source settings the table can't read by itself */
static int
migrate_settings_read_source(struct mail_user *user, pool_t pool,
			     struct migrate_settings *set,
			     const char **error_r)
{
	const char *value;
	bool imaps;

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
	imaps = set->source_ssl == MIGRATE_SSL_IMAPS;
	if (migrate_settings_port(user, "migrate_source_port",
				  imaps ? 993 : 143, &set->source_port,
				  error_r) < 0 ||
	    migrate_settings_port(user, "migrate_pop3_port",
				  imaps ? 995 : 110, &set->pop3_port,
				  error_r) < 0 ||
	    migrate_settings_port(user, "migrate_sieve_port", 4190,
				  &set->sieve_port, error_r) < 0)
		return -1;
	if (set->source_user == NULL)
		set->source_user = p_strdup(pool, user->username);
	if (set->source_timeout_secs == 0) {
		*error_r = "Invalid setting migrate_source_timeout=0: "
			"must be at least 1 second";
		return -1;
	}
	if (set->source_greeting_timeout_secs == 0) {
		*error_r = "Invalid setting migrate_source_greeting_timeout=0: "
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

	/* status, report, reset: a misspelled name is only a warning */
	if (migrate_settings_check_names(user, FALSE, error_r) < 0)
		i_unreached();
	set = p_new(pool, struct migrate_settings, 1);
	if (migrate_compat_settings_check(user, error_r) < 0 ||
	    migrate_settings_read_dict(user, pool, set, error_r) < 0)
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
	if (migrate_compat_settings_check(user, error_r) < 0 ||
	    migrate_settings_read_table(user, pool, set, error_r) < 0 ||
	    migrate_settings_read_source(user, pool, set, error_r) < 0 ||
	    migrate_settings_read_dict(user, pool, set, error_r) < 0)
		return -1;

	/* set but empty: skip nothing (unlike the other settings, empty
	   isn't the default here) */
	value = migrate_compat_setting(user, "migrate_gmail_skip");
	set->gmail_skip = p_strdup(pool, value != NULL ? value :
		migrate_setting_find("migrate_gmail_skip")->default_value);
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
	const char *value, *error;

	*batch_fsync_r = FALSE;
	value = migrate_compat_service_setting(service_user, "migrate_fsync");
	/* an invalid value fails in migrate_settings_read(), with EX_CONFIG */
	if (value != NULL && *value != '\0' && strcmp(value, "batch") != 0)
		return 0;
#ifdef MIGRATE_HAVE_SYNCFS
	if (migrate_compat_fsync_never(service_user))
		return 0;
	if (migrate_compat_set_fsync_never(service_user, &error) < 0) {
		*error_r = t_strdup_printf("mail_fsync=never: %s", error);
		return -1;
	}
	*batch_fsync_r = TRUE;
#else
	(void)error;
#endif
	return 0;
}
