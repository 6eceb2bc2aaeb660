#ifndef MIGRATE_RUN_H
#define MIGRATE_RUN_H

#include "migrate-error.h"
#include "migrate-folder-map.h"
#include "migrate-state.h"
#include "migrate-importer.h"

struct mail_user;
struct migrate_settings;
struct migrate_source_conn;
struct migrate_sieve;

enum migrate_run_mode {
	/* import (migrate run) */
	MIGRATE_RUN_MODE_IMPORT = 0,
	/* connect, list and map, write nothing (migrate plan) */
	MIGRATE_RUN_MODE_PLAN,
	/* compare source and destination counts (migrate verify) */
	MIGRATE_RUN_MODE_VERIFY,
};

#define MIGRATE_PROGRESS_INTERVAL_MSECS 250
#define MIGRATE_PROGRESS_LOG_INTERVAL_MSECS (30*1000)

struct migrate_run_options {
	enum migrate_run_mode mode;
	/* expunge at the destination what we imported and the source no
	   longer has */
	bool delete;
	/* verify: compare identity multisets, not just counts */
	bool identities;
	/* only this source folder (decoded name or raw), or NULL */
	const char *folder;
	/* mail_fsync is off for this session (migrate_settings_prerun()):
	   each committed batch is made durable with syncfs() */
	bool batch_fsync;
};

struct migrate_run {
	pool_t pool;
	struct mail_user *user;
	struct event *event;
	const struct migrate_settings *set;
	struct migrate_run_options opts;
	struct migrate_state *state;
	struct migrate_source_conn *conn;
	struct migrate_folder_map *map;
	/* migrate_sieve: the scripts and what the run did with them */
	struct migrate_sieve *sieve;

	char src_delimiter;
	const char *src_ns_prefix;
	bool gmail;
	/* the source advertises X-GM-EXT-1: listings carry X-GM-MSGID, and
	   All Mail's X-GM-LABELS decide what is archived-only */
	bool gmail_ext;
	/* label -> 1 (names a migrated folder) or 2 (doesn't) */
	HASH_TABLE(const char *, void *) gmail_labels;
	/* some folder is a virtual "all mail" (\All): remember every
	   identity so it only brings what no other folder has */
	bool have_all_folder;
	ARRAY_TYPE(migrate_folder) folders;
	/* src_name -> folder (not those with src_name_nul) */
	HASH_TABLE(const char *, struct migrate_folder *) folders_by_name;
	/* LIST replies beyond MIGRATE_MAX_FOLDERS */
	unsigned int folders_over_limit;

	/* identities already imported in earlier folders, with
	   migrate_dedupe_across_folders and for Gmail's All Mail */
	struct migrate_identity_set *seen;

	enum migrate_error error_code;
	const char *error;
	unsigned int item_errors, reconnects, throttle_waits;
	/* what the importer updates as it goes: the current folder's
	   progress, bytes for pacing, the pipeline depth, the messages this
	   run put in the item log by class */
	struct migrate_importer_live live;
	/* the run state's final status (completed...), NULL until saved */
	const char *result;
	/* Reconnect budget per incident: reconnects in a row without
	   progress (mail committed, a folder done) since the last one;
	   live.progress is counted up, and compared with its value at the
	   last reconnect */
	unsigned int reconnect_streak;
	uint64_t progress_at_reconnect;
	unsigned int throttle_wait_secs;
	/* adaptive throttling: bodies in flight (live.pipeline_depth),
	   halved on every throttling reply and grown back by one per saved
	   message up to migrate_pipeline_depth; the backoff grows with
	   throttles in a row and starts over after a quiet minute */
	unsigned int throttle_streak;
	time_t last_throttle;
	time_t started;
	struct timeval started_tv;

	/* totals */
	uint32_t imported, existing, failed, deferred;
	uint64_t bytes;
	/* what the run means to import: the folders' planned added up */
	uint32_t planned;
	uint64_t planned_bytes;

