/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "istream.h"
#include "mail-user.h"
#include "migrate-sieve-compat.h"

/* set by plugin/Makefile.am to the library's installed path; a build
   outside it (the fuzz target) finds it through the loader's path */
#ifndef MIGRATE_SIEVE_LIB
#  define MIGRATE_SIEVE_LIB "libdovecot-sieve.so.0"
#endif

#ifdef MIGRATE_HAVE_SIEVE
#include "sieve.h"
#include "sieve-error.h"
#include "sieve-script.h"
#include "sieve-storage.h"

#include <dlfcn.h>

/* Pigeonhole's functions, looked up in libdovecot-sieve at run time: the
   plugin must not depend on the library when linked (doveadm skips a
   plugin whose libraries are missing). The types come from Pigeonhole's
   own headers, so the compiler checks every call. */
#define SIEVE_FUNCS(X) \
	X(sieve_init) \
	X(sieve_deinit) \
	X(sieve_storage_unref) \
	X(sieve_storage_get_last_error) \
	X(sieve_storage_active_script_get_name) \
	X(sieve_storage_open_script) \
	X(sieve_storage_save_init) \
	X(sieve_storage_save_continue) \
	X(sieve_storage_save_finish) \
	X(sieve_storage_save_get_tempscript) \
	X(sieve_storage_save_commit) \
	X(sieve_storage_save_cancel) \
	X(sieve_storage_deactivate) \
	X(sieve_script_get_stream) \
	X(sieve_script_activate) \
	X(sieve_script_unref) \
	X(sieve_script_name_is_valid) \
	X(sieve_compile_script) \
	X(sieve_close) \
	X(sieve_strbuf_ehandler_create) \
	X(sieve_error_handler_unref) \
	SIEVE_FUNCS_VERSION(X)

#ifdef MIGRATE_HAVE_SIEVE_STORAGE_CREATE_PERSONAL
#  define SIEVE_FUNCS_VERSION(X) X(sieve_storage_create_personal)
#else
#  define SIEVE_FUNCS_VERSION(X) X(sieve_storage_create_main)
#endif

#define SIEVE_FUNC_PTR(name) __typeof__(name) *name;
struct sieve_funcs {
	SIEVE_FUNCS(SIEVE_FUNC_PTR)
};
static struct sieve_funcs sv;
#define SIEVE_FUNC_NAME(name) { #name, offsetof(struct sieve_funcs, name) },
static const struct {
	const char *name;
	size_t offset;
} sieve_funcs[] = { SIEVE_FUNCS(SIEVE_FUNC_NAME) };

static void *sieve_lib;
static const char *sieve_lib_error;

static int sieve_lib_load(const char **error_r)
{
	unsigned int i;
	void *func;

	if (sieve_lib != NULL)
		return 0;
	if (sieve_lib_error != NULL) {
		*error_r = sieve_lib_error;
		return -1;
	}
	sieve_lib = dlopen(MIGRATE_SIEVE_LIB, RTLD_NOW | RTLD_GLOBAL);
	if (sieve_lib == NULL) {
		sieve_lib_error = i_strdup_printf(
			"Pigeonhole's Sieve library %s can't be loaded "
			"(is dovecot-sieve installed?): %s",
			MIGRATE_SIEVE_LIB, dlerror());
	} else {
		for (i = 0; i < N_ELEMENTS(sieve_funcs); i++) {
			func = dlsym(sieve_lib, sieve_funcs[i].name);
			memcpy((char *)&sv + sieve_funcs[i].offset, &func,
			       sizeof(func));
			if (func == NULL) {
				sieve_lib_error = i_strdup_printf(
					"%s lacks %s: not the Pigeonhole this "
					"plugin was built for",
					MIGRATE_SIEVE_LIB,
					sieve_funcs[i].name);
				sieve_lib = NULL;
				break;
			}
		}
	}
	if (sieve_lib == NULL) {
		*error_r = sieve_lib_error;
		return -1;
	}
	return 0;
}

struct migrate_sieve_store {
	struct mail_user *user;
	struct sieve_instance *svinst;
	struct sieve_storage *storage;
};

