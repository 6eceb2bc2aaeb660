/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "istream.h"
#include "sha1.h"
#include "test-common.h"
#include "migrate-pop3.h"

static void hash_of(const char *text, unsigned char hash_r[SHA1_RESULTLEN])
{
	struct istream *input;
	const char *error;

	input = i_stream_create_from_data(text, strlen(text));
	test_assert(migrate_pop3_header_hash(input, hash_r, &error) == 0);
	i_stream_unref(&input);
}

static bool same_hash(const char *a, const char *b)
{
	unsigned char ha[SHA1_RESULTLEN], hb[SHA1_RESULTLEN];

	hash_of(a, ha);
	hash_of(b, hb);
	return memcmp(ha, hb, sizeof(ha)) == 0;
}

#define HDR "From: a@example.org\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n"

static void test_pop3_header_hash(void)
{
	test_begin("migrate_pop3_header_hash");
	/* the body and line ends don't count: TOP n 0 matches the message */
	test_assert(same_hash(HDR "\r\nbody\r\n", HDR "\r\n"));
	test_assert(same_hash(HDR "\r\nbody\r\n",
		"From: a@example.org\nSubject: hi\nMessage-ID: <1@x>\n\nother\n"));
	/* what mbox/Maildir servers add on one side only */
	test_assert(same_hash(HDR "\r\n", "Status: RO\r\n" HDR
			      "X-UID: 17\r\nX-Keywords: $Junk\r\n"
			      "Return-Path: <a@example.org>\r\n\r\n"));
	/* lines without a colon, whitespace-only continuations */
	test_assert(same_hash(HDR "\r\n", HDR "garbage line\r\n\r\n"));
	test_assert(same_hash("Subject: hi\r\n\r\n",
			      "Subject: hi\r\n \r\n\r\n"));
	/* another header, another hash */
	test_assert(!same_hash(HDR "\r\n", HDR "X-Other: 1\r\n\r\n"));
	test_assert(!same_hash(HDR "\r\n",
		"From: a@example.org\r\nSubject: hi!\r\nMessage-ID: <1@x>\r\n\r\n"));
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_pop3_header_hash,
		NULL
	};
	return test_run(test_functions);
}
