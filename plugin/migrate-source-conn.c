/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "ioloop.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "net.h"
#include "base64.h"
#include "istream.h"
#include "ostream.h"
#include "iostream-ssl.h"
#include "iostream-rawlog.h"
#include "istream-zlib.h"
#include "ostream-zlib.h"
#include "dsasl-client.h"
#include "imap-arg.h"
#include "imap-parser.h"
#include "imap-quote.h"
#include "mail-user.h"
#include "safe-memset.h"
#include "str-sanitize.h"
#include "strescape.h"
#include "imap-util.h"
#include "time-util.h"
#include "migrate-settings.h"
#include "migrate-reply-scan.h"
#include "migrate-compat.h"
#include "migrate-source-conn.h"
#include "migrate-line-conn.h"

#include <stdio.h>
#include <sys/socket.h>

/* Longest non-literal reply line we accept, and the largest literal other
   than a message body (e.g. a folder name or header block) we buffer.
   Anything larger from the server is an error, so a hostile server can't
   exhaust our memory. */
#define MIGRATE_MAX_LINE_SIZE (1024*1024)
/* our direction carries only commands: the cheapest level will do */
#define MIGRATE_COMPRESS_LEVEL 1
#define MIGRATE_MAX_INLINE_LITERAL_SIZE (1024*1024)
#define MIGRATE_INPUT_BUFFER_SIZE (MIGRATE_MAX_LINE_SIZE + \
				   MIGRATE_MAX_INLINE_LITERAL_SIZE + 1024)

#define MIGRATE_EARLY_TAGS_MAX 16
/* capabilities beyond this many are ignored */
#define MIGRATE_MAX_CAPABILITIES 1000
/* AUTHENTICATE: challenges a login may take (PLAIN needs none, LOGIN two) */
#define MIGRATE_AUTH_CONTINUATIONS_MAX 8
/* a body read at less than this many bytes a second, after
   migrate_source_timeout, fails */
#define MIGRATE_MIN_BODY_BYTES_PER_SEC 4096
/* secrets whose traces are redacted from what the server says */
#define MIGRATE_SECRETS_MAX 8

struct migrate_early_tag {
	unsigned int tag;
	/* MIGRATE_ERROR_NONE for OK */
	enum migrate_error code;
	char *error;
};

struct migrate_source_conn {
	pool_t pool;
	struct event *event;
	const struct migrate_settings *set;
	struct mail_user *user;
	const char *name;

	int fd;
	struct istream *input, *raw_input;
	struct ostream *output, *raw_output;
	struct ssl_iostream_context *ssl_ctx;
	struct ssl_iostream *ssl_iostream;
	struct imap_parser *parser;
	struct timeout *to;
	/* waits run this private ioloop, so nothing else (lib-storage's
	   timeouts, doveadm's own ios) runs in the middle of a save */
	struct ioloop *ioloop, *prev_ioloop;

	unsigned int next_tag;
	/* tagged replies that came before the one being waited for (a
	   server, or a proxy, may complete pipelined commands out of
	   order): kept until their own wait */
	struct migrate_early_tag early_tags[MIGRATE_EARLY_TAGS_MAX];
	pool_t caps_pool;
	const char *const *capabilities;
	/* the last BYE's text (sanitized), for the disconnect error */
	char *bye_text;
	/* the current reply's strings (text, response code, capabilities):
	   cleared at the next read, so a stream of replies costs no more
	   memory than one */
	pool_t reply_pool;
	/* ahead of the parser: nesting depth (migrate-reply-scan.h) */
	struct migrate_reply_scan scan;
	uoff_t scan_offset;
	/* what the connection is doing, for errors: "greeting", "login",
	   the command waited for */
	char stage[64];
	/* the name of each command in flight, by tag */
	char cmd_names[MIGRATE_EARLY_TAGS_MAX][24];
	/* The server's time: what was spent waiting for it or reading
	   what it sent (not the caller's own work in between) since the
	   last progress: a command sent, a tagged reply, a greeting, or
	   progress the caller reports. Over the limit, the connection
	   fails: a server that trickles bytes or sends untagged replies
	   forever can't hold a run. */
	long long time_used_usecs;
	struct timeval time_start;
	unsigned int time_depth;
	/* the password/token and the SASL responses sent with it: never
	   shown, whatever the server echoes */
	char *secrets[MIGRATE_SECRETS_MAX];
	bool greeted:1;

	/* the FETCH body handed out to the caller, or NULL */
	struct istream *body;
	uoff_t body_size;

	bool connected:1;
	bool wait_timed_out:1;
	bool wait_done:1;
	/* a full reply line was returned: reset the parser before reading
	   the next one (the caller still holds the args until then) */
	bool reset_pending:1;
	/* capabilities arrived since this was last cleared */
	bool caps_received:1;
	/* COMPRESS=DEFLATE is wanted and offered, not yet asked for */
	bool compress_pending:1;
	bool literal_plus:1;
};

static bool sasl_initialized = FALSE;

static void migrate_conn_ioloop_push(struct migrate_source_conn *conn);
static void migrate_conn_secrets_clear(struct migrate_source_conn *conn);

static const char *migrate_conn_read_error(struct migrate_source_conn *conn);
static void migrate_conn_scan_reset(struct migrate_source_conn *conn);

struct migrate_source_conn *
migrate_source_conn_create(const struct migrate_settings *set,
			   struct mail_user *user, struct event *parent)
{
	struct migrate_source_conn *conn;
	pool_t pool;

	pool = pool_alloconly_create("migrate source conn", 1024);
	conn = p_new(pool, struct migrate_source_conn, 1);
	conn->pool = pool;
	conn->set = set;
	conn->user = user;
	conn->fd = -1;
	conn->name = p_strdup_printf(pool, "%s:%u", set->source_host,
				     set->source_port);
	conn->reply_pool = pool_alloconly_create("migrate reply", 1024);
	conn->prev_ioloop = current_ioloop;
	conn->ioloop = io_loop_create();
	io_loop_set_current(conn->prev_ioloop);
	conn->event = event_create(parent);
	event_add_category(conn->event, &event_category_migrate);
	event_set_append_log_prefix(conn->event, t_strdup_printf(
		"source(%s): ", conn->name));
	return conn;
}

static void migrate_conn_early_tags_clear(struct migrate_source_conn *conn)
{
	unsigned int i;

	for (i = 0; i < MIGRATE_EARLY_TAGS_MAX; i++) {
		i_free(conn->early_tags[i].error);
		conn->early_tags[i].tag = 0;
	}
}

void migrate_source_conn_disconnect(struct migrate_source_conn *conn)
{
	i_stream_unref(&conn->body);
	if (conn->parser != NULL)
		imap_parser_unref(&conn->parser);
	timeout_remove(&conn->to);
	/* raw_input/raw_output are aliases owned through input/output */
	ssl_iostream_destroy(&conn->ssl_iostream);
	i_stream_destroy(&conn->input);
	o_stream_destroy(&conn->output);
	conn->raw_input = NULL;
	conn->raw_output = NULL;
	if (conn->fd != -1) {
		net_disconnect(conn->fd);
		conn->fd = -1;
	}
	if (conn->caps_pool != NULL)
		pool_unref(&conn->caps_pool);
	conn->capabilities = NULL;
	conn->connected = FALSE;
	conn->reset_pending = FALSE;
	conn->compress_pending = FALSE;
	migrate_conn_early_tags_clear(conn);
}

void migrate_source_conn_destroy(struct migrate_source_conn **_conn)
{
	struct migrate_source_conn *conn = *_conn;

	*_conn = NULL;
	migrate_source_conn_disconnect(conn);
	io_loop_set_current(conn->ioloop);
	io_loop_destroy(&conn->ioloop);
	io_loop_set_current(conn->prev_ioloop);
	if (conn->ssl_ctx != NULL)
		ssl_iostream_context_unref(&conn->ssl_ctx);
	event_unref(&conn->event);
	migrate_conn_secrets_clear(conn);
	i_free(conn->bye_text);
	pool_unref(&conn->reply_pool);
	pool_unref(&conn->pool);
}

bool migrate_source_conn_is_connected(struct migrate_source_conn *conn)
{
	return conn->connected;
}

/* Secrets: the password or token, and what was sent with it */

