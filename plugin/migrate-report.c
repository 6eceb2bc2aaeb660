/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ostream.h"
#include "time-util.h"
#include "eacces-error.h"
#include "doveadm-print.h"
#include "migrate-compat.h"
#include "migrate-state.h"
#include "migrate-report.h"

#include <fcntl.h>

static const char *migrate_report_time(time_t t)
{
	return t == 0 ? "" : t_strflocaltime("%Y-%m-%d %H:%M:%S", t);
}

/* Columns doveadm added before the command's own (-A and user masks add
   a sticky "username"): ours are there once the count is above it */
static unsigned int migrate_report_headers_base;

void migrate_report_headers_begin(void)
{
	migrate_report_headers_base = doveadm_print_get_headers_count();
}

bool migrate_report_headers_added(void)
{
	return doveadm_print_get_headers_count() > migrate_report_headers_base;
}

void migrate_report_status_headers(void)
{
	if (migrate_report_headers_added())
		return;
	migrate_doveadm_print_header_allow();
	doveadm_print_header_simple("folder");
	doveadm_print_header_simple("dest");
	doveadm_print_header_simple("state");
	doveadm_print_header_simple("source");
	doveadm_print_header_simple("dest_count");
	doveadm_print_header_simple("imported");
	doveadm_print_header_simple("existing");
	doveadm_print_header_simple("failed");
	doveadm_print_header_simple("deferred");
	doveadm_print_header_simple("bytes");
	doveadm_print_header_simple("uids");
	doveadm_print_header_simple("started");
	doveadm_print_header_simple("finished");
	doveadm_print_header_simple("last_error");
	doveadm_print_header_simple("planned");
	doveadm_print_header_simple("planned_bytes");
	doveadm_print_header_simple("rate");
	doveadm_print_header_simple("eta");
}

/* A running pass: what it means to import, messages per second since it
   started, and when it ends at that rate; empty for any other state */
static void
migrate_report_progress(const char *status, time_t started, uint32_t done,
			uint32_t planned, uint64_t planned_bytes)
{
	time_t now = time(NULL);
	double rate = 0;

	if (status == NULL || strcmp(status, "running") != 0) {
		doveadm_print("");
		doveadm_print("");
		doveadm_print("");
		doveadm_print("");
		return;
	}
	doveadm_print_num(planned);
	doveadm_print_num(planned_bytes);
	if (started > 0 && now > started)
		rate = (double)done / (now - started);
	doveadm_print(rate > 0 ? t_strdup_printf("%.1f", rate) : "");
	doveadm_print(rate > 0 && planned >= done ?
		      migrate_report_time(now +
					  (time_t)((planned - done) / rate)) :
		      "");
}

int migrate_report_status(struct migrate_state *state, const char **error_r)
{
	struct migrate_run_state rs;
	struct migrate_folder_state fs;
	ARRAY_TYPE(const_string) names;
	const char *name;
	int ret;

	ret = migrate_state_run_get(state, pool_datastack_create(), &rs,
				    error_r);
	if (ret < 0)
		return -1;
	migrate_report_status_headers();
	doveadm_print("*");
	doveadm_print("");
	doveadm_print(ret == 0 ? "queued" : rs.status);
	doveadm_print("");
	doveadm_print("");
	doveadm_print_num(rs.counters.imported);
	doveadm_print_num(rs.counters.existing);
	doveadm_print_num(rs.counters.failed);
	doveadm_print_num(rs.counters.deferred);
	doveadm_print_num(rs.counters.bytes);
	doveadm_print("");
	doveadm_print(migrate_report_time(rs.started));
	doveadm_print(migrate_report_time(rs.finished));
	doveadm_print(rs.last_error == NULL ? "" : rs.last_error);
	migrate_report_progress(ret == 0 ? NULL : rs.status, rs.started,
				rs.counters.imported, rs.planned,
				rs.planned_bytes);

	t_array_init(&names, 16);
	if (migrate_state_folders_get(state, pool_datastack_create(), &names,
				      error_r) < 0)
		return -1;
	array_foreach_elem(&names, name) {
		ret = migrate_state_folder_get(state, name,
					       pool_datastack_create(), &fs,
					       error_r);
		if (ret < 0)
			return -1;
		doveadm_print(name);
		doveadm_print(fs.dest_vname == NULL ? "" : fs.dest_vname);
		doveadm_print(ret == 0 || fs.status == NULL ? "queued" :
			      fs.status);
		doveadm_print_num(fs.src_messages);
		doveadm_print_num(fs.dst_messages);
		doveadm_print_num(fs.total_imported);
		doveadm_print_num(fs.counters.existing);
		doveadm_print_num(fs.counters.failed);
		doveadm_print_num(fs.counters.deferred);
		doveadm_print_num(fs.counters.bytes);
		doveadm_print(fs.uids_preserved == NULL ? "" :
			      fs.uids_preserved);
		doveadm_print(migrate_report_time(fs.started));
		doveadm_print(migrate_report_time(fs.finished));
		doveadm_print(fs.last_error == NULL ? "" : fs.last_error);
		migrate_report_progress(ret == 0 ? NULL : fs.status,
					fs.started, fs.counters.imported,
					fs.planned, fs.planned_bytes);
	}
	return 0;
}

