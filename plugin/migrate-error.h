#ifndef MIGRATE_ERROR_H
#define MIGRATE_ERROR_H

/* Why something failed; decides the retry policy and the exit code. */
enum migrate_error {
	MIGRATE_ERROR_NONE = 0,
	/* network, timeout, BYE, throttling: retry later (EX_TEMPFAIL) */
	MIGRATE_ERROR_TEMP,
	/* source login refused (EX_NOPERM) */
	MIGRATE_ERROR_AUTH,
	/* bad setting, TLS verification, unusable rules (EX_CONFIG) */
	MIGRATE_ERROR_CONFIG,
	/* source sent something we can't parse (EX_PROTOCOL) */
	MIGRATE_ERROR_PROTOCOL,
	/* destination storage failed (EX_TEMPFAIL) */
	MIGRATE_ERROR_DESTINATION,
	/* the destination quota is full: what fit is kept, the rest is in
	   the item log; retrying changes nothing until the quota does
	   (EX_CANTCREAT) */
	MIGRATE_ERROR_QUOTA,
	/* another run holds the user's lock (EX_TEMPFAIL) */
	MIGRATE_ERROR_LOCKED,
	/* run finished but some items failed (exit 2) */
	MIGRATE_ERROR_ITEMS,
	/* -m names no folder (68, doveadm's own "not found" code) */
	MIGRATE_ERROR_NOTFOUND,
	/* an output file (report -c) can't be created (EX_CANTCREAT) */
	MIGRATE_ERROR_CANTCREAT,
	/* the destination file system is full: what fit is kept, like
	   MIGRATE_ERROR_QUOTA; retrying soon changes nothing either
	   (EX_CANTCREAT) */
	MIGRATE_ERROR_DISK_FULL,

	MIGRATE_ERROR_COUNT
};

/* The exit code of a run whose only failures are items (messages, a
   folder, Sieve scripts) */
#define MIGRATE_EXIT_ITEMS 2

/* Category of every event this plugin emits */
extern struct event_category event_category_migrate;

/* Exit code for doveadm (sysexits): 0 for MIGRATE_ERROR_NONE */
int migrate_error_to_exit_code(enum migrate_error error);
/* Short name of the error class ("temp", "auth"...; "none") */
const char *migrate_error_name(enum migrate_error error);
/* The exit code of a command over several users after one more failed
   (error is not NONE): the most serious failure wins; a temporary one
   or failed items give way to any other. exit_code is 0 before the
   first. */
int migrate_exit_code_merge(int exit_code, enum migrate_error error);

#endif
