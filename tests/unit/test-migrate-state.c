/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "test-common.h"
#include "migrate-state.h"

static void test_uidmap_add_lookup(void)
{
	ARRAY_TYPE(migrate_uid_run) map;
	string_t *str = t_str_new(64);
	uint32_t uid;

	test_begin("uidmap: runs, lookup, encoding");
	t_array_init(&map, 4);
	for (uid = 1; uid <= 100; uid++)
		migrate_uidmap_add(&map, uid, uid);
	/* preserved UIDs collapse into one run */
	test_assert(array_count(&map) == 1);
	migrate_uidmap_add(&map, 101, 500);
	migrate_uidmap_add(&map, 102, 501);
	migrate_uidmap_add(&map, 200, 502);
	test_assert(array_count(&map) == 3);
	test_assert(migrate_uidmap_lookup(&map, 50) == 50);
	test_assert(migrate_uidmap_lookup(&map, 102) == 501);
	test_assert(migrate_uidmap_lookup(&map, 150) == 0);
	test_assert(migrate_uidmap_lookup(&map, 200) == 502);
	migrate_uidmap_encode(&map, str);
	test_assert_strcmp(str_c(str), "1:1:100,101:500:2,200:502");
	test_end();
}

static void test_uidmap_remove_and_order(void)
{
	ARRAY_TYPE(migrate_uid_run) map, map2;
	string_t *str = t_str_new(64);

	test_begin("uidmap: remove splits runs, inserts stay sorted");
	t_array_init(&map, 4);
	t_array_init(&map2, 4);
	test_assert(migrate_uidmap_decode("1:10:10", &map) == 0);
	migrate_uidmap_remove(&map, 5);
	test_assert(migrate_uidmap_lookup(&map, 5) == 0);
	test_assert(migrate_uidmap_lookup(&map, 4) == 13);
	test_assert(migrate_uidmap_lookup(&map, 6) == 15);
	migrate_uidmap_add(&map, 5, 99);
	test_assert(migrate_uidmap_lookup(&map, 5) == 99);
	migrate_uidmap_remove(&map, 1);
	migrate_uidmap_remove(&map, 10);
	migrate_uidmap_encode(&map, str);
	test_assert(migrate_uidmap_decode(str_c(str), &map2) == 0);
	test_assert(array_count(&map) == array_count(&map2));
	test_assert(migrate_uidmap_lookup(&map2, 9) == 18);
	test_assert(migrate_uidmap_lookup(&map2, 10) == 0);
	test_end();
}

static void test_uidmap_decode_invalid(void)
{
	static const char *const bad[] = {
		"x", "1", "1:2:3:4", "0:1", "5:1,3:1", "1:1:0", "1:1:10,5:20",
		"4294967295:1:2",
	};
	ARRAY_TYPE(migrate_uid_run) map;
	unsigned int i;

	test_begin("uidmap: invalid encodings are rejected");
	for (i = 0; i < N_ELEMENTS(bad); i++) {
		t_array_init(&map, 4);
		test_assert_idx(migrate_uidmap_decode(bad[i], &map) < 0, i);
	}
	test_end();
}

static void test_folder_state_roundtrip(void)
{
	struct migrate_folder_state fs, fs2;
	string_t *str = t_str_new(128);
	const char *error;

	test_begin("folder state: encode/decode round trip");
	i_zero(&fs);
	fs.dest_vname = "Work/Tab\there";
	fs.src_uidvalidity = 4000000000U;
	fs.last_uid = 42;
	fs.src_highestmodseq = 1ULL << 40;
	fs.dst_uidnext = 43;
	fs.status = "completed-with-errors";
	fs.last_error = "line\nbreak";
	fs.counters.bytes = 123456789012ULL;
	fs.planned = 60;
	fs.planned_bytes = 5000000000ULL;
	migrate_folder_state_encode(&fs, str);
	test_assert(strchr(str_c(str), '\n') == NULL);
	i_zero(&fs2);
	test_assert(migrate_folder_state_decode(str_c(str),
		pool_datastack_create(), &fs2, &error) == 0);
	test_assert_strcmp(fs2.dest_vname, fs.dest_vname);
	test_assert(fs2.src_uidvalidity == fs.src_uidvalidity);
	test_assert(fs2.last_uid == 42);
	test_assert(fs2.src_highestmodseq == fs.src_highestmodseq);
	test_assert(fs2.dst_uidnext == 43);
	test_assert_strcmp(fs2.status, fs.status);
	test_assert_strcmp(fs2.last_error, fs.last_error);
	test_assert(fs2.counters.bytes == fs.counters.bytes);
	test_assert(fs2.planned == 60);
	test_assert(fs2.planned_bytes == fs.planned_bytes);
	/* unknown keys (a newer version wrote them) are ignored */
	test_assert(migrate_folder_state_decode("future=1\tlast_uid=7",
		pool_datastack_create(), &fs2, &error) == 0);
	test_assert(fs2.last_uid == 7);
	test_assert(migrate_folder_state_decode("last_uid=x",
		pool_datastack_create(), &fs2, &error) < 0);
	test_end();
}

