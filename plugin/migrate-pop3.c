/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "str.h"
#include "strnum.h"
#include "hex-binary.h"
#include "base64.h"
#include "hash.h"
#include "sha1.h"
#include "safe-memset.h"
#include "istream.h"
#include "istream-header-filter.h"
#include "message-header-hash.h"
#include "message-header-parser.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "mail-search-build.h"
#include "migrate-settings.h"
#include "migrate-line-conn.h"
#include "migrate-reply-scan.h"
#include "migrate-state.h"
#include "migrate-importer.h"
#include "migrate-pacing.h"
#include "migrate-pop3.h"

/* RFC 1939 allows 512 bytes a line; servers send longer UIDLs and
   headers in TOP */
#define MIGRATE_POP3_MAX_LINE (64*1024)
/* a TOP n 0 answer bigger than this is not a header */
#define MIGRATE_POP3_MAX_HEADER (4*1024*1024)
#define MIGRATE_POP3_MAX_MESSAGES 10000000
/* TOP commands in flight when the server does PIPELINING */
#define MIGRATE_POP3_PIPELINE_DEPTH 32
/* unmatched messages named one by one in the log */
#define MIGRATE_POP3_LOG_UNMATCHED_MAX 20

/* Headers that one side of a server shows and the other doesn't (mbox
   and Maildir bookkeeping, Yahoo's POP3 leaving out Return-Path): the
   same list as Dovecot's pop3_migration, so both agree on a hash.
   Sorted: the header filter wants them so. */
static const char *const migrate_pop3_hash_skip[] = {
	"Content-Length", "Return-Path", "Status", "X-IMAP", "X-IMAPbase",
	"X-Keywords", "X-Message-Flag", "X-Status", "X-UID", "X-UIDL",
	"X-Yahoo-Newman-Property",
};

struct migrate_pop3_msg {
	uint32_t seq;
	const char *uidl;
	uoff_t size;
	unsigned char hash[SHA1_RESULTLEN];
	/* destination INBOX UID it was matched to, 0 = none */
	uint32_t dest_uid;
	/* from TOP, for the item log */
	const char *message_id, *subject, *date;
	/* index+1 of the next message with the same hash */
	unsigned int next_same_hash1;
	/* a save got its UIDL (migrate_pop3_save_uidl()) */
	bool claimed:1;
	/* before the import, a destination message had its UIDL already */
	bool stored_before:1;
	bool have_hash:1;
	/* matched, but stored before the option was on in a storage that
	   takes UIDLs only while saving */
	bool unstorable:1;
};

struct migrate_pop3_dest_msg {
	uint32_t uid;
	uoff_t vsize;
	/* the UIDL stored with it ("" = none) */
	const char *uidl;
	unsigned char hash[SHA1_RESULTLEN];
	/* index+1 of the POP3 message it was matched to */
	unsigned int pop3_idx1;
	/* index+1 of the next unpaired message with the same hash */
	unsigned int next_same_hash1;
	bool have_hash:1;
};

struct migrate_pop3 {
	struct migrate_pop3_ctx ctx;
	pool_t pool;
	struct event *event;
	struct migrate_line_conn *conn;
	ARRAY(struct migrate_pop3_msg) msgs;
	ARRAY(struct migrate_pop3_dest_msg) dest;
	/* hex hash -> index+1 of the first message with it */
	HASH_TABLE(const char *, void *) by_hash;
	HASH_TABLE(const char *, void *) dest_by_hash;
	const char *dest_storage;
	/* the last connect got through the login */
	bool logged_in;
	/* CAPA lists PIPELINING */
	bool pipelining;

	enum migrate_error error_code;
	const char *error;
};

/* The header hash */

struct migrate_pop3_hdr_filter {
	bool have_eoh;
	/* a line of only CRs: servers disagree on whether the header goes
	   on after it, so it ends the header for both */
	bool stop;
};

static bool migrate_pop3_hdr_name_ok(const char *name)
{
	for (; *name != '\0'; name++) {
		if ((unsigned char)*name <= 0x20 ||
		    (unsigned char)*name >= 0x7f)
			return FALSE;
	}
	return TRUE;
}

static bool migrate_pop3_hdr_is_blank_cont(const struct message_header_line *hdr)
{
	size_t i;

	for (i = 0; i < hdr->value_len; i++) {
		if (hdr->value[i] != ' ' && hdr->value[i] != '\t')
			return FALSE;
	}
	return TRUE;
}

static void
migrate_pop3_hdr_cb(struct header_filter_istream *input ATTR_UNUSED,
		    struct message_header_line *hdr, bool *matched,
		    struct migrate_pop3_hdr_filter *filter)
{
	bool only_cr;

	if (hdr == NULL)
		return;
	if (hdr->eoh) {
		filter->have_eoh = TRUE;
		*matched = filter->stop;
		return;
	}
	only_cr = hdr->name_len == 0 && hdr->middle_len == 0 &&
		hdr->value_len > 0 &&
		i_memspn(hdr->value, hdr->value_len, "\r", 1) == hdr->value_len;
	if (only_cr)
		filter->stop = TRUE;
	/* what some IMAP servers leave out of BODY[HEADER] and their POP3
	   keeps: lines without a colon, whitespace-only continuations,
	   names with invalid characters */
	if (filter->stop ||
	    (!hdr->continued && hdr->middle_len == 0) ||
	    (hdr->continued && migrate_pop3_hdr_is_blank_cont(hdr)) ||
	    !migrate_pop3_hdr_name_ok(hdr->name))
		*matched = TRUE;
}

