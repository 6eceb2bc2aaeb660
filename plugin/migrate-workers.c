/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "lib-signals.h"
#include "fd-util.h"
#include "file-lock.h"
#include "safe-mkstemp.h"
#include "str.h"
#include "time-util.h"
#include "hostpid.h"
#include "master-service.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "migrate-settings.h"
#include "migrate-source-conn.h"
#include "migrate-conn-slots.h"
#include "migrate-importer.h"
#include "migrate-pacing.h"
#include "migrate-compat.h"
#include "migrate-workers.h"

#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <fcntl.h>
#ifdef __linux__
#  include <sys/prctl.h>
#endif

#define MIGRATE_WORKER_ERROR_MAX 1024
/* How much a worker lowers its CPU priority when it takes any folder but
   the largest (migrate_worker_yield_cpu()) */
#define MIGRATE_WORKER_NICE_OTHERS 10
#define MIGRATE_WORKERS_TICK_MSECS 1000

/* The counters of struct migrate_folder a worker hands back */
#define MIGRATE_JOB_COUNTERS(X) \
	X(src_messages) X(dst_messages) X(counters) X(duration_msecs) \
	X(finished_event)

/* Everything below lives in one shared anonymous mapping created before
   the fork: the parent and every worker see the same bytes. Strings are
   copied in, not pointed to. */
struct migrate_worker_job {
	/* set last, by the worker that finished the folder */
	bool done;
	enum migrate_folder_result result;
	char uids_preserved[16];
	char error[MIGRATE_WORKER_ERROR_MAX];
	uint32_t src_messages, dst_messages;
	struct migrate_counters counters;
	uint64_t duration_msecs;
	bool finished_event;
};

struct migrate_worker_slot {
	pid_t pid;
	/* the worker couldn't start (connection or mail user): what it would
	   have done is left to the other workers and to the parent */
	bool no_start;
	enum migrate_error error_code;
	char error[MIGRATE_WORKER_ERROR_MAX];
	struct migrate_live_counters counters;
	/* progress */
	uint32_t saved;
	uint64_t bytes;
	uint64_t last_bytes_done;
};

struct migrate_workers {
	size_t size;
	unsigned int job_count, group_count, worker_count;
	/* next group of jobs to take (atomic) */
	unsigned int next_group;
	/* a worker hit an error that stops the run: take no new folder */
	unsigned int stop;
	/* failed messages of the whole run, for migrate_errors_max (atomic) */
	unsigned int item_errors;
	/* one throttle budget: every worker holds off until then (ms since
	   the epoch, atomic) */
	int64_t throttle_until_msecs;
	/* an unlinked file: the worker creating or opening a destination
	   folder holds an fcntl lock on it (the same fd in every worker) */
	int dest_lock_fd;
	struct migrate_worker_slot *slots;
	struct migrate_worker_job *jobs;
	/* worker_count slots, then job_count jobs */
};

struct migrate_workers_wait {
	const struct migrate_workers_params *params;
	struct migrate_workers *w;
	struct ioloop *ioloop;
	bool killed;
};

/* the worker process's own my_pid */
static char worker_pid[MAX_INT_STRLEN];

