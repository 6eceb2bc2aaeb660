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

struct mail_user;
struct migrate_settings;
struct migrate_state;
struct migrate_source_list;
struct migrate_folder_map;
struct migrate_pacing;
struct migrate_live_counters;

/* What the Sieve pass works with, built by the run */
struct migrate_sieve_ctx {
	/* the scripts' results live as long as this pool */
	pool_t pool;
	struct mail_user *user;
	struct event *event;
	const struct migrate_settings *set;
	/* NULL in a plan that can't read the state */
	struct migrate_state *state;
	/* store the scripts (a run), or only say what a run would do (a
	   plan) */
	bool import;
	/* the mail's folders and map: a script's mailbox names are mapped
	   the way the mail was */
	const struct migrate_source_list *src;
	struct migrate_folder_map *map;
	/* the run's pacing: the wait before a reconnect keeps the run lock
	   alive */
	struct migrate_pacing *pacing;
	/* reconnects and the scripts' items are counted here */
	struct migrate_live_counters *counters;
};

/* What a run (or a plan) did with a script; printed and stored in the
   item log's reason as migrate_sieve_result_to_str() says */
enum migrate_sieve_result {
	/* not looked at (the pass failed before it) */
	MIGRATE_SIEVE_RESULT_NONE = 0,
	MIGRATE_SIEVE_RESULT_COPIED,
	MIGRATE_SIEVE_RESULT_UPDATED,
	MIGRATE_SIEVE_RESULT_UNCHANGED,
	/* changed at the destination since a run stored it, the source's
	   unchanged: left alone */
	MIGRATE_SIEVE_RESULT_KEPT,
	/* plan: what a run would do */
	MIGRATE_SIEVE_RESULT_COPY,
	MIGRATE_SIEVE_RESULT_UPDATE,
	MIGRATE_SIEVE_RESULT_KEEP,
	/* script->error says why */
	MIGRATE_SIEVE_RESULT_FAILED,

	MIGRATE_SIEVE_RESULT_COUNT
};

/* "copied", "updated"...; NULL for _NONE */
const char *migrate_sieve_result_to_str(enum migrate_sieve_result result);

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
	enum migrate_sieve_result result;
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

/* Copy (run) or list (plan) the user's scripts into *sieve_r (from
   ctx->pool). 0 = every script is there and compiles; -1 = something
   failed (*sieve_r says what; the mail's result is not changed here). */
int migrate_sieve_execute(const struct migrate_sieve_ctx *ctx,
			  struct migrate_sieve **sieve_r);

/* A script's row note: active, renamed, rewrites, names left alone,
   compiler error */
const char *migrate_sieve_script_note(const struct migrate_sieve_script *script);

#endif
