/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "strnum.h"
#include "ioloop.h"
#include "time-util.h"
#include "imap-arg.h"
#include "imap-util.h"
#include "mail-storage-private.h"
#include "mail-storage-settings.h"
#include "mail-namespace.h"
#include "mail-user.h"
#include "migrate-settings.h"
#include "migrate-compat.h"
#include "migrate-source-conn.h"
#include "migrate-source-list.h"
#include "migrate-gmail.h"
#include "migrate-identity.h"
#include "migrate-pacing.h"
#include "migrate-run.h"
#include "migrate-pop3.h"
#include "migrate-sieve.h"
#include "migrate-conn-slots.h"
#include "migrate-workers.h"
#include "migrate-quota.h"

#include <stdio.h>
#include <unistd.h>

void migrate_run_sleep(struct migrate_run *run, unsigned int msecs)
{
	migrate_pacing_sleep(&run->pacing, msecs);
}

/* Keep the run lock alive: called while saving, between folders and
   around every wait, so a long listing or throttle wait can't let it
   expire under a live run. */
void migrate_run_lock_keep(struct migrate_run *run)
{
	const struct migrate_settings *set = run->set;
	const char *error;

	if (run->state == NULL || run->opts.mode != MIGRATE_RUN_MODE_IMPORT ||
	    run->lock_renewed + (time_t)set->lock_timeout_secs / 3 >=
	    ioloop_time)
		return;
	run->lock_renewed = ioloop_time;
	if (migrate_state_lock(run->state, set->lock_timeout_secs, &error) < 0)
		e_warning(run->event, "Renewing the run lock: %s", error);
}

static void migrate_run_progress(struct migrate_run *run);

static void migrate_run_hook_lock_keep(void *context)
{
	migrate_run_lock_keep(context);
}

/* The progress line, after a saved message: a timeout can't draw it, the
   run's ioloop doesn't run while the source connection waits on its own */
static void migrate_run_progress_tick(struct migrate_run *run)
{
	unsigned int interval = run->progress_tty ?
		MIGRATE_PROGRESS_INTERVAL_MSECS :
		MIGRATE_PROGRESS_LOG_INTERVAL_MSECS;

	if (run->workers_running ||
	    timeval_diff_msecs(&ioloop_timeval, &run->progress_shown) <
	    (long long)interval)
		return;
	run->progress_shown = ioloop_timeval;
	migrate_run_progress(run);
}

static void migrate_run_pace(struct migrate_run *run)
{
	migrate_run_lock_keep(run);
	migrate_run_progress_tick(run);
	migrate_pacing_saved(&run->pacing);
}

bool migrate_run_fail(struct migrate_run *run, enum migrate_error code,
		      const char *fmt, ...)
{
	va_list args;

	i_assert(code != MIGRATE_ERROR_NONE);
	if (run->error_code != MIGRATE_ERROR_NONE)
		return FALSE;
	va_start(args, fmt);
	run->error_code = code;
	run->error = p_strdup_vprintf(run->pool, fmt, args);
	va_end(args);
	return TRUE;
}

/* Messages and bytes this run saved so far, the workers' included */
static void migrate_run_done(struct migrate_run *run, uint32_t *messages_r,
			     uint64_t *bytes_r)
{
	struct migrate_folder *folder;

	*messages_r = 0;
	*bytes_r = 0;
	array_foreach_elem(&run->src.folders, folder) {
		*messages_r += folder->counters.imported;
		*bytes_r += folder->counters.bytes;
	}
	if (run->workers_running) {
		*messages_r += run->workers.saved;
		*bytes_r += run->workers.bytes;
	}
}

/* "1h02m", "3m05s", "12s" */
static const char *migrate_run_duration_str(uint64_t secs)
{
	if (secs >= 3600) {
		return t_strdup_printf("%"PRIu64"h%02um", secs / 3600,
				       (unsigned int)(secs % 3600) / 60);
	}
	if (secs >= 60) {
		return t_strdup_printf("%um%02us", (unsigned int)secs / 60,
				       (unsigned int)secs % 60);
	}
	return t_strdup_printf("%us", (unsigned int)secs);
}

/* The run's part of the terminal progress line: messages and MB done of
   planned, percent, rate and time left ("?" until there is a rate) */
const char *migrate_run_progress_str(struct migrate_run *run)
{
	uint32_t done, percent;
	uint64_t bytes, secs;
	double rate;
	const char *eta = "?";

	migrate_run_done(run, &done, &bytes);
	percent = run->planned == 0 ? 0 :
		(uint32_t)I_MIN((uint64_t)done * 100 / run->planned, 100);
	secs = timeval_diff_msecs(&ioloop_timeval, &run->started_tv) / 1000;
	rate = secs == 0 ? 0 : (double)done / secs;
	if (rate > 0 && run->planned >= done) {
		eta = migrate_run_duration_str(
			(uint64_t)((run->planned - done) / rate));
	}
	return t_strdup_printf("total %u/%u msgs (%u%%), %.1f/%.1f MB, "
			       "%.1f msgs/s, ETA %s", done, run->planned,
			       percent, bytes / (1024.0*1024.0),
			       run->planned_bytes / (1024.0*1024.0), rate,
			       eta);
}

/* The progress line while workers run */
static void migrate_run_workers_progress(struct migrate_run *run)
{
	const struct migrate_workers_progress *w = &run->workers;

	if (run->progress_tty) {
		fprintf(stderr, "\r%s: %u/%u folders, %s (%u workers)\033[K",
			run->user->username, w->folders_done, w->folders,
			migrate_run_progress_str(run), w->workers);
		fflush(stderr);
	} else {
		e_info(run->event, "Progress: %u/%u folders done, %"PRIu64
		       " messages imported (%u workers)", w->folders_done,
		       w->folders, (uint64_t)w->saved, w->workers);
	}
}

static void migrate_run_progress(struct migrate_run *run)
{
	if (run->workers_running) {
		migrate_run_workers_progress(run);
		return;
	}
	if (run->live.cur_folder == NULL)
		return;
	if (run->progress_tty) {
		fprintf(stderr, "\r%s: %s %u/%u msgs, %s, %u throttle "
			"waits\033[K", run->user->username, run->live.cur_folder,
			run->live.cur_done, run->live.cur_total,
			migrate_run_progress_str(run),
			run->live.counters.throttle_waits);
		fflush(stderr);
	} else {
		e_info(run->event, "Progress: folder %s: %u/%u messages",
		       run->live.cur_folder, run->live.cur_done,
		       run->live.cur_total);
	}
}

struct migrate_run *
migrate_run_init(struct mail_user *user, const struct migrate_run_options *opts)
{
	struct migrate_run *run;
	pool_t pool;

	pool = pool_alloconly_create("migrate run", 4096);
	run = p_new(pool, struct migrate_run, 1);
	run->pool = pool;
	run->user = user;
	run->opts = *opts;
	run->opts.folder = p_strdup(pool, opts->folder);
	run->event = event_create(user->event);
	event_add_category(run->event, &event_category_migrate);
	event_add_str(run->event, "user", user->username);
	event_set_append_log_prefix(run->event, "migrate: ");
	migrate_source_list_init(&run->src, pool);
	run->seen = migrate_identity_set_create();
	run->pacing.event = run->event;
	run->pacing.live = &run->live;
	run->pacing.keep_alive = migrate_run_hook_lock_keep;
	run->pacing.context = run;
	run->started = ioloop_time;
	run->started_tv = ioloop_timeval;
	return run;
}

