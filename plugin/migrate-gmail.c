/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-gmail.h"

const struct migrate_special_name migrate_gmail_special_names[] = {
	{ "All Mail", MIGRATE_SPECIAL_USE_ALL },
	{ "Alle Nachrichten", MIGRATE_SPECIAL_USE_ALL },
	{ "Todos", MIGRATE_SPECIAL_USE_ALL },
	{ "Tous les messages", MIGRATE_SPECIAL_USE_ALL },
	{ "Tutti i messaggi", MIGRATE_SPECIAL_USE_ALL },
	{ "Starred", MIGRATE_SPECIAL_USE_FLAGGED },
	{ "Important", MIGRATE_SPECIAL_USE_IMPORTANT },
};
const unsigned int migrate_gmail_special_names_count =
	N_ELEMENTS(migrate_gmail_special_names);

static const char *const gmail_containers[] = {
	"[Gmail]", "[Google Mail]"
};

/* X-GM-LABELS system labels (the Gmail IMAP extensions' spelling) */
static const struct migrate_special_name gmail_system_labels[] = {
	{ "\\Sent", MIGRATE_SPECIAL_USE_SENT },
	{ "\\Draft", MIGRATE_SPECIAL_USE_DRAFTS },
	{ "\\Trash", MIGRATE_SPECIAL_USE_TRASH },
	{ "\\Spam", MIGRATE_SPECIAL_USE_JUNK },
	{ "\\Starred", MIGRATE_SPECIAL_USE_FLAGGED },
	{ "\\Important", MIGRATE_SPECIAL_USE_IMPORTANT },
};

bool migrate_gmail_is_container(const char *name)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(gmail_containers); i++) {
		if (strcasecmp(name, gmail_containers[i]) == 0)
			return TRUE;
	}
	return FALSE;
}

bool migrate_gmail_is_name(const char *src_name, char sep)
{
	const char *p = sep == '\0' ? NULL : strchr(src_name, sep);

	return migrate_gmail_is_container(p == NULL ? src_name :
					  t_strdup_until(src_name, p));
}

enum migrate_special_use migrate_gmail_label_special_use(const char *label)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(gmail_system_labels); i++) {
		if (strcasecmp(label, gmail_system_labels[i].name) == 0)
			return gmail_system_labels[i].use;
	}
	return MIGRATE_SPECIAL_USE_NONE;
}

bool migrate_gmail_label_names_folder(const char *label, const char *src_name,
				      enum migrate_special_use special_use)
{
	enum migrate_special_use use;

	if (strcasecmp(label, "\\Inbox") == 0)
		return strcasecmp(src_name, "INBOX") == 0;
	use = migrate_gmail_label_special_use(label);
	if (use != MIGRATE_SPECIAL_USE_NONE)
		return (special_use & use) != 0;
	return strcasecmp(src_name, label) == 0;
}
