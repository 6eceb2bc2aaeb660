/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#define _GNU_SOURCE /* dladdr() */
#include "lib.h"
#include "array.h"
#include "str.h"
#include "module-dir.h"
#include "ioloop.h"
#include "mail-user.h"
#include "doveadm-mail.h"
#include "doveadm-print.h"
#include "doveadm-settings.h"
#include "migrate-compat.h"
#include "migrate-error.h"
#include "migrate-settings.h"
#include "migrate-state.h"
#include "migrate-run.h"
#include "migrate-report.h"
#include "migrate-sieve.h"
#include "migrate-conn-slots.h"
#include "migrate-build-id.h"

#include <dlfcn.h>

/* The doveadm layer: parse options, call the engine in plugin/, print.
   No migration rule lives here. */

const char *doveadm_migrate_plugin_version = DOVECOT_ABI_VERSION;

void doveadm_migrate_plugin_init(struct module *module);
void doveadm_migrate_plugin_deinit(void);
void doveadm_migrate_plugin_preinit(void);

struct migrate_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	struct migrate_run_options opts;
	const char *reason_filter;
	const char *csv_path;
	/* the command's own init */
	void (*init)(void);
	/* the table's columns: added before the first row or at success
	   (doveadm prints them even without a row, so a command that fails
	   first would print an empty table) */
	void (*headers)(void);
};

static void cmd_migrate_headers(struct migrate_cmd_context *ctx)
{
	if (ctx->headers != NULL && !migrate_report_headers_added()) {
		migrate_doveadm_print_header_allow();
		ctx->headers();
	}
}

/* Options, by their long names in migrate_commands[]: one reader for
   every command (a command's absent options stay unset) */
static void cmd_migrate_read_options(struct migrate_cmd_context *ctx)
{
	const struct doveadm_cmd_context *cctx = ctx->ctx.cctx;
	pool_t pool = ctx->ctx.pool;
	const char *value;

	(void)doveadm_cmd_param_bool(cctx, "delete", &ctx->opts.delete);
	(void)doveadm_cmd_param_bool(cctx, "identities",
				     &ctx->opts.identities);
	if (doveadm_cmd_param_str(cctx, "folder", &value))
		ctx->opts.folder = p_strdup(pool, value);
	if (doveadm_cmd_param_str(cctx, "reason", &value))
		ctx->reason_filter = p_strdup(pool, value);
	if (doveadm_cmd_param_str(cctx, "csv", &value))
		ctx->csv_path = p_strdup(pool, value);
}

static void cmd_migrate_init(struct doveadm_mail_cmd_context *_ctx
			     MIGRATE_DOVEADM_INIT_ARGS)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	const char *socket_path;

	cmd_migrate_read_options(ctx);
	migrate_report_headers_begin();
	/* proxied (-S, doveadm_worker_count): the server's rows are printed
	   here without our run(), so the columns can only be added now */
	if (doveadm_cmd_param_str(ctx->ctx.cctx, "socket-path", &socket_path) ||
	    doveadm_settings->doveadm_worker_count > 0)
		cmd_migrate_headers(ctx);
	if (ctx->init != NULL)
		ctx->init();
}

static void cmd_migrate_failed(struct doveadm_mail_cmd_context *ctx,
			       struct mail_user *user,
			       enum migrate_error code, const char *error)
{
	e_error(user->event, "migrate: %s", error);
	ctx->exit_code = migrate_exit_code_merge(ctx->exit_code, code);
}

static const char *cmd_migrate_folder_note(const struct migrate_folder *folder)
{
	if (folder->error != NULL)
		return folder->error;
	if (folder->dest.skip && folder->dest.reason != NULL)
		return folder->dest.reason;
	if (folder->dest_previous != NULL) {
		return t_strdup_printf("destination changed: the copy in %s "
				       "is left in place",
				       folder->dest_previous);
	}
	return "";
}

static void cmd_migrate_print_folders(struct migrate_cmd_context *ctx,
				      struct migrate_run *run)
{
	struct migrate_folder *folder;

