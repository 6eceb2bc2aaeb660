#ifndef MIGRATE_GMAIL_H
#define MIGRATE_GMAIL_H

#include "migrate-folder-map.h"

/* Every Gmail rule (pure logic): the folder container's names, the names
   under it that say a folder's special use, and which folder an
   X-GM-LABELS label names. Names are compared without case, as Gmail
   does ("[GMAIL]/Sent Mail", a label "work" for the folder "Work"). */

/* Names of folders under [Gmail]/[Google Mail] that say their special
   use, on top of the folder map's localized names (the folder map
   compares them normalized: any case) */
extern const struct migrate_special_name migrate_gmail_special_names[];
extern const unsigned int migrate_gmail_special_names_count;

/* Gmail's folder container, "[Gmail]" or "[Google Mail]" (any case) */
bool migrate_gmail_is_container(const char *name);
/* Is src_name the container or a folder under it (sep: the source's
   hierarchy separator)? */
bool migrate_gmail_is_name(const char *src_name, char sep);

/* The special use an X-GM-LABELS system label stands for ("\Sent" ->
   \Sent, "\Draft" -> \Drafts, "\Spam" -> \Junk...), NONE for \Inbox and
   user labels */
enum migrate_special_use migrate_gmail_label_special_use(const char *label);
/* Does this X-GM-LABELS label name the source folder src_name, whose
   special use is special_use (its LIST flags and what the folder map
   recognised by name)? \Inbox names INBOX, a system label the folder with
   its special use, a user label the folder of that name (any case). */
bool migrate_gmail_label_names_folder(const char *label, const char *src_name,
				      enum migrate_special_use special_use);

#endif
