/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "ioloop.h"
#include "imap-arg.h"
#include "time-util.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "migrate-settings.h"
#include "migrate-syncfs.h"
#include "migrate-source-conn.h"
#include "migrate-identity.h"
#include "migrate-importer-private.h"

/* One folder's import, pass by pass: the phases of a pass in order
   (plan from STATUS, open and validate, list candidates, classify, sync
   flags, fetch and save, finish), the passes of a folder and its result.
   The concerns a phase uses live in migrate-importer-{source,dest,fetch,
   decide,verify}.c; the driver (a run or a worker) is reached only through
   the context's hooks. */

static const char *const
migrate_folder_result_names[MIGRATE_FOLDER_RESULT_COUNT] = {
	NULL, "completed", "completed-with-errors", "unchanged", "skipped",
	"failed", "ok", "missing",
};

const char *migrate_folder_result_to_str(enum migrate_folder_result result)
{
	i_assert(result < MIGRATE_FOLDER_RESULT_COUNT);
	return migrate_folder_result_names[result];
}

int migrate_folder_result_parse(const char *str,
				enum migrate_folder_result *result_r)
{
	unsigned int i;

	for (i = 1; i < MIGRATE_FOLDER_RESULT_COUNT; i++) {
		if (strcmp(migrate_folder_result_names[i], str) == 0) {
			*result_r = i;
			return 0;
		}
	}
	return -1;
}

/* passes of one folder that go round again (throttled, a batch rolled
   back) before what the last one did stands */
#define MIGRATE_MAX_PASSES 1000

void migrate_importer_set_error(struct migrate_importer_ctx *ctx,
				enum migrate_error code, const char *fmt, ...)
{
	va_list args;

	i_assert(code != MIGRATE_ERROR_NONE);
	if (ctx->error_code != MIGRATE_ERROR_NONE)
		return;
	va_start(args, fmt);
	ctx->error_code = code;
	ctx->error = p_strdup_vprintf(ctx->pool, fmt, args);
	va_end(args);
}

void migrate_importer_clear_error(struct migrate_importer_ctx *ctx)
{
	ctx->error_code = MIGRATE_ERROR_NONE;
	ctx->error = NULL;
}

void migrate_importer_folder_failed(struct migrate_importer *imp,
				    const char *fmt, ...)
{
	va_list args;

	if (imp->folder->error != NULL)
		return;
	va_start(args, fmt);
	imp->folder->error = p_strdup_vprintf(imp->ctx->pool, fmt, args);
	va_end(args);
}

/* The driver's hooks (migrate-importer.h): their failures become this
   context's error */

int migrate_importer_throttle(struct migrate_importer_ctx *ctx,
			      const char *why)
{
	const char *error;

	if (ctx->hooks->throttle(ctx->hook_context, why, &error) < 0) {
		migrate_importer_set_error(ctx, MIGRATE_ERROR_TEMP, "%s", error);
		return -1;
	}
	return 0;
}

static int migrate_importer_reconnect(struct migrate_importer_ctx *ctx,
				      const char *why)
{
	enum migrate_error code;
	const char *error;

	/* the lost connection's error (why) is handled here: what the
	   reconnect says replaces it */
	migrate_importer_clear_error(ctx);
	if (ctx->hooks->reconnect(ctx->hook_context, why, &code, &error) < 0) {
		migrate_importer_set_error(ctx, code, "%s", error);
		return -1;
	}
	return 0;
}

bool
migrate_importer_errors_max_reached(struct migrate_importer_ctx *ctx)
{
	const char *error;

	if (!ctx->hooks->errors_max_reached(ctx->hook_context, &error))
		return FALSE;
	migrate_importer_set_error(ctx, MIGRATE_ERROR_ITEMS, "%s", error);
	return TRUE;
}

/* Every message copied so far (this pass or earlier ones) kept its source
   UID: the UID map knows them all, so a pass that saves nothing new
   doesn't turn "partial" back into "yes" */
static bool migrate_importer_uids_match(const struct migrate_importer *imp)
{
	const struct migrate_uid_run *urun;

	if (!array_is_created(&imp->fs.uidmap))
		return TRUE;
	array_foreach(&imp->fs.uidmap, urun) {
		if (urun->src_uid != urun->dst_uid)
			return FALSE;
	}
	return TRUE;
}

