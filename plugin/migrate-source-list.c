/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "strnum.h"
#include "imap-arg.h"
#include "migrate-compat.h"
#include "migrate-folder-map.h"
#include "migrate-reply-scan.h"
#include "migrate-source-conn.h"
#include "migrate-source-list.h"

/* what the reply callbacks work on */
struct migrate_source_list_ctx {
	struct migrate_source_list *list;
	struct migrate_source_conn *conn;
};

void migrate_source_list_init(struct migrate_source_list *list, pool_t pool)
{
	i_zero(list);
	list->pool = pool;
	p_array_init(&list->folders, pool, 16);
}

void migrate_source_list_deinit(struct migrate_source_list *list)
{
	if (hash_table_is_created(list->folders_by_name))
		hash_table_destroy(&list->folders_by_name);
}

struct migrate_folder *
migrate_source_list_find(const struct migrate_source_list *list,
			 const char *name)
{
	if (!hash_table_is_created(list->folders_by_name))
		return NULL;
	return hash_table_lookup(list->folders_by_name, name);
}

static void migrate_namespace_cb(const struct migrate_reply *reply,
				 struct migrate_source_list_ctx *ctx)
{
	struct migrate_source_list *list = ctx->list;
	const struct imap_arg *args, *ns;
	const char *prefix, *sep;

	if (strcasecmp(reply->name, "NAMESPACE") != 0)
		return;
	/* personal namespaces: ((prefix sep) ...) */
	if (!imap_arg_get_list(&reply->args[0], &args) ||
	    !imap_arg_get_list(&args[0], &ns) ||
	    !imap_arg_get_astring(&ns[0], &prefix))
		return;
	list->ns_prefix = p_strdup(list->pool, prefix);
	if (imap_arg_get_nstring(&ns[1], &sep) && sep != NULL &&
	    sep[0] != '\0')
		list->delimiter = sep[0];
}

static struct migrate_folder *
migrate_source_list_add(struct migrate_source_list_ctx *ctx,
			const char *name, bool nul)
{
	struct migrate_source_list *list = ctx->list;
	struct migrate_folder *folder;

	folder = p_new(list->pool, struct migrate_folder, 1);
	if (strlen(name) > MIGRATE_MAX_SOURCE_NAME) {
		folder->src_name = p_strdup_printf(list->pool, "%s...",
			migrate_str_sanitize(name, 64));
		folder->src_name_too_long = TRUE;
	} else {
		folder->src_name = p_strdup(list->pool, name);
	}
	folder->src_name_nul = nul;
	array_push_back(&list->folders, &folder);
	/* a new folder, up to the limit: the listing progresses */
	migrate_source_conn_progress(ctx->conn);
	if (!nul && !folder->src_name_too_long) {
		if (!hash_table_is_created(list->folders_by_name)) {
			hash_table_create(&list->folders_by_name, list->pool,
					  128, str_hash, strcmp);
		}
		hash_table_insert(list->folders_by_name, folder->src_name,
				  folder);
	}
	return folder;
}

static void migrate_list_cb(const struct migrate_reply *reply,
			    struct migrate_source_list_ctx *ctx)
{
	struct migrate_source_list *list = ctx->list;
	const struct imap_arg *flags;
	struct migrate_folder *folder;
	const char *flag, *sep, *name;
	bool lsub, nul;

	lsub = strcasecmp(reply->name, "LSUB") == 0;
	if (!lsub && strcasecmp(reply->name, "LIST") != 0 &&
	    strcasecmp(reply->name, "XLIST") != 0)
		return;
	if (!imap_arg_get_list(&reply->args[0], &flags) ||
	    !imap_arg_get_nstring(&reply->args[1], &sep) ||
	    !imap_arg_get_astring(&reply->args[2], &name))
		return;
	if (list->delimiter == '\0' && sep != NULL && sep[0] != '\0')
		list->delimiter = sep[0];
	/* a literal may hold a NUL: the C string ends there */
	nul = (reply->args[2].type == IMAP_ARG_STRING ||
	       reply->args[2].type == IMAP_ARG_LITERAL) &&
		reply->args[2].str_len != strlen(name);
	folder = nul ? NULL : migrate_source_list_find(list, name);
	if (lsub) {
		if (folder != NULL)
			folder->subscribed = TRUE;
		return;
	}
	if (folder == NULL) {
		if (array_count(&list->folders) >= MIGRATE_MAX_FOLDERS) {
			list->folders_over_limit++;
			return;
		}
		folder = migrate_source_list_add(ctx, name, nul);
	}
	for (; !IMAP_ARG_IS_EOL(flags); flags++) {
		if (!imap_arg_get_atom(flags, &flag))
			continue;
		if (strcasecmp(flag, "\\Noselect") == 0)
			folder->src_flags |= MIGRATE_FOLDER_SRC_FLAG_NOSELECT;
		else if (strcasecmp(flag, "\\NonExistent") == 0)
			folder->src_flags |= MIGRATE_FOLDER_SRC_FLAG_NONEXISTENT;
		else if (strcasecmp(flag, "\\Subscribed") == 0)
			folder->subscribed = TRUE;
		else if (strcasecmp(flag, "\\Inbox") == 0)
			;
		else
			folder->src_special_use |=
				migrate_special_use_parse(flag);
	}
}