static void migrate_conn_secret_add(struct migrate_source_conn *conn,
				    const char *secret)
{
	unsigned int i;

	/* shorter than this would redact half of every message */
	if (secret == NULL || strlen(secret) < 3)
		return;
	for (i = 0; i < MIGRATE_SECRETS_MAX; i++) {
		if (conn->secrets[i] == NULL) {
			conn->secrets[i] = i_strdup(secret);
			return;
		}
		if (strcmp(conn->secrets[i], secret) == 0)
			return;
	}
	/* full: the newest replaces the last one */
	safe_memset(conn->secrets[i-1], 0, strlen(conn->secrets[i-1]));
	i_free(conn->secrets[i-1]);
	conn->secrets[i-1] = i_strdup(secret);
}

static void migrate_conn_secrets_clear(struct migrate_source_conn *conn)
{
	unsigned int i;

	for (i = 0; i < MIGRATE_SECRETS_MAX; i++) {
		if (conn->secrets[i] == NULL)
			continue;
		safe_memset(conn->secrets[i], 0, strlen(conn->secrets[i]));
		i_free(conn->secrets[i]);
	}
}

/* The password itself, as LOGIN quotes it, and base64 of it at each of
   the three alignments (inside a SASL blob: "\0user\0password"), without
   the characters its neighbours change. */
static void migrate_conn_secrets_set(struct migrate_source_conn *conn,
				     const char *password)
{
	size_t len = strlen(password);
	unsigned int k;
	string_t *str;
	buffer_t *buf;

	migrate_conn_secrets_clear(conn);
	migrate_conn_secret_add(conn, password);
	str = t_str_new(len * 2 + 8);
	str_append_escaped(str, password, len);
	if (strcmp(str_c(str), password) != 0)
		migrate_conn_secret_add(conn, str_c(str));
	safe_memset(str_c_modifiable(str), 0, str_len(str));
	buf = t_buffer_create(len + 3);
	for (k = 0; k < 3; k++) {
		buffer_set_used_size(buf, 0);
		buffer_append_zero(buf, k);
		buffer_append(buf, password, len);
		str_truncate(str, 0);
		base64_encode(buf->data, buf->used, str);
		/* the first group holds the neighbour's bytes, the last one
		   padding or the next bytes */
		if (str_len(str) >= (k > 0 ? 4U : 0U) + 4 + 4) {
			const char *core = str_c(str) + (k > 0 ? 4 : 0);
			migrate_conn_secret_add(conn, t_strndup(core,
				strlen(core) - 4));
		}
		safe_memset(str_c_modifiable(str), 0, str_len(str));
		safe_memset(buffer_get_modifiable_data(buf, NULL), 0,
			    buf->used);
	}
}

const char *migrate_source_conn_redact(struct migrate_source_conn *conn,
				       const char *text)
{
	unsigned int i;

	if (text == NULL)
		return NULL;
	for (i = 0; i < MIGRATE_SECRETS_MAX && conn->secrets[i] != NULL; i++) {
		if (strstr(text, conn->secrets[i]) != NULL)
			return "[the server's text was removed: it held the "
				"source credentials]";
	}
	return text;
}

/* What the server says, fit for an error line, a log and the state:
   no control characters or escape sequences, no credentials. */
static const char *
migrate_conn_server_text(struct migrate_source_conn *conn, const char *text,
			 size_t max_len)
{
	return migrate_source_conn_redact(conn,
		migrate_str_sanitize_pool(conn->reply_pool, text, max_len));
}

/* Stages and deadlines */

static void migrate_conn_set_stage(struct migrate_source_conn *conn,
				   const char *stage)
{
	i_strocpy(conn->stage, stage, sizeof(conn->stage));
}

static void migrate_conn_time_enter(struct migrate_source_conn *conn)
{
	if (conn->time_depth++ == 0) {
		io_loop_time_refresh();
		conn->time_start = ioloop_timeval;
	}
}

static void migrate_conn_time_leave(struct migrate_source_conn *conn)
{
	i_assert(conn->time_depth > 0);
	if (--conn->time_depth == 0) {
		io_loop_time_refresh();
		/* in usecs: a line parsed from the buffer takes less than a
		   msec, and a flood of them must add up */
		conn->time_used_usecs +=
			timeval_diff_usecs(&ioloop_timeval, &conn->time_start);
	}
}

void migrate_source_conn_progress(struct migrate_source_conn *conn)
{
	conn->time_used_usecs = 0;
	if (conn->time_depth > 0) {
		io_loop_time_refresh();
		conn->time_start = ioloop_timeval;
	}
}

static unsigned int
migrate_conn_time_limit_secs(struct migrate_source_conn *conn)
{
	return conn->greeted ? conn->set->source_timeout_secs :
		conn->set->source_greeting_timeout_secs;
}

/* msecs of the server's time left; 0 when it is used up */
static unsigned int
migrate_conn_time_left(struct migrate_source_conn *conn)
{
	long long used = conn->time_used_usecs / 1000, limit;

	if (conn->time_depth > 0) {
		io_loop_time_refresh();
		used += timeval_diff_usecs(&ioloop_timeval,
					   &conn->time_start) / 1000;
	}
	limit = migrate_conn_time_limit_secs(conn) * 1000LL;
	/* a body may take longer, in proportion to its size */
	if (conn->body != NULL) {
		limit += (long long)(conn->body_size /
				     MIGRATE_MIN_BODY_BYTES_PER_SEC) * 1000;
	}
	if (used >= limit)
		return 0;
	return limit - used > INT_MAX ? INT_MAX : limit - used;
}

static const char *
migrate_conn_time_error(struct migrate_source_conn *conn)
{
	if (!conn->greeted) {
		return t_strdup_printf("No IMAP greeting from %s within %u "
			"seconds (migrate_source_greeting_timeout; is it an "
			"IMAP port?)", conn->name,
			conn->set->source_greeting_timeout_secs);
	}
	if (conn->body != NULL) {
		return t_strdup_printf("The source server %s sends a message "
			"body too slowly: %"PRIuUOFF_T" bytes not received "
			"at %u bytes a second plus %u seconds "
			"(migrate_source_timeout)", conn->name,
			conn->body_size, MIGRATE_MIN_BODY_BYTES_PER_SEC,
			conn->set->source_timeout_secs);
	}
	return t_strdup_printf("The source server %s made no progress for %u "
		"seconds %s (migrate_source_timeout)", conn->name,
		conn->set->source_timeout_secs, conn->stage);
}

/* Waiting: run the caller's ioloop until the io fires or the timeout. */
static void migrate_conn_wait_stop(struct migrate_source_conn *conn)
{
	conn->wait_done = TRUE;
	io_loop_stop(conn->ioloop);
}

static void migrate_conn_wait_timeout(struct migrate_source_conn *conn)
{
	conn->wait_timed_out = TRUE;
	io_loop_stop(conn->ioloop);
}

static void migrate_conn_ioloop_push(struct migrate_source_conn *conn)
{
	conn->prev_ioloop = current_ioloop;
	io_loop_set_current(conn->ioloop);
	if (conn->input != NULL)
		i_stream_switch_ioloop_to(conn->input, conn->ioloop);
	if (conn->output != NULL)
		o_stream_switch_ioloop_to(conn->output, conn->ioloop);
}

static void migrate_conn_ioloop_pop(struct migrate_source_conn *conn)
{
	io_loop_set_current(conn->prev_ioloop);
}

/* Run the private ioloop until io fires or the timeout; io is created by
   the caller between push and this call. */
static int migrate_conn_wait_io(struct migrate_source_conn *conn,
				struct io **io)
{
	unsigned int msecs;

	migrate_conn_time_enter(conn);
	msecs = migrate_conn_time_left(conn);
	conn->wait_timed_out = FALSE;
	conn->wait_done = FALSE;
	if (msecs == 0) {
		io_remove(io);
		migrate_conn_ioloop_pop(conn);
		migrate_conn_time_leave(conn);
		return -1;
	}
	conn->to = timeout_add(msecs, migrate_conn_wait_timeout, conn);
	io_loop_run(conn->ioloop);
	migrate_conn_time_leave(conn);
	io_remove(io);
	timeout_remove(&conn->to);
	migrate_conn_ioloop_pop(conn);
	return conn->wait_timed_out ? -1 : 1;
}