static enum migrate_folder_result
migrate_folder_status(const struct migrate_importer *imp)
{
	const struct migrate_item *item;

	array_foreach(&imp->fs.items, item) {
		if (migrate_item_is_error(item))
			return MIGRATE_FOLDER_RESULT_COMPLETED_WITH_ERRORS;
	}
	return MIGRATE_FOLDER_RESULT_COMPLETED;
}

/* The flag sync of a known folder, to send in the burst with EXAMINE:
   NULL when STATUS shows no flag change (CONDSTORE) or nothing to sync. */
static const char *
migrate_importer_prefetch_flags_cmd(struct migrate_importer *imp)
{
	/* delete mode asks for every flag later (with Gmail labels) */
	if (imp->ctx->delete_mode)
		return NULL;
	return migrate_importer_flags_cmd(imp, imp->fs.last_uid,
					  imp->folder->status_highestmodseq,
					  &imp->flags_full);
}

/* What a pass, and each of its phases, tells the folder's loop */
enum migrate_pass_result {
	/* the run can't go on (ctx->error) */
	MIGRATE_PASS_RUN_FAILED = -1,
	/* this folder failed (folder->error), the run goes on */
	MIGRATE_PASS_FOLDER_FAILED = 0,
	/* a phase: done, the pass goes on to the next phase */
	MIGRATE_PASS_CONTINUE,
	/* the pass: everything listed is handled */
	MIGRATE_PASS_DONE,
	/* the pass: throttled, a batch rolled back or the source reconnected:
	   pass again */
	MIGRATE_PASS_AGAIN,
};

/* Phase "plan from STATUS": new mail by STATUS in a known folder, or a
   folder seen for the first time, is listed along with EXAMINE
   (*prefetch_r, the UID set), and a known folder's flag sync goes in
   the same burst (*flags_cmd_r). */
static void migrate_importer_pass_plan(struct migrate_importer *imp,
				       const char **prefetch_r,
				       const char **flags_cmd_r)
{
	struct migrate_folder *folder = imp->folder;

	*prefetch_r = NULL;
	*flags_cmd_r = NULL;
	array_clear(&imp->msgs);
	hash_table_clear(imp->msgs_by_uid, TRUE);
	imp->handled_idx = 0;
	imp->listing_incomplete = FALSE;
	imp->prefetch_end = 0;
	imp->prefetch_start = 0;
	/* checked again once the destination folder is open
	   (migrate_importer_pass_validate()) */
	imp->list_light = imp->pass_no == 0 && !imp->have_state &&
		array_count(&imp->fs.items) == 0 &&
		!imp->ctx->set->dedupe_across_folders &&
		!imp->ctx->delete_mode && !folder->dest.gmail_all_mail &&
		!migrate_importer_dest_has_mail(imp);
	imp->prefetch_light = imp->list_light;
	if (imp->pass_no++ != 0 || !folder->have_status ||
	    folder->status_messages == 0 ||
	    array_count(&imp->fs.items) != 0)
		return;
	if (imp->have_state &&
	    (folder->status_uidvalidity != imp->fs.src_uidvalidity ||
	     folder->status_uidnext <= imp->fs.last_uid + 1))
		return;
	imp->prefetch_start = imp->have_state ? imp->fs.last_uid + 1 : 1;
	imp->prefetch_end = folder->status_uidnext - 1;
	if (imp->prefetch_end < imp->prefetch_start)
		return;
	*prefetch_r = t_strdup_printf("%u:%u", imp->prefetch_start,
				      imp->prefetch_end);
	if (imp->have_state)
		*flags_cmd_r = migrate_importer_prefetch_flags_cmd(imp);
}

/* Phase "open": EXAMINE at the source (with the planned burst), the
   destination folder opened or created */