	array_foreach_elem(&run->src.folders, folder) {
		if (folder->result == MIGRATE_FOLDER_RESULT_NONE)
			continue;
		cmd_migrate_headers(ctx);
		doveadm_print(folder->src_name);
		doveadm_print(folder->dest.vname == NULL ? "" :
			      folder->dest.vname);
		doveadm_print(migrate_folder_result_to_str(folder->result));
		doveadm_print_num(folder->src_messages);
		doveadm_print_num(folder->counters.imported);
		doveadm_print_num(folder->counters.existing);
		doveadm_print_num(folder->counters.failed);
		doveadm_print_num(folder->counters.deferred);
		doveadm_print_num(folder->counters.flags_updated);
		doveadm_print_num(folder->counters.expunged);
		doveadm_print_num(folder->counters.bytes);
		doveadm_print(folder->uids_preserved == NULL ? "" :
			      folder->uids_preserved);
		doveadm_print(cmd_migrate_folder_note(folder));
	}
}

/* migrate_sieve: a row a script ("sieve:<name>"), or one row "sieve" when
   the Sieve pass failed as a whole. cells() prints the columns between
   dest and note. */
static void
cmd_migrate_print_sieve(struct migrate_cmd_context *ctx,
			struct migrate_run *run,
			void (*cells)(const char *result, uoff_t size))
{
	const struct migrate_sieve_script *script;

	if (run->sieve == NULL)
		return;
	array_foreach(&run->sieve->scripts, script) {
		if (script->result == MIGRATE_SIEVE_RESULT_NONE)
			continue;
		cmd_migrate_headers(ctx);
		doveadm_print(t_strconcat("sieve:", script->src_name, NULL));
		doveadm_print(script->dest_name);
		cells(migrate_sieve_result_to_str(script->result),
		      script->size);
		doveadm_print(migrate_sieve_script_note(script));
	}
	if (run->sieve->error != NULL) {
		cmd_migrate_headers(ctx);
		doveadm_print("sieve");
		doveadm_print("");
		cells(migrate_sieve_result_to_str(MIGRATE_SIEVE_RESULT_FAILED),
		      0);
		doveadm_print(run->sieve->error);
	}
}

static void cmd_migrate_run_sieve_cells(const char *result, uoff_t size)
{
	unsigned int i;

	doveadm_print(result);
	/* source .. expunged */
	for (i = 0; i < 7; i++)
		doveadm_print("");
	doveadm_print_num(size);
	doveadm_print("");
}

static void cmd_migrate_plan_sieve_cells(const char *result, uoff_t size)
{
	doveadm_print("");
	doveadm_print("");
	doveadm_print_num(size);
	doveadm_print(result);
}

static int cmd_migrate_run_run(struct doveadm_mail_cmd_context *_ctx,
			       struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	struct migrate_run *run;
	failure_callback_t *client_info;
	int ret;

	/* a 2.3 doveadm client of doveadm-servers hangs on concurrent
	   tables: there, info lines to the server's log and no table
	   (migrate-compat.h) */
	client_info = migrate_compat_log_info_local_begin();
	/* waits run doveadm's ioloop: lib-storage adds its timeouts there */
	run = migrate_run_init(user, &ctx->opts);
	ret = migrate_run_execute(run);
	migrate_compat_log_info_local_end(client_info);
	if (client_info == NULL) {
		cmd_migrate_print_folders(ctx, run);
		cmd_migrate_print_sieve(ctx, run, cmd_migrate_run_sieve_cells);
	}
	if (ret < 0)
		cmd_migrate_failed(_ctx, user, run->error_code, run->error);
	else
		cmd_migrate_headers(ctx);
	migrate_run_deinit(&run);
	return ret;
}

/* doveadm still runs as root here: the slot directory of
   migrate_max_connections must exist before runs drop to mail uids */
static void cmd_migrate_prepare_slots(void)
{
	migrate_conn_slots_prepare(
		migrate_settings_default_slots_dir(doveadm_settings->base_dir));
}

static int
cmd_migrate_run_prerun(struct doveadm_mail_cmd_context *_ctx,
		       struct mail_storage_service_user *service_user,
		       const char **error_r)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);

	return migrate_settings_prerun(service_user, &ctx->opts.batch_fsync,
				       error_r);
}

static void cmd_migrate_run_headers(void)
{
	doveadm_print_header_simple("folder");
	doveadm_print_header_simple("dest");
	doveadm_print_header_simple("result");
	doveadm_print_header_simple("source");
	doveadm_print_header_simple("imported");
	doveadm_print_header_simple("existing");
	doveadm_print_header_simple("failed");
	doveadm_print_header_simple("deferred");
	doveadm_print_header_simple("flags");
	doveadm_print_header_simple("expunged");
	doveadm_print_header_simple("bytes");
	doveadm_print_header_simple("uids");
	doveadm_print_header_simple("note");
}

