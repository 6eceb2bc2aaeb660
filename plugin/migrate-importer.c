/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#ifndef _GNU_SOURCE
#  define _GNU_SOURCE /* syncfs() */
#endif
#include "lib.h"
#include "array.h"
#include "bsearch-insert-pos.h"
#include "hash.h"
#include "str.h"
#include "strnum.h"
#include "str-sanitize.h"
#include "istream.h"
#include "ioloop.h"
#include "imap-arg.h"
#include "imap-date.h"
#include "imap-util.h"
#include "time-util.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "migrate-settings.h"
#include "migrate-compat.h"
#include "migrate-source-conn.h"
#include "migrate-identity.h"
#include "migrate-importer.h"

#include <fcntl.h>
#include <unistd.h>

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
};

/* a batch is committed after this many seconds, however small */
#define MIGRATE_BATCH_MAX_SECS 5

/* keywords kept per message (Dovecot's own IMAP server has no limit, but
   no real client sets more than a handful) */
#define MIGRATE_MAX_KEYWORDS_PER_MSG 256

HASH_TABLE_DEFINE_TYPE(migrate_uid_identity, void *, const char *);

struct migrate_seq_uid {
	uint32_t seq, uid;
};

struct migrate_dest_ids {
	ARRAY_TYPE(uint32_t) uids;
	unsigned int used;
};

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
	/* the flag sync FETCH sent in the same burst, still unread */
	unsigned int flags_tag;
	const char *flags_cmd;
	/* flags_cmd asks for every message's flags (no CHANGEDSINCE) */
	bool flags_full;
	unsigned int pass_no;
	/* UIDs that failed (FETCH or destination) in this folder's run:
	   later passes of the same run don't retry them */
	ARRAY_TYPE(seq_range) failed_uids;
	/* UIDs counted in ctx->live->items_by_class: a later pass meeting the
	   same message again doesn't count it twice */
	ARRAY_TYPE(seq_range) counted_uids;
	struct timeval started;
};

/* The driver's hooks (migrate-importer.h): their failures become this
   context's error */

static void migrate_importer_set_error(struct migrate_importer_ctx *ctx,
				       enum migrate_error code,
				       const char *error)
{
	ctx->error_code = code;
	ctx->error = p_strdup(ctx->pool, error);
}

static int migrate_importer_throttle(struct migrate_importer_ctx *ctx,
				     const char *why)
{
	const char *error;

	if (ctx->hooks->throttle(ctx->hook_context, why, &error) < 0) {
		migrate_importer_set_error(ctx, MIGRATE_ERROR_TEMP, error);
		return -1;
	}
	return 0;
}

static int migrate_importer_reconnect(struct migrate_importer_ctx *ctx,
				      const char *why)
{
	enum migrate_error code;
	const char *error;

	if (ctx->hooks->reconnect(ctx->hook_context, why, &code, &error) < 0) {
		migrate_importer_set_error(ctx, code, error);
		return -1;
	}
	ctx->error_code = MIGRATE_ERROR_NONE;
	ctx->error = NULL;
	return 0;
}

static bool
migrate_importer_errors_max_reached(struct migrate_importer_ctx *ctx)
{
	const char *error;

	if (!ctx->hooks->errors_max_reached(ctx->hook_context, &error))
		return FALSE;
	migrate_importer_set_error(ctx, MIGRATE_ERROR_ITEMS, error);
	return TRUE;
}

static void migrate_importer_item(struct migrate_importer *imp,
				  const struct migrate_msg *msg,
				  enum migrate_item_class class,
				  const char *reason);

static void
migrate_parse_flags(struct migrate_importer *imp, const struct imap_arg *args,
		    struct migrate_msg *msg)
{
	ARRAY_TYPE(const_string) keywords;
	const char *atom;

	unsigned int dropped = 0;

	msg->flags = 0;
	p_array_init(&keywords, imp->pool, 4);
	for (; !IMAP_ARG_IS_EOL(args); args++) {
		if (!imap_arg_get_atom(args, &atom))
			continue;
		if (atom[0] == '\\') {
			/* \Recent and unknown system flags are dropped */
			msg->flags |= imap_parse_system_flag(atom) &
				~MAIL_RECENT;
			continue;
		}
		/* each keyword costs the destination index work: thousands
		   on one message come from a broken or hostile source */
		if (array_count(&keywords) >= MIGRATE_MAX_KEYWORDS_PER_MSG) {
			dropped++;
			continue;
		}
		atom = p_strdup(imp->pool, atom);
		array_push_back(&keywords, &atom);
	}
	if (dropped > 0 && !imp->keywords_capped) {
		imp->keywords_capped = TRUE;
		e_warning(imp->event, "The source sent a message with more "
			  "than %u keywords: %u dropped (further messages of "
			  "this folder over the limit are not logged)",
			  MIGRATE_MAX_KEYWORDS_PER_MSG, dropped);
	}
	array_append_zero(&keywords);
	msg->keywords = array_front(&keywords);
}

static void
migrate_parse_gm_labels(struct migrate_importer *imp,
			const struct imap_arg *list, struct migrate_msg *msg)
{
	const char *label;

	msg->gm_labels_known = TRUE;
	for (; !IMAP_ARG_IS_EOL(list); list++) {
		if (imap_arg_get_astring(list, &label) &&
		    imp->ctx->hooks->gmail_label_imported(
				imp->ctx->hook_context, label))
			msg->gm_labelled = TRUE;
	}
}

/* Parse FETCH items into msg. Returns the UID, 0 if none. */
static uint32_t
migrate_parse_fetch(struct migrate_importer *imp, const struct imap_arg *args,
		    struct migrate_msg *msg, const unsigned char **hdr_r,
		    size_t *hdr_size_r)
{
	const struct imap_arg *list;
	const char *name, *value;
	uint32_t uid = 0;

	*hdr_r = NULL;
	*hdr_size_r = 0;
	while (!IMAP_ARG_IS_EOL(&args[0]) && !IMAP_ARG_IS_EOL(&args[1])) {
		if (!imap_arg_get_atom(&args[0], &name)) {
			args++;
			continue;
		}
		if (strcasecmp(name, "UID") == 0) {
			if (!imap_arg_get_atom(&args[1], &value) ||
			    str_to_uint32(value, &uid) < 0)
				uid = 0;
		} else if (strcasecmp(name, "FLAGS") == 0 && msg != NULL) {
			if (imap_arg_get_list(&args[1], &list))
				migrate_parse_flags(imp, list, msg);
		} else if (strcasecmp(name, "INTERNALDATE") == 0 &&
			   msg != NULL) {
			if (imap_arg_get_astring(&args[1], &value) &&
			    !imap_parse_datetime(value, &msg->internaldate,
						 &msg->tz_offset))
				msg->internaldate = 0;
		} else if (strcasecmp(name, "RFC822.SIZE") == 0 &&
			   msg != NULL) {
			if (!imap_arg_get_atom(&args[1], &value) ||
			    str_to_uoff(value, &msg->size) < 0)
				msg->size = 0;
		} else if (strcasecmp(name, "X-GM-MSGID") == 0 &&
			   msg != NULL) {
			if (imap_arg_get_atom(&args[1], &value))
				msg->gm_msgid = p_strdup(imp->pool, value);
		} else if (strcasecmp(name, "X-GM-LABELS") == 0 &&
			   msg != NULL) {
			if (imap_arg_get_list(&args[1], &list))
				migrate_parse_gm_labels(imp, list, msg);
		} else if (str_begins_with(t_str_ucase(name),
					   "BODY[HEADER.FIELDS")) {
			/* the parser joined "BODY[HEADER.FIELDS (...)]" */
			if (imap_arg_get_nstring(&args[1], &value) &&
			    value != NULL) {
				*hdr_r = (const unsigned char *)value;
				*hdr_size_r = strlen(value);
			}
		}
		args += 2;
	}
	return uid;
}

/* The parser splits "BODY[HEADER.FIELDS (A B)]" into an atom, a list and
   an atom; rejoin so items come in name/value pairs. */
static const struct imap_arg *
migrate_fetch_args_normalize(const struct imap_arg *args)
{
	ARRAY(struct imap_arg) out;
	const char *name;
	unsigned int i;

	t_array_init(&out, 16);
	for (i = 0; !IMAP_ARG_IS_EOL(&args[i]); i++) {
		if (imap_arg_get_atom(&args[i], &name) &&
		    strncasecmp(name, "BODY[HEADER.FIELDS", 18) == 0 &&
		    args[i+1].type == IMAP_ARG_LIST &&
		    imap_arg_get_atom(&args[i+2], &name) && name[0] == ']') {
			struct imap_arg *arg = array_append_space(&out);
			arg->type = IMAP_ARG_ATOM;
			arg->_data.str = "BODY[HEADER.FIELDS]";
			arg->str_len = strlen(arg->_data.str);
			i += 2;
			continue;
		}
		array_push_back(&out, &args[i]);
	}
	array_push_back(&out, &args[i]);
	return array_front(&out);
}

static int migrate_seq_uid_cmp(const uint32_t *seq,
			       const struct migrate_seq_uid *item)
{
	return *seq < item->seq ? -1 : (*seq > item->seq ? 1 : 0);
}

/* Only sequences that came with a message: never sized from EXISTS (a
   server announcing 4e9 messages would cost gigabytes) */
static void migrate_seq_set(struct migrate_importer *imp, uint32_t seq,
			    uint32_t uid)
{
	struct migrate_seq_uid *item;
	unsigned int idx;

	if (seq == 0)
		return;
	if (array_bsearch_insert_pos(&imp->seq_uids, &seq,
				     migrate_seq_uid_cmp, &idx)) {
		item = array_idx_modifiable(&imp->seq_uids, idx);
		item->uid = uid;
		return;
	}
	item = array_insert_space(&imp->seq_uids, idx);
	item->seq = seq;
	item->uid = uid;
}

static void migrate_seq_expunge(struct migrate_importer *imp, uint32_t seq)
{
	struct migrate_seq_uid *items;
	unsigned int idx, count;

	if (seq == 0)
		return;
	if (array_bsearch_insert_pos(&imp->seq_uids, &seq,
				     migrate_seq_uid_cmp, &idx))
		array_delete(&imp->seq_uids, idx, 1);
	items = array_get_modifiable(&imp->seq_uids, &count);
	for (; idx < count; idx++)
		items[idx].seq--;
}

static uint32_t migrate_seq_lookup(struct migrate_importer *imp, uint32_t seq)
{
	const struct migrate_seq_uid *item;

	item = array_bsearch(&imp->seq_uids, &seq, migrate_seq_uid_cmp);
	return item == NULL ? 0 : item->uid;
}

/* EXAMINE */

static void migrate_examine_cb(const struct migrate_reply *reply,
			       struct migrate_importer *imp)
{
	uint64_t num;

