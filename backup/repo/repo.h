/*
 * The repository: every place a backup can live (the local backup dir, an
 * S3 bucket and prefix, both optional) and the one way to list and open
 * its backups, for every command and the mount alike.
 *
 * A remote (S3) archive is always read through the caching byte source
 * (cache.h) over the repository's disk cache, so bytes fetched once are
 * not fetched again: by the same run (verify's sha256 pass, then SQLite's
 * page reads) or, with a cache dir kept across runs, by the next one.
 * Local archives are read in place; the cache then only keeps what is
 * derived from them (a plain tar.gz's access-point index).
 *
 * A struct shb_repo is immutable after shb_repo_open() and may be used
 * from several threads at once (the S3 client and the cache are).
 */
#ifndef SHB_REPO_H
#define SHB_REPO_H

#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "reader.h"
#include "source.h"

struct shb_age_keys;
struct shb_cache;
struct shb_repo;
struct shb_s3;

/*
 * Opens the repository cfg describes: cfg->local_dir (NULL: no local
 * backups) and, when cfg->s3_bucket is set, an S3 client for it and
 * cfg->s3_prefix.  The disk cache is cache_dir capped at cache_cap bytes;
 * cache_dir NULL is a private temporary cache (removed by shb_repo_close),
 * and when that one cannot be made the repository reads without a cache.
 * cache_cap 0: no cache at all.  With cfg->age_identity_file, its
 * identities are loaded (age.h: a file others may read is refused) to
 * open encrypted backups, and the process dumps no core from then on
 * (shb_no_core_dumps, util.h).  cfg is not kept.  SHB_OK and a new repo in
 * *out (free with shb_repo_close); else *out NULL and an error code with
 * shb_errmsg() set (the S3 client's configuration, SHB_EIO naming a
 * cache_dir that cannot be used, SHB_EKEY for an identity file that
 * cannot be used: its message says why).
 */
int shb_repo_open(const struct shb_config *cfg, const char *cache_dir, uint64_t cache_cap,
		  struct shb_repo **out);
/* Closes r (NULL is fine): its S3 client, and its cache (a private one is removed). */
void shb_repo_close(struct shb_repo *r);

/* True when r has an S3 bucket. */
int shb_repo_has_s3(const struct shb_repo *r);
/* r's S3 client (owned by r), or NULL; for what is not reading (upload, delete). */
struct shb_s3 *shb_repo_s3(struct shb_repo *r);
/* r's disk cache (owned by r), or NULL when it has none. */
struct shb_cache *shb_repo_cache(struct shb_repo *r);

/* r's identities (owned by r; none without BACKUP_AGE_IDENTITY_FILE). */
const struct shb_age_keys *shb_repo_identities(const struct shb_repo *r);

/*
 * Adds the backups of the local dir (none without one; a missing dir adds
 * none), of the S3 prefix (none without a bucket), or both, to cat
 * (catalog.h).  An error code with shb_errmsg() set if listing fails;
 * shb_repo_list stops at the first place that fails.
 */
int shb_repo_list_local(struct shb_repo *r, struct shb_catalog *cat);
int shb_repo_list_s3(struct shb_repo *r, struct shb_catalog *cat);
int shb_repo_list(struct shb_repo *r, struct shb_catalog *cat);
/*
 * What every command starts with: shb_repo_open() then shb_repo_list().
 * *repo is set (to close) when the open worked, also if listing failed.
 */
int shb_repo_load(const struct shb_config *cfg, const char *cache_dir, uint64_t cache_cap,
		  struct shb_repo **repo, struct shb_catalog *cat);

/* Which copy of a backup to open. */
enum shb_repo_copy {
	SHB_COPY_PREFERRED,  /* the local copy when the backup has one, else the S3 one */
	SHB_COPY_ANY,        /* as PREFERRED, and the S3 copy when the local one fails */
	SHB_COPY_LOCAL,
	SHB_COPY_S3,
};

/*
 * How an open went: which copy it opened (also set when opening it
 * failed), whether a plain archive had to be indexed in a pass, and the
 * first half of the source's content identity in hex (shb_source_identity),
 * to key anything a caller keeps about these bytes.
 */
struct shb_repo_opened {
	int remote;
	int indexed;
	char key[33];
};

/*
 * Opens the stored bytes of copy of b: a local copy as
 * shb_source_open_backup_file() does (a symlink is refused), an S3 copy
 * through r's cache (which so only ever holds what is stored: ciphertext
 * for an encrypted backup).  SHB_OK and the source in *out (the caller
 * owns it: shb_source_close, or hand it to a reader); SHB_ENOTFOUND when b
 * has no such copy (or r no bucket for it); else the open's error.  how
 * may be NULL; its key is not filled here.  r may be NULL for a local copy.
 */
int shb_repo_open_raw(struct shb_repo *r, const struct shb_backup *b, int copy,
		      struct shb_source **out, struct shb_repo_opened *how);
/*
 * The same, then for an encrypted backup (b->encrypted) the plaintext
 * source over it (age.h: shb_age_source_open with r's identities), so
 * every reader above sees a tar.gz.  An encrypted backup adds SHB_EKEY
 * (no identity, or none that matches), SHB_EFORMAT and SHB_ECORRUPT (a
 * damaged header) to the errors above.
 */
int shb_repo_open_source(struct shb_repo *r, const struct shb_backup *b, int copy,
			 struct shb_source **out, struct shb_repo_opened *how);
/*
 * src (taken) as the tar.gz it holds: itself when encrypted is 0, the
 * plaintext of the age file when 1 (shb_age_source_open with ids, which
 * may be NULL: SHB_EKEY), and when -1 whichever its first bytes say (one
 * small read: for files the operator named).  SHB_OK and *out; on failure
 * src is closed.
 */
int shb_repo_decrypt(struct shb_source *src, int encrypted, const struct shb_age_keys *ids,
		     struct shb_source **out);
/*
 * Opens a reader over copy of b: our seekable format through its index,
 * else a plain tar.gz through access points, whose index comes from r's
 * cache (a named blob keyed by the source's identity) or is built in one
 * pass and put there.  SHB_OK and the reader in *out (caller closes it);
 * else an error code with shb_errmsg() set.  how may be NULL.
 */
int shb_repo_open_reader(struct shb_repo *r, const struct shb_backup *b, int copy,
			 struct shb_reader **out, struct shb_repo_opened *how);
/*
 * The same for an archive file the operator named (not a catalog backup,
 * so symlinks are followed), read in place, plain archives indexed in a
 * pass with nothing cached; an age file (told by its first bytes) is
 * decrypted with ids (NULL: none).
 */
int shb_repo_open_path_reader(const char *path, const struct shb_age_keys *ids,
			      struct shb_reader **out);

#endif