static const char *const migrate_item_columns[] = {
	"folder", "uid", "message_id", "subject", "date", "size", "reason",
	"detail", "attempts", "first_seen", "last_seen", "resolved", NULL
};

void migrate_report_items_headers(void)
{
	unsigned int i;

	if (migrate_report_headers_added())
		return;
	migrate_doveadm_print_header_allow();
	for (i = 0; migrate_item_columns[i] != NULL; i++)
		doveadm_print_header_simple(migrate_item_columns[i]);
}

/* A cell a spreadsheet would take as a formula gets a leading quote
   (OWASP CSV injection); control characters (C0, DEL, C1 in UTF-8) from
   the source's headers are replaced, never written raw. */
static void csv_append(string_t *str, const char *value)
{
	const unsigned char *p;
	string_t *cell;

	if (str_len(str) > 0 && str_data(str)[str_len(str)-1] != '\n')
		str_append_c(str, ',');
	if (value == NULL || *value == '\0')
		return;
	cell = t_str_new(strlen(value) + 3);
	if (strchr("=+-@\t\r", value[0]) != NULL)
		str_append_c(cell, '\'');
	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		if (*p == '\t' || *p == '\r' || *p == '\n')
			str_append_c(cell, ' ');
		else if (*p < 0x20 || *p == 0x7f)
			str_append_c(cell, '?');
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			str_append_c(cell, '?');
			p++;
		} else
			str_append_c(cell, *p);
	}
	if (strpbrk(str_c(cell), ",\"") == NULL) {
		str_append_str(str, cell);
		return;
	}
	str_append_c(str, '"');
	for (p = str_data(cell); *p != '\0'; p++) {
		if (*p == '"')
			str_append_c(str, '"');
		str_append_c(str, *p);
	}
	str_append_c(str, '"');
}

static void migrate_report_item_row(const char *name,
				    const struct migrate_item *item,
				    struct ostream *csv)
{
	const char *values[12];
	string_t *line;
	unsigned int i;

	values[0] = name;
	values[1] = dec2str(item->uid);
	values[2] = item->message_id;
	values[3] = item->subject;
	values[4] = item->date;
	values[5] = dec2str(item->size);
	values[6] = migrate_item_class_name(item->class);
	values[7] = item->reason;
	values[8] = dec2str(item->attempts);
	values[9] = migrate_report_time(item->first_seen);
	values[10] = migrate_report_time(item->last_seen);
	values[11] = item->resolved ? "yes" : "no";
	migrate_report_items_headers();
	for (i = 0; i < N_ELEMENTS(values); i++)
		doveadm_print(values[i] == NULL ? "" : values[i]);
	if (csv != NULL) {
		line = t_str_new(256);
		for (i = 0; i < N_ELEMENTS(values); i++)
			csv_append(line, values[i]);
		str_append(line, "\r\n");
		o_stream_nsend(csv, str_data(line), str_len(line));
	}
}

static void
migrate_report_item_rows(const char *name,
			 const ARRAY_TYPE(migrate_item) *items,
			 const struct migrate_report_filter *filter,
			 enum migrate_item_class class, struct ostream *csv)
{
	const struct migrate_item *item;

	array_foreach(items, item) {
		if (filter->reason != NULL && item->class != class)
			continue;
		migrate_report_item_row(name, item, csv);
	}
}

