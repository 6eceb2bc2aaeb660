/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* Source folder -> destination folder.

   Folder names come from a remote server and are untrusted. Each source
   folder goes through these steps, in this order:

   1. Decode. The personal namespace prefix from NAMESPACE (e.g. "INBOX."
      on Courier/cPanel) is stripped; "INBOX" in its first five letters
      matches in any case. The folder named like the prefix without its
      delimiter ("INBOX") is INBOX; any other prefix folder ("#mh") and an
      empty name are skipped as "namespace root". The rest is split on the
      source delimiter (not at all for a flat NIL delimiter) and each part
      is decoded from modified UTF-7; a part that is not valid modified
      UTF-7 (e.g. raw 8-bit) is kept as the server sent it. A first part
      equal to "inbox" in any case becomes "INBOX".
   2. Character sanitizing of every part, so that decoded_name is always
      printable UTF-8 and its '/' is always a hierarchy separator:
        - a byte that is not part of valid UTF-8 (overlong, surrogate,
          truncated sequences included) -> '_'
        - control characters U+0000-U+001F, U+007F, U+0080-U+009F, the
          line/paragraph separators U+2028/U+2029 and the bidi
          embedding/override/isolate controls U+202A-U+202E,
          U+2066-U+2069 -> '_'
        - a literal '/' inside a part -> '_'
      decoded_name is the parts joined with '/'.
   3. migrate_exclude, then migrate_include: PCRE2 (UTF, UCP) patterns
      matched unanchored against decoded_name; exclude wins. Skipped
      folders get no vname.
   4. Special use: the folder's SPECIAL-USE/XLIST flags. Without flags and
      with migrate_automap, the well-known localized names below, compared
      case-insensitively (Unicode titlecase, decomposed) with the
      top-level part: the first part, or the second when the first is
      INBOX. In Gmail mode top-level names are user labels and are not
      recognised; instead the parts directly under [Gmail]/[Google Mail]
      are (with automap or not, since skipping depends on them; the
      container and these names are migrate-gmail.c's). A folder
      with \All is a virtual all-messages folder on any server:
      gmail_all_mail is set for it with or without Gmail mode. In Gmail
      mode \Flagged and \Important folders are skipped as virtual, then
      special uses listed in migrate_gmail_skip are skipped. Outside
      Gmail mode \Flagged/\Important folders are migrated as they are:
      skipping a real folder would lose mail.
   5. Rules (migrate_folder_map): the first rule whose pattern matches
      decoded_name wins. Patterns are NOT anchored implicitly; write
      ^...$ to match whole names. Like Perl's s///, the matched part of
      decoded_name (the first match) is replaced and the rest is kept;
      the replacement may use $N, ${N}, ${name} and $$. The result uses
      '/' as separator. "[SKIP]" skips the folder; an empty result skips
      it too.
   6. Automap, only when no rule matched and migrate_automap is on: a
      folder recognised as \Sent, \Drafts, \Trash, \Junk or \Archive
      becomes the destination's special-use folder (special_use_dest[],
      else the English default name); \All becomes the \Archive folder.
      A subfolder keeps its path under the mapped parent ("Sent
      Items/2019" -> "Sent/2019"); parents are recognised by name (top
      level only) or by flags of parents looked up before (LIST order).
   7. Structural sanitizing of every resulting part (rule output too,
      which also goes through step 2):
        - empty part -> "_"
        - "." -> "_.", ".." -> "_.."
        - leading '~' -> '_'
        - the destination separator as a character -> '_'; on Maildir++
          '.' too (its folders are directories ".a.b")
        - a name the destination storage keeps for its own files in a
          folder's directory gets a '_' appended: Dovecot's "dovecot..."
          files (dovecot-uidlist, dovecot.index*, dovecot-keywords, ...)
          on every storage; cur, new, tmp, maildirfolder, maildirsize and
          subscriptions on Maildir; dbox-Mails on dbox; names ending in
          ".lock" (another folder's dotlock) and ".imap" on mbox
        - a part longer than the storage allows (255 bytes; 250 on mbox,
          whose dotlock adds ".lock") is cut at a character boundary and
          ends in '~' and 8 hex digits of the whole part's CRC32, so cut
          names of one parent stay apart; on Maildir++ the last part is
          cut so that ".a.b" fits in 255 bytes
      then limits, which skip the folder (a rule can rename it): more than
      32 levels, a name longer than 1000 bytes (without the destination
      prefix), a Maildir++ name that doesn't fit even then.
   8. \Noselect / \NonExistent: skipped as "not selectable", but the vname
      is still returned so the caller can create the hierarchy.

   The destination prefix is prepended to every vname but INBOX. The
   reason says what happened: the skip reason, the rule or automap that
   renamed the folder, and "sanitized: ..." listing what was replaced. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "hash.h"
#include "istream.h"
#include "unichar.h"
#include "crc32.h"
#include "imap-utf7.h"
#include "migrate-compat.h"
#include "migrate-settings.h"
#include "migrate-folder-map.h"
#include "migrate-gmail.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <ctype.h>

#define MIGRATE_FOLDER_PART_MAX_BYTES 255
/* mbox: the folder's dotlock file is "<name>.lock" */
#define MIGRATE_FOLDER_MBOX_PART_MAX_BYTES (255 - 5)
/* "~" and 8 hex digits */
#define MIGRATE_FOLDER_SHORTEN_SUFFIX_LEN 9
#define MIGRATE_FOLDER_NAME_MAX_BYTES 1000
#define MIGRATE_FOLDER_MAX_LEVELS 32
#define MIGRATE_FOLDER_RULES_MAX_LINE (64*1024)

#define MIGRATE_SPECIAL_USE_MASK \
	((1U << MIGRATE_SPECIAL_USE_COUNT) - 1)
/* Special uses that automap moves onto a destination folder */
#define MIGRATE_SPECIAL_USE_MAPPABLE \
	(MIGRATE_SPECIAL_USE_SENT | MIGRATE_SPECIAL_USE_DRAFTS | \
	 MIGRATE_SPECIAL_USE_TRASH | MIGRATE_SPECIAL_USE_JUNK | \
	 MIGRATE_SPECIAL_USE_ARCHIVE)

enum folder_fix {
	FOLDER_FIX_RAW_UTF7	= 0x01,
	FOLDER_FIX_INVALID_UTF8	= 0x02,
	FOLDER_FIX_CONTROL	= 0x04,
	FOLDER_FIX_SLASH	= 0x08,
	FOLDER_FIX_EMPTY	= 0x10,
	FOLDER_FIX_DOT		= 0x20,
	FOLDER_FIX_TILDE	= 0x40,
	FOLDER_FIX_DEST_SEP	= 0x80,
	FOLDER_FIX_RESERVED	= 0x100,
	FOLDER_FIX_LONG		= 0x200,
};

struct migrate_folder_rule {
	pcre2_code *code;
	/* NULL for [SKIP] */
	const char *replacement;
	unsigned int line;
};

struct migrate_folder_map {
	pool_t pool;
	struct migrate_folder_map_settings set;

	ARRAY(struct migrate_folder_rule) rules;
	pcre2_code *include, *exclude;
	/* normalized well-known name -> special-use bit */
	HASH_TABLE(const char *, void *) names;
	/* the same for the folders under [Gmail] */
	HASH_TABLE(const char *, void *) gmail_names;
	/* decoded_name -> special-use bit of flagged folders looked up so
	   far, so that their subfolders follow them */
	HASH_TABLE(const char *, void *) flagged;
};

struct special_use_def {
	const char *flag;
	const char *default_name;
};

/* Indexed by bit number */
static const struct special_use_def special_use_defs[] = {
	{ "\\Sent", "Sent" },
	{ "\\Drafts", "Drafts" },
	{ "\\Trash", "Trash" },
	{ "\\Junk", "Junk" },
	{ "\\Archive", "Archive" },
	{ "\\All", "Archive" },
	{ "\\Flagged", "Flagged" },
	{ "\\Important", "Important" },
};

/* XLIST (pre-RFC 6154 Gmail) spellings */
static const struct {
	const char *flag;
	enum migrate_special_use use;
} special_use_aliases[] = {
	{ "\\Spam", MIGRATE_SPECIAL_USE_JUNK },
	{ "\\AllMail", MIGRATE_SPECIAL_USE_ALL },
	{ "\\Starred", MIGRATE_SPECIAL_USE_FLAGGED },
};

#define SENT(name) { name, MIGRATE_SPECIAL_USE_SENT }
#define DRAFTS(name) { name, MIGRATE_SPECIAL_USE_DRAFTS }
#define TRASH(name) { name, MIGRATE_SPECIAL_USE_TRASH }
#define JUNK(name) { name, MIGRATE_SPECIAL_USE_JUNK }
#define ARCHIVE(name) { name, MIGRATE_SPECIAL_USE_ARCHIVE }

/* Default folder names of common servers and clients (Outlook/Exchange/
   M365, cPanel/Courier, Thunderbird, Apple Mail, webmails) in their
   localizations. Compared case-insensitively. */
static const struct migrate_special_name special_names[] = {
	/* English, Exchange/M365, cPanel/Courier */
	SENT("Sent"), SENT("Sent Items"), SENT("Sent Messages"),
	SENT("Sent Mail"), SENT("Sent-Mail"), SENT("Sent Email"),
	SENT("Sent Objects"),
	DRAFTS("Drafts"), DRAFTS("Draft"),
	TRASH("Trash"), TRASH("Deleted Items"), TRASH("Deleted Messages"),
	TRASH("Deleted"), TRASH("Bin"), TRASH("Deleted Mail"),
	JUNK("Junk"), JUNK("Junk E-mail"), JUNK("Junk Email"),
	JUNK("Junk Mail"), JUNK("Junk-E-Mail"), JUNK("Spam"),
	JUNK("Bulk Mail"), JUNK("Bulk"),
	ARCHIVE("Archive"), ARCHIVE("Archives"),
	/* German */
	SENT("Gesendet"), SENT("Gesendete Elemente"),
	SENT("Gesendete Objekte"), SENT("Gesendete Nachrichten"),
	DRAFTS("Entwürfe"), DRAFTS("Entwurf"),
	TRASH("Papierkorb"), TRASH("Gelöschte Elemente"),
	TRASH("Gelöschte Objekte"), TRASH("Gelöscht"),
	JUNK("Spamverdacht"), JUNK("Spam-Verdacht"),
	ARCHIVE("Archiv"),
	/* Spanish, Portuguese, Catalan */
	SENT("Enviados"), SENT("Enviado"), SENT("Elementos enviados"),
	SENT("Mensajes enviados"), SENT("Itens enviados"),
	SENT("Mensagens enviadas"), SENT("Enviadas"),
	SENT("Elements enviats"),
	DRAFTS("Borradores"), DRAFTS("Borrador"), DRAFTS("Rascunhos"),
	DRAFTS("Esborranys"),
	TRASH("Papelera"), TRASH("Elementos eliminados"),
	TRASH("Elementos borrados"), TRASH("Lixeira"), TRASH("Lixo"),
	TRASH("Itens excluídos"), TRASH("Paperera"),
	TRASH("Elements suprimits"),
	JUNK("Correo no deseado"), JUNK("Lixo eletrônico"),
	JUNK("Correu brossa"),
	ARCHIVE("Archivo"), ARCHIVE("Arquivo"), ARCHIVE("Arxiu"),
	/* French */
	SENT("Éléments envoyés"), SENT("Envoyés"), SENT("Messages envoyés"),
	DRAFTS("Brouillons"),
	TRASH("Corbeille"), TRASH("Éléments supprimés"),
	TRASH("Messages supprimés"),
	JUNK("Courrier indésirable"), JUNK("Courriers indésirables"),
	JUNK("Pourriel"),
	/* Italian */
	SENT("Posta inviata"), SENT("Inviata"), SENT("Inviati"),
	SENT("Elementi inviati"),
	DRAFTS("Bozze"),
	TRASH("Cestino"), TRASH("Posta eliminata"),
	TRASH("Elementi eliminati"),
	JUNK("Posta indesiderata"),
	ARCHIVE("Archivio"),
	/* Dutch */
	SENT("Verzonden items"), SENT("Verzonden"),
	SENT("Verzonden berichten"),
	DRAFTS("Concepten"), DRAFTS("Concept"),
	TRASH("Prullenbak"), TRASH("Verwijderde items"),
	TRASH("Verwijderde berichten"),
	JUNK("Ongewenste e-mail"), JUNK("Ongewenste mail"),
	ARCHIVE("Archief"),
	/* Swedish, Danish, Norwegian */
	SENT("Skickat"), SENT("Skickade objekt"), SENT("Skickade"),
	SENT("Sendt"), SENT("Sendte elementer"), SENT("Sendt post"),
	SENT("Sendte"), SENT("Sendte meldinger"),
	DRAFTS("Utkast"), DRAFTS("Kladder"), DRAFTS("Kladde"),
	TRASH("Papperskorgen"), TRASH("Papperskorg"),
	TRASH("Borttagna objekt"), TRASH("Papirkurv"),
	TRASH("Slettede elementer"), TRASH("Slettet"),
	JUNK("Skräppost"), JUNK("Uønsket e-post"), JUNK("Uønsket post"),
	JUNK("Søppelpost"), JUNK("Uønsket"),
	ARCHIVE("Arkiv"),
	/* Finnish */
	SENT("Lähetetyt"), SENT("Lähetetyt viestit"),
	DRAFTS("Luonnokset"),
	TRASH("Roskakori"), TRASH("Poistetut"), TRASH("Poistetut viestit"),
	JUNK("Roskaposti"),
	ARCHIVE("Arkisto"),
	/* Polish, Czech, Slovak, Hungarian, Romanian, Slovenian, Croatian */
	SENT("Wysłane"), SENT("Elementy wysłane"),
	SENT("Odeslaná pošta"), SENT("Odeslané"),
	SENT("Odoslaná pošta"), SENT("Odoslané"),
	SENT("Elküldött elemek"), SENT("Elküldött"),
	SENT("Trimise"), SENT("Elemente trimise"),
	SENT("Poslano"), SENT("Poslane"), SENT("Poslato"),
	DRAFTS("Kopie robocze"), DRAFTS("Wersje robocze"),
	DRAFTS("Koncepty"), DRAFTS("Rozepsané"), DRAFTS("Piszkozatok"),
	DRAFTS("Ciorne"), DRAFTS("Osnutki"),
	TRASH("Kosz"), TRASH("Elementy usunięte"), TRASH("Koš"),
	TRASH("Odstraněná pošta"), TRASH("Kuka"), TRASH("Törölt elemek"),
	TRASH("Gunoi"), TRASH("Elemente șterse"), TRASH("Smeti"),
	JUNK("Wiadomości-śmieci"), JUNK("Nevyžádaná pošta"),
	JUNK("Levélszemét"),
	ARCHIVE("Archiwum"), ARCHIVE("Archív"),
	/* Russian, Ukrainian, Bulgarian */
	SENT("Отправленные"), SENT("Відправлені"), SENT("Надіслані"),
	SENT("Изпратени"),
	DRAFTS("Черновики"), DRAFTS("Чернетки"),
	TRASH("Корзина"), TRASH("Удаленные"), TRASH("Удалённые"),
	TRASH("Кошик"), TRASH("Видалені"),
	JUNK("Спам"), JUNK("Нежелательная почта"), JUNK("Небажана пошта"),
	ARCHIVE("Архив"), ARCHIVE("Архів"),
	/* Greek, Turkish */
	SENT("Απεσταλμένα"), SENT("Gönderilmiş Öğeler"),
	SENT("Gönderilenler"),
	DRAFTS("Πρόχειρα"), DRAFTS("Taslaklar"),
	TRASH("Κάδος απορριμμάτων"), TRASH("Διαγραμμένα"),
	TRASH("Çöp Kutusu"), TRASH("Silinmiş Öğeler"),
	JUNK("Ανεπιθύμητα"), JUNK("Önemsiz E-posta"),
	ARCHIVE("Αρχειοθέτηση"), ARCHIVE("Arşiv"),
	/* Chinese, Japanese, Korean */
	SENT("已发送"), SENT("已发送邮件"), SENT("已傳送"), SENT("寄件備份"),
	SENT("送信済み"), SENT("送信済みアイテム"), SENT("送信済みメール"),
	SENT("보낸 편지함"), SENT("보낸편지함"),
	DRAFTS("草稿"), DRAFTS("草稿箱"), DRAFTS("下書き"),
	DRAFTS("임시 보관함"), DRAFTS("임시보관함"),
	TRASH("已删除"), TRASH("已删除邮件"), TRASH("垃圾桶"),
	TRASH("已刪除"), TRASH("刪除的郵件"), TRASH("ゴミ箱"),
	TRASH("削除済みアイテム"), TRASH("휴지통"),
	JUNK("垃圾邮件"), JUNK("垃圾郵件"), JUNK("迷惑メール"),
	JUNK("스팸"), JUNK("스팸 메일함"),
	ARCHIVE("归档"), ARCHIVE("存档"), ARCHIVE("封存"),
	ARCHIVE("アーカイブ"),
	/* Hebrew, Arabic */
	SENT("פריטים שנשלחו"), SENT("المرسلة"), SENT("العناصر المرسلة"),
	DRAFTS("טיוטות"), DRAFTS("المسودات"),
	TRASH("אשפה"), TRASH("المحذوفات"),
	JUNK("דואר זבל"), JUNK("البريد العشوائي"),
	ARCHIVE("ארכיון"), ARCHIVE("الأرشيف"),
};

static unsigned int special_use_index(enum migrate_special_use use)
{
	unsigned int i;

	for (i = 0; i < MIGRATE_SPECIAL_USE_COUNT; i++) {
		if ((use & (1U << i)) != 0)
			return i;
	}
	i_unreached();
}

enum migrate_special_use migrate_special_use_parse(const char *flag)
{
	unsigned int i;

	if (flag == NULL)
		return MIGRATE_SPECIAL_USE_NONE;
	for (i = 0; i < N_ELEMENTS(special_use_defs); i++) {
		if (strcasecmp(flag, special_use_defs[i].flag) == 0)
			return 1U << i;
	}
	for (i = 0; i < N_ELEMENTS(special_use_aliases); i++) {
		if (strcasecmp(flag, special_use_aliases[i].flag) == 0)
			return special_use_aliases[i].use;
	}
	return MIGRATE_SPECIAL_USE_NONE;
}

const char *migrate_special_use_name(enum migrate_special_use use)
{
	/* with several bits set, the lowest one */
	if ((use & MIGRATE_SPECIAL_USE_MASK) == 0)
		return "";
	return special_use_defs[special_use_index(use)].flag;
}

int migrate_special_use_parse_list(const char *str,
				   enum migrate_special_use *uses_r,
				   const char **error_r)
{
	const char *const *flags;
	enum migrate_special_use use;

	*uses_r = MIGRATE_SPECIAL_USE_NONE;
	if (str == NULL)
		return 0;
	for (flags = t_strsplit_spaces(str, " \t,"); *flags != NULL; flags++) {
		use = migrate_special_use_parse(*flags);
		if (use == MIGRATE_SPECIAL_USE_NONE) {
			*error_r = t_strdup_printf(
				"Unknown special-use flag: %s", *flags);
			return -1;
		}
		*uses_r |= use;
	}
	return 0;
}

/* The one special use a folder is reported and mapped as */
static enum migrate_special_use
special_use_primary(enum migrate_special_use uses)
{
	static const enum migrate_special_use order[] = {
		MIGRATE_SPECIAL_USE_ALL, MIGRATE_SPECIAL_USE_SENT,
		MIGRATE_SPECIAL_USE_DRAFTS, MIGRATE_SPECIAL_USE_TRASH,
		MIGRATE_SPECIAL_USE_JUNK, MIGRATE_SPECIAL_USE_ARCHIVE,
		MIGRATE_SPECIAL_USE_FLAGGED, MIGRATE_SPECIAL_USE_IMPORTANT,
	};
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(order); i++) {
		if ((uses & order[i]) != 0)
			return order[i];
	}
	return MIGRATE_SPECIAL_USE_NONE;
}

