#ifndef MIGRATE_POP3_H
#define MIGRATE_POP3_H

#include "migrate-error.h"

struct istream;
struct mail_save_context;
struct mail_user;
struct migrate_folder;
struct migrate_settings;
struct migrate_state;
struct migrate_pacing;
struct migrate_live_counters;
struct migrate_pop3;

/* What the POP3 side works with, built by the run */
struct migrate_pop3_ctx {
	/* what outlives the POP3 side: its errors, the plan's summary */
	pool_t pool;
	struct mail_user *user;
	struct event *event;
	const struct migrate_settings *set;
	struct migrate_state *state;
	/* the source's INBOX, mapped (NULL when it is not migrated); its
	   result tells whether the import got it */
	const struct migrate_folder *inbox;
	/* the run's pacing: the wait before a reconnect keeps the run lock
	   alive */
	struct migrate_pacing *pacing;
	/* reconnects and pop3-unmatched items are counted here */
	struct migrate_live_counters *counters;
	/* A failure the run reports: its error unless it has one already
	   (then it is logged) */
	void (*error)(void *context, enum migrate_error code,
		      const char *error);
	void *context;
};

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
   as it is: ctx->error() says UIDLs were not carried (a re-run fills
   them in). Returns 0, or -1 after ctx->error(). */
int migrate_pop3_carry(struct migrate_pop3 *pop3);

/* Before the import: read the source's POP3 UIDLs and the headers (TOP) of
   the messages no stored UIDL matches. A failure is kept for
   migrate_pop3_carry() to report: the import goes on. */
struct migrate_pop3 *migrate_pop3_prepare(const struct migrate_pop3_ctx *ctx);
/* Saving an INBOX message (before mailbox_save_begin(), with the body
   prefetched): the UIDL of the POP3 message with the same header and
   size goes with it, so storages that take UIDLs only while saving
   (sdbox, mdbox) get them. Reads nothing from body. pop3 may be NULL. */
void migrate_pop3_save_uidl(struct migrate_pop3 *pop3,
			    const struct migrate_folder *folder,
			    struct mail_save_context *save,
			    struct istream *body, uoff_t body_size);
void migrate_pop3_free(struct migrate_pop3 **pop3);

/* migrate plan: is the POP3 service reachable, how many messages it
   shows with UIDLs: one sentence in *summary_r (from ctx->pool).
   Returns -1 when it isn't usable. */
int migrate_pop3_plan(const struct migrate_pop3_ctx *ctx,
		      const char **summary_r);

/* migrate verify: every POP3 message's UIDL is on a destination INBOX
   message. Returns 0, or -1 after ctx->error(). */
int migrate_pop3_verify(const struct migrate_pop3_ctx *ctx);

/* The header hash, exposed for unit tests: SHA1 of the header of input
   (a whole message or only its header) without the headers one server
   side shows and the other doesn't. */
int migrate_pop3_header_hash(struct istream *input,
			     unsigned char hash_r[20], const char **error_r);

#endif