static int64_t migrate_workers_now_msecs(void)
{
	struct timeval tv;

	i_gettimeofday(&tv);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void migrate_copy_str(char *dest, size_t size, const char *src)
{
	if (src == NULL)
		src = "";
	i_assert(size > 0);
	/* error texts are long sentences: keep them whole when they fit */
	(void)i_strocpy(dest, src, size);
}

static uint64_t migrate_folder_size_estimate(const struct migrate_folder *f)
{
	if (f->have_status && f->status_size > 0)
		return f->status_size;
	/* without STATUS=SIZE: assume equal message sizes */
	return (uint64_t)f->status_messages * 65536;
}

struct migrate_job_group {
	/* jobs[start..start+count-1] share one destination folder: one
	   worker imports them one after another, as a run without workers
	   would (the second finds the first's mail already there) */
	unsigned int start, count;
	uint64_t size;
};
ARRAY_DEFINE_TYPE(migrate_job_group, struct migrate_job_group);

static int migrate_dest_cmp(struct migrate_folder *const *f1,
			    struct migrate_folder *const *f2)
{
	int ret = null_strcmp((*f1)->dest.vname, (*f2)->dest.vname);

	return ret != 0 ? ret : strcmp((*f1)->src_name, (*f2)->src_name);
}

static int migrate_group_cmp(const struct migrate_job_group *g1,
			     const struct migrate_job_group *g2)
{
	/* largest first: the long folder mustn't start last */
	if (g1->size != g2->size)
		return g1->size > g2->size ? -1 : 1;
	return g1->start < g2->start ? -1 : (g1->start > g2->start ? 1 : 0);
}

/* The folders grouped by destination folder, the largest group first */
static void
migrate_jobs_group(struct migrate_folder *const *folders, unsigned int count,
		   ARRAY_TYPE(migrate_folder) *jobs_r,
		   ARRAY_TYPE(migrate_job_group) *groups_r)
{
	ARRAY_TYPE(migrate_folder) by_dest;
	ARRAY_TYPE(migrate_job_group) groups;
	struct migrate_job_group *group, *g2;
	struct migrate_folder *const *f;
	unsigned int i, j, cur = 0;

	t_array_init(&by_dest, count);
	array_append(&by_dest, folders, count);
	array_sort(&by_dest, migrate_dest_cmp);
	f = array_front(&by_dest);
	t_array_init(&groups, count);
	for (i = 0; i < count; i++) {
		if (i == 0 || null_strcmp(f[i]->dest.vname,
					  f[i - 1]->dest.vname) != 0) {
			cur = array_count(&groups);
			group = array_append_space(&groups);
			group->start = i;
		}
		group = array_idx_modifiable(&groups, cur);
		group->count++;
		group->size += migrate_folder_size_estimate(f[i]);
	}
	array_sort(&groups, migrate_group_cmp);

	t_array_init(jobs_r, count);
	t_array_init(groups_r, array_count(&groups) + 1);
	array_foreach_modifiable(&groups, group) {
		g2 = array_append_space(groups_r);
		g2->start = array_count(jobs_r);
		g2->count = group->count;
		g2->size = group->size;
		for (j = 0; j < group->count; j++)
			array_push_back(jobs_r, &f[group->start + j]);
	}
}

/* The other two measures of migrate_worker_messages' share of work */
#define MIGRATE_WORKER_BYTES (8ULL * 1024 * 1024)
#define MIGRATE_WORKER_FOLDERS 8

/* How many workers the work to do is worth: one per
   migrate_worker_messages messages, per MIGRATE_WORKER_BYTES or per
   MIGRATE_WORKER_FOLDERS groups, whichever asks more. Each worker logs in
   anew: for a small mailbox the logins cost the source more than they
   save (bench/README.md "Bulk onboarding"). */
static unsigned int
migrate_workers_for_work(const struct migrate_settings *set,
			 struct migrate_folder *const *folders,
			 unsigned int count, unsigned int group_count)
{
	uint64_t messages = 0, bytes = 0, n;
	unsigned int i;

	if (set->worker_messages == 0)
		return UINT_MAX;
	for (i = 0; i < count; i++) {
		/* no STATUS: the work isn't known */
		if (!folders[i]->have_status)
			return UINT_MAX;
		messages += folders[i]->planned;
		bytes += folders[i]->planned_bytes;
	}
	n = (messages + set->worker_messages - 1) / set->worker_messages;
	n = I_MAX(n, (bytes + MIGRATE_WORKER_BYTES - 1) / MIGRATE_WORKER_BYTES);
	n = I_MAX(n, (group_count + MIGRATE_WORKER_FOLDERS - 1) /
		  MIGRATE_WORKER_FOLDERS);
	return n > UINT_MAX ? UINT_MAX : (unsigned int)n;
}

/* How many workers for this many groups of folders: 0 = none */
static unsigned int
migrate_workers_wanted(const struct migrate_workers_params *params,
		       struct migrate_folder *const *folders,
		       unsigned int count, unsigned int group_count)
{
	const struct migrate_settings *set = params->importer->set;
	unsigned int n = set->parallel_folders, work;

	/* it needs every identity seen so far in one process (Gmail's All
	   Mail doesn't: the run keeps it for itself, see
	   migrate_run_worker_jobs()) */
	if (set->dedupe_across_folders)
		return 0;
	if (n > group_count)
		n = group_count;
	work = migrate_workers_for_work(set, folders, count, group_count);
	if (n > work) {
		e_debug(params->importer->event, "%u workers are enough for "
			"the work to do (migrate_worker_messages=%u)",
			work, set->worker_messages);
		n = work;
	}
	if (set->max_connections > 0 && n > set->max_connections)
		n = set->max_connections;
	/* each worker gets its share of a rate cap */
	if (set->max_messages_per_second > 0 &&
	    n > set->max_messages_per_second)
		n = set->max_messages_per_second;
	return n < 2 ? 0 : n;
}

/* worker side */

static void migrate_worker_signals_reset(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT,
				    SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM };
	struct sigaction act;
	unsigned int i;

	/* lib-signals' handlers write to the parent's signal pipe, which
	   this process shares: a signal to a worker must not reach the
	   parent's handlers. A killed worker dies at once: its folder is
	   imported again by the parent, without duplicates. */
	i_zero(&act);
	act.sa_handler = SIG_DFL;
	sigemptyset(&act.sa_mask);
	for (i = 0; i < N_ELEMENTS(sigs); i++)
		(void)sigaction(sigs[i], &act, NULL);
}

