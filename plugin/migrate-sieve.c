/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hash.h"
#include "sha1.h"
#include "hex-binary.h"
#include "strescape.h"
#include "ioloop.h"
#include "unichar.h"
#include "imap-utf7.h"
#include "migrate-settings.h"
#include "migrate-state.h"
#include "migrate-source-list.h"
#include "migrate-importer.h"
#include "migrate-pacing.h"
#include "migrate-managesieve.h"
#include "migrate-sieve-compat.h"
#include "migrate-sieve.h"

/* Longer names are cut: Pigeonhole accepts 256 characters, but its file
   storage adds ".sieve" and a file system takes 255 bytes a name */
#define MIGRATE_SIEVE_NAME_MAX 200
/* reconnect backoff for a lost ManageSieve connection */
#define MIGRATE_SIEVE_BACKOFF_MSECS 1000

struct migrate_sieve_pass {
	const struct migrate_sieve_ctx *ctx;
	struct migrate_sieve *sieve;
	struct migrate_sieve_store *store;
	struct migrate_managesieve *ms;
	pool_t pool;
	/* from the state: "<source digest> <stored digest>\t<name>" lines
	   (name tab-escaped) */
	const char *const *stored_sources;
};

static const char *const
migrate_sieve_result_names[MIGRATE_SIEVE_RESULT_COUNT] = {
	NULL, "copied", "updated", "unchanged", "kept", "copy", "update",
	"keep", "failed",
};

const char *migrate_sieve_result_to_str(enum migrate_sieve_result result)
{
	i_assert(result < MIGRATE_SIEVE_RESULT_COUNT);
	return migrate_sieve_result_names[result];
}

/* The Sieve pass failed as a whole (sieve->error_code, sieve->error): the
   first error stays */
static void ATTR_FORMAT(3, 4)
migrate_sieve_fail(struct migrate_sieve_pass *pass, enum migrate_error code,
		   const char *fmt, ...)
{
	va_list args;

	if (pass->sieve->error != NULL)
		return;
	va_start(args, fmt);
	pass->sieve->error_code = code;
	pass->sieve->error = p_strdup_vprintf(pass->pool, fmt, args);
	va_end(args);
}

static const char *migrate_sieve_digest(const string_t *text)
{
	unsigned char digest[SHA1_RESULTLEN];

	sha1_get_digest(str_data(text), str_len(text), digest);
	return binary_to_hex(digest, sizeof(digest));
}

/* The digests a run last stored the script dest_name with */
static void
migrate_sieve_stored_digests(struct migrate_sieve_pass *pass,
			     struct migrate_sieve_script *script)
{
	const char *const *line, *p, *const *digests;

	if (pass->stored_sources == NULL)
		return;
	for (line = pass->stored_sources; *line != NULL; line++) {
		p = strchr(*line, '\t');
		if (p == NULL ||
		    strcmp(t_str_tabunescape(p + 1), script->dest_name) != 0)
			continue;
		digests = t_strsplit(t_strdup_until(*line, p), " ");
		if (str_array_length(digests) != 2)
			return;
		script->stored_src_digest = p_strdup(pass->pool, digests[0]);
		script->stored_dest_digest = p_strdup(pass->pool, digests[1]);
		return;
	}
}

static void migrate_sieve_load_sources(struct migrate_sieve_pass *pass)
{
	const char *value, *error;

	if (pass->ctx->state == NULL ||
	    migrate_state_sieve_sources_get(pass->ctx->state, pass->pool,
					    &value, &error) <= 0)
		return;
	pass->stored_sources = (const char *const *)
		p_strsplit(pass->pool, value, "\n");
}

/* Remember what each script's source text was when it was stored, for
   the next run to tell an edit at the destination from one at the
   source */
