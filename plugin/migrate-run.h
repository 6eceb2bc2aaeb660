#ifndef MIGRATE_RUN_H
#define MIGRATE_RUN_H

#include "migrate-error.h"
#include "migrate-folder-map.h"
#include "migrate-state.h"
#include "migrate-importer.h"
#include "migrate-pacing.h"
#include "migrate-source-list.h"
#include "migrate-workers.h"

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

	/* the source's folders, delimiter and namespace prefix
	   (migrate-source-list.h), mapped and imported in place */
	struct migrate_source_list src;
	/* a Gmail source: X-GM-EXT-1 or a Gmail-like folder layout */
	bool gmail;
	/* label -> 1 (names a migrated folder) or 2 (doesn't) */
	HASH_TABLE(const char *, void *) gmail_labels;
	/* some folder is a virtual "all mail" (\All): remember every
	   identity so it only brings what no other folder has */
	bool have_all_folder;

	/* identities already imported in earlier folders, with
	   migrate_dedupe_across_folders and for Gmail's All Mail */
	struct migrate_identity_set *seen;

	enum migrate_error error_code;
	const char *error;
	/* what the importer updates as it goes: the current folder's
	   progress, bytes for pacing, the pipeline depth, and the run's
	   counters (failed messages, reconnects, throttle waits, the
	   messages this run put in the item log by class) */
	struct migrate_importer_live live;
	/* the run's source connection's pacing, throttling and reconnects
	   (with their counters) */
	struct migrate_pacing pacing;
	/* the run state's final status (completed...), NULL until saved */
	const char *result;
	time_t started;
	struct timeval started_tv;

	/* totals: the folders' counters added up */
	struct migrate_counters totals;
	/* what the run means to import: the folders' planned added up */
	uint32_t planned;
	uint64_t planned_bytes;

	/* lock renewal */
	time_t lock_renewed;
	/* migrate_max_connections: this run's slot, held to the end */
	struct migrate_conn_slot *conn_slot;
	/* migrate_pop3_uidls: the source's POP3 view (migrate-pop3.h) */
	struct migrate_pop3 *pop3;

	/* migrate_parallel_folders (migrate-workers.c): while workers run,
	   what they did so far */
	bool workers_running;
	struct migrate_workers_progress workers;

	/* progress (of live.cur_folder) */
	struct timeval progress_shown;
	bool progress_tty;
};

/* The run's error (run->error_code, run->error): the first one set
   stays. Returns FALSE (nothing changed) when the run failed already. */
bool migrate_run_fail(struct migrate_run *run, enum migrate_error code,
		      const char *fmt, ...) ATTR_FORMAT(3, 4);

/* Run one user's migration (or plan/verify). Returns 0 when everything
   went fine, -1 on failure (run->error_code, run->error). Per-folder
   results stay in run->folders. */
struct migrate_run *
migrate_run_init(struct mail_user *user, const struct migrate_run_options *opts);
int migrate_run_execute(struct migrate_run *run);
void migrate_run_deinit(struct migrate_run **run);

/* A folder's listing found what its pass imports: the run's plan takes
   it instead of the estimate */
void migrate_run_plan_folder(struct migrate_run *run,
			     struct migrate_folder *folder,
			     uint32_t messages, uint64_t bytes);
/* Save the running pass's counts and plan in the run state, for status
   from another process */
void migrate_run_save_progress(struct migrate_run *run);
/* The terminal progress line's totals: messages and MB done of planned,
   percent, rate, time left */
const char *migrate_run_progress_str(struct migrate_run *run);
/* Sleep on the ioloop */
void migrate_run_sleep(struct migrate_run *run, unsigned int msecs);
/* Renew the run lock when a third of migrate_lock_timeout has passed */
void migrate_run_lock_keep(struct migrate_run *run);

/* The importer's context for this run's source connection, with the
   run's hooks (the workers build theirs from it: the template) */
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

#endif
