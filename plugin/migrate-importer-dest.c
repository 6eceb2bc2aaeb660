/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "istream.h"
#include "ioloop.h"
#include "imap-arg.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "migrate-settings.h"
#include "migrate-source-conn.h"
#include "migrate-identity.h"
#include "migrate-syncfs.h"
#include "migrate-compat.h"
#include "mail-storage-private.h"
#include "mail-cache.h"
#include "migrate-importer-private.h"

/* The destination mailbox of a folder's pass: opening (or creating) it,
   scanning the identities of the mail already there, saving a body,
   committing a batch (and then the state), the flag sync of imported mail
   and delete mode's expunge. Everything here goes through lib-storage. */


void migrate_importer_dest_failed(struct migrate_importer *imp,
				  struct mailbox *box, const char *what)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	enum mail_error mail_error;
	const char *errstr = mailbox_get_last_internal_error(box, &mail_error);

	migrate_importer_set_error(ctx, MIGRATE_ERROR_DESTINATION,
				   "Destination folder %s: %s%s%s",
				   imp->folder->dest.vname,
				   what == NULL ? "" : what,
				   what == NULL ? "" : ": ", errstr);
}

static int migrate_importer_dest_full(struct migrate_importer *imp,
				      struct migrate_msg *msg,
				      const char *error, bool disk);
static void migrate_dest_update_flags(struct migrate_importer *imp,
				      struct mail *mail,
				      const struct migrate_msg *src);

bool migrate_importer_dest_has_mail(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct mail_namespace *ns;
	struct mailbox *box;
	struct mailbox_status status;
	enum mailbox_existence existence;
	bool ret;

	ns = mail_namespace_find(ctx->user->namespaces,
				 imp->folder->dest.vname);
	box = mailbox_alloc(ns->list, imp->folder->dest.vname, 0);
	/* opening it may update the mailbox list index, as in
	   migrate_importer_dest_open() */
	if (ctx->hooks->dest_lock != NULL)
		ctx->hooks->dest_lock(ctx->hook_context);
	/* unreadable: as if it had mail (dest_open says why) */
	if (mailbox_exists(box, TRUE, &existence) < 0)
		ret = TRUE;
	else if (existence != MAILBOX_EXISTENCE_SELECT)
		ret = FALSE;
	else if (mailbox_get_status(box, STATUS_MESSAGES, &status) < 0)
		ret = TRUE;
	else
		ret = status.messages > 0;
	mailbox_free(&box);
	if (ctx->hooks->dest_unlock != NULL)
		ctx->hooks->dest_unlock(ctx->hook_context);
	return ret;
}

/* The identity headers go into the destination's index cache as mail is
   saved: registered with the "temp" caching decision (the one an IMAP
   client's FETCH of them sets; a header lookup alone registers "no", which
   this raises, and "yes" stays) before the first save, the save's header
   parse adds them, and a later scan of the folder (Gmail's All Mail
   reading its label folders, verify, a run without its state) reads them
   there instead of opening every message. */
static void migrate_importer_dest_cache_identity(struct mailbox *box)
{
	struct mail_cache_field *fields;
	unsigned int i, count;

	count = str_array_length(migrate_identity_fields);
	fields = t_new(struct mail_cache_field, count);
	for (i = 0; i < count; i++) {
		fields[i].name = t_strconcat("hdr.", migrate_identity_fields[i],
					     NULL);
		fields[i].type = MAIL_CACHE_FIELD_HEADER;
		fields[i].decision = MAIL_CACHE_DECISION_TEMP;
	}
	migrate_compat_cache_register_fields(box->cache, fields, count);
}

