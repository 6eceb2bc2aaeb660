/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "imap-arg.h"
#include "imap-util.h"
#include "migrate-settings.h"
#include "migrate-source-conn.h"
#include "migrate-identity.h"
#include "migrate-importer-private.h"

/* The body pipeline: UID FETCH BODY.PEEK[] for the messages to import,
   up to the live pipeline depth in flight, each literal streamed into
   migrate_importer_save() as it arrives; a throttled FETCH backs off and
   is sent again. */

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
	uid = migrate_importer_parse_fetch(imp,
		migrate_importer_fetch_args_normalize(reply->args),
		tmp, &hdr, &hdr_size);
	if (uid == 0)
		uid = migrate_importer_seq_lookup(imp, reply->num);
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
	/* UIDs a FETCH answered OK without: expunged, or kept back by a
	   broken server; UID SEARCH tells which (migrate_fetch_missing()) */
	ARRAY_TYPE(seq_range) missing;
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

	/* throttled, or the destination resynced: the next pass decides
	   again what is missing */
	if (ctx->throttled || imp->dest_resynced)
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
		if (ok)
			seq_range_array_add(&ctx->missing, uid);
		else {
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
		migrate_importer_set_error(ictx, code, "%s", error);
		return -1;
	}
	if (reply.body != NULL) {
		msg = migrate_importer_body_msg(imp, &reply, &tmp);
		if (msg != NULL && msg->action == MIGRATE_MSG_IMPORT &&
		    imp->dest_resynced) {
			/* what the resync found isn't matched yet: saving
			   now could copy a message a second time */
			msg->rolled_back = TRUE;
			imp->batch_rolled_back = TRUE;
			msg = NULL;
		}
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
			migrate_importer_set_error(ictx, code, "%s", error);
			return -1;
		}
		if (migrate_importer_batch_full(imp) &&
		    migrate_importer_commit(imp) < 0)
			return -1;
		/* the last batch is durable: its record follows */
		if (migrate_importer_durable_poll(imp) < 0)
			return -1;
		return 1;
	}
	if (reply.type == MIGRATE_REPLY_UNTAGGED) {
		if (strcasecmp(reply.name, "EXPUNGE") == 0)
			migrate_importer_seq_expunge(imp, reply.num);
		return 1;
	}
	if (reply.type != MIGRATE_REPLY_TAGGED)
		return 1;
	return migrate_fetch_tagged(ctx, &reply);
}

/* UIDs per UID SEARCH of migrate_fetch_missing(): what a server answers
   stays small however many UIDs it left out */
#define MIGRATE_MISSING_SEARCH_CHUNK 1000

/* UID SEARCH for ctx->missing, a chunk at a time; the UIDs the server
   still lists are added to present. Returns 1, 0 if refused, -1 if the
   connection failed. */
static int
migrate_fetch_missing_search(struct migrate_fetch_ctx *ctx,
			     ARRAY_TYPE(seq_range) *present,
			     const char **error_r)
{
	ARRAY_TYPE(seq_range) chunk, found;
	struct seq_range_iter iter;
	unsigned int n = 0, count = 0;
	uint32_t uid;
	string_t *set;
	bool more = TRUE;
	int ret = 1;

	t_array_init(&chunk, 16);
	set = t_str_new(128);
	seq_range_array_iter_init(&iter, &ctx->missing);
	while (ret > 0 && more) {
		more = seq_range_array_iter_nth(&iter, n++, &uid);
		if (more) {
			seq_range_array_add(&chunk, uid);
			if (++count < MIGRATE_MISSING_SEARCH_CHUNK)
				continue;
		}
		if (count == 0)
			break;
		str_truncate(set, 0);
		imap_write_seq_range(set, &chunk);
		ret = migrate_importer_search_uids(ctx->imp, str_c(set),
						   &found, error_r);
		if (ret > 0)
			seq_range_array_merge(present, &found);
		array_clear(&chunk);
		count = 0;
	}
	return ret;
}

/* The messages a FETCH answered OK without. One the server no longer
   lists was expunged during the run (vanished: nothing is missing); one
   it still lists was kept back (a failed item, retried by the next run).
   When the UID SEARCH can't be asked (the pass failed) or is refused,
   they count as failed: an expunge is never guessed. Returns -1 when the
   connection failed. */
static int migrate_fetch_missing(struct migrate_fetch_ctx *ctx, bool can_search)
{
	struct migrate_importer *imp = ctx->imp;
	struct migrate_importer_ctx *ictx = imp->ctx;
	ARRAY_TYPE(seq_range) present;
	struct seq_range_iter iter;
	struct migrate_msg *msg;
	const char *error = "no UID SEARCH after the failure";
	unsigned int n = 0;
	uint32_t uid;
	int ret = 0;

	if (array_count(&ctx->missing) == 0)
		return 0;
	t_array_init(&present, 4);
	if (can_search) {
		ret = migrate_fetch_missing_search(ctx, &present, &error);
		if (ret < 0)
			return -1;
		if (ret == 0)
			error = t_strdup_printf("UID SEARCH: %s", error);
	}
	seq_range_array_iter_init(&iter, &ctx->missing);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		msg = hash_table_lookup(imp->msgs_by_uid, POINTER_CAST(uid));
		i_assert(msg != NULL);
		if (ret > 0 && !seq_range_exists(&present, uid)) {
			migrate_importer_item(imp, msg, MIGRATE_ITEM_VANISHED,
				"expunged on the source during the run");
		} else {
			migrate_importer_item(imp, msg,
				MIGRATE_ITEM_FETCH_FAILED, ret > 0 ?
				"FETCH OK without it; UID SEARCH still lists it" :
				t_strdup_printf("FETCH OK without it (%s)",
						error));
			ictx->hooks->item_error(ictx->hook_context);
		}
	}
	array_clear(&ctx->missing);
	return 0;
}

int migrate_importer_fetch_bodies(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ictx = imp->ctx;
	struct migrate_fetch_ctx ctx;
	uint64_t planned_bytes = 0;
	unsigned int i;
	int ret = 1;

	i_zero(&ctx);
	ctx.imp = imp;
	p_array_init(&ctx.cmds, imp->pool, 16);
	p_array_init(&ctx.missing, imp->pool, 4);
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
		imp->folder->counters.imported + ictx->live->cur_total,
		imp->folder->counters.bytes + planned_bytes);
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
			    migrate_importer_durable_wait(imp) < 0 ||
			    migrate_importer_throttle(ictx,
						      ctx.throttle_text) < 0)
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
	T_BEGIN {
		if (migrate_fetch_missing(&ctx, ret > 0) < 0)
			ret = -1;
	} T_END;
	return ret;
}
