/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "strescape.h"
#include "hostpid.h"
#include "ioloop.h"
#include "dict.h"
#include "mail-user.h"
#include "migrate-folder-map.h"
#include "migrate-compat.h"
#include "migrate-state.h"

#include <signal.h>
#include <fcntl.h>
#include <unistd.h>

#define MIGRATE_DICT_PREFIX "priv/migrate/"
/* the item log is for humans: cap it so a broken folder can't grow the
   state without bound */
#define MIGRATE_ITEMS_MAX 10000

struct migrate_state {
	struct mail_user *user;
	struct dict *dict;
	/* Dovecot 2.4: the settings of the embedded default dict */
	struct settings_instance *dict_instance;
	const struct dict_op_settings *op_set;
	bool locked;
};

/* One row a class, in enum migrate_item_class order */
static const struct migrate_item_class_def {
	const char *name;
	/* left out on purpose (a filter, the copy in another folder): open,
	   but not an error of its folder */
	bool by_choice;
	/* the message was deleted at the source: never open */
	bool gone;
} migrate_item_classes[] = {
	{ "fetch-failed", FALSE, FALSE },
	{ "malformed", FALSE, FALSE },
	{ "too-big", FALSE, FALSE },
	{ "filtered", TRUE, FALSE },
	{ "destination-quota", FALSE, FALSE },
	{ "destination-error", FALSE, FALSE },
	{ "vanished", FALSE, TRUE },
	{ "duplicate", TRUE, FALSE },
	{ "throttled", FALSE, FALSE },
	{ "timeout", FALSE, FALSE },
	{ "destination-full", FALSE, FALSE },
	{ "pop3-unmatched", FALSE, FALSE },
	{ "sieve-copied", FALSE, FALSE },
	{ "sieve-not-compiling", FALSE, FALSE },
	{ "sieve-failed", FALSE, FALSE },
};

const char *migrate_item_class_name(enum migrate_item_class class)
{
	i_assert(class < MIGRATE_ITEM_CLASS_COUNT);
	return migrate_item_classes[class].name;
}

int migrate_item_class_parse(const char *name,
			     enum migrate_item_class *class_r)
{
	unsigned int i;

	for (i = 0; i < MIGRATE_ITEM_CLASS_COUNT; i++) {
		if (strcmp(migrate_item_classes[i].name, name) == 0) {
			*class_r = i;
			return 0;
		}
	}
	return -1;
}

bool migrate_item_is_open(const struct migrate_item *item)
{
	i_assert(item->class < MIGRATE_ITEM_CLASS_COUNT);
	return !item->resolved && !migrate_item_classes[item->class].gone;
}

bool migrate_item_is_error(const struct migrate_item *item)
{
	return migrate_item_is_open(item) &&
		!migrate_item_classes[item->class].by_choice;
}

/* UID map */

static bool migrate_uidmap_find(const ARRAY_TYPE(migrate_uid_run) *map,
				uint32_t src_uid, unsigned int *idx_r)
{
	const struct migrate_uid_run *runs;
	unsigned int count, left = 0, right, mid;

	runs = array_get(map, &count);
	right = count;
	while (left < right) {
		mid = (left + right) / 2;
		if (src_uid < runs[mid].src_uid)
			right = mid;
		else if (src_uid >= runs[mid].src_uid + runs[mid].count)
			left = mid + 1;
		else {
			*idx_r = mid;
			return TRUE;
		}
	}
	*idx_r = left;
	return FALSE;
}

uint32_t migrate_uidmap_lookup(const ARRAY_TYPE(migrate_uid_run) *map,
			       uint32_t src_uid)
{
	const struct migrate_uid_run *run;
	unsigned int idx;

	if (!migrate_uidmap_find(map, src_uid, &idx))
		return 0;
	run = array_idx(map, idx);
	return run->dst_uid + (src_uid - run->src_uid);
}

void migrate_uidmap_add(ARRAY_TYPE(migrate_uid_run) *map,
			uint32_t src_uid, uint32_t dst_uid)
{
	struct migrate_uid_run *run, new_run;
	unsigned int idx;

	if (migrate_uidmap_find(map, src_uid, &idx)) {
		/* remapped: drop the old mapping first */
		migrate_uidmap_remove(map, src_uid);
		(void)migrate_uidmap_find(map, src_uid, &idx);
	}
	if (idx > 0) {
		run = array_idx_modifiable(map, idx - 1);
		if (run->src_uid + run->count == src_uid &&
		    run->dst_uid + run->count == dst_uid) {
			run->count++;
			return;
		}
	}
	i_zero(&new_run);
	new_run.src_uid = src_uid;
	new_run.dst_uid = dst_uid;
	new_run.count = 1;
	array_insert(map, idx, &new_run, 1);
}

