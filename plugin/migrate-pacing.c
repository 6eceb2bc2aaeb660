/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "ioloop.h"
#include "time-util.h"
#include "migrate-settings.h"
#include "migrate-source-conn.h"
#include "migrate-importer.h"
#include "migrate-pacing.h"

/* throttling that stopped this long ago doesn't lengthen the next wait */
#define MIGRATE_THROTTLE_QUIET_SECS 60

void migrate_pacing_sleep(struct migrate_pacing *pacing, unsigned int msecs)
{
	if (pacing->keep_alive != NULL)
		pacing->keep_alive(pacing->context);
	migrate_source_conn_sleep(pacing->conn, msecs);
	if (pacing->keep_alive != NULL)
		pacing->keep_alive(pacing->context);
}

void migrate_pacing_saved(struct migrate_pacing *pacing)
{
	const struct migrate_settings *set = pacing->set;
	struct migrate_importer_live *live = pacing->live;
	long long elapsed_msecs, need_msecs = 0;

	/* no throttling since the last saved message: probe back up */
	if (live->pipeline_depth < set->pipeline_depth)
		live->pipeline_depth++;
	if (set->max_messages_per_second == 0 &&
	    set->max_bytes_per_second == 0)
		return;
	if (pacing->pace_start.tv_sec == 0) {
		pacing->pace_start = ioloop_timeval;
		pacing->cur_done_total = 0;
		live->bytes_done = 0;
	}
	pacing->cur_done_total++;
	io_loop_time_refresh();
	elapsed_msecs = timeval_diff_msecs(&ioloop_timeval,
					   &pacing->pace_start);
	if (set->max_messages_per_second > 0) {
		need_msecs = (long long)pacing->cur_done_total * 1000 /
			set->max_messages_per_second;
	}
	if (set->max_bytes_per_second > 0) {
		long long bytes_msecs = (long long)
			(live->bytes_done * 1000 / set->max_bytes_per_second);
		if (bytes_msecs > need_msecs)
			need_msecs = bytes_msecs;
	}
	if (need_msecs > elapsed_msecs)
		migrate_pacing_sleep(pacing, need_msecs - elapsed_msecs);
}

unsigned int migrate_backoff_msecs(const struct migrate_settings *set,
				   unsigned int first_msecs,
				   unsigned int attempt)
{
	unsigned int max_msecs = set->backoff_max_secs * 1000;
	unsigned int msecs = first_msecs;

	while (attempt-- > 0 && msecs < max_msecs)
		msecs *= 2;
	if (msecs > max_msecs)
		msecs = max_msecs;
	/* jitter: 50..100% so parallel runs don't reconnect in lockstep */
	return msecs / 2 + i_rand_limit(msecs / 2 + 1);
}

int migrate_pacing_reconnect(struct migrate_pacing *pacing, const char *why,
			     enum migrate_error *code_r, const char **error_r)
{
	const struct migrate_settings *set = pacing->set;
	enum migrate_error code;
	const char *error;
	unsigned int msecs;

	/* the session since the last reconnect made progress: a new
	   incident, with the whole budget and the shortest backoff */
	if (pacing->live->progress != pacing->progress_at_reconnect)
		pacing->reconnect_streak = 0;
	while (pacing->reconnect_streak < set->reconnect_max) {
		msecs = migrate_backoff_msecs(set,
			MIGRATE_RECONNECT_FIRST_MSECS, pacing->reconnect_streak);
		pacing->reconnect_streak++;
		pacing->live->counters.reconnects++;
		e_warning(pacing->event, "Source connection lost (%s); "
			  "reconnecting in %u ms (attempt %u of %u without "
			  "progress, migrate_reconnect_max)", why, msecs,
			  pacing->reconnect_streak, set->reconnect_max);
		migrate_pacing_sleep(pacing, msecs);
		if (migrate_source_conn_connect(pacing->conn, &code,
						&error) == 0) {
			pacing->progress_at_reconnect = pacing->live->progress;
			return 0;
		}
		why = error;
		if (code != MIGRATE_ERROR_TEMP) {
			*code_r = code;
			*error_r = error;
			return -1;
		}
	}
	*code_r = MIGRATE_ERROR_TEMP;
	*error_r = t_strdup_printf("Giving up after %u reconnects in a row "
		"without progress (migrate_reconnect_max): %s",
		pacing->reconnect_streak, why);
	return -1;
}

int migrate_pacing_throttle(struct migrate_pacing *pacing, const char *why,
			    const char **error_r)
{
	struct migrate_importer_live *live = pacing->live;
	unsigned int msecs;

	if (pacing->last_throttle != 0 &&
	    ioloop_time - pacing->last_throttle > MIGRATE_THROTTLE_QUIET_SECS)
		pacing->throttle_streak = 0;
	msecs = migrate_backoff_msecs(pacing->set, 1000,
				      pacing->throttle_streak);

	if (pacing->throttle_wait_secs + msecs / 1000 >
	    pacing->set->throttle_max_wait_secs) {
		*error_r = t_strdup_printf("Source server kept throttling for "
			"%u seconds (migrate_throttle_max_wait): %s",
			pacing->throttle_wait_secs, why);
		return -1;
	}
	live->counters.throttle_waits++;
	pacing->throttle_streak++;
	pacing->throttle_wait_secs += (msecs + 999) / 1000;
	if (live->pipeline_depth > 1)
		live->pipeline_depth /= 2;
	if (pacing->throttled != NULL)
		pacing->throttled(pacing->context, msecs);
	e_warning(pacing->event, "Source server is throttling (%s); "
		  "waiting %u ms, then %u messages in flight",
		  why == NULL ? "" : why, msecs, live->pipeline_depth);
	migrate_pacing_sleep(pacing, msecs);
	pacing->last_throttle = ioloop_time;
	return 0;
}