void migrate_run_deinit(struct migrate_run **_run)
{
	struct migrate_run *run = *_run;

	*_run = NULL;
	if (run->conn != NULL)
		migrate_source_conn_destroy(&run->conn);
	migrate_pop3_free(&run->pop3);
	migrate_conn_slot_release(&run->conn_slot);
	if (run->map != NULL)
		migrate_folder_map_deinit(&run->map);
	if (run->state != NULL)
		migrate_state_close(&run->state);
	migrate_identity_set_destroy(&run->seen);
	migrate_source_list_deinit(&run->src);
	if (hash_table_is_created(run->gmail_labels))
		hash_table_destroy(&run->gmail_labels);
	event_unref(&run->event);
	pool_unref(&run->pool);
}

static bool migrate_run_gmail_label_find(struct migrate_run *run,
					 const char *label)
{
	struct migrate_folder *folder;

	array_foreach_elem(&run->src.folders, folder) {
		if (folder->dest.skip || folder->dest.vname == NULL ||
		    folder->dest.gmail_all_mail)
			continue;
		if (migrate_gmail_label_names_folder(label, folder->src_name,
				folder->src_special_use |
				folder->dest.special_use))
			return TRUE;
	}
	return FALSE;
}

/* All Mail lists every message with its labels: look each label up once */
bool migrate_run_gmail_label_imported(struct migrate_run *run,
				      const char *label)
{
	void *value;
	bool imported;

	if (!hash_table_is_created(run->gmail_labels)) {
		hash_table_create(&run->gmail_labels, run->pool, 16,
				  str_hash, strcmp);
	}
	value = hash_table_lookup(run->gmail_labels, label);
	if (value != NULL)
		return POINTER_CAST_TO(value, uintptr_t) == 1;
	imported = migrate_run_gmail_label_find(run, label);
	label = p_strdup(run->pool, label);
	hash_table_insert(run->gmail_labels, label,
			  POINTER_CAST(imported ? 1 : 2));
	return imported;
}

/* The importer's hooks: what the run does when the importer reports or
   asks for something */

static void migrate_run_hook_item_error(void *context)
{
	struct migrate_run *run = context;

	run->live.counters.item_errors++;
}

static bool migrate_run_hook_errors_max_reached(void *context,
						const char **error_r)
{
	struct migrate_run *run = context;
	unsigned int total = run->live.counters.item_errors;

	if (run->set->errors_max == 0 || total < run->set->errors_max)
		return FALSE;
	*error_r = t_strdup_printf("Stopped after %u failed messages "
				   "(migrate_errors_max)", total);
	return TRUE;
}

static void migrate_run_hook_saved(void *context)
{
	migrate_run_pace(context);
}

static int migrate_run_hook_throttle(void *context, const char *why,
				     const char **error_r)
{
	struct migrate_run *run = context;

	return migrate_pacing_throttle(&run->pacing, why, error_r);
}

static int migrate_run_hook_reconnect(void *context, const char *why,
				      enum migrate_error *code_r,
				      const char **error_r)
{
	struct migrate_run *run = context;

	return migrate_pacing_reconnect(&run->pacing, why, code_r, error_r);
}

static bool migrate_run_hook_gmail_label_imported(void *context,
						  const char *label)
{
	return migrate_run_gmail_label_imported(context, label);
}

static void migrate_run_hook_plan_folder(void *context,
					 struct migrate_folder *folder,
					 uint32_t messages, uint64_t bytes)
{
	migrate_run_plan_folder(context, folder, messages, bytes);
}

static void migrate_run_hook_save_progress(void *context)
{
	migrate_run_save_progress(context);
}

static void
migrate_run_hook_save_begin(void *context, const struct migrate_folder *folder,
			    struct mail_save_context *save,
			    struct istream *body, uoff_t body_size)
{
	struct migrate_run *run = context;

	migrate_pop3_save_uidl(run->pop3, folder, save, body, body_size);
}

static const struct migrate_importer_hooks migrate_run_importer_hooks = {
	.item_error = migrate_run_hook_item_error,
	.errors_max_reached = migrate_run_hook_errors_max_reached,
	.saved = migrate_run_hook_saved,
	.throttle = migrate_run_hook_throttle,
	.reconnect = migrate_run_hook_reconnect,
	.gmail_label_imported = migrate_run_hook_gmail_label_imported,
	.plan_folder = migrate_run_hook_plan_folder,
	.save_progress = migrate_run_hook_save_progress,
	.save_begin = migrate_run_hook_save_begin,
	/* no dest_lock: one process opens destination folders */
};

void migrate_run_importer_ctx(struct migrate_run *run,
			      struct migrate_importer_ctx *ctx_r)
{
	i_zero(ctx_r);
	ctx_r->pool = run->pool;
	ctx_r->user = run->user;
	ctx_r->event = run->event;
	ctx_r->set = run->set;
	ctx_r->state = run->state;
	ctx_r->conn = run->conn;
	ctx_r->delete_mode = run->opts.delete;
	ctx_r->verify_identities = run->opts.identities;
	ctx_r->batch_fsync = run->opts.batch_fsync;
	ctx_r->gmail_ext = run->src.gmail_ext;
	ctx_r->have_all_folder = run->have_all_folder;
	ctx_r->seen = run->seen;
	ctx_r->live = &run->live;
	ctx_r->hooks = &migrate_run_importer_hooks;
	ctx_r->hook_context = run;
}

/* The importer's sticky error becomes the run's when the importer says
   the run can't go on */
static int migrate_run_importer_done(struct migrate_run *run,
				     const struct migrate_importer_ctx *ctx,
				     int ret)
{
	if (ret < 0) {
		i_assert(ctx->error_code != MIGRATE_ERROR_NONE);
		(void)migrate_run_fail(run, ctx->error_code, "%s", ctx->error);
	}
	return ret;
}

int migrate_run_import_folder(struct migrate_run *run,
			      struct migrate_folder *folder)
{
	struct migrate_importer_ctx ctx;

	migrate_run_importer_ctx(run, &ctx);
	return migrate_run_importer_done(run, &ctx,
		migrate_importer_folder(&ctx, folder));
}

static int migrate_run_verify_folder(struct migrate_run *run,
				     struct migrate_folder *folder)
{
	struct migrate_importer_ctx ctx;

	migrate_run_importer_ctx(run, &ctx);
	return migrate_run_importer_done(run, &ctx,
		migrate_importer_verify(&ctx, folder));
}

static int migrate_run_remember_labelled(struct migrate_run *run)
{
	struct migrate_importer_ctx ctx;

	migrate_run_importer_ctx(run, &ctx);
	return migrate_run_importer_done(run, &ctx,
		migrate_importer_remember_labelled(&ctx, &run->src.folders));
}