int migrate_importer_dest_open(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct migrate_folder *folder = imp->folder;
	struct mail_namespace *ns;
	struct mailbox_update update;
	struct mailbox_status status;
	enum mailbox_existence existence;
	enum mail_error mail_error;
	const char *error;

	ns = mail_namespace_find(ctx->user->namespaces, folder->dest.vname);
	imp->box = mailbox_alloc(ns->list, folder->dest.vname, 0);
	if (ctx->hooks->dest_lock != NULL)
		ctx->hooks->dest_lock(ctx->hook_context);
	if (mailbox_exists(imp->box, TRUE, &existence) < 0)
		goto failed;
	i_zero(&update);
	if (ctx->set->preserve_uids)
		update.uid_validity = imp->uidvalidity;
	if (existence != MAILBOX_EXISTENCE_SELECT) {
		if (mailbox_create(imp->box, &update, FALSE) < 0) {
			error = mailbox_get_last_internal_error(imp->box,
								&mail_error);
			if (mail_error != MAIL_ERROR_EXISTS)
				goto failed;
		}
	}
	/* FULL_READ: Maildir skips a cur/ whose mtime changed within the
	   last second, and a run killed mid-commit changed it just then:
	   its mail would stay unseen until after this run had copied it
	   once more */
	if (mailbox_open(imp->box) < 0 ||
	    mailbox_sync(imp->box, MAILBOX_SYNC_FLAG_FULL_READ) < 0)
		goto failed;
	mailbox_get_open_status(imp->box, STATUS_UIDVALIDITY | STATUS_UIDNEXT |
				STATUS_MESSAGES, &status);
	/* an empty, never used folder can still take the source's
	   UIDVALIDITY */
	if (ctx->set->preserve_uids && status.messages == 0 &&
	    status.uidnext == 1 && status.uidvalidity != imp->uidvalidity) {
		/* the open view sees the new UIDVALIDITY only after a sync
		   (Maildir's INBOX, which exists before the run, said
		   uids=no although every UID was kept) */
		if (mailbox_update(imp->box, &update) < 0 ||
		    mailbox_sync(imp->box, 0) < 0)
			goto failed;
		mailbox_get_open_status(imp->box, STATUS_UIDVALIDITY |
					STATUS_UIDNEXT | STATUS_MESSAGES,
					&status);
	}
	imp->preserve_uids = ctx->set->preserve_uids &&
		status.uidvalidity == imp->uidvalidity;
	migrate_importer_dest_cache_identity(imp->box);
	/* setting it again is harmless; reading it needs a list refresh */
	if (folder->subscribed && ctx->set->subscriptions)
		(void)mailbox_set_subscribed(imp->box, TRUE);
	if (ctx->hooks->dest_unlock != NULL)
		ctx->hooks->dest_unlock(ctx->hook_context);
	return 1;
failed:
	if (ctx->hooks->dest_unlock != NULL)
		ctx->hooks->dest_unlock(ctx->hook_context);
	error = mailbox_get_last_internal_error(imp->box, &mail_error);
	if (mail_error == MAIL_ERROR_NOTPOSSIBLE ||
	    mail_error == MAIL_ERROR_PARAMS ||
	    mail_error == MAIL_ERROR_NOTFOUND) {
		/* this name can't be a folder there (e.g. mbox: a folder
		   with mail can't have subfolders): the others go on */
		migrate_importer_folder_failed(imp,
			"Destination folder %s can't be created: %s",
			folder->dest.vname, error);
		mailbox_free(&imp->box);
		return 0;
	}
	migrate_importer_dest_failed(imp, imp->box, NULL);
	return -1;
}

void migrate_importer_dest_recover(struct mail_user *user,
				   struct event *event)
{
	struct mail_namespace *ns;
	struct mailbox *box;

	ns = mail_namespace_find_inbox(user->namespaces);
	box = mailbox_alloc(ns->list, "INBOX", 0);
	if (mailbox_open(box) < 0 ||
	    mailbox_sync(box, MAILBOX_SYNC_FLAG_FORCE_RESYNC) < 0) {
		/* the folders' own syncs still see what they can */
		e_warning(event, "Resyncing the destination after the last "
			  "run's crash failed: %s",
			  mailbox_get_last_internal_error(box, NULL));
	}
	mailbox_free(&box);
}

void migrate_importer_dest_status(struct migrate_importer *imp,
				  struct mailbox_status *status_r)
{
	mailbox_get_open_status(imp->box, STATUS_UIDVALIDITY |
				STATUS_UIDNEXT | STATUS_MESSAGES, status_r);
}

int
migrate_importer_dest_scan_uids(struct migrate_importer *imp,
				const ARRAY_TYPE(seq_range) *uids)
{
	struct mailbox_transaction_context *t;
	struct mail_search_args *search_args;
	struct mail_search_arg *sarg;
	struct mail_search_context *search_ctx;
	struct mailbox_header_lookup_ctx *headers;
	struct migrate_identity_info info;
	struct migrate_dest_ids *ids;
	struct istream *input;
	struct mail *mail;
	const unsigned char *data;
	uoff_t vsize;
	size_t size;
	buffer_t *buf;
	int ret = 0;

	/* FULL_READ: see migrate_importer_dest_open() */
	if (mailbox_sync(imp->box, MAILBOX_SYNC_FLAG_FULL_READ) < 0)
		return -1;
	t = mailbox_transaction_begin(imp->box, 0, __func__);
	search_args = mail_search_build_init();
	sarg = mail_search_build_add(search_args, SEARCH_UIDSET);
	p_array_init(&sarg->value.seqset, search_args->pool,
		     array_count(uids));
	array_append_array(&sarg->value.seqset, uids);
	headers = mailbox_header_lookup_init(imp->box,
					     migrate_identity_fields);
	search_ctx = mailbox_search_init(t, search_args, NULL,
					 MAIL_FETCH_VIRTUAL_SIZE, headers);
	mail_search_args_unref(&search_args);
	buf = buffer_create_dynamic(default_pool, 1024);
	while (mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		buffer_set_used_size(buf, 0);
		if (mail_get_header_stream(mail, headers, &input) < 0 ||
		    mail_get_virtual_size(mail, &vsize) < 0) {
			ret = -1;
		} else {
			while (i_stream_read_more(input, &data, &size) > 0) {
				buffer_append(buf, data, size);
				i_stream_skip(input, size);
			}
			migrate_identity_compute(buf->data, buf->used, vsize,
						 pool_datastack_create(),
						 &info);
			ids = hash_table_lookup(imp->dest_ids, info.identity);
			if (ids == NULL) {
				const char *key =
					p_strdup(imp->pool, info.identity);
				ids = p_new(imp->pool,
					    struct migrate_dest_ids, 1);
				p_array_init(&ids->uids, imp->pool, 1);
				hash_table_insert(imp->dest_ids, key, ids);
				key = migrate_identity_fingerprint(key);
				if (hash_table_lookup(imp->dest_fingerprints,
						      key) == NULL) {
					key = p_strdup(imp->pool, key);
					hash_table_insert(imp->dest_fingerprints,
							  key, POINTER_CAST(1));
				}
			}
			array_push_back(&ids->uids, &mail->uid);
		}
	} T_END;
	buffer_free(&buf);
	if (mailbox_search_deinit(&search_ctx) < 0)
		ret = -1;
	mailbox_header_lookup_unref(&headers);
	(void)mailbox_transaction_commit(&t);
	if (ret < 0) {
		migrate_importer_dest_failed(imp, imp->box,
					     "can't read existing mail");
	}
	return ret;
}