int migrate_pop3_header_hash(struct istream *input,
			     unsigned char hash_r[SHA1_RESULTLEN],
			     const char **error_r)
{
	struct migrate_pop3_hdr_filter filter;
	struct message_header_hash_context hash_ctx;
	struct sha1_ctxt sha1;
	struct istream *filtered;
	const unsigned char *data;
	size_t size;
	int ret = 0;

	i_zero(&filter);
	i_zero(&hash_ctx);
	filtered = i_stream_create_header_filter(input,
		HEADER_FILTER_HIDE_BODY | HEADER_FILTER_EXCLUDE |
		HEADER_FILTER_NO_CR, migrate_pop3_hash_skip,
		N_ELEMENTS(migrate_pop3_hash_skip), migrate_pop3_hdr_cb,
		&filter);
	sha1_init(&sha1);
	while (i_stream_read_more(filtered, &data, &size) > 0) {
		message_header_hash_more(&hash_ctx, &hash_method_sha1, &sha1,
					 MESSAGE_HEADER_HASH_MAX_VERSION,
					 data, size);
		i_stream_skip(filtered, size);
	}
	if (filtered->stream_errno != 0) {
		*error_r = t_strdup(i_stream_get_error(filtered));
		ret = -1;
	}
	sha1_result(&sha1, hash_r);
	i_stream_unref(&filtered);
	return ret;
}

/* The POP3 client */

static void migrate_pop3_fail(struct migrate_pop3 *pop3,
			      enum migrate_error code, const char *error)
{
	if (pop3->error != NULL)
		return;
	pop3->error_code = code;
	pop3->error = p_strdup(pop3->pool, error);
}

/* 1 = +OK (text in line_r), 0 = -ERR, -1 = connection failed */
static int migrate_pop3_cmd(struct migrate_pop3 *pop3, const char *cmd,
			    const char *stage, const char **line_r)
{
	enum migrate_error code;
	const char *line, *error;

	migrate_line_conn_set_stage(pop3->conn, stage);
	if (cmd != NULL &&
	    migrate_line_conn_write_line(pop3->conn, cmd, &code, &error) < 0) {
		migrate_pop3_fail(pop3, code, error);
		return -1;
	}
	if (migrate_line_conn_read_line(pop3->conn, &line, &code,
					&error) < 0) {
		migrate_pop3_fail(pop3, code, error);
		return -1;
	}
	*line_r = migrate_line_conn_redact(pop3->conn, line, 300);
	if (strncmp(line, "+OK", 3) == 0)
		return 1;
	if (strncmp(line, "-ERR", 4) == 0)
		return 0;
	migrate_pop3_fail(pop3, MIGRATE_ERROR_PROTOCOL, t_strdup_printf(
		"The %s answered %s %s",
		migrate_line_conn_name(pop3->conn), *line_r, stage));
	migrate_line_conn_disconnect(pop3->conn);
	return -1;
}

/* The lines of a multi-line answer up to ".", unstuffed. 1 = a line,
   0 = the end, -1 = failed */
static int migrate_pop3_next_line(struct migrate_pop3 *pop3,
				  const char **line_r)
{
	enum migrate_error code;
	const char *line, *error;

	if (migrate_line_conn_read_line(pop3->conn, &line, &code,
					&error) < 0) {
		migrate_pop3_fail(pop3, code, error);
		return -1;
	}
	if (line[0] == '.') {
		if (line[1] == '\0')
			return 0;
		line++;
	}
	*line_r = line;
	return 1;
}

static int migrate_pop3_login(struct migrate_pop3 *pop3)
{
	const struct migrate_settings *set = pop3->ctx.set;
	const char *line, *cmd, *who;
	enum migrate_error code;
	string_t *plain, *b64;
	int ret;

	if (set->source_password == NULL) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_CONFIG,
			"migrate_pop3_uidls needs the source password "
			"(migrate_source_password or "
			"migrate_source_password_file): an OAuth2 token is "
			"not used for POP3");
		return -1;
	}
	migrate_line_conn_add_secret(pop3->conn, set->source_password);
	if (set->source_master_user != NULL) {
		/* AUTH PLAIN (RFC 5034) carries the user to log in as */
		plain = t_str_new(256);
		str_append(plain, set->source_user);
		str_append_c(plain, '\0');
		str_append(plain, set->source_master_user);
		str_append_c(plain, '\0');
		str_append(plain, set->source_password);
		b64 = t_str_new(512);
		str_append(b64, "AUTH PLAIN ");
		base64_encode(str_data(plain), str_len(plain), b64);
		migrate_line_conn_add_secret(pop3->conn, str_c(b64) + 11);
		ret = migrate_pop3_cmd(pop3, str_c(b64), "while logging in",
				       &line);
		safe_memset(str_c_modifiable(plain), 0, str_len(plain));
		safe_memset(str_c_modifiable(b64), 0, str_len(b64));
	} else {
		cmd = t_strconcat("USER ", set->source_user, NULL);
		ret = migrate_pop3_cmd(pop3, cmd, "after USER", &line);
		if (ret > 0) {
			b64 = t_str_new(256);
			str_printfa(b64, "PASS %s", set->source_password);
			ret = migrate_pop3_cmd(pop3, str_c(b64),
					       "while logging in", &line);
			safe_memset(str_c_modifiable(b64), 0, str_len(b64));
		}
	}
	if (ret != 0)
		return ret < 0 ? -1 : 0;
	who = set->source_master_user == NULL ? set->source_user :
		t_strdup_printf("%s with master user %s", set->source_user,
				set->source_master_user);
	code = strstr(line, "[IN-USE]") != NULL ||
		strstr(line, "[SYS/TEMP]") != NULL ?
		MIGRATE_ERROR_TEMP : MIGRATE_ERROR_AUTH;
	migrate_pop3_fail(pop3, code, t_strdup_printf(
		"The %s rejected the login of user %s (migrate_source_user, "
		"migrate_source_password*, migrate_pop3_port): %s",
		migrate_line_conn_name(pop3->conn), who, line));
	return -1;
}

/* CAPA (RFC 2449): only PIPELINING matters; -ERR means none */
static int migrate_pop3_capa(struct migrate_pop3 *pop3)
{
	const char *line;
	int ret;

	pop3->pipelining = FALSE;
	ret = migrate_pop3_cmd(pop3, "CAPA", "after CAPA", &line);
	if (ret <= 0)
		return ret;
	while ((ret = migrate_pop3_next_line(pop3, &line)) > 0) {
		if (strcasecmp(t_str_trim(line, " \t"), "PIPELINING") == 0)
			pop3->pipelining = TRUE;
	}
	return ret;
}

