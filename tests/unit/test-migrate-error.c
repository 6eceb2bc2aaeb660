/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "test-common.h"
#include "migrate-error.h"
#include "migrate-importer.h"

#include <sysexits.h>

static void test_error_exit_codes(void)
{
	static const struct {
		enum migrate_error error;
		const char *name;
		int exit_code;
	} tests[] = {
		{ MIGRATE_ERROR_NONE, "none", 0 },
		{ MIGRATE_ERROR_TEMP, "temp", EX_TEMPFAIL },
		{ MIGRATE_ERROR_AUTH, "auth", EX_NOPERM },
		{ MIGRATE_ERROR_CONFIG, "config", EX_CONFIG },
		{ MIGRATE_ERROR_PROTOCOL, "protocol", EX_PROTOCOL },
		{ MIGRATE_ERROR_DESTINATION, "destination", EX_TEMPFAIL },
		{ MIGRATE_ERROR_QUOTA, "quota", EX_CANTCREAT },
		{ MIGRATE_ERROR_LOCKED, "locked", EX_TEMPFAIL },
		{ MIGRATE_ERROR_ITEMS, "items", 2 },
		{ MIGRATE_ERROR_NOTFOUND, "notfound", EX_NOHOST },
		{ MIGRATE_ERROR_CANTCREAT, "cantcreat", EX_CANTCREAT },
		{ MIGRATE_ERROR_DISK_FULL, "diskfull", EX_CANTCREAT },
	};
	unsigned int i;

	test_begin("error names and exit codes");
	test_assert(N_ELEMENTS(tests) == MIGRATE_ERROR_COUNT);
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(strcmp(migrate_error_name(tests[i].error),
				       tests[i].name) == 0, i);
		test_assert_idx(migrate_error_to_exit_code(tests[i].error) ==
				tests[i].exit_code, i);
	}
	test_end();
}

static void test_error_exit_code_merge(void)
{
	int code;

	test_begin("exit code over several users");
	code = migrate_exit_code_merge(0, MIGRATE_ERROR_TEMP);
	test_assert(code == EX_TEMPFAIL);
	/* failed items don't hide a temporary failure, nor it them */
	code = migrate_exit_code_merge(code, MIGRATE_ERROR_ITEMS);
	test_assert(code == 2);
	code = migrate_exit_code_merge(code, MIGRATE_ERROR_AUTH);
	test_assert(code == EX_NOPERM);
	/* the serious one stays */
	code = migrate_exit_code_merge(code, MIGRATE_ERROR_TEMP);
	test_assert(code == EX_NOPERM);
	code = migrate_exit_code_merge(code, MIGRATE_ERROR_CONFIG);
	test_assert(code == EX_NOPERM);
	test_end();
}

static void test_folder_result_names(void)
{
	enum migrate_folder_result result, i;

	test_begin("folder result names");
	test_assert(migrate_folder_result_to_str(MIGRATE_FOLDER_RESULT_NONE) ==
		    NULL);
	for (i = MIGRATE_FOLDER_RESULT_NONE + 1;
	     i < MIGRATE_FOLDER_RESULT_COUNT; i++) {
		test_assert_idx(migrate_folder_result_to_str(i) != NULL, i);
		test_assert_idx(migrate_folder_result_parse(
			migrate_folder_result_to_str(i), &result) == 0 &&
			result == i, i);
	}
	/* what older runs stored */
	test_assert(migrate_folder_result_parse("completed-with-errors",
						&result) == 0 &&
		    result == MIGRATE_FOLDER_RESULT_COMPLETED_WITH_ERRORS);
	test_assert(migrate_folder_result_parse("completed", &result) == 0 &&
		    result == MIGRATE_FOLDER_RESULT_COMPLETED);
	/* a folder state's own status, not a result */
	test_assert(migrate_folder_result_parse("running", &result) < 0);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_error_exit_codes,
		test_error_exit_code_merge,
		test_folder_result_names,
		NULL
	};
	return test_run(test_functions);
}
