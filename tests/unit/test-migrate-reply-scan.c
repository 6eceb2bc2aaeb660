/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "test-common.h"
#include "migrate-reply-scan.h"
#include "migrate-source-conn.h"

/* Scan input line by line, as the connection does: 0, or -1 when a list
   nests too deep */
static int scan_all(const char *input)
{
	struct migrate_reply_scan scan;
	const unsigned char *data = (const unsigned char *)input;
	size_t size = strlen(input), pos;
	const char *error;

	migrate_reply_scan_init(&scan);
	while (size > 0) {
		if (migrate_reply_scan_more(&scan, data, size, &pos,
					    &error) < 0)
			return -1;
		i_assert(pos > 0 && pos <= size);
		data += pos;
		size -= pos;
	}
	return 0;
}

static const char *nest(unsigned int n)
{
	string_t *str = t_str_new(n * 2 + 16);
	unsigned int i;

	for (i = 0; i < n; i++)
		str_append_c(str, '(');
	str_append_c(str, 'x');
	for (i = 0; i < n; i++)
		str_append_c(str, ')');
	return str_c(str);
}

static void test_reply_scan_depth(void)
{
	test_begin("reply scan: list depth");
	test_assert(scan_all(t_strdup_printf("* OK %s\r\n",
		nest(MIGRATE_MAX_LIST_DEPTH))) == 0);
	test_assert(scan_all(t_strdup_printf("* OK %s\r\n",
		nest(MIGRATE_MAX_LIST_DEPTH + 1))) < 0);
	test_assert(scan_all(t_strdup_printf("* BYE %s\r\n",
		nest(500000))) < 0);
	/* depth starts over on each line */
	test_assert(scan_all(t_strdup_printf("* 1 FETCH %s\r\n* 2 FETCH %s\r\n",
		nest(20), nest(20))) == 0);
	/* a literal inside open lists: the line goes on after it */
	test_assert(scan_all(t_strdup_printf("* OK %s{3}\r\nabc%s\r\n",
		t_strndup(nest(40), 40), ")")) < 0);
	test_end();
}

static void test_reply_scan_not_lists(void)
{
	test_begin("reply scan: parentheses that aren't lists");
	/* in a quoted string, a literal, a status text after its code, a
	   continuation, inside an atom */
	test_assert(scan_all(t_strdup_printf("* LIST () \".\" \"%s\"\r\n",
		t_strndup(nest(100), 100))) == 0);
	test_assert(scan_all(t_strdup_printf("* LIST () \".\" {100}\r\n%s\r\n",
		t_strndup(nest(100), 100))) == 0);
	test_assert(scan_all(t_strdup_printf("A1 NO [ALERT] %s\r\n",
		nest(100))) == 0);
	test_assert(scan_all(t_strdup_printf("+ %s\r\n", nest(100))) == 0);
	test_assert(scan_all(t_strdup_printf("* OK x%s\r\n",
		t_strndup(nest(100), 100))) == 0);
	/* a status reply without a code: its lists are lists */
	test_assert(scan_all(t_strdup_printf("A1 NO %s\r\n", nest(100))) < 0);
	test_end();
}

static void test_reply_scan_line_end(void)
{
	struct migrate_reply_scan scan;
	const char *input = "A1 OK COMPRESS active\r\n((((((((((((((((((((";
	const char *error;
	size_t pos;

	test_begin("reply scan: stops at the end of the line");
	migrate_reply_scan_init(&scan);
	test_assert(migrate_reply_scan_more(&scan,
		(const unsigned char *)input, strlen(input), &pos, &error) == 0);
	test_assert(pos == strlen("A1 OK COMPRESS active\r\n"));
	test_end();
}

static void test_str_sanitize(void)
{
	test_begin("migrate_str_sanitize");
	test_assert(strcmp(migrate_str_sanitize("a\x1b[31mb", 100),
			   "a?[31mb") == 0);
	/* C1 CSI, bidi override, DEL, invalid UTF-8 */
	test_assert(strcmp(migrate_str_sanitize("\xc2\x9b" "2J", 100),
			   "?2J") == 0);
	test_assert(strcmp(migrate_str_sanitize("\xe2\x80\xae" "x\x7f", 100),
			   "?x?") == 0);
	test_assert(strcmp(migrate_str_sanitize("caf\xe9", 100), "caf?") == 0);
	test_assert(strcmp(migrate_str_sanitize("Entw\xc3\xbc" "rfe", 100),
			   "Entw\xc3\xbc" "rfe") == 0);
	test_assert(strcmp(migrate_str_sanitize("abcdef", 3), "abc...") == 0);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_reply_scan_depth,
		test_reply_scan_not_lists,
		test_reply_scan_line_end,
		test_str_sanitize,
		NULL
	};
	return test_run(test_functions);
}
