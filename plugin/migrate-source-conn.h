#ifndef MIGRATE_SOURCE_CONN_H
#define MIGRATE_SOURCE_CONN_H

#include "migrate-error.h"

struct imap_arg;
struct mail_user;
struct migrate_settings;

/* A pull-style IMAP client for the source server, on Dovecot's own
   istream/ostream, imap-parser, ssl-iostream and dsasl-client. Commands are
   pipelined by sending several before reading; replies are read one at a
   time. A FETCH BODY[] literal is never buffered: it is handed out as a
   stream limited to the literal's size, to be fed to the save path.

   All waiting runs the current ioloop, which the caller owns.

   Why not lib-imap-client (imapc): it is callback-driven and spools every
   literal over 32 KB to a temporary file before handing it out; this
   client streams each body straight into the destination's save, with
   bounded memory and no temporary copy, and keeps the pipelining, pacing
   and hostile-input limits under this plugin's control. */

enum migrate_reply_type {
	MIGRATE_REPLY_UNTAGGED,
	MIGRATE_REPLY_TAGGED,
	MIGRATE_REPLY_CONTINUE,
};

struct migrate_reply {
	enum migrate_reply_type type;
	/* tagged: the tag number returned by migrate_source_conn_send() */
	unsigned int tag;
	/* untagged "* 5 FETCH": num=5, name="FETCH"; "* LIST": name="LIST";
	   tagged/untagged status replies: name="OK", "NO", "BAD", "BYE" */
	uint32_t num;
	const char *name;
	/* status replies: "[KEY value] text" split up; NULL if none */
	const char *resp_code;
	const char *resp_code_arg;
	const char *text;
	/* arguments after the name; for FETCH the list's contents */
	const struct imap_arg *args;

	/* FETCH with a BODY[]/RFC822/BINARY[] literal: args holds the items
	   before the literal. body must be read to its end (or abandoned),
	   then migrate_source_conn_finish_body() returns the items after it. */
	struct istream *body;
	uoff_t body_size;
};

struct migrate_source_conn *
migrate_source_conn_create(const struct migrate_settings *set,
			   struct mail_user *user, struct event *parent);
void migrate_source_conn_destroy(struct migrate_source_conn **conn);

/* Connect, TLS, log in, read capabilities. */
int migrate_source_conn_connect(struct migrate_source_conn *conn,
				enum migrate_error *error_code_r,
				const char **error_r);
/* Switch COMPRESS=DEFLATE on when the settings want it and the server
   offers it, once per connection. Asked only before the first command that
   moves mail: a pass that finds nothing changed stays a few round trips
   (the rawlog, when set, asks for it at login). Returns 0, or -1 when the
   connection failed. */
int migrate_source_conn_compress(struct migrate_source_conn *conn,
				 enum migrate_error *error_code_r,
				 const char **error_r);
void migrate_source_conn_disconnect(struct migrate_source_conn *conn);
bool migrate_source_conn_is_connected(struct migrate_source_conn *conn);

bool migrate_source_conn_has_capability(struct migrate_source_conn *conn,
					const char *cap);

/* Queue a command (without tag and CRLF); returns its tag. */
unsigned int migrate_source_conn_send(struct migrate_source_conn *conn,
				      const char *cmdline);
/* Append a mailbox name argument: quoted, or a LITERAL+ literal when the
   name can't be quoted. Returns FALSE when it can't be sent at all. */
bool migrate_source_conn_append_mailbox(struct migrate_source_conn *conn,
					string_t *dest, const char *name);

/* Read the next reply. Returns 1 on success, -1 if the connection failed
   (it is disconnected then). The reply is valid until the next call. */
int migrate_source_conn_read(struct migrate_source_conn *conn,
			     struct migrate_reply *reply_r,
			     enum migrate_error *error_code_r,
			     const char **error_r);
/* Wait for more input on the connection; 1 = something arrived, -1 =
   timeout or disconnection. Used while a body stream returns 0. */
int migrate_source_conn_wait(struct migrate_source_conn *conn,
			     const char **error_r);
/* Sleep on the connection's private ioloop (backoff, throttling) */
void migrate_source_conn_sleep(struct migrate_source_conn *conn,
			       unsigned int msecs);
/* Read the whole body into the input buffer when it fits (1 MB): 1 when
   it is all there, 0 when it is too big to hold, -1 when the connection
   failed (disconnected). */
int migrate_source_conn_body_prefetch(struct migrate_source_conn *conn,
				      enum migrate_error *error_code_r,
				      const char **error_r);
/* After a body: skip what the caller didn't read and parse the rest of
   the FETCH line. Returns 1, or -1 on connection failure. */
int migrate_source_conn_finish_body(struct migrate_source_conn *conn,
				    const struct imap_arg **args_r,
				    enum migrate_error *error_code_r,
				    const char **error_r);

/* Run a simple command to completion, discarding untagged replies except
   through the callback. Returns 1 on OK, 0 on NO/BAD (text in error_r),
   -1 on connection failure. */
typedef void migrate_untagged_callback_t(const struct migrate_reply *reply,
					 void *context);
int migrate_source_conn_run(struct migrate_source_conn *conn,
			    const char *cmdline,
			    migrate_untagged_callback_t *callback,
			    void *context,
			    enum migrate_error *error_code_r,
			    const char **error_r);
/* The same for a command already sent (pipelined): read until its tagged
   reply. Replies to earlier commands pass through the callback too. */
int migrate_source_conn_wait_tag(struct migrate_source_conn *conn,
				 unsigned int tag,
				 migrate_untagged_callback_t *callback,
				 void *context,
				 enum migrate_error *error_code_r,
				 const char **error_r);

/* The caller made progress with what the server sent (a message saved,
   a listing line for a UID it asked for): the server's time starts
   over. Without progress, a connection fails after
   migrate_source_timeout seconds of the server's time (waiting for it
   and reading what it sends), whatever trickles or repeats. */
void migrate_source_conn_progress(struct migrate_source_conn *conn);

/* text, or a placeholder when it holds the source password, the token or
   a SASL response sent with them (raw or base64) */
const char *migrate_source_conn_redact(struct migrate_source_conn *conn,
				       const char *text);

/* Is this status reply a server asking us to slow down? */
bool migrate_reply_is_throttle(const struct migrate_reply *reply);

/* The source password, or a fresh token from
   migrate_source_oauth2_token_command (data stack): for every protocol
   that logs in with the IMAP side's credentials */
int migrate_source_password(const struct migrate_settings *set,
			    const char **password_r, const char **error_r);

/* A SASL client of mech_name with the source's credentials (user, master
   user, password): -1 (CONFIG) for a mechanism Dovecot doesn't have */
struct dsasl_client;
int migrate_source_sasl_client(const struct migrate_settings *set,
			       const char *mech_name, const char *password,
			       struct dsasl_client **client_r,
			       enum migrate_error *error_code_r,
			       const char **error_r);

#endif