int migrate_importer_dest_scan(struct migrate_importer *imp, uint32_t min_uid)
{
	ARRAY_TYPE(seq_range) uids;

	t_array_init(&uids, 1);
	seq_range_array_add_range(&uids, min_uid, (uint32_t)-1);
	return migrate_importer_dest_scan_uids(imp, &uids);
}

int migrate_importer_dest_rescan(struct migrate_importer *imp)
{
	ARRAY_TYPE(seq_range) uids;
	const struct migrate_uid_run *run;

	t_array_init(&uids, 8);
	seq_range_array_add_range(&uids, 1, (uint32_t)-1);
	/* mail the map owns is claimed already: offering it again would let
	   a second source copy of the same message claim it too */
	array_foreach(&imp->fs.uidmap, run) {
		seq_range_array_remove_range(&uids, run->dst_uid,
					     run->dst_uid + run->count - 1);
	}
	return migrate_importer_dest_scan_uids(imp, &uids);
}

void migrate_importer_rollback(struct migrate_importer *imp)
{
	const uint32_t *src_uidp;
	struct migrate_msg *msg;

	if (imp->trans != NULL)
		mailbox_transaction_rollback(&imp->trans);
	array_foreach(&imp->pending_uids, src_uidp) {
		msg = hash_table_lookup(imp->msgs_by_uid,
					POINTER_CAST(*src_uidp));
		if (msg == NULL || msg->action != MIGRATE_MSG_DONE)
			continue;
		msg->action = MIGRATE_MSG_IMPORT;
		msg->rolled_back = TRUE;
		if (imp->folder->counters.imported > 0)
			imp->folder->counters.imported--;
		imp->batch_rolled_back = TRUE;
	}
	imp->folder->counters.bytes =
		imp->folder->counters.bytes > imp->trans_bytes ?
		imp->folder->counters.bytes - imp->trans_bytes : 0;
	array_clear(&imp->pending_uids);
	imp->trans_msgs = 0;
	imp->trans_bytes = 0;
	imp->trans_save_failed = FALSE;
}

/* lib-storage has no error code of its own for a full file system:
   ENOSPC is an internal error carrying strerror()'s text, a full index
   is MAIL_ERROR_NOQUOTA "Not enough disk space" (a quota says "quota") */
static bool migrate_dest_error_is_disk_full(const char *error)
{
	return strstr(error, strerror(ENOSPC)) != NULL ||
		strstr(error, "Not enough disk space") != NULL;
}

/* Committing the batch failed for want of space: its messages go back to
   be fetched again and are committed one by one from now on; when a
   single message doesn't fit, it is a destination-full item and the run
   stops. Returns 0 to go on, -1 to stop. */
static int migrate_importer_commit_disk_full(struct migrate_importer *imp,
					     const char *error)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct migrate_msg *msg = NULL;
	bool single = imp->quota_single && imp->trans_msgs <= 1;

	imp->quota_single = TRUE;
	if (!single) {
		e_debug(imp->event, "Commit failed: %s: committing message by "
			"message from now on", error);
		migrate_importer_rollback(imp);
		return 0;
	}
	if (array_count(&imp->pending_uids) > 0) {
		msg = hash_table_lookup(imp->msgs_by_uid,
			POINTER_CAST(*array_front(&imp->pending_uids)));
	}
	if (msg != NULL)
		return migrate_importer_dest_full(imp, msg, error, TRUE);
	migrate_importer_rollback(imp);
	migrate_importer_set_error(ctx, MIGRATE_ERROR_DISK_FULL,
		"Destination file system full in %s: commit failed: %s",
		imp->folder->dest.vname, error);
	return -1;
}