void migrate_uidmap_remove(ARRAY_TYPE(migrate_uid_run) *map, uint32_t src_uid)
{
	struct migrate_uid_run *run, tail;
	unsigned int idx;
	uint32_t offset;

	if (!migrate_uidmap_find(map, src_uid, &idx))
		return;
	run = array_idx_modifiable(map, idx);
	offset = src_uid - run->src_uid;
	tail.src_uid = src_uid + 1;
	tail.dst_uid = run->dst_uid + offset + 1;
	tail.count = run->count - offset - 1;
	run->count = offset;
	if (run->count == 0) {
		array_delete(map, idx, 1);
		idx--;
	}
	if (tail.count > 0)
		array_insert(map, idx + 1, &tail, 1);
}

void migrate_uidmap_encode(const ARRAY_TYPE(migrate_uid_run) *map,
			   string_t *dest)
{
	const struct migrate_uid_run *run;

	array_foreach(map, run) {
		if (str_len(dest) > 0)
			str_append_c(dest, ',');
		str_printfa(dest, "%u:%u", run->src_uid, run->dst_uid);
		if (run->count != 1)
			str_printfa(dest, ":%u", run->count);
	}
}

int migrate_uidmap_decode(const char *str, ARRAY_TYPE(migrate_uid_run) *map)
{
	const char *const *runs, *const *parts;
	struct migrate_uid_run run;
	uint32_t prev_end = 0;

	if (*str == '\0')
		return 0;
	for (runs = t_strsplit(str, ","); *runs != NULL; runs++) {
		parts = t_strsplit(*runs, ":");
		if (str_array_length(parts) < 2 ||
		    str_array_length(parts) > 3 ||
		    str_to_uint32(parts[0], &run.src_uid) < 0 ||
		    str_to_uint32(parts[1], &run.dst_uid) < 0)
			return -1;
		run.count = 1;
		if (parts[2] != NULL &&
		    str_to_uint32(parts[2], &run.count) < 0)
			return -1;
		/* must be sorted and non-overlapping */
		if (run.src_uid == 0 || run.count == 0 ||
		    run.src_uid < prev_end ||
		    run.src_uid + run.count < run.src_uid)
			return -1;
		prev_end = run.src_uid + run.count;
		array_push_back(map, &run);
	}
	return 0;
}

/* Folder state: tab-separated key=value pairs */

static void state_add_str(string_t *dest, const char *key, const char *value)
{
	if (value == NULL)
		return;
	if (str_len(dest) > 0)
		str_append_c(dest, '\t');
	str_printfa(dest, "%s=%s", key, str_tabescape(value));
}

static void state_add_num(string_t *dest, const char *key, uint64_t value)
{
	if (value == 0)
		return;
	if (str_len(dest) > 0)
		str_append_c(dest, '\t');
	str_printfa(dest, "%s=%"PRIu64, key, value);
}

void migrate_folder_state_encode(const struct migrate_folder_state *fs,
				 string_t *dest)
{
	state_add_str(dest, "dest", fs->dest_vname);
	state_add_str(dest, "name", fs->decoded_name);
	state_add_num(dest, "src_uidvalidity", fs->src_uidvalidity);
	state_add_num(dest, "src_uidnext", fs->src_uidnext);
	state_add_num(dest, "last_uid", fs->last_uid);
	state_add_num(dest, "src_highestmodseq", fs->src_highestmodseq);
	state_add_num(dest, "src_messages", fs->src_messages);
	state_add_num(dest, "dst_uidvalidity", fs->dst_uidvalidity);
	state_add_num(dest, "dst_uidnext", fs->dst_uidnext);
	state_add_num(dest, "dst_messages", fs->dst_messages);
	state_add_num(dest, "imported", fs->counters.imported);
	state_add_num(dest, "existing", fs->counters.existing);
	state_add_num(dest, "failed", fs->counters.failed);
	state_add_num(dest, "deferred", fs->counters.deferred);
	state_add_num(dest, "flags_updated", fs->counters.flags_updated);
	state_add_num(dest, "total_imported", fs->total_imported);
	state_add_num(dest, "bytes", fs->counters.bytes);
	state_add_num(dest, "planned", fs->planned);
	state_add_num(dest, "planned_bytes", fs->planned_bytes);
	state_add_str(dest, "status", fs->status);
	state_add_str(dest, "last_error", fs->last_error);
	state_add_str(dest, "uids_preserved", fs->uids_preserved);
	state_add_num(dest, "started", fs->started);
	state_add_num(dest, "finished", fs->finished);
}