/* Case-insensitive and independent of NFC/NFD (clients on macOS send
   decomposed names) */
static const char *folder_name_normalize(const char *name)
{
	string_t *str = t_str_new(64);

	(void)uni_utf8_to_decomposed_titlecase(name, strlen(name), str);
	return str_c(str);
}

static void
special_names_fill(struct migrate_folder_map *map,
		   const struct migrate_special_name *names, unsigned int count,
		   bool gmail)
{
	const char *key;
	unsigned int i;

	for (i = 0; i < count; i++) T_BEGIN {
		key = p_strdup(map->pool, folder_name_normalize(names[i].name));
		if (gmail) {
			hash_table_update(map->gmail_names, key,
					  POINTER_CAST(names[i].use));
		} else {
			hash_table_update(map->names, key,
					  POINTER_CAST(names[i].use));
		}
	} T_END;
}

static enum migrate_special_use
folder_map_name_special_use(struct migrate_folder_map *map, const char *name,
			    bool gmail_child)
{
	const char *key = folder_name_normalize(name);
	void *value = NULL;

	if (gmail_child)
		value = hash_table_lookup(map->gmail_names, key);
	if (value == NULL)
		value = hash_table_lookup(map->names, key);
	return POINTER_CAST_TO(value, unsigned int);
}

