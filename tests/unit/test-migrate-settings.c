/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "test-common.h"
#include "migrate-compat.h"
#include "migrate-settings.h"

static void test_settings_secs(void)
{
	static const struct {
		const char *input;
		int ret;
		unsigned int secs;
	} tests[] = {
		/* the conf.d examples: plain numbers are seconds */
		{ "120", 0, 120 },
		{ "600", 0, 600 },
		{ "0", 0, 0 },
		{ "30 secs", 0, 30 },
		{ "5 mins", 0, 300 },
		{ "1h", 0, 3600 },
		{ "ten", -1, 0 },
		{ "-5", -1, 0 },
	};
	const char *error;
	unsigned int secs;

	test_begin("settings: intervals");
	for (unsigned int i = 0; i < N_ELEMENTS(tests); i++) {
		secs = 0;
		test_assert_idx(migrate_settings_parse_secs(tests[i].input,
				&secs, &error) == tests[i].ret, i);
		if (tests[i].ret == 0)
			test_assert_idx(secs == tests[i].secs, i);
	}
	test_end();
}

static void test_settings_date(void)
{
	static const struct {
		const char *input;
		int ret;
		unsigned int days;
	} tests[] = {
		{ "90d", 0, 90 },
		{ "90 days", 0, 90 },
		{ "12w", 0, 84 },
		{ "2 weeks", 0, 14 },
		/* a bare m is refused: minutes in intervals, months here */
		{ "6m", -1, 0 },
		{ "6mo", 0, 180 },
		{ "6 months", 0, 180 },
		{ "1month", 0, 30 },
		{ "2y", 0, 730 },
		{ "1 year", 0, 365 },
		{ "6min", -1, 0 },
		{ "6mins", -1, 0 },
		{ "6x", -1, 0 },
		{ "6", -1, 0 },
		{ "d", -1, 0 },
	};
	/* YYYY-MM-DD: midnight UTC */
	static const struct {
		const char *input;
		int ret;
		time_t time;
	} dates[] = {
		{ "2024-02-29", 0, 1709164800 },
		{ "1970-01-01", 0, 0 },
		{ "2023-12-31", 0, 1703980800 },
		/* days that don't exist are refused, not moved on */
		{ "2023-02-29", -1, 0 },
		{ "2024-02-30", -1, 0 },
		{ "2024-04-31", -1, 0 },
		{ "2024-13-01", -1, 0 },
		{ "2024-00-10", -1, 0 },
		{ "2024-01-00", -1, 0 },
		{ "2024-1-01", -1, 0 },
		{ "2024-01-01x", -1, 0 },
		{ "01.01.2024", -1, 0 },
		{ "", -1, 0 },
	};
	time_t now = 1700000000, t;

	test_begin("settings: dates and ages");
	for (unsigned int i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(migrate_settings_parse_date(tests[i].input,
				now, &t) == tests[i].ret, i);
		if (tests[i].ret == 0) {
			test_assert_idx(t == now - (time_t)tests[i].days *
					24 * 3600, i);
		}
	}
	for (unsigned int i = 0; i < N_ELEMENTS(dates); i++) {
		test_assert_idx(migrate_settings_parse_date(dates[i].input,
				now, &t) == dates[i].ret, i);
		if (dates[i].ret == 0)
			test_assert_idx(t == dates[i].time, i);
	}
	test_end();
}

static void test_settings_unknown_names(void)
{
	static const struct {
		const char *name, *hint;
	} tests[] = {
		{ "migrate_source_host", NULL },
		{ "migrate_since", NULL },
		{ "migrate_source_hots",
		  "migrate_source_hots (did you mean migrate_source_host?)" },
		{ "migrate_sourcehost",
		  "migrate_sourcehost (did you mean migrate_source_host?)" },
		{ "migrate_lock_timout",
		  "migrate_lock_timout (did you mean migrate_lock_timeout?)" },
		{ "migrate-source-port",
		  "migrate-source-port (did you mean migrate_source_port?)" },
		/* not our prefix, but one typo from our name */
		{ "migate_source_host",
		  "migate_source_host (did you mean migrate_source_host?)" },
		{ "migrate_frobnicate_everything_now",
		  "migrate_frobnicate_everything_now" },
		/* other plugins' settings are none of our business */
		{ "quota_rule", NULL },
		{ "mail_log_events", NULL },
		{ "sieve", NULL },
	};

	test_begin("settings: unknown names and the nearest known one");
	for (unsigned int i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_strcmp_idx(
			migrate_settings_unknown_name_hint(tests[i].name),
			tests[i].hint, i);
	}
	test_end();
}

static void test_settings_table(void)
{
	test_begin("settings: the table");
	for (unsigned int i = 0; i < migrate_setting_defs_count; i++) {
		const struct migrate_setting_def *def = &migrate_setting_defs[i];

		test_assert_idx(str_begins_with(def->name, "migrate_"), i);
		test_assert_idx(migrate_setting_find(def->name) == def, i);
		test_assert_idx(def->default_value != NULL, i);
		test_assert_idx(def->type != MIGRATE_SETTING_ENUM ||
				def->offset == MIGRATE_SETTING_NO_FIELD, i);
	}
	test_assert(migrate_setting_find("migrate_source_hots") == NULL);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_settings_secs,
		test_settings_date,
		test_settings_unknown_names,
		test_settings_table,
		NULL
	};
	return test_run(test_functions);
}