	if (strcasecmp(reply->name, "EXISTS") == 0) {
		imp->exists = reply->num;
		return;
	}
	if (strcasecmp(reply->name, "EXPUNGE") == 0) {
		migrate_seq_expunge(imp, reply->num);
		return;
	}
	if (reply->resp_code == NULL || reply->resp_code_arg == NULL ||
	    str_to_uint64(reply->resp_code_arg, &num) < 0)
		return;
	if (strcasecmp(reply->resp_code, "UIDVALIDITY") == 0)
		imp->uidvalidity = num;
	else if (strcasecmp(reply->resp_code, "UIDNEXT") == 0) {
		/* 2^32-1 and above leave no room for a last UID: unknown,
		   the folder is listed to its end ("N:*") */
		imp->uidnext = num >= (uint32_t)-1 ? 0 : num;
	}
	else if (strcasecmp(reply->resp_code, "HIGHESTMODSEQ") == 0)
		imp->highestmodseq = num;
}

static void migrate_list_cb(const struct migrate_reply *reply,
			    struct migrate_importer *imp);
static const char *migrate_list_cmd(struct migrate_importer *imp,
				    const char *uidset);

/* EXAMINE; with prefetch_uidset, the listing of those UIDs is pipelined
   right behind it (one round trip instead of two). imp->prefetched says
   whether that listing is complete. */
static void migrate_importer_drain_flags(struct migrate_importer *imp)
{
	enum migrate_error code;
	const char *error;

	/* its FETCH replies must not reach another command's callback */
	if (imp->flags_tag != 0 &&
	    migrate_source_conn_is_connected(imp->ctx->conn)) {
		(void)migrate_source_conn_wait_tag(imp->ctx->conn,
			imp->flags_tag, NULL, NULL, &code, &error);
	}
	imp->flags_tag = 0;
}

static int migrate_importer_examine(struct migrate_importer *imp,
				    const char *prefetch_uidset,
				    const char *flags_cmd)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	string_t *cmd = t_str_new(128);
	enum migrate_error code, list_code;
	const char *error, *list_error;
	unsigned int tag, list_tag = 0;
	int ret, list_ret;

	if (migrate_source_conn_compress(ctx->conn, &code, &error) < 0) {
		ctx->error_code = code;
		ctx->error = p_strdup(ctx->pool, error);
		return -1;
	}
	str_append(cmd, "EXAMINE ");
	if (!migrate_source_conn_append_mailbox(ctx->conn, cmd,
						imp->folder->src_name)) {
		imp->folder->error = "folder name can't be sent to the server";
		return 0;
	}
	if (migrate_source_conn_has_capability(ctx->conn, "CONDSTORE"))
		str_append(cmd, " (CONDSTORE)");
	imp->exists = imp->uidvalidity = imp->uidnext = 0;
	imp->highestmodseq = 0;
	imp->prefetched = FALSE;
	array_clear(&imp->seq_uids);
	tag = migrate_source_conn_send(ctx->conn, str_c(cmd));
	if (prefetch_uidset != NULL) {
		list_tag = migrate_source_conn_send(ctx->conn,
			migrate_list_cmd(imp, prefetch_uidset));
	}
	imp->flags_tag = 0;
	if (flags_cmd != NULL) {
		imp->flags_cmd = p_strdup(imp->pool, flags_cmd);
		imp->flags_tag = migrate_source_conn_send(ctx->conn, flags_cmd);
	}
	ret = migrate_source_conn_wait_tag(ctx->conn, tag,
		(migrate_untagged_callback_t *)migrate_examine_cb, imp,
		&code, &error);
	if (ret >= 0 && list_tag != 0) {
		ARRAY_TYPE(seq_range) asked;

		t_array_init(&asked, 1);
		seq_range_array_add_range(&asked, imp->prefetch_start,
					  imp->prefetch_end);
		imp->list_asked = &asked;
		list_ret = migrate_source_conn_wait_tag(ctx->conn, list_tag,
			(migrate_untagged_callback_t *)migrate_list_cb, imp,
			&list_code, &list_error);
		imp->list_asked = NULL;
		if (list_ret < 0) {
			ret = -1;
			code = list_code;
			error = list_error;
		}
		imp->prefetched = ret > 0 && list_ret > 0;
	}
	if (ret < 0) {
		ctx->error_code = code;
		ctx->error = p_strdup(ctx->pool, error);
		return -1;
	}
	if (ret == 0) {
		migrate_importer_drain_flags(imp);
		imp->folder->error = p_strdup_printf(ctx->pool,
			"EXAMINE failed: %s", error);
		return 0;
	}
	if (imp->uidvalidity == 0) {
		imp->folder->error = "server sent no UIDVALIDITY";
		return 0;
	}
	return 1;
}

/* Destination */

/* Returns 1 when the folder is open, 0 when it can't exist at the destination
   (folder->error says why; the run goes on), -1 when the run fails. */
static int migrate_importer_dest_open(struct migrate_importer *imp)
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
	if (mailbox_open(imp->box) < 0 ||
	    mailbox_sync(imp->box, 0) < 0)
		goto failed;
	mailbox_get_open_status(imp->box, STATUS_UIDVALIDITY | STATUS_UIDNEXT |
				STATUS_MESSAGES, &status);
	/* an empty, never used folder can still take the source's
	   UIDVALIDITY */
	if (ctx->set->preserve_uids && status.messages == 0 &&
	    status.uidnext == 1 && status.uidvalidity != imp->uidvalidity) {
		/* the open view sees the new UIDVALIDITY only after a sync
		   (Maildir's INBOX, which exists before the ctx, said
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
	/* setting it again is harmless; reading it needs a list refresh */
	if (folder->subscribed && ctx->set->subscriptions)
		(void)mailbox_set_subscribed(imp->box, TRUE);
	ctx->hooks->dest_unlock(ctx->hook_context);
	return 1;
failed:
	ctx->hooks->dest_unlock(ctx->hook_context);
	error = mailbox_get_last_internal_error(imp->box, &mail_error);
	if (mail_error == MAIL_ERROR_NOTPOSSIBLE ||
	    mail_error == MAIL_ERROR_PARAMS ||
	    mail_error == MAIL_ERROR_NOTFOUND) {
		/* this name can't be a folder there (e.g. mbox: a folder
		   with mail can't have subfolders): the others go on */
		folder->error = p_strdup_printf(ctx->pool,
			"Destination folder %s can't be created: %s",
			folder->dest.vname, error);
		mailbox_free(&imp->box);
		return 0;
	}
	ctx->error_code = MIGRATE_ERROR_DESTINATION;
	ctx->error = p_strdup_printf(ctx->pool,
		"Destination folder %s: %s", folder->dest.vname, error);
	folder->error = ctx->error;
	return -1;
}

static void migrate_importer_dest_status(struct migrate_importer *imp,
					 struct mailbox_status *status_r)
{
	mailbox_get_open_status(imp->box, STATUS_UIDVALIDITY |
				STATUS_UIDNEXT | STATUS_MESSAGES, status_r);
}

/* Read the identities of destination mail with these UIDs. */
static int
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

	if (mailbox_sync(imp->box, 0) < 0)
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
		enum mail_error error;
		imp->ctx->error_code = MIGRATE_ERROR_DESTINATION;
		imp->ctx->error = p_strdup_printf(imp->ctx->pool,
			"Destination folder %s: can't read existing mail: %s",
			imp->folder->dest.vname,
			mailbox_get_last_internal_error(imp->box, &error));
	}
	return ret;
}

/* Read the identities of destination mail with UID >= min_uid. */
static int migrate_importer_dest_scan(struct migrate_importer *imp,
				      uint32_t min_uid)
{
	ARRAY_TYPE(seq_range) uids;

	t_array_init(&uids, 1);
	seq_range_array_add_range(&uids, min_uid, (uint32_t)-1);
	return migrate_importer_dest_scan_uids(imp, &uids);
}

/* Claim a destination message with this identity; 0 if none left. */
static uint32_t migrate_importer_dest_claim(struct migrate_importer *imp,
					    const char *identity)
{
	struct migrate_dest_ids *ids;
	const uint32_t *uidp;

	ids = hash_table_lookup(imp->dest_ids, identity);
	if (ids == NULL || ids->used >= array_count(&ids->uids))
		return 0;
	uidp = array_idx(&ids->uids, ids->used++);
	return *uidp;
}

static void migrate_importer_item_resolved(struct migrate_importer *imp,
					   uint32_t uid);

/* msg is the destination mail dst_uid: link it in the UID map. If the
   state had that mail for a source UID that has vanished since, that
   mapping goes: delete mode must not expunge it as gone. */
static void migrate_importer_link(struct migrate_importer *imp,
				  struct migrate_msg *msg, uint32_t dst_uid)
{
	void *old_src_uid = !hash_table_is_created(imp->relinked) ? NULL :
		hash_table_lookup(imp->relinked, POINTER_CAST(dst_uid));

	if (old_src_uid != NULL) {
		migrate_uidmap_remove(&imp->fs.uidmap,
				      POINTER_CAST_TO(old_src_uid, uint32_t));
	}
	msg->action = MIGRATE_MSG_PRESENT;
	msg->claimed_dst_uid = dst_uid;
	migrate_uidmap_add(&imp->fs.uidmap, msg->uid, dst_uid);
	migrate_importer_item_resolved(imp, msg->uid);
}

/* No destination mail has msg's identity: if some has its header
   fingerprint with another size, the body's size decides at the fetch. */
static void migrate_importer_check_fingerprint(struct migrate_importer *imp,
					       struct migrate_msg *msg)
{
	if (msg->verify_size || hash_table_count(imp->dest_fingerprints) == 0)
		return;
	T_BEGIN {
		msg->verify_size = hash_table_lookup(imp->dest_fingerprints,
			migrate_identity_fingerprint(msg->identity)) != NULL;
	} T_END;
}

/* Listing: identities of the source messages to consider */

static void migrate_list_cb(const struct migrate_reply *reply,
			    struct migrate_importer *imp)
{
	struct migrate_identity_info info;
	struct migrate_msg *msg;
	const struct imap_arg *args;
	const unsigned char *hdr;
	size_t hdr_size;
	uint32_t uid;

	if (strcasecmp(reply->name, "EXPUNGE") == 0) {
		migrate_seq_expunge(imp, reply->num);
		return;
	}
	if (strcasecmp(reply->name, "EXISTS") == 0) {
		imp->exists = reply->num;
		return;
	}
	if (strcasecmp(reply->name, "FETCH") != 0)
		return;
	args = migrate_fetch_args_normalize(reply->args);
	uid = migrate_parse_fetch(imp, args, NULL, &hdr, &hdr_size);
	if (uid == 0 || hash_table_lookup(imp->msgs_by_uid,
					  POINTER_CAST(uid)) != NULL ||
	    (imp->list_asked != NULL &&
	     !seq_range_exists(imp->list_asked, uid)))
		return;
	msg = p_new(imp->pool, struct migrate_msg, 1);
	(void)migrate_parse_fetch(imp, args, msg, &hdr, &hdr_size);
	/* a line the listing asked for: the server makes progress */
	migrate_source_conn_progress(imp->ctx->conn);
	msg->uid = uid;
	msg->seq = reply->num;
	msg->listed = TRUE;
	migrate_seq_set(imp, reply->num, uid);
	migrate_identity_compute(hdr == NULL ? uchar_empty_ptr : hdr,
				 hdr_size, msg->size, imp->pool, &info);
	msg->identity = info.identity;
	msg->message_id = info.message_id;
	msg->subject = info.subject;
	msg->date = info.date;
	array_push_back(&imp->msgs, &msg);
	hash_table_insert(imp->msgs_by_uid, POINTER_CAST(uid), msg);
}

