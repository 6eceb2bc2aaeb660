#ifndef MIGRATE_POP3_H
#define MIGRATE_POP3_H

struct istream;
struct mail_save_context;
struct migrate_folder;
struct migrate_run;

/* POP3 UIDLs (migrate_pop3_uidls=yes): before the IMAP import, log into
   the source's POP3 service (same host, credentials and TLS policy as the
   IMAP side, port migrate_pop3_port), read UIDL and LIST, match every
   POP3 message to a message of the destination's INBOX by content (a
   hash of the header, normalised the way Dovecot's pop3_migration plugin
   does, then the size to pair copies), and store the source's UIDL with
   it: while saving (migrate_pop3_save_uidl()), or after the import for
   messages stored earlier (mail_update_pop3_uidl(), Maildir only),
   which migrate_pop3_carry() does. A POP3 message that matches nothing is
   logged and counted, never guessed. A failure leaves the imported mail
   as it is: run->error says UIDLs were not carried (a re-run fills them
   in). Returns 0, or -1 with run->error_code/run->error set. */
int migrate_pop3_carry(struct migrate_run *run);

/* Before the import: read the source's POP3 UIDLs and the headers (TOP) of
   the messages no stored UIDL matches, into run->pop3. A failure is kept
   for migrate_pop3_carry() to report: the import goes on. */
void migrate_pop3_prepare(struct migrate_run *run);
/* Saving an INBOX message (before mailbox_save_begin(), with the body
   prefetched): the UIDL of the POP3 message with the same header and
   size goes with it, so storages that take UIDLs only while saving
   (sdbox, mdbox) get them. Reads nothing from body. */
void migrate_pop3_save_uidl(struct migrate_run *run,
			    const struct migrate_folder *folder,
			    struct mail_save_context *save,
			    struct istream *body, uoff_t body_size);
void migrate_pop3_free(struct migrate_run *run);

/* migrate plan: is the POP3 service reachable, how many messages it
   shows with UIDLs: one sentence in *summary_r (from run->pool).
   Returns -1 when it isn't usable. */
int migrate_pop3_plan(struct migrate_run *run, const char **summary_r);

/* migrate verify: every POP3 message's UIDL is on a destination INBOX
   message. Returns 0, or -1 with run->error set. */
int migrate_pop3_verify(struct migrate_run *run);

/* The header hash, exposed for unit tests: SHA1 of the header of input
   (a whole message or only its header) without the headers one server
   side shows and the other doesn't. */
int migrate_pop3_header_hash(struct istream *input,
			     unsigned char hash_r[20], const char **error_r);

#endif