/* The source's INBOX, when it is migrated */
static const struct migrate_folder *migrate_run_inbox(struct migrate_run *run)
{
	struct migrate_folder *folder;

	array_foreach_elem(&run->src.folders, folder) {
		if (strcasecmp(folder->src_name, "INBOX") == 0 &&
		    !folder->dest.skip)
			return folder;
	}
	return NULL;
}

/* A POP3 failure is the run's error (doveadm shows it), unless an
   earlier one (the IMAP side's) is there: then it is logged */
static void migrate_run_pop3_error(void *context, enum migrate_error code,
				   const char *error)
{
	struct migrate_run *run = context;

	if (!migrate_run_fail(run, code, "%s", error))
		e_error(run->event, "%s", error);
}

/* What the POP3 side (migrate-pop3.c) works with */
static void migrate_run_pop3_ctx(struct migrate_run *run,
				 struct migrate_pop3_ctx *ctx_r)
{
	i_zero(ctx_r);
	ctx_r->pool = run->pool;
	ctx_r->user = run->user;
	ctx_r->event = run->event;
	ctx_r->set = run->set;
	ctx_r->state = run->state;
	ctx_r->inbox = migrate_run_inbox(run);
	ctx_r->pacing = &run->pacing;
	ctx_r->counters = &run->live.counters;
	ctx_r->error = migrate_run_pop3_error;
	ctx_r->context = run;
}

/* NAMESPACE, LIST, LSUB (migrate-source-list.c) */
static int migrate_run_list(struct migrate_run *run)
{
	enum migrate_error code;
	const char *error;

	if (migrate_source_list_folders(&run->src, run->conn, run->event,
					run->set->source_prefix,
					&code, &error) < 0) {
		(void)migrate_run_fail(run, code, "%s", error);
		return -1;
	}
	run->gmail = run->src.gmail_ext;
	return 0;
}

static void migrate_run_dest_special_use(struct migrate_run *run,
					 struct migrate_folder_map_settings *set)
{
	struct mail_namespace *ns;
	const char *const *boxes;
	enum migrate_special_use uses;
	unsigned int i, bit;
	const char *error;

	ns = mail_namespace_find_inbox(run->user->namespaces);
	set->dest_sep = mail_namespace_get_sep(ns);
	set->dest_prefix = ns->prefix;
	set->dest_layout = migrate_dest_layout_get(
		mail_namespace_get_default_storage(ns)->name,
		mailbox_list_get_driver_name(ns->list));
	/* name, flags, name, flags, ... */
	boxes = migrate_compat_ns_special_use_mailboxes(ns);
	for (; boxes[0] != NULL; boxes += 2) {
		if (migrate_special_use_parse_list(boxes[1], &uses,
						   &error) < 0)
			continue;
		for (i = 0, bit = 1; i < MIGRATE_SPECIAL_USE_COUNT;
		     i++, bit <<= 1) {
			if ((uses & bit) != 0 &&
			    set->special_use_dest[i] == NULL)
				set->special_use_dest[i] = t_strconcat(
					ns->prefix, boxes[0], NULL);
		}
	}
}

/* Would the destination storage create this name? */
static bool migrate_dest_name_valid(struct migrate_run *run, const char *vname,
				    const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mail_error mail_error;
	bool valid;

	ns = mail_namespace_find(run->user->namespaces, vname);
	box = mailbox_alloc(ns->list, vname, 0);
	valid = mailbox_verify_create_name(box) == 0;
	if (!valid)
		*error_r = t_strdup(mailbox_get_last_error(box, &mail_error));
	mailbox_free(&box);
	return valid;
}

/* The folder map knows no storage: a name part the destination reserves
   ("dbox-Mails" for dbox, "cur", "new", "tmp" for Maildir) gets a '_'
   appended, so one hostile name can't fail the run; a name that is still
   refused is skipped with the reason. */
static void migrate_run_dest_name_check(struct migrate_run *run,
					struct migrate_folder *folder,
					const struct migrate_folder_map_settings *set)
{
	const char sep[2] = { set->dest_sep, '\0' };
	const char *vname = folder->dest.vname, *prefix, *error, *first_error;
	const char **parts;
	unsigned int i, j, count, tries;
	size_t prefix_len = strlen(set->dest_prefix);
	string_t *str;

	if (vname == NULL || strcmp(vname, "INBOX") == 0 ||
	    migrate_dest_name_valid(run, vname, &first_error))
		return;
	if (strncmp(vname, set->dest_prefix, prefix_len) != 0)
		prefix_len = 0;
	prefix = t_strndup(vname, prefix_len);
	parts = (const char **)t_strsplit(vname + prefix_len, sep);
	count = str_array_length(parts);
	str = t_str_new(128);
	for (tries = 0; tries < count; tries++) {
		/* the first prefix of the name that is refused */
		for (i = 0; i < count; i++) {
			str_truncate(str, 0);
			str_append(str, prefix);
			for (j = 0; j <= i; j++) {
				if (j > 0)
					str_append_c(str, set->dest_sep);
				str_append(str, parts[j]);
			}
			if (!migrate_dest_name_valid(run, str_c(str), &error))
				break;
		}
		if (i == count)
			break;
		parts[i] = t_strconcat(parts[i], "_", NULL);
	}
	str_truncate(str, 0);
	str_append(str, prefix);
	str_append(str, t_strarray_join((const char *const *)parts, sep));
	if (!migrate_dest_name_valid(run, str_c(str), &error)) {
		folder->dest.skip = TRUE;
		folder->dest.reason = p_strdup_printf(run->pool,
			"the destination refuses the name %s: %s",
			vname, first_error);
		return;
	}
	folder->dest.vname = p_strdup(run->pool, str_c(str));
	folder->dest.reason = p_strdup_printf(run->pool, "%s%sdestination "
		"reserved name (%s): renamed to %s",
		folder->dest.reason == NULL ? "" : folder->dest.reason,
		folder->dest.reason == NULL ? "" : "; ", first_error,
		folder->dest.vname);
}

