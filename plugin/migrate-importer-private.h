#ifndef MIGRATE_IMPORTER_PRIVATE_H
#define MIGRATE_IMPORTER_PRIVATE_H

/* What the files of the importer share (see migrate-importer.c): the
   state of one folder's pass and the functions each file offers the
   others. Nothing outside migrate-importer*.c includes this. */

#include "hash.h"
#include "seq-range-array.h"
#include "mail-types.h"
#include "migrate-importer.h"

struct mailbox;
struct mailbox_status;
struct mailbox_transaction_context;
struct mail_save_context;
struct migrate_reply;
struct istream;

/* UIDs per FETCH command: small enough that a NO for one poison message
   costs little, large enough to keep command overhead negligible */
#define MIGRATE_FETCH_CHUNK 50
#define MIGRATE_LIST_CHUNK 5000
/* A listing range wider than this many UIDs is asked for with UID SEARCH
   first: a server that announces UIDNEXT 4294967295 for a few messages
   would otherwise cost 859k listing commands */
#define MIGRATE_LIST_SPARSE_MIN (MIGRATE_LIST_CHUNK * 20)
/* The highest UID lib-storage is asked to keep. Dovecot's index can't
   hold a UID whose successor isn't below 2^32-1 (it panics in
   mail_index_append_finish_uids_full()), and a folder whose UIDNEXT is
   near the top can take no more mail: the storage assigns UIDs above this
   (the folder reports uids=partial). */
#define MIGRATE_SAVE_UID_MAX ((uint32_t)-1 - 0x1000000)
/* failed commits of one folder retried after a resync */
#define MIGRATE_COMMIT_RETRIES 3

/* a batch is committed after this many seconds, however small */
#define MIGRATE_BATCH_MAX_SECS 5

/* keywords kept per message (Dovecot's own IMAP server has no limit, but
   no real client sets more than a handful) */
#define MIGRATE_MAX_KEYWORDS_PER_MSG 256

enum migrate_msg_action {
	MIGRATE_MSG_IMPORT = 0,
	MIGRATE_MSG_PRESENT,
	MIGRATE_MSG_DEFERRED,
	MIGRATE_MSG_TOO_BIG,
	MIGRATE_MSG_DUPLICATE,
	MIGRATE_MSG_DONE,
	MIGRATE_MSG_FAILED,
};

struct migrate_msg {
	uint32_t uid, seq;
	uoff_t size;
	time_t internaldate;
	int tz_offset;
	enum mail_flags flags;
	const char *const *keywords;
	const char *identity;
	const char *message_id, *subject, *date;
	/* Gmail (X-GM-EXT-1): the message's id, and for All Mail whether
	   one of its X-GM-LABELS is a folder this migration imports */
	const char *gm_msgid;
	bool gm_labels_known, gm_labelled;
	enum migrate_msg_action action;
	bool listed;
	/* matched to destination mail by identity in this pass */
	uint32_t claimed_dst_uid;
	/* its body arrived, but its batch was rolled back: the next pass
	   fetches it again (it didn't vanish) */
	bool rolled_back;
	/* no destination mail has its identity, but some has its header
	   fingerprint with another size: check the size of the body */
	bool verify_size;
	/* listed without its headers (migrate_importer ->list_light): no
	   identity, Message-ID, subject or date until
	   migrate_importer_describe_items() */
	bool headers_unknown;
};

struct migrate_seq_uid {
	uint32_t seq, uid;
};

struct migrate_dest_ids {
	ARRAY_TYPE(uint32_t) uids;
	unsigned int used;
};

/* One folder's import: the state of the folder, the source's EXAMINE,
   the destination mailbox and open transaction, the listed messages and
   what the passes decided about them */
struct migrate_importer {
	struct migrate_importer_ctx *ctx;
	struct migrate_folder *folder;
	pool_t pool;
	struct event *event;

	struct migrate_folder_state fs;
	bool have_state, state_valid;

	/* All Mail relisted from UID 1 (delete mode): UIDs below this were
	   handled by earlier runs */
	uint32_t relist_below;

	/* source EXAMINE results */
	uint32_t uidvalidity, uidnext, exists;
	uint64_t highestmodseq;