static enum migrate_pass_result
migrate_importer_pass_open(struct migrate_importer *imp, const char *prefetch,
			   const char *flags_cmd)
{
	int ret;

	ret = migrate_importer_examine(imp, prefetch, flags_cmd);
	if (ret < 0)
		return MIGRATE_PASS_RUN_FAILED;
	if (ret == 0)
		return MIGRATE_PASS_FOLDER_FAILED;
	if (imp->box != NULL)
		return MIGRATE_PASS_CONTINUE;
	ret = migrate_importer_dest_open(imp);
	if (ret < 0)
		return MIGRATE_PASS_RUN_FAILED;
	if (ret == 0) {
		migrate_importer_drain_flags(imp);
		return MIGRATE_PASS_FOLDER_FAILED;
	}
	return MIGRATE_PASS_CONTINUE;
}

/* Phase "validate": the state is trusted only for the UIDVALIDITY pair it
   was written for; destination mail it doesn't know of (a crashed run's
   last batch, mail delivered since) is read to be matched by identity. */
static enum migrate_pass_result
migrate_importer_pass_validate(struct migrate_importer *imp)
{
	struct mailbox_status status;

	migrate_importer_dest_status(imp, &status);
	imp->state_valid = imp->have_state &&
		imp->fs.src_uidvalidity == imp->uidvalidity &&
		imp->fs.dst_uidvalidity == status.uidvalidity;
	if (imp->have_state && !imp->state_valid) {
		e_info(imp->event, "UIDVALIDITY changed (source %u -> %u, "
		       "destination %u -> %u): matching by identity",
		       imp->fs.src_uidvalidity, imp->uidvalidity,
		       imp->fs.dst_uidvalidity, status.uidvalidity);
		array_clear(&imp->fs.uidmap);
		imp->fs.last_uid = 0;
		/* the item log's UIDs belong to the old UIDVALIDITY */
		migrate_importer_items_clear(imp);
	}
	if (!imp->state_valid) {
		imp->fs.last_uid = 0;
		imp->fs.dst_uidnext = 1;
		/* the (empty) map and the item log belong to this pair from
		   now on: a run that stops before the folder's first commit
		   saves them for the next run to trust */
		imp->fs.src_uidvalidity = imp->uidvalidity;
		imp->fs.dst_uidvalidity = status.uidvalidity;
	}
	/* mail at the destination already (a run that crashed before its
	   state knew the folder, a lost state): list with headers */
	if (status.messages > 0)
		imp->list_light = FALSE;
	hash_table_clear(imp->dest_ids, TRUE);
	hash_table_clear(imp->dest_fingerprints, TRUE);
	if (imp->dest_resynced) {
		/* the rebuilt index may hold a crashed run's mail below
		   dst_uidnext too (a later batch of the last pass moved it) */
		imp->dest_resynced = FALSE;
		if (migrate_importer_dest_rescan(imp) < 0)
			return MIGRATE_PASS_RUN_FAILED;
	} else if (status.uidnext > imp->fs.dst_uidnext &&
		   migrate_importer_dest_scan(imp, imp->fs.dst_uidnext) < 0)
		return MIGRATE_PASS_RUN_FAILED;
	return MIGRATE_PASS_CONTINUE;
}

/* The UIDs this pass lists: above the high-water mark, the item log's
   retries below it, and All Mail's whole range in delete mode */
static void migrate_importer_pass_list_uids(struct migrate_importer *imp,
					    ARRAY_TYPE(seq_range) *uids)
{
	const struct migrate_item *item;

	if (imp->exists > 0 && imp->uidnext - 1 > imp->fs.last_uid) {
		seq_range_array_add_range(uids, imp->fs.last_uid + 1,
					  imp->uidnext > 0 ?
					  imp->uidnext - 1 : (uint32_t)-1);
	} else if (imp->exists > 0 && imp->uidnext == 0) {
		seq_range_array_add_range(uids, imp->fs.last_uid + 1,
					  (uint32_t)-1);
	}
	array_foreach(&imp->fs.items, item) {
		if (item->uid <= imp->fs.last_uid &&
		    migrate_importer_item_retryable(imp, item))
			seq_range_array_add(uids, item->uid);
	}
	/* All Mail in delete mode: the label folders' passes expunged the
	   copies of mail the user archived since the last run. That mail
	   is All Mail's now, below its high-water mark: list it all. */
	imp->relist_below = 0;
	if (imp->folder->dest.gmail_all_mail && imp->ctx->delete_mode &&
	    imp->state_valid && imp->fs.last_uid > 0 && imp->exists > 0) {
		imp->relist_below = imp->fs.last_uid + 1;
		seq_range_array_add_range(uids, 1, imp->fs.last_uid);
	}
}

