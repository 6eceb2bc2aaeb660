/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "hash.h"
#include "hex-binary.h"
#include "sha1.h"
#include "istream.h"
#include "str-sanitize.h"
#include "message-header-parser.h"
#include "message-header-decode.h"
#include "message-id.h"
#include "migrate-identity.h"

#include <ctype.h>

/* Identity keeps this many bytes of the SHA1: enough to never collide in
   one mailbox, small enough to keep 100k identities in memory. */
#define MIGRATE_IDENTITY_HASH_BYTES 16
#define MIGRATE_REPORT_FIELD_MAX 200

const char *const migrate_identity_fields[] = {
	"Message-ID", "Date", "From", "To", "Cc", "Subject", NULL
};

static int migrate_identity_field_idx(const char *name)
{
	unsigned int i;

	for (i = 0; migrate_identity_fields[i] != NULL; i++) {
		if (strcasecmp(migrate_identity_fields[i], name) == 0)
			return i;
	}
	return -1;
}

/* The fallback for values Dovecot's parser finds no id in: the part
   inside the first <...> (or the whole value), whitespace removed. This
   was the only rule before message_id_get_next() was used, and it gives
   the same result for every well-formed Message-ID. */
static const char *migrate_identity_message_id_fallback(const char *value)
{
	const char *start, *end;
	string_t *str;

	start = strchr(value, '<');
	end = start == NULL ? NULL : strchr(start, '>');
	if (start == NULL || end == NULL) {
		/* not in <> form: use the whole value */
		start = value;
		end = value + strlen(value);
	} else {
		start++;
	}
	str = t_str_new(end - start + 1);
	for (; start < end; start++) {
		if (*start == ' ' || *start == '\t' || *start == '\r' ||
		    *start == '\n')
			continue;
		str_append_c(str, i_tolower(*start));
	}
	return str_len(str) == 0 ? NULL : str_c(str);
}

const char *migrate_identity_normalize_message_id(const char *value)
{
	const char *p = value, *id;

	/* Dovecot's parser: the first <...> id, with comments, quoting and
	   folding inside it removed. Identities are never stored: the source
	   listing and the destination scan compute them with this same code
	   in the same run, so this rule can change without a re-copy. */
	id = message_id_get_next(&p);
	if (id != NULL && *id != '\0')
		return t_str_lcase(id);
	return migrate_identity_message_id_fallback(value);
}

/* Unfold and collapse whitespace so servers that reformat headers still
   give the same fingerprint. */
static void migrate_identity_normalize_value(string_t *dest,
					     const unsigned char *value,
					     size_t size)
{
	bool space = FALSE;
	size_t i;

	for (i = 0; i < size; i++) {
		if (value[i] == ' ' || value[i] == '\t' || value[i] == '\r' ||
		    value[i] == '\n') {
			space = TRUE;
			continue;
		}
		if (space && str_len(dest) > 0 &&
		    str_data(dest)[str_len(dest)-1] != '\n')
			str_append_c(dest, ' ');
		space = FALSE;
		str_append_c(dest, value[i]);
	}
}

static const char *
migrate_identity_report_value(const unsigned char *value, size_t size,
			      bool decode)
{
	string_t *str = t_str_new(size + 16);

	if (decode)
		message_header_decode_utf8(value, size, str, NULL);
	else
		str_append_data(str, value, size);
	return str_sanitize_utf8(str_c(str), MIGRATE_REPORT_FIELD_MAX);
}

static size_t migrate_identity_fingerprint_len(const char *identity)
{
	const char *p = strrchr(identity, '-');

	return p == NULL ? strlen(identity) : (size_t)(p - identity);
}

const char *migrate_identity_fingerprint(const char *identity)
{
	return t_strndup(identity, migrate_identity_fingerprint_len(identity));
}

bool migrate_identity_fingerprint_equals(const char *a, const char *b)
{
	size_t len = migrate_identity_fingerprint_len(a);

	return len == migrate_identity_fingerprint_len(b) &&
		memcmp(a, b, len) == 0;
}