static const char *migrate_list_cmd(struct migrate_importer *imp,
				    const char *uidset)
{
	const char *gm_items = !imp->ctx->gmail_ext ? "" :
		imp->folder->dest.gmail_all_mail ? " X-GM-MSGID X-GM-LABELS" :
		" X-GM-MSGID";

	return t_strdup_printf("UID FETCH %s (UID RFC822.SIZE INTERNALDATE "
		"FLAGS%s BODY.PEEK[HEADER.FIELDS ("
		MIGRATE_IDENTITY_FETCH_FIELDS ")])", uidset, gm_items);
}

static int migrate_importer_list_cmd(struct migrate_importer *imp,
				     const char *uidset)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	enum migrate_error code;
	const char *error;
	int ret;

	for (;;) {
		ret = migrate_source_conn_run(ctx->conn,
			migrate_list_cmd(imp, uidset),
			(migrate_untagged_callback_t *)migrate_list_cb, imp,
			&code, &error);
		if (ret < 0) {
			ctx->error_code = code;
			ctx->error = p_strdup(ctx->pool, error);
			return -1;
		}
		if (ret > 0)
			return 0;
		if (code == MIGRATE_ERROR_TEMP) {
			if (migrate_importer_throttle(ctx, error) < 0)
				return -1;
			continue;
		}
		/* NO for a listing: what was listed is still usable, the
		   rest is found by UID SEARCH */
		e_warning(imp->event, "Listing messages: %s", error);
		imp->listing_incomplete = TRUE;
		return 0;
	}
}

static int migrate_importer_search_uids(struct migrate_importer *imp,
					const char *uidset,
					ARRAY_TYPE(seq_range) *uids_r,
					const char **error_r);

/* uids with every range wider than MIGRATE_LIST_SPARSE_MIN replaced by
   the UIDs the server has in it (UID SEARCH). Returns 0, -1 when the run
   fails. */
static int migrate_importer_list_sparse(struct migrate_importer *imp,
					const ARRAY_TYPE(seq_range) *uids,
					ARRAY_TYPE(seq_range) *uids_r)
{
	const struct seq_range *range;
	ARRAY_TYPE(seq_range) found;
	const char *error;
	int ret;

	t_array_init(uids_r, array_count(uids) + 4);
	array_foreach(uids, range) {
		if (range->seq2 == (uint32_t)-1 ||
		    range->seq2 - range->seq1 < MIGRATE_LIST_SPARSE_MIN) {
			seq_range_array_add_range(uids_r, range->seq1,
						  range->seq2);
			continue;
		}
		ret = migrate_importer_search_uids(imp, t_strdup_printf(
			"%u:%u", range->seq1, range->seq2), &found, &error);
		if (ret < 0)
			return -1;
		if (ret == 0) {
			/* refused: list the range in one command */
			e_warning(imp->event, "UID SEARCH: %s", error);
			seq_range_array_add_range(uids_r, range->seq1,
						  (uint32_t)-1);
			continue;
		}
		seq_range_array_merge(uids_r, &found);
	}
	return 0;
}

/* List the given UIDs: one command per MIGRATE_LIST_CHUNK UIDs of a
   range (a sparse range costs nothing extra), single UIDs batched. */
static int migrate_importer_list(struct migrate_importer *imp,
				 const ARRAY_TYPE(seq_range) *all_uids)
{
	ARRAY_TYPE(seq_range) uids_arr;
	const ARRAY_TYPE(seq_range) *uids = &uids_arr;
	const struct seq_range *range;
	string_t *set = t_str_new(256);
	uint32_t start, end;
	unsigned int count = 0;
	int ret = 1;

	if (migrate_importer_list_sparse(imp, all_uids, &uids_arr) < 0)
		return -1;
	imp->list_asked = uids;
	array_foreach(uids, range) {
		start = range->seq1;
		do {
			if (range->seq2 == (uint32_t)-1) {
				/* open-ended: the server knows the end */
				end = range->seq2;
			} else if (range->seq2 - start >= MIGRATE_LIST_CHUNK) {
				end = start + MIGRATE_LIST_CHUNK - 1;
			} else {
				end = range->seq2;
			}
			if (str_len(set) > 0)
				str_append_c(set, ',');
			if (start == end)
				str_printfa(set, "%u", start);
			else if (end == (uint32_t)-1)
				str_printfa(set, "%u:*", start);
			else
				str_printfa(set, "%u:%u", start, end);
			count += end == (uint32_t)-1 ? MIGRATE_LIST_CHUNK :
				end - start + 1;
			if (count >= MIGRATE_LIST_CHUNK || str_len(set) > 4000) {
				if (migrate_importer_list_cmd(imp,
							      str_c(set)) < 0) {
					ret = -1;
					break;
				}
				str_truncate(set, 0);
				count = 0;
			}
			start = end + 1;
		} while (end != range->seq2);
		if (ret < 0)
			break;
	}
	if (ret > 0 && str_len(set) > 0 &&
	    migrate_importer_list_cmd(imp, str_c(set)) < 0)
		ret = -1;
	imp->list_asked = NULL;
	return ret;
}

struct migrate_search_ctx {
	struct migrate_importer *imp;
	ARRAY_TYPE(seq_range) uids;
};

static void migrate_search_cb(const struct migrate_reply *reply,
			      struct migrate_search_ctx *ctx)
{
	const struct imap_arg *args;
	const char *atom;
	uint32_t uid;

	if (strcasecmp(reply->name, "SEARCH") != 0)
		return;
	for (args = reply->args; !IMAP_ARG_IS_EOL(args); args++) {
		if (imap_arg_get_atom(args, &atom) &&
		    str_to_uint32(atom, &uid) == 0 && uid > 0)
			seq_range_array_add(&ctx->uids, uid);
	}
}

/* UID SEARCH UID <uidset> into uids_r (from imp->pool). Returns 1, 0 when
   the server refused (error_r set), -1 when the run fails (ctx->error). */
static int migrate_importer_search_uids(struct migrate_importer *imp,
					const char *uidset,
					ARRAY_TYPE(seq_range) *uids_r,
					const char **error_r)
{
	struct migrate_importer_ctx *ictx = imp->ctx;
	struct migrate_search_ctx ctx;
	enum migrate_error code;
	int ret;

	i_zero(&ctx);
	ctx.imp = imp;
	/* grown in migrate_search_cb, in another data stack frame */
	p_array_init(&ctx.uids, imp->pool, 16);
	ret = migrate_source_conn_run(ictx->conn,
		t_strconcat("UID SEARCH UID ", uidset, NULL),
		(migrate_untagged_callback_t *)migrate_search_cb, &ctx,
		&code, error_r);
	if (ret < 0) {
		ictx->error_code = code;
		ictx->error = p_strdup(ictx->pool, *error_r);
		return -1;
	}
	*uids_r = ctx.uids;
	return ret;
}

/* Messages the listing couldn't read (the server said NO) still exist:
   record them as failed items so the high-water mark can't pass them
   silently and a later run retries them. */
static int migrate_importer_list_missing(struct migrate_importer *imp,
					 const ARRAY_TYPE(seq_range) *range)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	ARRAY_TYPE(seq_range) uids;
	struct seq_range_iter iter;
	struct migrate_msg *msg;
	const char *error;
	unsigned int n = 0;
	uint32_t uid;
	string_t *set;

	set = t_str_new(128);
	imap_write_seq_range(set, range);
	if (migrate_importer_search_uids(imp, str_c(set), &uids, &error) < 0)
		return -1;
	seq_range_array_iter_init(&iter, &uids);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		if (hash_table_lookup(imp->msgs_by_uid,
				      POINTER_CAST(uid)) != NULL)
			continue;
		msg = p_new(imp->pool, struct migrate_msg, 1);
		msg->uid = uid;
		msg->identity = p_strdup_printf(imp->pool, "unlisted-%u", uid);
		msg->action = MIGRATE_MSG_FAILED;
		array_push_back(&imp->msgs, &msg);
		hash_table_insert(imp->msgs_by_uid, POINTER_CAST(uid), msg);
		migrate_importer_item(imp, msg, MIGRATE_ITEM_FETCH_FAILED,
			"the server refused to FETCH this message's headers");
		ctx->hooks->item_error(ctx->hook_context);
	}
	return 0;
}

static int migrate_msg_cmp(struct migrate_msg *const *m1,
			   struct migrate_msg *const *m2)
{
	return (*m1)->uid < (*m2)->uid ? -1 : ((*m1)->uid > (*m2)->uid ? 1 : 0);
}

static void migrate_importer_items_clear(struct migrate_importer *imp)
{
	array_clear(&imp->fs.items);
	if (hash_table_is_created(imp->items_by_uid))
		hash_table_clear(imp->items_by_uid, TRUE);
	imp->items_indexed = 0;
}

static struct migrate_item *
migrate_importer_find_item(struct migrate_importer *imp, uint32_t uid)
{
	const struct migrate_item *items;
	unsigned int i, count;
	void *idx;

	items = array_get(&imp->fs.items, &count);
	if (!hash_table_is_created(imp->items_by_uid)) {
		hash_table_create_direct(&imp->items_by_uid, imp->pool, 64);
		imp->items_indexed = 0;
	}
	if (imp->items_indexed > count) {
		/* the item log was cleared */
		hash_table_clear(imp->items_by_uid, TRUE);
		imp->items_indexed = 0;
	}
	for (i = imp->items_indexed; i < count; i++) {
		hash_table_update(imp->items_by_uid,
				  POINTER_CAST(items[i].uid),
				  POINTER_CAST(i + 1));
	}
	imp->items_indexed = count;
	idx = hash_table_lookup(imp->items_by_uid, POINTER_CAST(uid));
	if (idx == NULL)
		return NULL;
	i = POINTER_CAST_TO(idx, unsigned int) - 1;
	return i < count && items[i].uid == uid ?
		array_idx_modifiable(&imp->fs.items, i) : NULL;
}