#ifndef MIGRATE_HAVE_SIEVE_STORAGE_CREATE_PERSONAL
/* 2.3: Pigeonhole reads its settings (sieve = ...) through this */
static const char *migrate_sieve_get_setting(void *context,
					     const char *identifier)
{
	struct migrate_sieve_store *store = context;

	return mail_user_plugin_getenv(store->user, identifier);
}

static const struct sieve_callbacks migrate_sieve_callbacks = {
	.get_setting = migrate_sieve_get_setting,
};
#endif

static const char *
migrate_sieve_storage_error(struct migrate_sieve_store *store)
{
	return sv.sieve_storage_get_last_error(store->storage, NULL);
}

int migrate_sieve_store_open(struct mail_user *user,
			     struct migrate_sieve_store **store_r,
			     const char **error_r)
{
	struct migrate_sieve_store *store;
	struct sieve_environment svenv;
	enum sieve_error error = SIEVE_ERROR_NONE;
	int ret;

	if (sieve_lib_load(error_r) < 0)
		return -1;

	store = i_new(struct migrate_sieve_store, 1);
	store->user = user;
	i_zero(&svenv);
	svenv.username = user->username;
	(void)mail_user_get_home(user, &svenv.home_dir);
	svenv.base_dir = user->set->base_dir;
	svenv.event_parent = user->event;
	svenv.flags = SIEVE_FLAG_HOME_RELATIVE;
#ifdef MIGRATE_HAVE_SIEVE_STORAGE_CREATE_PERSONAL
	if (sv.sieve_init(&svenv, NULL, store, FALSE, &store->svinst) < 0) {
		i_free(store);
		*error_r = "Pigeonhole's Sieve engine failed to start";
		return -1;
	}
	ret = sv.sieve_storage_create_personal(store->svinst, user,
		SIEVE_SCRIPT_CAUSE_ANY, SIEVE_STORAGE_FLAG_READWRITE,
		&store->storage, &error);
#else
	store->svinst = sv.sieve_init(&svenv, &migrate_sieve_callbacks,
				      store, FALSE);
	if (store->svinst == NULL) {
		i_free(store);
		*error_r = "Pigeonhole's Sieve engine failed to start";
		return -1;
	}
	store->storage = sv.sieve_storage_create_main(store->svinst, user,
		SIEVE_STORAGE_FLAG_READWRITE, &error);
	ret = store->storage == NULL ? -1 : 0;
#endif
	if (ret < 0) {
		switch (error) {
		case SIEVE_ERROR_NOT_POSSIBLE:
			*error_r = "Sieve is disabled for the user at the "
				"destination";
			break;
		case SIEVE_ERROR_NOT_FOUND:
			*error_r = "the user has no personal Sieve storage at "
				"the destination (configure Pigeonhole's "
				"script location)";
			break;
		default:
			*error_r = "the destination's Sieve storage can't be "
				"opened (see the log)";
			break;
		}
		sv.sieve_deinit(&store->svinst);
		i_free(store);
		return -1;
	}
	*store_r = store;
	return 0;
}

void migrate_sieve_store_close(struct migrate_sieve_store **_store)
{
	struct migrate_sieve_store *store = *_store;

	*_store = NULL;
	if (store == NULL)
		return;
	sv.sieve_storage_unref(&store->storage);
	sv.sieve_deinit(&store->svinst);
	i_free(store);
}

bool migrate_sieve_store_name_is_valid(struct migrate_sieve_store *store ATTR_UNUSED,
				       const char *name)
{
	return sv.sieve_script_name_is_valid(name);
}

int migrate_sieve_store_get_active(struct migrate_sieve_store *store,
				   const char **name_r, const char **error_r)
{
	int ret;

	enum sieve_error error;

	ret = sv.sieve_storage_active_script_get_name(store->storage, name_r);
	if (ret < 0) {
		*error_r = sv.sieve_storage_get_last_error(store->storage,
							   &error);
		/* 2.4: none active and no default script either */
		if (error != SIEVE_ERROR_NOT_FOUND)
			return -1;
		ret = 0;
	}
	if (ret == 0)
		*name_r = NULL;
	return 0;
}

static int
migrate_sieve_open_script(struct migrate_sieve_store *store, const char *name,
			  struct sieve_script **script_r,
			  enum sieve_error *error_r)
{
#ifdef MIGRATE_HAVE_SIEVE_STORAGE_CREATE_PERSONAL
	return sv.sieve_storage_open_script(store->storage, name, script_r,
					    error_r);
#else
	*script_r = sv.sieve_storage_open_script(store->storage, name,
						 error_r);
	return *script_r == NULL ? -1 : 0;
#endif
}

