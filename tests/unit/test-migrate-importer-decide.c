/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "istream.h"
#include "imap-arg.h"
#include "imap-parser.h"
#include "test-common.h"
#include "migrate-settings.h"
#include "migrate-identity.h"
#include "migrate-importer-private.h"

/* migrate_importer_classify(): what a pass decides about each listed
   message, on a real importer (migrate_importer_init()) with no source or
   destination behind it: the destination's identities, the state's UID
   map and item log are filled in by hand as a pass would have read them.
   Before it, migrate_importer_parse_fetch() reads the listing's FETCH
   items (INTERNALDATE, which migrate_since/before compare against). */

#define TEST_MAX_MESSAGE_SIZE 1000000
#define TEST_DAY (24 * 3600)
#define TEST_NOW 1700000000

struct test_importer {
	struct migrate_settings set;
	struct migrate_importer_live live;
	struct migrate_importer_ctx ctx;
	struct migrate_folder folder;
	struct migrate_importer imp;
};

static void test_importer_init(struct test_importer *t)
{
	i_zero(t);
	t->set.max_message_size = TEST_MAX_MESSAGE_SIZE;
	t->set.item_retries = 3;
	t->ctx.set = &t->set;
	t->ctx.live = &t->live;
	t->ctx.event = event_create(NULL);
	t->ctx.seen = migrate_identity_set_create();
	t->folder.src_name = "INBOX";
	t->folder.dest.vname = "INBOX";
}

static void test_importer_start(struct test_importer *t)
{
	migrate_importer_init(&t->imp, &t->ctx, &t->folder);
	p_array_init(&t->imp.fs.items, t->imp.pool, 8);
	p_array_init(&t->imp.fs.uidmap, t->imp.pool, 8);
}

static void test_importer_deinit(struct test_importer *t)
{
	migrate_importer_deinit(&t->imp);
	migrate_identity_set_destroy(&t->ctx.seen);
	event_unref(&t->ctx.event);
}

static struct migrate_msg *
test_msg(struct test_importer *t, uint32_t uid, uoff_t size,
	 const char *identity)
{
	struct migrate_msg *msg;

	msg = p_new(t->imp.pool, struct migrate_msg, 1);
	msg->uid = uid;
	msg->size = size;
	msg->internaldate = TEST_NOW;
	msg->identity = p_strdup(t->imp.pool, identity);
	msg->listed = TRUE;
	/* so that a message left alone can't pass for "import" */
	msg->action = MIGRATE_MSG_DONE;
	array_push_back(&t->imp.msgs, &msg);
	return msg;
}

/* destination mail with this identity, as the pass's scan found it */
static void test_dest_mail(struct test_importer *t, const char *identity,
			   uint32_t dst_uid)
{
	struct migrate_dest_ids *ids;
	const char *key;

	ids = hash_table_lookup(t->imp.dest_ids, identity);
	if (ids == NULL) {
		ids = p_new(t->imp.pool, struct migrate_dest_ids, 1);
		p_array_init(&ids->uids, t->imp.pool, 2);
		key = p_strdup(t->imp.pool, identity);
		hash_table_insert(t->imp.dest_ids, key, ids);
	}
	array_push_back(&ids->uids, &dst_uid);
}

static struct migrate_item *
test_item(struct test_importer *t, uint32_t uid,
	  enum migrate_item_class class, unsigned int attempts)
{
	struct migrate_item *item;

	item = array_append_space(&t->imp.fs.items);
	item->uid = uid;
	item->class = class;
	item->attempts = attempts;
	item->reason = "earlier run";
	return item;
}

/* The listing's FETCH items, parsed from the wire as the source
   connection's parser does */