static void migrate_importer_item(struct migrate_importer *imp,
				  const struct migrate_msg *msg,
				  enum migrate_item_class class,
				  const char *reason)
{
	struct migrate_item *item;

	item = migrate_importer_find_item(imp, msg->uid);
	if (item == NULL) {
		item = array_append_space(&imp->fs.items);
		item->uid = msg->uid;
		item->first_seen = ioloop_time;
	}
	item->class = class;
	if (class == MIGRATE_ITEM_FETCH_FAILED ||
	    class == MIGRATE_ITEM_DEST_ERROR)
		seq_range_array_add(&imp->failed_uids, msg->uid);
	if (!seq_range_array_add(&imp->counted_uids, msg->uid))
		imp->ctx->live->items_by_class[class]++;
	item->reason = p_strdup(imp->pool, str_sanitize(reason, 500));
	item->last_seen = ioloop_time;
	item->resolved = FALSE;
	if (class != MIGRATE_ITEM_FILTERED)
		item->attempts++;
	item->message_id = msg->message_id;
	item->subject = msg->subject;
	item->date = msg->date;
	item->size = msg->size;
	e_debug(imp->event, "UID %u: %s: %s", msg->uid,
		migrate_item_class_name(class), reason);
}

static void migrate_importer_item_resolved(struct migrate_importer *imp,
					   uint32_t uid)
{
	struct migrate_item *item = migrate_importer_find_item(imp, uid);

	if (item != NULL && !item->resolved) {
		item->resolved = TRUE;
		item->last_seen = ioloop_time;
		/* the pass that copied or found it tried it too */
		if (item->class != MIGRATE_ITEM_FILTERED)
			item->attempts++;
	}
}

/* All Mail: is this message labelled, i.e. imported through a label
   folder? X-GM-LABELS tells exactly (two deliveries of the same mail, one
   archived, stay two); without them, the identity of the mail in the
   label folders does. */
static bool migrate_msg_gmail_labelled(struct migrate_importer *imp,
				       const struct migrate_msg *msg)
{
	if (!imp->folder->dest.gmail_all_mail)
		return FALSE;
	if (msg->gm_labels_known)
		return msg->gm_labelled;
	return migrate_identity_set_contains(imp->ctx->seen, msg->identity);
}

/* Across folders of one run: Gmail's X-GM-MSGID names one message in
   all its labels, and tells two deliveries of the same mail apart. */
static const char *migrate_msg_seen_key(const struct migrate_msg *msg)
{
	return msg->gm_msgid == NULL ? msg->identity :
		t_strconcat("X-GM-MSGID:", msg->gm_msgid, NULL);
}

static bool migrate_importer_item_retryable(struct migrate_importer *imp,
					    const struct migrate_item *item);

/* An unresolved item that won't be retried (vanished, retries used up) */
static bool migrate_importer_item_final(struct migrate_importer *imp,
					uint32_t uid)
{
	const struct migrate_item *item;

	array_foreach(&imp->fs.items, item) {
		if (item->uid == uid && !item->resolved &&
		    !migrate_importer_item_retryable(imp, item))
			return TRUE;
	}
	return FALSE;
}

/* Decide per listed message: already there, import, defer, skip. */
static void migrate_importer_classify(struct migrate_importer *imp)
{
	const struct migrate_settings *set = imp->ctx->set;
	struct migrate_msg *msg;
	uint32_t dst_uid;

	array_sort(&imp->msgs, migrate_msg_cmp);
	array_foreach_elem(&imp->msgs, msg) {
		if (!msg->listed)
			continue;
		dst_uid = migrate_uidmap_lookup(&imp->fs.uidmap, msg->uid);
		if (dst_uid != 0 && imp->state_valid) {
			msg->action = MIGRATE_MSG_PRESENT;
			migrate_importer_item_resolved(imp, msg->uid);
			continue;
		}
		if (msg->uid < imp->relist_below &&
		    migrate_importer_item_final(imp, msg->uid)) {
			/* relisted, but an earlier run's item log already
			   has the last word on it */
			msg->action = MIGRATE_MSG_DUPLICATE;
			continue;
		}
		dst_uid = migrate_importer_dest_claim(imp, msg->identity);
		if (dst_uid != 0) {
			migrate_importer_link(imp, msg, dst_uid);
			continue;
		}
		migrate_importer_check_fingerprint(imp, msg);
		if (migrate_msg_gmail_labelled(imp, msg)) {
			/* labelled mail: it's in its label folder already */
			msg->action = MIGRATE_MSG_DUPLICATE;
			continue;
		}
		if (set->dedupe_across_folders &&
		    migrate_identity_set_contains(imp->ctx->seen,
						  migrate_msg_seen_key(msg))) {
			msg->action = MIGRATE_MSG_DUPLICATE;
			migrate_importer_item(imp, msg, MIGRATE_ITEM_DUPLICATE,
				"already imported into another folder "
				"(migrate_dedupe_across_folders)");
			continue;
		}
		if (seq_range_exists(&imp->failed_uids, msg->uid)) {
			/* failed earlier in this run: the next run retries */
			msg->action = MIGRATE_MSG_FAILED;
			continue;
		}
		if ((set->max_size != 0 && msg->size > set->max_size) ||
		    (set->min_size != 0 && msg->size < set->min_size) ||
		    (set->since != 0 && msg->internaldate < set->since) ||
		    (set->before != 0 && msg->internaldate >= set->before)) {
			msg->action = MIGRATE_MSG_DEFERRED;
			migrate_importer_item(imp, msg, MIGRATE_ITEM_FILTERED,
				"left out by migrate_max_size/min_size/"
				"since/before");
			continue;
		}
		if (msg->size > set->max_message_size) {
			msg->action = MIGRATE_MSG_TOO_BIG;
			migrate_importer_item(imp, msg, MIGRATE_ITEM_TOO_BIG,
				t_strdup_printf("%"PRIuUOFF_T" bytes is over "
					"migrate_max_message_size", msg->size));
			continue;
		}
		msg->action = MIGRATE_MSG_IMPORT;
	}
}

/* New source UIDs while some the state knew have vanished: a message
   moved out and back (a new UID for the same mail), or a server that
   numbers mail afresh under the same UIDVALIDITY (GNU imap4d before a
   client has SELECTed the folder). The destination copies of the vanished
   UIDs are known to the state, so the scan for unknown destination mail
   didn't offer them: offer them now, before their twins are saved again.
   Costs a UID SEARCH and a header read of those copies, only then. */
static int migrate_importer_relink_vanished(struct migrate_importer *imp,
					    uint32_t last_uid)
{
	const struct migrate_uid_run *urun;
	ARRAY_TYPE(seq_range) present, dst_uids;
	struct migrate_msg *msg;
	const char *error;
	unsigned int new_count = 0, import_count = 0;
	uint32_t uid, dst_uid;
	int ret;

	array_foreach_elem(&imp->msgs, msg) {
		if (msg->uid > last_uid)
			new_count++;
		if (msg->action == MIGRATE_MSG_IMPORT)
			import_count++;
	}
	/* nothing vanished: EXISTS is what the state saw plus the new */
	if (!imp->state_valid || import_count == 0 || last_uid == 0 ||
	    array_count(&imp->fs.uidmap) == 0 ||
	    imp->exists >= imp->fs.src_messages + new_count)
		return 0;

	/* the flag listing sent with EXAMINE would reach the SEARCH's
	   callback: the flag sync sends its own command instead */
	migrate_importer_drain_flags(imp);
	ret = migrate_importer_search_uids(imp,
		t_strdup_printf("1:%u", last_uid), &present, &error);
	if (ret < 0)
		return -1;
	if (ret == 0) {
		/* refused: the new mail is imported as new */
		e_warning(imp->event, "UID SEARCH: %s", error);
		return 0;
	}
	if (!hash_table_is_created(imp->relinked))
		hash_table_create_direct(&imp->relinked, imp->pool, 16);
	else
		hash_table_clear(imp->relinked, TRUE);
	t_array_init(&dst_uids, 16);
	array_foreach(&imp->fs.uidmap, urun) {
		for (uid = urun->src_uid; uid < urun->src_uid + urun->count;
		     uid++) {
			if (uid > last_uid || seq_range_exists(&present, uid))
				continue;
			dst_uid = urun->dst_uid + (uid - urun->src_uid);
			seq_range_array_add(&dst_uids, dst_uid);
			hash_table_update(imp->relinked, POINTER_CAST(dst_uid),
					  POINTER_CAST(uid));
		}
	}
	if (array_count(&dst_uids) == 0)
		return 0;
	if (migrate_importer_dest_scan_uids(imp, &dst_uids) < 0)
		return -1;
	e_debug(imp->event, "%u source UIDs vanished while %u new appeared: "
		"matching the new ones against their destination copies",
		seq_range_count(&dst_uids), new_count);
	array_foreach_elem(&imp->msgs, msg) {
		if (msg->action != MIGRATE_MSG_IMPORT)
			continue;
		dst_uid = migrate_importer_dest_claim(imp, msg->identity);
		if (dst_uid != 0) {
			migrate_importer_link(imp, msg, dst_uid);
			continue;
		}
		migrate_importer_check_fingerprint(imp, msg);
	}
	return 0;
}

static void migrate_importer_remember(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct migrate_msg *msg;

	if (!ctx->set->dedupe_across_folders && !ctx->have_all_folder)
		return;
	array_foreach_elem(&imp->msgs, msg) {
		if (msg->action == MIGRATE_MSG_DUPLICATE)
			continue;
		/* both keys: All Mail without X-GM-LABELS and the destination
		   side only know the header identity */
		migrate_identity_set_add(ctx->seen, msg->identity);
		if (msg->gm_msgid != NULL)
			migrate_identity_set_add(ctx->seen,
						 migrate_msg_seen_key(msg));
	}
}

/* Move the high-water mark over every handled message, never past one
   still to be imported: a resumed run must find it again. */
static void migrate_importer_advance(struct migrate_importer *imp)
{
	struct migrate_msg *const *msgs;
	unsigned int count;

	msgs = array_get(&imp->msgs, &count);
	while (imp->handled_idx < count &&
	       msgs[imp->handled_idx]->action != MIGRATE_MSG_IMPORT) {
		if (msgs[imp->handled_idx]->uid > imp->fs.last_uid)
			imp->fs.last_uid = msgs[imp->handled_idx]->uid;
		imp->handled_idx++;
	}
}

/* Saving */

/* Drop the open transaction. Its messages go back to IMPORT, so the high-water
   mark can't pass them and a later pass fetches them again. */
static void migrate_importer_rollback(struct migrate_importer *imp)
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
		if (imp->folder->imported > 0)
			imp->folder->imported--;
		imp->batch_rolled_back = TRUE;
	}
	imp->folder->bytes = imp->folder->bytes > imp->trans_bytes ?
		imp->folder->bytes - imp->trans_bytes : 0;
	array_clear(&imp->pending_uids);
	imp->trans_msgs = 0;
	imp->trans_bytes = 0;
	imp->trans_save_failed = FALSE;
}

/* migrate_fsync=batch: the batch's files were written without fsync();
   one syncfs() makes all of them (and their directory entries) durable
   before the state may say they were imported. */
