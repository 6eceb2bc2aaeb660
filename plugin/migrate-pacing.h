#ifndef MIGRATE_PACING_H
#define MIGRATE_PACING_H

/* Pacing, throttling and reconnecting for one source connection: the
   operator's rate caps (migrate_max_*_per_second), adaptive throttling
   (the pipeline depth halved on a throttling reply and grown back per
   saved message, a backoff that grows with throttles in a row), and
   reconnects with exponential backoff and jitter, bounded per incident by
   migrate_reconnect_max. A run has one, each worker its own. */

#include "migrate-error.h"

struct migrate_settings;
struct migrate_source_conn;
struct migrate_importer_live;

/* the first reconnect of an incident waits 250..500 ms, then 1, 2, 4 s... */
#define MIGRATE_RECONNECT_FIRST_MSECS 500

struct migrate_pacing {
	const struct migrate_settings *set;
	struct event *event;
	struct migrate_source_conn *conn;
	/* pipeline_depth, bytes_done and progress are read and written
	   here, reconnects and throttle waits counted in its counters */
	struct migrate_importer_live *live;
	/* Called around every wait (the run lock stays alive), or NULL */
	void (*keep_alive)(void *context);
	/* After a throttling reply, with the wait (one budget for all
	   workers), or NULL */
	void (*throttled)(void *context, unsigned int msecs);
	void *context;

	/* Reconnect budget per incident: reconnects in a row without
	   progress (mail committed, a folder done) since the last one;
	   live->progress is counted up, and compared with its value at the
	   last reconnect */
	unsigned int reconnect_streak;
	uint64_t progress_at_reconnect;
	unsigned int throttle_wait_secs;
	/* the backoff grows with throttles in a row and starts over after
	   a quiet minute */
	unsigned int throttle_streak;
	time_t last_throttle;
	/* the rate caps: messages saved since pace_start */
	uint32_t cur_done_total;
	struct timeval pace_start;
};

/* Sleep on the ioloop (keep_alive around it) */
void migrate_pacing_sleep(struct migrate_pacing *pacing, unsigned int msecs);
/* After each saved message: grow the pipeline back, keep under the rate
   caps */
void migrate_pacing_saved(struct migrate_pacing *pacing);
/* Back off for a throttling reply. -1 (error_r) if
   migrate_throttle_max_wait is exhausted. */
int migrate_pacing_throttle(struct migrate_pacing *pacing, const char *why,
			    const char **error_r);
/* Reconnect after a temporary failure. Returns 0 when connected again, -1
   when giving up (code_r, error_r). */
int migrate_pacing_reconnect(struct migrate_pacing *pacing, const char *why,
			     enum migrate_error *code_r, const char **error_r);
/* The wait before reconnect attempt number attempt (0 = the first):
   first_msecs doubled per attempt up to migrate_backoff_max, with
   jitter */
unsigned int migrate_backoff_msecs(const struct migrate_settings *set,
				   unsigned int first_msecs,
				   unsigned int attempt);

#endif
