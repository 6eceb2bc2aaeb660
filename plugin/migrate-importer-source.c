/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "bsearch-insert-pos.h"
#include "str.h"
#include "imap-arg.h"
#include "imap-date.h"
#include "imap-util.h"
#include "migrate-compat.h"
#include "migrate-source-conn.h"
#include "migrate-identity.h"
#include "migrate-importer-private.h"

/* The source side of a folder's pass: EXAMINE, the listing FETCH of
   identities, flags and sizes (and its parsing), UID SEARCH, and the
   composing of the flag sync's FETCH. It only talks to the source
   (migrate-source-conn.h) and fills imp->msgs; what the replies mean for
   each message is decided in migrate-importer-decide.c. */

static void migrate_list_cb(const struct migrate_reply *reply,
			    struct migrate_importer *imp);
static const char *
migrate_list_cmd(struct migrate_importer *imp, const char *uidset);

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

uint32_t migrate_importer_parse_fetch(struct migrate_importer *imp,
				      const struct imap_arg *args,
				      struct migrate_msg *msg,
				      const unsigned char **hdr_r,
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

const struct imap_arg *
migrate_importer_fetch_args_normalize(const struct imap_arg *args)
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

void migrate_importer_seq_expunge(struct migrate_importer *imp, uint32_t seq)
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

uint32_t migrate_importer_seq_lookup(struct migrate_importer *imp,
				     uint32_t seq)
{
	const struct migrate_seq_uid *item;

	item = array_bsearch(&imp->seq_uids, &seq, migrate_seq_uid_cmp);
	return item == NULL ? 0 : item->uid;
}

static void migrate_examine_cb(const struct migrate_reply *reply,
			       struct migrate_importer *imp)
{
	uint64_t num;

	if (strcasecmp(reply->name, "EXISTS") == 0) {
		imp->exists = reply->num;
		return;
	}
	if (strcasecmp(reply->name, "EXPUNGE") == 0) {
		migrate_importer_seq_expunge(imp, reply->num);
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

void migrate_importer_drain_flags(struct migrate_importer *imp)
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

int migrate_importer_examine(struct migrate_importer *imp,
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
		migrate_importer_set_error(ctx, code, "%s", error);
		return -1;
	}
	str_append(cmd, "EXAMINE ");
	if (!migrate_source_conn_append_mailbox(ctx->conn, cmd,
						imp->folder->src_name)) {
		migrate_importer_folder_failed(imp,
			"folder name can't be sent to the server");
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
		migrate_importer_set_error(ctx, code, "%s", error);
		return -1;
	}
	if (ret == 0) {
		migrate_importer_drain_flags(imp);
		migrate_importer_folder_failed(imp, "EXAMINE failed: %s",
					       error);
		return 0;
	}
	if (imp->uidvalidity == 0) {
		migrate_importer_folder_failed(imp,
			"server sent no UIDVALIDITY");
		return 0;
	}
	return 1;
}

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
		migrate_importer_seq_expunge(imp, reply->num);
		return;
	}
	if (strcasecmp(reply->name, "EXISTS") == 0) {
		imp->exists = reply->num;
		return;
	}
	if (strcasecmp(reply->name, "FETCH") != 0)
		return;
	args = migrate_importer_fetch_args_normalize(reply->args);
	uid = migrate_importer_parse_fetch(imp, args, NULL, &hdr, &hdr_size);
	if (uid == 0 || hash_table_lookup(imp->msgs_by_uid,
					  POINTER_CAST(uid)) != NULL ||
	    (imp->list_asked != NULL &&
	     !seq_range_exists(imp->list_asked, uid)))
		return;
	msg = p_new(imp->pool, struct migrate_msg, 1);
	(void)migrate_importer_parse_fetch(imp, args, msg, &hdr, &hdr_size);
	/* a line the listing asked for: the server makes progress */
	migrate_source_conn_progress(imp->ctx->conn);
	msg->uid = uid;
	msg->seq = reply->num;
	msg->listed = TRUE;
	msg->headers_unknown = imp->list_light;
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

	if (imp->list_light) {
		return t_strdup_printf("UID FETCH %s (UID RFC822.SIZE "
			"INTERNALDATE FLAGS%s)", uidset, gm_items);
	}
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
			migrate_importer_set_error(ctx, code, "%s", error);
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

int migrate_importer_list(struct migrate_importer *imp,
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

int migrate_importer_search_uids(struct migrate_importer *imp,
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
		migrate_importer_set_error(ictx, code, "%s", *error_r);
		return -1;
	}
	*uids_r = ctx.uids;
	return ret;
}

int migrate_importer_list_missing(struct migrate_importer *imp,
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

static void migrate_describe_cb(const struct migrate_reply *reply,
				struct migrate_importer *imp)
{
	struct migrate_identity_info info;
	struct migrate_item *item;
	struct migrate_msg *msg;
	const unsigned char *hdr;
	size_t hdr_size;
	uint32_t uid;

	if (strcasecmp(reply->name, "FETCH") != 0)
		return;
	uid = migrate_importer_parse_fetch(imp,
		migrate_importer_fetch_args_normalize(reply->args), NULL,
		&hdr, &hdr_size);
	msg = uid == 0 || hdr == NULL ? NULL :
		hash_table_lookup(imp->msgs_by_uid, POINTER_CAST(uid));
	/* once per message: a server repeating a reply can't grow memory */
	if (msg == NULL || !msg->headers_unknown)
		return;
	msg->headers_unknown = FALSE;
	migrate_identity_compute(hdr, hdr_size, msg->size, imp->pool, &info);
	msg->identity = info.identity;
	msg->message_id = info.message_id;
	msg->subject = info.subject;
	msg->date = info.date;
	item = migrate_importer_find_item(imp, uid);
	if (item != NULL) {
		item->message_id = msg->message_id;
		item->subject = msg->subject;
		item->date = msg->date;
	}
}

/* UIDs per header FETCH of migrate_importer_describe_items() */
#define MIGRATE_DESCRIBE_CHUNK 1000

static int migrate_describe_uids(struct migrate_importer *imp,
				 const ARRAY_TYPE(seq_range) *uids)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	enum migrate_error code;
	const char *error;
	string_t *set = t_str_new(128);
	int ret;

	imap_write_seq_range(set, uids);
	ret = migrate_source_conn_run(ctx->conn, t_strdup_printf(
		"UID FETCH %s (UID BODY.PEEK[HEADER.FIELDS ("
		MIGRATE_IDENTITY_FETCH_FIELDS ")])", str_c(set)),
		(migrate_untagged_callback_t *)migrate_describe_cb, imp,
		&code, &error);
	if (ret < 0) {
		migrate_importer_set_error(ctx, code, "%s", error);
		return -1;
	}
	/* refused: the items keep their UID and size */
	if (ret == 0)
		e_debug(imp->event, "Describing items: %s", error);
	return 0;
}

int migrate_importer_describe_items(struct migrate_importer *imp)
{
	ARRAY_TYPE(seq_range) uids;
	struct migrate_msg *msg;
	unsigned int count = 0;

	t_array_init(&uids, 16);
	array_foreach_elem(&imp->msgs, msg) {
		if (!msg->headers_unknown ||
		    migrate_importer_find_item(imp, msg->uid) == NULL)
			continue;
		seq_range_array_add(&uids, msg->uid);
		/* a command line stays short however sparse the UIDs */
		if (++count < MIGRATE_DESCRIBE_CHUNK)
			continue;
		if (migrate_describe_uids(imp, &uids) < 0)
			return -1;
		array_clear(&uids);
		count = 0;
	}
	if (count > 0 && migrate_describe_uids(imp, &uids) < 0)
		return -1;
	return 0;
}

const char *
migrate_importer_flags_cmd(struct migrate_importer *imp, uint32_t max_uid,
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
