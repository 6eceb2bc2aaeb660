#ifndef MIGRATE_REPORT_H
#define MIGRATE_REPORT_H

/* Operator-facing output of the state: migrate status and migrate report,
   through doveadm_print so -f json|tab|table|flow work. */

#include "migrate-error.h"

struct migrate_state;

struct migrate_report_filter {
	/* source folder (raw or decoded) or destination folder, or NULL */
	const char *folder;
	/* reason class, e.g. "too-big", or NULL */
	const char *reason;
	/* also write the items as CSV to this file */
	const char *csv_path;
};

/* The table's columns, added once (doveadm prints them even without a
   row): before the first row, or when a command succeeds without rows.
   migrate_report_headers_begin() at the command's init notes the columns
   doveadm itself added (the sticky username of -A); added() says whether
   the command's own are there. With only a sticky column doveadm_print()
   would fill rows with it forever. */
void migrate_report_headers_begin(void);
bool migrate_report_headers_added(void);
void migrate_report_status_headers(void);
/* A user-level row first, then a row per folder */
int migrate_report_status(struct migrate_state *state, const char **error_r);

void migrate_report_items_headers(void);
/* -1 with *code_r: CONFIG (unknown reason class), NOTFOUND (-m names no
   folder of the state), CANTCREAT (the CSV file), TEMP (state) */
int migrate_report_items(struct migrate_state *state,
			 const struct migrate_report_filter *filter,
			 enum migrate_error *code_r, const char **error_r);

#endif