int migrate_sieve_store_get(struct migrate_sieve_store *store,
			    const char *name, string_t *content,
			    const char **error_r)
{
	struct sieve_script *script;
	struct istream *input;
	enum sieve_error error;
	const unsigned char *data;
	size_t size;
	ssize_t ret;

	if (migrate_sieve_open_script(store, name, &script, &error) < 0) {
		if (error == SIEVE_ERROR_NOT_FOUND)
			return 0;
		*error_r = migrate_sieve_storage_error(store);
		return -1;
	}
	if (sv.sieve_script_get_stream(script, &input, &error) < 0) {
		sv.sieve_script_unref(&script);
		if (error == SIEVE_ERROR_NOT_FOUND)
			return 0;
		*error_r = t_strdup_printf("reading script %s failed", name);
		return -1;
	}
	i_stream_seek(input, 0);
	while ((ret = i_stream_read_more(input, &data, &size)) > 0) {
		str_append_data(content, data, size);
		i_stream_skip(input, size);
	}
	if (input->stream_errno != 0) {
		*error_r = t_strdup_printf("reading script %s failed: %s",
					   name, i_stream_get_error(input));
		sv.sieve_script_unref(&script);
		return -1;
	}
	sv.sieve_script_unref(&script);
	return 1;
}

/* Compile script with the messages going to a string: 0, or -1 with the
   compiler's messages in *compile_error_r */
static int
migrate_sieve_compile(struct migrate_sieve_store *store,
		      struct sieve_script *script, const char **compile_error_r)
{
	struct sieve_error_handler *ehandler;
	struct sieve_binary *sbin;
	enum sieve_error error;
	string_t *errors = t_str_new(256);
	int ret;

	ehandler = sv.sieve_strbuf_ehandler_create(store->svinst, errors,
						   FALSE, 10);
#ifdef MIGRATE_HAVE_SIEVE_STORAGE_CREATE_PERSONAL
	ret = sv.sieve_compile_script(script, ehandler,
				      SIEVE_COMPILE_FLAG_NOGLOBAL |
				      SIEVE_COMPILE_FLAG_UPLOADED,
				      &sbin, &error);
#else
	sbin = sv.sieve_compile_script(script, ehandler,
				       SIEVE_COMPILE_FLAG_NOGLOBAL |
				       SIEVE_COMPILE_FLAG_UPLOADED, &error);
	ret = sbin == NULL ? -1 : 0;
#endif
	sv.sieve_error_handler_unref(&ehandler);
	if (ret < 0) {
		str_truncate(errors, str_len(errors) > 0 &&
			     str_c(errors)[str_len(errors) - 1] == '\n' ?
			     str_len(errors) - 1 : str_len(errors));
		*compile_error_r = str_len(errors) > 0 ? str_c(errors) :
			"the script doesn't compile";
		return -1;
	}
	sv.sieve_close(&sbin);
	*compile_error_r = NULL;
	return 0;
}

int migrate_sieve_store_save(struct migrate_sieve_store *store,
			     const char *name, const unsigned char *data,
			     size_t size, const char **compile_error_r,
			     const char **error_r)
{
	struct sieve_storage_save_context *save_ctx;
	struct sieve_script *script;
	struct istream *input;
	ssize_t ret;
	int result = 0;

	*compile_error_r = NULL;
	input = i_stream_create_from_data(data, size);
	save_ctx = sv.sieve_storage_save_init(store->storage, name, input);
	if (save_ctx == NULL) {
		*error_r = migrate_sieve_storage_error(store);
		i_stream_unref(&input);
		return -1;
	}
	/* the data is all there before the first read */
	do {
		if (sv.sieve_storage_save_continue(save_ctx) < 0) {
			result = -1;
			break;
		}
	} while ((ret = i_stream_read(input)) > 0 || ret == -2);
	if (result == 0 && sv.sieve_storage_save_finish(save_ctx) < 0)
		result = -1;
	if (result == 0) {
		script = sv.sieve_storage_save_get_tempscript(save_ctx);
		if (script == NULL)
			result = -1;
		else
			(void)migrate_sieve_compile(store, script,
						    compile_error_r);
	}
	/* stored even when it doesn't compile: the caller reports it and
	   keeps it inactive */
	if (result == 0 && sv.sieve_storage_save_commit(&save_ctx) < 0)
		result = -1;
	if (result < 0)
		*error_r = migrate_sieve_storage_error(store);
	if (save_ctx != NULL)
		sv.sieve_storage_save_cancel(&save_ctx);
	i_stream_unref(&input);
	return result;
}

