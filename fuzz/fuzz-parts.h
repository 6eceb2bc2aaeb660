#ifndef FUZZ_PARTS_H
#define FUZZ_PARTS_H

/* The fuzz target reaches the static reply parsers of the plugin by
   compiling each plugin source that holds them into its own translation
   unit (fuzz-*-part.c include the .c file) and exporting these wrappers:
   plugin/ needs no test hooks, and the target runs the very code that
   doveadm runs. */

struct migrate_run;
struct migrate_reply;
struct imap_arg;
struct fuzz_importer;

/* migrate-importer-source.c: EXAMINE, the listing FETCH and UID SEARCH replies */
struct fuzz_importer *fuzz_importer_create(struct migrate_run *run, pool_t pool);
/* its hash tables hold a reference to the session's pool */
void fuzz_importer_destroy(struct fuzz_importer *imp);
void fuzz_importer_reply(struct fuzz_importer *imp,
			 const struct migrate_reply *reply);
/* FETCH items (before or after a body literal) */
void fuzz_importer_fetch_items(struct fuzz_importer *imp,
			       const struct imap_arg *args);

#endif