/* Committing the batch failed: a full file system, a quota, or a
   storage that rebuilt its index (the batch is fetched again). Returns 0
   to go on, -1 to stop. */
static int migrate_importer_commit_failed(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	enum mail_error error;
	const char *errstr;

	/* copied: the rollback and resync below set new errors */
	errstr = t_strdup(mailbox_get_last_internal_error(imp->box, &error));
	if (migrate_dest_error_is_disk_full(errstr))
		return migrate_importer_commit_disk_full(imp, errstr);
	if (error != MAIL_ERROR_NOQUOTA &&
	    imp->commit_retries++ < MIGRATE_COMMIT_RETRIES) {
		/* e.g. a run killed mid-commit left message files behind
		   that the index doesn't know: the failed commit made the
		   storage rebuild its index. The batch is fetched again,
		   and the next pass matches what the rebuild found by
		   identity. */
		e_warning(imp->event, "Commit failed, retrying the batch "
			  "after a resync: %s", errstr);
		migrate_importer_rollback(imp);
		(void)mailbox_sync(imp->box, MAILBOX_SYNC_FLAG_FORCE_RESYNC);
		imp->dest_resynced = TRUE;
		return 0;
	}
	migrate_importer_set_error(ctx, error == MAIL_ERROR_NOQUOTA ?
		MIGRATE_ERROR_QUOTA : MIGRATE_ERROR_DESTINATION,
		"Destination folder %s: commit failed: %s",
		imp->folder->dest.vname, errstr);
	array_clear(&imp->pending_uids);
	imp->trans_msgs = 0;
	imp->trans_bytes = 0;
	return -1;
}

/* The batch's state record is written: status shows it, a resumed run
   trusts it */
static int
migrate_importer_record(struct migrate_importer *imp,
			struct dict_transaction_context **record)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	const char *errstr;

	if (migrate_state_folder_set_commit(ctx->state, record, &errstr) < 0) {
		migrate_importer_set_error(ctx, MIGRATE_ERROR_TEMP, "%s",
					   errstr);
		return -1;
	}
	ctx->hooks->save_progress(ctx->hook_context);
	return 0;
}

int migrate_importer_durable_wait(struct migrate_importer *imp)
{
	const char *errstr;

	if (imp->durable_sync == NULL)
		return 0;
	if (migrate_syncfs_finish(&imp->durable_sync, &errstr) < 0) {
		migrate_state_folder_set_rollback(&imp->durable_record);
		migrate_importer_set_error(imp->ctx, MIGRATE_ERROR_DESTINATION,
			"Destination folder %s: %s", imp->folder->dest.vname,
			errstr);
		return -1;
	}
	return migrate_importer_record(imp, &imp->durable_record);
}

int migrate_importer_durable_poll(struct migrate_importer *imp)
{
	if (imp->durable_sync == NULL ||
	    !migrate_syncfs_is_done(imp->durable_sync))
		return 0;
	return migrate_importer_durable_wait(imp);
}

/* migrate_fsync=batch: the batch's files were written without fsync();
   one syncfs() makes all of them (and their directory entries) durable
   before the state may say they were imported. It runs in the background
   while the next batch is fetched and saved; the record waits for it
   (migrate_importer_durable_poll()), and the next commit waits for both. */
static int
migrate_importer_make_durable(struct migrate_importer *imp,
			      struct dict_transaction_context **record)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	const char *path, *errstr;

	/* syncfs() flushes the whole file system the mail root is on */
	path = mailbox_list_get_root_forced(mailbox_get_namespace(
		imp->box)->list, MAILBOX_LIST_PATH_TYPE_MAILBOX);
	imp->durable_sync = migrate_syncfs_start(path, &errstr);
	if (imp->durable_sync != NULL) {
		imp->durable_record = *record;
		*record = NULL;
		return 0;
	}
	/* no thread: in the foreground */
	e_debug(imp->event, "syncfs in the foreground: %s", errstr);
	if (migrate_syncfs(path, &errstr) < 0) {
		migrate_state_folder_set_rollback(record);
		migrate_importer_set_error(ctx, MIGRATE_ERROR_DESTINATION,
			"Destination folder %s: %s", imp->folder->dest.vname,
			errstr);
		return -1;
	}
	return migrate_importer_record(imp, record);
}

/* After a commit: the high-water mark moves, and once the mail is
   durable the state records the map and what status shows of the running
   pass */