static int migrate_pop3_connect(struct migrate_pop3 *pop3)
{
	const struct migrate_settings *set = pop3->ctx.set;
	struct migrate_line_conn_settings lset;
	enum migrate_error code;
	const char *line, *error;
	int ret;

	i_zero(&lset);
	lset.protocol = "POP3";
	lset.host = set->source_host;
	lset.port = set->pop3_port;
	lset.port_setting = "migrate_pop3_port";
	lset.tls = set->source_ssl == MIGRATE_SSL_IMAPS ?
		MIGRATE_LINE_CONN_TLS_IMPLICIT :
		set->source_ssl == MIGRATE_SSL_STARTTLS ?
		MIGRATE_LINE_CONN_TLS_STARTTLS : MIGRATE_LINE_CONN_TLS_NONE;
	lset.ssl_ca_file = set->source_ssl_ca_file;
	lset.ssl_verify = set->source_ssl_verify;
	lset.connect_timeout_secs = set->source_greeting_timeout_secs;
	lset.timeout_secs = set->source_timeout_secs;
	lset.max_line_length = MIGRATE_POP3_MAX_LINE;
	lset.max_data_size = MIGRATE_POP3_MAX_LINE;
	pop3->conn = migrate_line_conn_create(&lset, pop3->ctx.user,
					      pop3->event);
	if (migrate_line_conn_connect(pop3->conn, &code, &error) < 0) {
		migrate_pop3_fail(pop3, code, error);
		return -1;
	}
	ret = migrate_pop3_cmd(pop3, NULL, "while waiting for the greeting",
			       &line);
	if (ret == 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_TEMP, t_strdup_printf(
			"The %s refused the connection: %s",
			migrate_line_conn_name(pop3->conn), line));
	}
	if (ret <= 0)
		return -1;
	if (lset.tls == MIGRATE_LINE_CONN_TLS_STARTTLS) {
		ret = migrate_pop3_cmd(pop3, "STLS", "after STLS", &line);
		if (ret == 0) {
			migrate_pop3_fail(pop3, MIGRATE_ERROR_CONFIG,
				t_strdup_printf("The %s refused STLS: %s "
				"(migrate_source_ssl=starttls)",
				migrate_line_conn_name(pop3->conn), line));
		}
		if (ret <= 0)
			return -1;
		if (migrate_line_conn_starttls(pop3->conn, &code,
					       &error) < 0) {
			migrate_pop3_fail(pop3, code, error);
			return -1;
		}
	}
	if (migrate_pop3_login(pop3) < 0)
		return -1;
	pop3->logged_in = TRUE;
	return migrate_pop3_capa(pop3);
}

static struct migrate_pop3_msg *
migrate_pop3_msg_get(struct migrate_pop3 *pop3, uint32_t seq)
{
	/* UIDL and LIST answer in message number order */
	if (seq == 0 || seq > array_count(&pop3->msgs))
		return NULL;
	return array_idx_modifiable(&pop3->msgs, seq - 1);
}

/* UIDL and LIST: every message's UIDL and size */
static int migrate_pop3_list(struct migrate_pop3 *pop3)
{
	struct migrate_pop3_msg *msg;
	const char *line, *const *args;
	uint32_t seq;
	uoff_t size;
	int ret;

	ret = migrate_pop3_cmd(pop3, "UIDL", "after UIDL", &line);
	if (ret == 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_PROTOCOL,
			t_strdup_printf("The %s has no UIDL command: %s",
				migrate_line_conn_name(pop3->conn), line));
	}
	if (ret <= 0)
		return -1;
	while ((ret = migrate_pop3_next_line(pop3, &line)) > 0) {
		args = t_strsplit_spaces(line, " ");
		if (str_array_length(args) < 2 ||
		    str_to_uint32(args[0], &seq) < 0 ||
		    seq != array_count(&pop3->msgs) + 1 ||
		    seq > MIGRATE_POP3_MAX_MESSAGES) {
			migrate_pop3_fail(pop3, MIGRATE_ERROR_PROTOCOL,
				t_strdup_printf("The %s sent a bad UIDL line: "
				"%s", migrate_line_conn_name(pop3->conn),
				migrate_line_conn_redact(pop3->conn, line,
							 200)));
			return -1;
		}
		msg = array_append_space(&pop3->msgs);
		msg->seq = seq;
		msg->uidl = p_strdup(pop3->pool, args[1]);
		msg->size = UOFF_T_MAX;
	}
	if (ret < 0)
		return -1;
	ret = migrate_pop3_cmd(pop3, "LIST", "after LIST", &line);
	if (ret == 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_PROTOCOL,
			t_strdup_printf("The %s refused LIST: %s",
				migrate_line_conn_name(pop3->conn), line));
	}
	if (ret <= 0)
		return -1;
	while ((ret = migrate_pop3_next_line(pop3, &line)) > 0) {
		args = t_strsplit_spaces(line, " ");
		if (str_array_length(args) >= 2 &&
		    str_to_uint32(args[0], &seq) == 0 &&
		    str_to_uoff(args[1], &size) == 0 &&
		    (msg = migrate_pop3_msg_get(pop3, seq)) != NULL)
			msg->size = size;
	}
	return ret < 0 ? -1 : 0;
}

/* a header's first line's value, for the item log */
static const char *
migrate_pop3_hdr_value(pool_t pool, const char *line, const char *name)
{
	size_t len = strlen(name);

	if (strncasecmp(line, name, len) != 0 || line[len] != ':')
		return NULL;
	return p_strdup(pool, migrate_str_sanitize(t_str_trim(line + len + 1,
							" \t"), 200));
}

static void migrate_pop3_msg_ids(struct migrate_pop3 *pop3,
				 struct migrate_pop3_msg *msg,
				 const char *line)
{
	const char *value;

	if (msg->message_id == NULL &&
	    (value = migrate_pop3_hdr_value(pop3->pool, line,
					    "Message-ID")) != NULL)
		msg->message_id = value;
	else if (msg->subject == NULL &&
		 (value = migrate_pop3_hdr_value(pop3->pool, line,
						 "Subject")) != NULL)
		msg->subject = value;
	else if (msg->date == NULL &&
		 (value = migrate_pop3_hdr_value(pop3->pool, line,
						 "Date")) != NULL)
		msg->date = value;
}

