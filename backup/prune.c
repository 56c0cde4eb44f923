/*
 * Retention (prune.h), applied to each place a backup can live.
 */
#include <unistd.h>

#include "error.h"
#include "prune.h"
#include "s3.h"

static int delete_local(const struct shb_backup *b, struct shb_s3 *s3)
{
	(void)s3;
	if (unlink(b->local_path) < 0)
		return shb_fail_errno(SHB_EIO, "cannot delete '%s'", b->local_path);
	return SHB_OK;
}

static int delete_s3(const struct shb_backup *b, struct shb_s3 *s3)
{
	return shb_s3_delete(s3, b->s3_key);
}

static int has_local(const struct shb_backup *b)
{
	return b->local_path != NULL;
}

static int has_s3(const struct shb_backup *b)
{
	return b->s3_key != NULL;
}

struct place {
	const char *name;
	int (*has)(const struct shb_backup *b);
	int (*delete)(const struct shb_backup *b, struct shb_s3 *s3);
};

static int prune_place(const struct place *pl, const struct shb_catalog *cat, time_t now,
		       time_t cutoff, int dry_run, struct shb_s3 *s3, shb_prune_fn report,
		       void *ctx)
{
	int rc = SHB_OK, newest_seen = 0;

	/*
	 * Items are newest first: the first copy found here always survives.
	 * One dated in the future is neither deleted nor that newest copy: it
	 * says nothing about how recent the real backups are (cli warns).
	 */
	for (size_t i = 0; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		int err = SHB_OK;

		if (!pl->has(b) || shb_backup_time_in_future(b->time, now) || !newest_seen++
		    || b->time >= cutoff)
			continue;
		if (!dry_run && (err = pl->delete(b, s3)))
			rc = err;
		if (report)
			report(ctx, b, pl->name, err != SHB_OK);
	}
	return rc;
}

int shb_prune(const struct shb_catalog *cat, int days, time_t now, int dry_run,
	      struct shb_s3 *s3, shb_prune_fn report, void *ctx)
{
	static const struct place local = { "local", has_local, delete_local };
	static const struct place remote = { "s3", has_s3, delete_s3 };
	time_t cutoff = now - (time_t)days * 86400;
	int rc, rc2 = SHB_OK;

	if (days <= 0)
		return SHB_OK;
	rc = prune_place(&local, cat, now, cutoff, dry_run, s3, report, ctx);
	if (s3)
		rc2 = prune_place(&remote, cat, now, cutoff, dry_run, s3, report, ctx);
	return rc ? rc : rc2;
}