static int migrate_importer_commit_record(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct dict_transaction_context *record;
	struct migrate_folder_state fs;
	struct mailbox_status status;

	/* the previous batch's record comes first */
	if (migrate_importer_durable_wait(imp) < 0)
		return -1;
	/* The box's view only sees the commit after a sync: without it
	   dst_uidnext would be stale, and a resumed run would match mail
	   this map already owns by identity once more. */
	if (mailbox_sync(imp->box, 0) < 0) {
		migrate_importer_dest_failed(imp, imp->box,
					     "sync after commit failed");
		return -1;
	}
	migrate_importer_dest_status(imp, &status);
	/* the map belongs to this UIDVALIDITY pair: a pass resumed after
	   a reconnect (or the next run) can trust it */
	imp->fs.src_uidvalidity = imp->uidvalidity;
	imp->fs.dst_uidvalidity = status.uidvalidity;
	imp->fs.dst_uidnext = status.uidnext;
	migrate_importer_advance(imp);
	imp->have_state = TRUE;
	/* what status shows of a running pass: its counts so far (the
	   folder's own totals are added up when the pass ends) */
	fs = imp->fs;
	migrate_counters_set_pass(&fs.counters, &imp->folder->counters);
	fs.total_imported += imp->folder->counters.imported;
	fs.planned = imp->folder->planned;
	fs.planned_bytes = imp->folder->planned_bytes;
	/* taken now: what later batches change isn't durable yet */
	record = migrate_state_folder_set_begin(ctx->state,
						imp->folder->src_name, &fs);
	if (ctx->batch_fsync)
		return migrate_importer_make_durable(imp, &record);
	return migrate_importer_record(imp, &record);
}

int migrate_importer_commit(struct migrate_importer *imp)
{
	struct mail_transaction_commit_changes changes;
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct seq_range_iter iter;
	const uint32_t *src_uidp;
	unsigned int n = 0;
	uint32_t dst_uid;

	if (imp->trans == NULL)
		return 0;
	if (imp->trans_save_failed) {
		/* The transaction's last save failed (a body cut off
		   mid-literal, a destination write error). dbox keeps that
		   failure in the transaction's save context, and committing
		   now would unlink the files of every message saved in it
		   while their index records stay ("Unexpectedly lost uid").
		   Roll the batch back instead: it is fetched again. */
		migrate_importer_rollback(imp);
		return 0;
	}
	if (mailbox_transaction_commit_get_changes(&imp->trans, &changes) < 0)
		return migrate_importer_commit_failed(imp);
	/* saved_uids come in save order */
	seq_range_array_iter_init(&iter, &changes.saved_uids);
	array_foreach(&imp->pending_uids, src_uidp) {
		if (!seq_range_array_iter_nth(&iter, n++, &dst_uid))
			break;
		migrate_uidmap_add(&imp->fs.uidmap, *src_uidp, dst_uid);
		if (dst_uid != *src_uidp && imp->preserve_uids)
			imp->uids_preserve_failed = TRUE;
	}
	pool_unref(&changes.pool);
	array_clear(&imp->pending_uids);
	if (imp->trans_msgs > 0) {
		/* mail is safe: a reconnect after this starts a new
		   incident (migrate_reconnect_max) */
		ctx->live->progress++;
	}
	imp->trans_msgs = 0;
	imp->trans_bytes = 0;

	return migrate_importer_commit_record(imp);
}

/* The destination quota or file system refused msg. The open transaction
   can only be rolled back as a whole: the first time, its messages (msg
   too: it may fit without them) go back to be fetched again, and from now
   on every message is committed on its own. When a message refused alone,
   the destination is full: it and every message of the folder still to
   import go to the item log as destination-quota or destination-full, and
   the run stops (retrying can't help until the quota is raised or space
   freed). Returns 0 to go on, -1 to stop. */
static int migrate_importer_dest_full(struct migrate_importer *imp,
				      struct migrate_msg *msg,
				      const char *error, bool disk)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	enum migrate_item_class class = disk ? MIGRATE_ITEM_DEST_FULL :
		MIGRATE_ITEM_DEST_QUOTA;
	const char *what = disk ? "the destination file system is full" :
		"the destination quota is full";
	struct migrate_msg *m;
	unsigned int count = 0;

	if (!imp->quota_single && imp->trans_msgs > 0) {
		e_debug(imp->event, "UID %u: %s: committing message by message "
			"from now on", msg->uid, error);
		imp->quota_single = TRUE;
		migrate_importer_rollback(imp);
		msg->rolled_back = TRUE;
		imp->batch_rolled_back = TRUE;
		return 0;
	}
	error = t_strdup(error);
	migrate_importer_rollback(imp);
	migrate_importer_item(imp, msg, class, error);
	msg->action = MIGRATE_MSG_FAILED;
	array_foreach_elem(&imp->msgs, m) {
		if (m->action != MIGRATE_MSG_IMPORT)
			continue;
		migrate_importer_item(imp, m, class,
				      t_strconcat("not tried: ", what, NULL));
		m->action = MIGRATE_MSG_FAILED;
		count++;
	}
	imp->folder->counters.failed += count + 1;
	migrate_importer_set_error(ctx, disk ? MIGRATE_ERROR_DISK_FULL :
		MIGRATE_ERROR_QUOTA, "Destination %s full in %s: %s. What fit "
		"is kept; %u message(s) of this folder are in the item log "
		"as %s (migrate report -r %s): %s and run again",
		disk ? "file system" : "quota", imp->folder->dest.vname, error,
		count + 1, migrate_item_class_name(class),
		migrate_item_class_name(class),
		disk ? "free space" : "raise the quota");
	return -1;
}