/* TOP n 0: the message's header, hashed */
/* The answer to "TOP n 0" (sent already): the message's header, hashed */
static int migrate_pop3_top_read(struct migrate_pop3 *pop3,
				 struct migrate_pop3_msg *msg)
{
	struct istream *input;
	const char *line, *error;
	string_t *hdr;
	int ret;

	ret = migrate_pop3_cmd(pop3, NULL, "after TOP", &line);
	if (ret == 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_PROTOCOL,
			t_strdup_printf("The %s refused TOP %u 0 (it is "
				"needed to match messages): %s",
				migrate_line_conn_name(pop3->conn), msg->seq,
				line));
	}
	if (ret <= 0)
		return -1;
	hdr = t_str_new(4096);
	while ((ret = migrate_pop3_next_line(pop3, &line)) > 0) {
		if (str_len(hdr) < MIGRATE_POP3_MAX_HEADER) {
			migrate_pop3_msg_ids(pop3, msg, line);
			str_append(hdr, line);
			str_append(hdr, "\r\n");
		}
	}
	if (ret < 0)
		return -1;
	input = i_stream_create_from_data(str_data(hdr), str_len(hdr));
	ret = migrate_pop3_header_hash(input, msg->hash, &error);
	i_stream_unref(&input);
	if (ret < 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_PROTOCOL, error);
		return -1;
	}
	msg->have_hash = TRUE;
	return 0;
}

static void migrate_pop3_quit(struct migrate_pop3 *pop3)
{
	const char *line;

	if (pop3->conn == NULL || !migrate_line_conn_is_connected(pop3->conn))
		return;
	/* QUIT enters the UPDATE state; we deleted nothing */
	if (pop3->error == NULL)
		(void)migrate_pop3_cmd(pop3, "QUIT", "after QUIT", &line);
	migrate_line_conn_disconnect(pop3->conn);
}

/* The destination INBOX */

static struct mailbox *
migrate_pop3_dest_open(struct migrate_pop3 *pop3, const char *vname)
{
	struct mail_namespace *ns;
	struct mailbox *box;

	ns = mail_namespace_find(pop3->ctx.user->namespaces, vname);
	box = mailbox_alloc(ns->list, vname, 0);
	/* FULL_READ: as migrate_importer_dest_open() */
	if (mailbox_open(box) < 0 ||
	    mailbox_sync(box, MAILBOX_SYNC_FLAG_FULL_READ) < 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_DESTINATION,
			t_strdup_printf("Can't open the destination's %s: %s",
				vname, mailbox_get_last_internal_error(box,
								       NULL)));
		mailbox_free(&box);
		return NULL;
	}
	return box;
}

/* The destination INBOX's messages: UID, size, stored UIDL, and with
   want_hashes the header hash */
static int migrate_pop3_dest_read(struct migrate_pop3 *pop3,
				  struct mailbox *box, bool want_hashes)
{
	struct mailbox_transaction_context *trans;
	struct mail_search_args *search_args;
	struct mail_search_context *search;
	struct migrate_pop3_dest_msg *dmsg;
	struct istream *input;
	struct mail *mail;
	const char *uidl, *error;
	int ret = 0;

	trans = mailbox_transaction_begin(box, 0, "migrate pop3");
	search_args = mail_search_build_init();
	mail_search_build_add_all(search_args);
	search = mailbox_search_init(trans, search_args, NULL,
				     MAIL_FETCH_VIRTUAL_SIZE |
				     (want_hashes ? MAIL_FETCH_STREAM_HEADER : 0) |
				     MAIL_FETCH_UIDL_BACKEND, NULL);
	mail_search_args_unref(&search_args);
	while (mailbox_search_next(search, &mail)) {
		dmsg = array_append_space(&pop3->dest);
		dmsg->uid = mail->uid;
		if (mail_get_virtual_size(mail, &dmsg->vsize) < 0)
			dmsg->vsize = UOFF_T_MAX;
		if (mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND,
				     &uidl) < 0)
			uidl = "";
		dmsg->uidl = p_strdup(pop3->pool, uidl);
		if (!want_hashes ||
		    mail_get_hdr_stream(mail, NULL, &input) < 0)
			continue;
		if (migrate_pop3_header_hash(input, dmsg->hash, &error) < 0) {
			e_warning(pop3->event, "Destination INBOX UID %u: "
				  "can't read its header: %s", mail->uid,
				  error);
			continue;
		}
		dmsg->have_hash = TRUE;
	}
	if (mailbox_search_deinit(&search) < 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_DESTINATION,
			t_strdup_printf("Can't read the destination's INBOX: "
				"%s", mailbox_get_last_internal_error(box,
								      NULL)));
		ret = -1;
	}
	(void)mailbox_transaction_commit(&trans);
	return ret;
}

/* Matching */

static void migrate_pop3_pair(struct migrate_pop3 *pop3, unsigned int pidx,
			      struct migrate_pop3_dest_msg *dmsg)
{
	struct migrate_pop3_msg *msg = array_idx_modifiable(&pop3->msgs, pidx);

	msg->dest_uid = dmsg->uid;
	dmsg->pop3_idx1 = pidx + 1;
}

/* 1: the UIDLs stored by an earlier pass */
static void migrate_pop3_match_stored(struct migrate_pop3 *pop3)
{
	HASH_TABLE(const char *, void *) by_uidl;
	struct migrate_pop3_dest_msg *dmsg;
	const struct migrate_pop3_msg *msg;
	unsigned int i;
	void *value;

	hash_table_create(&by_uidl, default_pool, 0, str_hash, strcmp);
	array_foreach(&pop3->msgs, msg) {
		i = array_foreach_idx(&pop3->msgs, msg);
		if (hash_table_lookup(by_uidl, msg->uidl) == NULL) {
			hash_table_insert(by_uidl, msg->uidl,
					  POINTER_CAST(i + 1));
		}
	}
	array_foreach_modifiable(&pop3->dest, dmsg) {
		if (dmsg->uidl[0] == '\0')
			continue;
		value = hash_table_lookup(by_uidl, dmsg->uidl);
		if (value == NULL)
			continue;
		i = POINTER_CAST_TO(value, unsigned int) - 1;
		msg = array_idx(&pop3->msgs, i);
		if (msg->dest_uid == 0)
			migrate_pop3_pair(pop3, i, dmsg);
	}
	hash_table_destroy(&by_uidl);
}