static void migrate_conn_sleep_done(struct migrate_source_conn *conn)
{
	io_loop_stop(conn->ioloop);
}

void migrate_source_conn_sleep(struct migrate_source_conn *conn,
			       unsigned int msecs)
{
	struct timeout *to;

	migrate_conn_ioloop_push(conn);
	to = timeout_add(msecs, migrate_conn_sleep_done, conn);
	io_loop_run(conn->ioloop);
	timeout_remove(&to);
	migrate_conn_ioloop_pop(conn);
	/* sleeping isn't the server's delay */
	migrate_source_conn_progress(conn);
}

int migrate_source_conn_wait(struct migrate_source_conn *conn,
			     const char **error_r)
{
	struct io *io;

	if (!conn->connected) {
		*error_r = "Not connected";
		return -1;
	}
	migrate_conn_ioloop_push(conn);
	io = io_add_istream(conn->input, migrate_conn_wait_stop, conn);
	if (migrate_conn_wait_io(conn, &io) < 0) {
		*error_r = migrate_conn_time_error(conn);
		return -1;
	}
	return 1;
}

static int migrate_conn_tcp_connect(struct migrate_source_conn *conn,
				    const char **error_r)
{
	struct ip_addr *ips;
	unsigned int i, ips_count;
	const char *error = NULL;
	struct io *io;
	int ret, fd, keepalive = 1;

	ret = net_gethostbyname(conn->set->source_host, &ips, &ips_count);
	if (ret != 0) {
		*error_r = t_strdup_printf("Can't resolve migrate_source_host=%s: %s",
			conn->set->source_host, net_gethosterror(ret));
		return -1;
	}
	for (i = 0; i < ips_count; i++) {
		fd = net_connect_ip(&ips[i], conn->set->source_port, NULL);
		if (fd == -1) {
			error = t_strdup_printf("connect(%s, %u) failed: %m",
				net_ip2addr(&ips[i]), conn->set->source_port);
			continue;
		}
		migrate_conn_ioloop_push(conn);
		io = io_add(fd, IO_WRITE, migrate_conn_wait_stop, conn);
		if (migrate_conn_wait_io(conn, &io) < 0) {
			error = t_strdup_printf("connect(%s, %u) timed out "
				"after %u seconds "
				"(migrate_source_greeting_timeout)",
				net_ip2addr(&ips[i]), conn->set->source_port,
				migrate_conn_time_limit_secs(conn));
			net_disconnect(fd);
			continue;
		}
		ret = net_geterror(fd);
		if (ret != 0) {
			error = t_strdup_printf("connect(%s, %u) failed: %s",
				net_ip2addr(&ips[i]), conn->set->source_port,
				strerror(ret));
			net_disconnect(fd);
			continue;
		}
		/* a source that silently vanished (NAT timeout, dead
		   host) is noticed even while a long literal streams */
		if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &keepalive,
			       sizeof(keepalive)) < 0)
			e_debug(conn->event, "setsockopt(SO_KEEPALIVE) failed: %m");
		/* commands are whole lines, sent when they are complete:
		   Nagle would hold a pipelined command back for the ACK of
		   the one before it (a delayed ACK costs up to 40 ms) */
		if (net_set_tcp_nodelay(fd, TRUE) < 0)
			e_debug(conn->event, "net_set_tcp_nodelay() failed: %m");
		conn->fd = fd;
		conn->raw_input = conn->input =
			i_stream_create_fd(fd, MIGRATE_INPUT_BUFFER_SIZE);
		conn->raw_output = conn->output =
			o_stream_create_fd(fd, (size_t)-1);
		o_stream_set_no_error_handling(conn->output, TRUE);
		conn->connected = TRUE;
		return 0;
	}
	*error_r = t_strdup_printf("Can't connect to migrate_source_host=%s "
				   "port %u: %s", conn->set->source_host,
				   conn->set->source_port, error);
	return -1;
}

static int migrate_conn_tls_wait(void *context)
{
	struct migrate_source_conn *conn = context;
	struct io *io;

	migrate_conn_ioloop_push(conn);
	io = io_add_istream(conn->input, migrate_conn_wait_stop, conn);
	return migrate_conn_wait_io(conn, &io) < 0 ? -1 : 0;
}

static int migrate_conn_ssl_start(struct migrate_source_conn *conn,
				  enum migrate_error *error_code_r,
				  const char **error_r)
{
	struct migrate_compat_ssl ssl = {
		.user = conn->user,
		.event = conn->event,
		.host = conn->set->source_host,
		.ca_file = conn->set->source_ssl_ca_file,
		.verify = conn->set->source_ssl_verify,
	};
	const char *error;
	int ret;

	/* the ssl streams take over the plain ones (and their references) */
	i_assert(conn->input == conn->raw_input);
	ret = migrate_tls_client_start(&ssl, &conn->ssl_ctx, &conn->input,
				       &conn->output, &conn->ssl_iostream,
				       migrate_conn_tls_wait, conn, &error);
	if (ret == -1) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = error;
		return -1;
	}
	if (ret == -2) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("TLS handshake with %s "
			"timed out after %u seconds (%s)", conn->name,
			migrate_conn_time_limit_secs(conn),
			conn->greeted ? "migrate_source_timeout" :
			"migrate_source_greeting_timeout");
		return -1;
	}
	if (ret < 0)
		goto failed;
	if (conn->parser != NULL)
		imap_parser_set_streams(conn->parser, conn->input, NULL);
	migrate_conn_scan_reset(conn);
	return 0;
failed:
	if (error == NULL)
		error = migrate_conn_read_error(conn);
	if (migrate_tls_error_not_tls(error)) {
		/* the server answered in plain text (an IMAP greeting, an
		   HTTP reply): no certificate will help */
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf("The source server %s did not "
			"speak TLS (%s): check migrate_source_ssl (imaps, "
			"starttls or no) and migrate_source_port (IMAPS is "
			"usually 993, plain IMAP and STARTTLS 143)",
			conn->name, error);
		return -1;
	}
	/* a certificate that fails verification won't pass on a retry */
	*error_code_r = ssl_iostream_has_handshake_failed(conn->ssl_iostream) ?
		MIGRATE_ERROR_CONFIG : MIGRATE_ERROR_TEMP;
	*error_r = t_strdup_printf("TLS handshake with %s failed: %s "
		"(check migrate_source_ssl_ca_file, migrate_source_host "
		"must match the certificate)", conn->name, error);
	return -1;
}

/* Why reading failed. The text is copied: the streams that own their
   error go away with migrate_source_conn_disconnect(), which callers
   call before they format or store it. */
static const char *migrate_conn_read_error(struct migrate_source_conn *conn)
{
	const char *error = NULL;

	if (conn->ssl_iostream != NULL)
		error = ssl_iostream_get_last_error(conn->ssl_iostream);
	if (error == NULL && conn->input->stream_errno != 0)
		error = i_stream_get_error(conn->input);
	if (error == NULL)
		error = "Connection closed by the server";
	error = t_strdup_printf("%s (source %s, %s)", error, conn->name,
				conn->stage);
	if (conn->bye_text != NULL)
		error = t_strdup_printf("%s (BYE: %s)", error, conn->bye_text);
	return error;
}

/* Split "[CODE arg] text" */
static void migrate_reply_parse_text(pool_t pool, struct migrate_reply *reply,
				     const char *text)
{
	const char *p, *end;

	reply->text = text;
	if (text == NULL || text[0] != '[')
		return;
	end = strchr(text, ']');
	if (end == NULL)
		return;
	p = strchr(text, ' ');
	if (p == NULL || p > end) {
		reply->resp_code = p_strdup_until(pool, text + 1, end);
	} else {
		reply->resp_code = p_strdup_until(pool, text + 1, p);
		reply->resp_code_arg = p_strdup_until(pool, p + 1, end);
	}
	reply->text = end[1] == ' ' ? end + 2 : end + 1;
}

static bool migrate_reply_is_status(const char *name)
{
	return strcasecmp(name, "OK") == 0 || strcasecmp(name, "NO") == 0 ||
		strcasecmp(name, "BAD") == 0 || strcasecmp(name, "BYE") == 0 ||
		strcasecmp(name, "PREAUTH") == 0;
}

