#ifndef MIGRATE_IMPORTER_H
#define MIGRATE_IMPORTER_H

/* One folder's pass over one source connection, and migrate verify's
   comparison. The importer knows nothing of a run: it works with the
   context below, and tells whoever drives it (the run's process or a
   worker) what happens through the hooks. */

#include "migrate-error.h"
#include "migrate-folder-map.h"
#include "migrate-state.h"

struct mail_user;
struct migrate_settings;
struct migrate_source_conn;
struct migrate_identity_set;
struct mail_save_context;
struct istream;

struct migrate_verify_missing {
	uint32_t uid;
	const char *message_id, *subject;
};

/* What a run did with a folder; printed and stored (the folder state's
   status) as migrate_folder_result_to_str() says */
enum migrate_folder_result {
	/* not part of this run (-m names another folder) */
	MIGRATE_FOLDER_RESULT_NONE = 0,
	MIGRATE_FOLDER_RESULT_COMPLETED,
	/* some messages are in the item log */
	MIGRATE_FOLDER_RESULT_COMPLETED_WITH_ERRORS,
	/* nothing changed at the source since the last completed pass */
	MIGRATE_FOLDER_RESULT_UNCHANGED,
	/* the folder map (or its name) leaves it out */
	MIGRATE_FOLDER_RESULT_SKIPPED,
	/* folder->error says why; the run went on */
	MIGRATE_FOLDER_RESULT_FAILED,
	/* verify: every source message is accounted for */
	MIGRATE_FOLDER_RESULT_OK,
	/* verify: some are missing with nothing in the item log */
	MIGRATE_FOLDER_RESULT_MISSING,

	MIGRATE_FOLDER_RESULT_COUNT
};

/* "completed", "completed-with-errors"...; NULL for _NONE */
const char *migrate_folder_result_to_str(enum migrate_folder_result result);
/* The result a stored status names: 0, or -1 for a text that isn't one
   ("running", "queued") */
int migrate_folder_result_parse(const char *str,
				enum migrate_folder_result *result_r);

/* One source folder and what the run did with it */
struct migrate_folder {
	const char *src_name;
	struct migrate_folder_dest dest;
	/* earlier passes imported this folder into another destination
	   folder (the folder map changed since): that copy is left in place */
	const char *dest_previous;
	/* bytes earlier passes imported into dest (plan, from the state) */
	uint64_t state_bytes;
	enum migrate_folder_src_flags src_flags;
	enum migrate_special_use src_special_use;
	bool subscribed;
	/* the LIST reply's name held a NUL byte: src_name is cut there and
	   can't address the folder, which is skipped */
	bool src_name_nul;
	/* the name is longer than MIGRATE_MAX_SOURCE_NAME: src_name is a
	   shortened copy for messages, the folder is skipped */
	bool src_name_too_long;

	/* from the pipelined STATUS round */
	bool have_status;
	uint32_t status_messages, status_uidnext, status_uidvalidity;
	uint64_t status_highestmodseq;
	uoff_t status_size;

	/* result of this run */
	enum migrate_folder_result result;
	const char *error;
	uint32_t src_messages, dst_messages;
	struct migrate_counters counters;
	uint32_t unexplained;
	/* verify --identities: source messages missing at the destination
	   with nothing in the item log to explain them */
	ARRAY(struct migrate_verify_missing) missing;
	/* what this run means to import here: from STATUS and the state
	   until the folder is listed, then what the listing found */
	uint32_t planned;
	uint64_t planned_bytes;
	uint64_t duration_msecs;
	const char *uids_preserved;
	/* migrate_folder_finished was sent for this folder */
	bool finished_event;
};
ARRAY_DEFINE_TYPE(migrate_folder, struct migrate_folder *);

/* What a driver counts besides messages: failed messages (for
   migrate_errors_max), reconnects, throttle waits and the item log's
   entries by class. A worker hands its own back to the run as one, added
   with migrate_live_counters_add(). */
struct migrate_live_counters {
	unsigned int item_errors;
	unsigned int reconnects, throttle_waits;
	/* messages put in the item log, by class (a UID counts once per
	   folder pass) */
	unsigned int items_by_class[MIGRATE_ITEM_CLASS_COUNT];
};

/* What the importer and its driver both read while a folder is imported:
   the driver's progress line, pacing and throttling use it live. */
struct migrate_importer_live {
	/* the folder being imported, its messages handled and listed */
	const char *cur_folder;
	uint32_t cur_done, cur_total;
	/* bytes saved (pacing by migrate_max_bytes_per_second) */
	uint64_t bytes_done;
	/* folders finished: progress for the reconnect budget */
	uint64_t progress;
	/* bodies in flight: lowered by throttling, raised per saved
	   message by the driver's pacing */
	unsigned int pipeline_depth;
	/* the driver's counters, the item log's entries among them */
	struct migrate_live_counters counters;
};