/* The destination messages not paired yet, by hash: hex hash -> index+1
   of the first in UID order; next_same_hash1 chains the rest */
static void migrate_pop3_index_dest(struct migrate_pop3 *pop3)
{
	struct migrate_pop3_dest_msg *dmsg;
	unsigned int i;
	const char *key;

	if (hash_table_is_created(pop3->dest_by_hash))
		hash_table_destroy(&pop3->dest_by_hash);
	hash_table_create(&pop3->dest_by_hash, pop3->pool, 0, str_hash,
			  strcmp);
	for (i = array_count(&pop3->dest); i > 0; i--) {
		dmsg = array_idx_modifiable(&pop3->dest, i - 1);
		if (dmsg->pop3_idx1 != 0 || !dmsg->have_hash)
			continue;
		key = p_strdup(pop3->pool, binary_to_hex(dmsg->hash,
							 sizeof(dmsg->hash)));
		dmsg->next_same_hash1 = POINTER_CAST_TO(
			hash_table_lookup(pop3->dest_by_hash, key),
			unsigned int);
		hash_table_update(pop3->dest_by_hash, key, POINTER_CAST(i));
	}
}

static struct migrate_pop3_dest_msg *
migrate_pop3_find_dest(struct migrate_pop3 *pop3,
		       const struct migrate_pop3_msg *msg)
{
	struct migrate_pop3_dest_msg *dmsg, *same_hash = NULL;
	unsigned int idx1;

	/* the first unpaired one in UID order: copies of one message
	   pair up in the order they arrived */
	idx1 = POINTER_CAST_TO(hash_table_lookup(pop3->dest_by_hash,
		binary_to_hex(msg->hash, sizeof(msg->hash))), unsigned int);
	for (; idx1 != 0; idx1 = dmsg->next_same_hash1) {
		dmsg = array_idx_modifiable(&pop3->dest, idx1 - 1);
		if (dmsg->pop3_idx1 != 0)
			continue;
		if (dmsg->vsize == msg->size)
			return dmsg;
		if (same_hash == NULL)
			same_hash = dmsg;
	}
	/* a server whose LIST counts the size otherwise (LF line ends):
	   the header decides, as with pop3_migration */
	return same_hash;
}

/* 2: TOP for the messages no stored UIDL matched; pipelined when the
   server says it can (RFC 2449), so a long INBOX over a WAN doesn't pay
   a round trip a message */
static int migrate_pop3_fetch_hashes(struct migrate_pop3 *pop3)
{
	ARRAY(unsigned int) need_top;
	struct migrate_pop3_msg *msg;
	const struct migrate_pop3_msg *cmsg;
	const unsigned int *idx;
	unsigned int count, sent = 0, done = 0, depth;
	enum migrate_error code;
	const char *error;
	int ret = 0;

	i_array_init(&need_top, 64);
	array_foreach(&pop3->msgs, cmsg) {
		if (cmsg->dest_uid == 0 && !cmsg->have_hash) {
			unsigned int i = array_foreach_idx(&pop3->msgs, cmsg);
			array_push_back(&need_top, &i);
		}
	}
	idx = array_get(&need_top, &count);
	depth = pop3->pipelining ? MIGRATE_POP3_PIPELINE_DEPTH : 1;
	while (done < count && ret == 0) T_BEGIN {
		for (; sent < count && sent - done < depth && ret == 0; sent++) {
			msg = array_idx_modifiable(&pop3->msgs, idx[sent]);
			migrate_line_conn_set_stage(pop3->conn, "after TOP");
			if (migrate_line_conn_write_line(pop3->conn,
					t_strdup_printf("TOP %u 0", msg->seq),
					&code, &error) < 0) {
				migrate_pop3_fail(pop3, code, error);
				ret = -1;
			}
		}
		if (ret == 0) {
			msg = array_idx_modifiable(&pop3->msgs, idx[done++]);
			ret = migrate_pop3_top_read(pop3, msg);
		}
	} T_END;
	array_free(&need_top);
	return ret;
}

/* 3: the header hash (and size) of the rest */
static void migrate_pop3_match_hashes(struct migrate_pop3 *pop3)
{
	struct migrate_pop3_msg *msg;
	struct migrate_pop3_dest_msg *dmsg;
	unsigned int i, count;

	migrate_pop3_index_dest(pop3);
	count = array_count(&pop3->msgs);
	for (i = 0; i < count; i++) T_BEGIN {
		msg = array_idx_modifiable(&pop3->msgs, i);
		if (msg->dest_uid == 0 && msg->have_hash &&
		    (dmsg = migrate_pop3_find_dest(pop3, msg)) != NULL)
			migrate_pop3_pair(pop3, i, dmsg);
	} T_END;
}

/* Storing */

static int migrate_pop3_store(struct migrate_pop3 *pop3, struct mailbox *box,
			      unsigned int *updated_r,
			      unsigned int *unstorable_r)
{
	struct mailbox_transaction_context *trans;
	const struct migrate_pop3_dest_msg *dmsg;
	struct migrate_pop3_msg *msg;
	struct mail *mail;
	/* lib-storage's update_pop3_uidl() is Maildir's alone; dbox takes
	   a UIDL only while saving (migrate_pop3_save_uidl()) */
	bool can_update = strcmp(box->storage->name, "maildir") == 0;

	*updated_r = *unstorable_r = 0;
	trans = mailbox_transaction_begin(box, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
					  "migrate pop3 uidls");
	mail = mail_alloc(trans, 0, NULL);
	array_foreach(&pop3->dest, dmsg) {
		if (dmsg->pop3_idx1 == 0)
			continue;
		msg = array_idx_modifiable(&pop3->msgs, dmsg->pop3_idx1 - 1);
		if (strcmp(dmsg->uidl, msg->uidl) == 0)
			continue;
		if (!can_update) {
			msg->unstorable = TRUE;
			(*unstorable_r)++;
			continue;
		}
		if (!mail_set_uid(mail, dmsg->uid))
			continue;
		mail_update_pop3_uidl(mail, msg->uidl);
		(*updated_r)++;
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&trans) < 0 ||
	    mailbox_sync(box, 0) < 0) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_DESTINATION,
			t_strdup_printf("Can't store POP3 UIDLs in the "
				"destination's INBOX: %s",
				mailbox_get_last_internal_error(box, NULL)));
		return -1;
	}
	return 0;
}