const char *migrate_identity_with_size(const char *identity, uoff_t size)
{
	return t_strdup_printf("%s-%"PRIuUOFF_T,
			       migrate_identity_fingerprint(identity), size);
}

void migrate_identity_compute(const unsigned char *header, size_t size,
			      uoff_t message_size, pool_t pool,
			      struct migrate_identity_info *info_r)
{
	struct message_header_parser_ctx *parser;
	struct message_header_line *hdr;
	struct istream *input;
	string_t *fields[N_ELEMENTS(migrate_identity_fields)];
	const char *msgid = NULL;
	unsigned char digest[SHA1_RESULTLEN];
	struct sha1_ctxt sha;
	unsigned int i;
	string_t *id;
	int idx;

	i_zero(info_r);
	{
		for (i = 0; i < N_ELEMENTS(fields); i++)
			fields[i] = t_str_new(64);
		input = i_stream_create_from_data(header, size);
		parser = message_parse_header_init(input, NULL,
			MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE);
		while (message_parse_header_next(parser, &hdr) > 0) {
			if (hdr->eoh)
				break;
			if (hdr->continues) {
				hdr->use_full_value = TRUE;
				continue;
			}
			idx = migrate_identity_field_idx(hdr->name);
			if (idx < 0 || str_len(fields[idx]) > 0)
				continue;
			migrate_identity_normalize_value(fields[idx],
				hdr->full_value, hdr->full_value_len);
			if (idx == 0) {
				info_r->message_id = p_strdup(pool,
					migrate_identity_report_value(
						hdr->full_value,
						hdr->full_value_len, FALSE));
			} else if (idx == 1) {
				info_r->date = p_strdup(pool,
					migrate_identity_report_value(
						hdr->full_value,
						hdr->full_value_len, FALSE));
			} else if (idx == 5) {
				info_r->subject = p_strdup(pool,
					migrate_identity_report_value(
						hdr->full_value,
						hdr->full_value_len, TRUE));
			}
		}
		message_parse_header_deinit(&parser);
		i_stream_unref(&input);

		if (str_len(fields[0]) > 0)
			msgid = migrate_identity_normalize_message_id(
				str_c(fields[0]));
		sha1_init(&sha);
		sha1_loop(&sha, msgid == NULL ? "" : msgid,
			  msgid == NULL ? 0 : strlen(msgid));
		for (i = 1; migrate_identity_fields[i] != NULL; i++) {
			sha1_loop(&sha, "\n", 1);
			sha1_loop(&sha, str_data(fields[i]),
				  str_len(fields[i]));
		}
		sha1_result(&sha, digest);

		id = t_str_new(64);
		str_append_c(id, msgid == NULL ? 'h' : 'm');
		binary_to_hex_append(id, digest, MIGRATE_IDENTITY_HASH_BYTES);
		str_printfa(id, "-%"PRIuUOFF_T, message_size);
		info_r->identity = p_strdup(pool, str_c(id));
	}
}

struct migrate_identity_set {
	pool_t pool;
	HASH_TABLE(const char *, const char *) ids;
};

struct migrate_identity_set *migrate_identity_set_create(void)
{
	struct migrate_identity_set *set;
	pool_t pool;

	pool = pool_alloconly_create("migrate seen ids", 4096);
	set = p_new(pool, struct migrate_identity_set, 1);
	set->pool = pool;
	hash_table_create(&set->ids, pool, 128, str_hash, strcmp);
	return set;
}

void migrate_identity_set_destroy(struct migrate_identity_set **_set)
{
	struct migrate_identity_set *set = *_set;

	*_set = NULL;
	hash_table_destroy(&set->ids);
	pool_unref(&set->pool);
}

bool migrate_identity_set_contains(const struct migrate_identity_set *set,
				   const char *identity)
{
	return hash_table_lookup(set->ids, identity) != NULL;
}

void migrate_identity_set_add(struct migrate_identity_set *set,
			      const char *identity)
{
	if (hash_table_lookup(set->ids, identity) != NULL)
		return;
	identity = p_strdup(set->pool, identity);
	hash_table_insert(set->ids, identity, identity);
}