static void migrate_status_cb(const struct migrate_reply *reply,
			      struct migrate_source_list_ctx *ctx)
{
	const struct imap_arg *args;
	struct migrate_folder *folder;
	const char *name, *key, *value;
	uint64_t num;

	if (strcasecmp(reply->name, "STATUS") != 0 ||
	    !imap_arg_get_astring(&reply->args[0], &name) ||
	    !imap_arg_get_list(&reply->args[1], &args))
		return;
	folder = migrate_source_list_find(ctx->list, name);
	if (folder == NULL)
		return;
	for (; !IMAP_ARG_IS_EOL(&args[0]) && !IMAP_ARG_IS_EOL(&args[1]);
	     args += 2) {
		if (!imap_arg_get_atom(&args[0], &key) ||
		    !imap_arg_get_atom(&args[1], &value) ||
		    str_to_uint64(value, &num) < 0)
			continue;
		if (strcasecmp(key, "MESSAGES") == 0)
			folder->status_messages = num;
		else if (strcasecmp(key, "UIDNEXT") == 0) {
			/* as in EXAMINE: 2^32-1 and above are unknown */
			folder->status_uidnext = num >= (uint32_t)-1 ? 0 : num;
		}
		else if (strcasecmp(key, "UIDVALIDITY") == 0)
			folder->status_uidvalidity = num;
		else if (strcasecmp(key, "HIGHESTMODSEQ") == 0)
			folder->status_highestmodseq = num;
		else if (strcasecmp(key, "SIZE") == 0)
			folder->status_size = num;
	}
	folder->have_status = TRUE;
}

/* LIST-STATUS (RFC 5819) answers STATUS within LIST */
static void migrate_list_status_cb(const struct migrate_reply *reply,
				   struct migrate_source_list_ctx *ctx)
{
	if (strcasecmp(reply->name, "STATUS") == 0)
		migrate_status_cb(reply, ctx);
	else
		migrate_list_cb(reply, ctx);
}

void migrate_source_list_reply(struct migrate_source_list *list,
			       struct migrate_source_conn *conn,
			       const struct migrate_reply *reply)
{
	struct migrate_source_list_ctx ctx = { .list = list, .conn = conn };

	migrate_namespace_cb(reply, &ctx);
	migrate_list_cb(reply, &ctx);
	migrate_status_cb(reply, &ctx);
}

/* STATUS items asked for every folder */
static const char *migrate_source_list_status_items(struct migrate_source_conn *conn)
{
	const char *items;

	items = migrate_source_conn_has_capability(conn, "CONDSTORE") ?
		"(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)" :
		"(MESSAGES UIDNEXT UIDVALIDITY)";
	if (migrate_source_conn_has_capability(conn, "STATUS=SIZE"))
		items = t_strconcat(t_strcut(items, ')'), " SIZE)", NULL);
	return items;
}

/* The personal namespace prefix: migrate_source_prefix, else NAMESPACE's,
   else "INBOX<sep>" when every folder but INBOX lies under it (a server
   without NAMESPACE that keeps everything under INBOX, like Courier) */
static void migrate_source_list_set_prefix(struct migrate_source_list *list,
					   struct event *event,
					   const char *prefix_setting)
{
	struct migrate_folder *folder;
	const char *prefix;
	bool others = FALSE;

	if (prefix_setting != NULL) {
		list->ns_prefix = strcmp(prefix_setting, "none") == 0 ? "" :
			prefix_setting;
		return;
	}
	if (list->ns_prefix != NULL || list->delimiter == '\0')
		return;
	prefix = p_strdup_printf(list->pool, "INBOX%c", list->delimiter);
	array_foreach_elem(&list->folders, folder) {
		if (strcmp(folder->src_name, "INBOX") == 0)
			continue;
		if (!str_begins_with(folder->src_name, prefix))
			return;
		others = TRUE;
	}
	if (!others)
		return;
	list->ns_prefix = prefix;
	e_info(event, "The source answered no NAMESPACE and lists every "
	       "folder but INBOX under %s: taken as its personal namespace "
	       "prefix (set migrate_source_prefix to choose another one, "
	       "or none)", prefix);
}

