/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "imap-arg.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "migrate-identity.h"
#include "migrate-importer-private.h"

/* migrate verify for one folder: counts, or (--identities, and Gmail's
   All Mail always) the source's identities matched against the
   destination's, with the item log explaining what is missing. */

HASH_TABLE_DEFINE_TYPE(migrate_uid_identity, void *, const char *);

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

	return item != NULL && migrate_item_is_open(item);
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

/* Verify by counts: the destination holds as many messages as the
   source, less those the item log explains */
static void migrate_verify_counts(struct migrate_importer *imp)
{
	struct migrate_folder *folder = imp->folder;
	const struct migrate_item *item;
	uint32_t explained = 0, expected;

	array_foreach(&imp->fs.items, item) {
		if (migrate_item_is_open(item))
			explained++;
	}
	folder->counters.deferred = explained;
	expected = folder->src_messages > explained ?
		folder->src_messages - explained : 0;
	if (folder->dst_messages < expected)
		folder->unexplained = expected - folder->dst_messages;
	folder->result = folder->unexplained == 0 ?
		MIGRATE_FOLDER_RESULT_OK : MIGRATE_FOLDER_RESULT_MISSING;
}

int migrate_importer_verify(struct migrate_importer_ctx *ctx,
			    struct migrate_folder *folder)
{
	struct migrate_importer imp;
	struct mailbox_status status;
	enum mailbox_existence existence;
	struct mail_namespace *ns;
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
		migrate_importer_set_error(ctx, MIGRATE_ERROR_TEMP, "%s",
					   error);
		migrate_importer_deinit(&imp);
		return -1;
	}
	ret = migrate_importer_examine(&imp, NULL, NULL);
	if (ret <= 0) {
		folder->result = MIGRATE_FOLDER_RESULT_FAILED;
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
		migrate_importer_dest_failed(&imp, imp.box, NULL);
		migrate_importer_deinit(&imp);
		return -1;
	} else {
		migrate_importer_dest_status(&imp, &status);
	}
	folder->dst_messages = status.messages;
	if (status.uidvalidity != imp.fs.dst_uidvalidity)
		state_valid = FALSE;

	if (!identities) {
		migrate_verify_counts(&imp);
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
	array_sort(&imp.msgs, migrate_importer_msg_cmp);
	array_foreach_elem(&imp.msgs, msg) {
		if (migrate_importer_dest_claim(&imp, msg->identity) != 0)
			continue;
		if (state_valid &&
		    migrate_verify_by_uidmap(&imp, msg, &dst_identities))
			continue;
		if (migrate_verify_explained(&imp, msg->uid)) {
			folder->counters.deferred++;
			continue;
		}
		if (migrate_importer_msg_gmail_labelled(&imp, msg)) {
			/* labelled: it's in its label folder */
			msg->action = MIGRATE_MSG_DUPLICATE;
			folder->counters.existing++;
			continue;
		}
		migrate_verify_missing(&imp, msg);
	}
	migrate_importer_remember(&imp);
	folder->result = folder->unexplained == 0 ?
		MIGRATE_FOLDER_RESULT_OK : MIGRATE_FOLDER_RESULT_MISSING;
	if (hash_table_is_created(dst_identities))
		hash_table_destroy(&dst_identities);
	migrate_importer_deinit(&imp);
	return 0;
}
