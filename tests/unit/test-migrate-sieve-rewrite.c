/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "test-common.h"
#include "migrate-compat.h"
#include "migrate-sieve-rewrite.h"

/* The source's "INBOX." namespace with "." as separator onto a
   destination with "/" and no prefix; "INBOX.Spam" is skipped */
static enum migrate_sieve_map_result
test_map(const char *name, void *context ATTR_UNUSED,
	 const char **new_name_r, const char **reason_r)
{
	string_t *str;
	const char *p;

	if (strcmp(name, "INBOX.Spam") == 0) {
		*reason_r = "excluded";
		return MIGRATE_SIEVE_MAP_SKIPPED;
	}
	if (strcmp(name, "INBOX.Dotted") == 0) {
		*new_name_r = ".Dotted";
		return MIGRATE_SIEVE_MAP_CHANGED;
	}
	if (!str_begins_with(name, "INBOX."))
		return MIGRATE_SIEVE_MAP_UNCHANGED;
	str = t_str_new(64);
	for (p = name + 6; *p != '\0'; p++)
		str_append_c(str, *p == '.' ? '/' : *p);
	*new_name_r = str_c(str);
	return MIGRATE_SIEVE_MAP_CHANGED;
}

struct rewrite_case {
	const char *input, *output;
	/* rewrites made, and names left unchanged for a reason */
	unsigned int changed, skipped;
};