static void migrate_conn_set_capabilities(struct migrate_source_conn *conn,
					  const char *caps)
{
	if (conn->caps_pool != NULL)
		pool_unref(&conn->caps_pool);
	conn->caps_pool = pool_alloconly_create("migrate caps", 512);
	conn->capabilities = (const char *const *)
		p_strsplit_spaces(conn->caps_pool, caps, " ");
	if (str_array_length(conn->capabilities) > MIGRATE_MAX_CAPABILITIES) {
		/* what a server offers fits in far fewer */
		((const char **)conn->capabilities)[MIGRATE_MAX_CAPABILITIES] =
			NULL;
	}
	conn->literal_plus =
		migrate_source_conn_has_capability(conn, "LITERAL+");
}

bool migrate_source_conn_has_capability(struct migrate_source_conn *conn,
					const char *cap)
{
	return conn->capabilities != NULL &&
		str_array_icase_find(conn->capabilities, cap);
}

/* Is this literal a message body of a FETCH reply? If so, point args at
   the FETCH list. */
static bool
migrate_conn_is_body_literal(const struct imap_arg *args,
			     const struct imap_arg **list_r)
{
	const struct imap_arg *list;
	const char *name, *seq;
	uint32_t num;
	unsigned int i;

	/* "* <seq> FETCH (...)" only: "* OK FETCH (BODY[] {5}" is text */
	if (!imap_arg_get_atom(&args[0], &seq) ||
	    str_to_uint32(seq, &num) < 0 ||
	    !imap_arg_atom_equals(&args[1], "FETCH") ||
	    !imap_arg_get_list(&args[2], &list))
		return FALSE;
	for (i = 0; !IMAP_ARG_IS_EOL(&list[i]); i++) {
		if (list[i].type != IMAP_ARG_LITERAL_SIZE &&
		    list[i].type != IMAP_ARG_LITERAL_SIZE_NONSYNC)
			continue;
		if (i == 0 || !imap_arg_get_atom(&list[i-1], &name))
			return FALSE;
		*list_r = list;
		return strcasecmp(name, "BODY[]") == 0 ||
			strcasecmp(name, "RFC822") == 0 ||
			strcasecmp(name, "BINARY[]") == 0;
	}
	return FALSE;
}

static void migrate_conn_line_done(struct migrate_source_conn *conn)
{
	const unsigned char *data;
	size_t size;

	/* skip the CRLF the parser left */
	data = i_stream_get_data(conn->input, &size);
	if (size > 0 && data[0] == '\r') {
		i_stream_skip(conn->input, 1);
		data++; size--;
	}
	if (size > 0 && data[0] == '\n')
		i_stream_skip(conn->input, 1);
	imap_parser_reset(conn->parser);
	conn->reset_pending = FALSE;
}

static void migrate_conn_scan_reset(struct migrate_source_conn *conn)
{
	migrate_reply_scan_init(&conn->scan);
	conn->scan_offset = conn->input == NULL ? 0 : conn->input->v_offset;
}

/* Scan the current line ahead of the parser, as far as it is buffered
   (migrate-reply-scan.h): the parser never sees what wasn't scanned. */
static int migrate_conn_scan(struct migrate_source_conn *conn,
			     enum migrate_error *error_code_r,
			     const char **error_r)
{
	const unsigned char *data;
	const char *error;
	size_t size, pos, scanned;

	if (conn->scan_offset < conn->input->v_offset) {
		/* a body the caller read */
		migrate_reply_scan_skip(&conn->scan, conn->input->v_offset -
					conn->scan_offset);
		conn->scan_offset = conn->input->v_offset;
	}
	data = i_stream_get_data(conn->input, &size);
	pos = conn->scan_offset - conn->input->v_offset;
	if (pos >= size)
		return 0;
	if (migrate_reply_scan_more(&conn->scan, data + pos, size - pos,
				    &scanned, &error) < 0) {
		*error_code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("%s (source %s, %s)", error,
					   conn->name, conn->stage);
		return -1;
	}
	conn->scan_offset += scanned;
	return 0;
}

static int
migrate_conn_parse_args(struct migrate_source_conn *conn,
			struct migrate_reply *reply,
			enum migrate_error *error_code_r,
			const char **error_r)
{
	const struct imap_arg *args, *list;
	enum imap_parser_error parse_error;
	uoff_t literal_size;
	const char *str;
	string_t *text;
	int ret;

	for (;;) {
		ret = imap_parser_read_args(conn->parser, 0,
			IMAP_PARSE_FLAG_LITERAL_SIZE |
			IMAP_PARSE_FLAG_ATOM_ALLCHARS |
			IMAP_PARSE_FLAG_LITERAL8 |
			IMAP_PARSE_FLAG_SERVER_TEXT, &args);
		if (ret == -2)
			return 0;
		if (ret < 0) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("Invalid reply from the "
				"source server %s %s: %s", conn->name,
				conn->stage,
				imap_parser_get_error(conn->parser, &parse_error));
			return -1;
		}
		/* "*" or a tag alone: no args, and no literal either
		   (imap_parser_get_literal_size() would assert) */
		if (ret == 0)
			break;
		if (!imap_parser_get_literal_size(conn->parser, &literal_size))
			break;
		if (reply->type == MIGRATE_REPLY_UNTAGGED &&
		    migrate_conn_is_body_literal(args, &list)) {
			conn->body = i_stream_create_limit(conn->input,
							   literal_size);
			conn->body_size = literal_size;
			reply->body = conn->body;
			reply->body_size = literal_size;
			break;
		}
		if (literal_size > MIGRATE_MAX_INLINE_LITERAL_SIZE) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("The source server %s sent "
				"a too large literal (%"PRIuUOFF_T" bytes, "
				"more than %u) %s", conn->name, literal_size,
				MIGRATE_MAX_INLINE_LITERAL_SIZE, conn->stage);
			return -1;
		}
		imap_parser_read_last_literal(conn->parser);
	}

	if (reply->type == MIGRATE_REPLY_UNTAGGED &&
	    args[0].type == IMAP_ARG_ATOM &&
	    imap_arg_get_atom(&args[0], &str) &&
	    str_to_uint32(str, &reply->num) == 0) {
		/* "* 5 FETCH (...)", "* 3 EXISTS" */
		if (!imap_arg_get_atom(&args[1], &reply->name)) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("Invalid reply from the "
				"source server %s %s: number without a name",
				conn->name, conn->stage);
			return -1;
		}
		if (imap_arg_get_list(&args[2], &list))
			reply->args = list;
		else
			reply->args = &args[2];
	} else {
		if (!imap_arg_get_atom(&args[0], &reply->name)) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("Invalid reply from the "
				"source server %s %s: missing name",
				conn->name, conn->stage);
			return -1;
		}
		reply->args = &args[1];
		if (migrate_reply_is_status(reply->name)) {
			/* "[CODE arg]" arrives as separate args; lists are
			   bounded by migrate_conn_scan(), so writing them
			   back recurses at most MIGRATE_MAX_LIST_DEPTH */
			text = str_new(conn->reply_pool, 128);
			imap_write_args(text, &args[1]);
			migrate_reply_parse_text(conn->reply_pool, reply,
						 str_c(text));
		}
	}
	if (reply->body == NULL)
		conn->reset_pending = TRUE;
	return 1;
}

static int
migrate_conn_read_once(struct migrate_source_conn *conn,
		       struct migrate_reply *reply,
		       enum migrate_error *error_code_r,
		       const char **error_r)
{
	const char *tag, *line;

	if (reply->name == NULL && reply->type == 0 && reply->tag == 0) {
		tag = imap_parser_read_word(conn->parser);
		if (tag == NULL)
			return 0;
		if (*tag == '\0') {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("Invalid reply from the "
				"source server %s %s: bad tag", conn->name,
				conn->stage);
			return -1;
		}
		if (strcmp(tag, "+") == 0) {
			reply->type = MIGRATE_REPLY_CONTINUE;
			reply->name = "+";
		} else if (strcmp(tag, "*") == 0) {
			reply->type = MIGRATE_REPLY_UNTAGGED;
			reply->name = "";
		} else {
			reply->type = MIGRATE_REPLY_TAGGED;
			reply->name = "";
			if (tag[0] != 'A' ||
			    str_to_uint(tag + 1, &reply->tag) < 0 ||
			    reply->tag == 0 || reply->tag > conn->next_tag) {
				*error_code_r = MIGRATE_ERROR_PROTOCOL;
				*error_r = t_strdup_printf("Invalid reply from "
					"the source server %s %s: unknown tag "
					"'%s'", conn->name, conn->stage,
					migrate_conn_server_text(conn, tag, 32));
				return -1;
			}
		}
	}
	if (reply->type == MIGRATE_REPLY_CONTINUE) {
		line = i_stream_next_line(conn->input);
		if (line == NULL)
			return 0;
		reply->text = p_strdup(conn->reply_pool, line);
		imap_parser_reset(conn->parser);
		return 1;
	}
	return migrate_conn_parse_args(conn, reply, error_code_r, error_r);
}