static void test_parse_fetch(void)
{
	static const struct {
		const char *internaldate;
		time_t time;
		int tz_offset;
	} tests[] = {
		/* RFC 3501's example */
		{ "17-Jul-1996 02:44:25 -0700", 837596665, -7 * 60 },
		{ " 1-Jan-2021 00:00:00 +0000", 1609459200, 0 },
		{ "31-Dec-1999 23:59:59 +0100", 946681199, 60 },
		/* not a date-time: unknown (0), never a wrong date */
		{ "2021-01-01", 0, 0 },
		{ "17-Jul-1996 02:44:25", 0, 0 },
		{ "01-Foo-2021 00:00:00 +0000", 0, 0 },
	};
	struct test_importer t;
	struct istream *input;
	struct imap_parser *parser;
	const struct imap_arg *args, *list;
	struct migrate_msg msg;
	const unsigned char *hdr;
	size_t hdr_size;
	const char *line;
	unsigned int i;

	test_begin("importer decide: the listing's FETCH items");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_importer_init(&t);
		test_importer_start(&t);
		line = t_strdup_printf("(UID 42 RFC822.SIZE 4286 "
			"INTERNALDATE \"%s\" FLAGS (\\Seen \\Recent $Work))\r\n",
			tests[i].internaldate);
		input = i_stream_create_from_data(line, strlen(line));
		parser = imap_parser_create(input, NULL, 4096, NULL);
		(void)i_stream_read(input);
		test_assert_idx(imap_parser_finish_line(parser, 0, 0,
							&args) > 0, i);
		test_assert_idx(imap_arg_get_list(&args[0], &list), i);
		i_zero(&msg);
		test_assert_idx(migrate_importer_parse_fetch(&t.imp,
			migrate_importer_fetch_args_normalize(list), &msg,
			&hdr, &hdr_size) == 42, i);
		test_assert_idx(msg.internaldate == tests[i].time, i);
		if (tests[i].time != 0)
			test_assert_idx(msg.tz_offset == tests[i].tz_offset, i);
		test_assert_idx(msg.size == 4286, i);
		/* \Recent is not carried */
		test_assert_idx(msg.flags == MAIL_SEEN, i);
		test_assert_idx(msg.keywords != NULL &&
				null_strcmp(msg.keywords[0], "$Work") == 0 &&
				msg.keywords[1] == NULL, i);
		imap_parser_unref(&parser);
		i_stream_unref(&input);
		test_importer_deinit(&t);
	}
	test_end();
}

static void test_classify_filters(void)
{
	static const struct {
		uoff_t size;
		time_t internaldate;
		uoff_t max_size, min_size;
		time_t since, before;
		enum migrate_msg_action action;
	} tests[] = {
		{ 500, TEST_NOW, 0, 0, 0, 0, MIGRATE_MSG_IMPORT },
		{ 500, TEST_NOW, 400, 0, 0, 0, MIGRATE_MSG_DEFERRED },
		{ 500, TEST_NOW, 500, 0, 0, 0, MIGRATE_MSG_IMPORT },
		{ 500, TEST_NOW, 0, 501, 0, 0, MIGRATE_MSG_DEFERRED },
		{ 500, TEST_NOW, 0, 500, 0, 0, MIGRATE_MSG_IMPORT },
		/* migrate_since keeps mail from that time on */
		{ 500, TEST_NOW, 0, 0, TEST_NOW + 1, 0, MIGRATE_MSG_DEFERRED },
		{ 500, TEST_NOW, 0, 0, TEST_NOW, 0, MIGRATE_MSG_IMPORT },
		/* migrate_before keeps mail before that time */
		{ 500, TEST_NOW, 0, 0, 0, TEST_NOW, MIGRATE_MSG_DEFERRED },
		{ 500, TEST_NOW, 0, 0, 0, TEST_NOW + 1, MIGRATE_MSG_IMPORT },
		{ 500, TEST_NOW - 10 * TEST_DAY, 0, 0, TEST_NOW - 30 * TEST_DAY,
		  TEST_NOW - TEST_DAY, MIGRATE_MSG_IMPORT },
		/* over migrate_max_message_size: an error, not a filter */
		{ TEST_MAX_MESSAGE_SIZE + 1, TEST_NOW, 0, 0, 0, 0,
		  MIGRATE_MSG_TOO_BIG },
		{ TEST_MAX_MESSAGE_SIZE, TEST_NOW, 0, 0, 0, 0,
		  MIGRATE_MSG_IMPORT },
		/* a filter comes first: deferred, not too big */
		{ TEST_MAX_MESSAGE_SIZE + 1, TEST_NOW, 1000, 0, 0, 0,
		  MIGRATE_MSG_DEFERRED },
	};
	struct test_importer t;
	struct migrate_msg *msg;
	const struct migrate_item *item;
	unsigned int i;

	test_begin("importer decide: filters and sizes");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_importer_init(&t);
		t.set.max_size = tests[i].max_size;
		t.set.min_size = tests[i].min_size;
		t.set.since = tests[i].since;
		t.set.before = tests[i].before;
		test_importer_start(&t);
		msg = test_msg(&t, 7, tests[i].size, "id-7");
		msg->internaldate = tests[i].internaldate;
		migrate_importer_classify(&t.imp);
		test_assert_idx(msg->action == tests[i].action, i);

		item = migrate_importer_find_item(&t.imp, 7);
		switch (tests[i].action) {
		case MIGRATE_MSG_DEFERRED:
			test_assert_idx(item != NULL &&
					item->class == MIGRATE_ITEM_FILTERED &&
					item->attempts == 0 &&
					migrate_item_is_open(item) &&
					!migrate_item_is_error(item), i);
			test_assert_idx(t.live.counters.items_by_class[
				MIGRATE_ITEM_FILTERED] == 1, i);
			break;
		case MIGRATE_MSG_TOO_BIG:
			test_assert_idx(item != NULL &&
					item->class == MIGRATE_ITEM_TOO_BIG &&
					item->attempts == 1 &&
					migrate_item_is_error(item), i);
			break;
		default:
			test_assert_idx(item == NULL, i);
			break;
		}
		test_importer_deinit(&t);
	}
	test_end();
}

