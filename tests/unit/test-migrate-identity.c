/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "test-common.h"
#include "migrate-identity.h"

static const char *identity(const char *hdr, uoff_t size)
{
	struct migrate_identity_info info;

	migrate_identity_compute((const unsigned char *)hdr, strlen(hdr),
				 size, pool_datastack_create(), &info);
	return info.identity;
}

static void test_identity_message_id(void)
{
	static const struct {
		const char *input, *output;
	} tests[] = {
		{ "<abc@example.com>", "abc@example.com" },
		{ "  <ABC@Example.COM>  ", "abc@example.com" },
		{ "<a b@x>", "ab@x" },
		{ "(comment) <id@host> (more)", "id@host" },
		{ "no-brackets@host", "no-brackets@host" },
		{ "<\"Quoted Local\"@Host>", "quoted local@host" },
		{ "<id (c) @ host>", "id@host" },
		{ "<id@host> <second@host>", "id@host" },
		{ "<>", NULL },
		{ "   ", NULL },
	};
	unsigned int i;

	test_begin("identity: Message-ID normalisation");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		const char *out =
			migrate_identity_normalize_message_id(tests[i].input);
		test_assert_idx(null_strcmp(out, tests[i].output) == 0, i);
	}
	test_end();
}

static void test_identity_stable(void)
{
	const char *a, *b;

	test_begin("identity: stable across header formatting");
	a = identity("Message-ID: <x@y>\r\nSubject: Hello\r\n world\r\n"
		     "From: a@b\r\n\r\n", 1234);
	/* same fields, other order, folded differently, LF only, extra
	   fields: servers return HEADER.FIELDS in varying shapes */
	b = identity("From:   a@b\nX-Other: 1\nSubject: Hello world\n"
		     "Message-Id:\n <X@Y>\n\n", 1234);
	test_assert_strcmp(a, b);
	test_assert(a[0] == 'm');
	test_assert(strcmp(a + strlen(a) - 5, "-1234") == 0);
	test_end();
}

static void test_identity_distinct(void)
{
	const char *base = "Message-ID: <x@y>\r\nSubject: s\r\n\r\n";

	test_begin("identity: different messages stay apart");
	/* same Message-ID, different size */
	test_assert(strcmp(identity(base, 100), identity(base, 101)) != 0);
	/* same Message-ID and size, different subject */
	test_assert(strcmp(identity(base, 100), identity(
		"Message-ID: <x@y>\r\nSubject: t\r\n\r\n", 100)) != 0);
	test_end();
}

static void test_identity_no_message_id(void)
{
	const char *a, *b, *c;

	test_begin("identity: fingerprint without Message-ID");
	a = identity("Date: Mon, 1 Jan 2001 00:00:00 +0000\r\n"
		     "From: a@b\r\nSubject: x\r\n\r\n", 500);
	b = identity("Subject: x\r\nFrom: a@b\r\n"
		     "Date: Mon, 1 Jan 2001 00:00:00 +0000\r\n\r\n", 500);
	c = identity("Date: Mon, 1 Jan 2001 00:00:01 +0000\r\n"
		     "From: a@b\r\nSubject: x\r\n\r\n", 500);
	test_assert(a[0] == 'h');
	test_assert_strcmp(a, b);
	test_assert(strcmp(a, c) != 0);
	/* even an empty header block has an identity */
	test_assert(identity("", 0)[0] == 'h');
	test_end();
}

static void test_identity_size_part(void)
{
	const char *base = "Message-ID: <x@y>\r\nSubject: s\r\n\r\n";
	const char *a = identity(base, 100);

	test_begin("identity: fingerprint and size part");
	/* what an Exchange RFC822.SIZE of 100 becomes with the real size */
	test_assert_strcmp(migrate_identity_with_size(a, 4321),
			   identity(base, 4321));
	test_assert_strcmp(migrate_identity_fingerprint(a),
			   migrate_identity_fingerprint(identity(base, 7)));
	test_assert(strchr(migrate_identity_fingerprint(a), '-') == NULL);
	test_assert(migrate_identity_fingerprint_equals(a, identity(base, 9)));
	test_assert(!migrate_identity_fingerprint_equals(a, identity(
		"Message-ID: <x@y>\r\nSubject: t\r\n\r\n", 100)));
	test_end();
}

static void test_identity_report_fields(void)
{
	struct migrate_identity_info info;
	const char *hdr = "Subject: =?UTF-8?B?w6TDtsO8?=\r\n"
		"Message-ID: <m@x>\r\nDate: Tue, 2 Feb 2021 10:00:00 +0100\r\n\r\n";

	test_begin("identity: report fields");
	migrate_identity_compute((const unsigned char *)hdr, strlen(hdr), 10,
				 pool_datastack_create(), &info);
	test_assert_strcmp(info.subject, "\xc3\xa4\xc3\xb6\xc3\xbc");
	test_assert_strcmp(info.message_id, "<m@x>");
	test_assert_strcmp(info.date, "Tue, 2 Feb 2021 10:00:00 +0100");
	test_end();
}

/* The run's memory of identities across folders: a key is copied in,
   added once, and found by value */
static void test_identity_set(void)
{
	struct migrate_identity_set *set;
	char key[] = "m0123-42";

	test_begin("identity set");
	set = migrate_identity_set_create();
	test_assert(!migrate_identity_set_contains(set, "m0123-42"));
	migrate_identity_set_add(set, key);
	migrate_identity_set_add(set, "m0123-42");
	key[0] = 'h';
	test_assert(migrate_identity_set_contains(set, "m0123-42"));
	test_assert(!migrate_identity_set_contains(set, "h0123-42"));
	test_assert(!migrate_identity_set_contains(set, "m0123-43"));
	migrate_identity_set_destroy(&set);
	test_assert(set == NULL);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_identity_message_id,
		test_identity_stable,
		test_identity_distinct,
		test_identity_no_message_id,
		test_identity_size_part,
		test_identity_report_fields,
		test_identity_set,
		NULL
	};
	return test_run(test_functions);
}
