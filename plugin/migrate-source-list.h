#ifndef MIGRATE_SOURCE_LIST_H
#define MIGRATE_SOURCE_LIST_H

#include "hash.h"
#include "migrate-error.h"
#include "migrate-importer.h"

struct migrate_source_conn;
struct migrate_reply;

/* What listing the source found: one struct migrate_folder per LIST reply
   with the source's side filled in (name, LIST flags, special use,
   subscription, STATUS), the hierarchy delimiter and the personal
   namespace prefix. It knows nothing of a run: the run maps the folders
   and fills in the rest of each struct migrate_folder. */
struct migrate_source_list {
	/* the folders and strings live here */
	pool_t pool;

	/* '\0' while unknown */
	char delimiter;
	/* the personal namespace prefix, NULL while unknown */
	const char *ns_prefix;
	/* the source advertises X-GM-EXT-1 */
	bool gmail_ext;
	ARRAY_TYPE(migrate_folder) folders;
	/* src_name -> folder (not those with src_name_nul or
	   src_name_too_long) */
	HASH_TABLE(const char *, struct migrate_folder *) folders_by_name;
	/* LIST replies beyond MIGRATE_MAX_FOLDERS */
	unsigned int folders_over_limit;
};

/* What a source's folder list may cost: more folders than this fail the
   listing (a listing that big is broken or hostile, and migrating a part
   of it silently would lose mail); a longer name (in its IMAP form) is
   listed as skipped with a reason, the folder map would refuse it
   anyway. */
#define MIGRATE_MAX_FOLDERS 20000
#define MIGRATE_MAX_SOURCE_NAME 4096

void migrate_source_list_init(struct migrate_source_list *list, pool_t pool);
void migrate_source_list_deinit(struct migrate_source_list *list);

/* NAMESPACE, LIST (with STATUS when the server offers LIST-STATUS) and
   LSUB in one round trip. prefix_setting is migrate_source_prefix (NULL
   when unset, "none" for no prefix). Returns 0, or -1 with the error's
   class and text. */
int migrate_source_list_folders(struct migrate_source_list *list,
				struct migrate_source_conn *conn,
				struct event *event,
				const char *prefix_setting,
				enum migrate_error *code_r,
				const char **error_r);
/* One pipelined STATUS round for those of these folders that LIST-STATUS
   didn't answer already. Returns 0 or -1. */
int migrate_source_list_status(struct migrate_source_list *list,
			       struct migrate_source_conn *conn,
			       const ARRAY_TYPE(migrate_folder) *folders,
			       enum migrate_error *code_r,
			       const char **error_r);
/* The listed folder with this source name, or NULL */
struct migrate_folder *
migrate_source_list_find(const struct migrate_source_list *list,
			 const char *name);

/* One untagged NAMESPACE, LIST/XLIST/LSUB or STATUS reply into the list
   (what the listing does with each; the fuzz target calls it directly) */
void migrate_source_list_reply(struct migrate_source_list *list,
			       struct migrate_source_conn *conn,
			       const struct migrate_reply *reply);

#endif