static pcre2_code *
folder_map_compile(const char *pattern, const char **error_r)
{
	PCRE2_UCHAR msg[256];
	PCRE2_SIZE erroffset;
	pcre2_code *code;
	int errcode;

	code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
			     PCRE2_UTF | PCRE2_UCP, &errcode, &erroffset,
			     NULL);
	if (code == NULL) {
		if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
			i_strocpy((char *)msg, "unknown error", sizeof(msg));
		*error_r = t_strdup((const char *)msg);
	}
	return code;
}

/* Returns 1 and the match data on match, 0 if no match, -1 on a match
   error (e.g. the match limit on a pathological pattern). */
static int
folder_map_match(pcre2_code *code, const char *subject,
		 pcre2_match_data **md_r, const char **error_r)
{
	PCRE2_UCHAR msg[256];
	pcre2_match_data *md;
	int ret;

	md = pcre2_match_data_create_from_pattern(code, NULL);
	if (md == NULL)
		i_fatal_status(FATAL_OUTOFMEM,
			       "pcre2_match_data_create() failed");
	ret = pcre2_match(code, (PCRE2_SPTR)subject, strlen(subject), 0, 0,
			  md, NULL);
	if (ret >= 0 && md_r != NULL) {
		*md_r = md;
		return 1;
	}
	pcre2_match_data_free(md);
	if (ret >= 0)
		return 1;
	if (ret == PCRE2_ERROR_NOMATCH)
		return 0;
	if (pcre2_get_error_message(ret, msg, sizeof(msg)) < 0)
		i_strocpy((char *)msg, "unknown error", sizeof(msg));
	*error_r = t_strdup((const char *)msg);
	return -1;
}