static void migrate_worker_fail(struct migrate_worker_slot *slot,
				const char *error)
{
	slot->no_start = TRUE;
	migrate_copy_str(slot->error, sizeof(slot->error), error);
}

static int migrate_worker_user_init(struct mail_user *parent,
				    struct mail_user **user_r,
				    const char **error_r)
{
	struct mail_user *user;

	/* a mail user of its own: the parent's index and dict file
	   descriptors (and their offsets and locks) aren't shared */
	user = mail_user_dup(parent);
	if (mail_user_init(user, error_r) < 0 ||
	    mail_namespaces_init(user, error_r) < 0) {
		mail_user_unref(&user);
		return -1;
	}
	*user_r = user;
	return 0;
}

static void migrate_worker_job_save(struct migrate_worker_job *job,
				    const struct migrate_folder *folder)
{
	job->result = folder->result;
	migrate_copy_str(job->uids_preserved, sizeof(job->uids_preserved),
			 folder->uids_preserved);
	migrate_copy_str(job->error, sizeof(job->error), folder->error);
#define MIGRATE_COPY_COUNTER(name) job->name = folder->name;
	MIGRATE_JOB_COUNTERS(MIGRATE_COPY_COUNTER)
#undef MIGRATE_COPY_COUNTER
	__atomic_store_n(&job->done, TRUE, __ATOMIC_SEQ_CST);
}

/* One worker process's context, built after the fork from the run's
   importer context and pacing (the template, only read here): its own
   settings (its share of the rate caps), mail user, state and source
   connections, connection slot, pacing and counters, and the importer
   context with the workers' hooks. */
struct migrate_worker {
	const struct migrate_workers_params *params;
	struct migrate_workers *w;
	struct migrate_worker_slot *slot;
	pool_t pool;
	struct migrate_settings set;
	struct mail_user *user;
	struct migrate_state *state;
	struct migrate_source_conn *conn;
	struct migrate_conn_slot *conn_slot;
	struct migrate_importer_live live;
	struct migrate_pacing pacing;
	struct migrate_importer_ctx ctx;
	/* runs at a lower CPU priority (took a group other than the first) */
	bool yielded_cpu;
};

static int migrate_worker_connect(struct migrate_worker *worker)
{
	const struct migrate_settings *set = &worker->set;
	enum migrate_error code;
	const char *error;
	int ret;

	if (set->max_connections > 0) {
		/* don't queue for a slot: another worker or the parent takes
		   the folders */
		ret = migrate_conn_slot_try(set->connection_slots_dir,
					    set->source_host, set->source_port,
					    set->max_connections,
					    &worker->conn_slot, &error);
		if (ret <= 0) {
			migrate_worker_fail(worker->slot, ret < 0 ? error :
				"no free connection slot "
				"(migrate_max_connections)");
			return -1;
		}
	}
	if (migrate_source_conn_connect(worker->conn, &code, &error) < 0) {
		migrate_worker_fail(worker->slot, error);
		return -1;
	}
	return 0;
}

/* The largest group decides how long the run takes: the worker that takes
   it keeps the run's CPU priority, every other worker lowers its own, so
   on a destination short of CPU the big folder isn't slowed by the small
   ones, which use what it leaves (bench/README.md, "How the scheduler
   decides"). Once lowered it stays so: raising it back needs privileges. */
static void migrate_worker_yield_cpu(struct migrate_worker *worker,
				     unsigned int group_idx)
{
	if (group_idx == 0 || worker->yielded_cpu)
		return;
	worker->yielded_cpu = TRUE;
	errno = 0;
	if (nice(MIGRATE_WORKER_NICE_OTHERS) == -1 && errno != 0) {
		e_debug(worker->ctx.event, "nice(%d) failed: %m",
			MIGRATE_WORKER_NICE_OTHERS);
	}
}

