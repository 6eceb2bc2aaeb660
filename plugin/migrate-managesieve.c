/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "base64.h"
#include "safe-memset.h"
#include "str-sanitize.h"
#include "dsasl-client.h"
#include "migrate-settings.h"
#include "migrate-source-conn.h"
#include "migrate-line-conn.h"
#include "migrate-managesieve.h"

/* longest response line; scripts come as literals */
#define MANAGESIEVE_MAX_LINE 8192
/* largest script (Pigeonhole's default sieve_max_script_size is 1M) */
#define MANAGESIEVE_MAX_SCRIPT (16*1024*1024)
/* capability lines in a greeting, scripts in a listing */
#define MANAGESIEVE_MAX_LINES 100000
#define MANAGESIEVE_AUTH_CONTINUATIONS_MAX 10

struct migrate_managesieve {
	pool_t pool;
	const struct migrate_settings *set;
	struct migrate_line_conn *conn;
	const char *implementation, *sasl;
	bool starttls;
};

/* One token of a response line: an atom, or a string (quoted or
   literal) */
struct managesieve_token {
	bool string;
	string_t *value;
};
ARRAY_DEFINE_TYPE(managesieve_token, struct managesieve_token);

static int
managesieve_protocol_error(struct migrate_managesieve *ms, const char *what,
			   enum migrate_error *error_code_r,
			   const char **error_r)
{
	*error_code_r = MIGRATE_ERROR_PROTOCOL;
	*error_r = t_strdup_printf("The %s sent %s",
				   migrate_line_conn_name(ms->conn), what);
	migrate_line_conn_disconnect(ms->conn);
	return -1;
}

/* Read one response line with its literals into tokens (data stack) */
static int
managesieve_read_tokens(struct migrate_managesieve *ms,
			ARRAY_TYPE(managesieve_token) *tokens,
			enum migrate_error *error_code_r, const char **error_r)
{
	struct managesieve_token *token;
	const unsigned char *data;
	const char *line, *p, *end;
	uoff_t size;

	array_clear(tokens);
	if (migrate_line_conn_read_line(ms->conn, &line, error_code_r,
					error_r) < 0)
		return -1;
	for (p = line;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return 0;
		token = array_append_space(tokens);
		token->value = t_str_new(32);
		if (*p == '"') {
			token->string = TRUE;
			for (p++; *p != '"'; p++) {
				if (*p == '\0') {
					return managesieve_protocol_error(ms,
						"an unterminated string",
						error_code_r, error_r);
				}
				if (*p == '\\' && p[1] != '\0')
					p++;
				str_append_c(token->value, *p);
			}
			p++;
		} else if (*p == '{') {
			/* {n} or {n+}, the last thing on the line */
			if (str_parse_uoff(p + 1, &size, &end) < 0)
				end = "";
			else if (*end == '+')
				end++;
			if (strcmp(end, "}") != 0) {
				return managesieve_protocol_error(ms,
					"a malformed literal",
					error_code_r, error_r);
			}
			if (size > MANAGESIEVE_MAX_SCRIPT) {
				return managesieve_protocol_error(ms, t_strdup_printf(
					"a literal of %"PRIuUOFF_T" bytes (more "
					"than %u)", size, MANAGESIEVE_MAX_SCRIPT),
					error_code_r, error_r);
			}
			token->string = TRUE;
			if (size > 0) {
				if (migrate_line_conn_read_data(ms->conn, size,
						&data, error_code_r,
						error_r) < 0)
					return -1;
				str_append_data(token->value, data, size);
			}
			/* the line goes on after the literal */
			if (migrate_line_conn_read_line(ms->conn, &line,
							error_code_r,
							error_r) < 0)
				return -1;
			p = line;
		} else {
			for (; *p != ' ' && *p != '\0'; p++)
				str_append_c(token->value, *p);
		}
	}
}

/* An OK/NO/BYE response: 1 = OK, 0 = NO (error_r holds the server's
   text), -1 = BYE (disconnected) or not a response at all */
