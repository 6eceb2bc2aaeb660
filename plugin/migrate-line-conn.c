/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "ioloop.h"
#include "str.h"
#include "net.h"
#include "base64.h"
#include "istream.h"
#include "ostream.h"
#include "iostream-ssl.h"
#include "safe-memset.h"
#include "time-util.h"
#include "migrate-compat.h"
#include "migrate-reply-scan.h"
#include "migrate-line-conn.h"

#include <sys/socket.h>

#define MIGRATE_LINE_SECRETS_MAX 4

struct migrate_line_conn {
	pool_t pool;
	struct event *event;
	struct mail_user *user;
	struct migrate_line_conn_settings set;
	const char *name;

	int fd;
	struct istream *input;
	struct ostream *output;
	struct ssl_iostream_context *ssl_ctx;
	struct ssl_iostream *ssl_iostream;
	struct ioloop *ioloop, *prev_ioloop;
	struct timeout *to;
	/* the current wait must end by then */
	struct timeval deadline;
	char stage[64];
	char *secrets[MIGRATE_LINE_SECRETS_MAX];

	bool connected:1;
	bool timed_out:1;
};

struct migrate_line_conn *
migrate_line_conn_create(const struct migrate_line_conn_settings *set,
			 struct mail_user *user, struct event *parent)
{
	struct migrate_line_conn *conn;
	pool_t pool;

	pool = pool_alloconly_create("migrate line conn", 1024);
	conn = p_new(pool, struct migrate_line_conn, 1);
	conn->pool = pool;
	conn->user = user;
	conn->set = *set;
	conn->set.protocol = p_strdup(pool, set->protocol);
	conn->set.host = p_strdup(pool, set->host);
	conn->set.port_setting = p_strdup(pool, set->port_setting);
	conn->set.ssl_ca_file = p_strdup(pool, set->ssl_ca_file);
	conn->name = p_strdup_printf(pool, "%s server %s:%u", set->protocol,
				     set->host, set->port);
	conn->event = event_create(parent);
	event_set_append_log_prefix(conn->event,
		p_strdup_printf(pool, "%s: ", t_str_lcase(set->protocol)));
	conn->fd = -1;
	return conn;
}

void migrate_line_conn_disconnect(struct migrate_line_conn *conn)
{
	if (conn->ssl_iostream != NULL)
		ssl_iostream_destroy(&conn->ssl_iostream);
	i_stream_destroy(&conn->input);
	o_stream_destroy(&conn->output);
	if (conn->fd != -1) {
		net_disconnect(conn->fd);
		conn->fd = -1;
	}
	conn->connected = FALSE;
}

void migrate_line_conn_destroy(struct migrate_line_conn **_conn)
{
	struct migrate_line_conn *conn = *_conn;
	unsigned int i;

	*_conn = NULL;
	migrate_line_conn_disconnect(conn);
	if (conn->ssl_ctx != NULL)
		ssl_iostream_context_unref(&conn->ssl_ctx);
	if (conn->ioloop != NULL) {
		struct ioloop *prev = current_ioloop;

		io_loop_set_current(conn->ioloop);
		io_loop_destroy(&conn->ioloop);
		if (prev != NULL && prev != current_ioloop)
			io_loop_set_current(prev);
	}
	for (i = 0; i < MIGRATE_LINE_SECRETS_MAX; i++) {
		if (conn->secrets[i] != NULL) {
			safe_memset(conn->secrets[i], 0,
				    strlen(conn->secrets[i]));
			i_free(conn->secrets[i]);
		}
	}
	event_unref(&conn->event);
	pool_unref(&conn->pool);
}

bool migrate_line_conn_is_connected(struct migrate_line_conn *conn)
{
	return conn->connected;
}

const char *migrate_line_conn_name(struct migrate_line_conn *conn)
{
	return conn->name;
}

void migrate_line_conn_set_stage(struct migrate_line_conn *conn,
				 const char *stage)
{
	i_strocpy(conn->stage, stage, sizeof(conn->stage));
}

/* Secrets */

