#ifndef MIGRATE_COMPAT_H
#define MIGRATE_COMPAT_H

/* Everything that differs between Dovecot 2.3 and 2.4, behind one small
   interface. configure checks for each API and adds -DMIGRATE_HAVE_<name>
   (see configure.ac); only this header and migrate-compat.c look at those
   macros. The rest of the plugin is written once for both versions. */

struct event;
struct dict;
struct istream;
struct ostream;
struct mail_user;
struct mail_namespace;
struct mail_storage_service_user;
struct ssl_iostream;
struct ssl_iostream_context;
struct settings_instance;
struct mail_cache;
struct mail_cache_field;

#ifndef MIGRATE_HAVE_STR_BEGINS_WITH
/* 2.4's str_begins() takes a third argument; str_begins_with() is the
   two-argument one there */
#  define str_begins_with(str, prefix) str_begins(str, prefix)
#endif

/* The parameters of a doveadm mail command's init(): 2.3 passes the
   command's arguments, 2.4 only the context. Options are read from
   ctx->cctx with doveadm_cmd_param_*() on both. */
#ifdef MIGRATE_HAVE_DOVEADM_PARSE_ARG
#  define MIGRATE_DOVEADM_INIT_ARGS , const char *const args[] ATTR_UNUSED
struct doveadm_mail_cmd_context;
/* 2.3 refuses a mail command's options unless it has a parse_arg(): it
   only accepts them, init() reads them */
static inline bool
migrate_doveadm_accept_option(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
			      int c ATTR_UNUSED)
{
	return TRUE;
}
#  define MIGRATE_DOVEADM_ACCEPT_OPTIONS(ctx) \
	((ctx)->v.parse_arg = migrate_doveadm_accept_option)
#else
#  define MIGRATE_DOVEADM_INIT_ARGS
#  define MIGRATE_DOVEADM_ACCEPT_OPTIONS(ctx) ((void)0)
#endif

/* Table columns are added before the first row (doveadm prints them even
   without one). 2.4 panics when a mail command adds them after its init()
   unless allowed again, as its own "doveadm dict get" does. */
#ifdef MIGRATE_HAVE_DOVEADM_PRINT_HEADER_DISALLOW
#  define migrate_doveadm_print_header_allow() \
	doveadm_print_header_disallow(FALSE)
#else
#  define migrate_doveadm_print_header_allow() ((void)0)
#endif

/* mail_cache_register_fields(): 2.4 also takes a pool, for a field name
   it has to truncate */
void migrate_compat_cache_register_fields(struct mail_cache *cache,
					  struct mail_cache_field *fields,
					  unsigned int count);

/* The file of the embedded state dict, in the user's home: the same file
   on 2.3 and 2.4, so a state survives the upgrade. */
#define MIGRATE_STATE_DICT_FILE ".dovecot-migrate.dict"

/* Settings */

/* The value of a migrate_* setting for the user, as a string: NULL if the
   setting is unknown to this Dovecot's configuration or unset. 2.3: plugin
   {}, userdb extra fields, -o plugin/...; 2.4: the declared setting
   (top level, migrate { } filter, userdb, -o), typed values written back
   as plain numbers (intervals in seconds, sizes in bytes), yes/no. */
const char *migrate_compat_setting(struct mail_user *user, const char *name);
/* The same before the user exists (doveadm's prerun), %variables not
   expanded */
const char *
migrate_compat_service_setting(struct mail_storage_service_user *service_user,
			       const char *name);
/* 2.4: check that the user's migrate settings can be read (%variables
   expand); 2.3: always 0 */
int migrate_compat_settings_check(struct mail_user *user,
				  const char **error_r);
/* 2.3: the user's plugin settings as name, value pairs (plugin {}, userdb
   extra fields and -o plugin/... alike); 2.4: NULL (its config process
   rejects unknown names itself) */
const char *const *
migrate_compat_plugin_envs(struct mail_user *user, unsigned int *count_r);
/* Dovecot's interval ("2 mins") and size ("10M") parsers */
int migrate_compat_parse_interval(const char *str, unsigned int *secs_r,
				  const char **error_r);
int migrate_compat_parse_size(const char *str, uoff_t *size_r,
			      const char **error_r);
/* mail_fsync of the user about to be created: TRUE if it is "never" */
bool migrate_compat_fsync_never(struct mail_storage_service_user *service_user);
/* Set mail_fsync=never for the user about to be created */
int migrate_compat_set_fsync_never(struct mail_storage_service_user *service_user,
				   const char **error_r);

/* Destination namespace */

