/*
 * Local retention: deleting backups older than the retention period.  The
 * age of a backup is judged by the timestamp in its name, never by file
 * times; the newest backup is never deleted, and neither is any file that
 * is not in the catalog (whose names match the backup pattern exactly).
 */
#ifndef SHB_PRUNE_H
#define SHB_PRUNE_H

#include <time.h>

#include "catalog.h"

/* Told about each backup that is (or, with dry_run, would be) deleted. */
typedef void (*shb_prune_fn)(void *ctx, const struct shb_backup *b, int failed);

/*
 * Deletes the local copies in cat older than days (age > days * 24 h at
 * now).  days == 0 disables pruning.  Returns SHB_OK, or SHB_EIO when a
 * deletion failed (the others are still attempted).
 */
int shb_prune_local(const struct shb_catalog *cat, int days, time_t now, int dry_run,
		    shb_prune_fn report, void *ctx);

#endif