/* A reply was parsed: make what callers print of it safe, note BYE and
   capabilities */
static void migrate_conn_reply_done(struct migrate_source_conn *conn,
				    struct migrate_reply *reply)
{
	const char *p;

	for (p = reply->name; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
			reply->name = migrate_conn_server_text(conn,
							       reply->name, 64);
			break;
		}
	}
	if (reply->text != NULL && reply->type != MIGRATE_REPLY_CONTINUE)
		reply->text = migrate_conn_server_text(conn, reply->text, 500);
	if (reply->type == MIGRATE_REPLY_UNTAGGED &&
	    strcasecmp(reply->name, "BYE") == 0) {
		i_free(conn->bye_text);
		conn->bye_text = i_strdup(migrate_conn_server_text(conn,
			reply->text, 200));
	}
	if (strcasecmp(reply->name, "CAPABILITY") == 0 &&
	    reply->type == MIGRATE_REPLY_UNTAGGED) {
		string_t *caps = str_new(conn->reply_pool, 256);
		imap_write_args(caps, reply->args);
		migrate_conn_set_capabilities(conn, str_c(caps));
		conn->caps_received = TRUE;
	} else if (reply->resp_code != NULL &&
		   strcasecmp(reply->resp_code, "CAPABILITY") == 0 &&
		   reply->resp_code_arg != NULL) {
		migrate_conn_set_capabilities(conn, reply->resp_code_arg);
		conn->caps_received = TRUE;
	}
}

/* i_stream_read() returned ret <= 0: wait for more, or say why not.
   Returns 1 when there is more to read, -1 when the connection failed
   (the caller disconnects). */
static int migrate_conn_read_failed(struct migrate_source_conn *conn,
				    ssize_t ret,
				    enum migrate_error *error_code_r,
				    const char **error_r)
{
	if (ret == -2) {
		*error_code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("The source server %s sent a too "
			"long reply line (more than %u bytes) %s", conn->name,
			MIGRATE_MAX_LINE_SIZE, conn->stage);
		return -1;
	}
	if (ret == -1) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = migrate_conn_read_error(conn);
		return -1;
	}
	if (migrate_source_conn_wait(conn, error_r) > 0)
		return 1;
	*error_code_r = MIGRATE_ERROR_TEMP;
	return -1;
}

int migrate_source_conn_read(struct migrate_source_conn *conn,
			     struct migrate_reply *reply_r,
			     enum migrate_error *error_code_r,
			     const char **error_r)
{
	ssize_t ret;
	int ret2;

	i_assert(conn->body == NULL);

	if (!conn->connected) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("Not connected to the source "
					   "server %s", conn->name);
		return -1;
	}
	if (conn->reset_pending)
		migrate_conn_line_done(conn);
	p_clear(conn->reply_pool);
	i_zero(reply_r);
	migrate_conn_time_enter(conn);
	for (;;) {
		/* fast but endless data never waits: check the time here */
		if (migrate_conn_time_left(conn) == 0) {
			*error_code_r = MIGRATE_ERROR_TEMP;
			*error_r = migrate_conn_time_error(conn);
			break;
		}
		if (migrate_conn_scan(conn, error_code_r, error_r) < 0)
			break;
		ret2 = migrate_conn_read_once(conn, reply_r,
					      error_code_r, error_r);
		if (ret2 > 0) {
			migrate_conn_reply_done(conn, reply_r);
			migrate_conn_time_leave(conn);
			return 1;
		}
		if (ret2 < 0)
			break;
		ret = i_stream_read(conn->input);
		if (ret > 0)
			continue;
		if (migrate_conn_read_failed(conn, ret, error_code_r,
					     error_r) < 0)
			break;
	}
	migrate_conn_time_leave(conn);
	/* the caller prints or stores the error once, with its context */
	e_debug(conn->event, "%s", *error_r);
	migrate_source_conn_disconnect(conn);
	return -1;
}

static int
migrate_conn_finish_body(struct migrate_source_conn *conn,
			 const struct imap_arg **args_r,
			 enum migrate_error *error_code_r,
			 const char **error_r)
{
	enum imap_parser_error parse_error;
	const unsigned char *data;
	size_t size;
	ssize_t ret;
	int ret2;

	/* skip whatever the caller didn't read */
	while (conn->body->v_offset < conn->body_size) {
		i_stream_skip(conn->body, i_stream_get_data_size(conn->body));
		if (conn->body->v_offset >= conn->body_size)
			break;
		ret = i_stream_read(conn->body);
		if (ret > 0 || ret == -2)
			continue;
		if (migrate_conn_read_failed(conn, ret, error_code_r,
					     error_r) < 0)
			return -1;
	}
	i_stream_unref(&conn->body);

	/* parse the rest of the FETCH list; ')' ends it */
	imap_parser_reset(conn->parser);
	for (;;) {
		if (migrate_conn_scan(conn, error_code_r, error_r) < 0)
			return -1;
		ret2 = imap_parser_read_args(conn->parser, 0,
			IMAP_PARSE_FLAG_INSIDE_LIST |
			IMAP_PARSE_FLAG_ATOM_ALLCHARS |
			IMAP_PARSE_FLAG_LITERAL8, args_r);
		if (ret2 >= 0)
			break;
		if (ret2 != -2) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("Invalid FETCH reply from "
				"the source server %s: %s", conn->name,
				imap_parser_get_error(conn->parser, &parse_error));
			return -1;
		}
		ret = i_stream_read(conn->input);
		if (ret <= 0 && migrate_conn_read_failed(conn, ret,
					error_code_r, error_r) < 0)
			return -1;
	}
	/* ')' was the end of the list: the line must end right after it */
	for (;;) {
		data = i_stream_get_data(conn->input, &size);
		const unsigned char *lf = memchr(data, '\n', size);
		if (lf != NULL) {
			/* the args stay valid: skipping doesn't free them */
			i_stream_skip(conn->input, lf - data);
			break;
		}
		if (size > 1024) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("Garbage after a FETCH "
				"reply from the source server %s", conn->name);
			return -1;
		}
		ret = i_stream_read(conn->input);
		if (ret <= 0 && migrate_conn_read_failed(conn, ret,
					error_code_r, error_r) < 0)
			return -1;
	}
	conn->reset_pending = TRUE;
	return 1;
}

int migrate_source_conn_body_prefetch(struct migrate_source_conn *conn,
				      enum migrate_error *error_code_r,
				      const char **error_r)
{
	ssize_t ret;
	int ret2 = 1;

	i_assert(conn->body != NULL);

	if (conn->body_size > MIGRATE_MAX_INLINE_LITERAL_SIZE)
		return 0;
	migrate_conn_time_enter(conn);
	/* the body stream starts where the input's buffer does */
	while (conn->body->v_offset == 0 &&
	       i_stream_get_data_size(conn->input) < conn->body_size) {
		ret = i_stream_read(conn->input);
		if (ret > 0)
			continue;
		if (ret == -2) {
			ret2 = 0;
			break;
		}
		if (migrate_conn_read_failed(conn, ret, error_code_r,
					     error_r) < 0) {
			ret2 = -1;
			break;
		}
	}
	migrate_conn_time_leave(conn);
	if (ret2 < 0) {
		e_debug(conn->event, "%s", *error_r);
		migrate_source_conn_disconnect(conn);
	}
	return ret2;
}

int migrate_source_conn_finish_body(struct migrate_source_conn *conn,
				    const struct imap_arg **args_r,
				    enum migrate_error *error_code_r,
				    const char **error_r)
{
	int ret;

	i_assert(conn->body != NULL);

	migrate_conn_time_enter(conn);
	ret = migrate_conn_finish_body(conn, args_r, error_code_r, error_r);
	migrate_conn_time_leave(conn);
	if (ret < 0) {
		e_debug(conn->event, "%s", *error_r);
		migrate_source_conn_disconnect(conn);
	}
	return ret;
}