/* The prefetched listing is usable when it starts where this pass must
   start (a new folder, or the state still valid), and for a folder
   listed from UID 1 when it holds every message EXAMINE counted: mail
   that came after STATUS, or a server that numbers mail afresh in every
   session (GNU imap4d's unseen Maildir mail), is listed with the rest
   instead of waiting for the next run */
static bool migrate_importer_prefetch_usable(struct migrate_importer *imp)
{
	return imp->relist_below == 0 && imp->prefetched &&
		(!imp->prefetch_light || imp->list_light) &&
		imp->uidvalidity == imp->folder->status_uidvalidity &&
		imp->prefetch_start == imp->fs.last_uid + 1 &&
		array_count(&imp->fs.items) == 0 &&
		(imp->prefetch_start != 1 ||
		 array_count(&imp->msgs) >= imp->exists);
}

/* Phase "list candidates": the source messages this pass considers, in
   imp->msgs (listed already when the burst with EXAMINE did it) */
static enum migrate_pass_result
migrate_importer_pass_list(struct migrate_importer *imp)
{
	ARRAY_TYPE(seq_range) list_uids;

	t_array_init(&list_uids, 16);
	migrate_importer_pass_list_uids(imp, &list_uids);
	if (!migrate_importer_prefetch_usable(imp)) {
		migrate_importer_drain_flags(imp);
		imp->prefetched = FALSE;
		array_clear(&imp->msgs);
		hash_table_clear(imp->msgs_by_uid, TRUE);
		if (imp->exists > 0 &&
		    migrate_importer_list(imp, &list_uids) < 0)
			return MIGRATE_PASS_RUN_FAILED;
	}
	if (imp->listing_incomplete &&
	    migrate_importer_list_missing(imp, &list_uids) < 0)
		return MIGRATE_PASS_RUN_FAILED;
	return MIGRATE_PASS_CONTINUE;
}

/* Phase "classify": each listed message's action; mail found at the
   destination is linked and takes the source's flags */
static enum migrate_pass_result
migrate_importer_pass_classify(struct migrate_importer *imp)
{
	migrate_importer_classify(imp);
	if (migrate_importer_relink_vanished(imp, imp->fs.last_uid) < 0)
		return MIGRATE_PASS_RUN_FAILED;
	if (migrate_importer_sync_claimed(imp) < 0)
		return MIGRATE_PASS_RUN_FAILED;
	return MIGRATE_PASS_CONTINUE;
}

/* Phase "sync flags": the flags of what earlier passes imported (and
   delete mode's expunges) */
static enum migrate_pass_result
migrate_importer_pass_sync_flags(struct migrate_importer *imp)
{
	bool full_flags;

	if (imp->state_valid &&
	    migrate_importer_sync_flags(imp, imp->fs.last_uid,
					&full_flags) < 0)
		return MIGRATE_PASS_RUN_FAILED;
	return MIGRATE_PASS_CONTINUE;
}

/* Phase "fetch and save": the bodies of the messages to import, saved
   and committed. AGAIN when throttled or a batch was rolled back. */
static enum migrate_pass_result
migrate_importer_pass_fetch(struct migrate_importer *imp)
{
	int ret;

	ret = migrate_importer_fetch_bodies(imp);
	if (ret < 0) {
		/* keep what was saved */
		(void)migrate_importer_commit(imp);
		(void)migrate_importer_durable_wait(imp);
		return MIGRATE_PASS_RUN_FAILED;
	}
	if (migrate_importer_commit(imp) < 0 ||
	    migrate_importer_durable_wait(imp) < 0)
		return MIGRATE_PASS_RUN_FAILED;
	if (imp->late_claims) {
		/* their flags, as for mail matched before the fetch */
		imp->late_claims = FALSE;
		if (migrate_importer_sync_claimed(imp) < 0)
			return MIGRATE_PASS_RUN_FAILED;
	}
	if (ret == 0) {
		/* throttled */
		return MIGRATE_PASS_AGAIN;
	}
	if (imp->batch_rolled_back) {
		/* a rolled back batch: fetch those messages again */
		imp->batch_rolled_back = FALSE;
		return MIGRATE_PASS_AGAIN;
	}
	return MIGRATE_PASS_CONTINUE;
}