static const char *
migrate_source_list_cmd(struct migrate_source_conn *conn)
{
	if (!migrate_source_conn_has_capability(conn, "SPECIAL-USE") &&
	    migrate_source_conn_has_capability(conn, "XLIST"))
		return "XLIST \"\" \"*\"";
	if (!migrate_source_conn_has_capability(conn, "LIST-STATUS"))
		return "LIST \"\" \"*\"";
	/* the STATUS round trip saved: a no-change pass is LOGIN and this.
	   An extended LIST returns special-use flags only when asked. */
	return t_strdup_printf("LIST \"\" \"*\" RETURN (%sSTATUS %s)",
		migrate_source_conn_has_capability(conn, "SPECIAL-USE") ?
		"SPECIAL-USE " : "", migrate_source_list_status_items(conn));
}

int migrate_source_list_folders(struct migrate_source_list *list,
				struct migrate_source_conn *conn,
				struct event *event,
				const char *prefix_setting,
				enum migrate_error *code_r,
				const char **error_r)
{
	struct migrate_source_list_ctx ctx = { .list = list, .conn = conn };
	enum migrate_error code;
	const char *error;
	unsigned int ns_tag, list_tag, lsub_tag;
	int ret;

	list->gmail_ext = migrate_source_conn_has_capability(conn,
							     "X-GM-EXT-1");
	/* NAMESPACE, LIST and LSUB in one round trip. NAMESPACE is asked
	   even when the capabilities don't list it (Courier-IMAP 5 answers
	   it without advertising it); a NO or BAD costs nothing. */
	ns_tag = migrate_source_conn_send(conn, "NAMESPACE");
	list_tag = migrate_source_conn_send(conn,
					    migrate_source_list_cmd(conn));
	lsub_tag = migrate_source_conn_send(conn, "LSUB \"\" \"*\"");
	if (ns_tag != 0) {
		ret = migrate_source_conn_wait_tag(conn, ns_tag,
			(migrate_untagged_callback_t *)migrate_namespace_cb,
			&ctx, &code, &error);
		if (ret < 0)
			goto failed;
	}
	ret = migrate_source_conn_wait_tag(conn, list_tag,
		(migrate_untagged_callback_t *)migrate_list_status_cb, &ctx,
		&code, &error);
	if (ret <= 0)
		goto failed;
	ret = migrate_source_conn_wait_tag(conn, lsub_tag,
		(migrate_untagged_callback_t *)migrate_list_cb, &ctx,
		&code, &error);
	if (ret < 0)
		goto failed;
	if (ret == 0) {
		/* the folders are known; only their subscriptions aren't */
		e_warning(event, "The source refused LSUB, subscriptions "
			  "are not copied: %s", error);
	}
	if (list->folders_over_limit > 0) {
		*code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = p_strdup_printf(list->pool, "The source server "
			"lists %u folders, more than this version handles "
			"(%u): migrate a part with migrate_include or "
			"migrate_exclude", MIGRATE_MAX_FOLDERS +
			list->folders_over_limit, MIGRATE_MAX_FOLDERS);
		return -1;
	}
	migrate_source_list_set_prefix(list, event, prefix_setting);
	return 0;
failed:
	*code_r = ret < 0 ? code : MIGRATE_ERROR_PROTOCOL;
	*error_r = p_strdup_printf(list->pool, "Listing source folders "
				   "failed: %s", error);
	return -1;
}

int migrate_source_list_status(struct migrate_source_list *list,
			       struct migrate_source_conn *conn,
			       const ARRAY_TYPE(migrate_folder) *folders,
			       enum migrate_error *code_r,
			       const char **error_r)
{
	struct migrate_source_list_ctx ctx = { .list = list, .conn = conn };
	struct migrate_folder *folder;
	struct migrate_reply reply;
	const struct imap_arg *tail;
	unsigned int sent = 0, done = 0;
	const char *items, *error;
	string_t *cmd;

	items = migrate_source_list_status_items(conn);
	array_foreach_elem(folders, folder) {
		/* answered already within LIST (LIST-STATUS) */
		if (folder->have_status)
			continue;
		cmd = t_str_new(128);
		str_append(cmd, "STATUS ");
		if (!migrate_source_conn_append_mailbox(conn, cmd,
							folder->src_name))
			continue;
		str_printfa(cmd, " %s", items);
		(void)migrate_source_conn_send(conn, str_c(cmd));
		sent++;
	}
	while (done < sent) {
		if (migrate_source_conn_read(conn, &reply, code_r,
					     &error) < 0) {
			*error_r = p_strdup(list->pool, error);
			return -1;
		}
		if (reply.body != NULL) {
			if (migrate_source_conn_finish_body(conn, &tail,
							    code_r, &error) < 0) {
				*error_r = p_strdup(list->pool, error);
				return -1;
			}
			continue;
		}
		if (reply.type == MIGRATE_REPLY_UNTAGGED)
			migrate_status_cb(&reply, &ctx);
		else if (reply.type == MIGRATE_REPLY_TAGGED)
			done++;
	}
	return 0;
}