static void test_classify_destination(void)
{
	struct test_importer t;
	struct migrate_msg *a1, *a2, *b, *c;

	test_begin("importer decide: mail already at the destination");
	test_importer_init(&t);
	test_importer_start(&t);
	/* two source copies of "a", one at the destination: the multiset
	   match links the first, the second is imported */
	a1 = test_msg(&t, 3, 100, "id-a");
	a2 = test_msg(&t, 5, 100, "id-a");
	b = test_msg(&t, 4, 100, "id-b");
	c = test_msg(&t, 6, 100, "id-c");
	test_dest_mail(&t, "id-a", 11);
	test_dest_mail(&t, "id-b", 12);
	/* an earlier run's failure of b: found now, it is resolved */
	test_item(&t, 4, MIGRATE_ITEM_FETCH_FAILED, 1);
	migrate_importer_classify(&t.imp);
	test_assert(a1->action == MIGRATE_MSG_PRESENT &&
		    a1->claimed_dst_uid == 11);
	test_assert(a2->action == MIGRATE_MSG_IMPORT);
	test_assert(b->action == MIGRATE_MSG_PRESENT &&
		    b->claimed_dst_uid == 12);
	test_assert(c->action == MIGRATE_MSG_IMPORT);
	test_assert(migrate_uidmap_lookup(&t.imp.fs.uidmap, 3) == 11);
	test_assert(migrate_uidmap_lookup(&t.imp.fs.uidmap, 4) == 12);
	test_assert(migrate_uidmap_lookup(&t.imp.fs.uidmap, 5) == 0);
	test_assert(!migrate_item_is_open(migrate_importer_find_item(&t.imp, 4)));
	test_importer_deinit(&t);

	/* the state's UID map decides when the state is valid */
	test_importer_init(&t);
	test_importer_start(&t);
	t.imp.state_valid = TRUE;
	migrate_uidmap_add(&t.imp.fs.uidmap, 8, 20);
	a1 = test_msg(&t, 8, 100, "id-unknown-at-dest");
	a2 = test_msg(&t, 9, 100, "id-new");
	migrate_importer_classify(&t.imp);
	test_assert(a1->action == MIGRATE_MSG_PRESENT);
	test_assert(a2->action == MIGRATE_MSG_IMPORT);
	test_importer_deinit(&t);

	/* ... and not when it isn't (another UIDVALIDITY) */
	test_importer_init(&t);
	test_importer_start(&t);
	migrate_uidmap_add(&t.imp.fs.uidmap, 8, 20);
	a1 = test_msg(&t, 8, 100, "id-unknown-at-dest");
	migrate_importer_classify(&t.imp);
	test_assert(a1->action == MIGRATE_MSG_IMPORT);
	test_importer_deinit(&t);
	test_end();
}

