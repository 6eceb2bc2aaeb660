#ifndef MIGRATE_STATE_H
#define MIGRATE_STATE_H

/* Resume state in a Dovecot dict. The destination mailbox stays the ground
   truth; this is the fast path. Layout (every key under priv/migrate/):
     run                 the user's last/current run (struct migrate_run_state)
     lock                "<host> <pid> <expires>" while a run is in progress
     folders             tab-separated source folder names seen by runs
     folder/<name>/state per-folder state (struct migrate_folder_state)
     folder/<name>/uidmap  source UID -> destination UID runs
     folder/<name>/items   item log: skipped/failed/deferred messages
     pop3/items          item log of the POP3 UIDL pass (pop3-unmatched)
     sieve               item log of the Sieve scripts (migrate_sieve)
     sieve-sources       digest of each script's source text last stored
   Nothing relies on iterating the dict, so Redis works. */

#include "seq-range-array.h"
#include "migrate-error.h"
#include "migrate-counters.h"

struct mail_user;
struct dict_transaction_context;

struct migrate_uid_run {
	uint32_t src_uid, dst_uid, count;
};
ARRAY_DEFINE_TYPE(migrate_uid_run, struct migrate_uid_run);

enum migrate_item_class {
	MIGRATE_ITEM_FETCH_FAILED = 0,	/* "fetch-failed" */
	MIGRATE_ITEM_MALFORMED,		/* "malformed" */
	MIGRATE_ITEM_TOO_BIG,		/* "too-big" */
	MIGRATE_ITEM_FILTERED,		/* "filtered" (deferred) */
	MIGRATE_ITEM_DEST_QUOTA,	/* "destination-quota" */
	MIGRATE_ITEM_DEST_ERROR,	/* "destination-error" */
	MIGRATE_ITEM_VANISHED,		/* "vanished" */
	MIGRATE_ITEM_DUPLICATE,		/* "duplicate" (across folders) */
	MIGRATE_ITEM_THROTTLED,		/* "throttled" */
	MIGRATE_ITEM_TIMEOUT,		/* "timeout" */
	MIGRATE_ITEM_DEST_FULL,		/* "destination-full" (file system) */
	/* a source POP3 message that matches no destination INBOX message:
	   its UIDL is not carried (item uid = POP3 message number) */
	MIGRATE_ITEM_POP3_UNMATCHED,	/* "pop3-unmatched" */

	/* Sieve scripts (migrate-sieve.c), one entry a script: */
	MIGRATE_ITEM_SIEVE_COPIED,	/* "sieve-copied" (and rewritten) */
	MIGRATE_ITEM_SIEVE_NOT_COMPILING, /* "sieve-not-compiling" */
	MIGRATE_ITEM_SIEVE_FAILED,	/* "sieve-failed" */

	MIGRATE_ITEM_CLASS_COUNT
};

struct migrate_item {
	uint32_t uid;
	enum migrate_item_class class;
	const char *reason;
	unsigned int attempts;
	time_t first_seen, last_seen;
	bool resolved;
	const char *message_id, *subject, *date;
	uoff_t size;
};
ARRAY_DEFINE_TYPE(migrate_item, struct migrate_item);

struct migrate_folder_state {
	const char *dest_vname;
	/* the source name decoded (UTF-8, '/' separator, prefix stripped):
	   what -m names; NULL in state written before it was kept */
	const char *decoded_name;
	/* source: UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ at the last
	   completed pass; last_uid: every source UID <= it is handled
	   (imported, found present, or in the item log) */
	uint32_t src_uidvalidity, src_uidnext, last_uid;
	uint64_t src_highestmodseq;
	uint32_t src_messages;
	/* destination UIDVALIDITY and UIDNEXT right after our last commit:
	   mail at or above dst_uidnext is not known to us */
	uint32_t dst_uidvalidity, dst_uidnext;
	uint32_t dst_messages;
	/* counters of the last run (expunged is not kept), and totals */
	struct migrate_counters counters;
	uint32_t total_imported;
	/* a running pass: the messages and bytes it means to import (what
	   the listing found; an estimate from STATUS before it) */
	uint32_t planned;
	uint64_t planned_bytes;
	const char *status;
	const char *last_error;
	/* "yes", "partial" or "no" */
	const char *uids_preserved;
	time_t started, finished;

	ARRAY_TYPE(migrate_uid_run) uidmap;
	ARRAY_TYPE(migrate_item) items;
};

struct migrate_run_state {
	const char *status;
	const char *last_error;
	time_t started, finished;
	uint32_t folders;
	/* imported, existing, failed, deferred, bytes (the others are not
	   kept) */
	struct migrate_counters counters;
	/* while running: what the run means to import */
	uint32_t planned;
	uint64_t planned_bytes;
	unsigned int throttle_waits, reconnects;
};

struct migrate_state;

int migrate_state_open(struct mail_user *user, const char *dict_uri,
		       struct migrate_state **state_r, const char **error_r);
void migrate_state_close(struct migrate_state **state);

/* 1 = found, 0 = no state, -1 = error */
int migrate_state_folder_get(struct migrate_state *state,
			     const char *src_name, pool_t pool,
			     struct migrate_folder_state *fs_r,
			     const char **error_r);
/* Write the folder's state, uidmap and items in one transaction. */
int migrate_state_folder_set(struct migrate_state *state,
			     const char *src_name,
			     const struct migrate_folder_state *fs,
			     const char **error_r);
