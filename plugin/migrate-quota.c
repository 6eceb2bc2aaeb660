/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "mail-user.h"
#include "quota.h"
#include "migrate-compat.h"
#include "migrate-quota.h"

#include <dlfcn.h>

/* quota.h declares these; the quota plugin (loaded with RTLD_GLOBAL by
   Dovecot's module loader) defines them. Linking them would keep this
   plugin from loading where the quota plugin isn't in mail_plugins. */
struct migrate_quota_api {
	__typeof__(quota_root_iter_init_user) *iter_init_user;
	__typeof__(quota_root_iter_next) *iter_next;
	__typeof__(quota_root_iter_deinit) *iter_deinit;
	__typeof__(quota_root_get_name) *get_name;
};

static bool migrate_quota_api_find(struct migrate_quota_api *api)
{
	api->iter_init_user = dlsym(RTLD_DEFAULT, "quota_root_iter_init_user");
	api->iter_next = dlsym(RTLD_DEFAULT, "quota_root_iter_next");
	api->iter_deinit = dlsym(RTLD_DEFAULT, "quota_root_iter_deinit");
	api->get_name = dlsym(RTLD_DEFAULT, "quota_root_get_name");
	return api->iter_init_user != NULL && api->iter_next != NULL &&
		api->iter_deinit != NULL && api->get_name != NULL;
}

int migrate_quota_get(struct mail_user *user, struct migrate_quota *quota_r,
		      const char **error_r)
{
	struct migrate_quota_api api;
	struct quota_root_iter *iter;
	struct quota_root *root;
	int qret;
	uint64_t value, limit;
	const char *error;
	int ret = 0;

	i_zero(quota_r);
	if (!migrate_quota_api_find(&api))
		return 0;
	iter = api.iter_init_user(user);
	while ((root = api.iter_next(iter)) != NULL) {
		if (migrate_compat_quota_storage(root, user, &qret, &value,
						 &limit, &error) < 0)
			break;
		if (qret == QUOTA_GET_RESULT_UNLIMITED ||
		    qret == QUOTA_GET_RESULT_UNKNOWN_RESOURCE)
			continue;
		if (qret != QUOTA_GET_RESULT_LIMITED) {
			*error_r = t_strdup_printf("Destination quota root "
				"%s: %s", api.get_name(root), error);
			ret = -1;
			break;
		}
		if (ret == 0 || (limit > value ? limit - value : 0) <
		    migrate_quota_free(quota_r)) {
			quota_r->root_name = t_strdup(api.get_name(root));
			quota_r->bytes_used = value;
			quota_r->bytes_limit = limit;
			ret = 1;
		}
	}
	api.iter_deinit(&iter);
	return ret;
}

const char *migrate_quota_size_str(uint64_t bytes)
{
	if (bytes < 1024*1024)
		return t_strdup_printf("%.1f kB", bytes / 1024.0);
	if (bytes < 1024ULL*1024*1024)
		return t_strdup_printf("%.1f MB", bytes / (1024.0*1024.0));
	return t_strdup_printf("%.2f GB", bytes / (1024.0*1024.0*1024.0));
}
