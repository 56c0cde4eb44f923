/*
 * Retention: deleting backups older than the retention period, locally and
 * in S3.  The age of a backup is judged by the timestamp in its name, never
 * by file times.  In each place the newest copy is never deleted, and
 * neither is anything that is not in the catalog (whose names match the
 * backup pattern exactly), nor a backup dated in the future (catalog.h),
 * which does not count as the newest either.
 */
#ifndef SHB_PRUNE_H
#define SHB_PRUNE_H

#include <time.h>

#include "catalog.h"

struct shb_s3;

/* Told about each copy that is (or, with dry_run, would be) deleted. */
typedef void (*shb_prune_fn)(void *ctx, const struct shb_backup *b, const char *where,
			     int failed);

/*
 * Deletes the copies in cat older than days (age > days * 24 h at now):
 * local files, and S3 objects when s3 is not NULL.  days == 0 disables
 * pruning.  Returns SHB_OK, or the error of the last deletion that failed
 * (the others are still attempted).
 */
int shb_prune(const struct shb_catalog *cat, int days, time_t now, int dry_run,
	      struct shb_s3 *s3, shb_prune_fn report, void *ctx);

#endif