static void migrate_sieve_save_sources(struct migrate_sieve_pass *pass)
{
	const struct migrate_sieve_script *script;
	const char *src_digest, *dest_digest, *error;
	string_t *str = t_str_new(256);

	array_foreach(&pass->sieve->scripts, script) {
		if (script->result == MIGRATE_SIEVE_RESULT_NONE ||
		    script->error != NULL ||
		    script->result == MIGRATE_SIEVE_RESULT_KEPT) {
			src_digest = script->stored_src_digest;
			dest_digest = script->stored_dest_digest;
		} else {
			src_digest = script->src_digest;
			dest_digest = script->dest_digest;
		}
		if (src_digest == NULL || dest_digest == NULL)
			continue;
		if (str_len(str) > 0)
			str_append_c(str, '\n');
		str_printfa(str, "%s %s\t%s", src_digest, dest_digest,
			    str_tabescape(script->dest_name));
	}
	if (migrate_state_sieve_sources_set(pass->ctx->state, str_c(str),
					    &error) < 0) {
		e_error(pass->ctx->event, "Saving the Sieve scripts' state "
			"failed: %s", error);
	}
}

/* Map a mailbox name of a script the way the mail was mapped: the run's
   own folder (by its source name) first, else the folder map */
static enum migrate_sieve_map_result
migrate_sieve_map_name(const char *name, void *context,
		       const char **new_name_r, const char **reason_r)
{
	struct migrate_sieve_pass *pass = context;
	const struct migrate_sieve_ctx *ctx = pass->ctx;
	struct migrate_folder *folder = NULL;
	struct migrate_folder_src src;
	struct migrate_folder_dest dest;
	string_t *raw = t_str_new(64);

	if (imap_utf8_to_utf7(name, raw) < 0) {
		*reason_r = "not valid UTF-8";
		return MIGRATE_SIEVE_MAP_SKIPPED;
	}
	folder = migrate_source_list_find(ctx->src, str_c(raw));
	if (folder != NULL) {
		dest = folder->dest;
	} else {
		i_zero(&src);
		src.name = str_c(raw);
		src.delimiter = ctx->src->delimiter;
		src.ns_prefix = ctx->src->ns_prefix;
		migrate_folder_map_lookup(ctx->map, &src,
					  pool_datastack_create(), &dest);
	}
	if (dest.skip || dest.vname == NULL) {
		*reason_r = t_strdup_printf("the folder map skips it%s%s",
			dest.reason == NULL ? "" : ": ",
			dest.reason == NULL ? "" : dest.reason);
		return MIGRATE_SIEVE_MAP_SKIPPED;
	}
	*new_name_r = dest.vname;
	return MIGRATE_SIEVE_MAP_CHANGED;
}

/* A script name the destination accepts: unsafe characters become '_',
   the length is cut (on a character boundary) */
static const char *
migrate_sieve_dest_name(struct migrate_sieve_pass *pass, const char *name,
			const char **reason_r)
{
	string_t *str;
	const char *p;

	*reason_r = NULL;
	if (pass->store == NULL ||
	    (strlen(name) <= MIGRATE_SIEVE_NAME_MAX &&
	     migrate_sieve_store_name_is_valid(pass->store, name)))
		return name;
	str = t_str_new(strlen(name) + 1);
	if (!uni_utf8_get_valid_data((const unsigned char *)name,
				     strlen(name), str)) {
		name = t_strdup(str_c(str));
		str_truncate(str, 0);
	}
	for (p = name; *p != '\0'; p++) {
		unsigned char c = *p;

		str_append_c(str, c < 0x20 || c == 0x7f || c == '/' ?
			     '_' : c);
	}
	if (str_len(str) > MIGRATE_SIEVE_NAME_MAX) {
		size_t len = MIGRATE_SIEVE_NAME_MAX;

		while (len > 0 && (str_data(str)[len] & 0xc0) == 0x80)
			len--;
		str_truncate(str, len);
	}
	if (str_len(str) == 0 ||
	    !migrate_sieve_store_name_is_valid(pass->store, str_c(str))) {
		str_truncate(str, 0);
		str_append(str, "migrated-script");
	}
	*reason_r = "renamed: the name is not valid at the destination";
	return str_c(str);
}