static int state_num(const char *value, uint64_t *num_r)
{
	return str_to_uint64(value, num_r);
}

int migrate_folder_state_decode(const char *str, pool_t pool,
				struct migrate_folder_state *fs,
				const char **error_r)
{
	const char *const *fields, *key, *value, *p;
	uint64_t num;

	for (fields = t_strsplit_tabescaped(str); *fields != NULL; fields++) {
		p = strchr(*fields, '=');
		if (p == NULL) {
			*error_r = t_strdup_printf("Invalid state field '%s'",
						   *fields);
			return -1;
		}
		key = t_strdup_until(*fields, p);
		value = p + 1;
		if (strcmp(key, "dest") == 0)
			fs->dest_vname = p_strdup(pool, value);
		else if (strcmp(key, "name") == 0)
			fs->decoded_name = p_strdup(pool, value);
		else if (strcmp(key, "status") == 0)
			fs->status = p_strdup(pool, value);
		else if (strcmp(key, "last_error") == 0)
			fs->last_error = p_strdup(pool, value);
		else if (strcmp(key, "uids_preserved") == 0)
			fs->uids_preserved = p_strdup(pool, value);
		else if (state_num(value, &num) < 0) {
			*error_r = t_strdup_printf("Invalid state number %s=%s",
						   key, value);
			return -1;
		} else if (strcmp(key, "src_uidvalidity") == 0)
			fs->src_uidvalidity = num;
		else if (strcmp(key, "src_uidnext") == 0)
			fs->src_uidnext = num;
		else if (strcmp(key, "last_uid") == 0)
			fs->last_uid = num;
		else if (strcmp(key, "src_highestmodseq") == 0)
			fs->src_highestmodseq = num;
		else if (strcmp(key, "src_messages") == 0)
			fs->src_messages = num;
		else if (strcmp(key, "dst_uidvalidity") == 0)
			fs->dst_uidvalidity = num;
		else if (strcmp(key, "dst_uidnext") == 0)
			fs->dst_uidnext = num;
		else if (strcmp(key, "dst_messages") == 0)
			fs->dst_messages = num;
		else if (strcmp(key, "imported") == 0)
			fs->counters.imported = num;
		else if (strcmp(key, "existing") == 0)
			fs->counters.existing = num;
		else if (strcmp(key, "failed") == 0)
			fs->counters.failed = num;
		else if (strcmp(key, "deferred") == 0)
			fs->counters.deferred = num;
		else if (strcmp(key, "flags_updated") == 0)
			fs->counters.flags_updated = num;
		else if (strcmp(key, "total_imported") == 0)
			fs->total_imported = num;
		else if (strcmp(key, "bytes") == 0)
			fs->counters.bytes = num;
		else if (strcmp(key, "planned") == 0)
			fs->planned = num;
		else if (strcmp(key, "planned_bytes") == 0)
			fs->planned_bytes = num;
		else if (strcmp(key, "started") == 0)
			fs->started = num;
		else if (strcmp(key, "finished") == 0)
			fs->finished = num;
		/* unknown keys come from newer versions: ignore */
	}
	return 0;
}

/* Item log: one item a line, tab-separated fields */

void migrate_items_encode(const ARRAY_TYPE(migrate_item) *items,
			  string_t *dest)
{
	const struct migrate_item *item;
	unsigned int count = 0;

	array_foreach(items, item) {
		if (++count > MIGRATE_ITEMS_MAX)
			break;
		if (str_len(dest) > 0)
			str_append_c(dest, '\n');
		str_printfa(dest, "%u\t%s\t%s\t%u\t%ld\t%ld\t%d\t",
			    item->uid, migrate_item_class_name(item->class),
			    str_tabescape(item->reason == NULL ? "" :
					  item->reason),
			    item->attempts, (long)item->first_seen,
			    (long)item->last_seen, item->resolved ? 1 : 0);
		str_printfa(dest, "%s\t%s\t%s\t%"PRIuUOFF_T,
			    str_tabescape(item->message_id == NULL ? "" :
					  item->message_id),
			    str_tabescape(item->subject == NULL ? "" :
					  item->subject),
			    str_tabescape(item->date == NULL ? "" : item->date),
			    item->size);
	}
}

