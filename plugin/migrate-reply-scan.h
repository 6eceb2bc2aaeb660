#ifndef MIGRATE_REPLY_SCAN_H
#define MIGRATE_REPLY_SCAN_H

/* How deep lists may nest in one reply line. Dovecot's imap-parser has no
   limit of its own: every '(' costs it a few hundred bytes, and turning
   args back into text recurses once per level, so a line of 500k '('
   would cost hundreds of MB or the stack. Nothing the importer asks for
   nests deeper than 4 (NAMESPACE, LIST, FETCH FLAGS/X-GM-LABELS). */
#define MIGRATE_MAX_LIST_DEPTH 32

/* A small lexer that runs over what the source sends, ahead of the
   imap-parser, and stops a reply whose lists nest too deep before the
   parser builds them. It knows just enough IMAP syntax to stay in step
   with the parser: lines, quoted strings, literals ({N}, {N+}, ~{N}), a
   status reply's text after its [response code], and continuation
   lines. Pure and driven by bytes, so a fuzz target can call it. */
struct migrate_reply_scan {
	/* bytes of a literal still to skip */
	uint64_t literal_left;
	/* the "{N}" at the end of a line announces a literal of N bytes */
	uint64_t brace_num;
	unsigned int depth;
	/* the current line's word number (0 = tag) */
	unsigned int word;
	/* its second word so far, to tell status replies */
	char name[8];
	unsigned int name_len;

	bool in_quoted:1;
	bool escape:1;
	bool in_word:1;
	bool in_brace:1;
	bool brace_done:1;
	/* "+ ..." or the text after a status reply's [code]: plain text */
	bool text:1;
	bool status:1;
	bool in_code:1;
	bool code_closed:1;
};

void migrate_reply_scan_init(struct migrate_reply_scan *scan);
/* Scan the next bytes of the stream, up to and including the LF that
   ends the current line (a literal's "{N}" LF doesn't end it): the
   bytes after it may not be IMAP any more (COMPRESS, STARTTLS). *pos_r
   is how far it got. Returns 0, or -1 with an error when a list nests
   deeper than MIGRATE_MAX_LIST_DEPTH. */
int migrate_reply_scan_more(struct migrate_reply_scan *scan,
			    const unsigned char *data, size_t size,
			    size_t *pos_r, const char **error_r);
/* size bytes were consumed without being seen (the rest of a body
   literal the caller read itself). */
void migrate_reply_scan_skip(struct migrate_reply_scan *scan, uint64_t size);

/* text without what could fool a terminal or a reader: control
   characters, escape sequences, bidi overrides; cut at max_len */
const char *migrate_str_sanitize(const char *text, size_t max_len);
const char *migrate_str_sanitize_pool(pool_t pool, const char *text,
				      size_t max_len);

#endif