static int
migrate_worker_import(struct migrate_worker *worker,
		      struct migrate_folder *const *folders,
		      const struct migrate_job_group *groups)
{
	struct migrate_workers *w = worker->w;
	struct migrate_worker_slot *slot = worker->slot;
	const struct migrate_job_group *group;
	struct migrate_folder *folder;
	unsigned int g, i;

	while (__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST) == 0) {
		g = __atomic_fetch_add(&w->next_group, 1, __ATOMIC_SEQ_CST);
		if (g >= w->group_count)
			break;
		migrate_worker_yield_cpu(worker, g);
		group = &groups[g];
		for (i = group->start; i < group->start + group->count; i++) {
			folder = folders[i];
			if (migrate_importer_folder(&worker->ctx, folder) < 0) {
				migrate_worker_job_save(&w->jobs[i], folder);
				slot->error_code = worker->ctx.error_code;
				migrate_copy_str(slot->error,
						 sizeof(slot->error),
						 worker->ctx.error);
				__atomic_store_n(&w->stop, 1,
						 __ATOMIC_SEQ_CST);
				return -1;
			}
			migrate_worker_job_save(&w->jobs[i], folder);
		}
	}
	return 0;
}

/* The worker's hooks: one migrate_errors_max and one throttle budget for
   all workers, progress in the worker's slot; the run's process holds
   the run lock and saves the run's progress; the Gmail label lookup and
   save_begin are the template's */

static unsigned int
migrate_worker_item_errors_add(struct migrate_worker *worker, unsigned int add)
{
	return __atomic_add_fetch(&worker->w->item_errors, add,
				  __ATOMIC_SEQ_CST);
}

static void migrate_worker_hook_item_error(void *context)
{
	struct migrate_worker *worker = context;

	worker->live.counters.item_errors++;
	(void)migrate_worker_item_errors_add(worker, 1);
}

static bool migrate_worker_hook_errors_max_reached(void *context,
						   const char **error_r)
{
	struct migrate_worker *worker = context;
	unsigned int total = migrate_worker_item_errors_add(worker, 0);

	if (worker->set.errors_max == 0 || total < worker->set.errors_max)
		return FALSE;
	*error_r = t_strdup_printf("Stopped after %u failed messages "
				   "(migrate_errors_max)", total);
	return TRUE;
}

/* msecs to wait because another worker was throttled, or 0 */
static unsigned int migrate_worker_throttle_wait(struct migrate_worker *worker)
{
	int64_t until = __atomic_load_n(&worker->w->throttle_until_msecs,
					__ATOMIC_SEQ_CST);
	int64_t now;

	/* called per saved message: no clock read while nobody throttled */
	if (until == 0)
		return 0;
	now = migrate_workers_now_msecs();
	return until > now ? (unsigned int)(until - now) : 0;
}

static void migrate_worker_hook_saved(void *context)
{
	struct migrate_worker *worker = context;
	struct migrate_worker_slot *slot = worker->slot;
	unsigned int wait_msecs;

	slot->saved++;
	slot->bytes += worker->live.bytes_done - slot->last_bytes_done;
	slot->last_bytes_done = worker->live.bytes_done;
	/* another worker was throttled: one budget for all */
	wait_msecs = migrate_worker_throttle_wait(worker);
	if (wait_msecs > 0)
		migrate_pacing_sleep(&worker->pacing, wait_msecs);
	migrate_pacing_saved(&worker->pacing);
}

static void migrate_worker_throttled(void *context, unsigned int msecs)
{
	struct migrate_worker *worker = context;
	struct migrate_workers *w = worker->w;
	int64_t until = migrate_workers_now_msecs() + msecs;
	int64_t cur = __atomic_load_n(&w->throttle_until_msecs,
				      __ATOMIC_SEQ_CST);

	while (cur < until &&
	       !__atomic_compare_exchange_n(&w->throttle_until_msecs, &cur,
					    until, FALSE, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST)) ;
}

static int migrate_worker_hook_throttle(void *context, const char *why,
					const char **error_r)
{
	struct migrate_worker *worker = context;

	return migrate_pacing_throttle(&worker->pacing, why, error_r);
}

static int migrate_worker_hook_reconnect(void *context, const char *why,
					 enum migrate_error *code_r,
					 const char **error_r)
{
	struct migrate_worker *worker = context;

	return migrate_pacing_reconnect(&worker->pacing, why, code_r, error_r);
}

static bool migrate_worker_hook_gmail_label_imported(void *context,
						     const char *label)
{
	struct migrate_worker *worker = context;
	const struct migrate_importer_ctx *tmpl = worker->params->importer;

	return tmpl->hooks->gmail_label_imported(tmpl->hook_context, label);
}

static void migrate_worker_hook_plan_folder(void *context ATTR_UNUSED,
					    struct migrate_folder *folder,
					    uint32_t messages, uint64_t bytes)
{
	/* the run's plan is the parent's: the folder's goes back with its
	   result */
	folder->planned = messages;
	folder->planned_bytes = bytes;
}