static const struct rewrite_case rewrite_cases[] = {
	/* plain fileinto, with require and tags */
	{ "require \"fileinto\";\nfileinto \"INBOX.Archive.2019\";\n",
	  "require \"fileinto\";\nfileinto \"Archive/2019\";\n", 1, 0 },
	{ "require [\"fileinto\", \"mailbox\", \"copy\"];\n"
	  "if header :contains \"subject\" \"x\" {\n"
	  "  fileinto :copy :create \"INBOX.A\";\n}\n",
	  "require [\"fileinto\", \"mailbox\", \"copy\"];\n"
	  "if header :contains \"subject\" \"x\" {\n"
	  "  fileinto :copy :create \"A\";\n}\n", 1, 0 },
	/* a value-taking tag: :flags' list and :specialuse are no mailbox */
	{ "fileinto :flags [\"INBOX.x\", \"\\\\Seen\"] :specialuse \"INBOX.y\" \"INBOX.z\";",
	  "fileinto :flags [\"INBOX.x\", \"\\\\Seen\"] :specialuse \"INBOX.y\" \"z\";",
	  1, 0 },
	/* identifiers are case-insensitive */
	{ "FileInto \"INBOX.B\";", "FileInto \"B\";", 1, 0 },
	/* escapes: \" and \\ and a needless \q are decoded, the new name is
	   encoded again */
	{ "fileinto \"INBOX.a\\\"b\\\\c\\q\";",
	  "fileinto \"a\\\"b\\\\cq\";", 1, 0 },
	/* an unchanged name keeps its needless escape byte for byte */
	{ "fileinto \"Fo\\o\";", "fileinto \"Fo\\o\";", 0, 0 },
	/* comments mentioning fileinto are left alone */
	{ "# fileinto \"INBOX.X\";\n/* fileinto \"INBOX.Y\"; */ keep;\n"
	  "fileinto /* here */ \"INBOX.Z\"; # fileinto \"INBOX.W\"\n",
	  "# fileinto \"INBOX.X\";\n/* fileinto \"INBOX.Y\"; */ keep;\n"
	  "fileinto /* here */ \"Z\"; # fileinto \"INBOX.W\"\n", 1, 0 },
	/* strings mentioning fileinto are no command */
	{ "if header :is \"x\" \"fileinto\" { discard; }\n"
	  "vacation \"fileinto \\\"INBOX.Q\\\"\";",
	  "if header :is \"x\" \"fileinto\" { discard; }\n"
	  "vacation \"fileinto \\\"INBOX.Q\\\"\";", 0, 0 },
	/* a multi-line string: only the body changes, with dot-stuffing;
	   the text: line keeps its comment */
	{ "fileinto text: # box\r\nINBOX.Dotted\r\n.\r\n;\r\n",
	  "fileinto text: # box\r\n..Dotted\r\n.\r\n;\r\n", 1, 0 },
	{ "fileinto text:\n..x\n.\n;", "fileinto text:\n..x\n.\n;", 0, 0 },
	/* a vacation reason in text: that mentions fileinto stays */
	{ "vacation :days 3 text:\nfileinto \"INBOX.T\";\n..\n.\n;\n"
	  "fileinto \"INBOX.U\";\n",
	  "vacation :days 3 text:\nfileinto \"INBOX.T\";\n..\n.\n;\n"
	  "fileinto \"U\";\n", 1, 0 },
	/* mailboxexists takes a string list */
	{ "if mailboxexists [\"INBOX.A\", \"INBOX\", \"INBOX.B.C\"] { stop; }",
	  "if mailboxexists [\"A\", \"INBOX\", \"B/C\"] { stop; }", 2, 0 },
	{ "if not mailboxexists \"INBOX.A\" { keep; }",
	  "if not mailboxexists \"A\" { keep; }", 1, 0 },
	/* tests nested in anyof/allof */
	{ "if anyof(mailboxexists \"INBOX.A\", header :is \"a\" \"INBOX.B\") { fileinto \"INBOX.C\"; }",
	  "if anyof(mailboxexists \"A\", header :is \"a\" \"INBOX.B\") { fileinto \"C\"; }",
	  2, 0 },
	/* vacation and notify :fcc, but not their other strings */
	{ "vacation :subject \"INBOX.S\" :fcc \"INBOX.Sent\" :days 1 \"INBOX.R\";",
	  "vacation :subject \"INBOX.S\" :fcc \"Sent\" :days 1 \"INBOX.R\";", 1, 0 },
	{ "notify :fcc \"INBOX.N\" :message \"INBOX.M\" \"mailto:a@b\";",
	  "notify :fcc \"N\" :message \"INBOX.M\" \"mailto:a@b\";", 1, 0 },
	/* metadata: the mailbox comes after match and comparator tags */
	{ "if metadata :comparator \"i;octet\" :is \"INBOX.A\" \"/private/x\" \"y\" { stop; }",
	  "if metadata :comparator \"i;octet\" :is \"A\" \"/private/x\" \"y\" { stop; }",
	  1, 0 },
	{ "if metadataexists \"INBOX.A\" \"/private/x\" { stop; }",
	  "if metadataexists \"A\" \"/private/x\" { stop; }", 1, 0 },
	/* specialuse_exists: a mailbox only with two arguments */
	{ "if specialuse_exists \"INBOX.A\" \"\\\\Junk\" { stop; }\n"
	  "if specialuse_exists [\"\\\\Junk\"] { stop; }",
	  "if specialuse_exists \"A\" \"\\\\Junk\" { stop; }\n"
	  "if specialuse_exists [\"\\\\Junk\"] { stop; }", 1, 0 },
	/* a skipped folder and a variable are left as they are, reported */
	{ "fileinto \"INBOX.Spam\"; fileinto \"INBOX.${x}\";",
	  "fileinto \"INBOX.Spam\"; fileinto \"INBOX.${x}\";", 0, 2 },
	/* names outside the map stay */
	{ "fileinto \"Other\"; fileinto \"INBOX\";",
	  "fileinto \"Other\"; fileinto \"INBOX\";", 0, 0 },
	/* numbers with quantifiers, tags and other commands around */
	{ "if size :over 1M { fileinto \"INBOX.Big\"; } redirect \"INBOX.x@y\";",
	  "if size :over 1M { fileinto \"Big\"; } redirect \"INBOX.x@y\";", 1, 0 },
	/* UTF-8 names pass through */
	{ "fileinto \"INBOX.Entw\xc3\xbcrfe\";", "fileinto \"Entw\xc3\xbcrfe\";", 1, 0 },
};