static void test_classify_item_log(void)
{
	struct test_importer t;
	struct migrate_msg *msg, *vanished, *retry, *used_up, *failed;
	struct migrate_item *item;

	test_begin("importer decide: the item log and this run's failures");
	test_importer_init(&t);
	test_importer_start(&t);
	/* relisted below the high-water mark: an item that won't be retried
	   has the last word */
	t.imp.relist_below = 100;
	vanished = test_msg(&t, 10, 100, "id-10");
	test_item(&t, 10, MIGRATE_ITEM_VANISHED, 1);
	used_up = test_msg(&t, 11, 100, "id-11");
	test_item(&t, 11, MIGRATE_ITEM_DEST_ERROR, 3);
	retry = test_msg(&t, 12, 100, "id-12");
	test_item(&t, 12, MIGRATE_ITEM_DEST_ERROR, 2);
	/* failed earlier in this run: not tried again */
	failed = test_msg(&t, 13, 100, "id-13");
	seq_range_array_add(&t.imp.failed_uids, 13);
	migrate_importer_classify(&t.imp);
	test_assert(vanished->action == MIGRATE_MSG_DUPLICATE);
	test_assert(used_up->action == MIGRATE_MSG_DUPLICATE);
	test_assert(retry->action == MIGRATE_MSG_IMPORT);
	test_assert(failed->action == MIGRATE_MSG_FAILED);
	/* no new items: the old ones stay as they were */
	test_assert(array_count(&t.imp.fs.items) == 3);
	item = migrate_importer_find_item(&t.imp, 11);
	test_assert(item->attempts == 3 && migrate_item_is_error(item));
	test_importer_deinit(&t);

	/* above relist_below the item log doesn't decide */
	test_importer_init(&t);
	test_importer_start(&t);
	t.imp.relist_below = 10;
	msg = test_msg(&t, 10, 100, "id-10");
	test_item(&t, 10, MIGRATE_ITEM_VANISHED, 1);
	migrate_importer_classify(&t.imp);
	test_assert(msg->action == MIGRATE_MSG_IMPORT);
	test_importer_deinit(&t);
	test_end();
}

static void test_classify_across_folders(void)
{
	struct test_importer t;
	struct migrate_msg *msg, *other, *labelled, *archived;
	const struct migrate_item *item;

	test_begin("importer decide: across folders");
	/* migrate_dedupe_across_folders: seen in an earlier folder */
	test_importer_init(&t);
	t.set.dedupe_across_folders = TRUE;
	migrate_identity_set_add(t.ctx.seen, "id-seen");
	test_importer_start(&t);
	msg = test_msg(&t, 1, 100, "id-seen");
	other = test_msg(&t, 2, 100, "id-other");
	migrate_importer_classify(&t.imp);
	test_assert(msg->action == MIGRATE_MSG_DUPLICATE);
	item = migrate_importer_find_item(&t.imp, 1);
	test_assert(item != NULL && item->class == MIGRATE_ITEM_DUPLICATE &&
		    migrate_item_is_open(item) &&
		    !migrate_item_is_error(item));
	test_assert(other->action == MIGRATE_MSG_IMPORT);
	test_importer_deinit(&t);

	/* without the setting the same mail is imported again */
	test_importer_init(&t);
	migrate_identity_set_add(t.ctx.seen, "id-seen");
	test_importer_start(&t);
	msg = test_msg(&t, 1, 100, "id-seen");
	migrate_importer_classify(&t.imp);
	test_assert(msg->action == MIGRATE_MSG_IMPORT);
	test_importer_deinit(&t);

	/* Gmail's All Mail: labelled mail is in its label folder */
	test_importer_init(&t);
	t.folder.dest.gmail_all_mail = TRUE;
	migrate_identity_set_add(t.ctx.seen, "id-in-label");
	test_importer_start(&t);
	labelled = test_msg(&t, 1, 100, "id-x");
	labelled->gm_labels_known = TRUE;
	labelled->gm_labelled = TRUE;
	archived = test_msg(&t, 2, 100, "id-y");
	archived->gm_labels_known = TRUE;
	msg = test_msg(&t, 3, 100, "id-in-label");
	other = test_msg(&t, 4, 100, "id-archived-no-labels");
	migrate_importer_classify(&t.imp);
	test_assert(labelled->action == MIGRATE_MSG_DUPLICATE);
	test_assert(archived->action == MIGRATE_MSG_IMPORT);
	/* without X-GM-LABELS the label folders' identities decide */
	test_assert(msg->action == MIGRATE_MSG_DUPLICATE);
	test_assert(other->action == MIGRATE_MSG_IMPORT);
	test_assert(array_count(&t.imp.fs.items) == 0);
	test_importer_deinit(&t);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_parse_fetch,
		test_classify_filters,
		test_classify_destination,
		test_classify_item_log,
		test_classify_across_folders,
		NULL
	};
	return test_run(test_functions);
}