	struct mailbox *box;
	struct mailbox_transaction_context *trans;
	unsigned int trans_msgs;
	uoff_t trans_bytes;
	uint32_t trans_last_uid;
	/* the last save in the open transaction failed: see
	   migrate_importer_rollback() */
	bool trans_save_failed;
	/* a batch was rolled back: its messages need another pass */
	bool batch_rolled_back;
	/* the destination quota refused a message: from now on every
	   message is committed on its own, so a refusal costs no other */
	bool quota_single;
	unsigned int commit_retries;
	/* a failed commit made the storage resync (rebuild) its index: it
	   may now hold mail no pass has seen (a crashed run's files), at
	   any UID. The pass saves nothing more; the next one reads every
	   destination message the UID map doesn't own. */
	bool dest_resynced;
	/* the server refused the flag sync: don't record its HIGHESTMODSEQ */
	bool flag_sync_failed;
	bool preserve_uids;
	bool uids_preserve_failed;
	/* the lowest UID the open transaction may still ask for: lib-storage
	   trusts a requested UID (Maildir derives first_recent_uid from it),
	   so one below the folder's UIDNEXT must never be requested */
	uint32_t save_min_uid;

	ARRAY(struct migrate_msg *) msgs;
	HASH_TABLE(void *, struct migrate_msg *) msgs_by_uid;
	HASH_TABLE(const char *, struct migrate_dest_ids *) dest_ids;
	/* the header fingerprints of dest_ids */
	HASH_TABLE(const char *, void *) dest_fingerprints;
	/* mail matched by the size of its body during the fetch */
	bool late_claims;
	/* destination UID -> the vanished source UID the state had it for
	   (migrate_importer_relink_vanished()) */
	HASH_TABLE(void *, void *) relinked;
	/* sequence -> UID for FETCH replies whose UID follows the body */
	ARRAY(struct migrate_seq_uid) seq_uids;
	/* UID -> index + 1 in fs.items, for its first items_indexed
	   entries (a server inventing UIDs makes the item log long) */
	HASH_TABLE(void *, void *) items_by_uid;
	unsigned int items_indexed;
	/* a message's keywords were cut at MIGRATE_MAX_KEYWORDS_PER_MSG */
	bool keywords_capped;
	/* when the open transaction saved its first message */
	time_t trans_started;
	/* migrate_fsync=batch: the last commit's syncfs() still running in
	   the background, and the state record that waits for it */
	struct migrate_syncfs *durable_sync;
	struct dict_transaction_context *durable_record;

	/* UIDs saved in the open transaction, in order */
	ARRAY_TYPE(uint32_t) pending_uids;
	/* msgs[] before this index are all handled */
	unsigned int handled_idx;
	/* a listing command failed: some UIDs may be missing from msgs */
	bool listing_incomplete;
	/* the UIDs the listing in flight asked for: replies for others are
	   dropped (a hostile server can't fill memory with them) */
	const ARRAY_TYPE(seq_range) *list_asked;
	/* the listing came pipelined with EXAMINE, up to prefetch_end */
	bool prefetched;
	uint32_t prefetch_start, prefetch_end;
	/* a folder's first import into an empty destination folder: nothing
	   to match by identity, so the listing asks for no headers (the
	   source reads no message for it); prefetch_light is what the
	   prefetched listing was */
	bool list_light, prefetch_light;
	/* the flag sync FETCH sent in the same burst, still unread */
	unsigned int flags_tag;
	const char *flags_cmd;
	/* flags_cmd asks for every message's flags (no CHANGEDSINCE) */
	bool flags_full;
	unsigned int pass_no;
	/* UIDs that failed (FETCH or destination) in this folder's run:
	   later passes of the same run don't retry them */
	ARRAY_TYPE(seq_range) failed_uids;
	/* UIDs counted in ctx->live->counters: a later pass meeting the
	   same message again doesn't count it twice */
	ARRAY_TYPE(seq_range) counted_uids;
	struct timeval started;
};

/* migrate-importer.c: the sticky error, the driver's hooks, a folder's
   context */

/* The error that stops the run (ctx->error_code, ctx->error): the first
   one set stays until migrate_importer_clear_error() */
void migrate_importer_set_error(struct migrate_importer_ctx *ctx,
				enum migrate_error code, const char *fmt, ...)
	ATTR_FORMAT(3, 4);
/* A reconnect recovered from it: the pass goes on */
void migrate_importer_clear_error(struct migrate_importer_ctx *ctx);
/* This folder failed, the run goes on: folder->error says why (the first
   reason set stays) */
void migrate_importer_folder_failed(struct migrate_importer *imp,
				    const char *fmt, ...) ATTR_FORMAT(2, 3);

/* The driver's throttle backoff: -1 with ctx->error when its budget is
   used up */
int migrate_importer_throttle(struct migrate_importer_ctx *ctx,
			      const char *why);
