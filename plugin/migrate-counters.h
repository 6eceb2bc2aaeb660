#ifndef MIGRATE_COUNTERS_H
#define MIGRATE_COUNTERS_H

/* What a pass did with messages: one folder's, a worker's folder handed
   back to the parent, the run's totals, the folder and run records of the
   state all keep these, and add them up with migrate_counters_add(). */
struct migrate_counters {
	/* saved at the destination */
	uint32_t imported;
	/* found there already (identity or uidmap) */
	uint32_t existing;
	/* in the item log as failed, or deferred (filtered, too big...) */
	uint32_t failed, deferred;
	/* messages whose flags were updated; expunged by delete mode */
	uint32_t flags_updated, expunged;
	/* bytes imported */
	uint64_t bytes;
};

/* dest += src, counter by counter */
void migrate_counters_add(struct migrate_counters *dest,
			  const struct migrate_counters *src);
/* A folder record's counters after (a part of) a pass: the pass's
   counts, its bytes added to the record's (bytes are the folder's total
   over all passes) */
void migrate_counters_set_pass(struct migrate_counters *record,
			       const struct migrate_counters *pass);

#endif
