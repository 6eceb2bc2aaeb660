#ifndef MIGRATE_FOLDER_MAP_H
#define MIGRATE_FOLDER_MAP_H

/* Translates a source folder (as LIST returned it) into a destination
   folder name: namespace prefix and delimiter translation, modified UTF-7
   decoding, hostile-name sanitizing, special-use automap, PCRE2 rules,
   include/exclude. Pure logic: no storage and no network access here. */

enum migrate_special_use {
	MIGRATE_SPECIAL_USE_NONE	= 0x00,
	MIGRATE_SPECIAL_USE_SENT	= 0x01,
	MIGRATE_SPECIAL_USE_DRAFTS	= 0x02,
	MIGRATE_SPECIAL_USE_TRASH	= 0x04,
	MIGRATE_SPECIAL_USE_JUNK	= 0x08,
	MIGRATE_SPECIAL_USE_ARCHIVE	= 0x10,
	MIGRATE_SPECIAL_USE_ALL		= 0x20,
	MIGRATE_SPECIAL_USE_FLAGGED	= 0x40,
	MIGRATE_SPECIAL_USE_IMPORTANT	= 0x80,
};
#define MIGRATE_SPECIAL_USE_COUNT 8

enum migrate_folder_src_flags {
	MIGRATE_FOLDER_SRC_FLAG_NOSELECT	= 0x01,
	MIGRATE_FOLDER_SRC_FLAG_NONEXISTENT	= 0x02,
	MIGRATE_FOLDER_SRC_FLAG_SUBSCRIBED	= 0x04,
};

/* How the destination storage lays folders out on disk: decides which
   name parts it reserves and how long a part may be. */
enum migrate_dest_layout {
	/* unknown: 255-byte parts, Dovecot's own file names reserved */
	MIGRATE_DEST_LAYOUT_OTHER = 0,
	/* sdbox/mdbox: mailboxes/<a>/<b>/ holds dbox-Mails/ and the index */
	MIGRATE_DEST_LAYOUT_DBOX,
	/* Maildir LAYOUT=fs: <a>/<b>/ holds cur/ new/ tmp/, the uidlist and
	   the index, beside the child folders' directories */
	MIGRATE_DEST_LAYOUT_MAILDIR_FS,
	/* Maildir++: one directory ".a.b" per folder */
	MIGRATE_DEST_LAYOUT_MAILDIR_PP,
	/* mbox: file <a>/<b> and its dotlock <a>/<b>.lock */
	MIGRATE_DEST_LAYOUT_MBOX,
};

struct migrate_folder_map_settings {
	/* Destination inbox namespace separator, e.g. '/' or '.' */
	char dest_sep;
	/* Destination inbox namespace prefix, e.g. "INBOX." or "" (NULL is
	   ""). Prepended to every vname but INBOX; special_use_dest[] names
	   may already include it. */
	const char *dest_prefix;
	/* Destination folder name for each special use (index = bit number,
	   i.e. 0=\Sent ... 7=\Important), or NULL when the destination
	   config has none; then the English default name is used. */
	const char *special_use_dest[MIGRATE_SPECIAL_USE_COUNT];
	/* migrate_automap: map special-use folders (flags or well-known
	   localized names) onto the destination special-use folders. */
	bool automap;
	/* migrate_folder_map: path of the rules file, or NULL */
	const char *rules_path;
	/* migrate_include / migrate_exclude: PCRE2 patterns or NULL */
	const char *include;
	const char *exclude;
	/* Source is Gmail (X-GM-EXT-1) or looks like it ([Gmail]/ names):
	   skip virtual folders as documented. */
	bool gmail;
	/* Special uses some source folder carries as a flag: a localized
	   name never claims a use the source already flags elsewhere
	   (a real \Drafts folder beats a folder merely named "Entwürfe") */
	enum migrate_special_use source_flagged;
	/* migrate_gmail_skip, as special-use bits (default \Junk \Trash) */
	enum migrate_special_use gmail_skip;
	/* the destination storage's layout */
	enum migrate_dest_layout dest_layout;
};

struct migrate_folder_src {
	/* Raw name from LIST (modified UTF-7, source delimiter) */
	const char *name;
	/* Source hierarchy delimiter, '\0' for flat (NIL) */
	char delimiter;
	/* Personal namespace prefix from NAMESPACE, e.g. "INBOX." or "" */
	const char *ns_prefix;
	enum migrate_folder_src_flags flags;
	/* From SPECIAL-USE / XLIST flags; NONE if the server gave none */
	enum migrate_special_use special_use;
};

struct migrate_folder_dest {
	/* Destination vname: UTF-8, destination separator. NULL if skip. */
	const char *vname;
	/* Special use the folder was recognised as (flag or name) */
	enum migrate_special_use special_use;
	/* Source name decoded to UTF-8 with '/' as separator, prefix
	   stripped: what rules and include/exclude match against. */
	const char *decoded_name;
	bool skip;
	/* Human-readable reason for skip, or how the name was changed
	   (e.g. "sanitized: control characters"); NULL when plain. */
	const char *reason;
	/* Special case: Gmail [Gmail]/All Mail; importer imports only the
	   messages that exist in no other folder, into vname. */
	bool gmail_all_mail;
};

struct migrate_folder_map;

int migrate_folder_map_init(const struct migrate_folder_map_settings *set,
			    struct migrate_folder_map **map_r,
			    const char **error_r);
void migrate_folder_map_deinit(struct migrate_folder_map **map);

/* Map one source folder. Never fails: unusable names come back with
   skip=TRUE and a reason. Strings are allocated from pool. Look folders
   up in LIST order (parents first): a subfolder of a folder that only its
   special-use flag marks follows the parent's automapped name only when
   the parent was looked up before it. */
void migrate_folder_map_lookup(struct migrate_folder_map *map,
			       const struct migrate_folder_src *src,
			       pool_t pool, struct migrate_folder_dest *dest_r);

/* The layout of a storage driver ("sdbox", "maildir", ...) with a
   mailbox list driver ("fs", "maildir++", ...) */
enum migrate_dest_layout
migrate_dest_layout_get(const char *storage_driver, const char *list_driver);

/* Whether wanted (an -m argument) names a folder: its source name as the
   server spells it (modified UTF-7) or decoded to UTF-8 (decoded_name, or
   src_name decoded when that is NULL), or its destination name (vname,
   may be NULL). */
bool migrate_folder_name_matches(const char *wanted, const char *src_name,
				 const char *decoded_name, const char *vname);
/* "'A', 'B', 'C'": the (up to) three names most like wanted, for an
   error message; "none" when names is empty */
const char *migrate_folder_closest_names(const char *wanted,
					 const ARRAY_TYPE(const_string) *names);

/* A folder name and the special use it stands for */
struct migrate_special_name {
	const char *name;
	enum migrate_special_use use;
};

/* Parse a LIST flag such as "\Sent" (case-insensitive); NONE if none. */
enum migrate_special_use migrate_special_use_parse(const char *flag);
/* "\Sent" etc. for a single bit */
const char *migrate_special_use_name(enum migrate_special_use use);
/* Parse a space-separated list like "\Junk \Trash"; -1 on unknown */
int migrate_special_use_parse_list(const char *str,
				   enum migrate_special_use *uses_r,
				   const char **error_r);

#endif
