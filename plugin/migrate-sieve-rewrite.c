/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "migrate-sieve-rewrite.h"

#include <ctype.h>

enum sieve_token_type {
	SIEVE_TOKEN_IDENTIFIER,
	SIEVE_TOKEN_TAG,
	SIEVE_TOKEN_NUMBER,
	SIEVE_TOKEN_QUOTED,
	SIEVE_TOKEN_MULTILINE,
	/* [ ] ( ) { } ; , or a byte that is none of the above */
	SIEVE_TOKEN_PUNCT,
};

struct sieve_token {
	enum sieve_token_type type;
	/* the token's bytes; for a multi-line string the lines between
	   "text:" and the closing "." line */
	size_t start, end;
	unsigned int line;
	char punct;
};
ARRAY_DEFINE_TYPE(sieve_token, struct sieve_token);

struct sieve_lexer {
	const unsigned char *data;
	size_t size, pos;
	unsigned int line;
};

static bool sieve_is_ident_start(unsigned char c)
{
	return i_isalpha(c) || c == '_';
}

static bool sieve_is_ident(unsigned char c)
{
	return i_isalnum(c) || c == '_';
}

/* Skip to just after the next LF (or the end) */
static void sieve_lexer_skip_line(struct sieve_lexer *lex)
{
	while (lex->pos < lex->size && lex->data[lex->pos] != '\n')
		lex->pos++;
	if (lex->pos < lex->size) {
		lex->pos++;
		lex->line++;
	}
}

/* The lines of a multi-line string after "text:": the token spans its
   body, lex->pos ends after the closing "." line */
static int sieve_lexer_multiline(struct sieve_lexer *lex,
				 struct sieve_token *token,
				 const char **error_r)
{
	const unsigned char *p;
	size_t line_len;

	while (lex->pos < lex->size &&
	       (lex->data[lex->pos] == ' ' || lex->data[lex->pos] == '\t'))
		lex->pos++;
	if (lex->pos < lex->size && lex->data[lex->pos] == '#')
		sieve_lexer_skip_line(lex);
	else if (lex->pos < lex->size && lex->data[lex->pos] == '\r' &&
		 lex->pos + 1 < lex->size && lex->data[lex->pos + 1] == '\n') {
		lex->pos += 2;
		lex->line++;
	} else if (lex->pos < lex->size && lex->data[lex->pos] == '\n') {
		lex->pos++;
		lex->line++;
	} else {
		*error_r = t_strdup_printf(
			"line %u: text: not followed by a line end",
			lex->line);
		return -1;
	}
	token->start = lex->pos;
	for (;;) {
		if (lex->pos >= lex->size) {
			*error_r = t_strdup_printf(
				"line %u: unterminated multi-line string",
				token->line);
			return -1;
		}
		p = memchr(lex->data + lex->pos, '\n', lex->size - lex->pos);
		line_len = (p == NULL ? lex->size :
			    (size_t)(p - lex->data)) - lex->pos;
		if (lex->data[lex->pos] == '.' &&
		    (line_len == 1 ||
		     (line_len == 2 && lex->data[lex->pos + 1] == '\r'))) {
			token->end = lex->pos;
			sieve_lexer_skip_line(lex);
			return 0;
		}
		sieve_lexer_skip_line(lex);
	}
}