static int migrate_run_map_folders(struct migrate_run *run)
{
	struct migrate_folder_map_settings map_set;
	struct migrate_folder_src src;
	struct migrate_folder *folder;
	enum migrate_special_use gmail_skip;
	const char *error;

	i_zero(&map_set);
	migrate_run_dest_special_use(run, &map_set);
	map_set.automap = run->set->automap;
	map_set.rules_path = run->set->folder_map;
	map_set.include = run->set->include;
	map_set.exclude = run->set->exclude;
	if (migrate_special_use_parse_list(run->set->gmail_skip,
					   &gmail_skip, &error) < 0) {
		(void)migrate_run_fail(run, MIGRATE_ERROR_CONFIG,
			"Invalid setting migrate_gmail_skip=%s: %s",
			run->set->gmail_skip, error);
		return -1;
	}
	map_set.gmail_skip = gmail_skip;
	if (!run->gmail) {
		/* a Gmail-like layout without X-GM-EXT-1 */
		array_foreach_elem(&run->src.folders, folder) {
			if (migrate_gmail_is_name(folder->src_name,
						  run->src.delimiter))
				run->gmail = TRUE;
		}
	}
	map_set.gmail = run->gmail;
	array_foreach_elem(&run->src.folders, folder)
		map_set.source_flagged |= folder->src_special_use;
	if (migrate_folder_map_init(&map_set, &run->map, &error) < 0) {
		(void)migrate_run_fail(run, MIGRATE_ERROR_CONFIG, "%s", error);
		return -1;
	}
	array_foreach_elem(&run->src.folders, folder) {
		i_zero(&src);
		src.name = folder->src_name;
		src.delimiter = run->src.delimiter;
		src.ns_prefix = run->src.ns_prefix == NULL ? "" :
			run->src.ns_prefix;
		src.flags = folder->src_flags |
			(folder->subscribed ?
			 MIGRATE_FOLDER_SRC_FLAG_SUBSCRIBED : 0);
		src.special_use = folder->src_special_use;
		migrate_folder_map_lookup(run->map, &src, run->pool,
					  &folder->dest);
		if (folder->src_name_nul) {
			folder->dest.skip = TRUE;
			folder->dest.vname = NULL;
			folder->dest.reason = "name holds a NUL byte: it can't "
				"be sent back to the server";
		} else if (folder->src_name_too_long) {
			folder->dest.skip = TRUE;
			folder->dest.vname = NULL;
			folder->dest.reason = p_strdup_printf(run->pool,
				"the source name is longer than %u bytes",
				MIGRATE_MAX_SOURCE_NAME);
		} else if (!folder->dest.skip) T_BEGIN {
			migrate_run_dest_name_check(run, folder, &map_set);
		} T_END;
		if (folder->dest.skip)
			folder->result = MIGRATE_FOLDER_RESULT_SKIPPED;
		else if (folder->dest.gmail_all_mail)
			run->have_all_folder = TRUE;
	}
	return 0;
}

static bool migrate_folder_selected(struct migrate_run *run,
				    struct migrate_folder *folder)
{
	if (run->opts.folder == NULL)
		return TRUE;
	return migrate_folder_name_matches(run->opts.folder,
					   folder->src_name,
					   folder->dest.decoded_name,
					   folder->dest.vname);
}

/* -m that names no source folder fails, naming the closest ones */
static int migrate_run_check_selected(struct migrate_run *run)
{
	ARRAY_TYPE(const_string) names;
	struct migrate_folder *folder;

	if (run->opts.folder == NULL)
		return 0;
	t_array_init(&names, array_count(&run->src.folders));
	array_foreach_elem(&run->src.folders, folder) {
		if (migrate_folder_selected(run, folder))
			return 0;
		array_push_back(&names, folder->dest.decoded_name != NULL &&
				folder->dest.decoded_name[0] != '\0' ?
				&folder->dest.decoded_name : &folder->src_name);
	}
	/* no folder was touched: the result table stays empty */
	array_foreach_elem(&run->src.folders, folder)
		folder->result = MIGRATE_FOLDER_RESULT_NONE;
	(void)migrate_run_fail(run, MIGRATE_ERROR_NOTFOUND,
		"No source folder '%s' (-m); closest: %s", run->opts.folder,
		migrate_folder_closest_names(run->opts.folder, &names));
	return -1;
}

/* One pipelined STATUS round for every selected folder not skipped: the
   no-change pass costs a single round trip */
static int migrate_run_status(struct migrate_run *run)
{
	ARRAY_TYPE(migrate_folder) folders;
	struct migrate_folder *folder;
	enum migrate_error code;
	const char *error;

	t_array_init(&folders, array_count(&run->src.folders));
	array_foreach_elem(&run->src.folders, folder) {
		if (!folder->dest.skip && migrate_folder_selected(run, folder))
			array_push_back(&folders, &folder);
	}
	if (migrate_source_list_status(&run->src, run->conn, &folders,
				       &code, &error) < 0) {
		(void)migrate_run_fail(run, code, "%s", error);
		return -1;
	}
	return 0;
}

/* Nothing changed on the source since the last completed pass? */
static bool migrate_run_folder_unchanged(struct migrate_run *run,
					 struct migrate_folder *folder)
{
	struct migrate_folder_state fs;
	const struct migrate_item *item;
	enum migrate_folder_result result;
	const char *error;
	int ret;

	if (!folder->have_status || folder->status_highestmodseq == 0 ||
	    run->opts.delete)
		return FALSE;
	ret = migrate_state_folder_get(run->state, folder->src_name,
				       pool_datastack_create(), &fs, &error);
	if (ret <= 0 || fs.status == NULL ||
	    migrate_folder_result_parse(fs.status, &result) < 0 ||
	    result != MIGRATE_FOLDER_RESULT_COMPLETED)
		return FALSE;
	array_foreach(&fs.items, item) {
		if (migrate_item_is_open(item))
			return FALSE;
	}
	if (fs.src_uidvalidity != folder->status_uidvalidity ||
	    fs.src_uidnext != folder->status_uidnext ||
	    fs.src_messages != folder->status_messages ||
	    fs.src_highestmodseq != folder->status_highestmodseq ||
	    fs.dest_vname == NULL ||
	    strcmp(fs.dest_vname, folder->dest.vname) != 0)
		return FALSE;
	folder->src_messages = folder->status_messages;
	folder->dst_messages = fs.dst_messages;
	folder->uids_preserved = fs.uids_preserved;
	return TRUE;
}

static void migrate_run_subscribe(struct migrate_run *run,
				  struct migrate_folder *folder)
{
	struct mail_namespace *ns;
	struct mailbox *box;

	ns = mail_namespace_find(run->user->namespaces, folder->dest.vname);
	box = mailbox_alloc(ns->list, folder->dest.vname, 0);
	(void)mailbox_set_subscribed(box, TRUE);
	mailbox_free(&box);
}

static int migrate_run_take_slot(struct migrate_run *run);

static int migrate_folder_order(struct migrate_folder *const *f1,
				struct migrate_folder *const *f2)
{
	/* INBOX first; Gmail's All Mail last, after every label is known */
	int o1 = strcasecmp((*f1)->src_name, "INBOX") == 0 ? 0 :
		((*f1)->dest.gmail_all_mail ? 2 : 1);
	int o2 = strcasecmp((*f2)->src_name, "INBOX") == 0 ? 0 :
		((*f2)->dest.gmail_all_mail ? 2 : 1);

	if (o1 != o2)
		return o1 - o2;
	return strcmp((*f1)->src_name, (*f2)->src_name);
}

/* Connect again after the workers closed this process's connection */
static int migrate_run_reconnect_for_leftovers(struct migrate_run *run)
{
	enum migrate_error code;
	const char *error;

	if (migrate_source_conn_is_connected(run->conn))
		return 0;
	if (run->set->max_connections > 0 && run->conn_slot == NULL &&
	    migrate_run_take_slot(run) < 0)
		return -1;
	if (migrate_source_conn_connect(run->conn, &code, &error) < 0) {
		(void)migrate_run_fail(run, code, "%s", error);
		return -1;
	}
	return 0;
}


/* The folders status lists: written before the pass too, so that status
   from another process shows a running first pass's folders */
