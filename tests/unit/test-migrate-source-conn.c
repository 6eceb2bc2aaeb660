/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The IMAP source client against a scripted server. As Dovecot's own
   test-imapc-client.c does it: the test listens on 127.0.0.1 (port 0),
   forks, and the child accepts one connection and plays a script of
   lines to send and lines it expects (blocking I/O, nothing clever). The
   parent drives migrate-source-conn.c and asserts on its results, error
   codes and error lines. The child's verdict (did the client send what
   the script expected?) comes back through a pipe before it exits. */

#include "lib.h"
#include "ioloop.h"
#include "net.h"
#include "str.h"
#include "istream.h"
#include "write-full.h"
#include "imap-arg.h"
#include "test-common.h"
#include "migrate-settings.h"
#include "migrate-source-conn.h"

#include <stdio.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>

#define TEST_USER "u1"
#define TEST_PASSWORD "secret1"
/* base64("\0u1\0secret1"): AUTHENTICATE PLAIN's response */
#define TEST_PLAIN_IR "AHUxAHNlY3JldDE="

enum step_type {
	/* the client sends nothing more and closes the connection */
	STEP_END = 0,
	/* send text as it is */
	STEP_SEND,
	/* send count bytes of text[0], no line end */
	STEP_SEND_FILL,
	/* read one line: exactly text, or starting with it when text ends
	   with '*' */
	STEP_EXPECT,
	STEP_PAUSE_MSECS,
	STEP_CLOSE,
};

struct step {
	enum step_type type;
	const char *text;
	unsigned int count;
};

#define SEND(text) { STEP_SEND, text, 0 }
#define SEND_FILL(chr, count) { STEP_SEND_FILL, chr, count }
#define EXPECT(text) { STEP_EXPECT, text, 0 }
#define PAUSE(msecs) { STEP_PAUSE_MSECS, NULL, msecs }
#define CLOSE { STEP_CLOSE, NULL, 0 }
#define END { STEP_END, NULL, 0 }

struct test_server {
	pid_t pid;
	int verdict_fd;
	in_port_t port;
};

static struct migrate_settings test_set;
static struct ioloop *test_ioloop;

/* The server (child) */

static bool server_expect(struct istream *input, const char *expected)
{
	const char *line = i_stream_read_next_line(input);
	size_t len = strlen(expected);

	if (line == NULL) {
		printf("server: client disconnected, expected '%s'\n",
		       expected);
		return FALSE;
	}
	if (len > 0 && expected[len-1] == '*' ?
	    strncmp(line, expected, len - 1) == 0 :
	    strcmp(line, expected) == 0)
		return TRUE;
	printf("server: client sent '%s', expected '%s'\n", line, expected);
	return FALSE;
}

static bool server_send_fill(int fd, char chr, unsigned int count)
{
	char buf[8192];
	unsigned int n;

	memset(buf, chr, sizeof(buf));
	while (count > 0) {
		n = I_MIN(count, sizeof(buf));
		/* the client may give up before it has read it all */
		if (write_full(fd, buf, n) < 0)
			return TRUE;
		count -= n;
	}
	return TRUE;
}

static bool server_play(int fd, const struct step *steps)
{
	struct istream *input;
	bool ok = TRUE;

	input = i_stream_create_fd(fd, 1024*1024);
	for (; ok && steps->type != STEP_END; steps++) {
		switch (steps->type) {
		case STEP_END:
			i_unreached();
		case STEP_SEND:
			/* a client that already gave up is the test's
			   business, not the server's */
			(void)write_full(fd, steps->text, strlen(steps->text));
			break;
		case STEP_SEND_FILL:
			ok = server_send_fill(fd, steps->text[0],
					      steps->count);
			break;
		case STEP_EXPECT:
			ok = server_expect(input, steps->text);
			break;
		case STEP_PAUSE_MSECS:
			usleep(steps->count * 1000);
			break;
		case STEP_CLOSE:
			if (shutdown(fd, SHUT_RDWR) < 0)
				printf("server: shutdown() failed: %m\n");
			break;
		}
	}
	/* and then the client says nothing more and closes */
	if (ok && i_stream_read_next_line(input) != NULL) {
		printf("server: client sent more after the script's end\n");
		ok = FALSE;
	}
	i_stream_unref(&input);
	fflush(stdout);
	return ok;
}

