#ifndef MIGRATE_QUOTA_H
#define MIGRATE_QUOTA_H

/* The destination user's storage quota, read through Dovecot's quota
   plugin when the user's mail_plugins load it. The plugin is looked up at
   run time: without it (or without a limited quota root) there is nothing
   to compare, and this plugin doesn't need it to load. */

struct mail_user;

struct migrate_quota {
	/* the quota root with the least free space */
	const char *root_name;
	uint64_t bytes_used, bytes_limit;
};

/* 1 = a storage limit applies (quota_r set), 0 = no quota plugin or no
   storage limit, -1 = the quota couldn't be read (error_r) */
int migrate_quota_get(struct mail_user *user, struct migrate_quota *quota_r,
		      const char **error_r);

static inline uint64_t migrate_quota_free(const struct migrate_quota *quota)
{
	return quota->bytes_used >= quota->bytes_limit ? 0 :
		quota->bytes_limit - quota->bytes_used;
}

/* "2.6 MB" */
const char *migrate_quota_size_str(uint64_t bytes);

#endif
