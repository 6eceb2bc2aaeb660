/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str-parse.h"
#include "strnum.h"
#include "module-dir.h"
#include "migrate-settings.h"
#include "migrate-settings-decl.h"

#include <stddef.h>

/* Not declared on 2.4: it has no dict URIs, the state dict is a
   migrate { dict <driver> { ... } } block */
static const char *const migrate_settings_undeclared[] = {
	"migrate_state_dict",
};

/* [0] the migrate { } filter, then the settings, then the end */
static struct setting_define migrate_setting_defines[MIGRATE_SETTINGS_DECL_MAX + 2] = {
	{ .type = SET_FILTER_NAME, .key = "migrate" },
};
/* the table index of each define */
static unsigned int migrate_setting_define_idx[MIGRATE_SETTINGS_DECL_MAX];
static struct migrate_settings_decl migrate_default_settings;
static bool migrate_settings_decl_done = FALSE;

const struct setting_parser_info migrate_setting_parser_info = {
	.name = "migrate",
	.defines = migrate_setting_defines,
	.defaults = &migrate_default_settings,
	.struct_size = sizeof(struct migrate_settings_decl),
	.pool_offset1 = 1 + offsetof(struct migrate_settings_decl, pool),
};

/* The settings module for 2.4's config process: module name
   "migrate_settings" from libmigrate_settings.so */
extern const char *migrate_settings_version;
extern const struct setting_parser_info *migrate_settings_set_infos[];
void migrate_settings_init(struct module *module);
void migrate_settings_deinit(void);

const char *migrate_settings_version = DOVECOT_ABI_VERSION;
const struct setting_parser_info *migrate_settings_set_infos[] = {
	&migrate_setting_parser_info,
	NULL
};

static bool migrate_setting_is_declared(const char *name)
{
	for (unsigned int i = 0; i < N_ELEMENTS(migrate_settings_undeclared); i++) {
		if (strcmp(migrate_settings_undeclared[i], name) == 0)
			return FALSE;
	}
	return TRUE;
}

static void
migrate_setting_declare(const struct migrate_setting_def *def,
			unsigned int slot, struct setting_define *define_r)
{
	void *dflt = &migrate_default_settings.slots[slot];
	const char *error;
	unsigned int num;
	uoff_t size;

	i_zero(define_r);
	define_r->key = def->name;
	define_r->offset = offsetof(struct migrate_settings_decl, slots) +
		slot * sizeof(uint64_t);
	switch (def->type) {
	case MIGRATE_SETTING_STR:
	case MIGRATE_SETTING_DATE:
		define_r->type = SET_STR;
		*(const char **)dflt = def->default_value;
		break;
	case MIGRATE_SETTING_ENUM:
		/* "a:b:c", the first is the default, as on 2.3 */
		define_r->type = SET_ENUM;
		*(const char **)dflt = def->default_value;
		break;
	case MIGRATE_SETTING_BOOL:
		define_r->type = SET_BOOL;
		*(bool *)dflt = strcmp(def->default_value, "yes") == 0;
		break;
	case MIGRATE_SETTING_UINT:
	case MIGRATE_SETTING_SECS:
		/* 2.4's TIME: units are required in the config ("120s") */
		define_r->type = def->type == MIGRATE_SETTING_SECS ?
			SET_TIME : SET_UINT;
		num = 0;
		if (def->default_value[0] != '\0' &&
		    str_to_uint(def->default_value, &num) < 0)
			i_panic("migrate: bad default %s", def->name);
		*(unsigned int *)dflt = num;
		break;
	case MIGRATE_SETTING_SIZE:
		define_r->type = SET_SIZE;
		size = 0;
		if (def->default_value[0] != '\0' &&
		    str_parse_get_size(def->default_value, &size, &error) < 0)
			i_panic("migrate: bad default %s: %s", def->name, error);
		*(uoff_t *)dflt = size;
		break;
	}
}

void migrate_settings_decl_init(void)
{
	unsigned int i, n = 0;

	if (migrate_settings_decl_done)
		return;
	migrate_settings_decl_done = TRUE;
	for (i = 0; i < migrate_setting_defs_count; i++) {
		if (!migrate_setting_is_declared(migrate_setting_defs[i].name))
			continue;
		i_assert(n < MIGRATE_SETTINGS_DECL_MAX);
		migrate_setting_declare(&migrate_setting_defs[i], n,
					&migrate_setting_defines[n + 1]);
		migrate_setting_define_idx[n] = i;
		n++;
	}
	/* migrate_setting_defines[n + 1] stays all-zero: the list's end */
}

const char *migrate_settings_decl_value(const void *set, const char *name)
{
	const struct migrate_setting_def *def;
	const void *value;
	unsigned int i;

	for (i = 1; migrate_setting_defines[i].key != NULL; i++) {
		if (strcmp(migrate_setting_defines[i].key, name) == 0)
			break;
	}
	if (migrate_setting_defines[i].key == NULL)
		return NULL;
	def = &migrate_setting_defs[migrate_setting_define_idx[i - 1]];
	value = CONST_PTR_OFFSET(set, migrate_setting_defines[i].offset);
	switch (def->type) {
	case MIGRATE_SETTING_STR:
	case MIGRATE_SETTING_DATE:
	case MIGRATE_SETTING_ENUM:
		return *(const char *const *)value;
	case MIGRATE_SETTING_BOOL:
		return *(const bool *)value ? "yes" : "no";
	case MIGRATE_SETTING_UINT:
	case MIGRATE_SETTING_SECS:
		/* 0 of a setting that is unset by default: unset */
		if (*(const unsigned int *)value == 0 &&
		    def->default_value[0] == '\0')
			return NULL;
		/* intervals in plain seconds */
		return t_strdup_printf("%u", *(const unsigned int *)value);
	case MIGRATE_SETTING_SIZE:
		if (*(const uoff_t *)value == 0 &&
		    def->default_value[0] == '\0')
			return NULL;
		return t_strdup_printf("%"PRIuUOFF_T, *(const uoff_t *)value);
	}
	i_unreached();
}

void migrate_settings_init(struct module *module ATTR_UNUSED)
{
	migrate_settings_decl_init();
}

void migrate_settings_deinit(void)
{
}