static void ATTR_NORETURN
server_run(int fd_listen, int verdict_fd, const struct step *steps)
{
	char verdict;
	int fd;

	/* never outlive a test that went wrong */
	alarm(30);
	signal(SIGPIPE, SIG_IGN);
	fd = net_accept(fd_listen, NULL, NULL);
	if (fd < 0) {
		printf("server: accept() failed: %m\n");
		verdict = 'F';
	} else {
		fd_set_nonblock(fd, FALSE);
		verdict = server_play(fd, steps) ? 'K' : 'F';
	}
	if (write_full(verdict_fd, &verdict, 1) < 0)
		printf("server: write(verdict) failed: %m\n");
	/* not killed: a process killed under valgrind leaves its vgdb
	   FIFOs in /tmp */
	_exit(0);
}

static void server_start(struct test_server *server, const struct step *steps)
{
	struct ip_addr ip;
	int fd_listen, fds[2];

	i_zero(server);
	if (net_addr2ip("127.0.0.1", &ip) < 0)
		i_unreached();
	fd_listen = net_listen(&ip, &server->port, 1);
	if (fd_listen < 0)
		i_fatal("listen(127.0.0.1) failed: %m");
	fd_set_nonblock(fd_listen, FALSE);
	if (pipe(fds) < 0)
		i_fatal("pipe() failed: %m");
	fflush(stdout);
	server->pid = fork();
	if (server->pid < 0)
		i_fatal("fork() failed: %m");
	if (server->pid == 0) {
		i_close_fd(&fds[0]);
		server_run(fd_listen, fds[1], steps);
	}
	i_close_fd(&fds[1]);
	i_close_fd(&fd_listen);
	server->verdict_fd = fds[0];
	test_set.source_port = server->port;
}

/* The client has closed its connection: did the server see what its
   script expected? */
static bool server_finish(struct test_server *server)
{
	char verdict = '\0';
	ssize_t ret;

	/* it has its verdict once the client is gone (or its alarm) */
	ret = read(server->verdict_fd, &verdict, 1);
	i_close_fd(&server->verdict_fd);
	if (waitpid(server->pid, NULL, 0) < 0)
		i_error("waitpid() failed: %m");
	return ret == 1 && verdict == 'K';
}

/* The client (parent) */

static void test_settings_reset(void)
{
	i_zero(&test_set);
	test_set.source_host = "127.0.0.1";
	test_set.source_ssl = MIGRATE_SSL_NONE;
	test_set.source_user = TEST_USER;
	test_set.source_password = TEST_PASSWORD;
	test_set.source_timeout_secs = 5;
	test_set.source_greeting_timeout_secs = 5;
}

static struct migrate_source_conn *test_conn_create(void)
{
	test_ioloop = io_loop_create();
	return migrate_source_conn_create(&test_set, NULL, NULL);
}

static void test_conn_destroy(struct migrate_source_conn **conn,
			      struct test_server *server)
{
	migrate_source_conn_destroy(conn);
	test_assert(server_finish(server));
	io_loop_destroy(&test_ioloop);
	test_settings_reset();
}

/* the error line says this, in so many words */
static void test_assert_error_has(const char *error, const char *part)
{
	if (error == NULL || strstr(error, part) == NULL) {
		test_assert_failed(t_strdup_printf("error '%s' lacks '%s'",
						   error, part),
				   __FILE__, __LINE__);
	}
}

#define GREETING_PLAIN \
	"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] ready\r\n"
#define LOGIN_STEPS \
	SEND(GREETING_PLAIN), \
	EXPECT("A1 AUTHENTICATE PLAIN " TEST_PLAIN_IR), \
	SEND("A1 OK [CAPABILITY IMAP4rev1 IDLE LITERAL+] Logged in\r\n")