static void migrate_run_save_folder_list(struct migrate_run *run)
{
	ARRAY_TYPE(const_string) names;
	struct migrate_folder *folder;
	const char *error;

	t_array_init(&names, array_count(&run->src.folders));
	array_foreach_elem(&run->src.folders, folder) {
		if (!folder->dest.skip)
			array_push_back(&names, &folder->src_name);
	}
	if (migrate_state_folders_set(run->state, &names, &error) < 0)
		e_error(run->event, "%s", error);
}

/* The folder's state as earlier passes left it (data stack); a state
   that can't be read is warned about and taken as none */
static int migrate_run_folder_state(struct migrate_run *run,
				    const struct migrate_folder *folder,
				    struct migrate_folder_state *fs_r)
{
	const char *error;
	int ret;

	i_zero(fs_r);
	ret = migrate_state_folder_get(run->state, folder->src_name,
				       pool_datastack_create(), fs_r, &error);
	if (ret < 0)
		e_warning(run->event, "%s", error);
	return ret;
}

/* What a folder's pass will import, until its listing tells: from
   STATUS, less what earlier passes handled */
static void migrate_run_estimate_folder(struct migrate_run *run,
					struct migrate_folder *folder)
{
	struct migrate_folder_state fs;
	int ret;

	if (!folder->have_status)
		return;
	ret = migrate_run_folder_state(run, folder, &fs);
	if (ret <= 0 || fs.src_uidvalidity != folder->status_uidvalidity) {
		folder->planned = folder->status_messages;
		folder->planned_bytes = folder->status_size;
	} else {
		folder->planned = folder->status_uidnext > fs.last_uid + 1 ?
			folder->status_uidnext - 1 - fs.last_uid : 0;
		folder->planned = I_MIN(folder->planned,
					folder->status_messages);
		folder->planned_bytes = folder->planned == 0 ||
			folder->status_size <= fs.counters.bytes ? 0 :
			folder->status_size - fs.counters.bytes;
	}
	run->planned += folder->planned;
	run->planned_bytes += folder->planned_bytes;
}

void migrate_run_plan_folder(struct migrate_run *run,
			     struct migrate_folder *folder,
			     uint32_t messages, uint64_t bytes)
{
	run->planned = run->planned - folder->planned + messages;
	run->planned_bytes = run->planned_bytes - folder->planned_bytes +
		bytes;
	folder->planned = messages;
	folder->planned_bytes = bytes;
	migrate_run_save_progress(run);
}

/* How many of the jobs (in folder order) workers may take. Without
   X-GM-EXT-1, Gmail's All Mail (last in that order) is left to this
   process: it reads the label folders' mail from the destination once
   every label folder is done, and the workers' folders are done when
   migrate_workers_run() returns. */
static unsigned int
migrate_run_worker_jobs(struct migrate_folder *const *jobs,
			unsigned int count, bool labelled_known)
{
	unsigned int i;

	if (labelled_known)
		return count;
	for (i = 0; i < count; i++) {
		if (jobs[i]->dest.gmail_all_mail)
			return i;
	}
	return count;
}

/* The workers' hooks: what the run's process does while they run */

static void migrate_run_hook_workers_start(void *context)
{
	struct migrate_run *run = context;

	migrate_source_conn_disconnect(run->conn);
	migrate_conn_slot_release(&run->conn_slot);
	run->workers_running = TRUE;
}

static void
migrate_run_hook_workers_tick(void *context,
			      const struct migrate_workers_progress *progress)
{
	struct migrate_run *run = context;

	run->workers = *progress;
	migrate_run_lock_keep(run);
	/* the workers' counts, for status from another process */
	migrate_run_save_progress(run);
}

static void
migrate_run_hook_workers_progress(void *context,
	const struct migrate_workers_progress *progress)
{
	struct migrate_run *run = context;

	run->workers = *progress;
	migrate_run_workers_progress(run);
}

static const struct migrate_workers_hooks migrate_run_workers_hooks = {
	.start = migrate_run_hook_workers_start,
	.tick = migrate_run_hook_workers_tick,
	.progress = migrate_run_hook_workers_progress,
};

/* migrate_parallel_folders: the folders in worker processes, from this
   run's importer context and pacing (the template) */
static int migrate_run_workers(struct migrate_run *run,
			       struct migrate_folder *const *folders,
			       unsigned int count, bool *used_r)
{
	struct migrate_importer_ctx tmpl;
	struct migrate_workers_params params;
	enum migrate_error code;
	const char *error;
	int ret;

	migrate_run_importer_ctx(run, &tmpl);
	i_zero(&params);
	params.importer = &tmpl;
	params.pacing = &run->pacing;
	params.progress_interval_msecs = run->progress_tty ?
		MIGRATE_PROGRESS_INTERVAL_MSECS :
		MIGRATE_PROGRESS_LOG_INTERVAL_MSECS;
	params.hooks = &migrate_run_workers_hooks;
	params.context = run;
	ret = migrate_workers_run(&params, folders, count, used_r,
				  &run->live.counters, &code, &error);
	run->workers_running = FALSE;
	if (ret < 0)
		(void)migrate_run_fail(run, code, "%s", error);
	return ret;
}

static int migrate_run_import(struct migrate_run *run)
{
	struct migrate_folder *folder;
	ARRAY_TYPE(migrate_folder) jobs;
	struct migrate_folder *const *job_folders;
	unsigned int job_count;
	bool used_workers;
	/* with X-GM-EXT-1, All Mail's X-GM-LABELS tell what is labelled */
	bool labelled_known = run->src.gmail_ext;
	int ret = 0;

	array_sort(&run->src.folders, migrate_folder_order);
	migrate_run_save_folder_list(run);
	run->progress_tty = isatty(STDERR_FILENO) != 0;
	run->progress_shown = ioloop_timeval;
	t_array_init(&jobs, array_count(&run->src.folders));
	array_foreach_elem(&run->src.folders, folder) {
		if (folder->dest.skip || !migrate_folder_selected(run, folder))
			continue;
		migrate_run_lock_keep(run);
		if (migrate_run_folder_unchanged(run, folder)) {
			folder->result = MIGRATE_FOLDER_RESULT_UNCHANGED;
			/* a subscription added on the source since the last
			   pass still has to reach the destination */
			if (folder->subscribed && run->set->subscriptions)
				migrate_run_subscribe(run, folder);
			continue;
		}
		array_push_back(&jobs, &folder);
		T_BEGIN {
			migrate_run_estimate_folder(run, folder);
		} T_END;
	}
	migrate_run_save_progress(run);

	job_folders = array_get(&jobs, &job_count);
	ret = migrate_run_workers(run, job_folders,
				  migrate_run_worker_jobs(job_folders, job_count,
							  labelled_known),
				  &used_workers);
	/* every folder without workers; with them, what they left undone */
	array_foreach_elem(&jobs, folder) {
		if (ret < 0)
			break;
		if (folder->result != MIGRATE_FOLDER_RESULT_NONE)
			continue;
		if (used_workers && migrate_run_reconnect_for_leftovers(run) < 0) {
			ret = -1;
			break;
		}
		migrate_run_lock_keep(run);
		if (folder->dest.gmail_all_mail && !labelled_known) {
			/* All Mail comes last: every label folder is done */
			labelled_known = TRUE;
			if (migrate_run_remember_labelled(run) < 0) {
				ret = -1;
				break;
			}
		}
		if (migrate_run_import_folder(run, folder) < 0) {
			/* the run can't go on (source gone, dest broken) */
			ret = -1;
			break;
		}
	}
	array_foreach_elem(&jobs, folder) {
		if (folder->result == MIGRATE_FOLDER_RESULT_NONE)
			continue;
		migrate_counters_add(&run->totals, &folder->counters);
	}
	if (run->progress_tty && (run->live.cur_total > 0 || used_workers))
		fprintf(stderr, "\r\033[K");

	migrate_run_save_folder_list(run);
	return ret;
}