static int
managesieve_response(const ARRAY_TYPE(managesieve_token) *tokens,
		     bool *is_response_r, const char **text_r)
{
	const struct managesieve_token *t;
	unsigned int i, count;
	const char *name;

	t = array_get(tokens, &count);
	*is_response_r = FALSE;
	*text_r = "";
	if (count == 0 || t[0].string)
		return 0;
	name = str_c(t[0].value);
	if (strcasecmp(name, "OK") != 0 && strcasecmp(name, "NO") != 0 &&
	    strcasecmp(name, "BYE") != 0)
		return 0;
	*is_response_r = TRUE;
	/* the human-readable text is the last string */
	for (i = count; i > 1; i--) {
		if (t[i - 1].string) {
			*text_r = str_sanitize(str_c(t[i - 1].value), 256);
			break;
		}
	}
	if (strcasecmp(name, "OK") == 0)
		return 1;
	return strcasecmp(name, "NO") == 0 ? 0 : -1;
}

/* Read lines up to the response; data lines are handed to callback
   (which may be NULL). 1 = OK, 0 = NO (error_r = server's text),
   -1 = failure (error_code_r, error_r). */
typedef int managesieve_data_callback_t(struct migrate_managesieve *ms,
					const ARRAY_TYPE(managesieve_token) *tokens,
					void *context);
static int
managesieve_read_response(struct migrate_managesieve *ms,
			  managesieve_data_callback_t *callback, void *context,
			  enum migrate_error *error_code_r,
			  const char **error_r)
{
	ARRAY_TYPE(managesieve_token) tokens;
	bool is_response;
	const char *text;
	unsigned int lines = 0;
	int ret;

	t_array_init(&tokens, 8);
	for (;;) {
		if (managesieve_read_tokens(ms, &tokens, error_code_r,
					    error_r) < 0)
			return -1;
		ret = managesieve_response(&tokens, &is_response, &text);
		if (is_response) {
			if (ret < 0) {
				*error_code_r = MIGRATE_ERROR_TEMP;
				*error_r = t_strdup_printf(
					"The %s closed the connection: BYE %s",
					migrate_line_conn_name(ms->conn),
					migrate_line_conn_redact(ms->conn,
								 text, 256));
				migrate_line_conn_disconnect(ms->conn);
				return -1;
			}
			*error_r = migrate_line_conn_redact(ms->conn, text, 256);
			return ret;
		}
		if (++lines > MANAGESIEVE_MAX_LINES) {
			return managesieve_protocol_error(ms,
				"too many lines without a response",
				error_code_r, error_r);
		}
		if (callback != NULL && callback(ms, &tokens, context) < 0) {
			return managesieve_protocol_error(ms,
				"an unexpected line", error_code_r, error_r);
		}
	}
}

static int
managesieve_capability(struct migrate_managesieve *ms,
		       const ARRAY_TYPE(managesieve_token) *tokens,
		       void *context ATTR_UNUSED)
{
	const struct managesieve_token *t;
	unsigned int count;
	const char *name;

	t = array_get(tokens, &count);
	if (count == 0 || !t[0].string)
		return -1;
	name = str_c(t[0].value);
	if (strcasecmp(name, "STARTTLS") == 0)
		ms->starttls = TRUE;
	else if (strcasecmp(name, "SASL") == 0)
		ms->sasl = count > 1 ? p_strdup(ms->pool, str_c(t[1].value)) : "";
	else if (strcasecmp(name, "IMPLEMENTATION") == 0)
		ms->implementation = count > 1 ?
			p_strdup(ms->pool,
				 str_sanitize(str_c(t[1].value), 100)) : "";
	return 0;
}

static int
managesieve_capabilities(struct migrate_managesieve *ms,
			 enum migrate_error *error_code_r,
			 const char **error_r)
{
	int ret;

	ms->starttls = FALSE;
	ms->sasl = "";
	ret = managesieve_read_response(ms, managesieve_capability, NULL,
					error_code_r, error_r);
	if (ret == 0) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("The %s refused the connection: %s",
			migrate_line_conn_name(ms->conn), *error_r);
		return -1;
	}
	return ret < 0 ? -1 : 0;
}

static void
managesieve_append_string(string_t *str, const char *value)
{
	str_append_c(str, '"');
	for (; *value != '\0'; value++) {
		if (*value == '"' || *value == '\\')
			str_append_c(str, '\\');
		str_append_c(str, *value);
	}
	str_append_c(str, '"');
}

static bool
managesieve_mech_offered(struct migrate_managesieve *ms, const char *mech)
{
	const char *const *mechs;

	for (mechs = t_strsplit_spaces(ms->sasl, " "); *mechs != NULL; mechs++) {
		if (strcasecmp(*mechs, mech) == 0)
			return TRUE;
	}
	return FALSE;
}