static struct migrate_source_conn *
test_connect_ok(struct test_server *server, const struct step *steps)
{
	struct migrate_source_conn *conn;
	enum migrate_error error_code;
	const char *error;

	server_start(server, steps);
	conn = test_conn_create();
	if (migrate_source_conn_connect(conn, &error_code, &error) < 0)
		test_assert_failed(t_strdup_printf("connect failed: %s",
						   error), __FILE__, __LINE__);
	return conn;
}

/* Logins that succeed: what the server plays up to a NOOP after the
   login, and the capabilities the client knows then (compared without
   case) and doesn't */
static const struct login_success {
	const char *name;
	const struct step *steps;
	const char *caps[4];
	const char *no_caps[3];
} login_successes[] = {
	{ "AUTH=PLAIN login, CAPABILITY in tagged OK",
	  (const struct step[]){
		LOGIN_STEPS,
		/* no CAPABILITY command: the tagged OK brought them */
		EXPECT("A2 NOOP"),
		SEND("A2 OK done\r\n"),
		END },
	  /* the capabilities after login replaced the greeting's */
	  { "IDLE", "idle", "LITERAL+", NULL }, { "AUTH=PLAIN", NULL } },
	{ "CAPABILITY command, LOGIN, CAPABILITY after login",
	  (const struct step[]){
		SEND("* OK ready\r\n"),
		EXPECT("A1 CAPABILITY"),
		SEND("* CAPABILITY IMAP4rev1 ID\r\nA1 OK done\r\n"),
		/* no AUTH=PLAIN: LOGIN, quoted */
		EXPECT("A2 LOGIN \"" TEST_USER "\" \"" TEST_PASSWORD "\""),
		SEND("A2 OK Logged in\r\n"),
		/* no capabilities with the OK: asked for */
		EXPECT("A3 CAPABILITY"),
		SEND("* CAPABILITY IMAP4rev1 MOVE\r\nA3 OK done\r\n"),
		EXPECT("A4 NOOP"),
		SEND("A4 OK done\r\n"),
		END },
	  { "MOVE", NULL }, { "ID", NULL } },
	{ "PREAUTH",
	  (const struct step[]){
		SEND("* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS] ready\r\n"),
		/* no login, no CAPABILITY */
		EXPECT("A1 NOOP"),
		SEND("A1 OK done\r\n"),
		END },
	  { "UIDPLUS", NULL }, { NULL } },
};

static void test_login_successes(void)
{
	const struct login_success *c;
	struct migrate_source_conn *conn;
	struct test_server server;
	enum migrate_error error_code;
	const char *error, *const *cap;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(login_successes); i++) {
		c = &login_successes[i];
		test_begin(t_strdup_printf("source conn: %s", c->name));
		conn = test_connect_ok(&server, c->steps);
		test_assert(migrate_source_conn_is_connected(conn));
		for (cap = c->caps; *cap != NULL; cap++)
			test_assert(migrate_source_conn_has_capability(conn, *cap));
		for (cap = c->no_caps; *cap != NULL; cap++)
			test_assert(!migrate_source_conn_has_capability(conn, *cap));
		test_assert(migrate_source_conn_run(conn, "NOOP", NULL, NULL,
						    &error_code, &error) == 1);
		test_conn_destroy(&conn, &server);
		test_end();
	}
}

/* Commands that fail after a good login: what the server plays, the
   result of migrate_source_conn_run() (0: the command failed, the
   connection is fine; -1: the connection failed and is closed), the
   error code and what the error line says. */