static const char *item_str(pool_t pool, const char *value)
{
	return *value == '\0' ? NULL : p_strdup(pool, value);
}

int migrate_items_decode(const char *str, pool_t pool,
			 ARRAY_TYPE(migrate_item) *items)
{
	const char *const *lines, *const *f;
	struct migrate_item item;
	long first, last;
	int resolved;

	if (*str == '\0')
		return 0;
	for (lines = t_strsplit(str, "\n"); *lines != NULL; lines++) {
		f = t_strsplit_tabescaped(*lines);
		if (str_array_length(f) != 11)
			return -1;
		i_zero(&item);
		if (str_to_uint32(f[0], &item.uid) < 0 ||
		    migrate_item_class_parse(f[1], &item.class) < 0 ||
		    str_to_uint(f[3], &item.attempts) < 0 ||
		    str_to_long(f[4], &first) < 0 ||
		    str_to_long(f[5], &last) < 0 ||
		    str_to_int(f[6], &resolved) < 0 ||
		    str_to_uoff(f[10], &item.size) < 0)
			return -1;
		item.reason = item_str(pool, f[2]);
		item.first_seen = first;
		item.last_seen = last;
		item.resolved = resolved != 0;
		item.message_id = item_str(pool, f[7]);
		item.subject = item_str(pool, f[8]);
		item.date = item_str(pool, f[9]);
		array_push_back(items, &item);
	}
	return 0;
}

/* Dict access */

static const char *folder_key(const char *src_name, const char *what)
{
	return t_strconcat(MIGRATE_DICT_PREFIX"folder/",
			   dict_escape_string(src_name), "/", what, NULL);
}

int migrate_state_open(struct mail_user *user, const char *dict_uri,
		       struct migrate_state **state_r, const char **error_r)
{
	struct migrate_state *state;
	struct settings_instance *instance;
	struct dict *dict;

	if (migrate_compat_dict_init(user, dict_uri, &dict, &instance,
				     error_r) < 0)
		return -1;
	state = i_new(struct migrate_state, 1);
	state->user = user;
	state->dict = dict;
	state->dict_instance = instance;
	state->op_set = mail_user_get_dict_op_settings(user);
	*state_r = state;
	return 0;
}

void migrate_state_close(struct migrate_state **_state)
{
	struct migrate_state *state = *_state;
	const char *error;

	*_state = NULL;
	if (state->locked && migrate_state_unlock(state, &error) < 0)
		i_error("migrate: Couldn't release the run lock: %s", error);
	dict_wait(state->dict);
	migrate_compat_dict_deinit(&state->dict, &state->dict_instance);
	i_free(state);
}

static void migrate_state_commit_cb(const struct dict_commit_result *result,
				    struct dict_commit_result *result_r)
{
	result_r->ret = result->ret;
	result_r->error = t_strdup(result->error);
}

/* Async commit + wait: a sync commit crashes dict-redis in 2.3.19. */
static int migrate_state_commit(struct migrate_state *state,
				struct dict_transaction_context **trans,
				const char **error_r)
{
	struct dict_commit_result result;

	i_zero(&result);
	result.ret = DICT_COMMIT_RET_FAILED;
	dict_transaction_commit_async(trans, migrate_state_commit_cb, &result);
	dict_wait(state->dict);
	if (result.ret < 0) {
		*error_r = t_strdup_printf("State dict commit failed: %s",
			result.error == NULL ? "unknown error" : result.error);
		return -1;
	}
	return 0;
}

static int migrate_state_lookup(struct migrate_state *state, pool_t pool,
				const char *key, const char **value_r,
				const char **error_r)
{
	const char *error;
	int ret;

	ret = dict_lookup(state->dict, state->op_set, pool, key,
			  value_r, &error);
	if (ret < 0) {
		*error_r = t_strdup_printf("State dict lookup(%s) failed: %s",
					   key, error);
	}
	return ret;
}

