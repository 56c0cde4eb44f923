/*
 * Local retention (prune.h).
 */
#include <stdio.h>
#include <unistd.h>

#include "error.h"
#include "prune.h"

int shb_prune_local(const struct shb_catalog *cat, int days, time_t now, int dry_run,
		    shb_prune_fn report, void *ctx)
{
	int rc = SHB_OK;

	if (days <= 0)
		return SHB_OK;
	/* items[0] is the newest and always survives. */
	for (size_t i = 1; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		int failed = 0;

		if (!b->local_path || now - b->time <= (time_t)days * 86400)
			continue;
		if (!dry_run && unlink(b->local_path) < 0) {
			rc = shb_fail_errno(SHB_EIO, "cannot delete '%s'", b->local_path);
			failed = 1;
		}
		if (report)
			report(ctx, b, failed);
	}
	return rc;
}