/* migrate_sieve: a row a script, folder "sieve:<name>", message_id its
   source name, subject its destination name, detail what was done */
static int
migrate_report_sieve_items(struct migrate_state *state,
			   const struct migrate_report_filter *filter,
			   enum migrate_item_class class, struct ostream *csv,
			   const char **error_r)
{
	ARRAY_TYPE(migrate_item) items;
	const struct migrate_item *item;

	if (migrate_state_sieve_get(state, pool_datastack_create(), &items,
				    error_r) < 0)
		return -1;
	array_foreach(&items, item) {
		if (filter->reason != NULL && item->class != class)
			continue;
		migrate_report_item_row(t_strconcat("sieve:",
			item->message_id == NULL ? "" : item->message_id,
			NULL), item, csv);
	}
	return 0;
}

int migrate_report_items(struct migrate_state *state,
			 const struct migrate_report_filter *filter,
			 enum migrate_error *code_r, const char **error_r)
{
	struct migrate_folder_state fs;
	ARRAY_TYPE(const_string) names;
	ARRAY_TYPE(migrate_item) pop3_items;
	enum migrate_item_class class = MIGRATE_ITEM_FETCH_FAILED;
	struct ostream *csv = NULL;
	const char *name;
	string_t *line;
	unsigned int i;
	bool sieve_only;
	int fd, ret = 0;

	*code_r = MIGRATE_ERROR_TEMP;
	if (filter->reason != NULL &&
	    migrate_item_class_parse(filter->reason, &class) < 0) {
		*code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf("Unknown --reason %s",
					   filter->reason);
		return -1;
	}
	t_array_init(&names, 16);
	sieve_only = filter->folder != NULL &&
		(strcmp(filter->folder, "sieve") == 0 ||
		 str_begins_with(filter->folder, "sieve:"));
	if (sieve_only)
		;
	else if (filter->folder != NULL) {
		ret = migrate_state_folders_find(state, filter->folder,
						 pool_datastack_create(),
						 &names, error_r);
		if (ret <= 0) {
			if (ret == 0)
				*code_r = MIGRATE_ERROR_NOTFOUND;
			return -1;
		}
		ret = 0;
	} else if (migrate_state_folders_get(state, pool_datastack_create(),
					     &names, error_r) < 0)
		return -1;
	if (filter->csv_path != NULL) {
		fd = open(filter->csv_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd == -1) {
			/* names the uid and the directory that lacks a
			   permission: doveadm runs as the mail user */
			*code_r = MIGRATE_ERROR_CANTCREAT;
			*error_r = errno == EACCES ?
				eacces_error_get_creating("open",
							  filter->csv_path) :
				t_strdup_printf("open(%s) failed: %m",
						filter->csv_path);
			return -1;
		}
		csv = o_stream_create_fd_autoclose(&fd, 0);
		line = t_str_new(128);
		for (i = 0; migrate_item_columns[i] != NULL; i++)
			csv_append(line, migrate_item_columns[i]);
		str_append(line, "\r\n");
		o_stream_nsend(csv, str_data(line), str_len(line));
	}

	array_foreach_elem(&names, name) {
		if (migrate_state_folder_get(state, name,
					     pool_datastack_create(), &fs,
					     error_r) < 0) {
			ret = -1;
			break;
		}
		migrate_report_item_rows(name, &fs.items, filter, class, csv);
	}
	/* the POP3 UIDL pass's items: no folder of their own */
	if (ret == 0 && filter->folder == NULL) {
		t_array_init(&pop3_items, 4);
		if (migrate_state_pop3_items_get(state,
				pool_datastack_create(), &pop3_items,
				error_r) < 0)
			ret = -1;
		else {
			migrate_report_item_rows("(POP3)", &pop3_items,
						 filter, class, csv);
		}
	}
	if (ret == 0 && (filter->folder == NULL || sieve_only) &&
	    migrate_report_sieve_items(state, filter, class, csv, error_r) < 0)
		ret = -1;
	if (csv != NULL) {
		if (o_stream_finish(csv) < 0 && ret == 0) {
			*error_r = t_strdup_printf("write(%s) failed: %s",
				filter->csv_path, o_stream_get_error(csv));
			*code_r = MIGRATE_ERROR_CANTCREAT;
			ret = -1;
		}
		o_stream_destroy(&csv);
	}
	return ret;
}
