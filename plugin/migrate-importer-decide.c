/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str-sanitize.h"
#include "ioloop.h"
#include "imap-arg.h"
#include "migrate-settings.h"
#include "migrate-identity.h"
#include "migrate-importer-private.h"

/* Per-message decisions: what a listed message is (already at the
   destination, to import, filtered, too big, a duplicate), the item log
   that records why, the UID map links and the high-water mark. No I/O
   except the UID SEARCH and destination read of relink_vanished(). */

uint32_t migrate_importer_dest_claim(struct migrate_importer *imp,
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

void migrate_importer_link(struct migrate_importer *imp,
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

/* Link msg to the destination mail with its identity, if some is left:
   TRUE. Otherwise a header fingerprint match leaves the size of the body
   to decide at the fetch. */
static bool migrate_importer_match_dest(struct migrate_importer *imp,
					struct migrate_msg *msg)
{
	uint32_t dst_uid;

	dst_uid = migrate_importer_dest_claim(imp, msg->identity);
	if (dst_uid != 0) {
		migrate_importer_link(imp, msg, dst_uid);
		return TRUE;
	}
	migrate_importer_check_fingerprint(imp, msg);
	return FALSE;
}

int migrate_importer_msg_cmp(struct migrate_msg *const *m1,
			     struct migrate_msg *const *m2)
{
	return (*m1)->uid < (*m2)->uid ? -1 : ((*m1)->uid > (*m2)->uid ? 1 : 0);
}

void migrate_importer_items_clear(struct migrate_importer *imp)
{
	array_clear(&imp->fs.items);
	if (hash_table_is_created(imp->items_by_uid))
		hash_table_clear(imp->items_by_uid, TRUE);
	imp->items_indexed = 0;
}

struct migrate_item *
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

void migrate_importer_item(struct migrate_importer *imp,
			   const struct migrate_msg *msg,
			   enum migrate_item_class class, const char *reason)
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
		imp->ctx->live->counters.items_by_class[class]++;
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

void migrate_importer_item_resolved(struct migrate_importer *imp, uint32_t uid)
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

bool
migrate_importer_msg_gmail_labelled(struct migrate_importer *imp,
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

void migrate_importer_classify(struct migrate_importer *imp)
{
	const struct migrate_settings *set = imp->ctx->set;
	struct migrate_msg *msg;
	uint32_t dst_uid;

	array_sort(&imp->msgs, migrate_importer_msg_cmp);
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
		if (migrate_importer_match_dest(imp, msg))
			continue;
		if (migrate_importer_msg_gmail_labelled(imp, msg)) {
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

int migrate_importer_relink_vanished(struct migrate_importer *imp,
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
		if (msg->action == MIGRATE_MSG_IMPORT)
			(void)migrate_importer_match_dest(imp, msg);
	}
	return 0;
}

void migrate_importer_remember(struct migrate_importer *imp)
{
	struct migrate_importer_ctx *ctx = imp->ctx;
	struct migrate_msg *msg;

	if (!ctx->set->dedupe_across_folders && !ctx->have_all_folder)
		return;
	array_foreach_elem(&imp->msgs, msg) {
		/* listed without headers: All Mail reads the label folders'
		   identities from the destination */
		if (msg->action == MIGRATE_MSG_DUPLICATE ||
		    msg->headers_unknown)
			continue;
		/* both keys: All Mail without X-GM-LABELS and the destination
		   side only know the header identity */
		migrate_identity_set_add(ctx->seen, msg->identity);
		if (msg->gm_msgid != NULL)
			migrate_identity_set_add(ctx->seen,
						 migrate_msg_seen_key(msg));
	}
}

void migrate_importer_advance(struct migrate_importer *imp)
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

bool migrate_importer_item_retryable(struct migrate_importer *imp,
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
