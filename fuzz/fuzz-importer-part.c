/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* migrate-importer-source.c's reply parsers for the fuzz target
   (fuzz-parts.h) */
#include "../plugin/migrate-importer-source.c"
#include "fuzz-parts.h"
#include "migrate-run.h"

struct fuzz_importer {
	struct migrate_importer_ctx ctx;
	struct migrate_importer imp;
	struct migrate_folder folder;
};

struct fuzz_importer *fuzz_importer_create(struct migrate_run *run, pool_t pool)
{
	struct fuzz_importer *fimp = p_new(pool, struct fuzz_importer, 1);
	struct migrate_importer *imp = &fimp->imp;

	migrate_run_importer_ctx(run, &fimp->ctx);
	imp->ctx = &fimp->ctx;
	imp->pool = pool;
	imp->folder = &fimp->folder;
	fimp->folder.src_name = "INBOX";
	fimp->folder.dest.vname = "INBOX";
	p_array_init(&imp->msgs, pool, 16);
	hash_table_create_direct(&imp->msgs_by_uid, pool, 0);
	p_array_init(&imp->seq_uids, pool, 16);
	return fimp;
}

void fuzz_importer_destroy(struct fuzz_importer *fimp)
{
	struct migrate_importer *imp = &fimp->imp;

	hash_table_destroy(&imp->msgs_by_uid);
	if (hash_table_is_created(imp->items_by_uid))
		hash_table_destroy(&imp->items_by_uid);
}

void fuzz_importer_reply(struct fuzz_importer *fimp,
			 const struct migrate_reply *reply)
{
	struct migrate_search_ctx ctx;

	migrate_examine_cb(reply, &fimp->imp);
	migrate_list_cb(reply, &fimp->imp);
	i_zero(&ctx);
	ctx.imp = &fimp->imp;
	p_array_init(&ctx.uids, fimp->imp.pool, 16);
	migrate_search_cb(reply, &ctx);
}

void fuzz_importer_fetch_items(struct fuzz_importer *fimp,
			       const struct imap_arg *args)
{
	struct migrate_msg msg;
	const unsigned char *hdr;
	size_t hdr_size;

	i_zero(&msg);
	(void)migrate_importer_parse_fetch(&fimp->imp,
				  migrate_importer_fetch_args_normalize(args),
				  &msg, &hdr, &hdr_size);
}