/* Dovecot's POP3 lists INBOX in UID order: the source's order holds when
   the matched UIDs grow with the POP3 message numbers */
static unsigned int migrate_pop3_out_of_order(struct migrate_pop3 *pop3)
{
	const struct migrate_pop3_msg *msg;
	uint32_t last_uid = 0;
	unsigned int count = 0;

	array_foreach(&pop3->msgs, msg) {
		if (msg->dest_uid == 0)
			continue;
		if (msg->dest_uid < last_uid)
			count++;
		else
			last_uid = msg->dest_uid;
	}
	return count;
}

static unsigned int migrate_pop3_unmatched(struct migrate_pop3 *pop3,
					   bool log)
{
	const struct migrate_pop3_msg *msg;
	unsigned int count = 0;

	array_foreach(&pop3->msgs, msg) {
		if (msg->dest_uid != 0)
			continue;
		if (log && count < MIGRATE_POP3_LOG_UNMATCHED_MAX) {
			e_warning(pop3->event, "POP3 message %u (UIDL %s, "
				  "%"PRIuUOFF_T" bytes) matches no message of "
				  "the destination's INBOX: its UIDL is not "
				  "carried (pop3-unmatched)", msg->seq,
				  migrate_line_conn_redact(pop3->conn,
							   msg->uidl, 100),
				  msg->size);
		}
		count++;
	}
	return count;
}

static const char *
migrate_pop3_item_reason(struct migrate_pop3 *pop3,
			 const struct migrate_pop3_msg *msg)
{
	const char *uidl = migrate_str_sanitize(msg->uidl, 100);

	if (msg->unstorable) {
		return t_strdup_printf("UIDL %s: its message was stored at "
			"the destination before migrate_pop3_uidls was on, "
			"and %s takes a UIDL only when a message is saved; "
			"its UIDL is not carried", uidl, pop3->dest_storage);
	}
	return t_strdup_printf("UIDL %s: no message of the destination's "
		"INBOX has its header (hash) and size; its UIDL is not "
		"carried", uidl);
}

/* The item log: the messages unmatched now, and those unmatched before
   that match now (resolved) */
static void migrate_pop3_items_save(struct migrate_pop3 *pop3)
{
	const struct migrate_pop3_ctx *ctx = &pop3->ctx;
	ARRAY_TYPE(migrate_item) old_items, items;
	const struct migrate_pop3_msg *msg;
	struct migrate_item *item, *old;
	const char *error;
	bool found;

	t_array_init(&old_items, 8);
	t_array_init(&items, 8);
	if (migrate_state_pop3_items_get(ctx->state, pool_datastack_create(),
					 &old_items, &error) < 0) {
		e_error(ctx->event, "%s", error);
		return;
	}
	array_foreach(&pop3->msgs, msg) {
		if (msg->dest_uid != 0 && !msg->unstorable)
			continue;
		item = array_append_space(&items);
		item->uid = msg->seq;
		item->class = MIGRATE_ITEM_POP3_UNMATCHED;
		item->reason = migrate_pop3_item_reason(pop3, msg);
		item->message_id = msg->message_id;
		item->subject = msg->subject;
		item->date = msg->date;
		item->size = msg->size;
		item->first_seen = item->last_seen = ioloop_time;
		item->attempts = 1;
		array_foreach_modifiable(&old_items, old) {
			if (!old->resolved &&
			    null_strcmp(old->reason, item->reason) == 0) {
				item->first_seen = old->first_seen;
				item->attempts = old->attempts + 1;
				old->resolved = TRUE;
				break;
			}
		}
		ctx->counters->items_by_class[MIGRATE_ITEM_POP3_UNMATCHED]++;
	}
	array_foreach_modifiable(&old_items, old) {
		if (old->resolved)
			continue;
		/* not unmatched any more: is it still shown by POP3? */
		found = FALSE;
		array_foreach(&pop3->msgs, msg) {
			if (null_strcmp(old->reason,
					migrate_pop3_item_reason(pop3,
								 msg)) == 0) {
				found = TRUE;
				break;
			}
		}
		old->resolved = TRUE;
		if (found) {
			old->last_seen = ioloop_time;
			array_push_back(&items, old);
		}
	}
	if (migrate_state_pop3_items_set(ctx->state, &items, &error) < 0)
		e_error(ctx->event, "%s", error);
}

static struct migrate_pop3 *
migrate_pop3_init(const struct migrate_pop3_ctx *ctx)
{
	struct migrate_pop3 *pop3;
	pool_t pool;

	pool = pool_alloconly_create("migrate pop3", 4096);
	pop3 = p_new(pool, struct migrate_pop3, 1);
	pop3->pool = pool;
	pop3->ctx = *ctx;
	pop3->event = event_create(ctx->event);
	p_array_init(&pop3->msgs, pool, 64);
	p_array_init(&pop3->dest, pool, 64);
	return pop3;
}

static void migrate_pop3_deinit(struct migrate_pop3 **_pop3)
{
	struct migrate_pop3 *pop3 = *_pop3;

	*_pop3 = NULL;
	if (pop3->conn != NULL) {
		migrate_pop3_quit(pop3);
		migrate_line_conn_destroy(&pop3->conn);
	}
	if (hash_table_is_created(pop3->by_hash))
		hash_table_destroy(&pop3->by_hash);
	if (hash_table_is_created(pop3->dest_by_hash))
		hash_table_destroy(&pop3->dest_by_hash);
	event_unref(&pop3->event);
	pool_unref(&pop3->pool);
}

/* the failure goes to the run, which keeps its first error */
static void migrate_pop3_run_error(const struct migrate_pop3_ctx *ctx,
				   enum migrate_error code, const char *error)
{
	ctx->error(ctx->context, code, error);
}