static const struct command_failure {
	const char *name;
	unsigned int timeout_secs;
	const struct step *steps;
	const char *cmdline;
	int ret;
	enum migrate_error code;
	const char *error_part;
} command_failures[] = {
	{ "tagged BAD (PROTOCOL)", 5,
	  (const struct step[]){
		LOGIN_STEPS,
		EXPECT("A2 NOOP"),
		SEND("A2 BAD [CLIENTBUG] Not now\r\n"),
		END },
	  "NOOP", 0, MIGRATE_ERROR_PROTOCOL, "BAD Not now (reply to NOOP)" },
	{ "tagged NO of a throttling server (TEMP)", 5,
	  (const struct step[]){
		LOGIN_STEPS,
		EXPECT("A2 EXAMINE \"INBOX\""),
		SEND("A2 NO [UNAVAILABLE] Busy\r\n"),
		END },
	  "EXAMINE \"INBOX\"", 0, MIGRATE_ERROR_TEMP,
	  "NO Busy (reply to EXAMINE)" },
	{ "a tag never sent (PROTOCOL)", 5,
	  (const struct step[]){
		LOGIN_STEPS,
		EXPECT("A2 NOOP"),
		SEND("A9 OK what\r\n"),
		END },
	  "NOOP", -1, MIGRATE_ERROR_PROTOCOL,
	  "unknown tag 'A9'" },
	{ "a too long line (PROTOCOL)", 5,
	  (const struct step[]){
		LOGIN_STEPS,
		EXPECT("A2 NOOP"),
		/* beyond any line the client accepts */
		SEND("* OK "),
		SEND_FILL("x", 3*1024*1024),
		SEND("\r\nA2 OK done\r\n"),
		END },
	  "NOOP", -1, MIGRATE_ERROR_PROTOCOL,
	  "sent a too long reply line (more than 1048576 bytes) while "
	  "waiting for the reply to NOOP" },
	{ "a too large literal that isn't a body (PROTOCOL)", 5,
	  (const struct step[]){
		LOGIN_STEPS,
		EXPECT("A2 LIST \"\" \"*\""),
		SEND("* LIST () \"/\" {4000000}\r\n"),
		SEND_FILL("y", 4000000),
		SEND("\r\nA2 OK done\r\n"),
		END },
	  "LIST \"\" \"*\"", -1, MIGRATE_ERROR_PROTOCOL,
	  "sent a too large literal (4000000 bytes, more than 1048576)" },
	{ "a stalled reply (migrate_source_timeout)", 1,
	  (const struct step[]){
		LOGIN_STEPS,
		EXPECT("A2 UID FETCH 1:* (FLAGS)"),
		/* a reply started, never finished */
		SEND("* 1 FETCH (FLAGS"),
		END },
	  "UID FETCH 1:* (FLAGS)", -1, MIGRATE_ERROR_TEMP,
	  "made no progress for 1 seconds while waiting for the reply to "
	  "UID FETCH (migrate_source_timeout)" },
};

static void test_command_failures(void)
{
	const struct command_failure *c;
	struct migrate_source_conn *conn;
	struct test_server server;
	enum migrate_error error_code;
	const char *error;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(command_failures); i++) {
		c = &command_failures[i];
		test_begin(t_strdup_printf("source conn: %s", c->name));
		test_set.source_timeout_secs = c->timeout_secs;
		conn = test_connect_ok(&server, c->steps);
		error_code = MIGRATE_ERROR_NONE;
		error = NULL;
		test_assert(migrate_source_conn_run(conn, c->cmdline, NULL,
				NULL, &error_code, &error) == c->ret);
		test_assert(error_code == c->code);
		test_assert_error_has(error, c->error_part);
		/* a command's failure isn't the connection's */
		test_assert(migrate_source_conn_is_connected(conn) ==
			    (c->ret == 0));
		test_conn_destroy(&conn, &server);
		test_end();
	}
}

/* Connections that fail: what the server plays, the error code, and
   what the error line must say (the setting to look at, where the
   product names one). The server's text never brings the password. */
