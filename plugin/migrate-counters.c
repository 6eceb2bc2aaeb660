/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-counters.h"

void migrate_counters_add(struct migrate_counters *dest,
			  const struct migrate_counters *src)
{
	dest->imported += src->imported;
	dest->existing += src->existing;
	dest->failed += src->failed;
	dest->deferred += src->deferred;
	dest->flags_updated += src->flags_updated;
	dest->expunged += src->expunged;
	dest->bytes += src->bytes;
}

void migrate_counters_set_pass(struct migrate_counters *record,
			       const struct migrate_counters *pass)
{
	uint64_t bytes = record->bytes + pass->bytes;

	*record = *pass;
	record->bytes = bytes;
}
