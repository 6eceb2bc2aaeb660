/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "istream.h"
#include "ostream.h"
#include "iostream-ssl.h"
#include "ostream-zlib.h"
#include "dict.h"
#include "settings-parser.h"
#include "mail-user.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "mail-storage-settings.h"
#include "mail-storage-service.h"
#include "mail-cache.h"
#include "connection.h"
#include "stats-client.h"
#include "master-service-private.h"
#include "quota.h"
#include "migrate-compat.h"

#include <dlfcn.h>

#include <fcntl.h>
#include <unistd.h>
#ifdef MIGRATE_HAVE_SETTINGS_GET
#  include "settings.h"
#  include "ssl-settings.h"
#  include "migrate-settings-decl.h"
#endif

/* Settings */

#ifdef MIGRATE_HAVE_SETTINGS_GET
static const char *
migrate_compat_event_setting(struct event *event, const char *name,
			     enum settings_get_flags flags)
{
	const struct migrate_settings_decl *set;
	const char *value, *error;

	migrate_settings_decl_init();
	if (settings_get(event, &migrate_setting_parser_info, flags,
			 &set, &error) < 0) {
		/* migrate_compat_settings_check() reported it */
		return NULL;
	}
	value = t_strdup(migrate_settings_decl_value(set, name));
	settings_free(set);
	return value;
}

const char *migrate_compat_setting(struct mail_user *user, const char *name)
{
	return migrate_compat_event_setting(user->event, name, 0);
}

const char *
migrate_compat_service_setting(struct mail_storage_service_user *service_user,
			       const char *name)
{
	return migrate_compat_event_setting(
		mail_storage_service_user_get_event(service_user), name,
		SETTINGS_GET_FLAG_NO_EXPAND);
}

int migrate_compat_settings_check(struct mail_user *user,
				  const char **error_r)
{
	const struct migrate_settings_decl *set;
	const char *error;

	migrate_settings_decl_init();
	if (settings_get(user->event, &migrate_setting_parser_info, 0,
			 &set, &error) < 0) {
		*error_r = t_strdup_printf("Invalid migrate settings: %s",
					   error);
		return -1;
	}
	settings_free(set);
	return 0;
}

static void
migrate_compat_push_env(ARRAY_TYPE(const_string) *envs, const char *field)
{
	const char *name, *value, *p;

	if (!str_begins_with(field, "migrate_"))
		return;
	p = strchr(field, '=');
	name = p == NULL ? field : t_strdup_until(field, p);
	value = p == NULL ? "" : p + 1;
	array_push_back(envs, &name);
	array_push_back(envs, &value);
}

const char *const *
migrate_compat_plugin_envs(struct mail_user *user, unsigned int *count_r)
{
	ARRAY_TYPE(const_string) envs;
	const char *const *field, *override;

	/* 2.4's config process rejects unknown names in the config; a
	   userdb field or a doveadm -o that names no setting is dropped
	   silently, so their migrate_* ones are handed to the name check
	   (name, value pairs) */
	t_array_init(&envs, 8);
	if (user->userdb_fields != NULL) {
		for (field = user->userdb_fields; *field != NULL; field++)
			migrate_compat_push_env(&envs, *field);
	}
	if (array_is_created(&master_service->config_overrides)) {
		array_foreach_elem(&master_service->config_overrides, override)
			migrate_compat_push_env(&envs, override);
	}
	return array_get(&envs, count_r);
}

int migrate_compat_parse_interval(const char *str, unsigned int *secs_r,
				  const char **error_r)
{
	return str_parse_get_interval(str, secs_r, error_r);
}

int migrate_compat_parse_size(const char *str, uoff_t *size_r,
			      const char **error_r)
{
	return str_parse_get_size(str, size_r, error_r);
}

bool migrate_compat_fsync_never(struct mail_storage_service_user *service_user)
{
	const struct mail_storage_settings *mail_set;
	const char *error;
	bool never;

	/* NO_EXPAND: the user doesn't exist yet (expanding panics) */
	if (settings_get(mail_storage_service_user_get_event(service_user),
			 &mail_storage_setting_parser_info,
			 SETTINGS_GET_FLAG_NO_EXPAND, &mail_set, &error) < 0)
		return FALSE;
	never = mail_set->parsed_fsync_mode == FSYNC_MODE_NEVER;
	settings_free(mail_set);
	return never;
}

int migrate_compat_set_fsync_never(struct mail_storage_service_user *service_user,
				   const char **error_r ATTR_UNUSED)
{
	settings_override(
		mail_storage_service_user_get_settings_instance(service_user),
		"mail_fsync", "never", SETTINGS_OVERRIDE_TYPE_CODE);
	return 0;
}
#else
const char *migrate_compat_setting(struct mail_user *user, const char *name)
{
	return mail_user_plugin_getenv(user, name);
}