unsigned int migrate_source_conn_send(struct migrate_source_conn *conn,
				      const char *cmdline)
{
	unsigned int tag = ++conn->next_tag;
	const char *p;
	size_t len;

	/* the command's name, for errors ("UID FETCH", "EXAMINE"): never
	   its arguments, a LOGIN's hold the password */
	p = strchr(cmdline, ' ');
	if (p != NULL && strncasecmp(cmdline, "UID ", 4) == 0)
		p = strchr(p + 1, ' ');
	len = p == NULL ? strlen(cmdline) : (size_t)(p - cmdline);
	i_strocpy(conn->cmd_names[tag % MIGRATE_EARLY_TAGS_MAX],
		  t_strndup(cmdline, len),
		  sizeof(conn->cmd_names[0]));
	migrate_conn_set_stage(conn, t_strdup_printf(
		"while waiting for the reply to %s",
		conn->cmd_names[tag % MIGRATE_EARLY_TAGS_MAX]));
	if (conn->connected) {
		o_stream_nsend_str(conn->output, t_strdup_printf(
			"A%u %s\r\n", tag, cmdline));
		(void)o_stream_flush(conn->output);
	}
	/* a new command: the server gets its time to answer */
	migrate_source_conn_progress(conn);
	return tag;
}

bool migrate_source_conn_append_mailbox(struct migrate_source_conn *conn,
					string_t *dest, const char *name)
{
	const char *p;

	for (p = name; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n' || (unsigned char)*p >= 0x80)
			break;
	}
	if (*p == '\0') {
		/* always quoted: imap_append_astring() writes a name with
		   more than four '"' or '\' as a synchronizing literal,
		   which the pipelined commands can't wait for */
		imap_append_quoted(dest, name);
		return TRUE;
	}
	if (!conn->literal_plus)
		return FALSE;
	str_printfa(dest, "{%zu+}\r\n%s", strlen(name), name);
	return TRUE;
}

int migrate_source_conn_run(struct migrate_source_conn *conn,
			    const char *cmdline,
			    migrate_untagged_callback_t *callback,
			    void *context,
			    enum migrate_error *error_code_r,
			    const char **error_r)
{
	return migrate_source_conn_wait_tag(conn,
		migrate_source_conn_send(conn, cmdline), callback, context,
		error_code_r, error_r);
}

static enum migrate_error
migrate_reply_result(const struct migrate_reply *reply, const char **error_r)
{
	if (strcasecmp(reply->name, "OK") == 0)
		return MIGRATE_ERROR_NONE;
	*error_r = t_strdup_printf("%s %s", reply->name,
		str_sanitize(reply->text == NULL ? "" : reply->text, 200));
	return migrate_reply_is_throttle(reply) ?
		MIGRATE_ERROR_TEMP : MIGRATE_ERROR_PROTOCOL;
}

/* A pipelined command still to be waited for completed early */
static void migrate_conn_early_tag_add(struct migrate_source_conn *conn,
				       const struct migrate_reply *reply)
{
	struct migrate_early_tag *early = &conn->early_tags[0];
	const char *error = NULL;
	unsigned int i;

	/* a free slot, else (a server inventing tags) the oldest one */
	for (i = 0; i < MIGRATE_EARLY_TAGS_MAX && early->tag != 0; i++) {
		if (conn->early_tags[i].tag < early->tag)
			early = &conn->early_tags[i];
	}
	i_free(early->error);
	early->tag = reply->tag;
	early->code = migrate_reply_result(reply, &error);
	if (error != NULL) {
		error = t_strdup_printf("%s (reply to %s)", error,
			conn->cmd_names[reply->tag % MIGRATE_EARLY_TAGS_MAX]);
	}
	early->error = i_strdup(error);
}

static bool
migrate_conn_early_tag_take(struct migrate_source_conn *conn,
			    unsigned int tag, int *ret_r,
			    enum migrate_error *error_code_r,
			    const char **error_r)
{
	struct migrate_early_tag *early;
	unsigned int i;

	for (i = 0; i < MIGRATE_EARLY_TAGS_MAX; i++) {
		early = &conn->early_tags[i];
		if (early->tag != tag)
			continue;
		early->tag = 0;
		if (early->code == MIGRATE_ERROR_NONE)
			*ret_r = 1;
		else {
			*ret_r = 0;
			*error_code_r = early->code;
			*error_r = t_strdup(early->error);
		}
		i_free(early->error);
		return TRUE;
	}
	return FALSE;
}

int migrate_source_conn_wait_tag(struct migrate_source_conn *conn,
				 unsigned int tag,
				 migrate_untagged_callback_t *callback,
				 void *context,
				 enum migrate_error *error_code_r,
				 const char **error_r)
{
	struct migrate_reply reply;
	const struct imap_arg *tail;
	int ret;

	if (migrate_conn_early_tag_take(conn, tag, &ret, error_code_r, error_r))
		return ret;
	if (tag <= conn->next_tag &&
	    conn->next_tag - tag < MIGRATE_EARLY_TAGS_MAX) {
		migrate_conn_set_stage(conn, t_strdup_printf(
			"while waiting for the reply to %s",
			conn->cmd_names[tag % MIGRATE_EARLY_TAGS_MAX]));
	}
	for (;;) {
		if (migrate_source_conn_read(conn, &reply, error_code_r,
					     error_r) < 0)
			return -1;
		if (reply.body != NULL) {
			if (migrate_source_conn_finish_body(conn, &tail,
					error_code_r, error_r) < 0)
				return -1;
			continue;
		}
		if (reply.type == MIGRATE_REPLY_UNTAGGED) {
			if (callback != NULL) T_BEGIN {
				callback(&reply, context);
			} T_END;
			continue;
		}
		if (reply.type == MIGRATE_REPLY_CONTINUE) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("Unexpected continuation "
				"from the source server %s %s", conn->name,
				conn->stage);
			migrate_source_conn_disconnect(conn);
			return -1;
		}
		if (reply.tag != tag) {
			/* a later command of the pipeline, done first */
			if (reply.tag > tag &&
			    reply.tag <= conn->next_tag) T_BEGIN {
				migrate_conn_early_tag_add(conn, &reply);
			} T_END;
			continue;
		}
		/* only the awaited reply counts: a server repeating old
		   tags makes no progress */
		migrate_source_conn_progress(conn);
		*error_code_r = migrate_reply_result(&reply, error_r);
		if (*error_code_r == MIGRATE_ERROR_NONE)
			return 1;
		*error_r = t_strdup_printf("%s (reply to %s)", *error_r,
			conn->cmd_names[tag % MIGRATE_EARLY_TAGS_MAX]);
		return 0;
	}
}

bool migrate_reply_is_throttle(const struct migrate_reply *reply)
{
	static const char *const codes[] = {
		"THROTTLED", "UNAVAILABLE", "LIMIT", "INUSE", "SERVERBUG",
		"OVERQUOTA", NULL
	};
	unsigned int i;

	if (reply->resp_code != NULL) {
		for (i = 0; codes[i] != NULL; i++) {
			if (strcasecmp(reply->resp_code, codes[i]) == 0)
				return TRUE;
		}
	}
	if (reply->text == NULL)
		return FALSE;
	/* some servers only say it in words */
	const char *text = t_str_lcase(reply->text);
	return strstr(text, "throttl") != NULL ||
		strstr(text, "too many") != NULL ||
		strstr(text, "try again later") != NULL ||
		strstr(text, "rate limit") != NULL;
}

/* Authentication */

static bool
migrate_conn_mech_allowed(struct migrate_source_conn *conn, const char *mech)
{
	return migrate_source_conn_has_capability(conn,
		t_strconcat("AUTH=", mech, NULL));
}