static void migrate_worker_hook_save_progress(void *context ATTR_UNUSED)
{
	/* the parent saves the run's progress from the workers' slots */
}

static void
migrate_worker_hook_save_begin(void *context,
			       const struct migrate_folder *folder,
			       struct mail_save_context *save,
			       struct istream *body, uoff_t body_size)
{
	struct migrate_worker *worker = context;
	const struct migrate_importer_ctx *tmpl = worker->params->importer;

	tmpl->hooks->save_begin(tmpl->hook_context, folder, save, body,
				body_size);
}

/* Two processes of one user creating or opening mailboxes at once can
   deadlock on Dovecot's list index lock and a mailbox index lock (the
   kernel says EDEADLK, lib-index panics): workers do that one at a time.
   The kernel drops the lock of a worker that dies. */
#define MIGRATE_DEST_LOCK_WAIT_SECS 120
/* this process's hold on the workers' destination lock */
static struct file_lock *migrate_dest_lock = NULL;

static void migrate_worker_hook_dest_lock(void *context)
{
	struct migrate_worker *worker = context;
	struct migrate_workers *w = worker->w;
	struct file_lock_settings lock_set = {
		.lock_method = FILE_LOCK_METHOD_FCNTL,
		/* a cycle through a mailbox index lock: EDEADLK, not a panic */
		.allow_deadlock = TRUE,
	};
	const char *error;
	int ret;

	if (w->dest_lock_fd == -1 || migrate_dest_lock != NULL)
		return;
	ret = file_wait_lock(w->dest_lock_fd, "migrate workers' destination "
			     "lock", F_WRLCK, &lock_set,
			     MIGRATE_DEST_LOCK_WAIT_SECS, &migrate_dest_lock,
			     &error);
	if (ret < 0) {
		e_warning(worker->ctx.event, "Couldn't lock the destination "
			  "for opening a folder: %s: going on", error);
	} else if (ret == 0) {
		e_warning(worker->ctx.event, "Waited %u s for another worker "
			  "to open its destination folder: going on",
			  MIGRATE_DEST_LOCK_WAIT_SECS);
	}
}

static void migrate_worker_hook_dest_unlock(void *context ATTR_UNUSED)
{
	if (migrate_dest_lock != NULL)
		file_unlock(&migrate_dest_lock);
}

static const struct migrate_importer_hooks migrate_worker_hooks = {
	.item_error = migrate_worker_hook_item_error,
	.errors_max_reached = migrate_worker_hook_errors_max_reached,
	.saved = migrate_worker_hook_saved,
	.throttle = migrate_worker_hook_throttle,
	.reconnect = migrate_worker_hook_reconnect,
	.gmail_label_imported = migrate_worker_hook_gmail_label_imported,
	.plan_folder = migrate_worker_hook_plan_folder,
	.save_progress = migrate_worker_hook_save_progress,
	.save_begin = migrate_worker_hook_save_begin,
	.dest_lock = migrate_worker_hook_dest_lock,
	.dest_unlock = migrate_worker_hook_dest_unlock,
};

/* The worker's own settings: the run's, with its share of the operator's
   rate caps */
static void migrate_worker_settings(struct migrate_worker *worker)
{
	struct migrate_settings *set = &worker->set;
	unsigned int count = worker->w->worker_count;

	*set = *worker->params->importer->set;
	if (set->max_messages_per_second > 0) {
		set->max_messages_per_second /= count;
		if (set->max_messages_per_second == 0)
			set->max_messages_per_second = 1;
	}
	if (set->max_bytes_per_second > 0) {
		set->max_bytes_per_second /= count;
		if (set->max_bytes_per_second == 0)
			set->max_bytes_per_second = 1;
	}
}

/* The worker's context from the run's (the template): what this process
   owns replaces the run's, the counters start at zero */
static void migrate_worker_init(struct migrate_worker *worker)
{
	const struct migrate_importer_ctx *tmpl = worker->params->importer;

	worker->pool = pool_alloconly_create("migrate worker", 1024);
	migrate_worker_settings(worker);
	worker->live = *tmpl->live;
	i_zero(&worker->live.counters);
	worker->live.bytes_done = 0;
	worker->pacing = *worker->params->pacing;
	worker->pacing.set = &worker->set;
	worker->pacing.live = &worker->live;
	worker->pacing.keep_alive = NULL;
	worker->pacing.throttled = migrate_worker_throttled;
	worker->pacing.context = worker;
	worker->pacing.throttle_wait_secs = 0;
	worker->pacing.pace_start.tv_sec = 0;

	worker->ctx = *tmpl;
	worker->ctx.pool = worker->pool;
	worker->ctx.set = &worker->set;
	worker->ctx.live = &worker->live;
	worker->ctx.hooks = &migrate_worker_hooks;
	worker->ctx.hook_context = worker;
}