int migrate_state_folder_get(struct migrate_state *state,
			     const char *src_name, pool_t pool,
			     struct migrate_folder_state *fs_r,
			     const char **error_r)
{
	const char *value;
	int ret;

	i_zero(fs_r);
	p_array_init(&fs_r->uidmap, pool, 16);
	p_array_init(&fs_r->items, pool, 4);
	ret = migrate_state_lookup(state, pool_datastack_create(),
				   folder_key(src_name, "state"),
				   &value, error_r);
	if (ret <= 0)
		return ret;
	if (migrate_folder_state_decode(value, pool, fs_r, error_r) < 0)
		return -1;

	ret = migrate_state_lookup(state, pool_datastack_create(),
				   folder_key(src_name, "uidmap"),
				   &value, error_r);
	if (ret < 0)
		return -1;
	if (ret > 0 && migrate_uidmap_decode(value, &fs_r->uidmap) < 0) {
		/* a broken map only costs a rescan of the destination */
		array_clear(&fs_r->uidmap);
		fs_r->src_uidvalidity = 0;
	}
	ret = migrate_state_lookup(state, pool_datastack_create(),
				   folder_key(src_name, "items"),
				   &value, error_r);
	if (ret < 0)
		return -1;
	if (ret > 0 && migrate_items_decode(value, pool, &fs_r->items) < 0)
		array_clear(&fs_r->items);
	return 1;
}

struct dict_transaction_context *
migrate_state_folder_set_begin(struct migrate_state *state,
			       const char *src_name,
			       const struct migrate_folder_state *fs)
{
	struct dict_transaction_context *trans;
	string_t *str = t_str_new(256);

	trans = dict_transaction_begin(state->dict, state->op_set);
	migrate_folder_state_encode(fs, str);
	dict_set(trans, folder_key(src_name, "state"), str_c(str));

	str_truncate(str, 0);
	if (array_is_created(&fs->uidmap))
		migrate_uidmap_encode(&fs->uidmap, str);
	dict_set(trans, folder_key(src_name, "uidmap"), str_c(str));

	str_truncate(str, 0);
	if (array_is_created(&fs->items))
		migrate_items_encode(&fs->items, str);
	if (str_len(str) > 0)
		dict_set(trans, folder_key(src_name, "items"), str_c(str));
	else
		dict_unset(trans, folder_key(src_name, "items"));
	return trans;
}

int migrate_state_folder_set_commit(struct migrate_state *state,
				    struct dict_transaction_context **trans,
				    const char **error_r)
{
	return migrate_state_commit(state, trans, error_r);
}

void migrate_state_folder_set_rollback(struct dict_transaction_context **trans)
{
	dict_transaction_rollback(trans);
}

int migrate_state_folder_set(struct migrate_state *state,
			     const char *src_name,
			     const struct migrate_folder_state *fs,
			     const char **error_r)
{
	struct dict_transaction_context *trans;

	trans = migrate_state_folder_set_begin(state, src_name, fs);
	return migrate_state_commit(state, &trans, error_r);
}

/* An item log of its own key (not a folder's): POP3's and Sieve's.
   A corrupted one reads as empty: the next pass writes it anew. */
static int
migrate_state_key_items_get(struct migrate_state *state, const char *key,
			    pool_t pool, ARRAY_TYPE(migrate_item) *items,
			    const char **error_r)
{
	const char *value;
	int ret;

	ret = migrate_state_lookup(state, pool_datastack_create(), key,
				   &value, error_r);
	if (ret > 0 && migrate_items_decode(value, pool, items) < 0)
		array_clear(items);
	return ret;
}

static int
migrate_state_key_items_set(struct migrate_state *state, const char *key,
			    const ARRAY_TYPE(migrate_item) *items,
			    const char **error_r)
{
	struct dict_transaction_context *trans;
	string_t *str = t_str_new(256);

	migrate_items_encode(items, str);
	trans = dict_transaction_begin(state->dict, state->op_set);
	if (str_len(str) > 0)
		dict_set(trans, key, str_c(str));
	else
		dict_unset(trans, key);
	return migrate_state_commit(state, &trans, error_r);
}

#define MIGRATE_POP3_ITEMS_KEY MIGRATE_DICT_PREFIX"pop3/items"

int migrate_state_pop3_items_get(struct migrate_state *state, pool_t pool,
				 ARRAY_TYPE(migrate_item) *items,
				 const char **error_r)
{
	return migrate_state_key_items_get(state, MIGRATE_POP3_ITEMS_KEY,
					   pool, items, error_r);
}

int migrate_state_pop3_items_set(struct migrate_state *state,
				 const ARRAY_TYPE(migrate_item) *items,
				 const char **error_r)
{
	return migrate_state_key_items_set(state, MIGRATE_POP3_ITEMS_KEY,
					   items, error_r);
}