/* Expands $N, ${N}, ${name} and $$ in a rule's replacement into dest.
   Without ovector only validates the references. */
static int
folder_rule_expand(const struct migrate_folder_rule *rule,
		   const char *subject, const PCRE2_SIZE *ovector,
		   uint32_t ovector_count, string_t *dest,
		   const char **error_r)
{
	const char *p = rule->replacement, *end, *name;
	uint32_t capture_count;
	unsigned int group;
	int num;

	if (pcre2_pattern_info(rule->code, PCRE2_INFO_CAPTURECOUNT,
			       &capture_count) != 0)
		capture_count = 0;
	while (*p != '\0') {
		if (*p != '$') {
			str_append_c(dest, *p++);
			continue;
		}
		p++;
		if (*p == '$') {
			str_append_c(dest, '$');
			p++;
			continue;
		}
		if (i_isdigit(*p)) {
			group = 0;
			for (; i_isdigit(*p) && group <= 65535; p++)
				group = group * 10 + (*p - '0');
		} else if (*p == '{') {
			end = strchr(p, '}');
			if (end == NULL) {
				*error_r = "Unterminated ${ in replacement";
				return -1;
			}
			name = t_strdup_until(p + 1, end);
			if (str_to_uint(name, &group) < 0) {
				num = pcre2_substring_number_from_name(
					rule->code, (PCRE2_SPTR)name);
				if (num < 0) {
					*error_r = t_strdup_printf(
						"Replacement refers to unknown "
						"group ${%s}", name);
					return -1;
				}
				group = num;
			}
			p = end + 1;
		} else {
			*error_r = "'$' in replacement must be followed by "
				"a group number, {name} or '$'";
			return -1;
		}
		if (group > capture_count) {
			*error_r = t_strdup_printf(
				"Replacement refers to group $%u, but the "
				"pattern has %u groups", group, capture_count);
			return -1;
		}
		if (ovector != NULL && group < ovector_count &&
		    ovector[2*group] != PCRE2_UNSET) {
			str_append_data(dest, subject + ovector[2*group],
					ovector[2*group+1] - ovector[2*group]);
		}
	}
	return 0;
}

static int
folder_map_parse_rule(struct migrate_folder_map *map, const char *line,
		      unsigned int linenum, const char **error_r)
{
	struct migrate_folder_rule rule;
	const char *p, *pattern, *replacement, *error;

	line = t_str_trim(line, " \t\r");
	if (line[0] == '\0' || line[0] == '#')
		return 0;

	/* "->" with whitespace before it and whitespace or the end of line
	   after it: patterns and names may contain a bare "->" */
	for (p = line; (p = strstr(p, "->")) != NULL; p++) {
		if ((p == line || p[-1] == ' ' || p[-1] == '\t') &&
		    (p[2] == '\0' || p[2] == ' ' || p[2] == '\t'))
			break;
	}
	if (p == NULL) {
		*error_r = "Missing ' -> ' between pattern and replacement";
		return -1;
	}
	pattern = t_str_trim(t_strdup_until(line, p), " \t");
	replacement = t_str_trim(p + 2, " \t");
	if (pattern[0] == '\0') {
		*error_r = "Empty pattern";
		return -1;
	}

	i_zero(&rule);
	rule.line = linenum;
	if (strcasecmp(replacement, "[SKIP]") != 0)
		rule.replacement = p_strdup(map->pool, replacement);
	rule.code = folder_map_compile(pattern, error_r);
	if (rule.code == NULL)
		return -1;
	/* in the array first, so deinit frees it even on error below */
	array_push_back(&map->rules, &rule);
	if (rule.replacement != NULL &&
	    folder_rule_expand(&rule, NULL, NULL, 0, t_str_new(64),
			       &error) < 0) {
		*error_r = error;
		return -1;
	}
	return 0;
}

static int
folder_map_read_rules(struct migrate_folder_map *map, const char **error_r)
{
	const char *path = map->set.rules_path;
	struct istream *input;
	const char *line, *error;
	unsigned int linenum = 0;
	int ret = 0;

	input = i_stream_create_file(path, MIGRATE_FOLDER_RULES_MAX_LINE);
	i_stream_set_return_partial_line(input, TRUE);
	while (ret == 0 && (line = i_stream_read_next_line(input)) != NULL) {
		linenum++;
		T_BEGIN {
			ret = folder_map_parse_rule(map, line, linenum,
						    &error);
		} T_END_PASS_STR_IF(ret < 0, &error);
	}
	if (ret < 0) {
		*error_r = t_strdup_printf("%s:%u: %s", path, linenum, error);
	} else if (input->stream_errno == ENOBUFS) {
		*error_r = t_strdup_printf("%s:%u: Line too long",
					   path, linenum + 1);
		ret = -1;
	} else if (input->stream_errno != 0) {
		*error_r = t_strdup_printf("migrate_folder_map: %s",
					   i_stream_get_error(input));
		ret = -1;
	}
	i_stream_destroy(&input);
	return ret;
}