const char *
migrate_compat_service_setting(struct mail_storage_service_user *service_user,
			       const char *name)
{
	void **sets = mail_storage_service_user_get_set(service_user);
	const struct mail_user_settings *user_set = sets[0];

	return mail_user_set_plugin_getenv(user_set, name);
}

int migrate_compat_settings_check(struct mail_user *user ATTR_UNUSED,
				  const char **error_r ATTR_UNUSED)
{
	return 0;
}

const char *const *
migrate_compat_plugin_envs(struct mail_user *user, unsigned int *count_r)
{
	if (!array_is_created(&user->set->plugin_envs)) {
		*count_r = 0;
		return NULL;
	}
	return array_get(&user->set->plugin_envs, count_r);
}

int migrate_compat_parse_interval(const char *str, unsigned int *secs_r,
				  const char **error_r)
{
	return settings_get_time(str, secs_r, error_r);
}

int migrate_compat_parse_size(const char *str, uoff_t *size_r,
			      const char **error_r)
{
	return settings_get_size(str, size_r, error_r);
}

bool migrate_compat_fsync_never(struct mail_storage_service_user *service_user)
{
	const struct mail_storage_settings *mail_set =
		mail_storage_service_user_get_mail_set(service_user);

	return mail_set->parsed_fsync_mode == FSYNC_MODE_NEVER;
}

int migrate_compat_set_fsync_never(struct mail_storage_service_user *service_user,
				   const char **error_r)
{
	const char *error;

	if (mail_storage_service_user_set_setting(service_user, "mail_fsync",
						  "never", &error) <= 0) {
		*error_r = error;
		return -1;
	}
	return 0;
}
#endif

/* Destination namespace */

const char *const *
migrate_compat_ns_special_use_mailboxes(struct mail_namespace *ns)
{
	ARRAY_TYPE(const_string) list;
	const struct mailbox_settings *box;

	t_array_init(&list, 16);
#ifdef MIGRATE_HAVE_NS_PARSED_MAILBOXES
	if (array_is_created(&ns->set->parsed_mailboxes)) {
		array_foreach_elem(&ns->set->parsed_mailboxes, box) {
			const char *flags;

			if (array_is_empty(&box->special_use))
				continue;
			flags = t_strarray_join(
				settings_boollist_get(&box->special_use), " ");
			array_push_back(&list, &box->name);
			array_push_back(&list, &flags);
		}
	}
#else
	struct mailbox_settings *const *boxp;

	if (array_is_created(&ns->set->mailboxes)) {
		array_foreach(&ns->set->mailboxes, boxp) {
			box = *boxp;
			if (box->special_use == NULL ||
			    box->special_use[0] == '\0')
				continue;
			array_push_back(&list, &box->name);
			array_push_back(&list, &box->special_use);
		}
	}
#endif
	array_append_zero(&list);
	return array_front(&list);
}

/* State dict */

#ifdef MIGRATE_HAVE_DICT_INIT_AUTO
const char *migrate_compat_dict_setting_name(void)
{
	return "migrate { dict ... }";
}

/* The embedded default: a file dict in the user's home, configured in
   code through a settings instance of our own */
static int
migrate_compat_dict_default(struct mail_user *user, struct event *event,
			    struct dict **dict_r,
			    struct settings_instance **instance_r,
			    const char **error_r)
{
	struct settings_instance *instance;
	const char *home, *error;
	int ret;

	if (mail_user_get_home(user, &home) <= 0 || home == NULL) {
		*error_r = "No state dict configured (migrate { dict ... }) "
			"and the user has no home directory for the default "
			"file dict";
		return -1;
	}
	instance = settings_instance_dup(settings_instance_find(user->event));
	settings_override(instance, "dict_driver", "file",
			  SETTINGS_OVERRIDE_TYPE_CODE);
	settings_override(instance, "dict_file_path",
			  t_strconcat(home, "/", MIGRATE_STATE_DICT_FILE, NULL),
			  SETTINGS_OVERRIDE_TYPE_CODE);
	/* fcntl: the kernel drops the lock of a killed run */
	settings_override(instance, "dict_file_lock_method", "fcntl",
			  SETTINGS_OVERRIDE_TYPE_CODE);
	event_set_ptr(event, SETTINGS_EVENT_INSTANCE, instance);
	ret = dict_init_filter_auto(event, "file", dict_r, &error);
	if (ret <= 0) {
		*error_r = t_strdup_printf("Default state dict "
			"(file %s/%s): %s", home, MIGRATE_STATE_DICT_FILE,
			error);
		settings_instance_free(&instance);
		return -1;
	}
	*instance_r = instance;
	return 0;
}