/* -D names the build that runs: which file, and the id generated when it
   was built (the test harness checks it is the tree's own build). */
static void cmd_migrate_debug_build(void)
{
	Dl_info info;
	const char *path = "unknown";

	if (dladdr((const void *)cmd_migrate_debug_build, &info) != 0 &&
	    info.dli_fname != NULL)
		path = info.dli_fname;
	i_debug("migrate: plugin build "MIGRATE_BUILD_ID" loaded from %s", path);
}

static struct migrate_cmd_context *cmd_migrate_alloc(void)
{
	struct migrate_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct migrate_cmd_context);
	if (doveadm_debug)
		cmd_migrate_debug_build();
	ctx->ctx.v.init = cmd_migrate_init;
	MIGRATE_DOVEADM_ACCEPT_OPTIONS(&ctx->ctx);
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return ctx;
}

static struct doveadm_mail_cmd_context *cmd_migrate_run_alloc(void)
{
	struct migrate_cmd_context *ctx = cmd_migrate_alloc();

	ctx->opts.mode = MIGRATE_RUN_MODE_IMPORT;
	ctx->init = cmd_migrate_prepare_slots;
	ctx->headers = cmd_migrate_run_headers;
	ctx->ctx.v.prerun = cmd_migrate_run_prerun;
	ctx->ctx.v.run = cmd_migrate_run_run;
	return &ctx->ctx;
}

/* plan */

static void cmd_migrate_plan_headers(void)
{
	doveadm_print_header_simple("folder");
	doveadm_print_header_simple("dest");
	doveadm_print_header_simple("special_use");
	doveadm_print_header_simple("messages");
	doveadm_print_header_simple("size");
	doveadm_print_header_simple("action");
	doveadm_print_header_simple("reason");
}

static int cmd_migrate_plan_run(struct doveadm_mail_cmd_context *_ctx,
				struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	struct migrate_folder *folder;
	struct migrate_run *run;
	int ret;

	run = migrate_run_init(user, &ctx->opts);
	ret = migrate_run_execute(run);
	if (ret == 0) {
		cmd_migrate_headers(ctx);
		array_foreach_elem(&run->src.folders, folder) {
			doveadm_print(folder->src_name);
			doveadm_print(folder->dest.vname == NULL ? "" :
				      folder->dest.vname);
			doveadm_print(folder->dest.special_use == 0 ? "" :
				migrate_special_use_name(
					folder->dest.special_use));
			if (folder->have_status) {
				doveadm_print_num(folder->status_messages);
				doveadm_print_num(folder->status_size);
			} else {
				doveadm_print("");
				doveadm_print("");
			}
			doveadm_print(folder->dest.skip ? "skip" :
				      (folder->dest.gmail_all_mail ?
				       "import-unlabelled" : "import"));
			doveadm_print(folder->dest.reason == NULL ? "" :
				      folder->dest.reason);
		}
		cmd_migrate_print_sieve(ctx, run, cmd_migrate_plan_sieve_cells);
	} else {
		cmd_migrate_failed(_ctx, user, run->error_code, run->error);
	}
	migrate_run_deinit(&run);
	return ret;
}

static struct doveadm_mail_cmd_context *cmd_migrate_plan_alloc(void)
{
	struct migrate_cmd_context *ctx = cmd_migrate_alloc();

	ctx->opts.mode = MIGRATE_RUN_MODE_PLAN;
	ctx->init = cmd_migrate_prepare_slots;
	ctx->headers = cmd_migrate_plan_headers;
	ctx->ctx.v.run = cmd_migrate_plan_run;
	return &ctx->ctx;
}

/* verify */

static void cmd_migrate_verify_headers(void)
{
	doveadm_print_header_simple("folder");
	doveadm_print_header_simple("dest");
	doveadm_print_header_simple("source");
	doveadm_print_header_simple("destination");
	doveadm_print_header_simple("explained");
	doveadm_print_header_simple("labelled");
	doveadm_print_header_simple("unexplained");
	doveadm_print_header_simple("result");
	doveadm_print_header_simple("uid");
	doveadm_print_header_simple("message_id");
	doveadm_print_header_simple("subject");
}