/* TRUE (with ctx->error) once migrate_errors_max is reached */
bool
migrate_importer_errors_max_reached(struct migrate_importer_ctx *ctx);
/* One folder's importer (imp is the caller's), and its end */
void migrate_importer_init(struct migrate_importer *imp,
			   struct migrate_importer_ctx *ctx,
			   struct migrate_folder *folder);
void migrate_importer_deinit(struct migrate_importer *imp);

/* migrate-importer-source.c */

/* Parse FETCH items into msg. Returns the UID, 0 if none. */
uint32_t migrate_importer_parse_fetch(struct migrate_importer *imp,
				      const struct imap_arg *args,
				      struct migrate_msg *msg,
				      const unsigned char **hdr_r,
				      size_t *hdr_size_r);
/* The parser splits "BODY[HEADER.FIELDS (A B)]" into an atom, a list and
   an atom; rejoin so items come in name/value pairs. */
const struct imap_arg *
migrate_importer_fetch_args_normalize(const struct imap_arg *args);
void migrate_importer_seq_expunge(struct migrate_importer *imp, uint32_t seq);
uint32_t migrate_importer_seq_lookup(struct migrate_importer *imp,
				     uint32_t seq);
/* The flag sync's FETCH sent with EXAMINE, if its replies are still
   unread: read them now */
void migrate_importer_drain_flags(struct migrate_importer *imp);
/* EXAMINE; with prefetch_uidset, the listing of those UIDs is pipelined
   right behind it (one round trip instead of two). imp->prefetched says
   whether that listing is complete. Returns 1 when the folder is open, 0
   when this folder failed (folder->error; the run goes on), -1 when the
   run fails (ctx->error). */
int migrate_importer_examine(struct migrate_importer *imp,
			     const char *prefetch_uidset,
			     const char *flags_cmd);
/* List the given UIDs: one command per MIGRATE_LIST_CHUNK UIDs of a
   range (a sparse range costs nothing extra), single UIDs batched.
   Returns 1, or -1 when the run fails (ctx->error). */
int migrate_importer_list(struct migrate_importer *imp,
			  const ARRAY_TYPE(seq_range) *all_uids);
/* UID SEARCH UID <uidset> into uids_r (from imp->pool). Returns 1, 0 when
   the server refused (error_r set), -1 when the run fails (ctx->error). */
int migrate_importer_search_uids(struct migrate_importer *imp,
				 const char *uidset,
				 ARRAY_TYPE(seq_range) *uids_r,
				 const char **error_r);
/* The items of messages listed without their headers (->list_light)
   get their Message-ID, subject and date: one header FETCH for them all.
   Returns 0, -1 when the run fails (ctx->error). */
int migrate_importer_describe_items(struct migrate_importer *imp);
/* Messages the listing couldn't read (the server said NO) still exist:
   record them as failed items so the high-water mark can't pass them
   silently and a later run retries them. */
int migrate_importer_list_missing(struct migrate_importer *imp,
				  const ARRAY_TYPE(seq_range) *range);
/* The flag sync's FETCH of UIDs 1..max_uid: only what changed since the
   state's HIGHESTMODSEQ when CONDSTORE allows (full_r=FALSE), every
   message's flags otherwise (full_r=TRUE). NULL when there is nothing to
   ask: no known message, or src_modseq (the source's HIGHESTMODSEQ now)
   equals the state's. */
const char *
migrate_importer_flags_cmd(struct migrate_importer *imp, uint32_t max_uid,
			   uint64_t src_modseq, bool *full_r);

/* migrate-importer-dest.c */
/* The folder's error: "Destination folder NAME: WHAT: " and lib-storage's
   last error of box (WHAT may be NULL), code MIGRATE_ERROR_DESTINATION */
void migrate_importer_dest_failed(struct migrate_importer *imp,
				  struct mailbox *box, const char *what);

/* The last commit's mail is durable and its state record written: waits
   for its syncfs() (_wait) or only looks (_poll). Returns 0, -1 when the
   run fails (ctx->error). */
int migrate_importer_durable_wait(struct migrate_importer *imp);
int migrate_importer_durable_poll(struct migrate_importer *imp);
/* Whether the destination folder holds mail already (TRUE also when it
   can't be read). Doesn't create it. */
bool migrate_importer_dest_has_mail(struct migrate_importer *imp);
/* Returns 1 when the folder is open, 0 when it can't exist at the destination
   (folder->error says why; the run goes on), -1 when the run fails. */
int migrate_importer_dest_open(struct migrate_importer *imp);
void migrate_importer_dest_status(struct migrate_importer *imp,
				  struct mailbox_status *status_r);