/* The POP3 messages by hash, for the saves */
static void migrate_pop3_index_hashes(struct migrate_pop3 *pop3)
{
	struct migrate_pop3_msg *msg;
	unsigned int i, count;
	const char *key;
	void *value;

	hash_table_create(&pop3->by_hash, pop3->pool, 0, str_hash, strcmp);
	count = array_count(&pop3->msgs);
	/* backwards, so each chain runs in POP3 order */
	for (i = count; i > 0; i--) {
		msg = array_idx_modifiable(&pop3->msgs, i - 1);
		if (msg->dest_uid != 0 || !msg->have_hash)
			continue;
		key = p_strdup(pop3->pool, binary_to_hex(msg->hash,
							 sizeof(msg->hash)));
		value = hash_table_lookup(pop3->by_hash, key);
		msg->next_same_hash1 = POINTER_CAST_TO(value, unsigned int);
		hash_table_update(pop3->by_hash, key, POINTER_CAST(i));
	}
}

static int migrate_pop3_prepare_inbox(struct migrate_pop3 *pop3,
				      const struct migrate_folder *inbox)
{
	struct migrate_pop3_msg *msg;
	struct mailbox *box;
	int ret;

	if (migrate_pop3_connect(pop3) < 0 || migrate_pop3_list(pop3) < 0)
		return -1;
	/* what earlier passes stored needs no TOP */
	box = migrate_pop3_dest_open(pop3, inbox->dest.vname);
	if (box == NULL)
		return -1;
	pop3->dest_storage = p_strdup(pop3->pool, box->storage->name);
	ret = migrate_pop3_dest_read(pop3, box, FALSE);
	mailbox_free(&box);
	if (ret < 0)
		return -1;
	migrate_pop3_match_stored(pop3);
	array_foreach_modifiable(&pop3->msgs, msg)
		msg->stored_before = msg->dest_uid != 0;
	if (migrate_pop3_fetch_hashes(pop3) < 0)
		return -1;
	migrate_pop3_quit(pop3);
	migrate_pop3_index_hashes(pop3);
	return 0;
}

struct migrate_pop3 *migrate_pop3_prepare(const struct migrate_pop3_ctx *ctx)
{
	const struct migrate_folder *inbox = ctx->inbox;
	struct migrate_pop3 *pop3;
	unsigned int attempt, msecs;

	pop3 = migrate_pop3_init(ctx);
	if (inbox == NULL) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_ITEMS, "the source's "
				  "INBOX is not migrated");
	}
	/* a connection lost after the login is tried again, as on the IMAP
	   side (a first connect fails fast); the mail is imported whatever
	   happens here, and carry() reports it */
	for (attempt = 0; inbox != NULL; attempt++) {
		pop3->logged_in = FALSE;
		if (migrate_pop3_prepare_inbox(pop3, inbox) == 0 ||
		    pop3->error_code != MIGRATE_ERROR_TEMP ||
		    !pop3->logged_in || attempt >= ctx->set->reconnect_max)
			break;
		msecs = migrate_backoff_msecs(ctx->set,
			MIGRATE_RECONNECT_FIRST_MSECS, attempt);
		e_warning(ctx->event, "POP3 UIDLs: %s; reconnecting in %u ms "
			  "(attempt %u of %u, migrate_reconnect_max)",
			  pop3->error, msecs, attempt + 1,
			  ctx->set->reconnect_max);
		migrate_pacing_sleep(ctx->pacing, msecs);
		array_clear(&pop3->msgs);
		array_clear(&pop3->dest);
		pop3->error = NULL;
		pop3->error_code = MIGRATE_ERROR_NONE;
		ctx->counters->reconnects++;
	}
	if (pop3->conn != NULL)
		migrate_line_conn_disconnect(pop3->conn);
	return pop3;
}

static bool migrate_pop3_have_header_end(const unsigned char *data,
					 size_t size)
{
	size_t i;

	for (i = 0; i + 1 < size; i++) {
		if (data[i] != '\n')
			continue;
		if (data[i+1] == '\n' ||
		    (data[i+1] == '\r' && i + 2 < size && data[i+2] == '\n'))
			return TRUE;
	}
	return FALSE;
}

void migrate_pop3_save_uidl(struct migrate_pop3 *pop3,
			    const struct migrate_folder *folder,
			    struct mail_save_context *save,
			    struct istream *body, uoff_t body_size)
{
	struct migrate_pop3_msg *msg, *same_hash = NULL;
	unsigned char hash[SHA1_RESULTLEN];
	const unsigned char *data;
	struct istream *input;
	const char *error;
	unsigned int idx1;
	size_t size;
	void *value;
	int ret;

	if (pop3 == NULL || pop3->error != NULL ||
	    !hash_table_is_created(pop3->by_hash) ||
	    strcasecmp(folder->src_name, "INBOX") != 0)
		return;
	/* the header from what the body prefetch holds: read into the
	   body's buffer without waiting, nothing skipped, so the save reads
	   the stream from its start as before */
	while (i_stream_get_data_size(body) < body_size &&
	       i_stream_read(body) > 0) ;
	data = i_stream_get_data(body, &size);
	if (size < body_size && !migrate_pop3_have_header_end(data, size))
		return;
	T_BEGIN {
		input = i_stream_create_from_data(data, size);
		ret = migrate_pop3_header_hash(input, hash, &error);
		i_stream_unref(&input);
		value = ret < 0 ? NULL : hash_table_lookup(pop3->by_hash,
			binary_to_hex(hash, sizeof(hash)));
	} T_END;
	idx1 = POINTER_CAST_TO(value, unsigned int);
	for (; idx1 != 0; idx1 = msg->next_same_hash1) {
		msg = array_idx_modifiable(&pop3->msgs, idx1 - 1);
		if (msg->claimed)
			continue;
		if (msg->size == body_size) {
			same_hash = msg;
			break;
		}
		if (same_hash == NULL)
			same_hash = msg;
	}
	if (same_hash == NULL)
		return;
	same_hash->claimed = TRUE;
	mailbox_save_set_pop3_uidl(save, same_hash->uidl);
}