/* The worker's own mail user, state and source connection */
static int migrate_worker_open(struct migrate_worker *worker)
{
	const char *error;

	if (migrate_worker_user_init(worker->params->importer->user,
				     &worker->user, &error) < 0) {
		migrate_worker_fail(worker->slot, t_strdup_printf(
			"Worker couldn't initialize the mail user: %s", error));
		return -1;
	}
	if (migrate_state_open(worker->user, worker->set.state_dict,
			       &worker->state, &error) < 0) {
		migrate_worker_fail(worker->slot, error);
		return -1;
	}
	worker->conn = migrate_source_conn_create(&worker->set, worker->user,
		worker->params->importer->event);
	worker->pacing.conn = worker->conn;
	worker->ctx.user = worker->user;
	worker->ctx.state = worker->state;
	worker->ctx.conn = worker->conn;
	return 0;
}

static void ATTR_NORETURN
migrate_worker_main(const struct migrate_workers_params *params,
		    struct migrate_workers *w, unsigned int idx,
		    struct migrate_folder *const *folders,
		    const struct migrate_job_group *groups, pid_t parent_pid)
{
	struct migrate_worker worker;
	struct migrate_worker_slot *slot = &w->slots[idx];
	int ret = 0;

#ifdef __linux__
	/* a worker never outlives its run: a killed parent could otherwise
	   be restarted while an orphan still imports the same folder */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
	if (getppid() != parent_pid)
		_exit(1);
	/* my_pid names maildir files, rawlogs and lock owners: a worker
	   must not reuse the parent's */
	i_snprintf(worker_pid, sizeof(worker_pid), "%ld", (long)getpid());
	my_pid = worker_pid;
	migrate_worker_signals_reset();
	/* the parent's ioloop (and its epoll set) stays the parent's */
	(void)io_loop_create();
	migrate_compat_stats_client_after_fork();

	/* the parent's connection, slot, state and user are left untouched:
	   this process builds its own */
	i_zero(&worker);
	worker.params = params;
	worker.w = w;
	worker.slot = slot;
	migrate_worker_init(&worker);
	if (migrate_worker_open(&worker) < 0)
		_exit(0);
	if (migrate_worker_connect(&worker) == 0)
		ret = migrate_worker_import(&worker, folders, groups);

	slot->counters = worker.live.counters;
	migrate_source_conn_destroy(&worker.conn);
	migrate_conn_slot_release(&worker.conn_slot);
	migrate_state_close(&worker.state);
	mail_user_unref(&worker.user);
	/* no atexit handlers, no stdio flush: those are the parent's */
	_exit(ret < 0 ? 1 : 0);
}

/* parent side */

static void migrate_workers_progress_get(const struct migrate_workers *w,
					 struct migrate_workers_progress *p_r)
{
	unsigned int i;

	i_zero(p_r);
	p_r->workers = w->worker_count;
	p_r->folders = w->job_count;
	for (i = 0; i < w->job_count; i++) {
		if (__atomic_load_n(&w->jobs[i].done, __ATOMIC_SEQ_CST))
			p_r->folders_done++;
	}
	for (i = 0; i < w->worker_count; i++) {
		p_r->saved += w->slots[i].saved;
		p_r->bytes += w->slots[i].bytes;
	}
}

static void migrate_workers_progress(struct migrate_workers_wait *ctx)
{
	struct migrate_workers_progress progress;

	migrate_workers_progress_get(ctx->w, &progress);
	ctx->params->hooks->progress(ctx->params->context, &progress);
}

static void migrate_workers_eof(struct migrate_workers_wait *ctx)
{
	/* every worker closed its end of the pipe: all have exited */
	io_loop_stop(ctx->ioloop);
}

static void migrate_workers_tick(struct migrate_workers_wait *ctx)
{
	struct migrate_workers_progress progress;

	migrate_workers_progress_get(ctx->w, &progress);
	ctx->params->hooks->tick(ctx->params->context, &progress);
	if (master_service_is_killed(master_service)) {
		ctx->killed = TRUE;
		io_loop_stop(ctx->ioloop);
	}
}

static void migrate_workers_signal(const siginfo_t *si ATTR_UNUSED,
				   void *context)
{
	struct migrate_workers_wait *ctx = context;

	/* doveadm's own handler runs later, on its ioloop: stop the workers
	   now (a worker dies at once: nothing it did is lost) */
	ctx->killed = TRUE;
	io_loop_stop(ctx->ioloop);
}

