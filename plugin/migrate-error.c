/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-error.h"

#include <sysexits.h>

/* Every outcome's exit code is decided here, and only here */

struct event_category event_category_migrate = {
	.name = "migrate",
};

static const struct {
	const char *name;
	int exit_code;
} migrate_errors[MIGRATE_ERROR_COUNT] = {
	[MIGRATE_ERROR_NONE] = { "none", 0 },
	[MIGRATE_ERROR_TEMP] = { "temp", EX_TEMPFAIL },
	[MIGRATE_ERROR_AUTH] = { "auth", EX_NOPERM },
	[MIGRATE_ERROR_CONFIG] = { "config", EX_CONFIG },
	[MIGRATE_ERROR_PROTOCOL] = { "protocol", EX_PROTOCOL },
	[MIGRATE_ERROR_DESTINATION] = { "destination", EX_TEMPFAIL },
	[MIGRATE_ERROR_QUOTA] = { "quota", EX_CANTCREAT },
	[MIGRATE_ERROR_LOCKED] = { "locked", EX_TEMPFAIL },
	[MIGRATE_ERROR_ITEMS] = { "items", MIGRATE_EXIT_ITEMS },
	[MIGRATE_ERROR_NOTFOUND] = { "notfound", EX_NOHOST },
	[MIGRATE_ERROR_CANTCREAT] = { "cantcreat", EX_CANTCREAT },
	[MIGRATE_ERROR_DISK_FULL] = { "diskfull", EX_CANTCREAT },
};

int migrate_error_to_exit_code(enum migrate_error error)
{
	i_assert(error < MIGRATE_ERROR_COUNT);
	return migrate_errors[error].exit_code;
}

const char *migrate_error_name(enum migrate_error error)
{
	i_assert(error < MIGRATE_ERROR_COUNT);
	return migrate_errors[error].name;
}

int migrate_exit_code_merge(int exit_code, enum migrate_error error)
{
	i_assert(error != MIGRATE_ERROR_NONE);
	/* a temporary failure and failed items are what a re-run fixes:
	   any other failure is more serious */
	if (exit_code == 0 || exit_code == EX_TEMPFAIL ||
	    exit_code == MIGRATE_EXIT_ITEMS)
		return migrate_error_to_exit_code(error);
	return exit_code;
}