/* The IMAP side's mechanism: the first of migrate_source_sasl_mechanisms
   the server offers, else PLAIN */
static const char *managesieve_pick_mech(struct migrate_managesieve *ms)
{
	const char *const *mechs;

	if (ms->set->source_sasl_mechanisms == NULL)
		return "PLAIN";
	mechs = t_strsplit_spaces(ms->set->source_sasl_mechanisms, " ,");
	for (; *mechs != NULL; mechs++) {
		if (managesieve_mech_offered(ms, *mechs))
			return t_str_ucase(*mechs);
	}
	return mechs[0] == NULL ? "PLAIN" :
		t_str_ucase(t_strsplit_spaces(
			ms->set->source_sasl_mechanisms, " ,")[0]);
}

static int
managesieve_authenticate(struct migrate_managesieve *ms,
			 enum migrate_error *error_code_r,
			 const char **error_r)
{
	struct dsasl_client *client;
	ARRAY_TYPE(managesieve_token) tokens;
	const struct managesieve_token *t;
	const unsigned char *out;
	const char *mech_name, *password, *error, *text;
	unsigned int continuations = 0;
	bool is_response;
	size_t out_len;
	string_t *cmd;
	buffer_t *buf;
	int ret;

	if (migrate_source_password(ms->set, &password, error_r) < 0) {
		*error_code_r = MIGRATE_ERROR_AUTH;
		return -1;
	}
	migrate_line_conn_add_secret(ms->conn, password);
	mech_name = managesieve_pick_mech(ms);
	if (migrate_source_sasl_client(ms->set, mech_name, password, &client,
				       error_code_r, error_r) < 0)
		return -1;

	cmd = t_str_new(256);
	str_printfa(cmd, "AUTHENTICATE \"%s\"", mech_name);
	if (dsasl_client_output(client, &out, &out_len, &error) < 0) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf("SASL %s failed: %s",
					   mech_name, error);
		dsasl_client_free(&client);
		return -1;
	}
	if (out_len > 0) {
		size_t pos = str_len(cmd) + 2;

		str_append(cmd, " \"");
		base64_encode(out, out_len, cmd);
		migrate_line_conn_add_secret(ms->conn, str_c(cmd) + pos);
		str_append_c(cmd, '"');
	}
	migrate_line_conn_set_stage(ms->conn, "while logging in");
	ret = migrate_line_conn_write_line(ms->conn, str_c(cmd), error_code_r,
					   error_r);
	safe_memset(str_c_modifiable(cmd), 0, str_len(cmd));
	t_array_init(&tokens, 4);
	while (ret == 0) {
		if (managesieve_read_tokens(ms, &tokens, error_code_r,
					    error_r) < 0) {
			ret = -1;
			break;
		}
		ret = managesieve_response(&tokens, &is_response, &text);
		if (is_response) {
			if (ret > 0) {
				ret = 1;
				break;
			}
			*error_code_r = ret < 0 ? MIGRATE_ERROR_TEMP :
				MIGRATE_ERROR_AUTH;
			*error_r = t_strdup_printf("The %s rejected the login "
				"of user %s%s%s (migrate_source_user, "
				"migrate_source_password*): %s",
				migrate_line_conn_name(ms->conn),
				ms->set->source_user,
				ms->set->source_master_user == NULL ? "" :
				" with master user ",
				ms->set->source_master_user == NULL ? "" :
				ms->set->source_master_user,
				migrate_line_conn_redact(ms->conn, text, 256));
			ret = -1;
			break;
		}
		/* a challenge: a base64 string */
		t = array_front(&tokens);
		if (!t->string ||
		    ++continuations > MANAGESIEVE_AUTH_CONTINUATIONS_MAX) {
			ret = managesieve_protocol_error(ms,
				"an unexpected AUTHENTICATE challenge",
				error_code_r, error_r);
			break;
		}
		buf = t_buffer_create(128);
		if (base64_scheme_decode(&base64_scheme, 0, str_data(t->value),
					 str_len(t->value), buf) < 0 ||
		    dsasl_client_input(client, buf->data, buf->used,
				       &error) < 0 ||
		    dsasl_client_output(client, &out, &out_len, &error) < 0)
			out_len = 0;
		str_truncate(cmd, 0);
		str_append_c(cmd, '"');
		base64_encode(out, out_len, cmd);
		migrate_line_conn_add_secret(ms->conn, str_c(cmd) + 1);
		str_append_c(cmd, '"');
		ret = migrate_line_conn_write_line(ms->conn, str_c(cmd),
						   error_code_r, error_r);
		safe_memset(str_c_modifiable(cmd), 0, str_len(cmd));
	}
	dsasl_client_free(&client);
	return ret > 0 ? 0 : -1;
}