int migrate_state_folders_get(struct migrate_state *state, pool_t pool,
			      ARRAY_TYPE(const_string) *names,
			      const char **error_r)
{
	const char *value, *const *list;
	int ret;

	ret = migrate_state_lookup(state, pool_datastack_create(),
				   MIGRATE_DICT_PREFIX"folders",
				   &value, error_r);
	if (ret <= 0)
		return ret;
	for (list = t_strsplit_tabescaped(value); *list != NULL; list++) {
		const char *name = p_strdup(pool, *list);
		array_push_back(names, &name);
	}
	return 1;
}

int migrate_state_folders_set(struct migrate_state *state,
			      const ARRAY_TYPE(const_string) *names,
			      const char **error_r)
{
	struct dict_transaction_context *trans;
	string_t *str = t_str_new(256);
	const char *name;

	array_foreach_elem(names, name) {
		if (str_len(str) > 0)
			str_append_c(str, '\t');
		str_append_tabescaped(str, name);
	}
	trans = dict_transaction_begin(state->dict, state->op_set);
	dict_set(trans, MIGRATE_DICT_PREFIX"folders", str_c(str));
	return migrate_state_commit(state, &trans, error_r);
}

/* The run record's own keys. States written before it had them stored
   the run through the folder encoder: folders as src_messages, throttle
   waits as dst_messages, reconnects as flags_updated; those are still
   read when the new key is missing. */
void migrate_run_state_encode(const struct migrate_run_state *run,
			      string_t *dest)
{
	state_add_str(dest, "status", run->status);
	state_add_str(dest, "last_error", run->last_error);
	state_add_num(dest, "started", run->started);
	state_add_num(dest, "finished", run->finished);
	state_add_num(dest, "folders", run->folders);
	state_add_num(dest, "imported", run->counters.imported);
	state_add_num(dest, "existing", run->counters.existing);
	state_add_num(dest, "failed", run->counters.failed);
	state_add_num(dest, "deferred", run->counters.deferred);
	state_add_num(dest, "bytes", run->counters.bytes);
	state_add_num(dest, "planned", run->planned);
	state_add_num(dest, "planned_bytes", run->planned_bytes);
	state_add_num(dest, "throttle_waits", run->throttle_waits);
	state_add_num(dest, "reconnects", run->reconnects);
}

int migrate_run_state_decode(const char *str, pool_t pool,
			     struct migrate_run_state *run,
			     const char **error_r)
{
	static const struct {
		const char *key, *old_key;
		size_t offset, size;
	} nums[] = {
#define RUN_NUM(key, old, field) \
	{ key, old, offsetof(struct migrate_run_state, field), \
	  sizeof(((struct migrate_run_state *)0)->field) }
		RUN_NUM("started", NULL, started),
		RUN_NUM("finished", NULL, finished),
		RUN_NUM("folders", "src_messages", folders),
		RUN_NUM("imported", NULL, counters.imported),
		RUN_NUM("existing", NULL, counters.existing),
		RUN_NUM("failed", NULL, counters.failed),
		RUN_NUM("deferred", NULL, counters.deferred),
		RUN_NUM("bytes", NULL, counters.bytes),
		RUN_NUM("planned", NULL, planned),
		RUN_NUM("planned_bytes", NULL, planned_bytes),
		RUN_NUM("throttle_waits", "dst_messages", throttle_waits),
		RUN_NUM("reconnects", "flags_updated", reconnects),
#undef RUN_NUM
	};
	const char *const *fields, *key, *value, *p;
	bool have_new[N_ELEMENTS(nums)];
	unsigned int i;
	uint64_t num;

	i_zero(&have_new);
	for (fields = t_strsplit_tabescaped(str); *fields != NULL; fields++) {
		p = strchr(*fields, '=');
		if (p == NULL) {
			*error_r = t_strdup_printf("Invalid state field '%s'",
						   *fields);
			return -1;
		}
		key = t_strdup_until(*fields, p);
		value = p + 1;
		if (strcmp(key, "status") == 0) {
			run->status = p_strdup(pool, value);
			continue;
		}
		if (strcmp(key, "last_error") == 0) {
			run->last_error = p_strdup(pool, value);
			continue;
		}
		for (i = 0; i < N_ELEMENTS(nums); i++) {
			bool is_new = strcmp(key, nums[i].key) == 0;

			if (is_new || (nums[i].old_key != NULL &&
				       !have_new[i] &&
				       strcmp(key, nums[i].old_key) == 0))
				break;
		}
		/* unknown keys come from newer versions: ignore */
		if (i == N_ELEMENTS(nums))
			continue;
		if (state_num(value, &num) < 0) {
			*error_r = t_strdup_printf("Invalid state number %s=%s",
						   key, value);
			return -1;
		}
		if (strcmp(key, nums[i].key) == 0)
			have_new[i] = TRUE;
		if (nums[i].size == sizeof(uint64_t)) {
			/* uint64_t, or a 64-bit time_t */
			uint64_t num64 = num;

			memcpy(PTR_OFFSET(run, nums[i].offset), &num64,
			       sizeof(num64));
		} else {
			uint32_t num32 = num > (uint32_t)-1 ?
				(uint32_t)-1 : num;

			i_assert(nums[i].size == sizeof(uint32_t));
			memcpy(PTR_OFFSET(run, nums[i].offset), &num32,
			       sizeof(num32));
		}
	}
	return 0;
}