static int sieve_lexer_next(struct sieve_lexer *lex, struct sieve_token *token,
			    const char **error_r)
{
	const unsigned char *data = lex->data;
	unsigned char c;

	/* white space and comments */
	for (;;) {
		if (lex->pos >= lex->size)
			return 0;
		c = data[lex->pos];
		if (c == '\n') {
			lex->line++;
			lex->pos++;
		} else if (c == ' ' || c == '\t' || c == '\r') {
			lex->pos++;
		} else if (c == '#') {
			sieve_lexer_skip_line(lex);
		} else if (c == '/' && lex->pos + 1 < lex->size &&
			   data[lex->pos + 1] == '*') {
			unsigned int start_line = lex->line;

			lex->pos += 2;
			for (;;) {
				if (lex->pos + 1 >= lex->size) {
					*error_r = t_strdup_printf(
						"line %u: unterminated comment",
						start_line);
					return -1;
				}
				if (data[lex->pos] == '*' &&
				    data[lex->pos + 1] == '/')
					break;
				if (data[lex->pos] == '\n')
					lex->line++;
				lex->pos++;
			}
			lex->pos += 2;
		} else {
			break;
		}
	}

	i_zero(token);
	token->start = lex->pos;
	token->line = lex->line;
	if (c == '"') {
		token->type = SIEVE_TOKEN_QUOTED;
		for (lex->pos++;; lex->pos++) {
			if (lex->pos >= lex->size) {
				*error_r = t_strdup_printf(
					"line %u: unterminated string",
					token->line);
				return -1;
			}
			c = data[lex->pos];
			if (c == '"')
				break;
			if (c == '\\' && lex->pos + 1 < lex->size) {
				lex->pos++;
				c = data[lex->pos];
			}
			if (c == '\n')
				lex->line++;
		}
		lex->pos++;
	} else if (c == ':' && lex->pos + 1 < lex->size &&
		   sieve_is_ident_start(data[lex->pos + 1])) {
		token->type = SIEVE_TOKEN_TAG;
		for (lex->pos++; lex->pos < lex->size &&
		     sieve_is_ident(data[lex->pos]); lex->pos++) ;
	} else if (sieve_is_ident_start(c)) {
		token->type = SIEVE_TOKEN_IDENTIFIER;
		for (; lex->pos < lex->size &&
		     sieve_is_ident(data[lex->pos]); lex->pos++) ;
		if (lex->pos - token->start == 4 &&
		    strncasecmp((const char *)data + token->start,
				"text", 4) == 0 &&
		    lex->pos < lex->size && data[lex->pos] == ':') {
			token->type = SIEVE_TOKEN_MULTILINE;
			lex->pos++;
			return sieve_lexer_multiline(lex, token, error_r) < 0 ?
				-1 : 1;
		}
	} else if (i_isdigit(c)) {
		token->type = SIEVE_TOKEN_NUMBER;
		for (; lex->pos < lex->size &&
		     i_isdigit(data[lex->pos]); lex->pos++) ;
		if (lex->pos < lex->size &&
		    strchr("KMGkmg", data[lex->pos]) != NULL)
			lex->pos++;
	} else {
		token->type = SIEVE_TOKEN_PUNCT;
		token->punct = (char)c;
		lex->pos++;
	}
	token->end = lex->pos;
	return 1;
}

/* One argument of a command or test: a tag, a number, a string or a
   string list (tokens first..last) */
struct sieve_arg {
	enum sieve_token_type type;
	bool list;
	unsigned int first, last;
};
ARRAY_DEFINE_TYPE(sieve_arg, struct sieve_arg);

/* The arguments that follow the command or test at tokens[idx] */
static void
sieve_collect_args(const struct sieve_token *tokens, unsigned int count,
		   unsigned int idx, ARRAY_TYPE(sieve_arg) *args)
{
	struct sieve_arg *arg;
	unsigned int i = idx + 1, j;

	array_clear(args);
	while (i < count) {
		const struct sieve_token *t = &tokens[i];

		if (t->type == SIEVE_TOKEN_TAG ||
		    t->type == SIEVE_TOKEN_NUMBER ||
		    t->type == SIEVE_TOKEN_QUOTED ||
		    t->type == SIEVE_TOKEN_MULTILINE) {
			arg = array_append_space(args);
			arg->type = t->type;
			arg->first = arg->last = i++;
			continue;
		}
		if (t->type != SIEVE_TOKEN_PUNCT || t->punct != '[')
			break;
		/* string list: strings and commas up to ] */
		for (j = i + 1; j < count; j++) {
			if (tokens[j].type == SIEVE_TOKEN_PUNCT &&
			    tokens[j].punct == ',')
				continue;
			if (tokens[j].type != SIEVE_TOKEN_QUOTED &&
			    tokens[j].type != SIEVE_TOKEN_MULTILINE)
				break;
		}
		if (j >= count || tokens[j].type != SIEVE_TOKEN_PUNCT ||
		    tokens[j].punct != ']')
			break;
		arg = array_append_space(args);
		arg->type = SIEVE_TOKEN_QUOTED;
		arg->list = TRUE;
		arg->first = i + 1;
		arg->last = j;
		i = j + 1;
	}
}

struct sieve_rewriter {
	const unsigned char *data;
	const struct sieve_token *tokens;
	migrate_sieve_map_func_t *map;
	void *context;
	pool_t pool;
	ARRAY_TYPE(migrate_sieve_rewrite) *rewrites;
	/* token index -> replacement text, NULL when it stays */
	const char **replacements;
};