int migrate_pop3_carry(struct migrate_pop3 *pop3)
{
	const struct migrate_pop3_ctx *ctx = &pop3->ctx;
	const struct migrate_folder *inbox = ctx->inbox;
	struct migrate_pop3_msg *msg;
	struct mailbox *box;
	unsigned int updated = 0, unstorable = 0, unmatched, out_of_order;
	const struct migrate_pop3_dest_msg *dmsg;
	const struct migrate_pop3_msg *cmsg;
	unsigned int count, saved = 0;
	int ret;

	if (pop3->error == NULL && inbox != NULL &&
	    inbox->result == MIGRATE_FOLDER_RESULT_FAILED) {
		migrate_pop3_fail(pop3, MIGRATE_ERROR_ITEMS,
				  "the INBOX was not imported");
	}
	if (pop3->error != NULL)
		goto failed;
	/* the destination as the import left it: pair again */
	array_clear(&pop3->dest);
	array_foreach_modifiable(&pop3->msgs, msg)
		msg->dest_uid = 0;
	box = migrate_pop3_dest_open(pop3, inbox->dest.vname);
	if (box == NULL)
		goto failed;
	ret = migrate_pop3_dest_read(pop3, box, TRUE);
	if (ret == 0) {
		migrate_pop3_match_stored(pop3);
		migrate_pop3_match_hashes(pop3);
		ret = migrate_pop3_store(pop3, box, &updated, &unstorable);
	}
	mailbox_free(&box);
	if (ret < 0)
		goto failed;

	count = array_count(&pop3->msgs);
	array_foreach(&pop3->dest, dmsg) {
		/* stored by the saves of this run (in worker processes too) */
		if (dmsg->pop3_idx1 == 0)
			continue;
		cmsg = array_idx(&pop3->msgs, dmsg->pop3_idx1 - 1);
		if (!cmsg->stored_before && strcmp(dmsg->uidl, cmsg->uidl) == 0)
			saved++;
	}
	unmatched = migrate_pop3_unmatched(pop3, TRUE);
	T_BEGIN {
		migrate_pop3_items_save(pop3);
	} T_END;
	out_of_order = migrate_pop3_out_of_order(pop3);
	e_info(ctx->event, "POP3 UIDLs: %u POP3 messages, %u matched, %u "
	       "stored now (%u while saving), %u unmatched", count,
	       count - unmatched, updated + saved, saved, unmatched);
	if (out_of_order > 0) {
		e_warning(ctx->event, "POP3 UIDLs: %u messages are listed in "
			  "another order by the source's POP3 than by their "
			  "UIDs: POP3 clients at the destination see them in "
			  "UID order", out_of_order);
	}
	if (unstorable > 0) {
		migrate_pop3_run_error(ctx, MIGRATE_ERROR_ITEMS,
			t_strdup_printf("POP3 UIDLs: %u of %u messages were "
				"stored at the destination before "
				"migrate_pop3_uidls was on, and %s takes a "
				"UIDL only when a message is saved "
				"(pop3-unmatched): their UIDLs are not "
				"carried", unstorable, count,
				pop3->dest_storage));
	}
	if (unmatched > 0) {
		migrate_pop3_run_error(ctx, MIGRATE_ERROR_ITEMS,
			t_strdup_printf("POP3 UIDLs: %u of %u POP3 messages "
				"match no message of the destination's INBOX "
				"(pop3-unmatched): their UIDLs are not carried",
				unmatched, count));
	}
	return 0;
failed:
	migrate_pop3_run_error(ctx, pop3->error_code, t_strdup_printf(
		"POP3 UIDLs were not carried (migrate_pop3_uidls; the mail is "
		"imported, a re-run fills them in): %s", pop3->error));
	return -1;
}

void migrate_pop3_free(struct migrate_pop3 **pop3)
{
	if (*pop3 != NULL)
		migrate_pop3_deinit(pop3);
}

int migrate_pop3_plan(const struct migrate_pop3_ctx *ctx,
		      const char **summary_r)
{
	struct migrate_pop3 *pop3;
	int ret = 0;

	pop3 = migrate_pop3_init(ctx);
	if (migrate_pop3_connect(pop3) < 0 || migrate_pop3_list(pop3) < 0) {
		*summary_r = p_strdup_printf(ctx->pool, "POP3 UIDLs: the "
			"source's POP3 service is not usable: %s", pop3->error);
		ret = -1;
	} else {
		*summary_r = p_strdup_printf(ctx->pool, "POP3 UIDLs: the %s "
			"shows %u INBOX messages with UIDLs, to be carried",
			migrate_line_conn_name(pop3->conn),
			array_count(&pop3->msgs));
	}
	migrate_pop3_deinit(&pop3);
	return ret;
}

int migrate_pop3_verify(const struct migrate_pop3_ctx *ctx)
{
	const struct migrate_folder *inbox = ctx->inbox;
	struct migrate_pop3 *pop3;
	struct mailbox *box = NULL;
	unsigned int unmatched;
	int ret = -1;

	if (inbox == NULL)
		return 0;
	pop3 = migrate_pop3_init(ctx);
	if (migrate_pop3_connect(pop3) == 0 && migrate_pop3_list(pop3) == 0 &&
	    (box = migrate_pop3_dest_open(pop3, inbox->dest.vname)) != NULL &&
	    migrate_pop3_dest_read(pop3, box, FALSE) == 0) {
		/* only what is stored counts: nothing is matched anew */
		migrate_pop3_match_stored(pop3);
		ret = 0;
	}
	if (box != NULL)
		mailbox_free(&box);
	if (ret < 0) {
		migrate_pop3_run_error(ctx, pop3->error_code,
			t_strdup_printf("verify: POP3 UIDLs can't be checked "
				"(migrate_pop3_uidls): %s", pop3->error));
	} else if ((unmatched = migrate_pop3_unmatched(pop3, FALSE)) > 0) {
		migrate_pop3_run_error(ctx, MIGRATE_ERROR_ITEMS,
			t_strdup_printf("verify: %u of %u POP3 messages' "
				"UIDLs are not on any message of the "
				"destination's INBOX (migrate_pop3_uidls)",
				unmatched, array_count(&pop3->msgs)));
		ret = -1;
	} else {
		e_info(ctx->event, "verify: all %u POP3 UIDLs are at the "
		       "destination", array_count(&pop3->msgs));
	}
	migrate_pop3_deinit(&pop3);
	return ret;
}
