#ifndef MIGRATE_SIEVE_REWRITE_H
#define MIGRATE_SIEVE_REWRITE_H

/* Rewrites the mailbox names in a Sieve script (RFC 5228) through a
   mapping function, leaving every other byte as it was, comments and
   white space included. The mailbox arguments are those of fileinto
   (RFC 5228, :create of RFC 5490), mailboxexists (RFC 5490), metadata and
   metadataexists (RFC 5490), specialuse_exists (RFC 8579) and the :fcc
   of vacation and notify (RFC 8580). Pure logic: a small lexer and
   argument scanner, no storage and no network. */

enum migrate_sieve_map_result {
	/* the name stays as it is */
	MIGRATE_SIEVE_MAP_UNCHANGED = 0,
	/* new_name_r replaces it */
	MIGRATE_SIEVE_MAP_CHANGED,
	/* the folder map skips this folder: the name is left as it is and
	   reported with reason_r */
	MIGRATE_SIEVE_MAP_SKIPPED,
};

/* Map one mailbox name as the script spells it (UTF-8, unescaped) */
typedef enum migrate_sieve_map_result
migrate_sieve_map_func_t(const char *name, void *context,
			 const char **new_name_r, const char **reason_r);

struct migrate_sieve_rewrite {
	/* "fileinto", "mailboxexists", "vacation :fcc", ... */
	const char *command;
	/* 1-based line of the string in the source script */
	unsigned int line;
	const char *old_name;
	/* NULL when the name was left unchanged (skipped) */
	const char *new_name;
	/* why it was left unchanged, or NULL */
	const char *reason;
};
ARRAY_DEFINE_TYPE(migrate_sieve_rewrite, struct migrate_sieve_rewrite);

/* Write script with its mailbox names mapped to output, and what was
   changed or left unchanged for a reason to rewrites_r (allocated from
   pool). A name that the map leaves as it is isn't listed. Returns 0, or
   -1 when the script can't be tokenized (an unterminated string or
   comment): then output holds the script unchanged and error_r says
   why. */
int migrate_sieve_rewrite(const unsigned char *script, size_t size,
			  migrate_sieve_map_func_t *map, void *context,
			  pool_t pool, string_t *output,
			  ARRAY_TYPE(migrate_sieve_rewrite) *rewrites_r,
			  const char **error_r);

#endif