static const char *
sieve_string_value(const unsigned char *data, const struct sieve_token *t,
		   const char **line_end_r)
{
	string_t *str = t_str_new(t->end - t->start + 1);
	size_t i;
	bool line_start = TRUE;

	*line_end_r = "";
	if (t->type == SIEVE_TOKEN_QUOTED) {
		for (i = t->start + 1; i + 1 < t->end; i++) {
			if (data[i] == '\\' && i + 2 < t->end)
				i++;
			str_append_c(str, data[i]);
		}
		return str_c(str);
	}
	/* multi-line: undo the dot-stuffing; the last line's end is not part
	   of a mailbox name */
	for (i = t->start; i < t->end; i++) {
		if (line_start && data[i] == '.') {
			line_start = FALSE;
			continue;
		}
		line_start = data[i] == '\n';
		str_append_c(str, data[i]);
	}
	if (str_len(str) > 0 && str_c(str)[str_len(str) - 1] == '\n') {
		str_truncate(str, str_len(str) - 1);
		*line_end_r = "\n";
		if (str_len(str) > 0 &&
		    str_c(str)[str_len(str) - 1] == '\r') {
			str_truncate(str, str_len(str) - 1);
			*line_end_r = "\r\n";
		}
	}
	return str_c(str);
}

static const char *
sieve_string_encode(enum sieve_token_type type, const char *value,
		    const char *line_end)
{
	string_t *str = t_str_new(strlen(value) + 8);
	bool line_start = TRUE;
	const char *p;

	if (type == SIEVE_TOKEN_QUOTED) {
		str_append_c(str, '"');
		for (p = value; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				str_append_c(str, '\\');
			str_append_c(str, *p);
		}
		str_append_c(str, '"');
		return str_c(str);
	}
	for (p = value; *p != '\0'; p++) {
		if (line_start && *p == '.')
			str_append_c(str, '.');
		line_start = *p == '\n';
		str_append_c(str, *p);
	}
	str_append(str, line_end);
	return str_c(str);
}

static void
sieve_rewrite_string(struct sieve_rewriter *rw, const char *command,
		     unsigned int idx)
{
	const struct sieve_token *t = &rw->tokens[idx];
	struct migrate_sieve_rewrite *rewrite;
	const char *name, *line_end, *new_name = NULL, *reason = NULL;
	enum migrate_sieve_map_result result;

	if (t->type != SIEVE_TOKEN_QUOTED && t->type != SIEVE_TOKEN_MULTILINE)
		return;
	name = sieve_string_value(rw->data, t, &line_end);
	if (strstr(name, "${") != NULL) {
		result = MIGRATE_SIEVE_MAP_SKIPPED;
		reason = "the name is built from variables";
	} else {
		result = rw->map(name, rw->context, &new_name, &reason);
	}
	if (result == MIGRATE_SIEVE_MAP_UNCHANGED ||
	    (result == MIGRATE_SIEVE_MAP_CHANGED &&
	     strcmp(new_name, name) == 0))
		return;

	rewrite = array_append_space(rw->rewrites);
	rewrite->command = p_strdup(rw->pool, command);
	rewrite->line = t->line;
	rewrite->old_name = p_strdup(rw->pool, name);
	if (result == MIGRATE_SIEVE_MAP_SKIPPED) {
		rewrite->reason = p_strdup(rw->pool, reason);
		return;
	}
	rewrite->new_name = p_strdup(rw->pool, new_name);
	rw->replacements[idx] =
		sieve_string_encode(t->type, new_name, line_end);
}

static void
sieve_rewrite_arg(struct sieve_rewriter *rw, const char *command,
		  const struct sieve_arg *arg)
{
	unsigned int i;

	for (i = arg->first; i <= arg->last; i++)
		sieve_rewrite_string(rw, command, i);
}

/* Tags that take a value, in the commands and tests we look into */
static bool sieve_tag_has_value(const char *tag)
{
	static const char *const tags[] = {
		":flags", ":specialuse", ":mailboxid", ":fcc", ":comparator",
		":value", ":count", ":days", ":seconds", ":subject", ":from",
		":addresses", ":handle", ":importance", ":options",
		":message", NULL
	};
	unsigned int i;

	for (i = 0; tags[i] != NULL; i++) {
		if (strcasecmp(tag, tags[i]) == 0)
			return TRUE;
	}
	return FALSE;
}