static void migrate_line_secret_put(struct migrate_line_conn *conn,
				    const char *secret)
{
	unsigned int i;

	if (secret == NULL || strlen(secret) < 3)
		return;
	for (i = 0; i < MIGRATE_LINE_SECRETS_MAX; i++) {
		if (conn->secrets[i] == NULL) {
			conn->secrets[i] = i_strdup(secret);
			return;
		}
		if (strcmp(conn->secrets[i], secret) == 0)
			return;
	}
}

void migrate_line_conn_add_secret(struct migrate_line_conn *conn,
				  const char *secret)
{
	string_t *b64;

	if (secret == NULL)
		return;
	migrate_line_secret_put(conn, secret);
	b64 = t_str_new(strlen(secret) * 2 + 4);
	base64_encode(secret, strlen(secret), b64);
	migrate_line_secret_put(conn, str_c(b64));
	safe_memset(str_c_modifiable(b64), 0, str_len(b64));
}

const char *migrate_line_conn_redact(struct migrate_line_conn *conn,
				     const char *text, size_t max_len)
{
	unsigned int i;

	for (i = 0; i < MIGRATE_LINE_SECRETS_MAX; i++) {
		if (conn->secrets[i] != NULL &&
		    strstr(text, conn->secrets[i]) != NULL)
			return "(text holding a secret, not shown)";
	}
	return migrate_str_sanitize(text, max_len);
}

/* Waiting on the private ioloop */

static void migrate_line_ioloop_push(struct migrate_line_conn *conn)
{
	conn->prev_ioloop = current_ioloop;
	if (conn->ioloop == NULL)
		conn->ioloop = io_loop_create();
	io_loop_set_current(conn->ioloop);
	if (conn->input != NULL)
		i_stream_switch_ioloop_to(conn->input, conn->ioloop);
	if (conn->output != NULL)
		o_stream_switch_ioloop_to(conn->output, conn->ioloop);
}

static void migrate_line_ioloop_pop(struct migrate_line_conn *conn)
{
	io_loop_set_current(conn->prev_ioloop);
}

static void migrate_line_deadline_set(struct migrate_line_conn *conn,
				      unsigned int secs)
{
	io_loop_time_refresh();
	conn->deadline = ioloop_timeval;
	conn->deadline.tv_sec += secs;
	conn->timed_out = FALSE;
}

static void migrate_line_wakeup(struct migrate_line_conn *conn)
{
	io_loop_stop(conn->ioloop);
}

static void migrate_line_timeout(struct migrate_line_conn *conn)
{
	conn->timed_out = TRUE;
	io_loop_stop(conn->ioloop);
}

/* Wait until fd (or the input stream when fd is -1) is ready, or the
   deadline. 0 = ready, -1 = the deadline passed. */
static int migrate_line_wait(struct migrate_line_conn *conn, int fd,
			     enum io_condition cond)
{
	struct io *io;
	long long msecs;

	io_loop_time_refresh();
	msecs = timeval_diff_msecs(&conn->deadline, &ioloop_timeval);
	if (msecs <= 0) {
		conn->timed_out = TRUE;
		return -1;
	}
	migrate_line_ioloop_push(conn);
	if (fd == -1)
		io = io_add_istream(conn->input, migrate_line_wakeup, conn);
	else
		io = io_add(fd, cond, migrate_line_wakeup, conn);
	conn->to = timeout_add(msecs > INT_MAX ? INT_MAX : msecs,
			       migrate_line_timeout, conn);
	io_loop_run(conn->ioloop);
	io_remove(&io);
	timeout_remove(&conn->to);
	migrate_line_ioloop_pop(conn);
	return conn->timed_out ? -1 : 0;
}

static const char *migrate_line_timeout_error(struct migrate_line_conn *conn)
{
	return t_strdup_printf("The %s did not answer within %u seconds %s "
		"(migrate_source_timeout)", conn->name,
		conn->set.timeout_secs, conn->stage);
}

static const char *migrate_line_read_error(struct migrate_line_conn *conn)
{
	const char *error = NULL;

	if (conn->ssl_iostream != NULL)
		error = ssl_iostream_get_last_error(conn->ssl_iostream);
	if (error == NULL && conn->input != NULL &&
	    conn->input->stream_errno != 0)
		error = i_stream_get_error(conn->input);
	if (error == NULL)
		error = "Connection closed by the server";
	return t_strdup_printf("%s (%s, %s)", error, conn->name, conn->stage);
}