int migrate_managesieve_connect(const struct migrate_settings *set,
				struct mail_user *user, struct event *event,
				struct migrate_managesieve **ms_r,
				enum migrate_error *error_code_r,
				const char **error_r)
{
	struct migrate_line_conn_settings conn_set;
	struct migrate_managesieve *ms;
	int ret;

	i_zero(&conn_set);
	conn_set.protocol = "ManageSieve";
	conn_set.host = set->source_host;
	conn_set.port = set->sieve_port;
	conn_set.port_setting = "migrate_sieve_port";
	/* ManageSieve has no implicit TLS: imaps and starttls both mean
	   STARTTLS here */
	conn_set.tls = set->source_ssl == MIGRATE_SSL_NONE ?
		MIGRATE_LINE_CONN_TLS_NONE : MIGRATE_LINE_CONN_TLS_STARTTLS;
	conn_set.ssl_ca_file = set->source_ssl_ca_file;
	conn_set.ssl_verify = set->source_ssl_verify;
	conn_set.connect_timeout_secs = set->source_greeting_timeout_secs;
	conn_set.timeout_secs = set->source_timeout_secs;
	conn_set.max_line_length = MANAGESIEVE_MAX_LINE;
	conn_set.max_data_size = MANAGESIEVE_MAX_SCRIPT;

	pool_t pool = pool_alloconly_create("migrate managesieve", 1024);
	ms = p_new(pool, struct migrate_managesieve, 1);
	ms->pool = pool;
	ms->set = set;
	ms->conn = migrate_line_conn_create(&conn_set, user, event);
	ms->implementation = "";
	*ms_r = ms;

	migrate_line_conn_set_stage(ms->conn, "while connecting");
	if (migrate_line_conn_connect(ms->conn, error_code_r, error_r) < 0 ||
	    managesieve_capabilities(ms, error_code_r, error_r) < 0)
		return -1;
	if (conn_set.tls == MIGRATE_LINE_CONN_TLS_STARTTLS) {
		if (!ms->starttls) {
			*error_code_r = MIGRATE_ERROR_CONFIG;
			*error_r = t_strdup_printf("The %s doesn't offer "
				"STARTTLS (migrate_source_ssl=%s; "
				"migrate_source_ssl=no sends the password in "
				"the clear)", migrate_line_conn_name(ms->conn),
				set->source_ssl == MIGRATE_SSL_IMAPS ?
				"imaps" : "starttls");
			return -1;
		}
		migrate_line_conn_set_stage(ms->conn, "after STARTTLS");
		if (migrate_line_conn_write_line(ms->conn, "STARTTLS",
						 error_code_r, error_r) < 0)
			return -1;
		ret = managesieve_read_response(ms, NULL, NULL, error_code_r,
						error_r);
		if (ret == 0) {
			*error_code_r = MIGRATE_ERROR_CONFIG;
			*error_r = t_strdup_printf("The %s refused STARTTLS: "
				"%s (migrate_source_ssl)",
				migrate_line_conn_name(ms->conn), *error_r);
		}
		if (ret <= 0 ||
		    migrate_line_conn_starttls(ms->conn, error_code_r,
					       error_r) < 0)
			return -1;
		/* the server repeats its capabilities over TLS */
		if (managesieve_capabilities(ms, error_code_r, error_r) < 0)
			return -1;
	}
	return managesieve_authenticate(ms, error_code_r, error_r);
}