static const struct connect_failure {
	const char *name;
	enum migrate_ssl_mode ssl;
	unsigned int greeting_timeout_secs;
	const struct step *steps;
	enum migrate_error code;
	const char *error_parts[3];
} connect_failures[] = {
	{ "AUTHENTICATE PLAIN refused (AUTH)", MIGRATE_SSL_NONE, 5,
	  (const struct step[]){
		SEND("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"),
		/* no SASL-IR: the response after the continuation */
		EXPECT("A1 AUTHENTICATE PLAIN"),
		SEND("+ \r\n"),
		EXPECT(TEST_PLAIN_IR),
		/* the server echoes the password */
		SEND("A1 NO [AUTHENTICATIONFAILED] Bad password "
		     TEST_PASSWORD "\r\n"),
		END },
	  MIGRATE_ERROR_AUTH,
	  { "Source server rejected the login of user " TEST_USER
	    " (migrate_source_user, migrate_source_password*): NO ",
	    "[the server's text was removed: it held the source "
	    "credentials]", NULL } },
	{ "LOGIN refused (AUTH)", MIGRATE_SSL_NONE, 5,
	  (const struct step[]){
		SEND("* OK [CAPABILITY IMAP4rev1] ready\r\n"),
		EXPECT("A1 LOGIN \"" TEST_USER "\" \"" TEST_PASSWORD "\""),
		SEND("A1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"),
		END },
	  MIGRATE_ERROR_AUTH,
	  { "Source server rejected the login of user " TEST_USER
	    " (migrate_source_user, migrate_source_password*): "
	    "NO Invalid credentials", NULL } },
	{ "login refused by a busy server (TEMP)", MIGRATE_SSL_NONE, 5,
	  (const struct step[]){
		SEND(GREETING_PLAIN),
		EXPECT("A1 AUTHENTICATE PLAIN " TEST_PLAIN_IR),
		SEND("A1 NO [UNAVAILABLE] Try again later\r\n"),
		END },
	  MIGRATE_ERROR_TEMP,
	  { "(migrate_source_user, migrate_source_password*): "
	    "NO Try again later", NULL } },
	{ "LOGINDISABLED, no AUTH= (CONFIG)", MIGRATE_SSL_NONE, 5,
	  (const struct step[]){
		SEND("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready\r\n"),
		END },
	  MIGRATE_ERROR_CONFIG,
	  { "Source server disabled LOGIN",
	    "(migrate_source_ssl, migrate_source_sasl_mechanisms)", NULL } },
	{ "BYE greeting (TEMP)", MIGRATE_SSL_NONE, 5,
	  (const struct step[]){
		SEND("* BYE Too many connections\r\n"),
		END },
	  MIGRATE_ERROR_TEMP,
	  { "refused the connection: BYE Too many connections", NULL } },
	{ "not an IMAP server (PROTOCOL)", MIGRATE_SSL_NONE, 5,
	  (const struct step[]){
		SEND("HTTP/1.1 400 Bad Request\r\n"),
		END },
	  MIGRATE_ERROR_PROTOCOL,
	  { "No IMAP greeting from 127.0.0.1:", NULL } },
	{ "no greeting (migrate_source_greeting_timeout)", MIGRATE_SSL_NONE, 1,
	  (const struct step[]){ END },
	  MIGRATE_ERROR_TEMP,
	  { "No IMAP greeting from 127.0.0.1:",
	    "within 1 seconds (migrate_source_greeting_timeout; "
	    "is it an IMAP port?)", NULL } },
	{ "STARTTLS not offered (CONFIG)", MIGRATE_SSL_STARTTLS, 5,
	  (const struct step[]){
		SEND(GREETING_PLAIN),
		END },
	  MIGRATE_ERROR_CONFIG,
	  { "Source server doesn't support STARTTLS "
	    "(migrate_source_ssl=starttls)", NULL } },
	{ "STARTTLS refused (CONFIG)", MIGRATE_SSL_STARTTLS, 5,
	  (const struct step[]){
		SEND("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
		EXPECT("A1 STARTTLS"),
		SEND("A1 NO Not today\r\n"),
		END },
	  MIGRATE_ERROR_CONFIG,
	  { "refused STARTTLS: NO Not today (reply to STARTTLS) "
	    "(migrate_source_ssl=starttls)", NULL } },
};

static void test_connect_failures(void)
{
	const struct connect_failure *c;
	struct migrate_source_conn *conn;
	struct test_server server;
	enum migrate_error error_code;
	const char *error, *const *part;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(connect_failures); i++) {
		c = &connect_failures[i];
		test_begin(t_strdup_printf("source conn: %s", c->name));
		test_set.source_ssl = c->ssl;
		test_set.source_greeting_timeout_secs =
			c->greeting_timeout_secs;
		server_start(&server, c->steps);
		conn = test_conn_create();
		error_code = MIGRATE_ERROR_NONE;
		error = NULL;
		test_assert(migrate_source_conn_connect(conn, &error_code,
							&error) < 0);
		test_assert(error_code == c->code);
		test_assert(!migrate_source_conn_is_connected(conn));
		for (part = c->error_parts; *part != NULL; part++)
			test_assert_error_has(error, *part);
		test_assert(error == NULL ||
			    strstr(error, TEST_PASSWORD) == NULL);
		test_conn_destroy(&conn, &server);
		test_end();
	}
}