/* What the importer asks of its driver. context is the importer
   context's hook_context. Calls that can fail return the error through
   error_r; the importer keeps it as its own. */
struct migrate_importer_hooks {
	/* A message failed (it goes to the item log): it counts against
	   migrate_errors_max */
	void (*item_error)(void *context);
	/* TRUE once the failed messages reached migrate_errors_max */
	bool (*errors_max_reached)(void *context, const char **error_r);
	/* After each saved message: keep under the rate caps, keep the run
	   lock alive, show progress */
	void (*saved)(void *context);
	/* Back off for a throttling reply: -1 when
	   migrate_throttle_max_wait is exhausted */
	int (*throttle)(void *context, const char *why, const char **error_r);
	/* Reconnect the source connection after a temporary failure: 0
	   when connected again, -1 (with the error's class) when giving
	   up */
	int (*reconnect)(void *context, const char *why,
			 enum migrate_error *code_r, const char **error_r);
	/* Gmail: TRUE if this X-GM-LABELS label names a folder this
	   migration imports */
	bool (*gmail_label_imported)(void *context, const char *label);
	/* A folder's listing found what its pass imports */
	void (*plan_folder)(void *context, struct migrate_folder *folder,
			    uint32_t messages, uint64_t bytes);
	/* Save the running pass's counts, for status from elsewhere */
	void (*save_progress)(void *context);
	/* Before mailbox_save_begin(): the driver may add to the save (the
	   POP3 UIDL); reading body must leave it at its start */
	void (*save_begin)(void *context, const struct migrate_folder *folder,
			   struct mail_save_context *save,
			   struct istream *body, uoff_t body_size);
	/* Around creating and opening a destination folder, or NULL */
	void (*dest_lock)(void *context);
	void (*dest_unlock)(void *context);
};

/* What one source connection's importer works with */
struct migrate_importer_ctx {
	/* results that outlive a folder (errors, verify's missing list) */
	pool_t pool;
	struct mail_user *user;
	struct event *event;
	const struct migrate_settings *set;
	struct migrate_state *state;
	struct migrate_source_conn *conn;

	/* delete mode: expunge at the destination what the source lost */
	bool delete_mode;
	/* verify: compare identity multisets, not just counts */
	bool verify_identities;
	/* each committed batch is made durable with syncfs() */
	bool batch_fsync;
	/* the source advertises X-GM-EXT-1 */
	bool gmail_ext;
	/* some folder is a virtual "all mail" (\All): remember every
	   identity in seen */
	bool have_all_folder;
	/* identities already imported in earlier folders (cross-folder
	   memory, migrate_dedupe_across_folders and Gmail's All Mail) */
	struct migrate_identity_set *seen;

	/* the sticky error: the first failure that stops a folder or the
	   run, NONE/NULL while there is none */
	enum migrate_error error_code;
	const char *error;

	struct migrate_importer_live *live;
	const struct migrate_importer_hooks *hooks;
	void *hook_context;
};

/* One folder's import: passes until it is done. Returns 0 when the run
   goes on (folder->result says how the folder went), -1 when the run
   can't (ctx->error_code, ctx->error). */
int migrate_importer_folder(struct migrate_importer_ctx *ctx,
			    struct migrate_folder *folder);
/* migrate verify of one folder */
int migrate_importer_verify(struct migrate_importer_ctx *ctx,
			    struct migrate_folder *folder);
/* Before Gmail's All Mail: remember the identities of the mail in every
   label folder at the destination (ctx->seen). */
int migrate_importer_remember_labelled(struct migrate_importer_ctx *ctx,
	const ARRAY_TYPE(migrate_folder) *folders);

/* The last run ended without a word (killed, crashed): its last commit may
   have left mail in the destination's files that the index doesn't know.
   Resync the user's INBOX before anything is scanned: mdbox rebuilds the
   whole storage from its files then, instead of during the import, when a
   folder already scanned would get that mail a second time. (sdbox and
   Maildir find such mail per folder: migrate_importer_folder().) */
void migrate_importer_dest_recover(struct mail_user *user,
				   struct event *event);

/* dest += src, counter by counter */
void migrate_live_counters_add(struct migrate_live_counters *dest,
			       const struct migrate_live_counters *src);

/* The migrate_folder_finished event (a passthrough child of event) with
   the folder's result and counters */
struct event *
migrate_folder_finished_event(struct event *event,
			      const struct migrate_folder *folder);

#endif