/* Phase "describe": the items of mail listed without headers get their
   Message-ID, subject and date for the item log */
static enum migrate_pass_result
migrate_importer_pass_describe(struct migrate_importer *imp)
{
	if (imp->list_light && migrate_importer_describe_items(imp) < 0)
		return MIGRATE_PASS_RUN_FAILED;
	return MIGRATE_PASS_CONTINUE;
}

/* The high-water mark after a pass: everything listed is handled
   (imported, present, or logged) */
static void migrate_importer_pass_advance(struct migrate_importer *imp)
{
	struct migrate_msg *msg;

	if (imp->prefetched) {
		/* listed up to what STATUS saw: later mail is the next
		   pass's, and the state must not look unchanged to it */
		if (imp->prefetch_end > imp->fs.last_uid)
			imp->fs.last_uid = imp->prefetch_end;
	} else if (imp->uidnext > 0 && imp->uidnext - 1 > imp->fs.last_uid)
		imp->fs.last_uid = imp->uidnext - 1;
	else if (array_count(&imp->msgs) > 0) {
		msg = array_idx_elem(&imp->msgs, array_count(&imp->msgs) - 1);
		if (msg->uid > imp->fs.last_uid)
			imp->fs.last_uid = msg->uid;
	}
}

/* Phase "finish": the folder's counts, the memory across folders, the
   high-water mark and what the state records of both sides */
static enum migrate_pass_result
migrate_importer_pass_finish(struct migrate_importer *imp)
{
	struct migrate_folder *folder = imp->folder;
	struct mailbox_status status;
	struct migrate_msg *msg;

	array_foreach_elem(&imp->msgs, msg) {
		switch (msg->action) {
		case MIGRATE_MSG_PRESENT:
			folder->counters.existing++;
			break;
		case MIGRATE_MSG_DEFERRED:
			folder->counters.deferred++;
			break;
		case MIGRATE_MSG_FAILED:
		case MIGRATE_MSG_TOO_BIG:
			folder->counters.failed++;
			break;
		default:
			break;
		}
	}
	migrate_importer_remember(imp);
	migrate_importer_pass_advance(imp);
	/* the view still has the message count from before this pass's
	   commits: sync it so dst_messages (status dest_count) is right */
	(void)mailbox_sync(imp->box, 0);
	migrate_importer_dest_status(imp, &status);
	imp->fs.src_uidvalidity = imp->uidvalidity;
	imp->fs.src_uidnext = imp->prefetched &&
		imp->prefetch_end + 1 < imp->uidnext ?
		imp->prefetch_end + 1 : imp->uidnext;
	if (!imp->flag_sync_failed)
		imp->fs.src_highestmodseq = imp->highestmodseq;
	imp->fs.src_messages = imp->exists;
	imp->fs.dst_uidvalidity = status.uidvalidity;
	imp->fs.dst_uidnext = status.uidnext;
	imp->fs.dst_messages = status.messages;
	return MIGRATE_PASS_DONE;
}

/* One pass over the folder: the phases in order, until one doesn't say
   CONTINUE */
static enum migrate_pass_result
migrate_importer_pass(struct migrate_importer *imp)
{
	const char *prefetch, *flags_cmd;
	enum migrate_pass_result ret;

	migrate_importer_pass_plan(imp, &prefetch, &flags_cmd);
	if ((ret = migrate_importer_pass_open(imp, prefetch, flags_cmd)) !=
	    MIGRATE_PASS_CONTINUE)
		return ret;
	if ((ret = migrate_importer_pass_validate(imp)) !=
	    MIGRATE_PASS_CONTINUE)
		return ret;
	if ((ret = migrate_importer_pass_list(imp)) != MIGRATE_PASS_CONTINUE)
		return ret;
	if ((ret = migrate_importer_pass_classify(imp)) !=
	    MIGRATE_PASS_CONTINUE)
		return ret;
	if ((ret = migrate_importer_pass_sync_flags(imp)) !=
	    MIGRATE_PASS_CONTINUE)
		return ret;
	if ((ret = migrate_importer_pass_fetch(imp)) != MIGRATE_PASS_CONTINUE)
		return ret;
	if ((ret = migrate_importer_pass_describe(imp)) !=
	    MIGRATE_PASS_CONTINUE)
		return ret;
	return migrate_importer_pass_finish(imp);
}