struct untagged_ctx {
	string_t *seen;
};

static void test_untagged_callback(const struct migrate_reply *reply,
				   void *context)
{
	struct untagged_ctx *ctx = context;
	const struct imap_arg *arg;
	const char *str;

	test_assert(reply->type == MIGRATE_REPLY_UNTAGGED);
	str_printfa(ctx->seen, "%u:%s:", reply->num, reply->name);
	if (reply->resp_code != NULL) {
		str_printfa(ctx->seen, "[%s %s]", reply->resp_code,
			    reply->resp_code_arg == NULL ? "" :
			    reply->resp_code_arg);
	}
	if (reply->text != NULL)
		str_append(ctx->seen, reply->text);
	else {
		/* the string arguments: a LIST's separator and name */
		for (arg = reply->args; !IMAP_ARG_IS_EOL(arg); arg++) {
			if (imap_arg_get_astring(arg, &str))
				str_printfa(ctx->seen, "%s,", str);
		}
	}
	str_append_c(ctx->seen, ';');
}

static void test_untagged(void)
{
	static const struct step steps[] = {
		LOGIN_STEPS,
		/* pipelined: both commands arrive before any reply */
		EXPECT("A2 LIST \"\" \"*\""),
		EXPECT("A3 NOOP"),
		SEND("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		     "* LIST () \"/\" {5}\r\nA/\"b)\r\n"
		     "* 3 EXISTS\r\n"
		     /* the later command completes first */
		     "A3 OK noop done\r\n"
		     "* OK [UIDNEXT 7] next\r\n"
		     "A2 OK list done\r\n"),
		END
	};
	struct migrate_source_conn *conn;
	struct test_server server;
	struct untagged_ctx ctx;
	enum migrate_error error_code;
	const char *error;
	unsigned int tag_list, tag_noop;

	test_begin("source conn: untagged to callback, tags out of order");
	conn = test_connect_ok(&server, steps);
	ctx.seen = t_str_new(128);
	tag_list = migrate_source_conn_send(conn, "LIST \"\" \"*\"");
	tag_noop = migrate_source_conn_send(conn, "NOOP");
	test_assert(migrate_source_conn_wait_tag(conn, tag_list,
		test_untagged_callback, &ctx, &error_code, &error) == 1);
	test_assert_strcmp(str_c(ctx.seen),
		"0:LIST:/,INBOX,;0:LIST:/,A/\"b),;3:EXISTS:;"
		"0:OK:[UIDNEXT 7]next;");
	/* the NOOP's OK was kept for its own wait */
	test_assert(migrate_source_conn_wait_tag(conn, tag_noop, NULL, NULL,
						 &error_code, &error) == 1);
	test_conn_destroy(&conn, &server);
	test_end();
}

/* Read a FETCH body to its end, waiting when the stream is dry, as the
   save path does */
