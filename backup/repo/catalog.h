/*
 * The catalog: every backup that exists, newest first.  A backup is known by
 * its UTC timestamp, taken from its name "streamhub-backup-<ts>.tar.gz";
 * files that do not match that pattern exactly are never part of it (and so
 * never pruned).  This step reads the local directory; S3 listing merges
 * into the same structure.
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

struct shb_backup {
	char ts[SHB_TS_LEN];
	time_t time;
	char *name;         /* streamhub-backup-<ts>.tar.gz */
	char *local_path;   /* NULL when there is no local copy */
	uint64_t local_size;
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
};

/*
 * If name is exactly "streamhub-backup-<valid ts>.tar.gz", stores the stamp
 * and its time and returns 0; otherwise returns -1.
 */
int shb_backup_name_parse(const char *name, char ts[SHB_TS_LEN], time_t *t);

struct shb_s3;

/*
 * Adds the backups in dir (a missing dir adds none): regular files only,
 * judged without following symlinks (see ignored above).  Open them with
 * shb_source_open_backup_file() (store.h), which does not follow one either.
 */
int shb_catalog_add_local(struct shb_catalog *cat, const char *dir);
/*
 * Adds the backups stored as exactly "<prefix>/<name>" (or "<name>" for an
 * empty prefix), listing every page.  prefix is as shb_s3_prefix_normalize()
 * (config.h) returns it, the form upload keys are built from.
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
/* How many backups are dated in the future. */
size_t shb_catalog_count_future(const struct shb_catalog *cat, time_t now);
/*
 * The backups --from names: "latest" is shb_catalog_latest(); anything else
 * matches every backup whose name contains it ("" matches nothing).
 * Returns the number of matches and sets *hit to the first (newest) one.
 */
size_t shb_catalog_match(const struct shb_catalog *cat, const char *from,
			 const struct shb_backup **hit);
/* "local", "s3" or "both". */
const char *shb_backup_source(const struct shb_backup *b);
void shb_catalog_free(struct shb_catalog *cat);

/* Apps in a backup's index: entries "<top>/apps/<app>/app.db". */
size_t shb_index_count_apps(const struct shb_index *idx);

#endif