static int migrate_run_verify(struct migrate_run *run)
{
	struct migrate_folder *folder, *failed = NULL;
	uint32_t unexplained = 0;
	/* with X-GM-EXT-1, All Mail's X-GM-LABELS tell what is labelled */
	bool labelled_known = run->src.gmail_ext;

	array_sort(&run->src.folders, migrate_folder_order);
	array_foreach_elem(&run->src.folders, folder) {
		if (folder->dest.skip || !migrate_folder_selected(run, folder))
			continue;
		if (folder->dest.gmail_all_mail && !labelled_known) {
			labelled_known = TRUE;
			if (migrate_run_remember_labelled(run) < 0)
				return -1;
		}
		if (migrate_run_verify_folder(run, folder) < 0)
			return -1;
		unexplained += folder->unexplained;
		if (folder->result == MIGRATE_FOLDER_RESULT_FAILED &&
		    failed == NULL)
			failed = folder;
	}
	if (failed != NULL) {
		/* a folder that couldn't be checked isn't verified */
		(void)migrate_run_fail(run, MIGRATE_ERROR_ITEMS,
			"verify: folder %s could not be checked: %s",
			failed->src_name, failed->error == NULL ?
			"unknown error" : failed->error);
		return -1;
	}
	if (unexplained > 0) {
		(void)migrate_run_fail(run, MIGRATE_ERROR_ITEMS,
			"verify: %u source messages are missing at the "
			"destination with no explanation in the item log",
			unexplained);
		return -1;
	}
	if (run->set->pop3_uidls) {
		struct migrate_pop3_ctx pop3_ctx;

		migrate_run_pop3_ctx(run, &pop3_ctx);
		if (migrate_pop3_verify(&pop3_ctx) < 0)
			return -1;
	}
	return 0;
}

/* What earlier passes did: the bytes they imported, and whether the
   folder map now sends the folder elsewhere (migrate-importer.c handles
   that the same way in a run) */
static void migrate_run_plan_state(struct migrate_run *run,
				   struct migrate_folder *folder)
{
	struct migrate_folder_state fs;
	int ret;

	if (run->state == NULL)
		return;
	ret = migrate_run_folder_state(run, folder, &fs);
	if (ret <= 0 || fs.dest_vname == NULL)
		return;
	if (strcmp(fs.dest_vname, folder->dest.vname) == 0) {
		folder->state_bytes = fs.counters.bytes;
		return;
	}
	folder->dest_previous = p_strdup(run->pool, fs.dest_vname);
	folder->dest.reason = p_strdup_printf(run->pool, "%s%sdestination "
		"changed since the last pass (was %s): %s is filled by "
		"identity, the copy in %s is left in place",
		folder->dest.reason == NULL ? "" : folder->dest.reason,
		folder->dest.reason == NULL ? "" : "; ",
		folder->dest_previous, folder->dest.vname,
		folder->dest_previous);
}

static void migrate_size_cb(const struct migrate_reply *reply,
			    uint64_t *size)
{
	const struct imap_arg *args = reply->args;
	const char *name, *value;
	uoff_t num;

	if (strcasecmp(reply->name, "FETCH") != 0)
		return;
	for (; !IMAP_ARG_IS_EOL(&args[0]) && !IMAP_ARG_IS_EOL(&args[1]);
	     args += 2) {
		if (imap_arg_get_atom(&args[0], &name) &&
		    strcasecmp(name, "RFC822.SIZE") == 0 &&
		    imap_arg_get_atom(&args[1], &value) &&
		    str_to_uoff(value, &num) == 0)
			*size += num;
	}
}

/* The folder's size when STATUS didn't tell (no STATUS=SIZE): the sum of
   its messages' RFC822.SIZE. 0 on success, -1 with error_r. */
static int migrate_run_folder_size(struct migrate_run *run,
				   struct migrate_folder *folder,
				   const char **error_r)
{
	enum migrate_error code;
	uint64_t size = 0;
	string_t *cmd = t_str_new(128);
	int ret;

	str_append(cmd, "EXAMINE ");
	if (!migrate_source_conn_append_mailbox(run->conn, cmd,
						folder->src_name)) {
		*error_r = "the folder name can't be sent to the server";
		return -1;
	}
	ret = migrate_source_conn_run(run->conn, str_c(cmd), NULL, NULL,
				      &code, error_r);
	if (ret > 0) {
		ret = migrate_source_conn_run(run->conn,
			"UID FETCH 1:* (RFC822.SIZE)",
			(migrate_untagged_callback_t *)migrate_size_cb, &size,
			&code, error_r);
	}
	if (ret <= 0)
		return -1;
	folder->status_size = size;
	return 0;
}

/* Does the source fit the destination quota? Per folder in run order, the
   bytes still to import add up; every folder from the one that reaches
   past the free space on says so with both figures. */
static void migrate_run_plan_quota(struct migrate_run *run)
{
	ARRAY_TYPE(migrate_folder) order;
	struct migrate_quota quota;
	struct migrate_folder *folder, *first_over = NULL;
	uint64_t total = 0, free_bytes;
	const char *error;
	int ret;

	ret = migrate_quota_get(run->user, &quota, &error);
	if (ret < 0)
		e_warning(run->event, "%s: the plan can't compare the "
			  "source with it", error);
	if (ret <= 0)
		return;
	free_bytes = migrate_quota_free(&quota);
	t_array_init(&order, array_count(&run->src.folders));
	array_append_array(&order, &run->src.folders);
	array_sort(&order, migrate_folder_order);
	array_foreach_elem(&order, folder) {
		/* All Mail only brings what no label has: its size would
		   count the labelled mail twice */
		if (folder->dest.skip || !migrate_folder_selected(run, folder) ||
		    folder->dest.gmail_all_mail || !folder->have_status)
			continue;
		if (folder->status_messages > 0 && folder->status_size == 0 &&
		    migrate_run_folder_size(run, folder, &error) < 0) {
			e_warning(run->event, "Folder %s: can't read the "
				  "size of its messages (%s): the quota "
				  "comparison leaves it out",
				  folder->src_name, error);
			continue;
		}
		total += folder->status_size > folder->state_bytes ?
			folder->status_size - folder->state_bytes : 0;
		if (total <= free_bytes)
			continue;
		if (first_over == NULL)
			first_over = folder;
		folder->dest.reason = p_strdup_printf(run->pool, "%s%s"
			"over the destination quota: %s to import up to "
			"here, %s free (quota root %s)",
			folder->dest.reason == NULL ? "" : folder->dest.reason,
			folder->dest.reason == NULL ? "" : "; ",
			migrate_quota_size_str(total),
			migrate_quota_size_str(free_bytes), quota.root_name);
	}
	if (first_over == NULL) {
		e_debug(run->event, "Destination quota: %s to import, %s free "
			"(quota root %s)", migrate_quota_size_str(total),
			migrate_quota_size_str(free_bytes), quota.root_name);
		return;
	}
	e_warning(run->event, "Destination quota: the source holds %s to "
		  "import, but quota root %s has only %s free (%s of %s "
		  "used): the run will stop at folder %s (exit 73) unless "
		  "the quota is raised", migrate_quota_size_str(total),
		  quota.root_name, migrate_quota_size_str(free_bytes),
		  migrate_quota_size_str(quota.bytes_used),
		  migrate_quota_size_str(quota.bytes_limit),
		  first_over->src_name);
}