static int test_read_body(struct migrate_source_conn *conn,
			  struct istream *body, string_t *dest,
			  const char **error_r)
{
	const unsigned char *data;
	size_t size;
	ssize_t ret;

	for (;;) {
		ret = i_stream_read_more(body, &data, &size);
		if (ret > 0) {
			str_append_data(dest, data, size);
			i_stream_skip(body, size);
			continue;
		}
		if (ret == -1)
			return 0;
		if (migrate_source_conn_wait(conn, error_r) < 0)
			return -1;
	}
}

#define BODY1 "From: a@example.org\r\nSubject: {5}\r\n\r\n" \
	"A2 OK not a reply\r\n* 2 FETCH (a line in the body)\r\n"
#define BODY1_LEN "88"

static void test_fetch_literal(void)
{
	static const struct step steps[] = {
		LOGIN_STEPS,
		EXPECT("A2 UID FETCH 1:2 (FLAGS BODY.PEEK[])"),
		SEND("* 1 FETCH (UID 1 BODY[] {" BODY1_LEN "}\r\n"
		     "From: a@example.org\r\nSubj"),
		PAUSE(50),
		SEND("ect: {5}\r\n\r\nA2 OK not a reply\r\n"),
		PAUSE(50),
		SEND("* 2 FETCH (a line in the body)\r\n FLAGS (\\Seen))\r\n"),
		/* the literal's size itself split across packets */
		SEND("* 2 FETCH (UID 2 BODY[] {"),
		PAUSE(50),
		SEND("3}\r\nab"),
		PAUSE(50),
		SEND("c FLAGS ())\r\nA2 OK Fetch done\r\n"),
		END
	};
	struct migrate_source_conn *conn;
	struct test_server server;
	struct migrate_reply reply;
	const struct imap_arg *args, *flags;
	enum migrate_error error_code;
	const char *error, *str;
	unsigned int tag;
	string_t *body;

	test_begin("source conn: FETCH body literal streamed exactly");
	i_assert(strlen(BODY1) == atoi(BODY1_LEN));
	conn = test_connect_ok(&server, steps);
	body = t_str_new(128);
	tag = migrate_source_conn_send(conn, "UID FETCH 1:2 (FLAGS BODY.PEEK[])");

	test_assert(migrate_source_conn_read(conn, &reply, &error_code,
					     &error) == 1);
	test_assert(reply.type == MIGRATE_REPLY_UNTAGGED && reply.num == 1);
	test_assert(null_strcmp(reply.name, "FETCH") == 0);
	test_assert(reply.body != NULL && reply.body_size == strlen(BODY1));
	/* the items before the literal */
	test_assert(imap_arg_atom_equals(&reply.args[0], "UID") &&
		    imap_arg_get_atom(&reply.args[1], &str) &&
		    strcmp(str, "1") == 0);
	test_assert(test_read_body(conn, reply.body, body, &error) == 0);
	test_assert_strcmp(str_c(body), BODY1);
	/* and those after it */
	test_assert(migrate_source_conn_finish_body(conn, &args, &error_code,
						    &error) == 1);
	test_assert(imap_arg_atom_equals(&args[0], "FLAGS") &&
		    imap_arg_get_list(&args[1], &flags) &&
		    imap_arg_atom_equals(&flags[0], "\\Seen"));

	test_assert(migrate_source_conn_read(conn, &reply, &error_code,
					     &error) == 1);
	test_assert(reply.num == 2 && reply.body != NULL &&
		    reply.body_size == 3);
	str_truncate(body, 0);
	test_assert(test_read_body(conn, reply.body, body, &error) == 0);
	test_assert_strcmp(str_c(body), "abc");
	test_assert(migrate_source_conn_finish_body(conn, &args, &error_code,
						    &error) == 1);
	test_assert(imap_arg_atom_equals(&args[0], "FLAGS"));

	test_assert(migrate_source_conn_read(conn, &reply, &error_code,
					     &error) == 1);
	test_assert(reply.type == MIGRATE_REPLY_TAGGED && reply.tag == tag &&
		    strcmp(reply.name, "OK") == 0);
	test_conn_destroy(&conn, &server);
	test_end();
}