	/* pacing (migrate_max_*_per_second, with live.bytes_done) and lock
	   renewal */
	uint32_t cur_done_total;
	struct timeval pace_start;
	time_t lock_renewed;
	/* migrate_max_connections: this run's slot, held to the end */
	struct migrate_conn_slot *conn_slot;
	/* migrate_pop3_uidls: the source's POP3 view (migrate-pop3.h) */
	struct migrate_pop3 *pop3;

	/* migrate_parallel_folders (migrate-workers.c): set while workers
	   run, and in a worker process (with worker) */
	struct migrate_workers *workers;
	unsigned int worker_slot_idx;
	bool worker;

	/* progress (of live.cur_folder) */
	struct timeval progress_shown;
	bool progress_tty;
};

/* Run one user's migration (or plan/verify). Returns 0 when everything
   went fine, -1 on failure (run->error_code, run->error). Per-folder
   results stay in run->folders. */
struct migrate_run *
migrate_run_init(struct mail_user *user, const struct migrate_run_options *opts);
int migrate_run_execute(struct migrate_run *run);
void migrate_run_deinit(struct migrate_run **run);

/* Reconnect after a temporary failure, with exponential backoff and
   jitter. Returns 0 when connected again, -1 when giving up. */
int migrate_run_reconnect(struct migrate_run *run, const char *why);
/* The wait before reconnect attempt number attempt (0 = the first):
   first_msecs doubled per attempt up to migrate_backoff_max, with
   jitter */
#define MIGRATE_RECONNECT_FIRST_MSECS 500
unsigned int migrate_backoff_msecs(struct migrate_run *run,
				   unsigned int first_msecs,
				   unsigned int attempt);
/* Back off for a throttling reply. -1 if migrate_throttle_max_wait is
   exhausted. */
int migrate_run_throttle(struct migrate_run *run, const char *why);
/* After each saved message: keep under the operator's rate caps and
   keep the run lock alive. */
void migrate_run_pace(struct migrate_run *run);
/* A message failed (it goes to the item log): counts against
   migrate_errors_max, one count per run across worker processes. */
void migrate_run_item_error(struct migrate_run *run);
/* TRUE (with run->error set) once the run's failed messages reached
   migrate_errors_max */
bool migrate_run_errors_max_reached(struct migrate_run *run);
/* A folder's listing found what its pass imports: the run's plan takes
   it instead of the estimate */
void migrate_run_plan_folder(struct migrate_run *run,
			     struct migrate_folder *folder,
			     uint32_t messages, uint64_t bytes);
/* Save the running pass's counts and plan in the run state, for status
   from another process (a no-op in a worker: its parent saves them) */
void migrate_run_save_progress(struct migrate_run *run);
/* The terminal progress line's totals: messages and MB done of planned,
   percent, rate, time left */
const char *migrate_run_progress_str(struct migrate_run *run);
/* Sleep on the ioloop */
void migrate_run_sleep(struct migrate_run *run, unsigned int msecs);
/* Renew the run lock when a third of migrate_lock_timeout has passed (a
   no-op in a worker: the run's process holds the lock) */
void migrate_run_lock_keep(struct migrate_run *run);

/* The importer's context for this run's (or worker's) source
   connection, with the run's hooks */
void migrate_run_importer_ctx(struct migrate_run *run,
			      struct migrate_importer_ctx *ctx_r);
/* The importer's calls, with this run's context: the importer's error
   becomes the run's */
int migrate_run_import_folder(struct migrate_run *run,
			      struct migrate_folder *folder);

/* Gmail: TRUE if this X-GM-LABELS label names a folder this migration
   imports (a user label, \Inbox, \Sent, \Draft...): mail carrying it
   arrives through that folder, not through All Mail. */
bool migrate_run_gmail_label_imported(struct migrate_run *run,
				      const char *label);

/* Exit code for doveadm (sysexits) */
int migrate_error_to_exit_code(enum migrate_error error);
/* Short name of the error class ("temp", "auth"...; "none") */
const char *migrate_error_name(enum migrate_error error);

#endif