/* A save in the open transaction (begun if there is none) with msg's
   flags, keywords, INTERNALDATE and, when UIDs are preserved and can be,
   its UID */
static struct mail_save_context *
migrate_importer_save_alloc(struct migrate_importer *imp,
			    const struct migrate_msg *msg)
{
	struct mail_save_context *save;
	struct mail_keywords *kw;

	if (imp->trans == NULL) {
		struct mailbox_status status;

		imp->trans = mailbox_transaction_begin(imp->box,
			MAILBOX_TRANSACTION_FLAG_EXTERNAL |
			MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS, __func__);
		mailbox_get_open_status(imp->box, STATUS_UIDNEXT, &status);
		imp->save_min_uid = status.uidnext;
	}
	save = mailbox_save_alloc(imp->trans);
	/* until mailbox_save_finish() succeeds */
	imp->trans_save_failed = TRUE;
	kw = msg->keywords == NULL || msg->keywords[0] == NULL ? NULL :
		mailbox_keywords_create_valid(imp->box, msg->keywords);
	mailbox_save_set_flags(save, msg->flags, kw);
	if (kw != NULL)
		mailbox_keywords_unref(&kw);
	if (msg->internaldate != 0)
		mailbox_save_set_received_date(save, msg->internaldate,
					       msg->tz_offset);
	if (!imp->preserve_uids)
		;
	else if (msg->uid >= imp->save_min_uid &&
		 msg->uid <= MIGRATE_SAVE_UID_MAX) {
		mailbox_save_set_uid(save, msg->uid);
		imp->save_min_uid = msg->uid + 1;
	} else {
		/* taken (another source folder merged into this one, a
		   local delivery) or too high to keep: the storage assigns
		   a new UID */
		imp->uids_preserve_failed = TRUE;
	}
	return save;
}

int migrate_importer_save(struct migrate_importer *imp,
			  struct migrate_msg *msg, struct istream *body,
			  uoff_t body_size)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct mail_save_context *save;
	enum mail_error mail_error;
	enum migrate_error code;
	const char *error;
	ssize_t ret;
	bool failed = FALSE;

	/* A body is saved once it has arrived whole (up to 1 MB): a cut
	   connection then never leaves a save half done, which would roll
	   back the whole batch (dbox can't commit it) and lose the progress
	   of every message before it. A bigger body commits the batch
	   before it instead. */
	ret = migrate_source_conn_body_prefetch(ctx->conn, &code, &error);
	if (ret < 0) {
		migrate_importer_set_error(ctx, code, "%s", error);
		return -1;
	}
	if (ret == 0 && imp->trans_msgs > 0 &&
	    migrate_importer_commit(imp) < 0)
		return -1;
	save = migrate_importer_save_alloc(imp, msg);
	/* the error texts are copied at once: the storage frees its last
	   error when it sets the next one, and mailbox_save_cancel() on a
	   full file system does (sdbox: the item's reason was freed
	   memory) */
	ctx->hooks->save_begin(ctx->hook_context, imp->folder, save,
			       body, body_size);
	if (mailbox_save_begin(&save, body) < 0) {
		error = t_strdup(mailbox_get_last_internal_error(imp->box,
								 &mail_error));
		goto dest_failed;
	}
	for (;;) {
		if (mailbox_save_continue(save) < 0) {
			failed = TRUE;
			break;
		}
		ret = i_stream_read(body);
		if (ret > 0 || ret == -2)
			continue;
		if (ret == -1)
			break;
		if (migrate_source_conn_wait(ctx->conn, &error) < 0) {
			mailbox_save_cancel(&save);
			migrate_importer_set_error(ctx, MIGRATE_ERROR_TEMP,
						   "%s", error);
			migrate_source_conn_disconnect(ctx->conn);
			return -1;
		}
	}
	if (!failed && (body->stream_errno != 0 ||
			body->v_offset != body_size)) {
		/* cut mid-message: never save half a message */
		mailbox_save_cancel(&save);
		return 0;
	}
	if (failed) {
		error = t_strdup(mailbox_get_last_internal_error(imp->box,
								 &mail_error));
		mailbox_save_cancel(&save);
		goto dest_failed_nosave;
	}
	if (mailbox_save_finish(&save) < 0) {
		error = t_strdup(mailbox_get_last_internal_error(imp->box,
								 &mail_error));
		goto dest_failed_nosave;
	}
	imp->trans_save_failed = FALSE;
	array_push_back(&imp->pending_uids, &msg->uid);
	if (imp->trans_msgs++ == 0)
		imp->trans_started = ioloop_time;
	imp->trans_bytes += body_size;
	imp->trans_last_uid = msg->uid;
	msg->action = MIGRATE_MSG_DONE;
	imp->folder->counters.imported++;
	imp->folder->counters.bytes += body_size;
	ctx->live->cur_done++;
	migrate_source_conn_progress(ctx->conn);
	ctx->live->bytes_done += body_size;
	ctx->hooks->saved(ctx->hook_context);
	migrate_importer_item_resolved(imp, msg->uid);
	return 1;