static void test_sieve_rewrite_cases(void)
{
	unsigned int i;

	test_begin("sieve rewrite: cases");
	for (i = 0; i < N_ELEMENTS(rewrite_cases); i++) T_BEGIN {
		const struct rewrite_case *c = &rewrite_cases[i];
		ARRAY_TYPE(migrate_sieve_rewrite) rewrites;
		const struct migrate_sieve_rewrite *rw;
		string_t *out = t_str_new(256);
		unsigned int changed = 0, skipped = 0;
		const char *error;
		pool_t pool = pool_alloconly_create("sieve rewrite", 1024);
		int ret;

		ret = migrate_sieve_rewrite((const unsigned char *)c->input,
					    strlen(c->input), test_map, NULL,
					    pool, out,
					    &rewrites, &error);
		test_assert_idx(ret == 0, i);
		test_assert_idx(strcmp(str_c(out), c->output) == 0, i);
		array_foreach(&rewrites, rw) {
			if (rw->new_name != NULL)
				changed++;
			else {
				test_assert_idx(rw->reason != NULL, i);
				skipped++;
			}
		}
		test_assert_idx(changed == c->changed, i);
		test_assert_idx(skipped == c->skipped, i);
		pool_unref(&pool);
	} T_END;
	test_end();
}

static void test_sieve_rewrite_details(void)
{
	ARRAY_TYPE(migrate_sieve_rewrite) rewrites;
	const struct migrate_sieve_rewrite *rw;
	string_t *out = t_str_new(256);
	const char *script = "# x\n\nif true {\n  fileinto \"INBOX.A.B\";\n}\n";
	const char *error;
	pool_t pool = pool_alloconly_create("sieve rewrite", 1024);

	test_begin("sieve rewrite: what is reported");
	test_assert(migrate_sieve_rewrite((const unsigned char *)script,
					  strlen(script), test_map, NULL,
					  pool, out,
					  &rewrites, &error) == 0);
	test_assert(array_count(&rewrites) == 1);
	rw = array_front(&rewrites);
	test_assert(strcmp(rw->command, "fileinto") == 0);
	test_assert(rw->line == 4);
	test_assert(strcmp(rw->old_name, "INBOX.A.B") == 0);
	test_assert(strcmp(rw->new_name, "A/B") == 0);
	pool_unref(&pool);
	test_end();
}

static void test_sieve_rewrite_broken(void)
{
	static const char *const broken[] = {
		"fileinto \"INBOX.A;",
		"/* fileinto \"INBOX.A\";",
		"fileinto text:\nINBOX.A\n",
		"fileinto text: x\nINBOX.A\n.\n",
		"fileinto \"INBOX.A\\",
	};
	unsigned int i;

	test_begin("sieve rewrite: a script that can't be tokenized stays");
	for (i = 0; i < N_ELEMENTS(broken); i++) T_BEGIN {
		ARRAY_TYPE(migrate_sieve_rewrite) rewrites;
		string_t *out = t_str_new(64);
		const char *error = NULL;
		pool_t pool = pool_alloconly_create("sieve rewrite", 1024);

		test_assert_idx(migrate_sieve_rewrite(
			(const unsigned char *)broken[i], strlen(broken[i]),
			test_map, NULL, pool, out,
			&rewrites, &error) < 0, i);
		test_assert_idx(error != NULL, i);
		test_assert_idx(strcmp(str_c(out), broken[i]) == 0, i);
		pool_unref(&pool);
	} T_END;
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_sieve_rewrite_cases,
		test_sieve_rewrite_details,
		test_sieve_rewrite_broken,
		NULL
	};
	return test_run(test_functions);
}