void migrate_importer_init(struct migrate_importer *imp,
			   struct migrate_importer_ctx *ctx,
			   struct migrate_folder *folder)
{
	i_zero(imp);
	imp->ctx = ctx;
	imp->folder = folder;
	imp->pool = pool_alloconly_create("migrate importer", 1024*64);
	imp->event = event_create(ctx->event);
	event_add_str(imp->event, "folder", folder->dest.vname);
	event_set_append_log_prefix(imp->event, t_strdup_printf(
		"%s: ", folder->dest.vname));
	p_array_init(&imp->msgs, imp->pool, 128);
	hash_table_create_direct(&imp->msgs_by_uid, imp->pool, 128);
	hash_table_create(&imp->dest_ids, imp->pool, 128, str_hash, strcmp);
	hash_table_create(&imp->dest_fingerprints, imp->pool, 128,
			  str_hash, strcmp);
	p_array_init(&imp->seq_uids, imp->pool, 128);
	p_array_init(&imp->pending_uids, imp->pool, 128);
	p_array_init(&imp->failed_uids, imp->pool, 8);
	p_array_init(&imp->counted_uids, imp->pool, 8);
	ctx->live->cur_folder = folder->dest.vname;
}

void migrate_importer_deinit(struct migrate_importer *imp)
{
	const char *error;

	/* the passes wait for their records: one left is stale (a newer
	   state may be written already), and its mail is matched by
	   identity by the next run */
	if (imp->durable_sync != NULL) {
		(void)migrate_syncfs_finish(&imp->durable_sync, &error);
		migrate_state_folder_set_rollback(&imp->durable_record);
	}
	if (imp->trans != NULL)
		mailbox_transaction_rollback(&imp->trans);
	if (imp->box != NULL)
		mailbox_free(&imp->box);
	hash_table_destroy(&imp->msgs_by_uid);
	hash_table_destroy(&imp->dest_ids);
	hash_table_destroy(&imp->dest_fingerprints);
	if (hash_table_is_created(imp->relinked))
		hash_table_destroy(&imp->relinked);
	if (hash_table_is_created(imp->items_by_uid))
		hash_table_destroy(&imp->items_by_uid);
	event_unref(&imp->event);
	pool_unref(&imp->pool);
	imp->ctx->live->cur_folder = NULL;
}

/* Gmail: mail in the label folders is labelled mail, which All Mail
   must not bring again into Archive. The label folders' identities are
   read from the destination, so this holds also for label folders this
   run didn't list: unchanged ones, completed by an earlier (crashed) run,
   or left out with -m. */
int migrate_importer_remember_labelled(struct migrate_importer_ctx *ctx,
	const ARRAY_TYPE(migrate_folder) *folders)
{
	struct migrate_importer imp;
	struct migrate_folder *folder;
	struct mail_namespace *ns;
	enum mailbox_existence existence;
	struct hash_iterate_context *iter;
	struct migrate_dest_ids *ids;
	const char *identity;
	int ret = 0;

	array_foreach_elem(folders, folder) {
		if (folder->dest.skip || folder->dest.gmail_all_mail ||
		    folder->dest.vname == NULL)
			continue;
		migrate_importer_init(&imp, ctx, folder);
		ns = mail_namespace_find(ctx->user->namespaces,
					 folder->dest.vname);
		imp.box = mailbox_alloc(ns->list, folder->dest.vname, 0);
		if (mailbox_exists(imp.box, TRUE, &existence) < 0 ||
		    (existence == MAILBOX_EXISTENCE_SELECT &&
		     mailbox_open(imp.box) < 0)) {
			migrate_importer_dest_failed(&imp, imp.box, NULL);
			ret = -1;
		} else if (existence == MAILBOX_EXISTENCE_SELECT &&
			   migrate_importer_dest_scan(&imp, 1) < 0) {
			ret = -1;
		} else if (existence == MAILBOX_EXISTENCE_SELECT) {
			iter = hash_table_iterate_init(imp.dest_ids);
			while (hash_table_iterate(iter, imp.dest_ids,
						  &identity, &ids))
				migrate_identity_set_add(ctx->seen, identity);
			hash_table_iterate_deinit(&iter);
		}
		migrate_importer_deinit(&imp);
		if (ret < 0)
			break;
	}
	return ret;
}