/* Until every worker exited. Returns FALSE when a signal stopped them. */
static bool migrate_workers_wait(const struct migrate_workers_params *params,
				 struct migrate_workers *w, int fd)
{
	struct event *event = params->importer->event;
	struct migrate_workers_wait ctx;
	struct ioloop *prev_ioloop = current_ioloop;
	struct timeout *to, *to_progress;
	struct io *io;
	unsigned int i;
	int status;

	i_zero(&ctx);
	ctx.params = params;
	ctx.w = w;
	ctx.ioloop = io_loop_create();
	io = io_add(fd, IO_READ, migrate_workers_eof, &ctx);
	to = timeout_add(MIGRATE_WORKERS_TICK_MSECS, migrate_workers_tick,
			 &ctx);
	to_progress = timeout_add(params->progress_interval_msecs,
				  migrate_workers_progress, &ctx);
	lib_signals_set_handler(SIGTERM, LIBSIG_FLAG_DELAYED,
				migrate_workers_signal, &ctx);
	lib_signals_set_handler(SIGINT, LIBSIG_FLAG_DELAYED,
				migrate_workers_signal, &ctx);
	io_loop_run(ctx.ioloop);
	lib_signals_unset_handler(SIGINT, migrate_workers_signal, &ctx);
	lib_signals_unset_handler(SIGTERM, migrate_workers_signal, &ctx);
	timeout_remove(&to_progress);
	timeout_remove(&to);
	io_remove(&io);
	io_loop_set_current(ctx.ioloop);
	io_loop_destroy(&ctx.ioloop);
	io_loop_set_current(prev_ioloop);

	for (i = 0; i < w->worker_count; i++) {
		pid_t pid = w->slots[i].pid;

		if (pid <= 0)
			continue;
		if (ctx.killed)
			(void)kill(pid, SIGTERM);
		if (waitpid(pid, &status, 0) < 0) {
			/* reaped elsewhere: the shared results still tell */
			continue;
		}
		if (WIFSIGNALED(status) && !ctx.killed) {
			e_error(event, "Worker process %ld was killed by "
				"signal %d: its unfinished folder is imported "
				"again", (long)pid, WTERMSIG(status));
		}
	}
	return !ctx.killed;
}

/* The worker logged the folder's migrate_folder_finished, but a worker
   has no stats connection (migrate_compat_stats_client_after_fork()):
   sent again from here at debug level, which the stats service counts
   and the log shows only with debug on. Its own duration is ~0: the
   folder's is in duration_msecs. */
static void migrate_workers_folder_event(struct event *parent,
					 const struct migrate_folder *folder)
{
	struct event *event = event_create(parent);

	event_add_str(event, "folder", folder->dest.vname);
	e_debug(migrate_folder_finished_event(event, folder),
		"%s: %s (in a worker)", folder->dest.vname,
		migrate_folder_result_to_str(folder->result));
	event_unref(&event);
}

/* The workers' results into the folders and counters; the first error
   that stops the run into code_r/error_r (unless *code_r has one) */
static void migrate_workers_merge(const struct migrate_workers_params *params,
				  struct migrate_workers *w,
				  struct migrate_folder *const *folders,
				  struct migrate_live_counters *counters,
				  enum migrate_error *code_r,
				  const char **error_r)
{
	const struct migrate_importer_ctx *tmpl = params->importer;
	struct migrate_worker_slot *slot;
	struct migrate_worker_job *job;
	struct migrate_folder *folder;
	unsigned int i;

	for (i = 0; i < w->job_count; i++) {
		job = &w->jobs[i];
		if (!__atomic_load_n(&job->done, __ATOMIC_SEQ_CST))
			continue;
		folder = folders[i];
		folder->result = job->result;
		folder->uids_preserved = job->uids_preserved[0] == '\0' ?
			NULL : p_strdup(tmpl->pool, job->uids_preserved);
		folder->error = job->error[0] == '\0' ? NULL :
			p_strdup(tmpl->pool, job->error);
#define MIGRATE_COPY_COUNTER(name) folder->name = job->name;
		MIGRATE_JOB_COUNTERS(MIGRATE_COPY_COUNTER)
#undef MIGRATE_COPY_COUNTER
		if (folder->finished_event)
			migrate_workers_folder_event(tmpl->event, folder);
	}
	for (i = 0; i < w->worker_count; i++) {
		slot = &w->slots[i];
		migrate_live_counters_add(counters, &slot->counters);
		if (slot->no_start) {
			e_warning(tmpl->event, "Worker %u didn't start: %s; "
				  "its folders are imported by the others",
				  i + 1, slot->error);
		} else if (slot->error_code != MIGRATE_ERROR_NONE &&
			   *code_r == MIGRATE_ERROR_NONE) {
			*code_r = slot->error_code;
			*error_r = p_strdup(tmpl->pool, slot->error);
		}
	}
}