/* The same in two steps: the folder's state is taken at _begin() and
   written at _commit() (a batch's record waits until its mail is
   durable), or dropped by _rollback() */
struct dict_transaction_context *
migrate_state_folder_set_begin(struct migrate_state *state,
			       const char *src_name,
			       const struct migrate_folder_state *fs);
int migrate_state_folder_set_commit(struct migrate_state *state,
				    struct dict_transaction_context **trans,
				    const char **error_r);
void migrate_state_folder_set_rollback(struct dict_transaction_context **trans);
int migrate_state_folders_get(struct migrate_state *state, pool_t pool,
			      ARRAY_TYPE(const_string) *names,
			      const char **error_r);
int migrate_state_folders_set(struct migrate_state *state,
			      const ARRAY_TYPE(const_string) *names,
			      const char **error_r);
int migrate_state_run_get(struct migrate_state *state, pool_t pool,
			  struct migrate_run_state *run_r,
			  const char **error_r);
int migrate_state_run_set(struct migrate_state *state,
			  const struct migrate_run_state *run,
			  const char **error_r);

/* The POP3 UIDL pass's item log (key pop3/items), apart from the
   folders' (its uids are POP3 message numbers). get: 0 = none. */
int migrate_state_pop3_items_get(struct migrate_state *state, pool_t pool,
				 ARRAY_TYPE(migrate_item) *items,
				 const char **error_r);
int migrate_state_pop3_items_set(struct migrate_state *state,
				 const ARRAY_TYPE(migrate_item) *items,
				 const char **error_r);

/* The Sieve scripts' item log (key sieve): one item a script, uid = its
   position in the source's listing, message_id = its source name,
   subject = its destination name, reason = what was done */
int migrate_state_sieve_get(struct migrate_state *state, pool_t pool,
			    ARRAY_TYPE(migrate_item) *items,
			    const char **error_r);
int migrate_state_sieve_set(struct migrate_state *state,
			    const ARRAY_TYPE(migrate_item) *items,
			    const char **error_r);

/* What each script's source text was when a run last stored it (key
   sieve-sources, migrate-sieve.c's encoding): 1 = found, 0 = none */
int migrate_state_sieve_sources_get(struct migrate_state *state, pool_t pool,
				    const char **value_r, const char **error_r);
int migrate_state_sieve_sources_set(struct migrate_state *state,
				    const char *value, const char **error_r);

/* Take the user's run lock. 1 = taken, 0 = held by another live run
   (holder in error_r), -1 = error. */
int migrate_state_lock(struct migrate_state *state, unsigned int ttl_secs,
		       const char **error_r);
int migrate_state_unlock(struct migrate_state *state, const char **error_r);

/* Forget state (not mail) of one folder, or of all folders if NULL. */
/* The state's folders that wanted (an -m argument: the source name, raw
   or decoded, or the destination name) names. 1 = found (names_r holds
   their source names), 0 = none (*error_r names the closest ones), -1 =
   error. */
int migrate_state_folders_find(struct migrate_state *state,
			       const char *wanted, pool_t pool,
			       ARRAY_TYPE(const_string) *names_r,
			       const char **error_r);
/* Forget the state of the folders wanted names (see above; NULL = every
   folder and the run). 0 = nothing matched (*error_r says so). */
int migrate_state_reset(struct migrate_state *state, const char *wanted,
			const char **error_r);

/* Encoding, exposed for unit tests */
void migrate_folder_state_encode(const struct migrate_folder_state *fs,
				 string_t *dest);
int migrate_folder_state_decode(const char *str, pool_t pool,
				struct migrate_folder_state *fs,
				const char **error_r);
/* The run record (its own keys; older states' folder-encoded run records
   are read too) */
void migrate_run_state_encode(const struct migrate_run_state *run,
			      string_t *dest);
int migrate_run_state_decode(const char *str, pool_t pool,
			     struct migrate_run_state *run,
			     const char **error_r);
void migrate_uidmap_encode(const ARRAY_TYPE(migrate_uid_run) *map,
			   string_t *dest);
int migrate_uidmap_decode(const char *str, ARRAY_TYPE(migrate_uid_run) *map);
void migrate_items_encode(const ARRAY_TYPE(migrate_item) *items,
			  string_t *dest);
int migrate_items_decode(const char *str, pool_t pool,
			 ARRAY_TYPE(migrate_item) *items);

/* Append src->dst to the map, extending the last run when contiguous. */
void migrate_uidmap_add(ARRAY_TYPE(migrate_uid_run) *map,
			uint32_t src_uid, uint32_t dst_uid);
/* 0 if not mapped */
uint32_t migrate_uidmap_lookup(const ARRAY_TYPE(migrate_uid_run) *map,
			       uint32_t src_uid);
void migrate_uidmap_remove(ARRAY_TYPE(migrate_uid_run) *map,
			   uint32_t src_uid);

const char *migrate_item_class_name(enum migrate_item_class class);
int migrate_item_class_parse(const char *name,
			     enum migrate_item_class *class_r);
/* The one rule of what an item means: open until a later pass resolves
   it, and then it explains a source message the destination lacks. A
   vanished message was deleted at the source: it is not missing at the
   destination, so its item is never open. Used by verify (both modes),
   a folder's result and the exit code, and the skip of unchanged folders. */
bool migrate_item_is_open(const struct migrate_item *item);
/* An open item that makes its folder "completed-with-errors" (exit 2):
   every class but those left out on purpose (filtered, duplicate) */
bool migrate_item_is_error(const struct migrate_item *item);

#endif