static int cmd_migrate_verify_run(struct doveadm_mail_cmd_context *_ctx,
				  struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	const struct migrate_verify_missing *missing;
	struct migrate_folder *folder;
	struct migrate_run *run;
	uint32_t totals[5] = { 0, 0, 0, 0, 0 };
	int ret;

	run = migrate_run_init(user, &ctx->opts);
	ret = migrate_run_execute(run);
	array_foreach_elem(&run->src.folders, folder) {
		if (folder->result == MIGRATE_FOLDER_RESULT_NONE ||
		    folder->dest.skip)
			continue;
		cmd_migrate_headers(ctx);
		doveadm_print(folder->src_name);
		doveadm_print(folder->dest.vname);
		doveadm_print_num(folder->src_messages);
		doveadm_print_num(folder->dst_messages);
		doveadm_print_num(folder->counters.deferred);
		doveadm_print_num(folder->counters.existing);
		doveadm_print_num(folder->unexplained);
		doveadm_print(migrate_folder_result_to_str(folder->result));
		doveadm_print("");
		doveadm_print("");
		doveadm_print("");
		totals[0] += folder->src_messages;
		totals[1] += folder->dst_messages;
		totals[2] += folder->counters.deferred;
		totals[3] += folder->counters.existing;
		totals[4] += folder->unexplained;
		if (!array_is_created(&folder->missing))
			continue;
		array_foreach(&folder->missing, missing) {
			doveadm_print(folder->src_name);
			doveadm_print(folder->dest.vname);
			doveadm_print("");
			doveadm_print("");
			doveadm_print("");
			doveadm_print("");
			doveadm_print("");
			doveadm_print("unexplained");
			doveadm_print_num(missing->uid);
			doveadm_print(missing->message_id == NULL ? "" :
				      missing->message_id);
			doveadm_print(missing->subject == NULL ? "" :
				      missing->subject);
		}
	}
	if (run->error_code == MIGRATE_ERROR_NONE ||
	    run->error_code == MIGRATE_ERROR_ITEMS) {
		cmd_migrate_headers(ctx);
		doveadm_print("*");
		doveadm_print("");
		doveadm_print_num(totals[0]);
		doveadm_print_num(totals[1]);
		doveadm_print_num(totals[2]);
		doveadm_print_num(totals[3]);
		doveadm_print_num(totals[4]);
		doveadm_print(totals[4] == 0 ? "ok" : "missing");
		doveadm_print("");
		doveadm_print("");
		doveadm_print("");
	}
	if (ret < 0)
		cmd_migrate_failed(_ctx, user, run->error_code, run->error);
	migrate_run_deinit(&run);
	return ret;
}

static struct doveadm_mail_cmd_context *cmd_migrate_verify_alloc(void)
{
	struct migrate_cmd_context *ctx = cmd_migrate_alloc();

	ctx->opts.mode = MIGRATE_RUN_MODE_VERIFY;
	ctx->init = cmd_migrate_prepare_slots;
	ctx->headers = cmd_migrate_verify_headers;
	ctx->ctx.v.run = cmd_migrate_verify_run;
	return &ctx->ctx;
}

/* status, report, reset: read or clear the state only */

static int cmd_migrate_open_state(struct doveadm_mail_cmd_context *ctx,
				  struct mail_user *user,
				  struct migrate_state **state_r)
{
	struct migrate_settings *set;
	const char *error;

	if (migrate_settings_read_state(user, ctx->pool, &set, &error) < 0 ||
	    migrate_state_open(user, set->state_dict, state_r, &error) < 0) {
		cmd_migrate_failed(ctx, user, MIGRATE_ERROR_CONFIG, error);
		return -1;
	}
	return 0;
}

static int cmd_migrate_status_run(struct doveadm_mail_cmd_context *ctx,
				  struct mail_user *user)
{
	struct migrate_state *state;
	const char *error;
	int ret;

	if (cmd_migrate_open_state(ctx, user, &state) < 0)
		return -1;
	ret = migrate_report_status(state, &error);
	if (ret < 0)
		cmd_migrate_failed(ctx, user, MIGRATE_ERROR_TEMP, error);
	migrate_state_close(&state);
	return ret;
}

static struct doveadm_mail_cmd_context *cmd_migrate_status_alloc(void)
{
	struct migrate_cmd_context *ctx = cmd_migrate_alloc();

	ctx->headers = migrate_report_status_headers;
	ctx->ctx.v.run = cmd_migrate_status_run;
	return &ctx->ctx;
}