static int
migrate_importer_make_durable(struct migrate_importer *imp,
			      const char **error_r)
{
#ifdef MIGRATE_HAVE_SYNCFS
	const char *path;
	int fd, ret = 0;

	/* syncfs() flushes the whole file system the mail root is on */
	path = mailbox_list_get_root_forced(mailbox_get_namespace(
		imp->box)->list, MAILBOX_LIST_PATH_TYPE_MAILBOX);
	fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m", path);
		return -1;
	}
	if (syncfs(fd) < 0) {
		*error_r = t_strdup_printf("syncfs(%s) failed: %m", path);
		ret = -1;
	}
	i_close_fd(&fd);
	return ret;
#else
	(void)imp; (void)error_r;
	return 0;
#endif
}

/* lib-storage has no error code of its own for a full file system:
   ENOSPC is an internal error carrying strerror()'s text, a full index
   is MAIL_ERROR_NOQUOTA "Not enough disk space" (a quota says "quota") */
static bool migrate_dest_error_is_disk_full(const char *error)
{
	return strstr(error, strerror(ENOSPC)) != NULL ||
		strstr(error, "Not enough disk space") != NULL;
}

static int migrate_importer_dest_full(struct migrate_importer *imp,
				      struct migrate_msg *msg,
				      const char *error, bool disk);

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
	ctx->error_code = MIGRATE_ERROR_DISK_FULL;
	ctx->error = p_strdup_printf(ctx->pool, "Destination file system full "
		"in %s: commit failed: %s", imp->folder->dest.vname, error);
	return -1;
}

static int migrate_importer_commit(struct migrate_importer *imp)
{
	struct migrate_folder_state fs;
	struct mail_transaction_commit_changes changes;
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct mailbox_status status;
	struct seq_range_iter iter;
	const uint32_t *src_uidp;
	unsigned int n = 0;
	uint32_t dst_uid;
	enum mail_error error;
	const char *errstr;

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
	if (mailbox_transaction_commit_get_changes(&imp->trans, &changes) < 0) {
		/* copied: the rollback and resync below set new errors */
		errstr = t_strdup(mailbox_get_last_internal_error(imp->box,
								  &error));
		if (migrate_dest_error_is_disk_full(errstr))
			return migrate_importer_commit_disk_full(imp, errstr);
		if (error != MAIL_ERROR_NOQUOTA &&
		    imp->commit_retries++ < MIGRATE_COMMIT_RETRIES) {
			/* e.g. a run killed mid-commit left message files
			   behind that the index doesn't know: the failed
			   commit made the storage rebuild its index. The
			   batch is fetched again, and the next pass matches
			   what the rebuild found by identity. */
			e_warning(imp->event, "Commit failed, retrying the "
				  "batch after a resync: %s", errstr);
			migrate_importer_rollback(imp);
			(void)mailbox_sync(imp->box, MAILBOX_SYNC_FLAG_FORCE_RESYNC);
			return 0;
		}
		ctx->error_code = error == MAIL_ERROR_NOQUOTA ?
			MIGRATE_ERROR_QUOTA : MIGRATE_ERROR_DESTINATION;
		ctx->error = p_strdup_printf(ctx->pool,
			"Destination folder %s: commit failed: %s",
			imp->folder->dest.vname, errstr);
		array_clear(&imp->pending_uids);
		imp->trans_msgs = 0;
		imp->trans_bytes = 0;
		return -1;
	}
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

	/* the mail is safe now: the state may follow. The box's view
	   only sees the commit after a sync: without it dst_uidnext
	   would be stale, and a resumed run would match mail this map
	   already owns by identity once more. */
	if (mailbox_sync(imp->box, 0) < 0) {
		errstr = mailbox_get_last_internal_error(imp->box, &error);
		ctx->error_code = MIGRATE_ERROR_DESTINATION;
		ctx->error = p_strdup_printf(ctx->pool,
			"Destination folder %s: sync after commit failed: %s",
			imp->folder->dest.vname, errstr);
		return -1;
	}
	if (ctx->batch_fsync &&
	    migrate_importer_make_durable(imp, &errstr) < 0) {
		ctx->error_code = MIGRATE_ERROR_DESTINATION;
		ctx->error = p_strdup_printf(ctx->pool,
			"Destination folder %s: %s", imp->folder->dest.vname,
			errstr);
		return -1;
	}
	migrate_importer_dest_status(imp, &status);
	/* the map belongs to this UIDVALIDITY pair: a pass resumed after
	   a reconnect (or the next ctx) can trust it */
	imp->fs.src_uidvalidity = imp->uidvalidity;
	imp->fs.dst_uidvalidity = status.uidvalidity;
	imp->fs.dst_uidnext = status.uidnext;
	migrate_importer_advance(imp);
	imp->have_state = TRUE;
	/* what status shows of a running pass: its counts so far (the
	   folder's own totals are added up when the pass ends) */
	fs = imp->fs;
	fs.imported = imp->folder->imported;
	fs.existing = imp->folder->existing;
	fs.failed = imp->folder->failed;
	fs.total_imported += imp->folder->imported;
	fs.bytes += imp->folder->bytes;
	fs.planned = imp->folder->planned;
	fs.planned_bytes = imp->folder->planned_bytes;
	if (migrate_state_folder_set(ctx->state, imp->folder->src_name,
				     &fs, &errstr) < 0) {
		ctx->error_code = MIGRATE_ERROR_TEMP;
		ctx->error = p_strdup(ctx->pool, errstr);
		return -1;
	}
	ctx->hooks->save_progress(ctx->hook_context);
	return 0;
}

static struct migrate_msg *
migrate_importer_body_msg(struct migrate_importer *imp,
			  const struct migrate_reply *reply,
			  struct migrate_msg *tmp)
{
	const unsigned char *hdr;
	size_t hdr_size;
	struct migrate_msg *msg;
	uint32_t uid;

	i_zero(tmp);
	uid = migrate_parse_fetch(imp, migrate_fetch_args_normalize(reply->args),
				  tmp, &hdr, &hdr_size);
	if (uid == 0)
		uid = migrate_seq_lookup(imp, reply->num);
	if (uid == 0)
		return NULL;
	msg = hash_table_lookup(imp->msgs_by_uid, POINTER_CAST(uid));
	if (msg == NULL)
		return NULL;
	/* the FLAGS that came with the body are fresher */
	if (tmp->keywords != NULL) {
		msg->flags = tmp->flags;
		msg->keywords = tmp->keywords;
	}
	if (tmp->internaldate != 0) {
		msg->internaldate = tmp->internaldate;
		msg->tz_offset = tmp->tz_offset;
	}
	return msg;
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
	imp->folder->failed += count + 1;
	ctx->error_code = disk ? MIGRATE_ERROR_DISK_FULL : MIGRATE_ERROR_QUOTA;
	ctx->error = p_strdup_printf(ctx->pool, "Destination %s full in "
		"%s: %s. What fit is kept; %u message(s) of this folder are in "
		"the item log as %s (migrate report -r %s): %s and run again",
		disk ? "file system" : "quota", imp->folder->dest.vname, error,
		count + 1, migrate_item_class_name(class),
		migrate_item_class_name(class),
		disk ? "free space" : "raise the quota");
	return -1;
}

/* Stream one body into the destination. Returns 1 saved, 0 item failed,
   -1 run failure. */
static int migrate_importer_save(struct migrate_importer *imp,
				 struct migrate_msg *msg,
				 struct istream *body, uoff_t body_size)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct mail_save_context *save;
	struct mail_keywords *kw;
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
		ctx->error_code = code;
		ctx->error = p_strdup(ctx->pool, error);
		return -1;
	}
	if (ret == 0 && imp->trans_msgs > 0 &&
	    migrate_importer_commit(imp) < 0)
		return -1;
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
			ctx->error_code = MIGRATE_ERROR_TEMP;
			ctx->error = p_strdup(ctx->pool, error);
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
	imp->folder->imported++;
	imp->folder->bytes += body_size;
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

static bool migrate_importer_batch_full(struct migrate_importer *imp)
{
	return imp->trans_msgs >= imp->ctx->set->batch_messages ||
		(imp->quota_single && imp->trans_msgs > 0) ||
		imp->trans_bytes >= imp->ctx->set->batch_bytes ||
		/* a slow source: what was saved is committed (and shown by
		   status, kept by an interrupted ctx) every few seconds */
		(imp->trans_msgs > 0 &&
		 ioloop_time - imp->trans_started >= MIGRATE_BATCH_MAX_SECS);
}

struct migrate_fetch_cmd {
	unsigned int tag;
	ARRAY_TYPE(seq_range) uids;
};

struct migrate_fetch_ctx {
	struct migrate_importer *imp;
	ARRAY(struct migrate_fetch_cmd) cmds;
	struct migrate_msg *const *msgs;
	unsigned int count, next, in_flight;
	/* a FETCH was throttled: send nothing until the commands in flight
	   are answered, then back off and re-send what is still to import
	   (re-running the whole pass would list the folder again each time,
	   and a listing bigger than the server's budget would never get to
	   the bodies) */
	bool throttled;
	const char *throttle_text;
};

/* Keep the pipeline full: FETCH commands for up to the live pipeline depth
   messages in flight (migrate_pipeline_depth, less after throttling). */
static void migrate_fetch_send(struct migrate_fetch_ctx *ctx)
{
	struct migrate_importer *imp = ctx->imp;
	struct migrate_importer_ctx *ictx = imp->ctx;
	struct migrate_fetch_cmd *cmd;
	unsigned int chunk;
	string_t *line;

	if (ctx->throttled)
		return;
	while (ctx->in_flight < ictx->live->pipeline_depth &&
	       ctx->next < ctx->count) {
		cmd = array_append_space(&ctx->cmds);
		p_array_init(&cmd->uids, imp->pool, 8);
		chunk = 0;
		for (; ctx->next < ctx->count && chunk < MIGRATE_FETCH_CHUNK &&
		     ctx->in_flight + chunk < ictx->live->pipeline_depth;
		     ctx->next++) {
			if (ctx->msgs[ctx->next]->action != MIGRATE_MSG_IMPORT)
				continue;
			seq_range_array_add(&cmd->uids,
					    ctx->msgs[ctx->next]->uid);
			chunk++;
		}
		if (chunk == 0) {
			array_pop_back(&ctx->cmds);
			break;
		}
		line = t_str_new(128);
		str_append(line, "UID FETCH ");
		imap_write_seq_range(line, &cmd->uids);
		str_append(line, " (UID FLAGS INTERNALDATE BODY.PEEK[])");
		cmd->tag = migrate_source_conn_send(ictx->conn, str_c(line));
		ctx->in_flight += chunk;
	}
}

/* A tagged reply ends one FETCH command: whatever of its UIDs didn't
   arrive failed (or vanished). Returns 1, 0 when throttled, -1 error. */