static struct migrate_sieve_script *
migrate_sieve_script_find(struct migrate_sieve *sieve, const char *src_name)
{
	struct migrate_sieve_script *script;

	array_foreach_modifiable(&sieve->scripts, script) {
		if (strcmp(script->src_name, src_name) == 0)
			return script;
	}
	return NULL;
}

/* Fetch, rewrite and (in a run) store one script */
static int
migrate_sieve_script(struct migrate_sieve_pass *pass,
		     struct migrate_sieve_script *script,
		     enum migrate_error *error_code_r, const char **error_r)
{
	const struct migrate_sieve_ctx *ctx = pass->ctx;
	string_t *content = t_str_new(4096), *rewritten, *existing;
	const char *error, *compile_error;
	int ret;

	if (migrate_managesieve_get(pass->ms, script->src_name, content,
				    error_code_r, error_r) < 0)
		return -1;
	script->size = str_len(content);
	script->src_digest = p_strdup(pass->pool,
				      migrate_sieve_digest(content));
	rewritten = t_str_new(str_len(content) + 64);
	if (migrate_sieve_rewrite(str_data(content), str_len(content),
				  migrate_sieve_map_name, pass, pass->pool,
				  rewritten, &script->rewrites, &error) < 0)
		script->rewrite_error = p_strdup(pass->pool, error);
	script->dest_digest = p_strdup(pass->pool,
				       migrate_sieve_digest(rewritten));

	ret = 0;
	if (pass->store != NULL) {
		existing = t_str_new(str_len(rewritten) + 1);
		ret = migrate_sieve_store_get(pass->store, script->dest_name,
					      existing, &error);
		if (ret < 0) {
			script->error = p_strdup(pass->pool, error);
			script->result = MIGRATE_SIEVE_RESULT_FAILED;
			return 0;
		}
		if (ret > 0 && !str_equals(existing, rewritten) &&
		    script->stored_src_digest != NULL &&
		    strcmp(script->stored_src_digest, script->src_digest) == 0 &&
		    strcmp(script->stored_dest_digest,
			   migrate_sieve_digest(existing)) != 0) {
			/* edited at the destination after a run stored it,
			   while the source's stayed as it was then: the
			   user's edit wins (a source change would win) */
			script->result =
				ctx->import ?
				MIGRATE_SIEVE_RESULT_KEPT :
				MIGRATE_SIEVE_RESULT_KEEP;
			return 0;
		}
		if (ret > 0 && str_equals(existing, rewritten)) {
			script->result = MIGRATE_SIEVE_RESULT_UNCHANGED;
			if (!ctx->import || !script->src_active)
				return 0;
			/* the active one: it is activated only if it
			   compiles */
			if (migrate_sieve_store_compile(pass->store,
					script->dest_name, &compile_error,
					&error) < 0) {
				script->error = p_strdup(pass->pool, error);
				script->result = MIGRATE_SIEVE_RESULT_FAILED;
			} else {
				script->compile_error =
					p_strdup(pass->pool, compile_error);
			}
			return 0;
		}
	}
	if (!ctx->import) {
		script->result = ret > 0 ? MIGRATE_SIEVE_RESULT_UPDATE :
			MIGRATE_SIEVE_RESULT_COPY;
		return 0;
	}
	if (migrate_sieve_store_save(pass->store, script->dest_name,
				     str_data(rewritten), str_len(rewritten),
				     &compile_error, &error) < 0) {
		script->error = p_strdup_printf(pass->pool,
			"storing it at the destination failed: %s", error);
		script->result = MIGRATE_SIEVE_RESULT_FAILED;
		return 0;
	}
	script->compile_error = p_strdup(pass->pool, compile_error);
	script->result = ret > 0 ? MIGRATE_SIEVE_RESULT_UPDATED :
		MIGRATE_SIEVE_RESULT_COPIED;
	return 0;
}

