/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* libFuzzer target: the input is what a source IMAP server sends. It is
   read by the plugin's own connection code (migrate-source-conn.c is
   compiled into this file; an in-memory istream stands in for the socket)
   and every reply goes through the parsers the run and the importer use:
   the greeting, CAPABILITY and resp-codes, literals, FETCH items and
   bodies, NAMESPACE, LIST/XLIST/LSUB, STATUS, EXAMINE, UID SEARCH, tagged
   replies out of order; then every listed folder name through the folder
   map (modified UTF-7 decoding, sanitizing, special use, Gmail) as the run
   does it. No network, no storage.

   The first input byte picks the session (the rest is the server's side):
   0 greeting and replies, 1 the same after AUTHENTICATE PLAIN, 2 after
   LOGIN, 3 COMPRESS=DEFLATE right after the greeting (the rest of the
   input is a raw deflate stream). */

#include "../plugin/migrate-source-conn.c"
#include "hash.h"
#include "migrate-run.h"
#include "migrate-folder-map.h"
#include "fuzz-parts.h"

#include <stdint.h>

/* bounds one input's work */
#define FUZZ_MAX_REPLIES 20000

enum fuzz_mode {
	FUZZ_MODE_PLAIN = 0,
	FUZZ_MODE_AUTHENTICATE,
	FUZZ_MODE_LOGIN,
	FUZZ_MODE_COMPRESS,

	FUZZ_MODE_COUNT
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ioloop *fuzz_ioloop;
static struct event *fuzz_event;
static struct migrate_settings fuzz_set;

static void ATTR_FORMAT(2, 0)
fuzz_log_drop(const struct failure_context *ctx ATTR_UNUSED,
	      const char *format ATTR_UNUSED, va_list args ATTR_UNUSED)
{
	/* the protocol errors a hostile input causes are expected; panics
	   and fatals keep Dovecot's handlers and end the run as a crash */
}

int LLVMFuzzerInitialize(int *argc ATTR_UNUSED, char ***argv ATTR_UNUSED)
{
	lib_init();
	if (getenv("FUZZ_VERBOSE") == NULL) {
		i_set_error_handler(fuzz_log_drop);
		i_set_info_handler(fuzz_log_drop);
		i_set_debug_handler(fuzz_log_drop);
	}
	fuzz_ioloop = io_loop_create();
	fuzz_event = event_create(NULL);
	fuzz_set.source_host = "source.invalid";
	fuzz_set.source_port = 143;
	fuzz_set.source_ssl = MIGRATE_SSL_NONE;
	fuzz_set.source_user = "alice";
	fuzz_set.source_password = "fuzz-secret";
	fuzz_set.source_timeout_secs = 1;
	/* 0 would be no time at all: every input failed at the greeting
	   and the fuzzer saw 67 edges */
	fuzz_set.source_greeting_timeout_secs = 1;
	fuzz_set.source_compress = TRUE;
	return 0;
}

/* The connection over an in-memory stream, as if connected */
static struct migrate_source_conn *fuzz_conn_create(const uint8_t *data, size_t size)
{
	struct migrate_source_conn *conn;
	buffer_t *outbuf;

	conn = migrate_source_conn_create(&fuzz_set, NULL, fuzz_event);
	conn->raw_input = conn->input = i_stream_create_from_data(data, size);
	/* the commands we send go nowhere */
	outbuf = buffer_create_dynamic(conn->pool, 256);
	conn->raw_output = conn->output = o_stream_create_buffer(outbuf);
	o_stream_set_no_error_handling(conn->output, TRUE);
	conn->parser = imap_parser_create(conn->input, NULL,
					  MIGRATE_MAX_LINE_SIZE, NULL);
	conn->connected = TRUE;
	return conn;
}

static void fuzz_read_body(struct istream *body)
{
	ssize_t ret;

	while ((ret = i_stream_read(body)) > 0 || ret == -2)
		i_stream_skip(body, i_stream_get_data_size(body));
}

/* Replies as a run reads them: the pipeline of NAMESPACE, LIST, LSUB,
   STATUS, EXAMINE and FETCH commands may be answered in any order. */
static void fuzz_replies(struct migrate_source_conn *conn,
			 struct migrate_run *run, struct fuzz_importer *imp)
{
	struct migrate_reply reply;
	const struct imap_arg *tail;
	enum migrate_error code;
	const char *error;
	unsigned int i;
	int ret = 1;

	/* tags A1..A1000 are commands in flight */
	conn->next_tag += 1000;
	for (i = 0; i < FUZZ_MAX_REPLIES && ret > 0; i++) T_BEGIN {
		ret = migrate_source_conn_read(conn, &reply, &code, &error);
		if (ret <= 0)
			;
		else if (reply.body != NULL) {
			fuzz_importer_fetch_items(imp, reply.args);
			fuzz_read_body(reply.body);
			ret = migrate_source_conn_finish_body(conn, &tail,
							      &code, &error);
			if (ret > 0)
				fuzz_importer_fetch_items(imp, tail);
		} else if (reply.type == MIGRATE_REPLY_UNTAGGED) {
			migrate_source_list_reply(&run->src, conn, &reply);
			fuzz_importer_reply(imp, &reply);
			(void)migrate_reply_is_throttle(&reply);
		} else if (reply.type == MIGRATE_REPLY_TAGGED) {
			migrate_conn_early_tag_add(conn, &reply);
		}
	} T_END;
}

/* Every listed folder through the folder map, as migrate-run.c does */
static void fuzz_map_folders(struct migrate_run *run, bool dot_dest)
{
	struct migrate_folder_map_settings map_set;
	struct migrate_folder_map *map;
	struct migrate_folder *folder;
	struct migrate_folder_src src;
	struct migrate_folder_dest dest;
	const char *error;

	i_zero(&map_set);
	map_set.dest_sep = dot_dest ? '.' : '/';
	map_set.dest_prefix = dot_dest ? "INBOX." : "";
	map_set.automap = TRUE;
	map_set.gmail = run->gmail || dot_dest;
	map_set.gmail_skip = MIGRATE_SPECIAL_USE_JUNK |
		MIGRATE_SPECIAL_USE_TRASH;
	array_foreach_elem(&run->src.folders, folder)
		map_set.source_flagged |= folder->src_special_use;
	if (migrate_folder_map_init(&map_set, &map, &error) < 0)
		i_panic("migrate_folder_map_init() failed: %s", error);
	array_foreach_elem(&run->src.folders, folder) T_BEGIN {
		i_zero(&src);
		src.name = folder->src_name;
		src.delimiter = run->src.delimiter;
		src.ns_prefix = run->src.ns_prefix == NULL ? "" :
			run->src.ns_prefix;
		src.flags = folder->src_flags;
		src.special_use = folder->src_special_use;
		migrate_folder_map_lookup(map, &src, pool_datastack_create(),
					  &dest);
		if (!dest.skip && dest.vname == NULL)
			i_panic("folder map: no name and no skip for %s",
				folder->src_name);
	} T_END;
	migrate_folder_map_deinit(&map);
}

static void fuzz_session(enum fuzz_mode mode, const uint8_t *data, size_t size)
{
	struct migrate_source_conn *conn;
	struct migrate_run run;
	struct fuzz_importer *imp;
	enum migrate_error code;
	const char *error;
	bool preauth;
	int ret = 0;
	pool_t pool;

	pool = pool_alloconly_create("fuzz session", 4096);
	i_zero(&run);
	run.pool = pool;
	run.event = fuzz_event;
	run.set = &fuzz_set;
	migrate_source_list_init(&run.src, pool);
	conn = fuzz_conn_create(data, size);
	/* the parsers report progress to the run's connection */
	run.conn = conn;
	imp = fuzz_importer_create(&run, pool);
	if (migrate_conn_greeting(conn, &preauth, &code, &error) == 0) {
		switch (mode) {
		case FUZZ_MODE_AUTHENTICATE:
			ret = migrate_conn_authenticate(conn, "PLAIN",
				fuzz_set.source_password, &code, &error);
			break;
		case FUZZ_MODE_LOGIN:
			ret = migrate_conn_login_cmd(conn,
				fuzz_set.source_password, &code, &error);
			break;
		case FUZZ_MODE_COMPRESS:
			migrate_conn_compress_start(conn);
			break;
		default:
			break;
		}
		if (ret >= 0)
			fuzz_replies(conn, &run, imp);
	}
	run.gmail = migrate_source_conn_has_capability(conn, "X-GM-EXT-1");
	fuzz_map_folders(&run, FALSE);
	fuzz_map_folders(&run, TRUE);
	migrate_source_conn_destroy(&conn);
	/* hash tables reference the pool: each one left would keep the
	   session's pool alive, and a long run ran out of memory */
	fuzz_importer_destroy(imp);
	migrate_source_list_deinit(&run.src);
	if (hash_table_is_created(run.gmail_labels))
		hash_table_destroy(&run.gmail_labels);
	pool_unref(&pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	T_BEGIN {
		fuzz_session(data[0] % FUZZ_MODE_COUNT, data + 1, size - 1);
	} T_END;
	return 0;
}