static void
sieve_rewrite_command(struct sieve_rewriter *rw, const char *command,
		      const struct sieve_arg *args, unsigned int count)
{
	const struct sieve_arg *positional[3];
	unsigned int i, npos = 0;
	const char *tag;

	for (i = 0; i < count; i++) {
		if (args[i].type != SIEVE_TOKEN_TAG) {
			if (npos < N_ELEMENTS(positional))
				positional[npos] = &args[i];
			npos++;
			continue;
		}
		tag = t_strndup(rw->data + rw->tokens[args[i].first].start,
				rw->tokens[args[i].first].end -
				rw->tokens[args[i].first].start);
		if (!sieve_tag_has_value(tag) || i + 1 >= count)
			continue;
		i++;
		if (strcasecmp(tag, ":fcc") == 0 &&
		    (strcasecmp(command, "vacation") == 0 ||
		     strcasecmp(command, "notify") == 0) && !args[i].list) {
			sieve_rewrite_arg(rw, t_strdup_printf("%s :fcc",
				t_str_lcase(command)), &args[i]);
		}
	}
	if (npos == 0)
		return;
	if (strcasecmp(command, "fileinto") == 0) {
		/* fileinto [tags] <mailbox: string> */
		if (npos == 1 && !positional[0]->list)
			sieve_rewrite_arg(rw, "fileinto", positional[0]);
	} else if (strcasecmp(command, "mailboxexists") == 0) {
		/* mailboxexists <mailbox-names: string-list> */
		sieve_rewrite_arg(rw, "mailboxexists", positional[0]);
	} else if (strcasecmp(command, "metadata") == 0 ||
		   strcasecmp(command, "metadataexists") == 0) {
		/* metadata [match] <mailbox: string> <annotation> <keys> */
		if (!positional[0]->list) {
			sieve_rewrite_arg(rw, t_str_lcase(command),
					  positional[0]);
		}
	} else if (strcasecmp(command, "specialuse_exists") == 0) {
		/* specialuse_exists [<mailbox: string>] <flags: string-list> */
		if (npos == 2 && !positional[0]->list) {
			sieve_rewrite_arg(rw, "specialuse_exists",
					  positional[0]);
		}
	}
}

int migrate_sieve_rewrite(const unsigned char *script, size_t size,
			  migrate_sieve_map_func_t *map, void *context,
			  pool_t pool, string_t *output,
			  ARRAY_TYPE(migrate_sieve_rewrite) *rewrites_r,
			  const char **error_r)
{
	struct sieve_lexer lex;
	struct sieve_rewriter rw;
	ARRAY_TYPE(sieve_token) tokens;
	ARRAY_TYPE(sieve_arg) args;
	const struct sieve_token *t;
	unsigned int i, count;
	size_t pos;
	int ret = 0;

	i_zero(&lex);
	lex.data = script;
	lex.size = size;
	lex.line = 1;
	p_array_init(rewrites_r, pool, 4);

	T_BEGIN {
		struct sieve_token token;

		t_array_init(&tokens, 64);
		while ((ret = sieve_lexer_next(&lex, &token, error_r)) > 0)
			array_push_back(&tokens, &token);
		if (ret < 0) {
			*error_r = p_strdup(pool, *error_r);
			str_append_data(output, script, size);
		} else {
			t = array_get(&tokens, &count);
			i_zero(&rw);
			rw.data = script;
			rw.tokens = t;
			rw.map = map;
			rw.context = context;
			rw.pool = pool;
			rw.rewrites = rewrites_r;
			rw.replacements = t_new(const char *, count + 1);
			t_array_init(&args, 8);
			for (i = 0; i < count; i++) {
				const struct sieve_arg *argv;
				unsigned int argc;

				if (t[i].type != SIEVE_TOKEN_IDENTIFIER)
					continue;
				sieve_collect_args(t, count, i, &args);
				argv = array_get(&args, &argc);
				sieve_rewrite_command(&rw,
					t_strndup(script + t[i].start,
						  t[i].end - t[i].start),
					argv, argc);
			}
			/* copy the script, replacing only the rewritten
			   strings */
			pos = 0;
			for (i = 0; i < count; i++) {
				if (rw.replacements[i] == NULL)
					continue;
				str_append_data(output, script + pos,
						t[i].start - pos);
				str_append(output, rw.replacements[i]);
				pos = t[i].end;
			}
			str_append_data(output, script + pos, size - pos);
		}
	} T_END;
	return ret < 0 ? -1 : 0;
}