dest_failed:
dest_failed_nosave:
	if (migrate_dest_error_is_disk_full(error))
		return migrate_importer_dest_full(imp, msg, error, TRUE);
	if (mail_error == MAIL_ERROR_NOQUOTA)
		return migrate_importer_dest_full(imp, msg, error, FALSE);
	migrate_importer_item(imp, msg, MIGRATE_ITEM_DEST_ERROR, error);
	msg->action = MIGRATE_MSG_FAILED;
	return 0;
}

bool migrate_importer_batch_full(struct migrate_importer *imp)
{
	return imp->trans_msgs >= imp->ctx->set->batch_messages ||
		(imp->quota_single && imp->trans_msgs > 0) ||
		imp->trans_bytes >= imp->ctx->set->batch_bytes ||
		/* a slow source: what was saved is committed (and shown by
		   status, kept by an interrupted run) every few seconds */
		(imp->trans_msgs > 0 &&
		 ioloop_time - imp->trans_started >= MIGRATE_BATCH_MAX_SECS);
}

/* Update destination flags of already imported messages from source. */
struct migrate_flag_sync {
	struct migrate_importer *imp;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	ARRAY_TYPE(seq_range) seen_uids;
};

static void migrate_flags_cb(const struct migrate_reply *reply,
			     struct migrate_flag_sync *ctx)
{
	struct migrate_importer *imp = ctx->imp;
	struct migrate_msg tmp;
	const unsigned char *hdr;
	size_t hdr_size;
	uint32_t uid, dst_uid;

	if (strcasecmp(reply->name, "FETCH") != 0)
		return;
	i_zero(&tmp);
	uid = migrate_importer_parse_fetch(imp, reply->args, &tmp,
					   &hdr, &hdr_size);
	if (uid == 0 || tmp.keywords == NULL)
		return;
	if (tmp.gm_labels_known && tmp.gm_labelled) {
		/* All Mail, delete mode: archived mail the user labelled
		   again arrives through its label folder now, so its
		   Archive copy goes like mail gone from the source */
		return;
	}
	seq_range_array_add(&ctx->seen_uids, uid);
	dst_uid = migrate_uidmap_lookup(&imp->fs.uidmap, uid);
	if (dst_uid != 0 && mail_set_uid(ctx->mail, dst_uid))
		migrate_dest_update_flags(imp, ctx->mail, &tmp);
}

/* Make a destination mail's flags and keywords those of the source */
static void migrate_dest_update_flags(struct migrate_importer *imp,
				      struct mail *mail,
				      const struct migrate_msg *src)
{
	static const char *const no_keywords[] = { NULL };
	const char *const *src_kw, *const *old_kw;
	struct mail_keywords *kw;
	unsigned int i;
	bool kw_differ;

	src_kw = src->keywords == NULL ? no_keywords : src->keywords;
	old_kw = mail_get_keywords(mail);
	kw_differ = str_array_length(old_kw) != str_array_length(src_kw);
	for (i = 0; !kw_differ && src_kw[i] != NULL; i++) {
		if (!str_array_icase_find(old_kw, src_kw[i]))
			kw_differ = TRUE;
	}
	if ((mail_get_flags(mail) & MAIL_FLAGS_NONRECENT) == src->flags &&
	    !kw_differ)
		return;
	mail_update_flags(mail, MODIFY_REPLACE, src->flags);
	if (kw_differ) {
		kw = mailbox_keywords_create_valid(imp->box, src_kw);
		mail_update_keywords(mail, MODIFY_REPLACE, kw);
		mailbox_keywords_unref(&kw);
	}
	imp->folder->counters.flags_updated++;
}