static const char *
migrate_conn_pick_mech(struct migrate_source_conn *conn)
{
	const char *const *mechs;

	if (conn->set->source_sasl_mechanisms != NULL) {
		mechs = t_strsplit_spaces(conn->set->source_sasl_mechanisms,
					  " ,");
		for (; *mechs != NULL; mechs++) {
			if (migrate_conn_mech_allowed(conn, *mechs))
				return t_str_ucase(*mechs);
		}
		return t_str_ucase(t_strsplit_spaces(
			conn->set->source_sasl_mechanisms, " ,")[0]);
	}
	if (conn->set->source_master_user != NULL ||
	    migrate_conn_mech_allowed(conn, "PLAIN"))
		return "PLAIN";
	return NULL;
}

static int
migrate_conn_login_result(struct migrate_source_conn *conn,
			  const struct migrate_reply *reply,
			  enum migrate_error *error_code_r,
			  const char **error_r)
{
	if (strcasecmp(reply->name, "OK") == 0)
		return 1;
	*error_code_r = migrate_reply_is_throttle(reply) ?
		MIGRATE_ERROR_TEMP : MIGRATE_ERROR_AUTH;
	*error_r = t_strdup_printf("Source server rejected the login of "
		"user %s%s%s (migrate_source_user, migrate_source_password*): "
		"%s %s", conn->set->source_user,
		conn->set->source_master_user == NULL ? "" :
		" with master user ",
		conn->set->source_master_user == NULL ? "" :
		conn->set->source_master_user, reply->name,
		reply->text == NULL ? "" : reply->text);
	return -1;
}

int migrate_source_sasl_client(const struct migrate_settings *set,
			       const char *mech_name, const char *password,
			       struct dsasl_client **client_r,
			       enum migrate_error *error_code_r,
			       const char **error_r)
{
	const struct dsasl_client_mech *mech;
	struct dsasl_client_settings sasl_set;

	if (!sasl_initialized) {
		dsasl_clients_init();
		sasl_initialized = TRUE;
	}
	mech = dsasl_client_mech_find(mech_name);
	if (mech == NULL) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf("Unsupported SASL mechanism %s "
			"(migrate_source_sasl_mechanisms)", mech_name);
		return -1;
	}
	i_zero(&sasl_set);
	if (set->source_master_user != NULL) {
		sasl_set.authid = set->source_master_user;
		sasl_set.authzid = set->source_user;
	} else {
		sasl_set.authid = set->source_user;
	}
	sasl_set.password = password;
	*client_r = dsasl_client_new(mech, &sasl_set);
	return 0;
}

static int
migrate_conn_authenticate(struct migrate_source_conn *conn,
			  const char *mech_name, const char *password,
			  enum migrate_error *error_code_r,
			  const char **error_r)
{
	struct dsasl_client *client;
	struct migrate_reply reply;
	const struct imap_arg *tail;
	const unsigned char *out;
	size_t out_len;
	const char *error;
	unsigned int tag, continuations = 0;
	string_t *cmd;
	buffer_t *buf;
	int ret = -1;

	if (migrate_source_sasl_client(conn->set, mech_name, password,
				       &client, error_code_r, error_r) < 0)
		return -1;

	cmd = t_str_new(256);
	str_printfa(cmd, "AUTHENTICATE %s", mech_name);
	if (migrate_source_conn_has_capability(conn, "SASL-IR")) {
		if (dsasl_client_output(client, &out, &out_len, &error) < 0) {
			*error_code_r = MIGRATE_ERROR_CONFIG;
			*error_r = t_strdup_printf("SASL %s failed: %s",
						   mech_name, error);
			dsasl_client_free(&client);
			return -1;
		}
		str_append_c(cmd, ' ');
		if (out_len == 0)
			str_append_c(cmd, '=');
		else {
			size_t pos = str_len(cmd);
			base64_encode(out, out_len, cmd);
			migrate_conn_secret_add(conn, str_c(cmd) + pos);
		}
	}
	tag = migrate_source_conn_send(conn, str_c(cmd));
	/* the initial response holds the password */
	safe_memset(str_c_modifiable(cmd), 0, str_len(cmd));
	str_truncate(cmd, 0);
	for (;;) {
		if (migrate_source_conn_read(conn, &reply, error_code_r,
					     error_r) < 0)
			break;
		/* a FETCH body nobody asked for: skipped, the next read
		   would assert */
		if (reply.body != NULL) {
			if (migrate_source_conn_finish_body(conn, &tail,
					error_code_r, error_r) < 0)
				break;
			continue;
		}
		if (reply.type == MIGRATE_REPLY_UNTAGGED)
			continue;
		if (reply.type == MIGRATE_REPLY_TAGGED) {
			if (reply.tag != tag)
				continue;
			ret = migrate_conn_login_result(conn, &reply,
							error_code_r, error_r);
			break;
		}
		/* continuation: a challenge */
		if (++continuations > MIGRATE_AUTH_CONTINUATIONS_MAX) {
			*error_code_r = MIGRATE_ERROR_PROTOCOL;
			*error_r = t_strdup_printf("The source server %s sent "
				"more than %u AUTHENTICATE %s challenges",
				conn->name, MIGRATE_AUTH_CONTINUATIONS_MAX,
				mech_name);
			migrate_source_conn_disconnect(conn);
			break;
		}
		buf = t_buffer_create(128);
		if (base64_scheme_decode(&base64_scheme, 0, reply.text,
					 strlen(reply.text), buf) < 0 ||
		    dsasl_client_input(client, buf->data, buf->used,
				       &error) < 0 ||
		    dsasl_client_output(client, &out, &out_len,
					&error) < 0) {
			/* an error challenge (XOAUTH2): answer empty */
			out_len = 0;
		}
		str_truncate(cmd, 0);
		base64_encode(out, out_len, cmd);
		migrate_conn_secret_add(conn, str_c(cmd));
		str_append(cmd, "\r\n");
		o_stream_nsend(conn->output, str_data(cmd), str_len(cmd));
		(void)o_stream_flush(conn->output);
		safe_memset(str_c_modifiable(cmd), 0, str_len(cmd));
	}
	dsasl_client_free(&client);
	return ret;
}

static int
migrate_conn_login_cmd(struct migrate_source_conn *conn,
		       const char *password,
		       enum migrate_error *error_code_r, const char **error_r)
{
	struct migrate_reply reply;
	const struct imap_arg *tail;
	unsigned int tag;
	string_t *cmd;

	if (migrate_source_conn_has_capability(conn, "LOGINDISABLED")) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = "Source server disabled LOGIN and offers no "
			"usable AUTHENTICATE mechanism "
			"(migrate_source_ssl, migrate_source_sasl_mechanisms)";
		return -1;
	}
	cmd = t_str_new(128);
	str_append(cmd, "LOGIN ");
	if (!migrate_source_conn_append_mailbox(conn, cmd,
						conn->set->source_user)) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = "migrate_source_user can't be sent with LOGIN";
		return -1;
	}
	str_append_c(cmd, ' ');
	if (!migrate_source_conn_append_mailbox(conn, cmd, password)) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = "The source password can't be sent with LOGIN "
			"(the server offers no AUTHENTICATE PLAIN)";
		return -1;
	}
	tag = migrate_source_conn_send(conn, str_c(cmd));
	safe_memset(str_c_modifiable(cmd), 0, str_len(cmd));
	for (;;) {
		if (migrate_source_conn_read(conn, &reply, error_code_r,
					     error_r) < 0)
			return -1;
		if (reply.body != NULL) {
			if (migrate_source_conn_finish_body(conn, &tail,
					error_code_r, error_r) < 0)
				return -1;
			continue;
		}
		if (reply.type == MIGRATE_REPLY_TAGGED && reply.tag == tag)
			return migrate_conn_login_result(conn, &reply,
							 error_code_r, error_r);
	}
}

