/*
 * Retention: deleting backups older than the retention period, locally and
 * in S3.  The age of a backup is judged by the timestamp in its name, never
 * by file times.  In each place the newest readable copy is never
 * deleted, and neither is anything that is not in the catalog (whose names
 * match the backup pattern exactly), nor a backup dated in the future
 * (catalog.h), which does not count as the newest either.
 */
#ifndef SHB_PRUNE_H
#define SHB_PRUNE_H

#include <time.h>

#include "catalog.h"

struct shb_repo;

/*
 * What the callback is told, in where ("local" or "s3").  Anything but
 * SHB_PRUNE_DELETED comes with a message in shb_errmsg() for a warning.
 */
enum shb_prune_event {
	SHB_PRUNE_DELETED = 0,   /* b is (with dry_run: would be) deleted */
	SHB_PRUNE_FAILED,        /* deleting b failed */
	SHB_PRUNE_UNREADABLE,    /* b cannot be read, so is not kept as the newest */
	SHB_PRUNE_SKIPPED,       /* b is NULL: nothing is deleted in where */
};

typedef void (*shb_prune_fn)(void *ctx, const struct shb_backup *b, const char *where,
			     int event);

/*
 * The newest copy kept in a place must be one that can be read: ours with
 * an index that parses (one tail read: a ranged GET in S3), or a plain
 * tar.gz whose first bytes are a gzip header and whose trailer gives a
 * size that is whole tar blocks (two more small reads).  Walking newest
 * first, after this many copies that are not, nothing is deleted there.
 */
#define SHB_PRUNE_MAX_UNREADABLE 5

/*
 * Deletes the copies in cat older than days (age > days * 24 h at now):
 * local files, and S3 objects when repository r (repo.h, borrowed; where
 * copies are opened and deleted) has a bucket; r NULL: local files only.  days == 0 disables
 * pruning.  In a place where no copy can be read (see above), or where
 * that could not be told (S3 unreachable), nothing is deleted.  Returns
 * SHB_OK, or the error of the last deletion that failed in a place (or of
 * the place itself), the local one's before S3's; the others are still
 * attempted.  report (may be NULL) is called from the calling thread, once
 * per copy deleted or failed and once per place skipped; cat and s3 are
 * borrowed.
 */
int shb_prune(const struct shb_catalog *cat, int days, time_t now, int dry_run,
	      struct shb_repo *r, shb_prune_fn report, void *ctx);

#endif