int migrate_importer_sync_claimed(struct migrate_importer *imp)
{
	struct mailbox_transaction_context *t;
	struct migrate_msg *msg;
	struct mail *mail;

	/* not EXTERNAL (that is for saves only): Maildir would record the
	   change in its index but never rename the file, and its next sync
	   would restore the file name's old flags */
	t = mailbox_transaction_begin(imp->box, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach_elem(&imp->msgs, msg) {
		if (msg->claimed_dst_uid != 0 &&
		    mail_set_uid(mail, msg->claimed_dst_uid))
			migrate_dest_update_flags(imp, mail, msg);
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0) {
		migrate_importer_dest_failed(imp, imp->box,
					     "flag update failed");
		return -1;
	}
	return 0;
}

/* Delete mode: expunge at the destination the imported messages (UIDs
   up to max_uid) that a full flag listing didn't show (seen_uids) */
static int
migrate_importer_expunge_gone(struct migrate_importer *imp, uint32_t max_uid,
			      const ARRAY_TYPE(seq_range) *seen_uids)
{
	struct mailbox_transaction_context *t;
	struct mail *mail;
	const struct migrate_uid_run *urun;
	ARRAY_TYPE(uint32_t) gone;
	uint32_t uid, dst_uid, *uidp;

	t_array_init(&gone, 16);
	array_foreach(&imp->fs.uidmap, urun) {
		for (uid = urun->src_uid;
		     uid < urun->src_uid + urun->count; uid++) {
			if (uid <= max_uid && !seq_range_exists(seen_uids, uid))
				array_push_back(&gone, &uid);
		}
	}
	t = mailbox_transaction_begin(imp->box, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach_modifiable(&gone, uidp) {
		dst_uid = migrate_uidmap_lookup(&imp->fs.uidmap, *uidp);
		if (dst_uid != 0 && mail_set_uid(mail, dst_uid)) {
			mail_expunge(mail);
			imp->folder->counters.expunged++;
		}
		migrate_uidmap_remove(&imp->fs.uidmap, *uidp);
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0) {
		migrate_importer_dest_failed(imp, imp->box, "expunge failed");
		return -1;
	}
	return 0;
}

int migrate_importer_sync_flags(struct migrate_importer *imp, uint32_t max_uid,
				bool *full_r)
{
	struct migrate_importer_ctx *ictx = imp->ctx;
	struct migrate_flag_sync ctx;
	enum migrate_error code;
	const char *error;
	unsigned int present_tag = 0;
	string_t *cmd;
	int ret;

	const char *flags_cmd;

	*full_r = FALSE;
	cmd = t_str_new(128);
	if (imp->flags_tag != 0) {
		/* sent already, in the burst with EXAMINE */
		present_tag = imp->flags_tag;
		imp->flags_tag = 0;
		str_append(cmd, imp->flags_cmd);
		*full_r = imp->flags_full;
	} else {
		flags_cmd = migrate_importer_flags_cmd(imp, max_uid,
						       imp->highestmodseq,
						       full_r);
		if (flags_cmd == NULL)
			return 0;
		str_append(cmd, flags_cmd);
	}
	i_zero(&ctx);
	ctx.imp = imp;
	/* grown in migrate_flags_cb, inside the connection's own data stack
	   frame: a t_array would panic there ("stack frame changed") */
	p_array_init(&ctx.seen_uids, imp->pool, 32);
	/* not EXTERNAL: see migrate_importer_sync_claimed() */
	ctx.t = mailbox_transaction_begin(imp->box, 0, __func__);
	ctx.mail = mail_alloc(ctx.t, 0, NULL);
	for (;;) {
		if (present_tag != 0) {
			ret = migrate_source_conn_wait_tag(ictx->conn,
				present_tag,
				(migrate_untagged_callback_t *)migrate_flags_cb,
				&ctx, &code, &error);
			present_tag = 0;
		} else {
			ret = migrate_source_conn_run(ictx->conn, str_c(cmd),
				(migrate_untagged_callback_t *)migrate_flags_cb,
				&ctx, &code, &error);
		}
		if (ret != 0 || code != MIGRATE_ERROR_TEMP)
			break;
		/* throttled: a skipped flag sync would be lost for good,
		   the pass records the new HIGHESTMODSEQ */
		if (migrate_importer_throttle(ictx, error) < 0) {
			/* a failed flag commit below is the error to keep */
			ret = -1;
			code = ictx->error_code;
			error = t_strdup(ictx->error);
			migrate_importer_clear_error(ictx);
			break;
		}
	}
	mail_free(&ctx.mail);
	if (mailbox_transaction_commit(&ctx.t) < 0) {
		migrate_importer_dest_failed(imp, imp->box,
					     "flag update failed");
		return -1;
	}
	if (ret < 0) {
		migrate_importer_set_error(ictx, code, "%s", error);
		return -1;
	}
	if (ret == 0) {
		e_warning(imp->event, "Flag sync: %s", error);
		*full_r = FALSE;
		/* keep the old HIGHESTMODSEQ: the next run asks again */
		imp->flag_sync_failed = TRUE;
		return 0;
	}
	/* delete mode: imported messages gone from the source */
	if (*full_r && ictx->delete_mode &&
	    migrate_importer_expunge_gone(imp, max_uid, &ctx.seen_uids) < 0)
		return -1;
	return 0;
}