int migrate_compat_dict_init(struct mail_user *user,
			     const char *dict_uri ATTR_UNUSED,
			     struct dict **dict_r,
			     struct settings_instance **instance_r,
			     const char **error_r)
{
	struct event *event;
	const char *error;
	int ret;

	*instance_r = NULL;
	event = event_create(user->event);
	settings_event_add_filter_name(event, "migrate");
	ret = dict_init_auto(event, dict_r, &error);
	if (ret < 0) {
		*error_r = t_strdup_printf("Invalid state dict "
			"(migrate { dict ... }): %s", error);
	} else if (ret == 0) {
		/* no dict block: the embedded default */
		ret = migrate_compat_dict_default(user, event, dict_r,
						  instance_r, error_r);
	} else {
		ret = 0;
	}
	event_unref(&event);
	return ret;
}

void migrate_compat_dict_deinit(struct dict **dict,
				struct settings_instance **instance)
{
	dict_deinit(dict);
	if (*instance != NULL)
		settings_instance_free(instance);
}
#else
const char *migrate_compat_dict_setting_name(void)
{
	return "migrate_state_dict";
}

int migrate_compat_dict_init(struct mail_user *user, const char *dict_uri,
			     struct dict **dict_r,
			     struct settings_instance **instance_r,
			     const char **error_r)
{
	struct dict_settings dict_set;
	const char *error;

	*instance_r = NULL;
	i_zero(&dict_set);
	dict_set.base_dir = user->set->base_dir;
	dict_set.event_parent = user->event;
	if (dict_init(dict_uri, &dict_set, dict_r, &error) < 0) {
		*error_r = t_strdup_printf("Invalid setting "
			"migrate_state_dict=%s: %s", dict_uri, error);
		return -1;
	}
	return 0;
}

void migrate_compat_dict_deinit(struct dict **dict,
				struct settings_instance **instance ATTR_UNUSED)
{
	dict_deinit(dict);
}
#endif

/* TLS */

#ifdef MIGRATE_HAVE_SSL_IOSTREAM_FLAGS
int migrate_compat_ssl_context(const struct migrate_compat_ssl *ssl,
			       struct ssl_iostream_context **ctx_r,
			       const char **error_r)
{
	const struct ssl_settings *ssl_set;
	const struct ssl_iostream_settings *set;
	struct ssl_iostream_settings *client_set;
	const char *value, *error;
	int ret;

	if (ssl_client_settings_get(ssl->user->event, &ssl_set, error_r) < 0)
		return -1;
	ssl_client_settings_to_iostream_set(ssl_set, &set);
	settings_free(ssl_set);
	/* freshly allocated for us from its own pool */
	client_set = (struct ssl_iostream_settings *)set;
	if (ssl->ca_file != NULL) {
		if (settings_parse_read_file(ssl->ca_file, ssl->ca_file,
					     client_set->pool, &value,
					     &error) < 0) {
			*error_r = error;
			settings_free(set);
			return -1;
		}
		settings_file_get(value, client_set->pool, &client_set->ca);
		client_set->ca_dir = NULL;
	}
	client_set->verify_remote_cert = ssl->verify;
	client_set->allow_invalid_cert = !ssl->verify;
	ret = ssl_iostream_client_context_cache_get(client_set, ctx_r,
						    error_r);
	settings_free(set);
	return ret;
}

int migrate_compat_ssl_client(const struct migrate_compat_ssl *ssl,
			      struct ssl_iostream_context *ctx,
			      struct istream **input, struct ostream **output,
			      struct ssl_iostream **iostream_r,
			      const char **error_r)
{
	return io_stream_create_ssl_client(ctx, ssl->host, ssl->event,
		ssl->verify ? 0 : SSL_IOSTREAM_FLAG_ALLOW_INVALID_CERT,
		input, output, iostream_r, error_r);
}
#else
static void
migrate_compat_ssl_settings(const struct migrate_compat_ssl *ssl,
			    struct ssl_iostream_settings *set_r)
{
	mail_user_init_ssl_client_settings(ssl->user, set_r);
	if (ssl->ca_file != NULL) {
		set_r->ca_file = ssl->ca_file;
		set_r->ca_dir = NULL;
	}
	set_r->verify_remote_cert = ssl->verify;
	set_r->allow_invalid_cert = !ssl->verify;
}

int migrate_compat_ssl_context(const struct migrate_compat_ssl *ssl,
			       struct ssl_iostream_context **ctx_r,
			       const char **error_r)
{
	struct ssl_iostream_settings set;

	migrate_compat_ssl_settings(ssl, &set);
	return ssl_iostream_client_context_cache_get(&set, ctx_r, error_r);
}