void migrate_managesieve_close(struct migrate_managesieve **_ms)
{
	struct migrate_managesieve *ms = *_ms;
	enum migrate_error error_code;
	const char *error;

	*_ms = NULL;
	if (ms == NULL)
		return;
	if (migrate_line_conn_is_connected(ms->conn)) T_BEGIN {
		migrate_line_conn_set_stage(ms->conn, "after LOGOUT");
		if (migrate_line_conn_write_line(ms->conn, "LOGOUT",
						 &error_code, &error) == 0)
			(void)managesieve_read_response(ms, NULL, NULL,
							&error_code, &error);
	} T_END;
	migrate_line_conn_destroy(&ms->conn);
	pool_unref(&ms->pool);
}

const char *migrate_managesieve_implementation(struct migrate_managesieve *ms)
{
	return ms->implementation;
}

struct managesieve_list_context {
	pool_t pool;
	ARRAY_TYPE(migrate_managesieve_script) *scripts;
};

static int
managesieve_list_line(struct migrate_managesieve *ms ATTR_UNUSED,
		      const ARRAY_TYPE(managesieve_token) *tokens,
		      void *context)
{
	struct managesieve_list_context *ctx = context;
	struct migrate_managesieve_script *script;
	const struct managesieve_token *t;
	unsigned int count;

	t = array_get(tokens, &count);
	if (count == 0 || !t[0].string)
		return -1;
	script = array_append_space(ctx->scripts);
	script->name = p_strdup(ctx->pool, str_c(t[0].value));
	script->active = count > 1 && !t[1].string &&
		strcasecmp(str_c(t[1].value), "ACTIVE") == 0;
	return 0;
}

static int
managesieve_command_failed(struct migrate_managesieve *ms, const char *cmd,
			   enum migrate_error *error_code_r,
			   const char **error_r)
{
	*error_code_r = MIGRATE_ERROR_PROTOCOL;
	*error_r = t_strdup_printf("The %s refused %s: %s",
		migrate_line_conn_name(ms->conn), cmd, *error_r);
	return -1;
}

int migrate_managesieve_list(struct migrate_managesieve *ms, pool_t pool,
			     ARRAY_TYPE(migrate_managesieve_script) *scripts,
			     enum migrate_error *error_code_r,
			     const char **error_r)
{
	struct managesieve_list_context ctx = {
		.pool = pool, .scripts = scripts
	};
	int ret;

	migrate_line_conn_set_stage(ms->conn, "after LISTSCRIPTS");
	if (migrate_line_conn_write_line(ms->conn, "LISTSCRIPTS",
					 error_code_r, error_r) < 0)
		return -1;
	ret = managesieve_read_response(ms, managesieve_list_line, &ctx,
					error_code_r, error_r);
	if (ret == 0)
		return managesieve_command_failed(ms, "LISTSCRIPTS",
						  error_code_r, error_r);
	return ret < 0 ? -1 : 0;
}

struct managesieve_get_context {
	string_t *content;
	bool have_script;
};

static int
managesieve_get_line(struct migrate_managesieve *ms ATTR_UNUSED,
		     const ARRAY_TYPE(managesieve_token) *tokens,
		     void *context)
{
	struct managesieve_get_context *ctx = context;
	const struct managesieve_token *t;
	unsigned int count;

	t = array_get(tokens, &count);
	if (count != 1 || !t[0].string || ctx->have_script)
		return -1;
	str_append_str(ctx->content, t[0].value);
	ctx->have_script = TRUE;
	return 0;
}

int migrate_managesieve_get(struct migrate_managesieve *ms, const char *name,
			    string_t *content,
			    enum migrate_error *error_code_r,
			    const char **error_r)
{
	struct managesieve_get_context ctx = { .content = content };
	string_t *cmd = t_str_new(64);
	int ret;

	str_append(cmd, "GETSCRIPT ");
	managesieve_append_string(cmd, name);
	migrate_line_conn_set_stage(ms->conn, "after GETSCRIPT");
	if (migrate_line_conn_write_line(ms->conn, str_c(cmd),
					 error_code_r, error_r) < 0)
		return -1;
	ret = managesieve_read_response(ms, managesieve_get_line, &ctx,
					error_code_r, error_r);
	if (ret == 0) {
		return managesieve_command_failed(ms, t_strdup_printf(
			"GETSCRIPT of %s", str_sanitize(name, 100)),
			error_code_r, error_r);
	}
	if (ret > 0 && !ctx.have_script) {
		return managesieve_protocol_error(ms,
			"no script for GETSCRIPT", error_code_r, error_r);
	}
	return ret < 0 ? -1 : 0;
}