static int migrate_run_plan(struct migrate_run *run)
{
	struct migrate_folder *folder;
	struct migrate_pop3_ctx pop3_ctx;
	const char *summary;

	array_foreach_elem(&run->src.folders, folder) {
		if (folder->dest.skip || !migrate_folder_selected(run, folder))
			continue;
		T_BEGIN {
			migrate_run_plan_state(run, folder);
		} T_END;
	}
	T_BEGIN {
		migrate_run_plan_quota(run);
	} T_END;
	if (run->set->pop3_uidls) {
		migrate_run_pop3_ctx(run, &pop3_ctx);
		if (migrate_pop3_plan(&pop3_ctx, &summary) < 0)
			e_warning(run->event, "%s", summary);
		else
			e_info(run->event, "%s", summary);
	}
	return 0;
}

static void migrate_run_save_run_state(struct migrate_run *run,
				       const char *status)
{
	struct migrate_run_state rs;
	const char *error;

	i_zero(&rs);
	rs.status = status;
	rs.last_error = run->error;
	rs.started = run->started;
	rs.finished = strcmp(status, "running") == 0 ? 0 : ioloop_time;
	rs.folders = array_count(&run->src.folders);
	rs.counters = run->totals;
	if (strcmp(status, "running") == 0) {
		/* the totals above are added up when the pass ends */
		migrate_run_done(run, &rs.counters.imported,
				 &rs.counters.bytes);
		rs.planned = run->planned;
		rs.planned_bytes = run->planned_bytes;
	}
	rs.throttle_waits = run->live.counters.throttle_waits;
	rs.reconnects = run->live.counters.reconnects;
	if (strcmp(status, "running") != 0 && strcmp(status, "waiting") != 0)
		run->result = status;
	if (migrate_state_run_set(run->state, &rs, &error) < 0)
		e_error(run->event, "%s", error);
}

/* A run killed mid-import left its record saying "running" (or
   "waiting"): the destination is resynced before this one scans it */
static void migrate_run_recover(struct migrate_run *run)
{
	struct migrate_run_state rs;
	const char *error;

	if (migrate_state_run_get(run->state, pool_datastack_create(), &rs,
				  &error) <= 0 || rs.status == NULL ||
	    (strcmp(rs.status, "running") != 0 &&
	     strcmp(rs.status, "waiting") != 0))
		return;
	e_info(run->event, "The last run didn't end (killed or crashed while "
	       "%s): resyncing the destination first", rs.status);
	migrate_importer_dest_recover(run->user, run->event);
}

void migrate_run_save_progress(struct migrate_run *run)
{
	if (run->state == NULL || run->result != NULL ||
	    run->opts.mode != MIGRATE_RUN_MODE_IMPORT)
		return;
	migrate_run_save_run_state(run, "running");
}

/* migrate_max_connections: wait for one of the source host's slots. The
   wait counts as throttling (migrate_throttle_max_wait bounds it) and
   shows as "waiting" in migrate status. */
static int migrate_run_take_slot(struct migrate_run *run)
{
	const struct migrate_settings *set = run->set;
	unsigned int msecs = 250, waited_msecs = 0;
	const char *error;
	int ret;

	while ((ret = migrate_conn_slot_try(set->connection_slots_dir,
					    set->source_host, set->source_port,
					    set->max_connections,
					    &run->conn_slot, &error)) == 0) {
		if (waited_msecs / 1000 >= set->throttle_max_wait_secs) {
			(void)migrate_run_fail(run, MIGRATE_ERROR_TEMP,
				"No free connection to %s:%u after %u seconds "
				"(migrate_max_connections=%u, "
				"migrate_throttle_max_wait)", set->source_host,
				set->source_port, waited_msecs / 1000,
				set->max_connections);
			return -1;
		}
		if (waited_msecs == 0) {
			e_info(run->event, "Waiting for a free connection to "
			       "%s:%u (migrate_max_connections=%u)",
			       set->source_host, set->source_port,
			       set->max_connections);
			if (run->opts.mode == MIGRATE_RUN_MODE_IMPORT)
				migrate_run_save_run_state(run, "waiting");
		}
		migrate_run_sleep(run, msecs);
		waited_msecs += msecs;
		run->pacing.throttle_wait_secs = waited_msecs / 1000;
		if (msecs < 5000)
			msecs *= 2;
	}
	if (ret < 0) {
		(void)migrate_run_fail(run, MIGRATE_ERROR_CONFIG,
			"migrate_max_connections: %s", error);
		return -1;
	}
	if (waited_msecs > 0) {
		e_info(run->event, "Got a connection slot to %s:%u after "
		       "%u.%03u s", set->source_host, set->source_port,
		       waited_msecs / 1000, waited_msecs % 1000);
	}
	return 0;
}

/* migrate_sieve = yes: the scripts after the mail (not in a run of one
   folder, -m). A Sieve failure doesn't change the mail's result, but the
   run's exit says so unless the mail failed already: the pass's own code
   (a refused login, a lost connection) or, for scripts that failed or
   don't compile, the exit of a run with failed items. A plan shows the
   error in its Sieve row. */
static void migrate_run_sieve(struct migrate_run *run)
{
	struct migrate_sieve_ctx ctx;

	if (!run->set->sieve || run->opts.folder != NULL)
		return;
	i_zero(&ctx);
	ctx.pool = run->pool;
	ctx.user = run->user;
	ctx.event = run->event;
	ctx.set = run->set;
	ctx.state = run->state;
	ctx.import = run->opts.mode == MIGRATE_RUN_MODE_IMPORT;
	ctx.src = &run->src;
	ctx.map = run->map;
	ctx.pacing = &run->pacing;
	ctx.counters = &run->live.counters;
	if (migrate_sieve_execute(&ctx, &run->sieve) == 0)
		return;
	if (run->sieve->error != NULL)
		e_error(run->event, "%s", run->sieve->error);
	if (run->opts.mode != MIGRATE_RUN_MODE_IMPORT)
		return;
	if (run->sieve->error != NULL) {
		(void)migrate_run_fail(run, run->sieve->error_code, "%s",
				       run->sieve->error);
	} else {
		(void)migrate_run_fail(run, MIGRATE_ERROR_ITEMS,
			"%u Sieve script(s) failed and %u don't compile at "
			"the destination (see migrate report)",
			run->sieve->failed, run->sieve->not_compiling);
	}
}