static int migrate_fetch_tagged(struct migrate_fetch_ctx *ctx,
				const struct migrate_reply *reply)
{
	struct migrate_importer *imp = ctx->imp;
	struct migrate_importer_ctx *ictx = imp->ctx;
	struct migrate_fetch_cmd *cmd;
	struct seq_range_iter iter;
	struct migrate_msg *msg;
	unsigned int n = 0;
	uint32_t uid;
	bool ok, throttled;

	struct migrate_fetch_cmd *c;

	cmd = NULL;
	array_foreach_modifiable(&ctx->cmds, c) {
		if (c->tag == reply->tag) {
			cmd = c;
			break;
		}
	}
	if (cmd == NULL)
		return 1;
	ok = strcasecmp(reply->name, "OK") == 0;
	throttled = !ok && migrate_reply_is_throttle(reply);
	seq_range_array_iter_init(&iter, &cmd->uids);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		ctx->in_flight--;
		msg = hash_table_lookup(imp->msgs_by_uid, POINTER_CAST(uid));
		/* throttled: left to import, sent again after backing off */
		if (msg == NULL || msg->action != MIGRATE_MSG_IMPORT ||
		    msg->rolled_back || throttled)
			continue;
		msg->action = MIGRATE_MSG_FAILED;
		if (ok) {
			migrate_importer_item(imp, msg, MIGRATE_ITEM_VANISHED,
				"expunged on the source during the run");
		} else {
			migrate_importer_item(imp, msg,
				MIGRATE_ITEM_FETCH_FAILED,
				t_strdup_printf("%s %s", reply->name,
					reply->text == NULL ? "" : reply->text));
			ictx->hooks->item_error(ictx->hook_context);
		}
	}
	array_delete(&ctx->cmds, array_ptr_to_idx(&ctx->cmds, cmd), 1);
	if (throttled) {
		ctx->throttled = TRUE;
		ctx->throttle_text = p_strdup(imp->pool, reply->text);
		return 1;
	}
	if (migrate_importer_errors_max_reached(ictx))
		return -1;
	return 1;
}

/* The source's RFC822.SIZE isn't the size of the body it sends (Exchange
   does that): mail imported before has the body's size at the
   destination, so a message is matched by that size before it is saved
   again. */
static void migrate_importer_claim_by_body(struct migrate_importer *imp,
					   struct migrate_msg *msg,
					   uoff_t body_size)
{
	uint32_t dst_uid;

	dst_uid = migrate_importer_dest_claim(imp,
		migrate_identity_with_size(msg->identity, body_size));
	if (dst_uid == 0)
		return;
	e_debug(imp->event, "UID %u: RFC822.SIZE %"PRIuUOFF_T" but a body of "
		"%"PRIuUOFF_T" bytes: matched destination UID %u", msg->uid,
		msg->size, body_size, dst_uid);
	migrate_importer_link(imp, msg, dst_uid);
	imp->late_claims = TRUE;
	imp->ctx->live->cur_done++;
}

/* The body's literal is over migrate_max_message_size, whatever
   RFC822.SIZE announced: never imported, and the caller's
   migrate_source_conn_finish_body() skips the literal without buffering
   it. */
static void migrate_importer_too_big_literal(struct migrate_importer *imp,
					     struct migrate_msg *msg,
					     uoff_t body_size)
{
	uoff_t announced = msg->size;

	msg->action = MIGRATE_MSG_TOO_BIG;
	msg->size = body_size;
	migrate_importer_item(imp, msg, MIGRATE_ITEM_TOO_BIG,
		t_strdup_printf("the body sent is %"PRIuUOFF_T" bytes (%"
				PRIuUOFF_T" announced): over "
				"migrate_max_message_size", body_size,
				announced));
	imp->ctx->live->cur_done++;
}

/* Handle one reply. Returns 1 to go on, 0 when throttled, -1 on error. */
static int migrate_fetch_step(struct migrate_fetch_ctx *ctx)
{
	struct migrate_importer *imp = ctx->imp;
	struct migrate_importer_ctx *ictx = imp->ctx;
	struct migrate_msg *msg, tmp;
	struct migrate_reply reply;
	const struct imap_arg *tail;
	enum migrate_error code;
	const char *error;

	migrate_fetch_send(ctx);
	if (migrate_source_conn_read(ictx->conn, &reply, &code, &error) < 0) {
		ictx->error_code = code;
		ictx->error = p_strdup(ictx->pool, error);
		return -1;
	}
	if (reply.body != NULL) {
		msg = migrate_importer_body_msg(imp, &reply, &tmp);
		if (msg != NULL && msg->action == MIGRATE_MSG_IMPORT &&
		    reply.body_size > ictx->set->max_message_size)
			migrate_importer_too_big_literal(imp, msg,
							 reply.body_size);
		if (msg != NULL && msg->action == MIGRATE_MSG_IMPORT &&
		    msg->verify_size && reply.body_size != msg->size)
			migrate_importer_claim_by_body(imp, msg, reply.body_size);
		if (msg != NULL && msg->action == MIGRATE_MSG_IMPORT &&
		    migrate_importer_save(imp, msg, reply.body,
					  reply.body_size) < 0)
			return -1;
		if (migrate_source_conn_finish_body(ictx->conn, &tail,
						    &code, &error) < 0) {
			ictx->error_code = code;
			ictx->error = p_strdup(ictx->pool, error);
			return -1;
		}
		if (migrate_importer_batch_full(imp) &&
		    migrate_importer_commit(imp) < 0)
			return -1;
		return 1;
	}
	if (reply.type == MIGRATE_REPLY_UNTAGGED) {
		if (strcasecmp(reply.name, "EXPUNGE") == 0)
			migrate_seq_expunge(imp, reply.num);
		return 1;
	}
	if (reply.type != MIGRATE_REPLY_TAGGED)
		return 1;
	return migrate_fetch_tagged(ctx, &reply);
}

/* Fetch and save the bodies of every message marked IMPORT, pipelined.
   Returns 1 when done, 0 when throttled (run the pass again), -1. */
static int migrate_importer_fetch_bodies(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ictx = imp->ctx;
	struct migrate_fetch_ctx ctx;
	uint64_t planned_bytes = 0;
	unsigned int i;
	int ret = 1;

	i_zero(&ctx);
	ctx.imp = imp;
	p_array_init(&ctx.cmds, imp->pool, 16);
	ctx.msgs = array_get(&imp->msgs, &ctx.count);
	ictx->live->cur_done = 0;
	ictx->live->cur_total = 0;
	for (i = 0; i < ctx.count; i++) {
		if (ctx.msgs[i]->action == MIGRATE_MSG_IMPORT) {
			ictx->live->cur_total++;
			planned_bytes += ctx.msgs[i]->size;
		}
	}
	/* what this run imports here: saved so far, and what is left */
	ictx->hooks->plan_folder(ictx->hook_context, imp->folder,
				imp->folder->imported + ictx->live->cur_total,
				imp->folder->bytes + planned_bytes);
	T_BEGIN {
		migrate_fetch_send(&ctx);
	} T_END;
	/* a data stack frame per reply: memory stays flat over 100k mails */
	while (ret > 0 && array_count(&ctx.cmds) > 0) T_BEGIN {
		ret = migrate_fetch_step(&ctx);
		if (ret > 0 && ctx.throttled &&
		    array_count(&ctx.cmds) == 0) {
			/* everything in flight is answered: back off, then
			   re-send what the throttled commands didn't get */
			if (migrate_importer_commit(imp) < 0 ||
			    migrate_importer_throttle(ictx, ctx.throttle_text) < 0)
				ret = -1;
			ctx.throttled = FALSE;
			ctx.next = 0;
			ctx.in_flight = 0;
		}
		/* the last command in flight is done: send the next ones
		   (with a pipeline shallower than the messages to fetch,
		   stopping here would skip them) */
		if (ret > 0)
			migrate_fetch_send(&ctx);
	} T_END;
	return ret;
}

/* Update destination flags of already imported messages from source. */
struct migrate_flag_sync {
	struct migrate_importer *imp;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	ARRAY_TYPE(seq_range) seen_uids;
};

static void migrate_dest_update_flags(struct migrate_importer *imp,
				      struct mail *mail,
				      const struct migrate_msg *src);

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
	uid = migrate_parse_fetch(imp, reply->args, &tmp, &hdr, &hdr_size);
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
	imp->folder->flags_updated++;
}

/* Mail matched by identity (state lost, UIDVALIDITY changed, a crashed
   run's last batch) takes the source's current flags. */
static int migrate_importer_sync_claimed(struct migrate_importer *imp)
{
	struct mailbox_transaction_context *t;
	struct migrate_msg *msg;
	struct mail *mail;
	enum mail_error mail_error;

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
		imp->ctx->error_code = MIGRATE_ERROR_DESTINATION;
		imp->ctx->error = p_strdup_printf(imp->ctx->pool,
			"Destination folder %s: flag update failed: %s",
			imp->folder->dest.vname,
			mailbox_get_last_internal_error(imp->box, &mail_error));
		return -1;
	}
	return 0;
}

/* The flag sync's FETCH of UIDs 1..max_uid: only what changed since the
   state's HIGHESTMODSEQ when CONDSTORE allows (full_r=FALSE), every
   message's flags otherwise (full_r=TRUE). NULL when there is nothing to
   ask: no known message, or src_modseq (the source's HIGHESTMODSEQ now)
   equals the state's. */
static const char *
migrate_flags_cmd(struct migrate_importer *imp, uint32_t max_uid,
		  uint64_t src_modseq, bool *full_r)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	string_t *cmd;

	*full_r = FALSE;
	if (max_uid == 0 || array_count(&imp->fs.uidmap) == 0)
		return NULL;
	cmd = t_str_new(128);
	str_printfa(cmd, "UID FETCH 1:%u (UID FLAGS%s)", max_uid,
		    ctx->gmail_ext && ctx->delete_mode &&
		    imp->folder->dest.gmail_all_mail ? " X-GM-LABELS" : "");
	if (imp->fs.src_highestmodseq != 0 && src_modseq != 0 &&
	    migrate_source_conn_has_capability(ctx->conn, "CONDSTORE") &&
	    !ctx->delete_mode) {
		if (src_modseq == imp->fs.src_highestmodseq)
			return NULL;
		str_printfa(cmd, " (CHANGEDSINCE %"PRIu64")",
			    imp->fs.src_highestmodseq);
	} else {
		*full_r = TRUE;
	}
	return str_c(cmd);
}

