#ifndef MIGRATE_SIEVE_COMPAT_H
#define MIGRATE_SIEVE_COMPAT_H

/* The destination user's personal Sieve storage, through Pigeonhole's own
   storage API (libdovecot-sieve). Part of the compat layer: the API
   differs between Pigeonhole 0.5 (Dovecot 2.3) and 2.4, and the library is
   loaded with dlopen() when first needed, so the plugin loads and migrates
   mail on a system without dovecot-sieve; only migrate_sieve = yes then
   fails, with an error saying so. */

struct mail_user;
struct migrate_sieve_store;

/* Open the user's personal Sieve storage for writing. -1 with an error
   (Pigeonhole not installed, Sieve not configured for the user, ...). */
int migrate_sieve_store_open(struct mail_user *user,
			     struct migrate_sieve_store **store_r,
			     const char **error_r);
void migrate_sieve_store_close(struct migrate_sieve_store **store);

/* Whether Pigeonhole accepts name as a script name */
bool migrate_sieve_store_name_is_valid(struct migrate_sieve_store *store,
				       const char *name);
/* The active script's name in *name_r, NULL when none is active */
int migrate_sieve_store_get_active(struct migrate_sieve_store *store,
				   const char **name_r, const char **error_r);
/* A script's text into content: 1, 0 when there is no such script, -1 on
   error */
int migrate_sieve_store_get(struct migrate_sieve_store *store,
			    const char *name, string_t *content,
			    const char **error_r);
/* Store a script (replacing one of the same name). It is stored even when
   it doesn't compile: then *compile_error_r says why (NULL when it
   compiles). -1 when it couldn't be stored. */
int migrate_sieve_store_save(struct migrate_sieve_store *store,
			     const char *name, const unsigned char *data,
			     size_t size, const char **compile_error_r,
			     const char **error_r);
/* Compile a stored script: 0 with *compile_error_r NULL when it
   compiles, or set to the compiler's messages; -1 on error */
int migrate_sieve_store_compile(struct migrate_sieve_store *store,
				const char *name,
				const char **compile_error_r,
				const char **error_r);
/* Make a stored script the active one */
int migrate_sieve_store_activate(struct migrate_sieve_store *store,
				 const char *name, const char **error_r);
/* Leave no script active */
int migrate_sieve_store_deactivate(struct migrate_sieve_store *store,
				   const char **error_r);

#endif
