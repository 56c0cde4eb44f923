/*
 * Layer backup/repo: the backups themselves, wherever they are stored.
 *
 * Owns the configuration from the environment (config.h), the catalog of
 * local and S3 backups (catalog.h), opening a backup to read or restore
 * from (input.h) and retention (prune.h).  It is the one layer that joins
 * the others: it may include backup/base, format, s3, sqlite and its own
 * headers; never cmd or FUSE headers.  fs/ and mount/ use it (and not s3/)
 * to reach a backup.  Rules: HACKING.md "Layers".
 */
/*
 * The catalog: every backup that exists, newest first.  A backup is known by
 * its name "streamhub-backup-<ts>.tar.gz" (or "...tar.gz.age", encrypted),
 * which gives its UTC timestamp; files that do not match that pattern
 * exactly are never part of it (and so never pruned).  The local directory
 * (shb_catalog_add_local) and the S3 prefix (shb_catalog_add_s3) merge
 * into the same structure: a backup in both places (the same name) is one
 * item with both copies.  There is one backup per second: of a plain and
 * an encrypted name of the same second, the local one wins over the S3
 * one, and in one place the encrypted one (see shadowed).
 *
 * A catalog is plain data: zero-initialise it, add to it from one thread,
 * then read it from any number of threads; free it with
 * shb_catalog_free().  Every string in it is owned by it.
 */
#ifndef SHB_CATALOG_H
#define SHB_CATALOG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "index.h"
#include "util.h"

#define SHB_NAME_PREFIX "streamhub-backup-"
#define SHB_NAME_SUFFIX ".tar.gz"
#define SHB_AGE_SUFFIX ".age"   /* after SHB_NAME_SUFFIX: an age-encrypted backup */

struct shb_backup {
	char ts[SHB_TS_LEN];
	time_t time;
	char *name;         /* streamhub-backup-<ts>.tar.gz, or .tar.gz.age */
	int encrypted;      /* the name ends in .age: an age file around the tar.gz */
	char *local_path;   /* NULL when there is no local copy */
	uint64_t local_size;
	uint64_t local_ino;     /* with local_mtime_ns: which file that is, to tell a */
	int64_t local_mtime_ns; /* same-size archive put in its place from it */
	char *s3_key;       /* NULL when there is no S3 copy */
	uint64_t s3_size;
	char *s3_etag;      /* the listing's ETag, NULL if it gave none */
};

struct shb_catalog {
	struct shb_backup *items;  /* newest first */
	size_t n;
	size_t alloc;              /* items allocated (SHB_ALLOC_GROW) */
	/*
	 * Local entries with a backup's name that are not regular files (a
	 * symlink, a dir, a fifo): never listed, opened or deleted.  How many,
	 * and the first one's name, for one warning per listing.
	 */
	size_t ignored;
	char ignored_name[64];
	/*
	 * Backups that lost to another kind (plain or encrypted) of the same
	 * second: never listed, opened or deleted (item_for in catalog.c).
	 * How many, and the first one's name.
	 */
	size_t shadowed;
	char shadowed_name[64];
};

/*
 * If name is exactly "streamhub-backup-<valid ts>.tar.gz" or the same with
 * ".age", stores the stamp and its time and returns 0 (1 for the
 * encrypted name); otherwise returns -1 (no message: a name that does not
 * match is simply not a backup).
 */
int shb_backup_name_parse(const char *name, char ts[SHB_TS_LEN], time_t *t);

struct shb_s3;

/*
 * Adds the backups in dir (a missing dir adds none): regular files only,
 * judged without following symlinks (see ignored above).  Open them with
 * shb_source_open_backup_file() (source.h), which does not follow one
 * either.  dir is opened by shb_open_backup_dir() (util.h), with its rule
 * on a symlinked backup dir (SHB_EINVAL).  SHB_EIO when dir cannot be
 * read, SHB_ENOMEM; on failure cat may hold part of the listing (free it
 * all the same).
 */
int shb_catalog_add_local(struct shb_catalog *cat, const char *dir);
/*
 * Adds the backups stored as exactly "<prefix>/<name>" (or "<name>" for an
 * empty prefix), listing every page.  prefix is as shb_s3_prefix_normalize()
 * (config.h) returns it, the form upload keys are built from.  The client
 * is used, not kept.  The ListObjectsV2 errors of shb_s3_list() (s3.h:
 * SHB_EREMOTE, SHB_ENET, ...) or SHB_ENOMEM; on failure cat may hold part
 * of the listing.
 */
int shb_catalog_add_s3(struct shb_catalog *cat, struct shb_s3 *s3, const char *prefix);
/*
 * How far ahead of the clock a backup may be dated and still count as
 * "latest": a little clock skew between hosts is normal, a backup from
 * 2999 (a bad clock, a bad copy) must not shadow every real one.
 */
#define SHB_FUTURE_SKEW_SECONDS (10 * 60)

/* True when a backup dated t is more than SHB_FUTURE_SKEW_SECONDS after now. */
int shb_backup_time_in_future(time_t t, time_t now);
/*
 * "latest": the newest backup not dated in the future (see above), or NULL.
 * Every command and the mount use this rule.
 */
const struct shb_backup *shb_catalog_latest(const struct shb_catalog *cat, time_t now);
/*
 * How many backups are dated in the future.  This and the lookups around
 * it never fail; the pointers they return are into cat.
 */
size_t shb_catalog_count_future(const struct shb_catalog *cat, time_t now);
/*
 * The backups --from names: "latest" is shb_catalog_latest(); anything else
 * matches every backup whose name contains it ("" matches nothing).
 * Returns the number of matches and sets *hit to the first (newest) one.
 */
size_t shb_catalog_match(const struct shb_catalog *cat, const char *from,
			 const struct shb_backup **hit);
/* "local", "s3" or "both" (a static string). */
const char *shb_backup_source(const struct shb_backup *b);
/* Frees every item and zeroes cat (cat itself is the caller's). */
void shb_catalog_free(struct shb_catalog *cat);

/*
 * Apps in a backup's index: entries "<top>/apps/<app>/app.db" whose app
 * name the layout rule accepts (shb_app_name_ok).  Never fails.
 */
size_t shb_index_count_apps(const struct shb_index *idx);

#endif
