#ifndef MIGRATE_IDENTITY_H
#define MIGRATE_IDENTITY_H

/* A message's identity, for dedupe: the same on the source (from the header
   fields FETCHed with BODY.PEEK[HEADER.FIELDS (...)] and RFC822.SIZE) and
   at the destination (the same fields and the virtual size). It is the
   normalised Message-ID plus a fingerprint of the other fields and the
   size, so two different messages sharing a Message-ID stay apart and a
   message without Message-ID still has a stable identity. */

/* The header fields the identity is computed from, for FETCH */
#define MIGRATE_IDENTITY_FETCH_FIELDS \
	"MESSAGE-ID DATE FROM TO CC SUBJECT"
extern const char *const migrate_identity_fields[];

struct migrate_identity_info {
	/* "m<hex>-<size>" with a Message-ID, "h<hex>-<size>" without */
	const char *identity;
	/* for reports: the raw Message-ID (sanitized), subject (RFC 2047
	   decoded), Date header; NULL when missing */
	const char *message_id;
	const char *subject;
	const char *date;
};

/* Compute identity from a header block containing (at least) the fields
   above. Other fields in the block are ignored. Uses the data stack:
   call it inside a frame when looping. */
void migrate_identity_compute(const unsigned char *header, size_t size,
			      uoff_t message_size, pool_t pool,
			      struct migrate_identity_info *info_r);

/* The identity with its size part replaced by size: what the same message
   is known as when the source's RFC822.SIZE isn't the size of the body it
   sends (Exchange). */
const char *migrate_identity_with_size(const char *identity, uoff_t size);
/* The identity without its size part (the header fingerprint) */
const char *migrate_identity_fingerprint(const char *identity);
/* Whether two identities have the same header fingerprint */
bool migrate_identity_fingerprint_equals(const char *a, const char *b);

/* Normalise a Message-ID value: Dovecot's message_id_get_next() (the first
   <...> id, comments, quoting and whitespace inside it removed), else the
   whole value without whitespace; lowercased. NULL if it holds no id. */
const char *migrate_identity_normalize_message_id(const char *value);

/* A set of identities: what a run already imported in earlier folders
   (migrate_dedupe_across_folders, Gmail's All Mail) */
struct migrate_identity_set *migrate_identity_set_create(void);
void migrate_identity_set_destroy(struct migrate_identity_set **_set);
bool migrate_identity_set_contains(const struct migrate_identity_set *set,
				   const char *identity);
void migrate_identity_set_add(struct migrate_identity_set *set,
			      const char *identity);

#endif