int migrate_source_password(const struct migrate_settings *set,
			    const char **password_r, const char **error_r)
{
	const char *cmd = set->source_oauth2_token_command;
	char buf[8192];
	size_t len = 0;
	FILE *f;
	int status;

	if (cmd == NULL) {
		*password_r = set->source_password;
		return 0;
	}
	/* a fresh token on every (re)connect */
	f = popen(cmd, "r");
	if (f == NULL) {
		*error_r = t_strdup_printf("migrate_source_oauth2_token_command "
					   "failed: popen(): %m");
		return -1;
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	status = pclose(f);
	while (len > 0 && (buf[len-1] == '\n' || buf[len-1] == '\r' ||
			   buf[len-1] == ' '))
		len--;
	buf[len] = '\0';
	if (status != 0 || len == 0) {
		*error_r = t_strdup_printf("migrate_source_oauth2_token_command "
			"failed (exit status %d, %zu bytes of output)",
			status, len);
		return -1;
	}
	*password_r = t_strdup(buf);
	safe_memset(buf, 0, sizeof(buf));
	return 0;
}

static int migrate_conn_greeting(struct migrate_source_conn *conn,
				 bool *preauth_r,
				 enum migrate_error *error_code_r,
				 const char **error_r)
{
	struct migrate_reply reply;

	migrate_conn_set_stage(conn, "while waiting for the greeting");
	if (migrate_source_conn_read(conn, &reply, error_code_r, error_r) < 0) {
		if (*error_code_r == MIGRATE_ERROR_PROTOCOL) {
			*error_r = t_strdup_printf("No IMAP greeting from %s: "
				"%s", conn->name, *error_r);
		}
		return -1;
	}
	if (reply.body != NULL) {
		/* "* 1 FETCH (BODY[] {n}" as a greeting: refused, its body
		   skipped (the next read must not find it) */
		const struct imap_arg *tail;
		enum migrate_error code;
		const char *error;

		*error_code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("No IMAP greeting from %s: it "
					   "sent a FETCH reply", conn->name);
		(void)migrate_source_conn_finish_body(conn, &tail, &code,
						      &error);
		return -1;
	}
	*preauth_r = strcasecmp(reply.name, "PREAUTH") == 0;
	if (reply.type != MIGRATE_REPLY_UNTAGGED ||
	    (strcasecmp(reply.name, "OK") != 0 && !*preauth_r)) {
		*error_code_r = migrate_reply_is_throttle(&reply) ||
			strcasecmp(reply.name, "BYE") == 0 ?
			MIGRATE_ERROR_TEMP : MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("The source server %s refused the "
			"connection: %s %s", conn->name, reply.name,
			reply.text == NULL ? "" : reply.text);
		return -1;
	}
	conn->greeted = TRUE;
	migrate_source_conn_progress(conn);
	return 0;
}

/* After the tagged OK of COMPRESS DEFLATE both directions are raw
   deflate streams (RFC 4978): layer Dovecot's zlib streams over the
   connection's. */
static void migrate_conn_compress_start(struct migrate_source_conn *conn)
{
	struct istream *input;
	struct ostream *output;

	/* the parser is positioned at the end of the OK line: what follows
	   in the buffer is already compressed */
	migrate_conn_line_done(conn);
	input = i_stream_create_deflate(conn->input);
	output = migrate_compat_ostream_deflate(conn->output,
						MIGRATE_COMPRESS_LEVEL,
						conn->event);
	i_stream_unref(&conn->input);
	o_stream_unref(&conn->output);
	conn->input = input;
	conn->output = output;
	o_stream_set_no_error_handling(conn->output, TRUE);
	imap_parser_set_streams(conn->parser, conn->input, NULL);
	migrate_conn_scan_reset(conn);
	e_debug(conn->event, "COMPRESS=DEFLATE enabled");
}

int migrate_source_conn_compress(struct migrate_source_conn *conn,
				 enum migrate_error *error_code_r,
				 const char **error_r)
{
	int ret;

	if (!conn->compress_pending)
		return 0;
	conn->compress_pending = FALSE;
	ret = migrate_source_conn_run(conn, "COMPRESS DEFLATE", NULL, NULL,
				      error_code_r, error_r);
	if (ret < 0)
		return -1;
	/* refused: go on uncompressed */
	if (ret > 0)
		migrate_conn_compress_start(conn);
	return 0;
}

int migrate_source_conn_connect(struct migrate_source_conn *conn,
				enum migrate_error *error_code_r,
				const char **error_r)
{
	const char *mech, *password;
	bool preauth;
	int ret;

	migrate_source_conn_disconnect(conn);
	conn->next_tag = 0;
	i_free(conn->bye_text);
	conn->greeted = FALSE;
	*error_code_r = MIGRATE_ERROR_TEMP;
	migrate_conn_set_stage(conn, "while connecting");
	if (conn->set->source_password != NULL)
		migrate_conn_secrets_set(conn, conn->set->source_password);
	/* the greeting's time covers the TCP connect and TLS handshake */
	migrate_source_conn_progress(conn);
	if (migrate_conn_tcp_connect(conn, error_r) < 0)
		return -1;
	conn->parser = imap_parser_create(conn->input, NULL,
					  MIGRATE_MAX_LINE_SIZE, NULL);
	migrate_conn_scan_reset(conn);
	if (conn->set->source_ssl == MIGRATE_SSL_IMAPS &&
	    migrate_conn_ssl_start(conn, error_code_r, error_r) < 0)
		goto failed;
	if (migrate_conn_greeting(conn, &preauth, error_code_r, error_r) < 0)
		goto failed;
	if (conn->capabilities == NULL &&
	    migrate_source_conn_run(conn, "CAPABILITY", NULL, NULL,
				    error_code_r, error_r) <= 0)
		goto failed;
	if (conn->set->source_ssl == MIGRATE_SSL_STARTTLS) {
		if (!migrate_source_conn_has_capability(conn, "STARTTLS")) {
			*error_code_r = MIGRATE_ERROR_CONFIG;
			*error_r = "Source server doesn't support STARTTLS "
				"(migrate_source_ssl=starttls)";
			goto failed;
		}
		ret = migrate_source_conn_run(conn, "STARTTLS", NULL, NULL,
					      error_code_r, error_r);
		if (ret == 0) {
			*error_code_r = MIGRATE_ERROR_CONFIG;
			*error_r = t_strdup_printf("The source server %s "
				"refused STARTTLS: %s "
				"(migrate_source_ssl=starttls)", conn->name,
				*error_r);
		}
		if (ret <= 0)
			goto failed;
		/* the parser is positioned at the end of the OK line */
		migrate_conn_line_done(conn);
		if (migrate_conn_ssl_start(conn, error_code_r, error_r) < 0)
			goto failed;
		/* capabilities before TLS can't be trusted */
		if (migrate_source_conn_run(conn, "CAPABILITY", NULL, NULL,
					    error_code_r, error_r) <= 0)
			goto failed;
	}
	if (!preauth) {
		if (migrate_source_password(conn->set, &password, error_r) < 0) {
			*error_code_r = MIGRATE_ERROR_AUTH;
			goto failed;
		}
		/* whatever the server echoes of them is never shown */
		migrate_conn_secrets_set(conn, password);
		conn->caps_received = FALSE;
		mech = migrate_conn_pick_mech(conn);
		if (mech != NULL) {
			ret = migrate_conn_authenticate(conn, mech, password,
							error_code_r, error_r);
		} else {
			ret = migrate_conn_login_cmd(conn, password,
						     error_code_r, error_r);
		}
		if (ret < 0)
			goto failed;
		/* capabilities may change after login; most servers send
		   the new ones with the tagged OK */
		if (!conn->caps_received &&
		    migrate_source_conn_run(conn, "CAPABILITY", NULL, NULL,
					    error_code_r, error_r) <= 0)
			goto failed;
	}
	conn->compress_pending = conn->set->source_compress &&
		migrate_source_conn_has_capability(conn, "COMPRESS=DEFLATE");
	/* with a rawlog now, so that it sits above the deflate layer */
	if (conn->set->source_rawlog_dir != NULL &&
	    migrate_source_conn_compress(conn, error_code_r, error_r) < 0)
		goto failed;
	/* the rawlog starts after login, so credentials never reach it;
	   above the deflate layer, so it holds the plain conversation */
	if (conn->set->source_rawlog_dir != NULL) {
		if (conn->reset_pending)
			migrate_conn_line_done(conn);
		if (iostream_rawlog_create(conn->set->source_rawlog_dir,
					   &conn->input, &conn->output) < 0)
			e_warning(conn->event, "Couldn't create rawlog in "
				  "migrate_source_rawlog_dir=%s",
				  conn->set->source_rawlog_dir);
		imap_parser_set_streams(conn->parser, conn->input, NULL);
		migrate_conn_scan_reset(conn);
	}
	e_debug(conn->event, "Logged in as %s", conn->set->source_user);
	return 0;
failed:
	e_debug(conn->event, "Connect failed: %s", *error_r);
	migrate_source_conn_disconnect(conn);
	return -1;
}