int migrate_folder_map_init(const struct migrate_folder_map_settings *set,
			    struct migrate_folder_map **map_r,
			    const char **error_r)
{
	struct migrate_folder_map *map;
	const char *error;
	pool_t pool;
	unsigned int i;

	pool = pool_alloconly_create("migrate folder map", 8192);
	map = p_new(pool, struct migrate_folder_map, 1);
	map->pool = pool;
	map->set = *set;
	for (i = 0; i < MIGRATE_SPECIAL_USE_COUNT; i++) {
		map->set.special_use_dest[i] =
			p_strdup_empty(pool, set->special_use_dest[i]);
	}
	map->set.rules_path = p_strdup_empty(pool, set->rules_path);
	map->set.include = p_strdup_empty(pool, set->include);
	map->set.exclude = p_strdup_empty(pool, set->exclude);
	map->set.dest_prefix = p_strdup(pool, set->dest_prefix == NULL ? "" :
					set->dest_prefix);
	/* every Dovecot namespace has a separator; '/' if unset */
	if (map->set.dest_sep == '\0')
		map->set.dest_sep = '/';
	p_array_init(&map->rules, pool, 16);
	hash_table_create(&map->names, pool, N_ELEMENTS(special_names),
			  str_hash, strcmp);
	hash_table_create(&map->gmail_names, pool, 0, str_hash, strcmp);
	hash_table_create(&map->flagged, pool, 0, str_hash, strcmp);
	special_names_fill(map, special_names, N_ELEMENTS(special_names),
			   FALSE);
	special_names_fill(map, migrate_gmail_special_names,
			   migrate_gmail_special_names_count, TRUE);

	if (map->set.include != NULL) {
		map->include = folder_map_compile(map->set.include, &error);
		if (map->include == NULL) {
			*error_r = t_strdup_printf("migrate_include: %s",
						   error);
			migrate_folder_map_deinit(&map);
			return -1;
		}
	}
	if (map->set.exclude != NULL) {
		map->exclude = folder_map_compile(map->set.exclude, &error);
		if (map->exclude == NULL) {
			*error_r = t_strdup_printf("migrate_exclude: %s",
						   error);
			migrate_folder_map_deinit(&map);
			return -1;
		}
	}
	if (map->set.rules_path != NULL &&
	    folder_map_read_rules(map, error_r) < 0) {
		migrate_folder_map_deinit(&map);
		return -1;
	}
	*map_r = map;
	return 0;
}

void migrate_folder_map_deinit(struct migrate_folder_map **_map)
{
	struct migrate_folder_map *map = *_map;
	struct migrate_folder_rule *rule;

	if (map == NULL)
		return;
	*_map = NULL;

	array_foreach_modifiable(&map->rules, rule)
		pcre2_code_free(rule->code);
	pcre2_code_free(map->include);
	pcre2_code_free(map->exclude);
	hash_table_destroy(&map->names);
	hash_table_destroy(&map->gmail_names);
	hash_table_destroy(&map->flagged);
	pool_unref(&map->pool);
}

static bool folder_chr_is_control(unichar_t chr)
{
	return chr < 0x20 || (chr >= 0x7f && chr <= 0x9f) ||
		chr == 0x2028 || chr == 0x2029 ||
		(chr >= 0x202a && chr <= 0x202e) ||
		(chr >= 0x2066 && chr <= 0x2069);
}

/* Step 2 of the comment at the top */
static const char *
folder_part_sanitize_chars(const unsigned char *data, size_t size,
			   enum folder_fix *fixes)
{
	string_t *str = t_str_new(size + 1);
	unichar_t chr;
	size_t i = 0;
	int ret;

	while (i < size) {
		if (data[i] < 0x80) {
			if (data[i] < 0x20 || data[i] == 0x7f) {
				str_append_c(str, '_');
				*fixes |= FOLDER_FIX_CONTROL;
			} else if (data[i] == '/') {
				str_append_c(str, '_');
				*fixes |= FOLDER_FIX_SLASH;
			} else {
				str_append_c(str, data[i]);
			}
			i++;
			continue;
		}
		ret = uni_utf8_get_char_n(data + i, size - i, &chr);
		if (ret <= 0) {
			str_append_c(str, '_');
			*fixes |= FOLDER_FIX_INVALID_UTF8;
			i++;
		} else if (folder_chr_is_control(chr)) {
			str_append_c(str, '_');
			*fixes |= FOLDER_FIX_CONTROL;
			i += ret;
		} else {
			str_append_data(str, data + i, ret);
			i += ret;
		}
	}
	return str_c(str);
}

static bool
folder_name_has_prefix(const char *name, const char *prefix, size_t len)
{
	if (strncmp(name, prefix, len) == 0)
		return TRUE;
	/* INBOX is case-insensitive, the rest of the prefix isn't */
	return len >= 5 && strncasecmp(prefix, "INBOX", 5) == 0 &&
		strncasecmp(name, "INBOX", 5) == 0 &&
		strncmp(name + 5, prefix + 5, len - 5) == 0;
}

static bool folder_part_has_utf7_or_8bit(const char *part)
{
	for (; *part != '\0'; part++) {
		if (*part == '&' || (unsigned char)*part >= 0x80)
			return TRUE;
	}
	return FALSE;
}

/* Step 1 and 2. Returns FALSE for the namespace root. */
static bool
folder_map_decode(const struct migrate_folder_src *src,
		  ARRAY_TYPE(const_string) *parts, enum folder_fix *fixes)
{
	const char *name = src->name, *prefix = src->ns_prefix;
	const char *const *raw_parts, *part, *flat[2] = { NULL, NULL };
	const char sep[2] = { src->delimiter, '\0' };
	string_t *buf;
	size_t len;

	if (prefix == NULL)
		prefix = "";
	len = strlen(prefix);
	if (len > 0 && folder_name_has_prefix(name, prefix, len)) {
		name += len;
	} else if (len > 1 && prefix[len-1] == src->delimiter &&
		   strlen(name) == len - 1 &&
		   folder_name_has_prefix(name, prefix, len - 1)) {
		/* the prefix's own folder: INBOX on Courier/cPanel */
		if (strcasecmp(name, "INBOX") != 0)
			return FALSE;
		name = "INBOX";
	}
	if (name[0] == '\0')
		return FALSE;

	if (src->delimiter == '\0') {
		/* flat: the whole name is one part */
		flat[0] = name;
		raw_parts = flat;
	} else {
		raw_parts = t_strsplit(name, sep);
	}
	buf = t_str_new(128);
	for (; *raw_parts != NULL; raw_parts++) {
		str_truncate(buf, 0);
		if (imap_utf7_to_utf8(*raw_parts, buf) < 0) {
			str_truncate(buf, 0);
			str_append(buf, *raw_parts);
			/* not when only control characters failed it: they
			   are reported on their own */
			if (folder_part_has_utf7_or_8bit(*raw_parts))
				*fixes |= FOLDER_FIX_RAW_UTF7;
		}
		part = folder_part_sanitize_chars(str_data(buf), str_len(buf),
						  fixes);
		if (array_count(parts) == 0 && strcasecmp(part, "INBOX") == 0)
			part = "INBOX";
		array_push_back(parts, &part);
	}
	return TRUE;
}

/* Destination folder of a special use, as parts without the destination
   prefix */
static void
folder_map_special_dest(struct migrate_folder_map *map,
			enum migrate_special_use use,
			ARRAY_TYPE(const_string) *comps)
{
	const char sep[2] = { map->set.dest_sep, '\0' };
	const char *name, *const *p;
	size_t prefix_len = strlen(map->set.dest_prefix);
	unsigned int idx;

	if (use == MIGRATE_SPECIAL_USE_ALL)
		use = MIGRATE_SPECIAL_USE_ARCHIVE;
	idx = special_use_index(use);
	name = map->set.special_use_dest[idx];
	if (name == NULL)
		name = special_use_defs[idx].default_name;
	else if (prefix_len > 0 &&
		 strncmp(name, map->set.dest_prefix, prefix_len) == 0 &&
		 name[prefix_len] != '\0')
		name += prefix_len;
	for (p = t_strsplit(name, sep); *p != NULL; p++)
		array_push_back(comps, p);
}