/* The special-use mailboxes configured in the namespace: name, flags
   ("\Sent \Archive"), name, flags, ..., NULL. Data stack. */
const char *const *
migrate_compat_ns_special_use_mailboxes(struct mail_namespace *ns);

/* State dict */

/* Open the state dict. 2.3: dict_uri (migrate_state_dict, or the embedded
   default "file:<home>/.dovecot-migrate.dict:lock=fcntl"). 2.4: a
   migrate { dict <driver> { ... } } block, or else the same embedded file
   dict (dict_uri is not used). *instance_r (2.4, may be NULL) lives as long
   as the dict: give both to migrate_compat_dict_deinit(). */
int migrate_compat_dict_init(struct mail_user *user, const char *dict_uri,
			     struct dict **dict_r,
			     struct settings_instance **instance_r,
			     const char **error_r);
void migrate_compat_dict_deinit(struct dict **dict,
				struct settings_instance **instance);
/* How the state dict is configured, for error messages */
const char *migrate_compat_dict_setting_name(void);

/* TLS to the source */

struct migrate_compat_ssl {
	struct mail_user *user;
	/* parent of the ssl stream's event */
	struct event *event;
	const char *host;
	/* NULL: the ssl_client_ca_* settings of Dovecot */
	const char *ca_file;
	/* FALSE: an invalid certificate is accepted */
	bool verify;
};

/* The client TLS context (a cached one, kept by the caller across
   reconnects). Returns -1 with an error for a bad configuration. */
int migrate_compat_ssl_context(const struct migrate_compat_ssl *ssl,
			       struct ssl_iostream_context **ctx_r,
			       const char **error_r);
/* Put TLS client streams over *input and *output */
int migrate_compat_ssl_client(const struct migrate_compat_ssl *ssl,
			      struct ssl_iostream_context *ctx,
			      struct istream **input, struct ostream **output,
			      struct ssl_iostream **iostream_r,
			      const char **error_r);

/* COMPRESS=DEFLATE: a raw deflate ostream over output. 2.3 uses level;
   2.4 takes compress_deflate_level from the settings (event). */
struct ostream *
migrate_compat_ostream_deflate(struct ostream *output, int level,
			       struct event *event);

/* quota_get_resource(root, INBOX, storage bytes), the quota plugin's
   function looked up at run time (this plugin doesn't link the quota
   plugin): 2.3 names the mailbox, 2.4 takes an opened one, whose rules
   (e.g. an ignored Trash) decide the limit. -1 when the quota plugin has
   no such function; 0 with *result_r (an enum quota_get_result) set
   otherwise. */
struct quota_root;
int migrate_compat_quota_storage(struct quota_root *root,
				 struct mail_user *user, int *result_r,
				 uint64_t *value_r, uint64_t *limit_r,
				 const char **error_r);

/* In a forked worker: let go of the stats-writer connection inherited
   from the parent without writing to it. Two processes writing one
   stream make the stats service drop it ("Duplicate event ID") and the
   run's events are lost. The worker can't open its own: doveadm made
   the connection as root and runs the user's command as the mail user.
   Same on 2.3 and 2.4, but it reaches into lib-master's private
   structs. */
void migrate_compat_stats_client_after_fork(void);

/* Dovecot 2.3's doveadm client (doveadm_worker_count, -S) hangs when
   several doveadm-server connections print at once: a connection whose
   table rows arrive while another one is printing waits, and gets its
   read io back as a plain socket io (server-connection.c,
   server_print_connection_released()); the rest of its reply can then
   sit in the multiplex stream's buffer with nothing left to read on the
   socket, and the client waits forever for a worker that is idle (the
   doveadm-server sends each table row as its own write). A 200-user
   run -A with 4 workers hung after 50-110 users every time, with or
   without info lines on the log channel; dsync, which prints nothing,
   never did. Dovecot 2.4's doveadm client is a rewrite without this.

   So in a 2.3 doveadm-server serving a doveadm client over the doveadm
   protocol, migrate run prints no folder table (each folder's
   "completed" info line has the same numbers) and its info lines go to
   the doveadm-server's own log only, not to the client: warnings and
   errors still reach the client, and the exit code is the run's.

   _local_begin() detects that case: this process logs to the log service
   (its fatal handler is the internal one) and a client connection has
   redirected its info lines. It restores the log service's info handler
   and returns what to put back with _local_end(); NULL when nothing
   changed (the doveadm command line, HTTP API, Dovecot 2.4). */
failure_callback_t *migrate_compat_log_info_local_begin(void);
void migrate_compat_log_info_local_end(failure_callback_t *prev);

#endif
