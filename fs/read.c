/*
 * Reading a file of a backup: a FUSE read becomes one reader read of the
 * file's entry (through the mount's memory cache of inflated pieces; the
 * fetched bytes are cached on disk by the source below the reader), then a
 * read-ahead of what a sequential reader will want next, which doubles
 * while the reader stays sequential.  Also keeps the S3 outage status line.
 */
#include <errno.h>
#include <syslog.h>

#include "cache.h"
#include "error.h"
#include "shbfs.h"

#define AHEAD_UNIT (256u << 10)  /* read-ahead starts at this many bytes ... */
#define AHEAD_MAX 32             /* ... and doubles up to this many times it: 8 MiB */
#define BATCH_REMOTE 32          /* pieces a read-ahead job fetches at once from S3 */
#define BATCH_LOCAL 2            /* locally: small jobs spread inflation over the cores */

/* The read-ahead for a read at off, in bytes: doubles while the reader is sequential. */
static uint64_t ahead_for(struct shbfs_handle *h, uint64_t off, size_t size)
{
	size_t ahead;

	pthread_mutex_lock(&h->mu);
	if (off == h->next_off && off)
		h->ahead = h->ahead ? (h->ahead * 2 > AHEAD_MAX ? AHEAD_MAX : h->ahead * 2) : 1;
	else
		h->ahead = 0;
	h->next_off = off + size;
	ahead = h->ahead;
	pthread_mutex_unlock(&h->mu);
	return (uint64_t)ahead * AHEAD_UNIT;
}

/* SQLite on a read-only mount cannot open a WAL-mode db: show rollback mode. */
static void patch_header(const struct shb_layout_file *f, char *buf, uint64_t off, size_t n)
{
	if (f->kind == SHB_FILE_SECRETS)
		return;
	for (uint64_t at = 18; at <= 19; at++)
		if (at >= off && at < off + n && buf[at - off] == 2)
			buf[at - off] = 1;
}

int shbfs_read(struct shbfs *fs, struct shbfs_handle *h, char *buf, size_t size, uint64_t off)
{
	struct shbfs_backup *b = h->b;
	const struct shb_layout_file *f = &b->layout.files[h->file];
	const struct shb_entry *e = &shb_reader_index(b->reader)->entries[f->raw];
	uint64_t before = shb_source_fetched(shb_reader_source(b->reader)), ahead;
	size_t got;
	int rc;

	if (off >= e->size || !size)
		return 0;
	ahead = ahead_for(h, off, size);
	rc = shb_reader_pread_cached(b->reader, fs->pieces, e, buf, size, off, &got);
	/* The status changes on what S3 said: a failure, or bytes it sent. */
	if (b->remote && (rc || shb_source_fetched(shb_reader_source(b->reader)) != before))
		shbfs_s3_status(fs, rc, shb_errmsg());
	if (rc) {
		/* During an S3 outage the one "S3 unreachable" line says it all. */
		if (!b->remote || !__atomic_load_n(&fs->s3_down, __ATOMIC_ACQUIRE))
			shbfs_log(LOG_ERR, "read of %s/%s at %llu failed: %s", b->at.ts, f->rel,
				  (unsigned long long)off, shb_errmsg());
		return -EIO;
	}
	if (ahead)
		shb_reader_readahead(b->reader, fs->pieces, e, off + got, ahead,
				     b->remote ? BATCH_REMOTE : BATCH_LOCAL);
	patch_header(f, buf, off, got);
	return (int)got;
}
