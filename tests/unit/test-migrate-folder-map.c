/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "unichar.h"
#include "imap-utf7.h"
#include "unlink-directory.h"
#include "test-common.h"
#include "migrate-compat.h"
#include "migrate-folder-map.h"

#include <stdio.h>
#include <unistd.h>

struct map_test {
	const char *name;
	char delimiter;
	const char *ns_prefix;
	enum migrate_special_use src_use;
	enum migrate_folder_src_flags src_flags;
	/* expected */
	const char *vname;
	bool skip;
	/* substring of the reason; NULL when there must be none */
	const char *reason;
};

/* a case that checks more of the result: the destination's special use
   (when check_use), whether it is an "all mail" folder (unless TEST_ANY),
   the decoded name (when not NULL) */
struct map_test_more {
	struct map_test t;
	bool check_use;
	enum migrate_special_use dest_use;
	enum test_all_mail { TEST_ANY = 0, TEST_YES, TEST_NO } all_mail;
	const char *decoded_name;
};

static const char *test_dir;

static const char *test_write_file(const char *name, const char *data)
{
	const char *path = t_strconcat(test_dir, "/", name, NULL);
	FILE *f;

	f = fopen(path, "w");
	if (f == NULL)
		i_fatal("fopen(%s) failed: %m", path);
	if (fputs(data, f) < 0 || fclose(f) < 0)
		i_fatal("write(%s) failed: %m", path);
	return path;
}

static struct migrate_folder_map *
test_map_init(const struct migrate_folder_map_settings *set)
{
	struct migrate_folder_map *map = NULL;
	const char *error;

	if (migrate_folder_map_init(set, &map, &error) < 0)
		i_fatal("migrate_folder_map_init() failed: %s", error);
	return map;
}

static void
test_lookup(struct migrate_folder_map *map, const char *name, char delimiter,
	    const char *ns_prefix, enum migrate_special_use use,
	    enum migrate_folder_src_flags flags,
	    struct migrate_folder_dest *dest_r)
{
	struct migrate_folder_src src;

	i_zero(&src);
	src.name = name;
	src.delimiter = delimiter;
	src.ns_prefix = ns_prefix;
	src.special_use = use;
	src.flags = flags;
	migrate_folder_map_lookup(map, &src, pool_datastack_create(), dest_r);
}

/* The promises to the caller, whatever the input: no empty, "." or ".."
   component, none starting with '~', valid UTF-8 without controls */
static bool test_vname_is_safe(const char *vname)
{
	const char *const *parts;
	const unsigned char *p;

	if (vname == NULL)
		return TRUE;
	if (!uni_utf8_str_is_valid(vname))
		return FALSE;
	for (p = (const unsigned char *)vname; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return FALSE;
	}
	/* the tests use '/' and '.' as destination separator */
	for (parts = t_strsplit(vname, "/."); *parts != NULL; parts++) {
		if (strcmp(*parts, "..") == 0 || (*parts)[0] == '~')
			return FALSE;
	}
	return vname[0] != '\0' && vname[0] != '/' && vname[0] != '.' &&
		vname[strlen(vname)-1] != '/';
}

static void
test_map_case(struct migrate_folder_map *map, const struct map_test *test,
	      unsigned int i, struct migrate_folder_dest *dest_r)
{
	test_lookup(map, test->name, test->delimiter, test->ns_prefix,
		    test->src_use, test->src_flags, dest_r);
	test_assert_strcmp_idx(dest_r->vname, test->vname, i);
	test_assert_idx(dest_r->skip == test->skip, i);
	if (test->reason == NULL)
		test_assert_strcmp_idx(dest_r->reason, NULL, i);
	else {
		test_assert_idx(dest_r->reason != NULL &&
				strstr(dest_r->reason, test->reason) != NULL, i);
	}
	test_assert_idx(dest_r->skip || dest_r->vname != NULL, i);
	test_assert_idx(test_vname_is_safe(dest_r->vname), i);
}

static void
test_map_cases(struct migrate_folder_map *map, const struct map_test *tests,
	       unsigned int count)
{
	struct migrate_folder_dest dest;
	unsigned int i;

	for (i = 0; i < count; i++)
		test_map_case(map, &tests[i], i, &dest);
}

static void
test_map_more_cases(struct migrate_folder_map *map,
		    const struct map_test_more *tests, unsigned int count)
{
	struct migrate_folder_dest dest;
	unsigned int i;

	for (i = 0; i < count; i++) {
		test_map_case(map, &tests[i].t, i, &dest);
		if (tests[i].check_use)
			test_assert_idx(dest.special_use == tests[i].dest_use, i);
		if (tests[i].all_mail != TEST_ANY) {
			test_assert_idx(dest.gmail_all_mail ==
					(tests[i].all_mail == TEST_YES), i);
		}
		if (tests[i].decoded_name != NULL) {
			test_assert_strcmp_idx(dest.decoded_name,
					       tests[i].decoded_name, i);
		}
	}
}