enum migrate_dest_layout
migrate_dest_layout_get(const char *storage_driver, const char *list_driver)
{
	if (strcmp(storage_driver, "sdbox") == 0 ||
	    strcmp(storage_driver, "mdbox") == 0)
		return MIGRATE_DEST_LAYOUT_DBOX;
	if (strcmp(storage_driver, "mbox") == 0)
		return MIGRATE_DEST_LAYOUT_MBOX;
	if (strcmp(storage_driver, "maildir") == 0) {
		return strcasecmp(list_driver, "maildir++") == 0 ?
			MIGRATE_DEST_LAYOUT_MAILDIR_PP :
			MIGRATE_DEST_LAYOUT_MAILDIR_FS;
	}
	return MIGRATE_DEST_LAYOUT_OTHER;
}

static bool folder_name_has_suffix(const char *name, const char *suffix)
{
	size_t len = strlen(name), slen = strlen(suffix);

	return len >= slen && strcmp(name + len - slen, suffix) == 0;
}

/* Would this part name a file the destination storage keeps beside the
   folder directories? */
static bool folder_part_is_reserved(enum migrate_dest_layout layout,
				    const char *part)
{
	static const char *const maildir_names[] = {
		"cur", "new", "tmp", "maildirfolder", "maildirsize",
		"subscriptions", NULL
	};

	/* dovecot-uidlist(.lock), dovecot.index*, dovecot-keywords,
	   dovecot.list.index*, dovecot.mailbox.log, dovecot-acl, ... */
	if (str_begins_with(part, "dovecot") && (part[7] == '.' || part[7] == '-'))
		return TRUE;
	switch (layout) {
	case MIGRATE_DEST_LAYOUT_OTHER:
		break;
	case MIGRATE_DEST_LAYOUT_DBOX:
		return strcmp(part, "dbox-Mails") == 0;
	case MIGRATE_DEST_LAYOUT_MAILDIR_FS:
	case MIGRATE_DEST_LAYOUT_MAILDIR_PP:
		return str_array_find(maildir_names, part);
	case MIGRATE_DEST_LAYOUT_MBOX:
		return folder_name_has_suffix(part, ".lock") ||
			folder_name_has_suffix(part, ".imap") ||
			strcmp(part, "subscriptions") == 0 ||
			strcmp(part, ".subscriptions") == 0;
	}
	return FALSE;
}

/* part cut to at most max bytes (at a character boundary), ending in
   '~' and the CRC32 of the whole part */
static const char *folder_part_shorten(const char *part, size_t max)
{
	size_t len;

	i_assert(max > MIGRATE_FOLDER_SHORTEN_SUFFIX_LEN);
	len = max - MIGRATE_FOLDER_SHORTEN_SUFFIX_LEN;
	if (len > strlen(part))
		len = strlen(part);
	while (len > 0 && ((unsigned char)part[len] & 0xc0) == 0x80)
		len--;
	return t_strdup_printf("%s~%08x", t_strndup(part, len),
			       crc32_str(part));
}

/* Step 7. Returns the skip reason, or NULL. */
static const char *
folder_map_sanitize_parts(struct migrate_folder_map *map,
			  ARRAY_TYPE(const_string) *comps,
			  enum folder_fix *fixes)
{
	const char **parts;
	const char *part;
	unsigned int i, count;
	size_t total = 0, part_max = MIGRATE_FOLDER_PART_MAX_BYTES;
	bool maildirpp =
		map->set.dest_layout == MIGRATE_DEST_LAYOUT_MAILDIR_PP;
	char *p;

	if (map->set.dest_layout == MIGRATE_DEST_LAYOUT_MBOX)
		part_max = MIGRATE_FOLDER_MBOX_PART_MAX_BYTES;
	parts = array_get_modifiable(comps, &count);
	if (count > MIGRATE_FOLDER_MAX_LEVELS) {
		return t_strdup_printf("name has more than %u levels",
				       MIGRATE_FOLDER_MAX_LEVELS);
	}
	for (i = 0; i < count; i++) {
		part = folder_part_sanitize_chars(
			(const unsigned char *)parts[i], strlen(parts[i]),
			fixes);
		if (i == 0 && strcasecmp(part, "INBOX") == 0)
			part = "INBOX";
		if (part[0] == '\0') {
			part = "_";
			*fixes |= FOLDER_FIX_EMPTY;
		} else if (strcmp(part, ".") == 0 || strcmp(part, "..") == 0) {
			part = t_strconcat("_", part, NULL);
			*fixes |= FOLDER_FIX_DOT;
		} else if (part[0] == '~') {
			part = t_strconcat("_", part + 1, NULL);
			*fixes |= FOLDER_FIX_TILDE;
		}
		if (strchr(part, map->set.dest_sep) != NULL ||
		    (maildirpp && strchr(part, '.') != NULL)) {
			p = t_strdup_noconst(part);
			for (part = p; *p != '\0'; p++) {
				if (*p == map->set.dest_sep ||
				    (maildirpp && *p == '.'))
					*p = '_';
			}
			*fixes |= FOLDER_FIX_DEST_SEP;
		}
		if (folder_part_is_reserved(map->set.dest_layout, part)) {
			part = t_strconcat(part, "_", NULL);
			*fixes |= FOLDER_FIX_RESERVED;
		}
		if (strlen(part) > part_max) {
			part = folder_part_shorten(part, part_max);
			*fixes |= FOLDER_FIX_LONG;
		}
		total += strlen(part) + (i > 0 ? 1 : 0);
		parts[i] = part;
	}
	if (total > MIGRATE_FOLDER_NAME_MAX_BYTES) {
		return t_strdup_printf("name longer than %u bytes",
				       MIGRATE_FOLDER_NAME_MAX_BYTES);
	}
	/* Maildir++: the directory ".a.b" must fit in one file name */
	if (maildirpp && count > 0 &&
	    total + 1 > MIGRATE_FOLDER_PART_MAX_BYTES) {
		size_t excess = total + 1 - MIGRATE_FOLDER_PART_MAX_BYTES;
		size_t last_len = strlen(parts[count-1]);

		if (last_len < excess + MIGRATE_FOLDER_SHORTEN_SUFFIX_LEN + 1) {
			return t_strdup_printf("name longer than %u bytes "
				"(a Maildir++ folder is one directory)",
				MIGRATE_FOLDER_PART_MAX_BYTES - 1);
		}
		parts[count-1] = folder_part_shorten(parts[count-1],
						     last_len - excess);
		*fixes |= FOLDER_FIX_LONG;
	}
	return NULL;
}

static const char *
folder_map_join(struct migrate_folder_map *map,
		const ARRAY_TYPE(const_string) *comps)
{
	const char *const *parts, *prefix = map->set.dest_prefix;
	unsigned int i, count;
	string_t *str;

	parts = array_get(comps, &count);
	if (count == 1 && strcmp(parts[0], "INBOX") == 0)
		return "INBOX";
	/* INBOX/x is the prefix's x when the prefix is "INBOX<sep>" */
	if (count > 1 && strcmp(parts[0], "INBOX") == 0 &&
	    strncasecmp(prefix, "INBOX", 5) == 0 &&
	    prefix[5] == map->set.dest_sep && prefix[6] == '\0') {
		parts++;
		count--;
	}
	str = t_str_new(128);
	str_append(str, prefix);
	for (i = 0; i < count; i++) {
		if (i > 0)
			str_append_c(str, map->set.dest_sep);
		str_append(str, parts[i]);
	}
	return str_c(str);
}

