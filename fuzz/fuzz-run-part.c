/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* migrate-run.c's reply parsers for the fuzz target (see fuzz-parts.h) */
#include "../plugin/migrate-run.c"
#include "fuzz-parts.h"

void fuzz_run_reply(struct migrate_run *run, const struct migrate_reply *reply)
{
	migrate_namespace_cb(reply, run);
	migrate_list_cb(reply, run);
	migrate_status_cb(reply, run);
}