static void test_fetch_prefetch_and_skip(void)
{
	static const struct step steps[] = {
		LOGIN_STEPS,
		EXPECT("A2 UID FETCH 5 BODY.PEEK[]"),
		SEND("* 5 FETCH (BODY[] {10}\r\n01234"),
		PAUSE(50),
		SEND("56789 UID 5)\r\nA2 OK done\r\n"),
		EXPECT("A3 UID FETCH 6 BODY.PEEK[]"),
		SEND("* 6 FETCH (BODY[] {10}\r\n0123456789 UID 6)\r\n"
		     "A3 OK done\r\n"),
		END
	};
	struct migrate_source_conn *conn;
	struct test_server server;
	struct migrate_reply reply;
	const struct imap_arg *args;
	enum migrate_error error_code;
	const unsigned char *data;
	const char *error;
	size_t size;

	test_begin("source conn: body prefetch, an unread body skipped");
	conn = test_connect_ok(&server, steps);
	/* prefetched: all of it in the buffer */
	(void)migrate_source_conn_send(conn, "UID FETCH 5 BODY.PEEK[]");
	test_assert(migrate_source_conn_read(conn, &reply, &error_code,
					     &error) == 1);
	test_assert(reply.body != NULL);
	test_assert(migrate_source_conn_body_prefetch(conn, &error_code,
						      &error) == 1);
	test_assert(i_stream_read_more(reply.body, &data, &size) > 0 &&
		    size == 10 && memcmp(data, "0123456789", 10) == 0);
	test_assert(migrate_source_conn_finish_body(conn, &args, &error_code,
						    &error) == 1);
	test_assert(imap_arg_atom_equals(&args[0], "UID"));
	test_assert(migrate_source_conn_read(conn, &reply, &error_code,
					     &error) == 1 &&
		    reply.type == MIGRATE_REPLY_TAGGED);
	/* a body the caller doesn't read is skipped by run */
	test_assert(migrate_source_conn_run(conn, "UID FETCH 6 BODY.PEEK[]",
					    NULL, NULL, &error_code,
					    &error) == 1);
	test_conn_destroy(&conn, &server);
	test_end();
}

static void test_disconnect_mid_literal(void)
{
	static const struct step steps[] = {
		LOGIN_STEPS,
		EXPECT("A2 UID FETCH 1 BODY.PEEK[]"),
		SEND("* 1 FETCH (UID 1 BODY[] {1000}\r\nFrom: a@example.org\r\n"),
		PAUSE(50),
		CLOSE,
		END
	};
	struct migrate_source_conn *conn;
	struct test_server server;
	struct migrate_reply reply;
	const struct imap_arg *args;
	enum migrate_error error_code;
	const char *error;
	string_t *body;

	test_begin("source conn: disconnection in the middle of a literal");
	conn = test_connect_ok(&server, steps);
	body = t_str_new(128);
	(void)migrate_source_conn_send(conn, "UID FETCH 1 BODY.PEEK[]");
	test_assert(migrate_source_conn_read(conn, &reply, &error_code,
					     &error) == 1);
	test_assert(reply.body != NULL && reply.body_size == 1000);
	/* the stream ends early: never a whole message */
	(void)test_read_body(conn, reply.body, body, &error);
	test_assert(reply.body->v_offset < 1000);
	test_assert_strcmp(str_c(body), "From: a@example.org\r\n");
	error = NULL;
	test_assert(migrate_source_conn_finish_body(conn, &args, &error_code,
						    &error) == -1);
	test_assert(error_code == MIGRATE_ERROR_TEMP);
	test_assert_error_has(error, "Connection closed by the server");
	test_assert(!migrate_source_conn_is_connected(conn));
	test_conn_destroy(&conn, &server);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_login_successes,
		test_untagged,
		test_fetch_literal,
		test_fetch_prefetch_and_skip,
		test_disconnect_mid_literal,
		test_command_failures,
		test_connect_failures,
		NULL
	};

	test_settings_reset();
	return test_run(test_functions);
}