/* A pass that went through: a failed folder (the last one is named) or
   messages that failed make it a run with failed items */
static void migrate_run_folders_failed(struct migrate_run *run)
{
	struct migrate_folder *folder, *failed = NULL;
	bool some_failed = FALSE;

	array_foreach_elem(&run->src.folders, folder) {
		if (folder->result == MIGRATE_FOLDER_RESULT_FAILED)
			failed = folder;
		else if (folder->result ==
			 MIGRATE_FOLDER_RESULT_COMPLETED_WITH_ERRORS)
			some_failed = TRUE;
	}
	if (failed != NULL) {
		(void)migrate_run_fail(run, MIGRATE_ERROR_ITEMS,
				       "Folder %s failed: %s",
				       failed->dest.vname, failed->error);
	} else if (some_failed) {
		(void)migrate_run_fail(run, MIGRATE_ERROR_ITEMS,
			"Some messages could not be imported (see migrate "
			"report)");
	}
}

static int migrate_run_execute_mode(struct migrate_run *run)
{
	struct migrate_settings *set;
	enum migrate_error code;
	const char *error;
	int ret;

	/* a misspelled setting fails a run (it would migrate with the
	   wrong value); plan and verify only warn */
	if (migrate_settings_check_names(run->user,
			run->opts.mode == MIGRATE_RUN_MODE_IMPORT,
			&error) < 0 ||
	    migrate_settings_read(run->user, run->pool, &set, &error) < 0) {
		(void)migrate_run_fail(run, MIGRATE_ERROR_CONFIG, "%s", error);
		return -1;
	}
	run->set = set;
	run->pacing.set = set;
	run->live.pipeline_depth = set->pipeline_depth;
	if (migrate_state_open(run->user, set->state_dict,
			       &run->state, &error) < 0) {
		if (run->opts.mode != MIGRATE_RUN_MODE_PLAN) {
			(void)migrate_run_fail(run, MIGRATE_ERROR_CONFIG,
					       "%s", error);
			return -1;
		}
		/* the plan only reads the state to say what changed */
		e_warning(run->event, "%s: the plan can't tell what earlier "
			  "passes did", error);
	}
	if (run->opts.mode == MIGRATE_RUN_MODE_IMPORT) {
		ret = migrate_state_lock(run->state, set->lock_timeout_secs,
					 &error);
		run->lock_renewed = ioloop_time;
		if (ret <= 0) {
			(void)migrate_run_fail(run, ret < 0 ?
				MIGRATE_ERROR_TEMP : MIGRATE_ERROR_LOCKED,
				"%s", error);
			return -1;
		}
	}

	run->conn = migrate_source_conn_create(set, run->user, run->event);
	run->pacing.conn = run->conn;
	if (set->max_connections > 0 && migrate_run_take_slot(run) < 0)
		goto failed;
	/* the first connect fails fast with a clear error: backoff and
	   retries are for connections lost mid-run */
	if (migrate_source_conn_connect(run->conn, &code, &error) < 0) {
		(void)migrate_run_fail(run, code, "%s", error);
		goto failed;
	}
	if (migrate_run_list(run) < 0 || migrate_run_map_folders(run) < 0)
		goto failed;
	/* a mistyped -m leaves the state as it was */
	if (migrate_run_check_selected(run) < 0)
		return -1;
	if (run->opts.mode == MIGRATE_RUN_MODE_IMPORT) {
		migrate_run_recover(run);
		migrate_run_save_run_state(run, "running");
	}
	if (migrate_run_status(run) < 0)
		goto failed;

	if (run->opts.mode == MIGRATE_RUN_MODE_VERIFY)
		return migrate_run_verify(run);
	if (run->opts.mode == MIGRATE_RUN_MODE_PLAN) {
		ret = migrate_run_plan(run);
		if (ret == 0)
			migrate_run_sieve(run);
		return ret;
	}
	if (run->opts.mode == MIGRATE_RUN_MODE_IMPORT) {
		/* the UIDLs go with the INBOX messages as they are saved */
		if (set->pop3_uidls) {
			struct migrate_pop3_ctx pop3_ctx;

			migrate_run_pop3_ctx(run, &pop3_ctx);
			run->pop3 = migrate_pop3_prepare(&pop3_ctx);
		}
		if (migrate_run_import(run) < 0)
			goto failed;
		migrate_run_folders_failed(run);
		/* after the mail: a POP3 failure leaves it imported */
		if (set->pop3_uidls)
			(void)migrate_pop3_carry(run->pop3);
		migrate_run_sieve(run);
		migrate_run_save_run_state(run, run->error_code ==
			MIGRATE_ERROR_NONE ? "completed" :
			"completed-with-errors");
	}
	return run->error_code == MIGRATE_ERROR_NONE ? 0 : -1;
failed:
	if (run->state != NULL && run->opts.mode == MIGRATE_RUN_MODE_IMPORT)
		migrate_run_save_run_state(run, "failed");
	return -1;
}

/* One event per "migrate run", whatever its end: what a metric { } block
   counts per user, result and cause. Its duration (from the run event's
   creation) is the run's. */
static void migrate_run_finished(struct migrate_run *run)
{
	struct event_passthrough *e;
	unsigned int i;

	e = event_create_passthrough(run->event)->
		set_name("migrate_run_finished")->
		add_str("result", run->result != NULL ? run->result : "failed")->
		add_str("cause", migrate_error_name(run->error_code))->
		add_int("exit_code",
			migrate_error_to_exit_code(run->error_code))->
		add_int("folders", array_count(&run->src.folders))->
		add_int("messages", run->totals.imported)->
		add_int("existing", run->totals.existing)->
		add_int("failed", run->totals.failed)->
		add_int("deferred", run->totals.deferred)->
		add_int("bytes", run->totals.bytes)->
		add_int("duration_msecs", timeval_diff_msecs(&ioloop_timeval,
							     &run->started_tv))->
		add_int("item_errors", run->live.counters.item_errors)->
		add_int("reconnects", run->live.counters.reconnects)->
		add_int("throttle_waits", run->live.counters.throttle_waits);
	if (run->error != NULL)
		e->add_str("error", run->error);
	for (i = 0; i < MIGRATE_ITEM_CLASS_COUNT; i++) T_BEGIN {
		e->add_int(t_strconcat("items_", t_str_replace(
			migrate_item_class_name(i), '-', '_'), NULL),
			run->live.counters.items_by_class[i]);
	} T_END;
	e_info(e->event(), "Run %s: %u imported, %u already there, %u failed, "
	       "%"PRIu64" bytes (exit %d)",
	       run->result != NULL ? run->result : "failed",
	       run->totals.imported, run->totals.existing, run->totals.failed,
	       run->totals.bytes,
	       migrate_error_to_exit_code(run->error_code));
}

int migrate_run_execute(struct migrate_run *run)
{
	int ret;

	ret = migrate_run_execute_mode(run);
	if (run->opts.mode == MIGRATE_RUN_MODE_IMPORT)
		migrate_run_finished(run);
	return ret;
}