static int migrate_importer_sync_flags(struct migrate_importer *imp,
				       uint32_t max_uid, bool *full_r)
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
		flags_cmd = migrate_flags_cmd(imp, max_uid,
					      imp->highestmodseq, full_r);
		if (flags_cmd == NULL)
			return 1;
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
			ret = -1;
			code = ictx->error_code;
			error = t_strdup(ictx->error);
			break;
		}
	}
	mail_free(&ctx.mail);
	if (mailbox_transaction_commit(&ctx.t) < 0) {
		enum mail_error mail_error;
		ictx->error_code = MIGRATE_ERROR_DESTINATION;
		ictx->error = p_strdup_printf(ictx->pool,
			"Destination folder %s: flag update failed: %s",
			imp->folder->dest.vname,
			mailbox_get_last_internal_error(imp->box, &mail_error));
		return -1;
	}
	if (ret < 0) {
		ictx->error_code = code;
		ictx->error = p_strdup(ictx->pool, error);
		return -1;
	}
	if (ret == 0) {
		e_warning(imp->event, "Flag sync: %s", error);
		*full_r = FALSE;
		/* keep the old HIGHESTMODSEQ: the next run asks again */
		imp->flag_sync_failed = TRUE;
		return 1;
	}
	if (*full_r && ictx->delete_mode) {
		/* delete mode: imported messages gone from the source */
		struct mailbox_transaction_context *t;
		struct mail *mail;
		const struct migrate_uid_run *urun;
		ARRAY_TYPE(uint32_t) gone;
		uint32_t uid, *uidp;

		t_array_init(&gone, 16);
		array_foreach(&imp->fs.uidmap, urun) {
			for (uid = urun->src_uid;
			     uid < urun->src_uid + urun->count; uid++) {
				if (uid <= max_uid &&
				    !seq_range_exists(&ctx.seen_uids, uid))
					array_push_back(&gone, &uid);
			}
		}
		t = mailbox_transaction_begin(imp->box, 0, __func__);
		mail = mail_alloc(t, 0, NULL);
		array_foreach_modifiable(&gone, uidp) {
			uint32_t dst_uid =
				migrate_uidmap_lookup(&imp->fs.uidmap, *uidp);
			if (dst_uid != 0 && mail_set_uid(mail, dst_uid)) {
				mail_expunge(mail);
				imp->folder->expunged++;
			}
			migrate_uidmap_remove(&imp->fs.uidmap, *uidp);
		}
		mail_free(&mail);
		if (mailbox_transaction_commit(&t) < 0) {
			enum mail_error mail_error;
			ictx->error_code = MIGRATE_ERROR_DESTINATION;
			ictx->error = p_strdup_printf(ictx->pool,
				"Destination folder %s: expunge failed: %s",
				imp->folder->dest.vname,
				mailbox_get_last_internal_error(imp->box,
								&mail_error));
			return -1;
		}
	}
	return 1;
}