/* The folder map sends the folder elsewhere than earlier passes did: the
   UID map and the high-water mark speak of the old destination folder.
   The new one is filled as if the state were lost (mail already there is
   matched by identity, never copied twice); the old copy is left alone,
   and named so the admin can delete it. */
static void migrate_importer_dest_moved(struct migrate_importer *imp)
{
	struct migrate_folder *folder = imp->folder;

	if (imp->fs.dest_vname == NULL ||
	    strcmp(imp->fs.dest_vname, folder->dest.vname) == 0)
		return;
	folder->dest_previous = p_strdup(imp->ctx->pool, imp->fs.dest_vname);
	e_warning(imp->event, "The destination of source folder %s changed "
		  "since the last pass (migrate_folder_map): it was %s, now "
		  "%s. Importing into %s, matching mail already there by "
		  "identity; the copy in %s is left in place",
		  folder->src_name, folder->dest_previous, folder->dest.vname,
		  folder->dest.vname, folder->dest_previous);
	array_clear(&imp->fs.uidmap);
	imp->fs.last_uid = 0;
	imp->fs.dst_uidvalidity = 0;
	imp->fs.dst_uidnext = 0;
	imp->have_state = FALSE;
}

void migrate_live_counters_add(struct migrate_live_counters *dest,
			       const struct migrate_live_counters *src)
{
	unsigned int i;

	dest->item_errors += src->item_errors;
	dest->reconnects += src->reconnects;
	dest->throttle_waits += src->throttle_waits;
	for (i = 0; i < MIGRATE_ITEM_CLASS_COUNT; i++)
		dest->items_by_class[i] += src->items_by_class[i];
}

struct event *
migrate_folder_finished_event(struct event *event,
			      const struct migrate_folder *folder)
{
	return event_create_passthrough(event)->
		set_name("migrate_folder_finished")->
		add_str("result", migrate_folder_result_to_str(folder->result))->
		add_int("messages", folder->counters.imported)->
		add_int("existing", folder->counters.existing)->
		add_int("failed", folder->counters.failed)->
		add_int("bytes", folder->counters.bytes)->
		add_int("duration_msecs", folder->duration_msecs)->
		event();
}

/* The folder's state, read for its first pass: the running pass's
   counters start from zero. Returns -1 when it can't be read. */
static int migrate_importer_folder_start(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct migrate_folder *folder = imp->folder;
	struct migrate_counters none;
	const char *error;
	int ret;

	i_zero(&none);
	ret = migrate_state_folder_get(ctx->state, folder->src_name, imp->pool,
				       &imp->fs, &error);
	if (ret < 0) {
		migrate_importer_set_error(ctx, MIGRATE_ERROR_TEMP, "%s", error);
		return -1;
	}
	imp->have_state = ret > 0;
	if (imp->have_state)
		migrate_importer_dest_moved(imp);
	imp->fs.dest_vname = folder->dest.vname;
	imp->fs.decoded_name = folder->dest.decoded_name;
	/* the pass's counts start at 0; bytes are the folder's total */
	migrate_counters_set_pass(&imp->fs.counters, &none);
	imp->fs.status = "running";
	imp->fs.started = ioloop_time;
	imp->fs.last_error = NULL;
	return 0;
}

/* Passes until the folder is done: a pass that lost the source
   connection resumes in place after a reconnect (reconnects have their
   own budget), other passes again are bounded */