static const char *folder_fixes_str(struct migrate_folder_map *map,
				    enum folder_fix fixes)
{
	string_t *str;

	if (fixes == 0)
		return NULL;
	str = t_str_new(128);
	str_append(str, "sanitized: ");
	if ((fixes & FOLDER_FIX_RAW_UTF7) != 0)
		str_append(str, "invalid modified UTF-7 (kept as sent), ");
	if ((fixes & FOLDER_FIX_INVALID_UTF8) != 0)
		str_append(str, "invalid UTF-8, ");
	if ((fixes & FOLDER_FIX_CONTROL) != 0)
		str_append(str, "control characters, ");
	if ((fixes & FOLDER_FIX_SLASH) != 0)
		str_append(str, "'/' in name, ");
	if ((fixes & FOLDER_FIX_EMPTY) != 0)
		str_append(str, "empty name part, ");
	if ((fixes & FOLDER_FIX_DOT) != 0)
		str_append(str, "'.' or '..' name part, ");
	if ((fixes & FOLDER_FIX_TILDE) != 0)
		str_append(str, "leading '~', ");
	if ((fixes & FOLDER_FIX_DEST_SEP) != 0) {
		if (map->set.dest_layout == MIGRATE_DEST_LAYOUT_MAILDIR_PP &&
		    map->set.dest_sep != '.')
			str_printfa(str, "'%c' or '.' in name, ",
				    map->set.dest_sep);
		else
			str_printfa(str, "'%c' in name, ", map->set.dest_sep);
	}
	if ((fixes & FOLDER_FIX_RESERVED) != 0)
		str_append(str, "destination reserved name, ");
	if ((fixes & FOLDER_FIX_LONG) != 0)
		str_append(str, "name too long for the destination, shortened, ");
	str_truncate(str, str_len(str) - 2);
	return str_c(str);
}

/* Special use of the nearest ancestor that automap moves, and how many
   parts it has. */
static enum migrate_special_use
folder_map_ancestor_special_use(struct migrate_folder_map *map,
				const ARRAY_TYPE(const_string) *parts,
				const char *decoded, unsigned int top,
				bool by_name, unsigned int *len_r)
{
	const char *const *names, *prefix;
	enum migrate_special_use use;
	unsigned int k, count;
	size_t pos;

	names = array_get(parts, &count);
	/* deeper names are skipped anyway, after automap */
	if (count > MIGRATE_FOLDER_MAX_LEVELS)
		return MIGRATE_SPECIAL_USE_NONE;
	pos = strlen(decoded);
	for (k = count - 1; k > 0; k--) {
		pos -= strlen(names[k]) + 1;
		prefix = t_strndup(decoded, pos);
		use = POINTER_CAST_TO(hash_table_lookup(map->flagged, prefix),
				      unsigned int);
		if (use == MIGRATE_SPECIAL_USE_NONE && by_name &&
		    k == top + 1) {
			use = special_use_primary(folder_map_name_special_use(
				map, names[top], FALSE) &
				MIGRATE_SPECIAL_USE_MAPPABLE);
		}
		if (use != MIGRATE_SPECIAL_USE_NONE) {
			*len_r = k;
			return use;
		}
	}
	return MIGRATE_SPECIAL_USE_NONE;
}

/* Step 5. Returns 1 if a rule matched (comps filled or skip_reason_r
   set), 0 if none did. */
static int
folder_map_apply_rules(struct migrate_folder_map *map, const char *decoded,
		       ARRAY_TYPE(const_string) *comps,
		       const char **change_r, const char **skip_reason_r)
{
	const struct migrate_folder_rule *rule;
	const char *path = map->set.rules_path, *error, *const *p;
	pcre2_match_data *md;
	PCRE2_SIZE *ovector;
	string_t *str;
	int ret;

	array_foreach(&map->rules, rule) {
		ret = folder_map_match(rule->code, decoded, &md, &error);
		if (ret == 0)
			continue;
		if (ret < 0) {
			*skip_reason_r = t_strdup_printf(
				"migrate_folder_map %s:%u: %s",
				path, rule->line, error);
			return 1;
		}
		if (rule->replacement == NULL) {
			pcre2_match_data_free(md);
			*skip_reason_r = t_strdup_printf(
				"skipped by migrate_folder_map rule %s:%u",
				path, rule->line);
			return 1;
		}
		ovector = pcre2_get_ovector_pointer(md);
		str = t_str_new(128);
		str_append_data(str, decoded, ovector[0]);
		ret = folder_rule_expand(rule, decoded, ovector,
					 pcre2_get_ovector_count(md), str,
					 &error);
		/* validated at init */
		i_assert(ret == 0);
		str_append(str, decoded + ovector[1]);
		pcre2_match_data_free(md);

		if (str_len(str) == 0) {
			*skip_reason_r = t_strdup_printf(
				"migrate_folder_map rule %s:%u gave an "
				"empty name", path, rule->line);
			return 1;
		}
		for (p = t_strsplit(str_c(str), "/"); *p != NULL; p++)
			array_push_back(comps, p);
		*change_r = t_strdup_printf("renamed by migrate_folder_map "
					    "rule %s:%u", path, rule->line);
		return 1;
	}
	return 0;
}

static void
folder_map_lookup_real(struct migrate_folder_map *map,
		       const struct migrate_folder_src *src,
		       struct migrate_folder_dest *dest_r)
{
	ARRAY_TYPE(const_string) parts, comps;
	enum folder_fix fixes = 0;
	enum migrate_special_use uses, own, anc = 0;
	const char *const *names, *decoded, *error, *skip_reason = NULL;
	const char *change = NULL, *fixes_str, *key;
	unsigned int count, top, anc_len = 0;
	bool gmail_child, by_name, automapped = FALSE;
	int ret;

	i_zero(dest_r);
	t_array_init(&parts, 8);
	t_array_init(&comps, 8);
	if (!folder_map_decode(src, &parts, &fixes)) {
		dest_r->decoded_name = "";
		dest_r->skip = TRUE;
		dest_r->reason = "namespace root";
		return;
	}
	decoded = t_array_const_string_join(&parts, "/");
	dest_r->decoded_name = decoded;

	/* Step 3 */
	if (map->exclude != NULL) {
		ret = folder_map_match(map->exclude, decoded, NULL, &error);
		if (ret > 0)
			skip_reason = "excluded by migrate_exclude";
		else if (ret < 0)
			skip_reason = t_strdup_printf("migrate_exclude: %s",
						      error);
	}
	if (skip_reason == NULL && map->include != NULL) {
		ret = folder_map_match(map->include, decoded, NULL, &error);
		if (ret == 0)
			skip_reason = "not matched by migrate_include";
		else if (ret < 0)
			skip_reason = t_strdup_printf("migrate_include: %s",
						      error);
	}
	if (skip_reason != NULL) {
		dest_r->skip = TRUE;
		dest_r->reason = skip_reason;
		return;
	}