int migrate_compat_ssl_client(const struct migrate_compat_ssl *ssl,
			      struct ssl_iostream_context *ctx,
			      struct istream **input, struct ostream **output,
			      struct ssl_iostream **iostream_r,
			      const char **error_r)
{
	struct ssl_iostream_settings set;

	migrate_compat_ssl_settings(ssl, &set);
	return io_stream_create_ssl_client(ctx, ssl->host, &set, input,
					   output, iostream_r, error_r);
}
#endif

/* Compression */

#ifdef MIGRATE_HAVE_DEFLATE_AUTO
struct ostream *
migrate_compat_ostream_deflate(struct ostream *output, int level ATTR_UNUSED,
			       struct event *event)
{
	return o_stream_create_deflate_auto(output, event);
}
#else
struct ostream *
migrate_compat_ostream_deflate(struct ostream *output, int level,
			       struct event *event ATTR_UNUSED)
{
	return o_stream_create_deflate(output, level);
}
#endif

void migrate_compat_stats_client_after_fork(void)
{
	struct connection *conn;
	int fd;

	if (master_service == NULL || master_service->stats_client == NULL)
		return;
	/* a stats_client begins with its connection. Its fd becomes
	   /dev/null here: nothing the parent had buffered is sent twice */
	conn = (struct connection *)master_service->stats_client;
	fd = open("/dev/null", O_WRONLY);
	if (fd == -1 || conn->fd_out == -1 || dup2(fd, conn->fd_out) < 0) {
		/* can't happen short of fd exhaustion; then the worker's
		   events may still reach the parent's stream */
		if (fd != -1)
			i_close_fd(&fd);
		return;
	}
	i_close_fd(&fd);
	/* with output still buffered the ostream has an io in the parent's
	   epoll set (shared after fork): keep the client, writing to
	   /dev/null */
	if (conn->output != NULL &&
	    o_stream_get_buffer_used_size(conn->output) > 0)
		return;
	/* removing the connection's io would remove it from the parent's
	   epoll set too */
	conn->io = NULL;
	stats_client_deinit(&master_service->stats_client);
}

void migrate_compat_cache_register_fields(struct mail_cache *cache,
					  struct mail_cache_field *fields,
					  unsigned int count)
{
#ifdef MIGRATE_HAVE_CACHE_REGISTER_POOL
	mail_cache_register_fields(cache, fields, count,
				   unsafe_data_stack_pool);
#else
	mail_cache_register_fields(cache, fields, count);
#endif
}

int migrate_compat_quota_storage(struct quota_root *root,
				 struct mail_user *user, int *result_r,
				 uint64_t *value_r, uint64_t *limit_r,
				 const char **error_r)
{
	__typeof__(quota_get_resource) *get_resource;
#if DOVECOT_PREREQ(2, 4, 0)
	struct mailbox *box;
#endif

	get_resource = dlsym(RTLD_DEFAULT, "quota_get_resource");
	if (get_resource == NULL)
		return -1;
#if DOVECOT_PREREQ(2, 4, 0)
	box = mailbox_alloc(mail_namespace_find_inbox(user->namespaces)->list,
			    "INBOX", 0);
	*result_r = get_resource(root, box, QUOTA_NAME_STORAGE_BYTES,
				 value_r, limit_r, error_r);
	mailbox_free(&box);
#else
	(void)user;
	*result_r = get_resource(root, "INBOX", QUOTA_NAME_STORAGE_BYTES,
				 value_r, limit_r, error_r);
#endif
	return 0;
}

failure_callback_t *migrate_compat_log_info_local_begin(void)
{
#ifndef MIGRATE_HAVE_DOVEADM_CLIENT
	failure_callback_t *fatal, *error, *info, *debug;
	failure_callback_t *int_fatal, *int_error, *int_info, *int_debug;

	/* a process of the log service (the fatal handler stays its own)
	   whose info lines go elsewhere: a doveadm client's */
	i_get_failure_handlers(&fatal, &error, &info, &debug);
	if (!i_failure_handler_is_internal(fatal) ||
	    i_failure_handler_is_internal(info))
		return NULL;
	/* the log service's handler isn't exported: set them all (the
	   fatal one is the same), keep its info handler, put the error and
	   debug ones back */
	i_set_failure_internal();
	i_get_failure_handlers(&int_fatal, &int_error, &int_info, &int_debug);
	i_set_error_handler(error);
	i_set_debug_handler(debug);
	i_set_info_handler(int_info);
	return info;
#else
	return NULL;
#endif
}

void migrate_compat_log_info_local_end(failure_callback_t *prev)
{
	if (prev != NULL)
		i_set_info_handler(prev);
}