int migrate_state_run_get(struct migrate_state *state, pool_t pool,
			  struct migrate_run_state *run_r,
			  const char **error_r)
{
	const char *value;
	int ret;

	i_zero(run_r);
	ret = migrate_state_lookup(state, pool_datastack_create(),
				   MIGRATE_DICT_PREFIX"run", &value, error_r);
	if (ret <= 0)
		return ret;
	if (migrate_run_state_decode(value, pool, run_r, error_r) < 0)
		return -1;
	return 1;
}

int migrate_state_run_set(struct migrate_state *state,
			  const struct migrate_run_state *run,
			  const char **error_r)
{
	struct dict_transaction_context *trans;
	string_t *str = t_str_new(256);

	migrate_run_state_encode(run, str);
	trans = dict_transaction_begin(state->dict, state->op_set);
	dict_set(trans, MIGRATE_DICT_PREFIX"run", str_c(str));
	return migrate_state_commit(state, &trans, error_r);
}

int migrate_state_sieve_get(struct migrate_state *state, pool_t pool,
			    ARRAY_TYPE(migrate_item) *items,
			    const char **error_r)
{
	p_array_init(items, pool, 4);
	return migrate_state_key_items_get(state, MIGRATE_DICT_PREFIX"sieve",
					   pool, items, error_r);
}

int migrate_state_sieve_set(struct migrate_state *state,
			    const ARRAY_TYPE(migrate_item) *items,
			    const char **error_r)
{
	return migrate_state_key_items_set(state, MIGRATE_DICT_PREFIX"sieve",
					   items, error_r);
}

int migrate_state_sieve_sources_get(struct migrate_state *state, pool_t pool,
				    const char **value_r, const char **error_r)
{
	return migrate_state_lookup(state, pool, MIGRATE_DICT_PREFIX"sieve-sources",
				    value_r, error_r);
}

int migrate_state_sieve_sources_set(struct migrate_state *state,
				    const char *value, const char **error_r)
{
	struct dict_transaction_context *trans;

	trans = dict_transaction_begin(state->dict, state->op_set);
	dict_set(trans, MIGRATE_DICT_PREFIX"sieve-sources", value);
	return migrate_state_commit(state, &trans, error_r);
}

/* Is this process a zombie (killed, not yet reaped)? Linux only; FALSE
   where /proc isn't there. */
static bool migrate_pid_is_zombie(pid_t pid)
{
	char buf[256];
	const char *p;
	ssize_t ret;
	int fd;

	fd = open(t_strdup_printf("/proc/%ld/stat", (long)pid), O_RDONLY);
	if (fd == -1)
		return FALSE;
	ret = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	if (ret <= 0)
		return FALSE;
	buf[ret] = '\0';
	/* "pid (comm) S ...": the state follows the last ')' */
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] == 'Z';
}

/* A holder on this host whose process is gone crashed: its lock is stale */
static bool migrate_lock_holder_dead(const char *host, const char *pid_str)
{
	pid_t pid;

	if (strcmp(host, my_hostname) != 0 || str_to_pid(pid_str, &pid) < 0)
		return FALSE;
	if (kill(pid, 0) < 0)
		return errno == ESRCH;
	return migrate_pid_is_zombie(pid);
}

