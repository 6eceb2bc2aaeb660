#ifndef MIGRATE_LINE_CONN_H
#define MIGRATE_LINE_CONN_H

#include "migrate-error.h"

struct mail_user;
struct migrate_compat_ssl;
struct ssl_iostream;
struct ssl_iostream_context;

/* A blocking-style client connection for line protocols (POP3,
   ManageSieve): TCP, implicit TLS or a STARTTLS upgrade, CRLF lines of
   bounded length, exact byte counts (literals), deadlines. Every wait
   runs a private ioloop, so nothing else (lib-storage's timeouts,
   doveadm's own ios) runs in the middle of a caller's work.

   Errors name the protocol, the host and the settings an operator can
   change (port_setting, the TLS and timeout settings), and never hold a
   registered secret. */

enum migrate_line_conn_tls {
	MIGRATE_LINE_CONN_TLS_NONE = 0,
	/* TLS right after connect (POP3S 995) */
	MIGRATE_LINE_CONN_TLS_IMPLICIT,
	/* plain connect; the caller negotiates it and calls
	   migrate_line_conn_starttls() */
	MIGRATE_LINE_CONN_TLS_STARTTLS,
};

struct migrate_line_conn_settings {
	/* "POP3", "ManageSieve": in every error */
	const char *protocol;
	const char *host;
	in_port_t port;
	/* the setting that chose the port, e.g. "migrate_pop3_port" */
	const char *port_setting;
	enum migrate_line_conn_tls tls;
	/* the source's TLS settings: NULL = Dovecot's ssl_client_ca_* */
	const char *ssl_ca_file;
	bool ssl_verify;
	/* connect + TLS handshake + greeting must fit in this */
	unsigned int connect_timeout_secs;
	/* each read (a line, n bytes) must complete in this */
	unsigned int timeout_secs;
	/* longest line accepted (without CRLF); longer is an error */
	size_t max_line_length;
	/* largest read_data() accepted */
	size_t max_data_size;
};

struct migrate_line_conn *
migrate_line_conn_create(const struct migrate_line_conn_settings *set,
			 struct mail_user *user, struct event *parent);
void migrate_line_conn_destroy(struct migrate_line_conn **conn);

/* TCP connect (every address of host in turn), then TLS when
   tls=IMPLICIT. 0 = connected, -1 = error (disconnected). The greeting is
   the caller's: read it with migrate_line_conn_read_line(). */
int migrate_line_conn_connect(struct migrate_line_conn *conn,
			      enum migrate_error *error_code_r,
			      const char **error_r);
/* After the server accepted the caller's STARTTLS/STLS command: start
   TLS over the connection. Nothing may be buffered from before. */
int migrate_line_conn_starttls(struct migrate_line_conn *conn,
			       enum migrate_error *error_code_r,
			       const char **error_r);
void migrate_line_conn_disconnect(struct migrate_line_conn *conn);
bool migrate_line_conn_is_connected(struct migrate_line_conn *conn);
/* A waiting phase for errors: "after UIDL", "while logging in" */
void migrate_line_conn_set_stage(struct migrate_line_conn *conn,
				 const char *stage);

/* Read one line without its CR LF. 1 = line_r set (valid until the next
   read), -1 = connection failed, timed out or the line is too long (the
   connection is disconnected then). */
int migrate_line_conn_read_line(struct migrate_line_conn *conn,
				const char **line_r,
				enum migrate_error *error_code_r,
				const char **error_r);
/* Read exactly size bytes (a {n} literal). 1 = data_r set (valid until
   the next read), -1 as above; size over max_data_size is an error. */
int migrate_line_conn_read_data(struct migrate_line_conn *conn, size_t size,
				const unsigned char **data_r,
				enum migrate_error *error_code_r,
				const char **error_r);
/* Send a line; CR LF is appended. -1 = the connection failed. */
int migrate_line_conn_write_line(struct migrate_line_conn *conn,
				 const char *line,
				 enum migrate_error *error_code_r,
				 const char **error_r);

/* Never show this (a password, a SASL response) in an error or log
   line built with migrate_line_conn_redact(); raw and base64 forms. */
void migrate_line_conn_add_secret(struct migrate_line_conn *conn,
				  const char *secret);
/* text sanitized for a log line, with secrets replaced */
const char *migrate_line_conn_redact(struct migrate_line_conn *conn,
				     const char *text, size_t max_len);
/* "POP3 server host:port": for the caller's own errors */
const char *migrate_line_conn_name(struct migrate_line_conn *conn);

/* Shared with the IMAP client: start TLS over *input and *output (the
   streams are taken over) and complete the handshake, checking the
   certificate against ssl->host unless ssl->verify is off. *ctx is made
   on first use; the caller keeps it across reconnects. wait() waits for
   input: 0 = something may have arrived, -1 = time is up. Returns 0;
   -1 = TLS can't be set up (bad settings, error_r); -2 = wait() timed
   out; -3 = the handshake failed (error_r: TLS's reason, or NULL when
   the stream's error tells). */
typedef int migrate_tls_wait_t(void *context);
/* Is this TLS error a peer that doesn't speak TLS at all (a plain-text
   greeting, an HTTP reply)? Then no certificate or retry helps. */
bool migrate_tls_error_not_tls(const char *error);
int migrate_tls_client_start(const struct migrate_compat_ssl *ssl,
			     struct ssl_iostream_context **ctx,
			     struct istream **input, struct ostream **output,
			     struct ssl_iostream **iostream_r,
			     migrate_tls_wait_t *wait, void *context,
			     const char **error_r);

#endif