	/* Step 4 */
	names = array_get(&parts, &count);
	gmail_child = map->set.gmail && count >= 2 &&
		migrate_gmail_is_container(names[0]);
	top = gmail_child || (count >= 2 && strcmp(names[0], "INBOX") == 0) ?
		1 : 0;
	by_name = gmail_child || (map->set.automap && !map->set.gmail);
	uses = src->special_use & MIGRATE_SPECIAL_USE_MASK;
	own = special_use_primary(uses);
	if ((own & MIGRATE_SPECIAL_USE_MAPPABLE) != 0 &&
	    hash_table_lookup(map->flagged, decoded) == NULL) {
		key = p_strdup(map->pool, decoded);
		hash_table_insert(map->flagged, key, POINTER_CAST(own));
	}
	if (uses == 0 && by_name && count == top + 1) {
		uses = folder_map_name_special_use(map, names[top],
						   gmail_child);
		if (!gmail_child)
			uses &= ~map->set.source_flagged;
		own = special_use_primary(uses);
	}
	dest_r->special_use = own;
	dest_r->gmail_all_mail = own == MIGRATE_SPECIAL_USE_ALL;
	if (map->set.gmail) {
		if (count == 1 && map->set.automap &&
		    migrate_gmail_is_container(names[0]))
			skip_reason = "Gmail system folder container";
		else if ((uses & MIGRATE_SPECIAL_USE_FLAGGED) != 0)
			skip_reason = "Gmail virtual folder; its messages "
				"carry \\Flagged in their other folders";
		else if ((uses & MIGRATE_SPECIAL_USE_IMPORTANT) != 0)
			skip_reason = "Gmail virtual folder; its messages are "
				"in their other folders (importance is not "
				"copied)";
		else if ((uses & map->set.gmail_skip) != 0)
			skip_reason = "skipped by migrate_gmail_skip";
		if (skip_reason != NULL) {
			dest_r->skip = TRUE;
			dest_r->reason = skip_reason;
			return;
		}
	}

	/* Step 5 */
	if (folder_map_apply_rules(map, decoded, &comps, &change,
				   &skip_reason) > 0) {
		if (skip_reason != NULL) {
			dest_r->skip = TRUE;
			dest_r->reason = skip_reason;
			return;
		}
	} else if (map->set.automap &&
		   (own & (MIGRATE_SPECIAL_USE_MAPPABLE |
			   MIGRATE_SPECIAL_USE_ALL)) != 0) {
		/* Step 6 */
		folder_map_special_dest(map, own, &comps);
		change = t_strdup_printf("automap %s",
					 migrate_special_use_name(own));
		automapped = TRUE;
	} else if (map->set.automap && own == MIGRATE_SPECIAL_USE_NONE &&
		   (anc = folder_map_ancestor_special_use(map, &parts,
				decoded, top, by_name, &anc_len)) != 0) {
		folder_map_special_dest(map, anc, &comps);
		array_append(&comps, names + anc_len, count - anc_len);
		change = t_strdup_printf("automap: under %s",
					 migrate_special_use_name(anc));
		automapped = TRUE;
	} else {
		array_append_array(&comps, &parts);
	}
	/* "Sent" -> "Sent" is no change worth reporting */
	if (automapped &&
	    strcmp(t_array_const_string_join(&comps, "/"), decoded) == 0)
		change = NULL;

	/* Step 7 */
	skip_reason = folder_map_sanitize_parts(map, &comps, &fixes);
	if (skip_reason != NULL) {
		dest_r->skip = TRUE;
		dest_r->reason = skip_reason;
		return;
	}
	dest_r->vname = folder_map_join(map, &comps);

	/* Step 8 */
	if ((src->flags & (MIGRATE_FOLDER_SRC_FLAG_NOSELECT |
			   MIGRATE_FOLDER_SRC_FLAG_NONEXISTENT)) != 0) {
		dest_r->skip = TRUE;
		skip_reason = "not selectable";
	}
	fixes_str = folder_fixes_str(map, fixes);
	if (skip_reason != NULL || change != NULL || fixes_str != NULL) {
		const char *reasons[4];
		unsigned int n = 0;

		if (skip_reason != NULL)
			reasons[n++] = skip_reason;
		if (change != NULL)
			reasons[n++] = change;
		if (fixes_str != NULL)
			reasons[n++] = fixes_str;
		reasons[n] = NULL;
		dest_r->reason = t_strarray_join(reasons, "; ");
	}
}

void migrate_folder_map_lookup(struct migrate_folder_map *map,
			       const struct migrate_folder_src *src,
			       pool_t pool, struct migrate_folder_dest *dest_r)
{
	struct migrate_folder_dest dest;

	if (pool->datastack_pool) {
		folder_map_lookup_real(map, src, dest_r);
		return;
	}
	T_BEGIN {
		folder_map_lookup_real(map, src, &dest);
		*dest_r = dest;
		dest_r->vname = p_strdup(pool, dest.vname);
		dest_r->decoded_name = p_strdup(pool, dest.decoded_name);
		dest_r->reason = p_strdup(pool, dest.reason);
	} T_END;
}

bool migrate_folder_name_matches(const char *wanted, const char *src_name,
				 const char *decoded_name, const char *vname)
{
	string_t *utf8;

	if (strcmp(wanted, src_name) == 0 ||
	    (vname != NULL && strcmp(wanted, vname) == 0))
		return TRUE;
	if (decoded_name != NULL)
		return strcmp(wanted, decoded_name) == 0;
	utf8 = t_str_new(64);
	return imap_utf7_to_utf8(src_name, utf8) == 0 &&
		strcmp(wanted, str_c(utf8)) == 0;
}

struct migrate_name_score {
	const char *name;
	unsigned int score;
};

static int
migrate_name_score_cmp(const struct migrate_name_score *a,
		       const struct migrate_name_score *b)
{
	if (a->score != b->score)
		return a->score < b->score ? -1 : 1;
	return strcmp(a->name, b->name);
}

const char *migrate_folder_closest_names(const char *wanted,
					 const ARRAY_TYPE(const_string) *names)
{
	ARRAY(struct migrate_name_score) scores;
	struct migrate_name_score *score;
	const char *name, *lwanted = t_str_lcase(wanted), *lname;
	string_t *str = t_str_new(128);
	unsigned int i, count;

	t_array_init(&scores, array_count(names) + 1);
	array_foreach_elem(names, name) {
		score = array_append_space(&scores);
		score->name = name;
		lname = t_str_lcase(name);
		/* case doesn't count much; a name containing the other
		   ("Sent" in "Sent Items") comes first */
		score->score = migrate_name_distance(lwanted, lname) * 2 +
			(strcmp(wanted, name) == 0 ? 0 : 1);
		if (strstr(lname, lwanted) != NULL ||
		    strstr(lwanted, lname) != NULL)
			score->score = 1;
	}
	array_sort(&scores, migrate_name_score_cmp);
	count = I_MIN(array_count(&scores), 3U);
	for (i = 0; i < count; i++) {
		score = array_idx_modifiable(&scores, i);
		if (i > 0)
			str_append(str, ", ");
		str_printfa(str, "'%s'", score->name);
	}
	return count == 0 ? "none" : str_c(str);
}