/* Read the identities of destination mail with these UIDs. Returns 0, or
   -1 when the run fails (ctx->error). */
int migrate_importer_dest_scan_uids(struct migrate_importer *imp,
				    const ARRAY_TYPE(seq_range) *uids);
/* Read the identities of destination mail with UID >= min_uid (returns as
   migrate_importer_dest_scan_uids()). */
int migrate_importer_dest_scan(struct migrate_importer *imp, uint32_t min_uid);
/* Read the identities of every destination message the UID map doesn't
   own (after ->dest_resynced; returns as migrate_importer_dest_scan_uids()). */
int migrate_importer_dest_rescan(struct migrate_importer *imp);
/* Drop the open transaction. Its messages go back to IMPORT, so the high-water
   mark can't pass them and a later pass fetches them again. */
void migrate_importer_rollback(struct migrate_importer *imp);
/* Commit the open transaction (if any), then the state. Returns 0 (also
   when the batch was rolled back to be fetched again), -1 when the run
   fails (ctx->error). */
int migrate_importer_commit(struct migrate_importer *imp);
/* Stream one body into the destination. Returns 1 saved, 0 item failed,
   -1 run failure. */
int migrate_importer_save(struct migrate_importer *imp,
			  struct migrate_msg *msg, struct istream *body,
			  uoff_t body_size);
bool migrate_importer_batch_full(struct migrate_importer *imp);
/* Mail matched by identity (state lost, UIDVALIDITY changed, a crashed
   run's last batch) takes the source's current flags. Returns 0, or -1
   when the run fails (ctx->error). */
int migrate_importer_sync_claimed(struct migrate_importer *imp);
/* Imported mail takes the source's flag changes (delete mode: and loses
   what the source lost). A refused flag FETCH is a warning, retried next
   run. Returns 0, or -1 when the run fails (ctx->error). */
int migrate_importer_sync_flags(struct migrate_importer *imp, uint32_t max_uid,
				bool *full_r);

/* migrate-importer-fetch.c */

/* Fetch and save the bodies of every message marked IMPORT, pipelined.
   Returns 1 when done, 0 when throttled (run the pass again), -1. */
int migrate_importer_fetch_bodies(struct migrate_importer *imp);

/* migrate-importer-decide.c */

/* Claim a destination message with this identity; 0 if none left. */
uint32_t migrate_importer_dest_claim(struct migrate_importer *imp,
				     const char *identity);
/* msg is the destination mail dst_uid: link it in the UID map. If the
   state had that mail for a source UID that has vanished since, that
   mapping goes: delete mode must not expunge it as gone. */
void migrate_importer_link(struct migrate_importer *imp,
			   struct migrate_msg *msg, uint32_t dst_uid);
int migrate_importer_msg_cmp(struct migrate_msg *const *m1,
			     struct migrate_msg *const *m2);
void migrate_importer_items_clear(struct migrate_importer *imp);
struct migrate_item *
migrate_importer_find_item(struct migrate_importer *imp, uint32_t uid);
void migrate_importer_item(struct migrate_importer *imp,
			   const struct migrate_msg *msg,
			   enum migrate_item_class class, const char *reason);
void migrate_importer_item_resolved(struct migrate_importer *imp,
				    uint32_t uid);
/* All Mail: is this message labelled, i.e. imported through a label
   folder? X-GM-LABELS tells exactly (two deliveries of the same mail, one
   archived, stay two); without them, the identity of the mail in the
   label folders does. */
bool
migrate_importer_msg_gmail_labelled(struct migrate_importer *imp,
				    const struct migrate_msg *msg);
/* Decide per listed message: already there, import, defer, skip. */
void migrate_importer_classify(struct migrate_importer *imp);
/* New source UIDs while some the state knew have vanished: a message
   moved out and back (a new UID for the same mail), or a server that
   numbers mail afresh under the same UIDVALIDITY (GNU imap4d before a
   client has SELECTed the folder). The destination copies of the vanished
   UIDs are known to the state, so the scan for unknown destination mail
   didn't offer them: offer them now, before their twins are saved again.
   Costs a UID SEARCH and a header read of those copies, only then. */
int migrate_importer_relink_vanished(struct migrate_importer *imp,
				     uint32_t last_uid);
void migrate_importer_remember(struct migrate_importer *imp);
/* Move the high-water mark over every handled message, never past one
   still to be imported: a resumed run must find it again. */
void migrate_importer_advance(struct migrate_importer *imp);
bool migrate_importer_item_retryable(struct migrate_importer *imp,
				     const struct migrate_item *item);

#endif