static int cmd_migrate_report_run(struct doveadm_mail_cmd_context *_ctx,
				  struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	struct migrate_report_filter filter;
	struct migrate_state *state;
	enum migrate_error code;
	const char *error;
	int ret;

	if (cmd_migrate_open_state(_ctx, user, &state) < 0)
		return -1;
	i_zero(&filter);
	filter.folder = ctx->opts.folder;
	filter.reason = ctx->reason_filter;
	filter.csv_path = ctx->csv_path;
	ret = migrate_report_items(state, &filter, &code, &error);
	if (ret < 0)
		cmd_migrate_failed(_ctx, user, code, error);
	else
		cmd_migrate_headers(ctx);
	migrate_state_close(&state);
	return ret;
}

static struct doveadm_mail_cmd_context *cmd_migrate_report_alloc(void)
{
	struct migrate_cmd_context *ctx = cmd_migrate_alloc();

	ctx->headers = migrate_report_items_headers;
	ctx->ctx.v.run = cmd_migrate_report_run;
	return &ctx->ctx;
}

static int cmd_migrate_reset_run(struct doveadm_mail_cmd_context *_ctx,
				 struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	struct migrate_state *state;
	const char *error;
	int ret;

	if (cmd_migrate_open_state(_ctx, user, &state) < 0)
		return -1;
	ret = migrate_state_reset(state, ctx->opts.folder, &error);
	if (ret <= 0) {
		cmd_migrate_failed(_ctx, user, ret < 0 ? MIGRATE_ERROR_TEMP :
				   MIGRATE_ERROR_NOTFOUND, error);
		ret = -1;
	} else {
		ret = 0;
	}
	migrate_state_close(&state);
	return ret;
}

static struct doveadm_mail_cmd_context *cmd_migrate_reset_alloc(void)
{
	struct migrate_cmd_context *ctx = cmd_migrate_alloc();

	ctx->ctx.v.run = cmd_migrate_reset_run;
	return &ctx->ctx;
}

/* doveadm's prefix leaves out -F, which every mail command takes */
#define MIGRATE_USAGE_PREFIX \
	DOVEADM_CMD_MAIL_USAGE_PREFIX "[-F <user file>] "

static struct doveadm_cmd_ver2 migrate_commands[] = {
{
	.name = "migrate run",
	.mail_cmd = cmd_migrate_run_alloc,
	.usage = MIGRATE_USAGE_PREFIX"[-d] [-m <folder>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('d', "delete", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('m', "folder", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
},
{
	.name = "migrate plan",
	.mail_cmd = cmd_migrate_plan_alloc,
	.usage = MIGRATE_USAGE_PREFIX"[-m <folder>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('m', "folder", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
},
{
	.name = "migrate verify",
	.mail_cmd = cmd_migrate_verify_alloc,
	.usage = MIGRATE_USAGE_PREFIX"[-I] [-m <folder>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('I', "identities", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('m', "folder", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
},
{
	.name = "migrate status",
	.mail_cmd = cmd_migrate_status_alloc,
	.usage = MIGRATE_USAGE_PREFIX,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
},
{
	.name = "migrate report",
	.mail_cmd = cmd_migrate_report_alloc,
	.usage = MIGRATE_USAGE_PREFIX
		"[-r <reason>] [-m <folder>] [-c <csv file>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('r', "reason", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('m', "folder", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('c', "csv", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
},
{
	.name = "migrate reset",
	.mail_cmd = cmd_migrate_reset_alloc,
	.usage = MIGRATE_USAGE_PREFIX"[-m <folder>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('m', "folder", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
},
};

static bool migrate_commands_registered = FALSE;

static void doveadm_migrate_register(void)
{
	unsigned int i;

	if (migrate_commands_registered)
		return;
	migrate_commands_registered = TRUE;
	for (i = 0; i < N_ELEMENTS(migrate_commands); i++)
		doveadm_cmd_register_ver2(&migrate_commands[i]);
}

/* Called at dlopen(): lets doveadm find the commands when the plugin is
   loaded through mail_plugins from a build tree. */
void doveadm_migrate_plugin_preinit(void)
{
	Dl_info info;

	/* Loaded through mail_plugins, the plugin is dlclose()d by every
	   mail_storage_service_deinit(): a doveadm server does that after
	   each command, and its next command lookup would read our
	   unmapped migrate_commands[] (SIGSEGV with doveadm_worker_count,
	   -S or the HTTP API). Keep the module mapped for good. */
	if (dladdr((const void *)doveadm_migrate_plugin_preinit, &info) != 0 &&
	    info.dli_fname != NULL)
		(void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
	doveadm_migrate_register();
}

void doveadm_migrate_plugin_init(struct module *module ATTR_UNUSED)
{
	doveadm_migrate_register();
}

void doveadm_migrate_plugin_deinit(void)
{
}
