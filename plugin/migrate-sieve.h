#ifndef MIGRATE_SIEVE_H
#define MIGRATE_SIEVE_H

/* migrate_sieve = yes: the user's Sieve scripts, read from the source's
   ManageSieve service (migrate-managesieve.h), their mailbox names mapped
   through the run's folder map (migrate-sieve-rewrite.h), stored in the
   user's Sieve storage at the destination (migrate-sieve-compat.h) with
   the source's active script active. Runs after the mail, on the folder
   list the mail used: a Sieve failure never touches the mail. */

#include "migrate-error.h"
#include "migrate-sieve-rewrite.h"

struct migrate_run;

struct migrate_sieve_script {
	const char *src_name;
	/* the name at the destination: src_name, or a safe one */
	const char *dest_name;
	/* why dest_name differs from src_name, or NULL */
	const char *rename_reason;
	/* active at the source */
	bool src_active;
	/* active at the destination after this run (plan: would be) */
	bool dest_active;
	uoff_t size;
	ARRAY_TYPE(migrate_sieve_rewrite) rewrites;
	/* the script couldn't be tokenized: stored as it is */
	const char *rewrite_error;
	/* SHA-1 (hex) of the source's text and of the text stored at the
	   destination (the rewritten one): this run's, and the last run's
	   that stored the script (NULL: none) */
	const char *src_digest, *dest_digest;
	const char *stored_src_digest, *stored_dest_digest;
	/* run: "copied", "updated", "unchanged", "kept" (changed at the
	   destination since a run stored it, the source's unchanged: left
	   alone), "failed"; plan: "copy", "update", "unchanged", "keep" */
	const char *result;
	/* the compiler's error at the destination (stored inactive) */
	const char *compile_error;
	const char *error;
};
ARRAY_DEFINE_TYPE(migrate_sieve_script, struct migrate_sieve_script);

struct migrate_sieve {
	ARRAY_TYPE(migrate_sieve_script) scripts;
	/* the Sieve pass failed as a whole (connect, login, storage) */
	enum migrate_error error_code;
	const char *error;
	unsigned int copied, updated, unchanged, kept, not_compiling, failed;
};

/* Copy (run) or list (plan) the user's scripts into run->sieve. 0 = every
   script is there and compiles; -1 = something failed (run->sieve says
   what; the mail's result is not changed here). */
int migrate_sieve_execute(struct migrate_run *run);

/* A script's row note: active, renamed, rewrites, names left alone,
   compiler error */
const char *migrate_sieve_script_note(const struct migrate_sieve_script *script);

#endif
