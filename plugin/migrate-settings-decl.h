#ifndef MIGRATE_SETTINGS_DECL_H
#define MIGRATE_SETTINGS_DECL_H

/* Dovecot 2.4: every migrate_* setting of migrate_setting_defs[] declared
   to the settings framework (setting_define, typed, with defaults), so the
   config process validates them and doveconf prints them. The declarations
   are made from the table at run time: one list of settings for 2.3 and
   2.4. Loaded by the config process as the settings module
   libmigrate_settings.so and used by the plugin for settings_get(). */

#include "settings-parser.h"

/* settings_get() result: the pool, then one 8-byte slot per setting */
#define MIGRATE_SETTINGS_DECL_MAX 64
struct migrate_settings_decl {
	pool_t pool;
	uint64_t slots[MIGRATE_SETTINGS_DECL_MAX];
};

extern const struct setting_parser_info migrate_setting_parser_info;

/* Fill in the declarations (idempotent) */
void migrate_settings_decl_init(void);
/* The value of the named setting as a string (see migrate_compat_setting()),
   NULL if it isn't declared or is unset */
const char *migrate_settings_decl_value(const void *set, const char *name);

#endif