static void test_folder_map_delimiters(void)
{
	static const struct map_test tests[] = {
		/* Courier/cPanel: "INBOX." prefix */
		{ "INBOX", '.', "INBOX.", 0, 0, "INBOX", FALSE, NULL },
		{ "INBOX.Clients.ProjectA", '.', "INBOX.", 0, 0,
		  "Clients/ProjectA", FALSE, NULL },
		{ "inbox.Clients", '.', "INBOX.", 0, 0,
		  "Clients", FALSE, NULL },
		{ "INBOX.", '.', "INBOX.", 0, 0, NULL, TRUE,
		  "namespace root" },
		/* Dovecot, Cyrus with altnamespace, Exchange: no prefix */
		{ "inbox", '/', "", 0, 0, "INBOX", FALSE, NULL },
		{ "Clients/ProjectA", '/', "", 0, 0,
		  "Clients/ProjectA", FALSE, NULL },
		{ "Clients.ProjectA", '.', "", 0, 0,
		  "Clients/ProjectA", FALSE, NULL },
		{ "INBOX.Clients", '.', "", 0, 0,
		  "INBOX/Clients", FALSE, NULL },
		{ "Inbox/Clients", '/', NULL, 0, 0,
		  "INBOX/Clients", FALSE, NULL },
		/* a name outside the prefix is kept whole */
		{ "Shared.Team", '.', "INBOX.", 0, 0,
		  "Shared/Team", FALSE, NULL },
		{ "#mh", '/', "#mh/", 0, 0, NULL, TRUE, "namespace root" },
		/* flat (NIL) delimiter: one level, '/' is a character */
		{ "a.b", '\0', "", 0, 0, "a.b", FALSE, NULL },
		{ "a/b", '\0', "", 0, 0, "a_b", FALSE, "'/' in name" },
		/* \Noselect: skipped, vname kept for the hierarchy */
		{ "INBOX.Clients", '.', "INBOX.",
		  0, MIGRATE_FOLDER_SRC_FLAG_NOSELECT,
		  "Clients", TRUE, "not selectable" },
		{ "Gone", '/', "", 0, MIGRATE_FOLDER_SRC_FLAG_NONEXISTENT,
		  "Gone", TRUE, "not selectable" },
	};
	static const struct map_test dot_tests[] = {
		{ "Clients/ProjectA", '/', "", 0, 0,
		  "Clients.ProjectA", FALSE, NULL },
		{ "INBOX.Clients.ProjectA", '.', "INBOX.", 0, 0,
		  "Clients.ProjectA", FALSE, NULL },
		/* the destination separator as a character */
		{ "v1.2/notes", '/', "", 0, 0,
		  "v1_2.notes", FALSE, "sanitized: '.' in name" },
		{ "INBOX", '/', "", 0, 0, "INBOX", FALSE, NULL },
	};
	static const struct map_test prefix_tests[] = {
		{ "INBOX", '/', "", 0, 0, "INBOX", FALSE, NULL },
		{ "Clients/ProjectA", '/', "", 0, 0,
		  "INBOX.Clients.ProjectA", FALSE, NULL },
		{ "INBOX/Clients", '/', "", 0, 0,
		  "INBOX.Clients", FALSE, NULL },
		{ "INBOX.Trash", '.', "INBOX.", 0, 0,
		  "INBOX.Deleted", FALSE, "automap \\Trash" },
		{ "INBOX.Trash.old", '.', "INBOX.", 0, 0,
		  "INBOX.Deleted.old", FALSE, "automap: under \\Trash" },
		{ "Sent", '/', "", 0, 0, "INBOX.Sent", FALSE, NULL },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;
	struct migrate_folder_src src;
	struct migrate_folder_dest dest;
	pool_t pool;

	test_begin("folder map: delimiters and namespace prefix");
	i_zero(&set);
	set.dest_sep = '/';
	map = test_map_init(&set);
	test_map_cases(map, tests, N_ELEMENTS(tests));
	test_lookup(map, "INBOX.Clients.ProjectA", '.', "INBOX.", 0, 0, &dest);
	test_assert_strcmp(dest.decoded_name, "Clients/ProjectA");
	/* results outlive the lookup's data stack frame */
	pool = pool_alloconly_create("test folder map", 256);
	i_zero(&src);
	src.name = "INBOX.a\tb";
	src.delimiter = '.';
	src.ns_prefix = "INBOX.";
	T_BEGIN {
		migrate_folder_map_lookup(map, &src, pool, &dest);
	} T_END;
	(void)t_str_new(1024);
	test_assert_strcmp(dest.vname, "a_b");
	test_assert_strcmp(dest.decoded_name, "a_b");
	test_assert_strcmp(dest.reason, "sanitized: control characters");
	pool_unref(&pool);
	migrate_folder_map_deinit(&map);
	test_assert(map == NULL);

	set.dest_sep = '.';
	map = test_map_init(&set);
	test_map_cases(map, dot_tests, N_ELEMENTS(dot_tests));
	/* decoded_name always uses '/' */
	test_lookup(map, "Clients/ProjectA", '/', "", 0, 0, &dest);
	test_assert_strcmp(dest.decoded_name, "Clients/ProjectA");
	migrate_folder_map_deinit(&map);

	set.dest_prefix = "INBOX.";
	set.automap = TRUE;
	set.special_use_dest[2] = "INBOX.Deleted";
	map = test_map_init(&set);
	test_map_cases(map, prefix_tests, N_ELEMENTS(prefix_tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_utf7(void)
{
	static const struct map_test tests[] = {
		/* "Привет" */
		{ "&BB8EQAQ4BDIENQRC-", '/', "", 0, 0,
		  "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
		  FALSE, NULL },
		/* "Проект" */
		{ "INBOX.&BB8EQAQ+BDUEOgRC-.Caf&AOk-", '.', "INBOX.", 0, 0,
		  "\xd0\x9f\xd1\x80\xd0\xbe\xd0\xb5\xd0\xba\xd1\x82/Caf\xc3\xa9",
		  FALSE, NULL },
		{ "AT&-T", '/', "", 0, 0, "AT&T", FALSE, NULL },
		/* invalid modified UTF-7 is kept as sent */
		{ "&Jjo", '/', "", 0, 0, "&Jjo", FALSE,
		  "invalid modified UTF-7" },
		/* an encoded '/' is invalid (printable ASCII must not be
		   encoded): it stays literal and can't add a level */
		{ "a&AC8-b", '/', "", 0, 0, "a&AC8-b", FALSE,
		  "invalid modified UTF-7" },
		/* raw UTF-8 from a server that doesn't encode */
		{ "Gel\xc3\xb6scht", '/', "", 0, 0, "Gel\xc3\xb6scht", FALSE,
		  "invalid modified UTF-7" },
		/* raw Latin-1 */
		{ "Gel\xf6scht", '/', "", 0, 0, "Gel_scht", FALSE,
		  "invalid UTF-8" },
		/* encoded control and bidi override characters */
		{ "a&AAo-b", '/', "", 0, 0, "a_b", FALSE,
		  "control characters" },
		{ "&IC4-evil", '/', "", 0, 0, "_evil", FALSE,
		  "control characters" },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;

	test_begin("folder map: modified UTF-7");
	i_zero(&set);
	set.dest_sep = '/';
	map = test_map_init(&set);
	test_map_cases(map, tests, N_ELEMENTS(tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_hostile(void)
{
	static const struct map_test tests[] = {
		{ "a/../b", '/', "", 0, 0, "a/_../b", FALSE, "'..'" },
		{ "../../etc/passwd", '/', "", 0, 0, "_../_../etc/passwd",
		  FALSE, "'.' or '..' name part" },
		{ "..", '/', "", 0, 0, "_..", FALSE, "'..'" },
		{ "a/./b", '/', "", 0, 0, "a/_./b", FALSE, "'.'" },
		{ "INBOX...x", '.', "INBOX.", 0, 0, "_/_/x", FALSE,
		  "empty name part" },
		{ "a//b", '/', "", 0, 0, "a/_/b", FALSE, "empty name part" },
		{ "/a", '/', "", 0, 0, "_/a", FALSE, "empty name part" },
		{ "a/", '/', "", 0, 0, "a/_", FALSE, "empty name part" },
		{ "/", '/', "", 0, 0, "_/_", FALSE, "empty name part" },
		{ "~root", '/', "", 0, 0, "_root", FALSE, "leading '~'" },
		{ "a/~b", '/', "", 0, 0, "a/_b", FALSE, "leading '~'" },
		{ "a~b", '/', "", 0, 0, "a~b", FALSE, NULL },
		{ "a\tb\x01", '/', "", 0, 0, "a_b_", FALSE,
		  "control characters" },
		{ "a\x7f" "b", '/', "", 0, 0, "a_b", FALSE,
		  "control characters" },
		{ "a\xc2\x85" "b", '/', "", 0, 0, "a_b", FALSE,
		  "control characters" },
		/* overlong '/', surrogate, truncated sequence */
		{ "a\xc0\xaf" "b", '/', "", 0, 0, "a__b", FALSE,
		  "invalid UTF-8" },
		{ "\xed\xa0\x80", '/', "", 0, 0, "___", FALSE,
		  "invalid UTF-8" },
		{ "x\xe2\x82", '/', "", 0, 0, "x__", FALSE, "invalid UTF-8" },
		/* '/' inside a part of a '.' source */
		{ "INBOX.a/b.c", '.', "INBOX.", 0, 0, "a_b/c", FALSE,
		  "sanitized: '/' in name" },
		{ "INBOX.../..", '.', "INBOX.", 0, 0, "_/_/_/_/_", FALSE,
		  "empty name part" },
	};
	/* with '.' as destination separator the dot escapes stack up */
	static const struct map_test dot_tests[] = {
		{ "a/../b", '/', "", 0, 0, "a.___.b", FALSE, "'..'" },
		{ ".hidden", '/', "", 0, 0, "_hidden", FALSE, "'.'" },
		{ "~x.y", '/', "", 0, 0, "_x_y", FALSE, "leading '~'" },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;
	struct migrate_folder_dest dest;
	string_t *name;
	unsigned int i;

	test_begin("folder map: hostile names");
	i_zero(&set);
	set.dest_sep = '/';
	set.automap = TRUE;
	map = test_map_init(&set);
	test_map_cases(map, tests, N_ELEMENTS(tests));

	/* part length: 255 bytes is fine, 256 is shortened */
	name = t_str_new(1024);
	for (i = 0; i < 255; i++)
		str_append_c(name, 'x');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strcmp(dest.vname, str_c(name)) == 0);
	str_append_c(name, 'x');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strlen(dest.vname) == 255 &&
		    dest.vname[246] == '~' &&
		    strstr(dest.reason, "too long for the destination") != NULL);

	/* whole name: 1000 bytes is fine, 1001 is skipped */
	str_truncate(name, 0);
	for (i = 0; i < 4; i++)
		str_printfa(name, "%s%0249u", i == 0 ? "" : "/", i);
	str_append_c(name, 'x');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strlen(dest.vname) == 1000);
	str_append_c(name, 'x');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(dest.skip && dest.vname == NULL &&
		    strstr(dest.reason, "longer than 1000 bytes") != NULL);

	/* depth: 32 levels is fine, 33 is skipped */
	str_truncate(name, 0);
	str_append(name, "d");
	for (i = 1; i < 32; i++)
		str_append(name, "/d");
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strcmp(dest.vname, str_c(name)) == 0);
	str_append(name, "/d");
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(dest.skip && dest.vname == NULL &&
		    strstr(dest.reason, "more than 32 levels") != NULL);
	/* a noselect folder that can't be created gives no vname */
	test_lookup(map, str_c(name), '/', "", 0,
		    MIGRATE_FOLDER_SRC_FLAG_NOSELECT, &dest);
	test_assert(dest.skip && dest.vname == NULL);
	migrate_folder_map_deinit(&map);

	set.dest_sep = '.';
	map = test_map_init(&set);
	test_map_cases(map, dot_tests, N_ELEMENTS(dot_tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_special_use_flags(void)
{
	static const struct map_test tests[] = {
		{ "Outbox Copies", '/', "", MIGRATE_SPECIAL_USE_SENT, 0,
		  "Sent Messages", FALSE, "automap \\Sent" },
		/* its subfolder, looked up after it, follows it */
		{ "Outbox Copies/2019", '/', "", 0, 0,
		  "Sent Messages/2019", FALSE, "automap: under \\Sent" },
		{ "Papers", '/', "", MIGRATE_SPECIAL_USE_ARCHIVE, 0,
		  "Archive", FALSE, "automap \\Archive" },
		/* a flagged folder at any depth */
		{ "Old/Rubbish", '/', "", MIGRATE_SPECIAL_USE_TRASH, 0,
		  "Trash", FALSE, "automap \\Trash" },
		{ "Trash", '/', "", MIGRATE_SPECIAL_USE_TRASH, 0,
		  "Trash", FALSE, NULL },
		/* non-Gmail \Flagged is kept as a normal folder */
		{ "Flagged", '/', "", MIGRATE_SPECIAL_USE_FLAGGED, 0,
		  "Flagged", FALSE, NULL },
	};
	static const struct map_test_more use_tests[] = {
		/* two flags: the first one counts */
		{ .t = { "Outbox Copies", '/', "",
			 MIGRATE_SPECIAL_USE_SENT | MIGRATE_SPECIAL_USE_ARCHIVE,
			 0, "Sent Messages", FALSE, "automap \\Sent" },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_SENT },
		/* a virtual all-messages folder outside Gmail */
		{ .t = { "Virtual/All", '/', "", MIGRATE_SPECIAL_USE_ALL, 0,
			 "Archive", FALSE, "automap \\All" },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_ALL,
		  .all_mail = TEST_YES },
	};
	/* automap off: flags are reported, names are kept */
	static const struct map_test_more no_automap_tests[] = {
		{ .t = { "Outbox Copies", '/', "", MIGRATE_SPECIAL_USE_SENT, 0,
			 "Outbox Copies", FALSE, NULL },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_SENT },
		{ .t = { "Sent Items", '/', "", 0, 0, "Sent Items", FALSE,
			 NULL },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_NONE },
		{ .t = { "Virtual/All", '/', "", MIGRATE_SPECIAL_USE_ALL, 0,
			 "Virtual/All", FALSE, NULL },
		  .all_mail = TEST_YES },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;

	test_begin("folder map: special use by flag");
	i_zero(&set);
	set.dest_sep = '/';
	set.automap = TRUE;
	set.special_use_dest[0] = "Sent Messages";
	map = test_map_init(&set);
	test_map_cases(map, tests, N_ELEMENTS(tests));
	test_map_more_cases(map, use_tests, N_ELEMENTS(use_tests));
	migrate_folder_map_deinit(&map);

	set.automap = FALSE;
	map = test_map_init(&set);
	test_map_more_cases(map, no_automap_tests,
			    N_ELEMENTS(no_automap_tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_special_use_names(void)
{
	static const struct {
		const char *name;
		const char *ns_prefix;
		enum migrate_special_use use;
	} tests[] = {
		/* Exchange / M365 */
		{ "Sent Items", "", MIGRATE_SPECIAL_USE_SENT },
		{ "Deleted Items", "", MIGRATE_SPECIAL_USE_TRASH },
		{ "Junk Email", "", MIGRATE_SPECIAL_USE_JUNK },
		{ "Junk E-mail", "", MIGRATE_SPECIAL_USE_JUNK },
		{ "Archive", "", MIGRATE_SPECIAL_USE_ARCHIVE },
		{ "Drafts", "", MIGRATE_SPECIAL_USE_DRAFTS },
		/* cPanel / Courier */
		{ "INBOX.Sent", "INBOX.", MIGRATE_SPECIAL_USE_SENT },
		{ "INBOX.Trash", "INBOX.", MIGRATE_SPECIAL_USE_TRASH },
		{ "INBOX.Drafts", "INBOX.", MIGRATE_SPECIAL_USE_DRAFTS },
		{ "INBOX.spam", "INBOX.", MIGRATE_SPECIAL_USE_JUNK },
		{ "INBOX.Junk", "INBOX.", MIGRATE_SPECIAL_USE_JUNK },
		/* the same without NAMESPACE */
		{ "INBOX.Sent", "", MIGRATE_SPECIAL_USE_SENT },
		{ "inbox.Trash", "", MIGRATE_SPECIAL_USE_TRASH },
		/* other servers, languages, case */
		{ "Sent Messages", "", MIGRATE_SPECIAL_USE_SENT },
		{ "sent mail", "", MIGRATE_SPECIAL_USE_SENT },
		{ "Gesendete Objekte", "", MIGRATE_SPECIAL_USE_SENT },
		{ "Elementos enviados", "", MIGRATE_SPECIAL_USE_SENT },
		{ "\xc3\x89l\xc3\xa9ments envoy\xc3\xa9s", "",
		  MIGRATE_SPECIAL_USE_SENT },
		/* the same in NFD, as macOS clients create it */
		{ "E\xcc\x81le\xcc\x81ments envoye\xcc\x81s", "",
		  MIGRATE_SPECIAL_USE_SENT },
		{ "Posta inviata", "", MIGRATE_SPECIAL_USE_SENT },
		{ "Verzonden items", "", MIGRATE_SPECIAL_USE_SENT },
		{ "Skickade objekt", "", MIGRATE_SPECIAL_USE_SENT },
		{ "Sendte elementer", "", MIGRATE_SPECIAL_USE_SENT },
		{ "L\xc3\xa4hetetyt", "", MIGRATE_SPECIAL_USE_SENT },
		{ "Wys\xc5\x82" "ane", "", MIGRATE_SPECIAL_USE_SENT },
		{ "\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb"
		  "\xd0\xb5\xd0\xbd\xd0\xbd\xd1\x8b\xd0\xb5", "",
		  MIGRATE_SPECIAL_USE_SENT },
		{ "\xe9\x80\x81\xe4\xbf\xa1\xe6\xb8\x88\xe3\x81\xbf", "",
		  MIGRATE_SPECIAL_USE_SENT },
		{ "\xe5\xb7\xb2\xe5\x8f\x91\xe9\x80\x81", "",
		  MIGRATE_SPECIAL_USE_SENT },
		{ "Entw\xc3\xbc" "rfe", "", MIGRATE_SPECIAL_USE_DRAFTS },
		{ "Brouillons", "", MIGRATE_SPECIAL_USE_DRAFTS },
		{ "Kopie robocze", "", MIGRATE_SPECIAL_USE_DRAFTS },
		{ "\xd0\xa7\xd0\xb5\xd1\x80\xd0\xbd\xd0\xbe\xd0\xb2\xd0\xb8"
		  "\xd0\xba\xd0\xb8", "", MIGRATE_SPECIAL_USE_DRAFTS },
		{ "\xe4\xb8\x8b\xe6\x9b\xb8\xe3\x81\x8d", "",
		  MIGRATE_SPECIAL_USE_DRAFTS },
		{ "PAPIERKORB", "", MIGRATE_SPECIAL_USE_TRASH },
		{ "Gel\xc3\xb6schte Elemente", "", MIGRATE_SPECIAL_USE_TRASH },
		{ "Corbeille", "", MIGRATE_SPECIAL_USE_TRASH },
		{ "Papelera", "", MIGRATE_SPECIAL_USE_TRASH },
		{ "Bin", "", MIGRATE_SPECIAL_USE_TRASH },
		{ "Ko\xc5\xa1", "", MIGRATE_SPECIAL_USE_TRASH },
		{ "\xd0\x9a\xd0\xbe\xd1\x80\xd0\xb7\xd0\xb8\xd0\xbd\xd0\xb0",
		  "", MIGRATE_SPECIAL_USE_TRASH },
		{ "\xe3\x82\xb4\xe3\x83\x9f\xe7\xae\xb1", "",
		  MIGRATE_SPECIAL_USE_TRASH },
		{ "Spam", "", MIGRATE_SPECIAL_USE_JUNK },
		{ "Bulk Mail", "", MIGRATE_SPECIAL_USE_JUNK },
		{ "Spamverdacht", "", MIGRATE_SPECIAL_USE_JUNK },
		{ "Courrier ind\xc3\xa9sirable", "", MIGRATE_SPECIAL_USE_JUNK },
		{ "Skr\xc3\xa4ppost", "", MIGRATE_SPECIAL_USE_JUNK },
		{ "\xe8\xbf\xb7\xe6\x83\x91\xe3\x83\xa1\xe3\x83\xbc\xe3\x83\xab",
		  "", MIGRATE_SPECIAL_USE_JUNK },
		{ "Archiv", "", MIGRATE_SPECIAL_USE_ARCHIVE },
		{ "Archiwum", "", MIGRATE_SPECIAL_USE_ARCHIVE },
		{ "\xd0\x90\xd1\x80\xd1\x85\xd0\xb8\xd0\xb2", "",
		  MIGRATE_SPECIAL_USE_ARCHIVE },
		/* not special */
		{ "Sentinel", "", MIGRATE_SPECIAL_USE_NONE },
		{ "Projects", "", MIGRATE_SPECIAL_USE_NONE },
	};
	static const char *const default_names[] = {
		"Sent", "Drafts", "Trash", "Junk", "Archive"
	};
	static const struct map_test sub_tests[] = {
		/* only top-level names are recognised */
		{ "Projects/Sent", '/', "", 0, 0, "Projects/Sent",
		  FALSE, NULL },
		{ "INBOX.Clients.Trash", '.', "INBOX.", 0, 0,
		  "Clients/Trash", FALSE, NULL },
		/* subfolders of special folders follow them */
		{ "Sent Items/2019", '/', "", 0, 0, "Sent/2019",
		  FALSE, "automap: under \\Sent" },
		{ "Sent Items/2019/Q1", '/', "", 0, 0, "Sent/2019/Q1",
		  FALSE, "automap: under \\Sent" },
		{ "INBOX.Sent.2019", '.', "INBOX.", 0, 0, "Sent/2019",
		  FALSE, NULL },
		{ "INBOX/Deleted Items/x", '/', "", 0, 0, "Trash/x",
		  FALSE, "automap: under \\Trash" },
		{ "Sent/2019", '/', "", 0, 0, "Sent/2019", FALSE, NULL },
	};
	/* configured destination names, '.' separator */
	static const struct map_test_more configured_tests[] = {
		{ .t = { "Sent Items/2019", '/', "", 0, 0,
			 "Sent Messages.2019", FALSE,
			 "automap: under \\Sent" } },
		{ .t = { "INBOX.Trash", '.', "INBOX.", 0, 0,
			 "Deleted Messages", FALSE, "automap \\Trash" },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_TRASH },
		/* "Junk" is "Junk": no reason */
		{ .t = { "INBOX.Junk", '.', "INBOX.", 0, 0, "Junk", FALSE,
			 NULL } },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;
	struct migrate_folder_dest dest;
	string_t *mutf7 = t_str_new(128);
	const char *name;
	unsigned int i, idx;
	char delim;

	test_begin("folder map: special use by name");
	i_zero(&set);
	set.dest_sep = '/';
	set.automap = TRUE;
	map = test_map_init(&set);
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		str_truncate(mutf7, 0);
		test_assert_idx(imap_utf8_to_utf7(tests[i].name, mutf7) == 0, i);
		delim = strchr(tests[i].name, '.') != NULL ? '.' : '/';
		test_lookup(map, str_c(mutf7), delim, tests[i].ns_prefix,
			    0, 0, &dest);
		test_assert_idx(dest.special_use == tests[i].use, i);
		if (tests[i].use == MIGRATE_SPECIAL_USE_NONE) {
			test_assert_strcmp_idx(dest.vname, tests[i].name, i);
			continue;
		}
		for (idx = 0; (tests[i].use & (1U << idx)) == 0; idx++) ;
		name = default_names[idx];
		test_assert_strcmp_idx(dest.vname, name, i);
		test_assert_idx(!dest.skip, i);
	}
	test_map_cases(map, sub_tests, N_ELEMENTS(sub_tests));
	migrate_folder_map_deinit(&map);

	set.dest_sep = '.';
	set.special_use_dest[0] = "Sent Messages";
	set.special_use_dest[2] = "Deleted Messages";
	map = test_map_init(&set);
	test_map_more_cases(map, configured_tests,
			    N_ELEMENTS(configured_tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_names_yield_to_flags(void)
{
	static const struct map_test_more tests[] = {
		/* the source flags Drafts \Drafts: "Entwürfe" is a plain
		   folder */
		{ .t = { "Drafts", '/', "", MIGRATE_SPECIAL_USE_DRAFTS, 0,
			 "Drafts", FALSE, NULL } },
		{ .t = { "Entw&APw-rfe", '/', "", 0, 0, "Entw\xc3\xbcrfe",
			 FALSE, NULL },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_NONE },
		/* uses the source doesn't flag still map by name */
		{ .t = { "Papierkorb", '/', "", 0, 0, "Trash", FALSE,
			 "automap \\Trash" } },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;

	test_begin("folder map: a flagged folder beats a localized name");
	i_zero(&set);
	set.dest_sep = '/';
	set.automap = TRUE;
	set.source_flagged = MIGRATE_SPECIAL_USE_DRAFTS;
	map = test_map_init(&set);
	test_map_more_cases(map, tests, N_ELEMENTS(tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_rules(void)
{
	static const char *rules =
		"# migrate_folder_map test\n"
		"\n"
		"^Clients/(.*)$ -> Customers/$1\n"
		"^Clients/Secret$ -> [SKIP]\n"
		"^Old(/|$) -> [skip]\n"
		"   ^(?<year>[0-9]{4})-(.*)$   ->   Years/${year}/$2   \n"
		"Sent Items -> Sent Stuff\n"
		"^Price\\$$ -> Cost $$1\r\n"
		"^evil$ -> ../x/~y//\n"
		"^dots$ -> a.b\n"
		"^Archive/(.*)$ -> $1\n"
		"^Old Inbox$ -> INBOX";
	static const struct map_test tests[] = {
		{ "INBOX.Clients.ProjectA", '.', "INBOX.", 0, 0,
		  "Customers/ProjectA", FALSE, "rules.conf:3" },
		/* first match wins: line 3 before the [SKIP] on line 4 */
		{ "Clients/Secret", '/', "", 0, 0,
		  "Customers/Secret", FALSE, "rules.conf:3" },
		/* [SKIP], case-insensitive */
		{ "Old", '/', "", 0, 0, NULL, TRUE, "skipped by" },
		{ "Old/2001", '/', "", 0, 0, NULL, TRUE, "rules.conf:5" },
		{ "Older", '/', "", 0, 0, "Older", FALSE, NULL },
		/* named and numbered groups */
		{ "2019-Taxes", '/', "", 0, 0,
		  "Years/2019/Taxes", FALSE, "rules.conf:6" },
		/* not anchored: the matched part is replaced, the rest kept */
		{ "My Sent Items/x", '/', "", 0, 0,
		  "My Sent Stuff/x", FALSE, "rules.conf:7" },
		/* a rule wins over automap */
		{ "Sent Items", '/', "", MIGRATE_SPECIAL_USE_SENT, 0,
		  "Sent Stuff", FALSE, "rules.conf:7" },
		{ "Price$", '/', "", 0, 0, "Cost $1", FALSE, "rules.conf:8" },
		/* rule output is sanitized too */
		{ "evil", '/', "", 0, 0, "_../x/_y/_/_", FALSE, "sanitized: " },
		{ "Archive/Reports", '/', "", 0, 0,
		  "Reports", FALSE, "rules.conf:11" },
		{ "Old Inbox", '/', "", 0, 0, "INBOX", FALSE, "rules.conf:12" },
		/* rules see the decoded name */
		{ "Clients.Caf&AOk-", '.', "", 0, 0,
		  "Customers/Caf\xc3\xa9", FALSE, "rules.conf:3" },
	};
	/* '/' from the rule is converted to the destination separator,
	   a '.' inside a part is escaped */
	/* a rule wins over automap, the special use stays */
	static const struct map_test_more use_tests[] = {
		{ .t = { "Sent Items", '/', "", MIGRATE_SPECIAL_USE_SENT, 0,
			 "Sent Stuff", FALSE, "rules.conf:7" },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_SENT },
	};
	static const struct map_test dot_tests[] = {
		{ "Clients/ProjectA", '/', "", 0, 0,
		  "Customers.ProjectA", FALSE, "rules.conf:3" },
		{ "dots", '/', "", 0, 0, "a_b", FALSE, "rules.conf:10" },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;
	struct migrate_folder_dest dest;
	const char *path;

	test_begin("folder map: rules");
	path = test_write_file("rules.conf", rules);
	i_zero(&set);
	set.dest_sep = '/';
	set.automap = TRUE;
	set.rules_path = path;
	map = test_map_init(&set);
	test_map_cases(map, tests, N_ELEMENTS(tests));
	test_map_more_cases(map, use_tests, N_ELEMENTS(use_tests));
	/* the reason names the file and line exactly */
	test_lookup(map, "Clients/ProjectA", '/', "", 0, 0, &dest);
	test_assert_strcmp(dest.reason, t_strdup_printf(
		"renamed by migrate_folder_map rule %s:3", path));
	test_lookup(map, "Old", '/', "", 0, 0, &dest);
	test_assert_strcmp(dest.reason, t_strdup_printf(
		"skipped by migrate_folder_map rule %s:5", path));
	migrate_folder_map_deinit(&map);

	set.dest_sep = '.';
	map = test_map_init(&set);
	test_map_cases(map, dot_tests, N_ELEMENTS(dot_tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_rules_invalid(void)
{
	static const struct {
		const char *rules;
		unsigned int line;
		const char *error;
	} tests[] = {
		{ "ok -> x\n\n^(unclosed -> y\n", 3,
		  "missing closing parenthesis" },
		{ "# comment\nno arrow here\n", 2, "Missing ' -> '" },
		{ "a->b\n", 1, "Missing ' -> '" },
		{ " -> b\n", 1, "Empty pattern" },
		{ "^(a)$ -> $2\n", 1, "group $2" },
		{ "^(a)$ -> ${nope}\n", 1, "unknown group ${nope}" },
		{ "^(a)$ -> ${1\n", 1, "Unterminated" },
		{ "^(a)$ -> $x\n", 1, "'$' in replacement" },
		{ "^(a)$ -> ${99999999999}\n", 1, "unknown group" },
		{ "x -> y\n[z -> y\n", 2, "missing terminating ]" },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map = NULL;
	const char *path, *error, *prefix;
	unsigned int i;

	test_begin("folder map: invalid rules");
	i_zero(&set);
	set.dest_sep = '/';
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		path = test_write_file(t_strdup_printf("bad%u.conf", i),
				       tests[i].rules);
		set.rules_path = path;
		error = NULL;
		test_assert_idx(migrate_folder_map_init(&set, &map,
							&error) < 0, i);
		test_assert_idx(map == NULL, i);
		prefix = t_strdup_printf("%s:%u: ", path, tests[i].line);
		test_assert_idx(error != NULL &&
				str_begins_with(error, prefix) &&
				strstr(error, tests[i].error) != NULL, i);
	}
	set.rules_path = t_strconcat(test_dir, "/nonexistent.conf", NULL);
	test_assert(migrate_folder_map_init(&set, &map, &error) < 0);
	test_assert(strstr(error, "nonexistent.conf") != NULL);

	set.rules_path = NULL;
	set.include = "(";
	test_assert(migrate_folder_map_init(&set, &map, &error) < 0);
	test_assert(str_begins_with(error, "migrate_include: "));
	set.include = NULL;
	set.exclude = "[";
	test_assert(migrate_folder_map_init(&set, &map, &error) < 0);
	test_assert(str_begins_with(error, "migrate_exclude: "));
	test_end();
}

static void test_folder_map_include_exclude(void)
{
	static const struct map_test tests[] = {
		{ "INBOX", '/', "", 0, 0, "INBOX", FALSE, NULL },
		{ "Work/A", '/', "", 0, 0, "Work/A", FALSE, NULL },
		{ "INBOX.Work.A", '.', "INBOX.", 0, 0, "Work/A", FALSE, NULL },
		/* exclude wins */
		{ "Work/Private", '/', "", 0, 0, NULL, TRUE,
		  "excluded by migrate_exclude" },
		{ "Work/Private/x", '/', "", 0, 0, NULL, TRUE,
		  "excluded by migrate_exclude" },
		{ "Other", '/', "", 0, 0, NULL, TRUE,
		  "not matched by migrate_include" },
		{ "Workshop", '/', "", 0, 0, NULL, TRUE,
		  "not matched by migrate_include" },
		/* matched against the decoded name */
		{ "Work/Caf&AOk-", '/', "", 0, 0, NULL, TRUE,
		  "excluded by migrate_exclude" },
	};
	/* a skipped folder still has its decoded name */
	static const struct map_test_more named_tests[] = {
		{ .t = { "Work/Private", '/', "", 0, 0, NULL, TRUE,
			 "excluded by migrate_exclude" },
		  .decoded_name = "Work/Private" },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;

	test_begin("folder map: include and exclude");
	i_zero(&set);
	set.dest_sep = '/';
	set.include = "^(INBOX|Work)(/|$)";
	set.exclude = "^Work/(Private|Caf\xc3\xa9)(/|$)";
	map = test_map_init(&set);
	test_map_cases(map, tests, N_ELEMENTS(tests));
	test_map_more_cases(map, named_tests, N_ELEMENTS(named_tests));
	migrate_folder_map_deinit(&map);
	test_end();
}

static void test_folder_map_gmail(void)
{
	static const struct map_test tests[] = {
		{ "INBOX", '/', "", 0, 0, "INBOX", FALSE, NULL },
		{ "[Gmail]", '/', "", 0, MIGRATE_FOLDER_SRC_FLAG_NOSELECT,
		  NULL, TRUE, "Gmail system folder container" },
		{ "[Gmail]/All Mail", '/', "", MIGRATE_SPECIAL_USE_ALL, 0,
		  "Archives", FALSE, "automap \\All" },
		{ "[Gmail]/Sent Mail", '/', "", MIGRATE_SPECIAL_USE_SENT, 0,
		  "Sent", FALSE, "automap \\Sent" },
		{ "[Gmail]/Drafts", '/', "", MIGRATE_SPECIAL_USE_DRAFTS, 0,
		  "Drafts", FALSE, "automap \\Drafts" },
		{ "[Gmail]/Spam", '/', "", MIGRATE_SPECIAL_USE_JUNK, 0,
		  NULL, TRUE, "skipped by migrate_gmail_skip" },
		{ "[Gmail]/Trash", '/', "", MIGRATE_SPECIAL_USE_TRASH, 0,
		  NULL, TRUE, "skipped by migrate_gmail_skip" },
		{ "[Gmail]/Starred", '/', "", MIGRATE_SPECIAL_USE_FLAGGED, 0,
		  NULL, TRUE, "Gmail virtual folder; its messages carry \\Flagged" },
		{ "[Gmail]/Important", '/', "",
		  MIGRATE_SPECIAL_USE_IMPORTANT, 0,
		  NULL, TRUE, "Gmail virtual folder; its messages are in" },
		/* XLIST-less: the names alone */
		{ "[Google Mail]/All Mail", '/', "", 0, 0,
		  "Archives", FALSE, "automap \\All" },
		{ "[Google Mail]/Sent Mail", '/', "", 0, 0,
		  "Sent", FALSE, "automap \\Sent" },
		{ "[Google Mail]/Bin", '/', "", 0, 0,
		  NULL, TRUE, "skipped by migrate_gmail_skip" },
		{ "[Google Mail]/Spam", '/', "", 0, 0,
		  NULL, TRUE, "skipped by migrate_gmail_skip" },
		{ "[Google Mail]/Starred", '/', "", 0, 0,
		  NULL, TRUE, "Gmail virtual folder" },
		{ "[Gmail]/Important", '/', "", 0, 0,
		  NULL, TRUE, "Gmail virtual folder" },
		/* localized Gmail with SPECIAL-USE */
		{ "[Gmail]/Gesendet", '/', "", MIGRATE_SPECIAL_USE_SENT, 0,
		  "Sent", FALSE, "automap \\Sent" },
		/* user labels are folders, even with special names */
		{ "Spam", '/', "", 0, 0, "Spam", FALSE, NULL },
		{ "Work/Clients", '/', "", 0, 0, "Work/Clients", FALSE, NULL },
	};
	static const struct map_test no_automap_tests[] = {
		{ "[Gmail]", '/', "", 0, MIGRATE_FOLDER_SRC_FLAG_NOSELECT,
		  "[Gmail]", TRUE, "not selectable" },
		{ "[Gmail]/Sent Mail", '/', "", MIGRATE_SPECIAL_USE_SENT, 0,
		  "[Gmail]/Sent Mail", FALSE, NULL },
		{ "[Gmail]/All Mail", '/', "", 0, 0,
		  "[Gmail]/All Mail", FALSE, NULL },
		/* skipping doesn't depend on automap */
		{ "[Gmail]/Spam", '/', "", 0, 0,
		  NULL, TRUE, "skipped by migrate_gmail_skip" },
		{ "[Gmail]/Trash", '/', "", 0, 0, "[Gmail]/Trash", FALSE, NULL },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;

	/* the "all mail" folder, by flag or by name */
	static const struct map_test_more all_mail_tests[] = {
		{ .t = { "[Gmail]/All Mail", '/', "", MIGRATE_SPECIAL_USE_ALL,
			 0, "Archives", FALSE, "automap \\All" },
		  .check_use = TRUE, .dest_use = MIGRATE_SPECIAL_USE_ALL,
		  .all_mail = TEST_YES },
		{ .t = { "[Google Mail]/All Mail", '/', "", 0, 0,
			 "Archives", FALSE, "automap \\All" },
		  .all_mail = TEST_YES },
		{ .t = { "[Gmail]/Sent Mail", '/', "", 0, 0,
			 "Sent", FALSE, "automap \\Sent" },
		  .all_mail = TEST_NO },
	};
	static const struct map_test_more no_automap_all_mail_tests[] = {
		{ .t = { "[Gmail]/All Mail", '/', "", 0, 0,
			 "[Gmail]/All Mail", FALSE, NULL },
		  .all_mail = TEST_YES },
	};

	test_begin("folder map: Gmail");
	i_zero(&set);
	set.dest_sep = '/';
	set.automap = TRUE;
	set.gmail = TRUE;
	set.gmail_skip = MIGRATE_SPECIAL_USE_JUNK | MIGRATE_SPECIAL_USE_TRASH;
	set.special_use_dest[4] = "Archives";
	map = test_map_init(&set);
	test_map_cases(map, tests, N_ELEMENTS(tests));
	test_map_more_cases(map, all_mail_tests, N_ELEMENTS(all_mail_tests));
	migrate_folder_map_deinit(&map);

	set.automap = FALSE;
	set.gmail_skip = MIGRATE_SPECIAL_USE_JUNK;
	map = test_map_init(&set);
	test_map_cases(map, no_automap_tests, N_ELEMENTS(no_automap_tests));
	test_map_more_cases(map, no_automap_all_mail_tests,
			    N_ELEMENTS(no_automap_all_mail_tests));
	migrate_folder_map_deinit(&map);

	/* one rule for "is this Gmail's layout", any case, whole component */
	test_end();
}

static void test_special_use_parse(void)
{
	enum migrate_special_use uses;
	const char *error;

	test_begin("folder map: special-use flags");
	test_assert(migrate_special_use_parse("\\sent") ==
		    MIGRATE_SPECIAL_USE_SENT);
	test_assert(migrate_special_use_parse("\\Important") ==
		    MIGRATE_SPECIAL_USE_IMPORTANT);
	test_assert(migrate_special_use_parse("\\Spam") ==
		    MIGRATE_SPECIAL_USE_JUNK);
	test_assert(migrate_special_use_parse("\\AllMail") ==
		    MIGRATE_SPECIAL_USE_ALL);
	test_assert(migrate_special_use_parse("\\Starred") ==
		    MIGRATE_SPECIAL_USE_FLAGGED);
	test_assert(migrate_special_use_parse("\\Noselect") ==
		    MIGRATE_SPECIAL_USE_NONE);
	test_assert(migrate_special_use_parse(NULL) ==
		    MIGRATE_SPECIAL_USE_NONE);
	test_assert_strcmp(migrate_special_use_name(MIGRATE_SPECIAL_USE_TRASH),
			   "\\Trash");
	test_assert_strcmp(migrate_special_use_name(MIGRATE_SPECIAL_USE_ALL),
			   "\\All");
	test_assert_strcmp(migrate_special_use_name(MIGRATE_SPECIAL_USE_NONE),
			   "");
	test_assert(migrate_special_use_parse_list("\\Junk \\Trash",
						   &uses, &error) == 0 &&
		    uses == (MIGRATE_SPECIAL_USE_JUNK |
			     MIGRATE_SPECIAL_USE_TRASH));
	test_assert(migrate_special_use_parse_list("", &uses, &error) == 0 &&
		    uses == MIGRATE_SPECIAL_USE_NONE);
	test_assert(migrate_special_use_parse_list("\\Junk \\Bogus",
						   &uses, &error) < 0 &&
		    strstr(error, "\\Bogus") != NULL);
	test_end();
}

static char test_dir_template[] = "/tmp/test-migrate-folder-map.XXXXXX";

static void test_cleanup(void)
{
	const char *error;

	if (unlink_directory(test_dir, UNLINK_DIRECTORY_FLAG_RMDIR,
			     &error) < 0)
		i_error("unlink_directory(%s) failed: %s", test_dir, error);
}

static void test_folder_map_dest_layout(void)
{
	static const struct {
		enum migrate_dest_layout layout;
		const char *name, *vname;
	} tests[] = {
		/* Dovecot's own files, on every storage */
		{ MIGRATE_DEST_LAYOUT_DBOX, "INBOX/dovecot.index",
		  "INBOX/dovecot.index_" },
		{ MIGRATE_DEST_LAYOUT_DBOX, "dbox-Mails", "dbox-Mails_" },
		{ MIGRATE_DEST_LAYOUT_DBOX, "cur", "cur" },
		{ MIGRATE_DEST_LAYOUT_DBOX, "dovecots", "dovecots" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "dovecot-uidlist.lock",
		  "dovecot-uidlist.lock_" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "dovecot", "dovecot" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "a/dovecot-keywords",
		  "a/dovecot-keywords_" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "dovecot.list.index.log",
		  "dovecot.list.index.log_" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "subscriptions",
		  "subscriptions_" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "tmp", "tmp_" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "New", "New" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_FS, "a.b", "a.b" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_PP, "a.b/c", "a_b/c" },
		{ MIGRATE_DEST_LAYOUT_MAILDIR_PP, "maildirfolder",
		  "maildirfolder_" },
		{ MIGRATE_DEST_LAYOUT_MBOX, "Foo.lock", "Foo.lock_" },
		{ MIGRATE_DEST_LAYOUT_MBOX, "a/.imap", "a/.imap_" },
		{ MIGRATE_DEST_LAYOUT_MBOX, "new", "new" },
		{ MIGRATE_DEST_LAYOUT_OTHER, "dovecot.index.log",
		  "dovecot.index.log_" },
	};
	struct migrate_folder_map_settings set;
	struct migrate_folder_map *map;
	struct migrate_folder_dest dest;
	string_t *name;
	const char *v1, *v2;
	unsigned int i;

	test_begin("folder map: destination layouts");
	test_assert(migrate_dest_layout_get("sdbox", "fs") ==
		    MIGRATE_DEST_LAYOUT_DBOX);
	test_assert(migrate_dest_layout_get("maildir", "Maildir++") ==
		    MIGRATE_DEST_LAYOUT_MAILDIR_PP);
	test_assert(migrate_dest_layout_get("maildir", "fs") ==
		    MIGRATE_DEST_LAYOUT_MAILDIR_FS);
	test_assert(migrate_dest_layout_get("mbox", "fs") ==
		    MIGRATE_DEST_LAYOUT_MBOX);
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		i_zero(&set);
		set.dest_sep = '/';
		set.dest_layout = tests[i].layout;
		map = test_map_init(&set);
		test_lookup(map, tests[i].name, '/', "", 0, 0, &dest);
		test_assert_strcmp_idx(dest.vname, tests[i].vname, i);
		test_assert_idx(strcmp(tests[i].name, tests[i].vname) == 0 ||
				dest.reason != NULL, i);
		migrate_folder_map_deinit(&map);
	}

	/* mbox: 250 bytes is fine (the dotlock adds ".lock"), 251 is cut;
	   two cut names that differ only at the end stay apart */
	i_zero(&set);
	set.dest_sep = '/';
	set.dest_layout = MIGRATE_DEST_LAYOUT_MBOX;
	map = test_map_init(&set);
	name = t_str_new(512);
	for (i = 0; i < 250; i++)
		str_append_c(name, 'm');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strcmp(dest.vname, str_c(name)) == 0);
	str_append(name, "12345");
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	v1 = t_strdup(dest.vname);
	test_assert(!dest.skip && strlen(v1) == 250 && v1[241] == '~');
	str_truncate(name, str_len(name) - 1);
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	v2 = t_strdup(dest.vname);
	test_assert(!dest.skip && strlen(v2) == 250 && strcmp(v1, v2) != 0);
	/* not in the middle of a UTF-8 character */
	str_truncate(name, 0);
	for (i = 0; i < 130; i++)
		str_append(name, "\xc3\xa4");
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strlen(dest.vname) <= 250 &&
		    strstr(dest.vname, "\xc3~") == NULL &&
		    strstr(dest.vname, "\xa4~") != NULL);
	migrate_folder_map_deinit(&map);

	/* Maildir++: ".a/b" is one directory: 254 bytes of name fit */
	set.dest_layout = MIGRATE_DEST_LAYOUT_MAILDIR_PP;
	map = test_map_init(&set);
	str_truncate(name, 0);
	for (i = 0; i < 254; i++)
		str_append_c(name, 'p');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strcmp(dest.vname, str_c(name)) == 0);
	str_append_c(name, 'p');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strlen(dest.vname) == 254 &&
		    dest.vname[245] == '~');
	str_truncate(name, 0);
	str_append(name, "parent/");
	for (i = 0; i < 250; i++)
		str_append_c(name, 'c');
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(!dest.skip && strlen(dest.vname) == 254 &&
		    str_begins_with(dest.vname, "parent/cc"));
	/* a parent that leaves no room: skipped with the reason */
	str_truncate(name, 0);
	for (i = 0; i < 250; i++)
		str_append_c(name, 'q');
	str_append(name, "/child");
	test_lookup(map, str_c(name), '/', "", 0, 0, &dest);
	test_assert(dest.skip && dest.vname == NULL &&
		    strstr(dest.reason, "Maildir++") != NULL);
	migrate_folder_map_deinit(&map);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_folder_map_delimiters,
		test_folder_map_utf7,
		test_folder_map_hostile,
		test_folder_map_special_use_flags,
		test_folder_map_special_use_names,
		test_folder_map_names_yield_to_flags,
		test_folder_map_rules,
		test_folder_map_rules_invalid,
		test_folder_map_include_exclude,
		test_folder_map_gmail,
		test_special_use_parse,
		test_folder_map_dest_layout,
		/* while lib is still initialized */
		test_cleanup,
		NULL
	};

	test_dir = mkdtemp(test_dir_template);
	if (test_dir == NULL) {
		fprintf(stderr, "mkdtemp(%s) failed: %s\n",
			test_dir_template, strerror(errno));
		return 1;
	}
	return test_run(test_functions);
}