/* Connecting */

static int migrate_line_tcp_connect(struct migrate_line_conn *conn,
				    const char **error_r)
{
	struct ip_addr *ips;
	unsigned int i, ips_count;
	const char *error = "no address";
	int ret, fd, keepalive = 1;

	ret = net_gethostbyname(conn->set.host, &ips, &ips_count);
	if (ret != 0) {
		*error_r = t_strdup_printf("Can't resolve migrate_source_host="
			"%s: %s", conn->set.host, net_gethosterror(ret));
		return -1;
	}
	for (i = 0; i < ips_count; i++) {
		fd = net_connect_ip(&ips[i], conn->set.port, NULL);
		if (fd == -1) {
			error = t_strdup_printf("connect(%s) failed: %m",
						net_ip2addr(&ips[i]));
			continue;
		}
		if (migrate_line_wait(conn, fd, IO_WRITE) < 0) {
			error = t_strdup_printf("connect(%s) timed out",
						net_ip2addr(&ips[i]));
			net_disconnect(fd);
			continue;
		}
		ret = net_geterror(fd);
		if (ret != 0) {
			error = t_strdup_printf("connect(%s) failed: %s",
				net_ip2addr(&ips[i]), strerror(ret));
			net_disconnect(fd);
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &keepalive,
			       sizeof(keepalive)) < 0)
			e_debug(conn->event, "setsockopt(SO_KEEPALIVE) failed: %m");
		conn->fd = fd;
		conn->input = i_stream_create_fd(fd,
			I_MAX(conn->set.max_line_length, 1024) + 2);
		conn->output = o_stream_create_fd(fd, (size_t)-1);
		o_stream_set_no_error_handling(conn->output, TRUE);
		conn->connected = TRUE;
		return 0;
	}
	*error_r = t_strdup_printf("Can't connect to the %s (%s, "
		"migrate_source_host): %s", conn->name, conn->set.port_setting,
		error);
	return -1;
}

struct migrate_tls_check {
	const struct migrate_compat_ssl *ssl;
	struct ssl_iostream *iostream;
};

static int migrate_tls_handshaked(const char **error_r, void *context)
{
	struct migrate_tls_check *check = context;
	const char *error;

	if (ssl_iostream_check_cert_validity(check->iostream,
					     check->ssl->host, &error) == 0)
		return 0;
	if (!check->ssl->verify) {
		e_debug(check->ssl->event, "Ignoring invalid certificate "
			"(migrate_source_ssl_verify=no): %s", error);
		return 0;
	}
	*error_r = error;
	return -1;
}

int migrate_tls_client_start(const struct migrate_compat_ssl *ssl,
			     struct ssl_iostream_context **ctx,
			     struct istream **input, struct ostream **output,
			     struct ssl_iostream **iostream_r,
			     migrate_tls_wait_t *wait, void *context,
			     const char **error_r)
{
	struct migrate_tls_check check = { .ssl = ssl };
	const char *error;
	int ret = 0;

	if (*ctx == NULL &&
	    migrate_compat_ssl_context(ssl, ctx, &error) < 0) {
		*error_r = t_strdup_printf("Can't initialize TLS "
			"(migrate_source_ssl_ca_file): %s", error);
		return -1;
	}
	if (migrate_compat_ssl_client(ssl, *ctx, input, output, iostream_r,
				      &error) < 0) {
		*error_r = t_strdup_printf("Can't start TLS: %s", error);
		return -1;
	}
	check.iostream = *iostream_r;
	ssl_iostream_set_handshake_callback(*iostream_r,
					    migrate_tls_handshaked, &check);
	o_stream_set_no_error_handling(*output, TRUE);
	if (ssl_iostream_handshake(*iostream_r) < 0)
		ret = -3;
	while (ret == 0 && !ssl_iostream_is_handshaked(*iostream_r)) {
		/* reading drives the handshake */
		if (i_stream_read(*input) < 0 &&
		    !ssl_iostream_is_handshaked(*iostream_r)) {
			ret = -3;
			break;
		}
		if (ssl_iostream_is_handshaked(*iostream_r) ||
		    i_stream_get_data_size(*input) > 0)
			break;
		if (wait(context) < 0)
			ret = -2;
	}
	/* check lives on this stack */
	ssl_iostream_set_handshake_callback(*iostream_r, NULL, NULL);
	if (ret == -3) {
		error = ssl_iostream_get_last_error(*iostream_r);
		*error_r = error == NULL ? NULL : t_strdup(error);
	}
	return ret;
}