/* Make the destination's active script the source's (when it compiles) */
static void migrate_sieve_activate(struct migrate_sieve_pass *pass)
{
	struct migrate_sieve_script *script, *active = NULL;
	const char *dest_active, *error;

	if (migrate_sieve_store_get_active(pass->store, &dest_active,
					   &error) < 0) {
		migrate_sieve_fail(pass, MIGRATE_ERROR_DESTINATION,
			"Finding the active Sieve script at the destination "
			"failed: %s", error);
		return;
	}
	array_foreach_modifiable(&pass->sieve->scripts, script) {
		if (script->src_active)
			active = script;
		script->dest_active = dest_active != NULL &&
			strcmp(dest_active, script->dest_name) == 0;
	}
	if (active != NULL && active->error == NULL &&
	    active->compile_error == NULL) {
		if (active->dest_active)
			return;
		if (migrate_sieve_store_activate(pass->store,
						 active->dest_name,
						 &error) < 0) {
			active->error = p_strdup_printf(pass->pool,
				"activating it failed: %s", error);
			active->result = MIGRATE_SIEVE_RESULT_FAILED;
			return;
		}
		array_foreach_modifiable(&pass->sieve->scripts, script)
			script->dest_active = script == active;
		return;
	}
	/* nothing active at the source, or its active script doesn't
	   compile here: no migrated script stays active (a script of the
	   destination's own is left alone) */
	array_foreach_modifiable(&pass->sieve->scripts, script) {
		if (!script->dest_active)
			continue;
		if (migrate_sieve_store_deactivate(pass->store, &error) < 0) {
			script->error = p_strdup_printf(pass->pool,
				"deactivating it failed: %s", error);
			script->result = MIGRATE_SIEVE_RESULT_FAILED;
		} else {
			script->dest_active = FALSE;
		}
	}
}

/* One connection's worth: list, then every script not done yet */
static int migrate_sieve_pass(struct migrate_sieve_pass *pass,
			      enum migrate_error *error_code_r,
			      const char **error_r)
{
	const struct migrate_sieve_ctx *ctx = pass->ctx;
	ARRAY_TYPE(migrate_managesieve_script) listed;
	const struct migrate_managesieve_script *ls;
	struct migrate_sieve_script *script;
	const char *reason;
	int ret = 0;

	if (migrate_managesieve_connect(ctx->set, ctx->user, ctx->event,
					&pass->ms, error_code_r, error_r) < 0)
		return -1;
	t_array_init(&listed, 16);
	if (migrate_managesieve_list(pass->ms, pass->pool, &listed,
				     error_code_r, error_r) < 0)
		return -1;
	array_foreach(&listed, ls) {
		script = migrate_sieve_script_find(pass->sieve, ls->name);
		if (script == NULL) {
			script = array_append_space(&pass->sieve->scripts);
			script->src_name = ls->name;
			script->dest_name = p_strdup(pass->pool,
				migrate_sieve_dest_name(pass, ls->name,
							&reason));
			script->rename_reason = reason;
			migrate_sieve_stored_digests(pass, script);
		}
		script->src_active = ls->active;
	}
	array_foreach_modifiable(&pass->sieve->scripts, script) {
		if (script->result != MIGRATE_SIEVE_RESULT_NONE)
			continue;
		p_array_init(&script->rewrites, pass->pool, 4);
		T_BEGIN {
			ret = migrate_sieve_script(pass, script, error_code_r,
						   error_r);
			if (ret < 0)
				*error_r = p_strdup(pass->pool, *error_r);
		} T_END;
		if (ret < 0)
			return -1;
	}
	return 0;
}

/* Write what happened to each script to the state's Sieve item log,
   keeping first_seen and counting attempts */
