/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "unichar.h"
#include "migrate-reply-scan.h"

/* a literal bigger than this can't be one: the "{N}" is just text */
#define MIGRATE_SCAN_MAX_LITERAL (1ULL << 40)

void migrate_reply_scan_init(struct migrate_reply_scan *scan)
{
	i_zero(scan);
}

static void migrate_scan_line_start(struct migrate_reply_scan *scan)
{
	uint64_t literal_left = scan->literal_left;

	i_zero(scan);
	scan->literal_left = literal_left;
}

static bool migrate_scan_is_status(const struct migrate_reply_scan *scan)
{
	static const char *const names[] = {
		"OK", "NO", "BAD", "BYE", "PREAUTH"
	};
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(names); i++) {
		if (scan->name_len == strlen(names[i]) &&
		    strncasecmp(scan->name, names[i], scan->name_len) == 0)
			return TRUE;
	}
	return FALSE;
}

static void migrate_scan_word_end(struct migrate_reply_scan *scan)
{
	if (!scan->in_word)
		return;
	scan->in_word = FALSE;
	scan->in_brace = FALSE;
	if (scan->word == 0 && scan->name_len == 1 && scan->name[0] == '+')
		scan->text = TRUE;
	else if (scan->word == 1)
		scan->status = migrate_scan_is_status(scan);
	scan->word++;
	scan->name_len = 0;
}

static void migrate_scan_word_char(struct migrate_reply_scan *scan,
				   unsigned char c)
{
	if (!scan->in_word) {
		scan->in_word = TRUE;
		if (scan->word == 2 && scan->status && c == '[')
			scan->in_code = TRUE;
	}
	if (scan->name_len < sizeof(scan->name))
		scan->name[scan->name_len] = c;
	scan->name_len++;
}

int migrate_reply_scan_more(struct migrate_reply_scan *scan,
			    const unsigned char *data, size_t size,
			    size_t *pos_r, const char **error_r)
{
	size_t i = 0;
	unsigned char c;

	while (i < size) {
		if (scan->literal_left > 0) {
			uint64_t n = I_MIN(scan->literal_left,
					   (uint64_t)(size - i));
			scan->literal_left -= n;
			i += n;
			continue;
		}
		c = data[i++];
		if (c == '\n') {
			if (scan->brace_done && !scan->text) {
				/* the line goes on after the literal */
				scan->literal_left = scan->brace_num;
				scan->brace_done = FALSE;
				migrate_scan_word_end(scan);
			} else {
				migrate_scan_line_start(scan);
				/* what follows may not be IMAP any more
				   (after COMPRESS or STARTTLS) */
				break;
			}
			continue;
		}
		if (scan->text)
			continue;
		if (scan->in_quoted) {
			if (scan->escape)
				scan->escape = FALSE;
			else if (c == '\\')
				scan->escape = TRUE;
			else if (c == '"') {
				scan->in_quoted = FALSE;
				migrate_scan_word_end(scan);
			}
			continue;
		}
		if (scan->brace_done && c != '\r')
			scan->brace_done = FALSE;
		if (scan->code_closed) {
			scan->code_closed = FALSE;
			if (c == ' ' || c == '\r') {
				/* the rest of a status line is text */
				scan->text = TRUE;
				continue;
			}
		}
		switch (c) {
		case ' ':
		case '\r':
			migrate_scan_word_end(scan);
			break;
		case '(':
			if (scan->in_word) {
				/* an atom character (ATOM_ALLCHARS) */
				migrate_scan_word_char(scan, c);
				break;
			}
			if (++scan->depth > MIGRATE_MAX_LIST_DEPTH) {
				*pos_r = i;
				*error_r = t_strdup_printf("Server sent a reply "
					"with lists nested deeper than %u "
					"levels", MIGRATE_MAX_LIST_DEPTH);
				return -1;
			}
			break;
		case ')':
			migrate_scan_word_end(scan);
			if (scan->depth > 0)
				scan->depth--;
			break;
		case '"':
			if (!scan->in_word) {
				migrate_scan_word_char(scan, c);
				scan->in_quoted = TRUE;
			} else {
				migrate_scan_word_char(scan, c);
			}
			break;
		case '{':
			if (!scan->in_word ||
			    (scan->name_len == 1 && scan->name[0] == '~')) {
				migrate_scan_word_char(scan, c);
				scan->in_brace = TRUE;
				scan->brace_num = 0;
			} else {
				migrate_scan_word_char(scan, c);
			}
			break;
		case '}':
			migrate_scan_word_char(scan, c);
			if (scan->in_brace) {
				scan->in_brace = FALSE;
				scan->brace_done = TRUE;
			}
			break;
		case ']':
			migrate_scan_word_char(scan, c);
			if (scan->in_code) {
				scan->in_code = FALSE;
				scan->code_closed = TRUE;
			}
			break;
		default:
			migrate_scan_word_char(scan, c);
			if (!scan->in_brace)
				break;
			if (c >= '0' && c <= '9') {
				scan->brace_num = scan->brace_num * 10 +
					(c - '0');
				if (scan->brace_num > MIGRATE_SCAN_MAX_LITERAL)
					scan->in_brace = FALSE;
			} else if (c != '+') {
				scan->in_brace = FALSE;
			}
			break;
		}
	}
	*pos_r = i;
	return 0;
}

void migrate_reply_scan_skip(struct migrate_reply_scan *scan, uint64_t size)
{
	if (size <= scan->literal_left)
		scan->literal_left -= size;
	else {
		/* out of step: start over at the next line */
		scan->literal_left = 0;
		migrate_scan_line_start(scan);
		scan->text = TRUE;
	}
}

const char *migrate_str_sanitize(const char *text, size_t max_len)
{
	return migrate_str_sanitize_pool(unsafe_data_stack_pool, text,
					 max_len);
}

const char *migrate_str_sanitize_pool(pool_t pool, const char *text,
				      size_t max_len)
{
	const unsigned char *p = (const unsigned char *)text;
	string_t *str;
	unichar_t chr;
	int len;

	if (text == NULL)
		return "";
	str = str_new(pool, I_MIN(strlen(text), max_len) + 4);
	while (*p != '\0') {
		if (str_len(str) >= max_len) {
			str_append(str, "...");
			break;
		}
		len = uni_utf8_get_char((const char *)p, &chr);
		if (len <= 0) {
			/* not UTF-8 */
			str_append_c(str, '?');
			p++;
			continue;
		}
		/* C0, DEL and C1 controls (ESC, CSI: terminal escape
		   sequences), bidi overrides and isolates, line and
		   paragraph separators */
		if (chr < 0x20 || (chr >= 0x7f && chr < 0xa0) ||
		    (chr >= 0x202a && chr <= 0x202e) ||
		    (chr >= 0x2066 && chr <= 0x2069) ||
		    chr == 0x2028 || chr == 0x2029 || chr == 0x200e ||
		    chr == 0x200f || chr == 0x061c)
			str_append_c(str, '?');
		else
			str_append_data(str, p, len);
		p += len;
	}
	return str_c(str);
}