bool migrate_tls_error_not_tls(const char *error)
{
	/* OpenSSL's words for a peer that answered a ClientHello with
	   something that isn't TLS */
	static const char *const words[] = {
		"wrong version number", "unknown protocol",
		"packet length too long", "http request",
		"record layer failure", "unexpected eof", NULL
	};
	const char *lerror = t_str_lcase(error);
	unsigned int i;

	for (i = 0; words[i] != NULL; i++) {
		if (strstr(lerror, words[i]) != NULL)
			return TRUE;
	}
	return FALSE;
}

static int migrate_line_tls_wait(void *context)
{
	struct migrate_line_conn *conn = context;

	return migrate_line_wait(conn, -1, 0);
}

static int migrate_line_ssl_start(struct migrate_line_conn *conn,
				  enum migrate_error *error_code_r,
				  const char **error_r)
{
	struct migrate_compat_ssl ssl = {
		.user = conn->user,
		.event = conn->event,
		.host = conn->set.host,
		.ca_file = conn->set.ssl_ca_file,
		.verify = conn->set.ssl_verify,
	};
	const char *error;
	int ret;

	ret = migrate_tls_client_start(&ssl, &conn->ssl_ctx, &conn->input,
				       &conn->output, &conn->ssl_iostream,
				       migrate_line_tls_wait, conn, &error);
	if (ret == 0)
		return 0;
	if (ret == -1) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf("%s (the %s)", error, conn->name);
		return -1;
	}
	if (ret == -2) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("TLS handshake with the %s timed "
			"out (migrate_source_greeting_timeout)", conn->name);
		return -1;
	}
	if (error == NULL)
		error = migrate_line_read_error(conn);
	if (migrate_tls_error_not_tls(error)) {
		/* no certificate or retry will help */
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf("The %s did not speak TLS (%s): "
			"check migrate_source_ssl and %s", conn->name, error,
			conn->set.port_setting);
		return -1;
	}
	*error_code_r = ssl_iostream_has_handshake_failed(conn->ssl_iostream) ?
		MIGRATE_ERROR_CONFIG : MIGRATE_ERROR_TEMP;
	*error_r = t_strdup_printf("TLS handshake with the %s failed: %s "
		"(check migrate_source_ssl, %s, migrate_source_ssl_ca_file)",
		conn->name, error, conn->set.port_setting);
	return -1;
}