static void migrate_sieve_save_items(struct migrate_sieve_pass *pass)
{
	const struct migrate_sieve_ctx *ctx = pass->ctx;
	ARRAY_TYPE(migrate_item) old_items, items;
	const struct migrate_sieve_script *script;
	const struct migrate_item *old;
	struct migrate_item *item;
	const char *error;
	unsigned int uid = 0;

	if (migrate_state_sieve_get(ctx->state, pass->pool, &old_items,
				    &error) < 0)
		array_clear(&old_items);
	p_array_init(&items, pass->pool, 8);
	array_foreach(&pass->sieve->scripts, script) {
		item = array_append_space(&items);
		item->uid = ++uid;
		item->class = script->error != NULL ? MIGRATE_ITEM_SIEVE_FAILED :
			(script->compile_error != NULL ?
			 MIGRATE_ITEM_SIEVE_NOT_COMPILING :
			 MIGRATE_ITEM_SIEVE_COPIED);
		item->message_id = script->src_name;
		item->subject = script->dest_name;
		item->size = script->size;
		item->reason = t_strdup_printf("%s%s%s",
			migrate_sieve_result_to_str(script->result),
			*migrate_sieve_script_note(script) == '\0' ? "" : "; ",
			migrate_sieve_script_note(script));
		item->first_seen = item->last_seen = ioloop_time;
		item->attempts = 1;
		item->resolved = item->class == MIGRATE_ITEM_SIEVE_COPIED;
		array_foreach(&old_items, old) {
			if (old->message_id == NULL ||
			    strcmp(old->message_id, script->src_name) != 0)
				continue;
			item->first_seen = old->first_seen;
			item->attempts = old->attempts + 1;
		}
		ctx->counters->items_by_class[item->class]++;
	}
	if (migrate_state_sieve_set(ctx->state, &items, &error) < 0) {
		e_error(ctx->event, "Saving the Sieve item log failed: %s",
			error);
	}
}

static int migrate_sieve_execute_pass(struct migrate_sieve_pass *pass)
{
	const struct migrate_sieve_ctx *ctx = pass->ctx;
	struct migrate_sieve *sieve = pass->sieve;
	const char *error;
	enum migrate_error code;
	unsigned int attempt;
	int ret;

	/* the destination first: no use reading scripts that can't be
	   stored */
	if (migrate_sieve_store_open(ctx->user, &pass->store, &error) < 0) {
		if (ctx->import) {
			migrate_sieve_fail(pass, MIGRATE_ERROR_CONFIG,
				"Sieve scripts can't be stored (migrate_sieve"
				"=yes): %s", error);
			return -1;
		}
		e_warning(ctx->event, "migrate_sieve=yes, but %s", error);
		pass->store = NULL;
	}
	migrate_sieve_load_sources(pass);
	for (attempt = 0;; attempt++) {
		ret = migrate_sieve_pass(pass, &code, &error);
		migrate_managesieve_close(&pass->ms);
		if (ret == 0)
			break;
		/* a lost connection is retried like the IMAP side's, a
		   refused login or a bad setting isn't */
		if (code != MIGRATE_ERROR_TEMP ||
		    attempt >= ctx->set->reconnect_max) {
			migrate_sieve_fail(pass, code, "Sieve scripts: %s",
					   error);
			return -1;
		}
		e_warning(ctx->event, "Sieve scripts: %s - reconnecting",
			  error);
		ctx->counters->reconnects++;
		migrate_pacing_sleep(ctx->pacing, MIGRATE_SIEVE_BACKOFF_MSECS <<
				     I_MIN(attempt, 5));
	}
	if (pass->store != NULL && ctx->import)
		migrate_sieve_activate(pass);
	return sieve->error != NULL ? -1 : 0;
}

int migrate_sieve_execute(const struct migrate_sieve_ctx *ctx,
			  struct migrate_sieve **sieve_r)
{
	struct migrate_sieve_pass pass;
	struct migrate_sieve *sieve;
	struct migrate_sieve_script *script;
	int ret;