int migrate_sieve_store_compile(struct migrate_sieve_store *store,
				const char *name,
				const char **compile_error_r,
				const char **error_r)
{
	struct sieve_script *script;
	enum sieve_error error;

	if (migrate_sieve_open_script(store, name, &script, &error) < 0) {
		*error_r = migrate_sieve_storage_error(store);
		return -1;
	}
	(void)migrate_sieve_compile(store, script, compile_error_r);
	sv.sieve_script_unref(&script);
	return 0;
}

int migrate_sieve_store_activate(struct migrate_sieve_store *store,
				 const char *name, const char **error_r)
{
	struct sieve_script *script;
	enum sieve_error error;
	int ret;

	if (migrate_sieve_open_script(store, name, &script, &error) < 0) {
		*error_r = migrate_sieve_storage_error(store);
		return -1;
	}
	ret = sv.sieve_script_activate(script, (time_t)-1);
	if (ret < 0)
		*error_r = migrate_sieve_storage_error(store);
	sv.sieve_script_unref(&script);
	return ret < 0 ? -1 : 0;
}

int migrate_sieve_store_deactivate(struct migrate_sieve_store *store,
				   const char **error_r)
{
	if (sv.sieve_storage_deactivate(store->storage, (time_t)-1) < 0) {
		*error_r = migrate_sieve_storage_error(store);
		return -1;
	}
	return 0;
}

#else

/* Built without Pigeonhole's headers: only the error is left */
#define MIGRATE_SIEVE_UNSUPPORTED \
	"this build of the plugin has no Sieve support " \
	"(Pigeonhole's headers were missing when it was built)"

int migrate_sieve_store_open(struct mail_user *user ATTR_UNUSED,
			     struct migrate_sieve_store **store_r,
			     const char **error_r)
{
	*store_r = NULL;
	*error_r = MIGRATE_SIEVE_UNSUPPORTED;
	return -1;
}

void migrate_sieve_store_close(struct migrate_sieve_store **store)
{
	*store = NULL;
}

bool migrate_sieve_store_name_is_valid(struct migrate_sieve_store *store ATTR_UNUSED,
				       const char *name ATTR_UNUSED)
{
	i_unreached();
}

int migrate_sieve_store_get_active(struct migrate_sieve_store *store ATTR_UNUSED,
				   const char **name_r ATTR_UNUSED,
				   const char **error_r ATTR_UNUSED)
{
	i_unreached();
}

int migrate_sieve_store_get(struct migrate_sieve_store *store ATTR_UNUSED,
			    const char *name ATTR_UNUSED,
			    string_t *content ATTR_UNUSED,
			    const char **error_r ATTR_UNUSED)
{
	i_unreached();
}

int migrate_sieve_store_save(struct migrate_sieve_store *store ATTR_UNUSED,
			     const char *name ATTR_UNUSED,
			     const unsigned char *data ATTR_UNUSED,
			     size_t size ATTR_UNUSED,
			     const char **compile_error_r ATTR_UNUSED,
			     const char **error_r ATTR_UNUSED)
{
	i_unreached();
}

int migrate_sieve_store_compile(struct migrate_sieve_store *store ATTR_UNUSED,
				const char *name ATTR_UNUSED,
				const char **compile_error_r ATTR_UNUSED,
				const char **error_r ATTR_UNUSED)
{
	i_unreached();
}

int migrate_sieve_store_activate(struct migrate_sieve_store *store ATTR_UNUSED,
				 const char *name ATTR_UNUSED,
				 const char **error_r ATTR_UNUSED)
{
	i_unreached();
}

int migrate_sieve_store_deactivate(struct migrate_sieve_store *store ATTR_UNUSED,
				   const char **error_r ATTR_UNUSED)
{
	i_unreached();
}

#endif