int migrate_line_conn_connect(struct migrate_line_conn *conn,
			      enum migrate_error *error_code_r,
			      const char **error_r)
{
	migrate_line_conn_disconnect(conn);
	migrate_line_conn_set_stage(conn, "while connecting");
	*error_code_r = MIGRATE_ERROR_TEMP;
	migrate_line_deadline_set(conn, conn->set.connect_timeout_secs);
	if (migrate_line_tcp_connect(conn, error_r) < 0)
		return -1;
	if (conn->set.tls == MIGRATE_LINE_CONN_TLS_IMPLICIT &&
	    migrate_line_ssl_start(conn, error_code_r, error_r) < 0) {
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	migrate_line_conn_set_stage(conn, "while waiting for the greeting");
	return 0;
}

int migrate_line_conn_starttls(struct migrate_line_conn *conn,
			       enum migrate_error *error_code_r,
			       const char **error_r)
{
	if (!conn->connected) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("Not connected to the %s",
					   conn->name);
		return -1;
	}
	if (i_stream_get_data_size(conn->input) > 0) {
		/* plain text after the go-ahead: an injection attempt */
		*error_code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("The %s sent data before the TLS "
					   "handshake", conn->name);
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	migrate_line_deadline_set(conn, conn->set.connect_timeout_secs);
	if (migrate_line_ssl_start(conn, error_code_r, error_r) < 0) {
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	return 0;
}

/* Reading */

static int migrate_line_read_more(struct migrate_line_conn *conn,
				  enum migrate_error *error_code_r,
				  const char **error_r)
{
	ssize_t ret;

	while ((ret = i_stream_read(conn->input)) == 0) {
		if (migrate_line_wait(conn, -1, 0) < 0) {
			*error_code_r = MIGRATE_ERROR_TEMP;
			*error_r = migrate_line_timeout_error(conn);
			migrate_line_conn_disconnect(conn);
			return -1;
		}
	}
	if (ret == -2) {
		*error_code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("The %s sent a line longer than "
			"%zu bytes %s", conn->name, conn->set.max_line_length,
			conn->stage);
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	if (ret < 0) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = migrate_line_read_error(conn);
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	return 0;
}

int migrate_line_conn_read_line(struct migrate_line_conn *conn,
				const char **line_r,
				enum migrate_error *error_code_r,
				const char **error_r)
{
	const char *line;

	if (!conn->connected) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("Not connected to the %s",
					   conn->name);
		return -1;
	}
	migrate_line_deadline_set(conn, conn->set.timeout_secs);
	while ((line = i_stream_next_line(conn->input)) == NULL) {
		if (migrate_line_read_more(conn, error_code_r, error_r) < 0)
			return -1;
	}
	if (strlen(line) > conn->set.max_line_length) {
		*error_code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("The %s sent a line longer than "
			"%zu bytes %s", conn->name, conn->set.max_line_length,
			conn->stage);
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	*line_r = line;
	return 1;
}

int migrate_line_conn_read_data(struct migrate_line_conn *conn, size_t size,
				const unsigned char **data_r,
				enum migrate_error *error_code_r,
				const char **error_r)
{
	buffer_t *buf;
	size_t avail, n;

	if (!conn->connected) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("Not connected to the %s",
					   conn->name);
		return -1;
	}
	if (size > conn->set.max_data_size) {
		*error_code_r = MIGRATE_ERROR_PROTOCOL;
		*error_r = t_strdup_printf("The %s announced %zu bytes, more "
			"than the %zu accepted %s", conn->name, size,
			conn->set.max_data_size, conn->stage);
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	migrate_line_deadline_set(conn, conn->set.timeout_secs);
	buf = t_buffer_create(size + 1);
	while (buf->used < size) {
		avail = i_stream_get_data_size(conn->input);
		if (avail == 0) {
			if (migrate_line_read_more(conn, error_code_r,
						   error_r) < 0)
				return -1;
			continue;
		}
		n = I_MIN(avail, size - buf->used);
		buffer_append(buf, i_stream_get_data(conn->input, &avail), n);
		i_stream_skip(conn->input, n);
	}
	*data_r = buf->data;
	return 1;
}

int migrate_line_conn_write_line(struct migrate_line_conn *conn,
				 const char *line,
				 enum migrate_error *error_code_r,
				 const char **error_r)
{
	struct const_iovec iov[2];

	if (!conn->connected) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("Not connected to the %s",
					   conn->name);
		return -1;
	}
	iov[0].iov_base = line;
	iov[0].iov_len = strlen(line);
	iov[1].iov_base = "\r\n";
	iov[1].iov_len = 2;
	o_stream_nsendv(conn->output, iov, N_ELEMENTS(iov));
	migrate_line_deadline_set(conn, conn->set.timeout_secs);
	while (o_stream_flush(conn->output) == 0) {
		if (migrate_line_wait(conn, conn->fd, IO_WRITE) < 0) {
			*error_code_r = MIGRATE_ERROR_TEMP;
			*error_r = migrate_line_timeout_error(conn);
			migrate_line_conn_disconnect(conn);
			return -1;
		}
	}
	if (conn->output->stream_errno != 0) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("write to the %s failed: %s (%s)",
			conn->name, o_stream_get_error(conn->output),
			conn->stage);
		migrate_line_conn_disconnect(conn);
		return -1;
	}
	return 0;
}