static void test_run_state_keys(void)
{
	struct migrate_run_state run, run2;
	string_t *str = t_str_new(128);
	const char *error;

	test_begin("run state: its own keys, old records still read");
	i_zero(&run);
	run.status = "running";
	run.started = 1700000000;
	run.folders = 12;
	run.counters.imported = 5;
	run.counters.bytes = 5000000000ULL;
	run.throttle_waits = 3;
	run.reconnects = 2;
	migrate_run_state_encode(&run, str);
	test_assert(strstr(str_c(str), "folders=12") != NULL);
	test_assert(strstr(str_c(str), "throttle_waits=3") != NULL);
	test_assert(strstr(str_c(str), "reconnects=2") != NULL);
	test_assert(strstr(str_c(str), "src_messages") == NULL);
	i_zero(&run2);
	test_assert(migrate_run_state_decode(str_c(str),
		pool_datastack_create(), &run2, &error) == 0);
	test_assert_strcmp(run2.status, "running");
	test_assert(run2.started == 1700000000);
	test_assert(run2.folders == 12 && run2.counters.imported == 5);
	test_assert(run2.counters.bytes == run.counters.bytes);
	test_assert(run2.throttle_waits == 3 && run2.reconnects == 2);
	/* written by the folder encoder before the run had its own keys */
	i_zero(&run2);
	test_assert(migrate_run_state_decode("src_messages=9\tdst_messages=4"
		"\tflags_updated=1\tstatus=completed\tfinished=1700000100",
		pool_datastack_create(), &run2, &error) == 0);
	test_assert(run2.folders == 9 && run2.throttle_waits == 4 &&
		    run2.reconnects == 1 && run2.finished == 1700000100);
	test_assert_strcmp(run2.status, "completed");
	/* a new key wins over an old one, in either order */
	i_zero(&run2);
	test_assert(migrate_run_state_decode("folders=7\tsrc_messages=9",
		pool_datastack_create(), &run2, &error) == 0);
	test_assert(run2.folders == 7);
	test_assert(migrate_run_state_decode("reconnects=x",
		pool_datastack_create(), &run2, &error) < 0);
	test_end();
}

static void test_items_roundtrip(void)
{
	ARRAY_TYPE(migrate_item) items, items2;
	struct migrate_item *item;
	string_t *str = t_str_new(128);
	const struct migrate_item *it;

	test_begin("item log: encode/decode round trip");
	t_array_init(&items, 2);
	t_array_init(&items2, 2);
	item = array_append_space(&items);
	item->uid = 7;
	item->class = MIGRATE_ITEM_TOO_BIG;
	item->reason = "NO [LIMIT]\ttoo big";
	item->attempts = 2;
	item->first_seen = 1000;
	item->last_seen = 2000;
	item->subject = "Subj\nwith newline";
	item->size = 999;
	item = array_append_space(&items);
	item->uid = 8;
	item->class = MIGRATE_ITEM_FILTERED;
	item->resolved = TRUE;
	migrate_items_encode(&items, str);
	test_assert(migrate_items_decode(str_c(str), pool_datastack_create(),
					 &items2) == 0);
	test_assert(array_count(&items2) == 2);
	it = array_idx(&items2, 0);
	test_assert(it->uid == 7 && it->class == MIGRATE_ITEM_TOO_BIG);
	test_assert_strcmp(it->reason, "NO [LIMIT]\ttoo big");
	test_assert_strcmp(it->subject, "Subj\nwith newline");
	test_assert(it->message_id == NULL);
	test_assert(it->attempts == 2 && it->size == 999);
	test_assert(it->first_seen == 1000 && it->last_seen == 2000);
	it = array_idx(&items2, 1);
	test_assert(it->resolved && it->class == MIGRATE_ITEM_FILTERED);
	test_end();
}

static void test_item_classes(void)
{
	enum migrate_item_class class;
	unsigned int i;

	test_begin("item classes: names parse back");
	for (i = 0; i < MIGRATE_ITEM_CLASS_COUNT; i++) {
		test_assert_idx(migrate_item_class_parse(
			migrate_item_class_name(i), &class) == 0 &&
			class == i, i);
	}
	test_assert(migrate_item_class_parse("nonsense", &class) < 0);
	test_end();
}

static void test_item_open_error(void)
{
	static const struct {
		enum migrate_item_class class;
		bool resolved, open, error;
	} tests[] = {
		{ MIGRATE_ITEM_FETCH_FAILED, FALSE, TRUE, TRUE },
		{ MIGRATE_ITEM_FETCH_FAILED, TRUE, FALSE, FALSE },
		{ MIGRATE_ITEM_TOO_BIG, FALSE, TRUE, TRUE },
		{ MIGRATE_ITEM_DEST_QUOTA, FALSE, TRUE, TRUE },
		{ MIGRATE_ITEM_DEST_FULL, FALSE, TRUE, TRUE },
		{ MIGRATE_ITEM_POP3_UNMATCHED, FALSE, TRUE, TRUE },
		/* left out on purpose: open (explains the absence), no error */
		{ MIGRATE_ITEM_FILTERED, FALSE, TRUE, FALSE },
		{ MIGRATE_ITEM_DUPLICATE, FALSE, TRUE, FALSE },
		{ MIGRATE_ITEM_FILTERED, TRUE, FALSE, FALSE },
		/* deleted at the source: nothing is missing */
		{ MIGRATE_ITEM_VANISHED, FALSE, FALSE, FALSE },
		{ MIGRATE_ITEM_VANISHED, TRUE, FALSE, FALSE },
	};
	struct migrate_item item;
	unsigned int i;

	test_begin("item log: open and error, one rule");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		i_zero(&item);
		item.class = tests[i].class;
		item.resolved = tests[i].resolved;
		test_assert_idx(migrate_item_is_open(&item) == tests[i].open, i);
		test_assert_idx(migrate_item_is_error(&item) == tests[i].error,
				i);
	}
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_item_open_error,
		test_uidmap_add_lookup,
		test_uidmap_remove_and_order,
		test_uidmap_decode_invalid,
		test_folder_state_roundtrip,
		test_run_state_keys,
		test_items_roundtrip,
		test_item_classes,
		NULL
	};
	return test_run(test_functions);
}