	sieve = p_new(ctx->pool, struct migrate_sieve, 1);
	p_array_init(&sieve->scripts, ctx->pool, 8);
	*sieve_r = sieve;
	i_zero(&pass);
	pass.ctx = ctx;
	pass.sieve = sieve;
	pass.pool = ctx->pool;

	ret = migrate_sieve_execute_pass(&pass);
	array_foreach_modifiable(&sieve->scripts, script) {
		if (script->result == MIGRATE_SIEVE_RESULT_NONE)
			continue;
		if (script->error != NULL)
			sieve->failed++;
		else if (script->compile_error != NULL)
			sieve->not_compiling++;
		if (script->result == MIGRATE_SIEVE_RESULT_COPIED)
			sieve->copied++;
		else if (script->result == MIGRATE_SIEVE_RESULT_UPDATED)
			sieve->updated++;
		else if (script->result == MIGRATE_SIEVE_RESULT_UNCHANGED)
			sieve->unchanged++;
		else if (script->result == MIGRATE_SIEVE_RESULT_KEPT)
			sieve->kept++;
		if (script->error != NULL) {
			e_error(ctx->event, "Sieve script %s: %s",
				script->src_name, script->error);
		} else if (script->compile_error != NULL && ctx->import) {
			e_warning(ctx->event, "Sieve script %s was stored "
				  "inactive: it doesn't compile at the "
				  "destination: %s", script->dest_name,
				  script->compile_error);
		}
	}
	if (ctx->import && pass.store != NULL && ctx->state != NULL) {
		migrate_sieve_save_items(&pass);
		migrate_sieve_save_sources(&pass);
	}
	migrate_sieve_store_close(&pass.store);
	if (ret == 0 && ctx->import) {
		e_info(ctx->event, "Sieve scripts: %u copied, %u updated, "
		       "%u unchanged, %u kept (changed at the destination), "
		       "%u not compiling, %u failed",
		       sieve->copied, sieve->updated, sieve->unchanged,
		       sieve->kept, sieve->not_compiling, sieve->failed);
	}
	if (ret < 0)
		return -1;
	return sieve->failed > 0 || sieve->not_compiling > 0 ? -1 : 0;
}

const char *migrate_sieve_script_note(const struct migrate_sieve_script *script)
{
	const struct migrate_sieve_rewrite *rw;
	string_t *str = t_str_new(128);

	if (script->src_active)
		str_append(str, "active");
	if (script->result == MIGRATE_SIEVE_RESULT_KEPT ||
	    script->result == MIGRATE_SIEVE_RESULT_KEEP) {
		str_printfa(str, "%schanged at the destination since it was "
			    "copied, the source's is the same: left as it is",
			    str_len(str) > 0 ? "; " : "");
	}
	if (script->rename_reason != NULL) {
		str_printfa(str, "%s%s", str_len(str) > 0 ? "; " : "",
			    script->rename_reason);
	}
	if (array_is_created(&script->rewrites)) {
		array_foreach(&script->rewrites, rw) {
			str_printfa(str, "%s%s \"%s\"", str_len(str) > 0 ?
				    "; " : "", rw->command, rw->old_name);
			if (rw->new_name != NULL)
				str_printfa(str, " -> \"%s\"", rw->new_name);
			else
				str_printfa(str, " left unchanged (%s)",
					    rw->reason);
			str_printfa(str, " (line %u)", rw->line);
		}
	}
	if (script->rewrite_error != NULL) {
		str_printfa(str, "%snot rewritten: %s", str_len(str) > 0 ?
			    "; " : "", script->rewrite_error);
	}
	if (script->compile_error != NULL) {
		str_printfa(str, "%sstored inactive, doesn't compile: %s",
			    str_len(str) > 0 ? "; " : "",
			    script->compile_error);
	}
	if (script->error != NULL) {
		str_printfa(str, "%s%s", str_len(str) > 0 ? "; " : "",
			    script->error);
	}
	return str_c(str);
}