static bool migrate_importer_item_retryable(struct migrate_importer *imp,
					    const struct migrate_item *item)
{
	if (item->resolved)
		return FALSE;
	switch (item->class) {
	case MIGRATE_ITEM_FILTERED:
	case MIGRATE_ITEM_THROTTLED:
	case MIGRATE_ITEM_TIMEOUT:
	case MIGRATE_ITEM_DEST_QUOTA:
	case MIGRATE_ITEM_DEST_FULL:
		return TRUE;
	case MIGRATE_ITEM_VANISHED:
	case MIGRATE_ITEM_DUPLICATE:
		return FALSE;
	default:
		return item->attempts < imp->ctx->set->item_retries;
	}
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

static const char *migrate_folder_status(const struct migrate_importer *imp)
{
	const struct migrate_item *item;

	array_foreach(&imp->fs.items, item) {
		/* a message that vanished in an earlier pass is gone from
		   the source for good: nothing left to fix or retry */
		if (item->class == MIGRATE_ITEM_VANISHED &&
		    hash_table_lookup(imp->msgs_by_uid,
				      POINTER_CAST(item->uid)) == NULL)
			continue;
		if (!item->resolved && item->class != MIGRATE_ITEM_FILTERED &&
		    item->class != MIGRATE_ITEM_DUPLICATE)
			return "completed-with-errors";
	}
	return "completed";
}

/* The flag sync of a known folder, to send in the burst with EXAMINE:
   NULL when STATUS shows no flag change (CONDSTORE) or nothing to sync. */
static const char *
migrate_importer_prefetch_flags_cmd(struct migrate_importer *imp)
{
	/* delete mode asks for every flag later (with Gmail labels) */
	if (imp->ctx->delete_mode)
		return NULL;
	return migrate_flags_cmd(imp, imp->fs.last_uid,
				 imp->folder->status_highestmodseq,
				 &imp->flags_full);
}

static int migrate_importer_pass(struct migrate_importer *imp)
{
	struct migrate_folder *folder = imp->folder;
	struct mailbox_status status;
	ARRAY_TYPE(seq_range) list_uids;
	const struct migrate_item *item;
	struct migrate_msg *msg;
	uint32_t prev_last_uid;
	const char *prefetch = NULL, *flags_cmd = NULL;
	bool full_flags;
	int ret;

	array_clear(&imp->msgs);
	hash_table_clear(imp->msgs_by_uid, TRUE);
	imp->handled_idx = 0;
	imp->listing_incomplete = FALSE;
	imp->prefetch_end = 0;
	/* new mail by STATUS in a known folder, or a folder seen for the
	   first time: list it along with EXAMINE */
	imp->prefetch_start = 0;
	if (imp->pass_no++ == 0 && folder->have_status &&
	    folder->status_messages > 0 &&
	    array_count(&imp->fs.items) == 0 &&
	    (!imp->have_state ||
	     (folder->status_uidvalidity == imp->fs.src_uidvalidity &&
	      folder->status_uidnext > imp->fs.last_uid + 1))) {
		imp->prefetch_start = imp->have_state ? imp->fs.last_uid + 1 : 1;
		imp->prefetch_end = folder->status_uidnext - 1;
		if (imp->prefetch_end >= imp->prefetch_start) {
			prefetch = t_strdup_printf("%u:%u",
				imp->prefetch_start, imp->prefetch_end);
			if (imp->have_state)
				flags_cmd = migrate_importer_prefetch_flags_cmd(imp);
		}
	}
	ret = migrate_importer_examine(imp, prefetch, flags_cmd);
	if (ret <= 0)
		return ret;
	if (imp->box == NULL) {
		ret = migrate_importer_dest_open(imp);
		if (ret < 0)
			return -1;
		if (ret == 0) {
			migrate_importer_drain_flags(imp);
			return 0;
		}
	}
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
	/* destination mail we don't know of: a crashed run's last batch,
	   or mail delivered since. Match it by identity. */
	hash_table_clear(imp->dest_ids, TRUE);
	hash_table_clear(imp->dest_fingerprints, TRUE);
	if (status.uidnext > imp->fs.dst_uidnext &&
	    migrate_importer_dest_scan(imp, imp->fs.dst_uidnext) < 0)
		return -1;

	t_array_init(&list_uids, 16);
	if (imp->exists > 0 && imp->uidnext - 1 > imp->fs.last_uid) {
		seq_range_array_add_range(&list_uids, imp->fs.last_uid + 1,
					  imp->uidnext > 0 ?
					  imp->uidnext - 1 : (uint32_t)-1);
	} else if (imp->exists > 0 && imp->uidnext == 0) {
		seq_range_array_add_range(&list_uids, imp->fs.last_uid + 1,
					  (uint32_t)-1);
	}
	array_foreach(&imp->fs.items, item) {
		if (item->uid <= imp->fs.last_uid &&
		    migrate_importer_item_retryable(imp, item))
			seq_range_array_add(&list_uids, item->uid);
	}
	/* All Mail in delete mode: the label folders' passes expunged the
	   copies of mail the user archived since the last run. That mail
	   is All Mail's now, below its high-water mark: list it all. */
	imp->relist_below = 0;
	if (folder->dest.gmail_all_mail && imp->ctx->delete_mode &&
	    imp->state_valid && imp->fs.last_uid > 0 && imp->exists > 0) {
		imp->relist_below = imp->fs.last_uid + 1;
		seq_range_array_add_range(&list_uids, 1, imp->fs.last_uid);
	}
	/* the prefetched listing is usable when it starts where this pass
	   must start (a new folder, or the state still valid), and for a
	   folder listed from UID 1 when it holds every message EXAMINE
	   counted: mail that came after STATUS, or a server that numbers
	   mail afresh in every session (GNU imap4d's unseen Maildir mail),
	   is listed with the rest instead of waiting for the next run */
	if (imp->relist_below == 0 && imp->prefetched &&
	    imp->uidvalidity == folder->status_uidvalidity &&
	    imp->prefetch_start == imp->fs.last_uid + 1 &&
	    array_count(&imp->fs.items) == 0 &&
	    (imp->prefetch_start != 1 ||
	     array_count(&imp->msgs) >= imp->exists)) {
		/* listed already, pipelined with EXAMINE */
	} else {
		migrate_importer_drain_flags(imp);
		imp->prefetched = FALSE;
		array_clear(&imp->msgs);
		hash_table_clear(imp->msgs_by_uid, TRUE);
		if (imp->exists > 0 &&
		    migrate_importer_list(imp, &list_uids) < 0)
			return -1;
	}
	if (imp->listing_incomplete &&
	    migrate_importer_list_missing(imp, &list_uids) < 0)
		return -1;
	migrate_importer_classify(imp);
	if (migrate_importer_relink_vanished(imp, imp->fs.last_uid) < 0)
		return -1;
	if (migrate_importer_sync_claimed(imp) < 0)
		return -1;

	/* the flags of what earlier passes imported */
	prev_last_uid = imp->fs.last_uid;
	if (imp->state_valid &&
	    migrate_importer_sync_flags(imp, prev_last_uid, &full_flags) < 0)
		return -1;

	ret = migrate_importer_fetch_bodies(imp);
	if (ret < 0) {
		/* keep what was saved */
		(void)migrate_importer_commit(imp);
		return -1;
	}
	if (migrate_importer_commit(imp) < 0)
		return -1;
	if (imp->late_claims) {
		/* their flags, as for mail matched before the fetch */
		imp->late_claims = FALSE;
		if (migrate_importer_sync_claimed(imp) < 0)
			return -1;
	}
	if (ret == 0) {
		/* throttled: go round again */
		return 2;
	}
	if (imp->batch_rolled_back) {
		/* a rolled back batch: fetch those messages again */
		imp->batch_rolled_back = FALSE;
		return 2;
	}

	array_foreach_elem(&imp->msgs, msg) {
		switch (msg->action) {
		case MIGRATE_MSG_PRESENT:
			folder->existing++;
			break;
		case MIGRATE_MSG_DEFERRED:
			folder->deferred++;
			break;
		case MIGRATE_MSG_FAILED:
		case MIGRATE_MSG_TOO_BIG:
			folder->failed++;
			break;
		default:
			break;
		}
	}
	migrate_importer_remember(imp);

	/* everything listed is handled: imported, present, or logged */
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
	return 1;
}

static void migrate_importer_init(struct migrate_importer *imp,
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

static void migrate_importer_deinit(struct migrate_importer *imp)
{
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
   run didn't list: unchanged ones, completed by an earlier (crashed) ctx,
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
	enum mail_error mail_error;
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
			ctx->error_code = MIGRATE_ERROR_DESTINATION;
			ctx->error = p_strdup_printf(ctx->pool,
				"Destination folder %s: %s", folder->dest.vname,
				mailbox_get_last_internal_error(imp.box,
								&mail_error));
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

struct event *
migrate_folder_finished_event(struct event *event,
			      const struct migrate_folder *folder)
{
	return event_create_passthrough(event)->
		set_name("migrate_folder_finished")->
		add_str("result", folder->result)->
		add_int("messages", folder->imported)->
		add_int("existing", folder->existing)->
		add_int("failed", folder->failed)->
		add_int("bytes", folder->bytes)->
		add_int("duration_msecs", folder->duration_msecs)->
		event();
}

int migrate_importer_folder(struct migrate_importer_ctx *ctx,
			    struct migrate_folder *folder)
{
	struct migrate_importer imp;
	const char *error;
	unsigned int passes = 0;
	int ret;

	migrate_importer_init(&imp, ctx, folder);
	imp.started = ioloop_timeval;

	ret = migrate_state_folder_get(ctx->state, folder->src_name, imp.pool,
				       &imp.fs, &error);
	if (ret < 0) {
		ctx->error_code = MIGRATE_ERROR_TEMP;
		ctx->error = p_strdup(ctx->pool, error);
	} else {
		imp.have_state = ret > 0;
		if (imp.have_state)
			migrate_importer_dest_moved(&imp);
		imp.fs.dest_vname = folder->dest.vname;
		imp.fs.decoded_name = folder->dest.decoded_name;
		imp.fs.imported = imp.fs.existing = imp.fs.failed = 0;
		imp.fs.deferred = imp.fs.flags_updated = 0;
		imp.fs.status = "running";
		imp.fs.started = ioloop_time;
		imp.fs.last_error = NULL;
		bool reconnected;
		do {
			reconnected = FALSE;
			ret = migrate_importer_pass(&imp);
			if (ret < 0 && ctx->error_code == MIGRATE_ERROR_TEMP &&
			    !migrate_source_conn_is_connected(ctx->conn)) {
				/* resume in place after reconnecting */
				if (imp.trans != NULL)
					mailbox_transaction_rollback(&imp.trans);
				if (migrate_importer_reconnect(ctx, ctx->error) == 0) {
					ret = 2;
					reconnected = TRUE;
				}
			}
			/* reconnects have their own budget */
		} while (ret == 2 && (reconnected || ++passes < 1000));
		if (ret > 0)
			ctx->live->progress++;
	}

	if (imp.trans != NULL)
		mailbox_transaction_rollback(&imp.trans);
	folder->src_messages = imp.exists;
	folder->uids_preserved = !imp.preserve_uids ? "no" :
		(imp.uids_preserve_failed ||
		 !migrate_importer_uids_match(&imp) ? "partial" : "yes");
	if (ret > 0) {
		struct mailbox_status status;
		migrate_importer_dest_status(&imp, &status);
		folder->dst_messages = status.messages;
		folder->result = migrate_folder_status(&imp);
	} else {
		folder->result = "failed";
		if (folder->error == NULL)
			folder->error = ctx->error;
	}
	imp.fs.status = folder->result;
	imp.fs.last_error = folder->error;
	folder->duration_msecs = timeval_diff_msecs(&ioloop_timeval,
						    &imp.started);
	folder->finished_event = TRUE;
	e_info(migrate_folder_finished_event(imp.event, folder),
	       "%s: %u imported, %u already there, %u failed, "
	       "%"PRIu64" bytes", folder->result, folder->imported,
	       folder->existing, folder->failed, folder->bytes);
	imp.fs.finished = ioloop_time;
	imp.fs.imported = folder->imported;
	imp.fs.existing = folder->existing;
	imp.fs.failed = folder->failed;
	imp.fs.deferred = folder->deferred;
	imp.fs.flags_updated = folder->flags_updated;
	imp.fs.total_imported += folder->imported;
	imp.fs.bytes += folder->bytes;
	imp.fs.planned = folder->planned;
	imp.fs.planned_bytes = folder->planned_bytes;
	imp.fs.uids_preserved = folder->uids_preserved;
	if (ret != 0 && migrate_state_folder_set(ctx->state, folder->src_name,
						 &imp.fs, &error) < 0) {
		e_error(imp.event, "%s", error);
		if (ret > 0) {
			ctx->error_code = MIGRATE_ERROR_TEMP;
			ctx->error = p_strdup(ctx->pool, error);
			ret = -1;
		}
	}
	migrate_importer_deinit(&imp);
	if (ret == 0) {
		/* this folder failed, the run goes on */
		folder->result = "failed";
		return 0;
	}
	return ret < 0 ? -1 : 0;
}

/* Verify: compare source and destination of one folder. */

static void
migrate_verify_missing(struct migrate_importer *imp,
		       const struct migrate_msg *msg)
{
	struct migrate_verify_missing *missing;
	struct migrate_folder *folder = imp->folder;

	if (!array_is_created(&folder->missing))
		p_array_init(&folder->missing, imp->ctx->pool, 8);
	missing = array_append_space(&folder->missing);
	missing->uid = msg->uid;
	missing->message_id = p_strdup(imp->ctx->pool, msg->message_id);
	missing->subject = p_strdup(imp->ctx->pool, msg->subject);
	folder->unexplained++;
}

static bool migrate_verify_explained(struct migrate_importer *imp,
				     uint32_t uid)
{
	const struct migrate_item *item = migrate_importer_find_item(imp, uid);

	return item != NULL && !item->resolved;
}

/* A source whose RFC822.SIZE isn't the size of the body it sends
   (Exchange): its mail is at the destination with another size. The
   state's UID map says which destination mail it became; that mail must
   still be there with the same header fingerprint. dst_identities maps a
   destination UID to its identity, built on first use. */
static bool
migrate_verify_by_uidmap(struct migrate_importer *imp,
			 const struct migrate_msg *msg,
			 HASH_TABLE_TYPE(migrate_uid_identity) *dst_identities)
{
	struct hash_iterate_context *iter;
	struct migrate_dest_ids *ids;
	const char *key, *dst_identity;
	const uint32_t *uidp;
	uint32_t dst_uid;

	dst_uid = migrate_uidmap_lookup(&imp->fs.uidmap, msg->uid);
	if (dst_uid == 0)
		return FALSE;
	if (!hash_table_is_created(*dst_identities)) {
		hash_table_create_direct(dst_identities, imp->pool, 128);
		iter = hash_table_iterate_init(imp->dest_ids);
		while (hash_table_iterate(iter, imp->dest_ids, &key, &ids)) {
			array_foreach(&ids->uids, uidp) {
				hash_table_insert(*dst_identities,
						  POINTER_CAST(*uidp), key);
			}
		}
		hash_table_iterate_deinit(&iter);
	}
	dst_identity = hash_table_lookup(*dst_identities,
					 POINTER_CAST(dst_uid));
	return dst_identity != NULL &&
		migrate_identity_fingerprint_equals(dst_identity,
						    msg->identity);
}

int migrate_importer_verify(struct migrate_importer_ctx *ctx,
			    struct migrate_folder *folder)
{
	struct migrate_importer imp;
	struct mailbox_status status;
	enum mailbox_existence existence;
	struct mail_namespace *ns;
	const struct migrate_item *item;
	ARRAY_TYPE(seq_range) all;
	struct migrate_msg *msg;
	const char *error;
	HASH_TABLE_TYPE(migrate_uid_identity) dst_identities;
	bool identities, state_valid;
	int ret, state_ret;

	i_zero(&dst_identities);
	migrate_importer_init(&imp, ctx, folder);
	identities = ctx->verify_identities || folder->dest.gmail_all_mail;
	state_ret = migrate_state_folder_get(ctx->state, folder->src_name,
					     imp.pool, &imp.fs, &error);
	if (state_ret < 0) {
		ctx->error_code = MIGRATE_ERROR_TEMP;
		ctx->error = p_strdup(ctx->pool, error);
		migrate_importer_deinit(&imp);
		return -1;
	}
	ret = migrate_importer_examine(&imp, NULL, NULL);
	if (ret <= 0) {
		folder->result = "failed";
		migrate_importer_deinit(&imp);
		return ret < 0 ? -1 : 0;
	}
	/* the item log only speaks for the UIDVALIDITY it was written in */
	if (imp.fs.src_uidvalidity != imp.uidvalidity)
		migrate_importer_items_clear(&imp);
	state_valid = state_ret > 0 &&
		imp.fs.src_uidvalidity == imp.uidvalidity;
	folder->src_messages = imp.exists;

	ns = mail_namespace_find(ctx->user->namespaces, folder->dest.vname);
	imp.box = mailbox_alloc(ns->list, folder->dest.vname, 0);
	if (mailbox_exists(imp.box, TRUE, &existence) < 0 ||
	    existence != MAILBOX_EXISTENCE_SELECT) {
		i_zero(&status);
	} else if (mailbox_open(imp.box) < 0 || mailbox_sync(imp.box, 0) < 0) {
		enum mail_error mail_error;
		ctx->error_code = MIGRATE_ERROR_DESTINATION;
		ctx->error = p_strdup_printf(ctx->pool, "Destination folder "
			"%s: %s", folder->dest.vname,
			mailbox_get_last_internal_error(imp.box, &mail_error));
		migrate_importer_deinit(&imp);
		return -1;
	} else {
		migrate_importer_dest_status(&imp, &status);
	}
	folder->dst_messages = status.messages;
	if (status.uidvalidity != imp.fs.dst_uidvalidity)
		state_valid = FALSE;

	if (!identities) {
		uint32_t explained = 0, expected;

		array_foreach(&imp.fs.items, item) {
			if (!item->resolved &&
			    item->class != MIGRATE_ITEM_VANISHED)
				explained++;
		}
		folder->deferred = explained;
		expected = folder->src_messages > explained ?
			folder->src_messages - explained : 0;
		if (folder->dst_messages < expected)
			folder->unexplained = expected - folder->dst_messages;
		folder->result = folder->unexplained == 0 ? "ok" : "missing";
		migrate_importer_deinit(&imp);
		return 0;
	}

	t_array_init(&all, 1);
	if (imp.exists > 0) {
		seq_range_array_add_range(&all, 1, (uint32_t)-1);
		if (migrate_importer_list(&imp, &all) < 0) {
			migrate_importer_deinit(&imp);
			return -1;
		}
	}
	if (status.messages > 0 && migrate_importer_dest_scan(&imp, 1) < 0) {
		migrate_importer_deinit(&imp);
		return -1;
	}
	array_sort(&imp.msgs, migrate_msg_cmp);
	array_foreach_elem(&imp.msgs, msg) {
		if (migrate_importer_dest_claim(&imp, msg->identity) != 0)
			continue;
		if (state_valid &&
		    migrate_verify_by_uidmap(&imp, msg, &dst_identities))
			continue;
		if (migrate_verify_explained(&imp, msg->uid)) {
			folder->deferred++;
			continue;
		}
		if (migrate_msg_gmail_labelled(&imp, msg)) {
			/* labelled: it's in its label folder */
			msg->action = MIGRATE_MSG_DUPLICATE;
			folder->existing++;
			continue;
		}
		migrate_verify_missing(&imp, msg);
	}
	migrate_importer_remember(&imp);
	folder->result = folder->unexplained == 0 ? "ok" : "missing";
	if (hash_table_is_created(dst_identities))
		hash_table_destroy(&dst_identities);
	migrate_importer_deinit(&imp);
	return 0;
}