int migrate_state_lock(struct migrate_state *state, unsigned int ttl_secs,
		       const char **error_r)
{
	struct dict_transaction_context *trans;
	const char *value, *const *parts, *me;
	long expires;
	int ret;

	me = t_strdup_printf("%s %s", my_hostname, my_pid);
	ret = migrate_state_lookup(state, pool_datastack_create(),
				   MIGRATE_DICT_PREFIX"lock", &value, error_r);
	if (ret < 0)
		return -1;
	if (ret > 0) {
		parts = t_strsplit(value, " ");
		if (str_array_length(parts) == 3 &&
		    str_to_long(parts[2], &expires) == 0 &&
		    expires > ioloop_time &&
		    !migrate_lock_holder_dead(parts[0], parts[1]) &&
		    strcmp(t_strdup_printf("%s %s", parts[0], parts[1]),
			   me) != 0) {
			*error_r = t_strdup_printf("Another migrate run for "
				"this user is in progress (host %s, pid %s); "
				"its lock expires in %ld seconds "
				"(migrate_lock_timeout)", parts[0], parts[1],
				expires - (long)ioloop_time);
			return 0;
		}
	}
	trans = dict_transaction_begin(state->dict, state->op_set);
	dict_set(trans, MIGRATE_DICT_PREFIX"lock", t_strdup_printf("%s %ld",
		 me, (long)(ioloop_time + ttl_secs)));
	if (migrate_state_commit(state, &trans, error_r) < 0)
		return -1;
	state->locked = TRUE;
	return 1;
}

int migrate_state_unlock(struct migrate_state *state, const char **error_r)
{
	struct dict_transaction_context *trans;

	if (!state->locked)
		return 0;
	state->locked = FALSE;
	trans = dict_transaction_begin(state->dict, state->op_set);
	dict_unset(trans, MIGRATE_DICT_PREFIX"lock");
	return migrate_state_commit(state, &trans, error_r);
}

int migrate_state_folders_find(struct migrate_state *state,
			       const char *wanted, pool_t pool,
			       ARRAY_TYPE(const_string) *names_r,
			       const char **error_r)
{
	struct migrate_folder_state fs;
	ARRAY_TYPE(const_string) names, known;
	const char *name;
	int ret;

	t_array_init(&names, 16);
	t_array_init(&known, 16);
	if (migrate_state_folders_get(state, pool_datastack_create(), &names,
				      error_r) < 0)
		return -1;
	array_foreach_elem(&names, name) {
		ret = migrate_state_folder_get(state, name,
					       pool_datastack_create(), &fs,
					       error_r);
		if (ret < 0)
			return -1;
		if (migrate_folder_name_matches(wanted, name, fs.decoded_name,
						fs.dest_vname)) {
			name = p_strdup(pool, name);
			array_push_back(names_r, &name);
		} else {
			array_push_back(&known, fs.decoded_name != NULL ?
					&fs.decoded_name : &name);
		}
	}
	if (array_count(names_r) > 0)
		return 1;
	*error_r = t_strdup_printf("No folder '%s' in the state (-m); "
		"closest: %s", wanted,
		migrate_folder_closest_names(wanted, &known));
	return 0;
}

int migrate_state_reset(struct migrate_state *state, const char *wanted,
			const char **error_r)
{
	struct dict_transaction_context *trans;
	ARRAY_TYPE(const_string) names;
	const char *name;
	int ret;

	t_array_init(&names, 16);
	if (wanted != NULL) {
		ret = migrate_state_folders_find(state, wanted,
						 pool_datastack_create(),
						 &names, error_r);
		if (ret <= 0)
			return ret;
	} else if (migrate_state_folders_get(state, pool_datastack_create(),
					     &names, error_r) < 0)
		return -1;
	trans = dict_transaction_begin(state->dict, state->op_set);
	array_foreach_elem(&names, name) {
		dict_unset(trans, folder_key(name, "state"));
		dict_unset(trans, folder_key(name, "uidmap"));
		dict_unset(trans, folder_key(name, "items"));
	}
	if (wanted == NULL) {
		dict_unset(trans, MIGRATE_DICT_PREFIX"folders");
		dict_unset(trans, MIGRATE_DICT_PREFIX"run");
		dict_unset(trans, MIGRATE_POP3_ITEMS_KEY);
		dict_unset(trans, MIGRATE_DICT_PREFIX"sieve");
		dict_unset(trans, MIGRATE_DICT_PREFIX"sieve-sources");
	}
	if (migrate_state_commit(state, &trans, error_r) < 0)
		return -1;
	return 1;
}
