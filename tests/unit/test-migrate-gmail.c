/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "test-common.h"
#include "migrate-gmail.h"

static void test_gmail_names(void)
{
	test_begin("gmail container names");
	test_assert(migrate_gmail_is_name("[Gmail]/Sent Mail", '/'));
	test_assert(migrate_gmail_is_name("[GMAIL].Drafts", '.'));
	test_assert(migrate_gmail_is_name("[Google Mail]", '/'));
	test_assert(migrate_gmail_is_name("[google mail]/All Mail", '/'));
	test_assert(!migrate_gmail_is_name("[Gmail]Stuff/x", '/'));
	test_assert(!migrate_gmail_is_name("INBOX/[Gmail]", '/'));
	test_assert(migrate_gmail_is_name("[Gmail]", '\0'));
	test_assert(migrate_gmail_is_container("[gMAIL]"));
	test_assert(!migrate_gmail_is_container("Gmail"));
	test_end();
}

static void test_gmail_labels(void)
{
	static const struct {
		const char *label, *src_name;
		enum migrate_special_use use;
		bool names;
	} tests[] = {
		{ "\\Inbox", "INBOX", 0, TRUE },
		{ "\\INBOX", "Inbox", 0, TRUE },
		{ "\\Inbox", "Work", 0, FALSE },
		{ "\\Sent", "[Gmail]/Sent Mail", MIGRATE_SPECIAL_USE_SENT, TRUE },
		{ "\\sent", "[Gmail]/Sent Mail", MIGRATE_SPECIAL_USE_SENT, TRUE },
		/* the special use names the folder, not its name */
		{ "\\Sent", "[Gmail]/Sent Mail", 0, FALSE },
		{ "\\Draft", "[Gmail]/Drafts", MIGRATE_SPECIAL_USE_DRAFTS, TRUE },
		{ "\\Spam", "[Gmail]/Spam", MIGRATE_SPECIAL_USE_JUNK, TRUE },
		{ "\\Spam", "[Gmail]/Trash", MIGRATE_SPECIAL_USE_TRASH, FALSE },
		{ "\\Starred", "[Gmail]/Starred", MIGRATE_SPECIAL_USE_FLAGGED |
		  MIGRATE_SPECIAL_USE_IMPORTANT, TRUE },
		/* user labels: any case, as Gmail's labels */
		{ "Work", "Work", 0, TRUE },
		{ "work", "Work", 0, TRUE },
		{ "Work/Projects", "work/projects", 0, TRUE },
		{ "Work", "Work/Projects", 0, FALSE },
		{ "[Gmail]/Sent Mail", "[GMAIL]/Sent Mail", 0, TRUE },
	};
	unsigned int i;

	test_begin("gmail label names folder");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(migrate_gmail_label_names_folder(
			tests[i].label, tests[i].src_name, tests[i].use) ==
			tests[i].names, i);
	}
	test_assert(migrate_gmail_label_special_use("\\Important") ==
		    MIGRATE_SPECIAL_USE_IMPORTANT);
	test_assert(migrate_gmail_label_special_use("\\Inbox") ==
		    MIGRATE_SPECIAL_USE_NONE);
	test_assert(migrate_gmail_label_special_use("Sent") ==
		    MIGRATE_SPECIAL_USE_NONE);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_gmail_names,
		test_gmail_labels,
		NULL
	};
	return test_run(test_functions);
}