static enum migrate_pass_result
migrate_importer_folder_passes(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	enum migrate_pass_result ret;
	unsigned int passes = 0;
	bool reconnected;

	do {
		reconnected = FALSE;
		ret = migrate_importer_pass(imp);
		if (ret == MIGRATE_PASS_RUN_FAILED &&
		    ctx->error_code == MIGRATE_ERROR_TEMP &&
		    !migrate_source_conn_is_connected(ctx->conn)) {
			if (imp->trans != NULL)
				mailbox_transaction_rollback(&imp->trans);
			if (migrate_importer_reconnect(ctx, ctx->error) == 0) {
				ret = MIGRATE_PASS_AGAIN;
				reconnected = TRUE;
			}
		}
	} while (ret == MIGRATE_PASS_AGAIN &&
		 (reconnected || ++passes < MIGRATE_MAX_PASSES));
	/* out of passes: what the last one did stands */
	if (ret == MIGRATE_PASS_AGAIN)
		ret = MIGRATE_PASS_DONE;
	if (ret == MIGRATE_PASS_DONE)
		ctx->live->progress++;
	return ret;
}

/* The folder's result, its migrate_folder_finished event and its state */
static void migrate_importer_folder_finish(struct migrate_importer *imp,
					   enum migrate_pass_result *ret)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct migrate_folder *folder = imp->folder;
	const char *error;

	if (imp->trans != NULL)
		mailbox_transaction_rollback(&imp->trans);
	folder->src_messages = imp->exists;
	folder->uids_preserved = !imp->preserve_uids ? "no" :
		(imp->uids_preserve_failed ||
		 !migrate_importer_uids_match(imp) ? "partial" : "yes");
	if (*ret == MIGRATE_PASS_DONE) {
		struct mailbox_status status;
		migrate_importer_dest_status(imp, &status);
		folder->dst_messages = status.messages;
		folder->result = migrate_folder_status(imp);
	} else {
		folder->result = MIGRATE_FOLDER_RESULT_FAILED;
		if (folder->error == NULL)
			folder->error = ctx->error;
	}
	imp->fs.status = migrate_folder_result_to_str(folder->result);
	imp->fs.last_error = folder->error;
	folder->duration_msecs = timeval_diff_msecs(&ioloop_timeval,
						    &imp->started);
	folder->finished_event = TRUE;
	e_info(migrate_folder_finished_event(imp->event, folder),
	       "%s: %u imported, %u already there, %u failed, "
	       "%"PRIu64" bytes", imp->fs.status, folder->counters.imported,
	       folder->counters.existing, folder->counters.failed,
	       folder->counters.bytes);
	imp->fs.finished = ioloop_time;
	migrate_counters_set_pass(&imp->fs.counters, &folder->counters);
	imp->fs.total_imported += folder->counters.imported;
	imp->fs.planned = folder->planned;
	imp->fs.planned_bytes = folder->planned_bytes;
	imp->fs.uids_preserved = folder->uids_preserved;
	if (*ret != MIGRATE_PASS_FOLDER_FAILED &&
	    migrate_state_folder_set(ctx->state, folder->src_name,
				     &imp->fs, &error) < 0) {
		e_error(imp->event, "%s", error);
		if (*ret == MIGRATE_PASS_DONE) {
			migrate_importer_set_error(ctx, MIGRATE_ERROR_TEMP,
						   "%s", error);
			*ret = MIGRATE_PASS_RUN_FAILED;
		}
	}
}

int migrate_importer_folder(struct migrate_importer_ctx *ctx,
			    struct migrate_folder *folder)
{
	struct migrate_importer imp;
	enum migrate_pass_result ret;

	migrate_importer_init(&imp, ctx, folder);
	imp.started = ioloop_timeval;
	if (migrate_importer_folder_start(&imp) < 0)
		ret = MIGRATE_PASS_RUN_FAILED;
	else
		ret = migrate_importer_folder_passes(&imp);
	migrate_importer_folder_finish(&imp, &ret);
	migrate_importer_deinit(&imp);
	if (ret == MIGRATE_PASS_FOLDER_FAILED) {
		/* this folder failed, the run goes on */
		folder->result = MIGRATE_FOLDER_RESULT_FAILED;
		return 0;
	}
	return ret == MIGRATE_PASS_RUN_FAILED ? -1 : 0;
}