/* The destination lock's file, unlinked at once: only the workers, which
   inherit the fd, can reach it. -1 when it can't be made (the workers then
   open folders without it, as a run with one worker would). */
static int migrate_workers_lock_file_create(struct mail_user *user,
					    struct event *event)
{
	string_t *path = t_str_new(128);
	int fd;

	mail_user_set_get_temp_prefix(path, user->set);
	fd = safe_mkstemp(path, 0600, (uid_t)-1, (gid_t)-1);
	if (fd == -1) {
		e_warning(event, "safe_mkstemp(%s) failed: %m: workers "
			  "open their destination folders unlocked",
			  str_c(path));
		return -1;
	}
	i_unlink(str_c(path));
	fd_close_on_exec(fd, TRUE);
	return fd;
}

int migrate_workers_run(const struct migrate_workers_params *params,
			struct migrate_folder *const *folders,
			unsigned int count, bool *used_r,
			struct migrate_live_counters *counters,
			enum migrate_error *code_r, const char **error_r)
{
	const struct migrate_importer_ctx *tmpl = params->importer;
	ARRAY_TYPE(migrate_folder) sorted;
	ARRAY_TYPE(migrate_job_group) groups;
	struct migrate_folder *const *jobs;
	struct migrate_workers *w;
	unsigned int i, workers, started = 0;
	pid_t parent_pid = getpid();
	size_t size;
	void *mem;
	int fds[2];

	*used_r = FALSE;
	*code_r = MIGRATE_ERROR_NONE;
	*error_r = NULL;
	if (count < 2)
		return 0;
	migrate_jobs_group(folders, count, &sorted, &groups);
	workers = migrate_workers_wanted(params, folders, count,
					 array_count(&groups));
	if (workers == 0)
		return 0;

	size = sizeof(*w) + sizeof(w->slots[0]) * workers +
		sizeof(w->jobs[0]) * count;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		e_warning(tmpl->event, "mmap(%zu) failed: %m: importing the "
			  "folders one by one", size);
		return 0;
	}
	if (pipe(fds) < 0) {
		e_warning(tmpl->event, "pipe() failed: %m: importing the "
			  "folders one by one");
		(void)munmap(mem, size);
		return 0;
	}
	w = mem;
	w->dest_lock_fd = migrate_workers_lock_file_create(tmpl->user,
							    tmpl->event);
	/* a token command a worker runs mustn't hold the pipe open */
	fd_close_on_exec(fds[0], TRUE);
	fd_close_on_exec(fds[1], TRUE);
	w->size = size;
	w->job_count = count;
	w->worker_count = workers;
	w->item_errors = tmpl->live->counters.item_errors;
	w->slots = PTR_OFFSET(mem, sizeof(*w));
	w->jobs = PTR_OFFSET(w->slots, sizeof(w->slots[0]) * workers);

	jobs = array_front(&sorted);
	w->group_count = array_count(&groups);

	e_info(tmpl->event, "Importing %u folders in %u worker processes "
	       "(migrate_parallel_folders=%u)", count, workers,
	       tmpl->set->parallel_folders);
	/* the workers open their own connections: at most `workers' are
	   open at once */
	params->hooks->start(params->context);
	*used_r = TRUE;
	fflush(stdout);
	fflush(stderr);
	for (i = 0; i < workers; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			e_warning(tmpl->event, "fork() failed: %m");
			break;
		}
		if (pid == 0) {
			i_close_fd(&fds[0]);
			/* fds[1] stays open until the worker exits */
			migrate_worker_main(params, w, i, jobs,
					    array_front(&groups), parent_pid);
		}
		w->slots[i].pid = pid;
		started++;
	}
	i_close_fd(&fds[1]);
	if (started > 0 && !migrate_workers_wait(params, w, fds[0])) {
		*code_r = MIGRATE_ERROR_TEMP;
		*error_r = "Interrupted by a signal: the workers were "
			"stopped; a new run resumes";
	}
	i_close_fd(&fds[0]);
	migrate_workers_merge(params, w, jobs, counters, code_r, error_r);
	if (w->dest_lock_fd != -1)
		i_close_fd(&w->dest_lock_fd);
	(void)munmap(mem, size);
	return *code_r == MIGRATE_ERROR_NONE ? 0 : -1;
}
