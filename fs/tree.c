/*
 * The root listing and opening backups.  Backup objects live until
 * unmount, so a listing refresh never pulls one out from under a read; a
 * refresh only swaps which of them the root shows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "catalog.h"
#include "error.h"
#include "s3.h"
#include "shbfs.h"
#include "store.h"

static int same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/*
 * The backup object for item, reused when the same source was seen before;
 * an S3 object overwritten since (new ETag) gets a new one, so nothing read
 * from the old object is served for it.
 */
static struct shbfs_backup *adopt(struct shbfs *fs, const struct shb_backup *item)
{
	struct shbfs_backup *b;

	for (b = fs->all; b; b = b->next)
		if (!strcmp(b->ts, item->ts) && !!b->local_path == !!item->local_path
		    && !!b->s3_key == !!item->s3_key && b->local_size == item->local_size
		    && b->s3_size == item->s3_size && same_str(b->s3_etag, item->s3_etag))
			return b;
	if (!(b = calloc(1, sizeof(*b))))
		return NULL;
	memcpy(b->ts, item->ts, SHB_TS_LEN);
	b->time = item->time;
	b->local_size = item->local_size;
	b->s3_size = item->s3_size;
	b->local_path = item->local_path ? strdup(item->local_path) : NULL;
	b->s3_key = item->s3_key ? strdup(item->s3_key) : NULL;
	b->s3_etag = item->s3_etag ? strdup(item->s3_etag) : NULL;
	if ((item->local_path && !b->local_path) || (item->s3_key && !b->s3_key)
	    || (item->s3_etag && !b->s3_etag)) {
		free(b->local_path);
		free(b->s3_key);
		free(b->s3_etag);
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->mu, NULL);
	b->next = fs->all;
	fs->all = b;
	return b;
}

/* Lists the sources; keeps the last good listing when that fails. */
static void relist(struct shbfs *fs)
{
	struct shb_catalog cat = { 0 };
	struct shbfs_backup **list;
	int rc = SHB_OK;

	if (fs->cfg.local_dir)
		rc = shb_catalog_add_local(&cat, fs->cfg.local_dir);
	if (!rc && fs->cfg.s3)
		rc = shb_catalog_add_s3(&cat, fs->cfg.s3, fs->cfg.s3_prefix);
	if (rc) {
		shbfs_log(LOG_WARNING, "cannot list backups, serving the last listing: %s",
			  shb_errmsg());
		goto out;
	}
	if (!(list = calloc(cat.n + 1, sizeof(*list))))
		goto out;
	for (size_t i = 0; i < cat.n; i++)
		if (!(list[i] = adopt(fs, &cat.items[i]))) {
			free(list);
			goto out;
		}
	free(fs->list);
	fs->list = list;
	fs->n = cat.n;
out:
	fs->listed_at = shb_now();
	fs->stale = 0;
	shb_catalog_free(&cat);
}

void shbfs_list(struct shbfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	if (fs->stale || !fs->list || shb_now() - fs->listed_at >= fs->cfg.list_ttl)
		relist(fs);
	pthread_mutex_unlock(&fs->mu);
}

void shbfs_refresh(struct shbfs *fs)
{
	__atomic_store_n(&fs->stale, 1, __ATOMIC_RELAXED);
}

struct shbfs_backup *shbfs_find(struct shbfs *fs, const char *ts)
{
	struct shbfs_backup *hit = NULL;

	shbfs_list(fs);
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->n && !hit; i++)
		if (!strcmp(fs->list[i]->ts, ts))
			hit = fs->list[i];
	pthread_mutex_unlock(&fs->mu);
	return hit;
}

/* --- opening ------------------------------------------------------------- */

/*
 * Every cache name of b (its index, its members, in memory and on disk)
 * starts with this key: the content identity of the source (store.h), so an
 * archive rewritten under the same name and size is a different key.
 */
static int cache_key(struct shbfs_backup *b, struct shb_source *src)
{
	unsigned char sum[32];
	int rc = shb_source_identity(src, sum);

	for (int i = 0; !rc && i < 16; i++)
		snprintf(b->key + 2 * i, 3, "%02x", sum[i]);
	return rc;
}

static int reopen_source(struct shbfs *fs, struct shbfs_backup *b, struct shb_source **src)
{
	if (b->remote)
		return shb_source_open_s3_etag(fs->cfg.s3, b->s3_key, b->s3_size, b->s3_etag, src);
	return shb_source_open_file(b->local_path, src);
}

/*
 * A plain tar.gz: its access-point index from the disk cache, or built in
 * one pass and cached (for local archives too: the pass reads everything).
 */
static int open_plain(struct shbfs *fs, struct shbfs_backup *b)
{
	struct shb_source *src;
	unsigned char *buf;
	size_t len;
	char name[64];
	int rc;

	snprintf(name, sizeof(name), "zidx-%s", b->key);
	if (shbfs_cache_get_all(fs->cache, name, &buf, &len) == 0) {
		if ((rc = reopen_source(fs, b, &src)))
			return rc;
		rc = shb_reader_open_plain(src, buf, len, &b->reader);
		free(buf);
		if (!rc)
			return SHB_OK;
		shbfs_cache_drop(fs->cache, name);
	}
	if ((rc = reopen_source(fs, b, &src)))
		return rc;
	shbfs_log(LOG_INFO, "indexing %s (not a seekable archive): one pass over it", b->ts);
	if ((rc = shb_reader_open_plain(src, NULL, 0, &b->reader)))
		return rc;
	if (!shb_reader_plain_index(b->reader, &buf, &len)) {
		shbfs_cache_put(fs->cache, name, buf, len);
		free(buf);
	}
	return SHB_OK;
}

/* The reader, from the cached trailer when there is one. */
static int open_reader(struct shbfs *fs, struct shbfs_backup *b, struct shb_source *src)
{
	char name[64];
	unsigned char *trailer;
	size_t len;
	const unsigned char *t;
	int rc;

	snprintf(name, sizeof(name), "zidx-%s", b->key);
	if (shbfs_cache_has(fs->cache, name)) {
		/* Known to be a plain archive: no need to look for our footer. */
		shb_source_close(src);
		return open_plain(fs, b);
	}
	snprintf(name, sizeof(name), "idx-%s", b->key);
	if (shbfs_cache_get_all(fs->cache, name, &trailer, &len) == 0) {
		rc = shb_reader_open_trailer(src, trailer, len, &b->reader);
		free(trailer);
		if (!rc)
			return SHB_OK;
		shbfs_cache_drop(fs->cache, name);  /* damaged: read it again */
		if ((rc = reopen_source(fs, b, &src)))
			return rc;
	}
	rc = shb_reader_open(src, &b->reader);
	if (rc == SHB_EFORMAT)
		return open_plain(fs, b);
	if (rc)
		return rc;
	if (b->remote) {
		shb_reader_trailer(b->reader, &t, &len);
		shbfs_cache_put(fs->cache, name, t, len);
	}
	return SHB_OK;
}

/* Opens the local copy when there is one, else the S3 copy. */
static int do_open(struct shbfs *fs, struct shbfs_backup *b)
{
	struct shb_source *src = NULL;
	int rc;

	if (b->local_path && shb_source_open_file(b->local_path, &src) == SHB_OK) {
		b->remote = 0;
	} else if (b->s3_key && fs->cfg.s3) {
		b->remote = 1;
		if ((rc = shb_source_open_s3_etag(fs->cfg.s3, b->s3_key, b->s3_size, b->s3_etag,
						  &src)))
			return rc;
	} else {
		return shb_fail(SHB_ENOTFOUND, "no readable copy");
	}
	if ((rc = cache_key(b, src))) {
		shb_source_close(src);
		return rc;
	}
	if ((rc = open_reader(fs, b, src)))
		return rc;
	if ((rc = shb_layout_from_index(shb_reader_index(b->reader), &b->layout))) {
		shb_reader_close(b->reader);
		b->reader = NULL;
	}
	return rc;
}

int shbfs_open_backup(struct shbfs *fs, struct shbfs_backup *b)
{
	int rc = 0;

	pthread_mutex_lock(&b->mu);
	if (b->state == BACKUP_FAILED && shb_now() - b->failed_at >= SHBFS_RETRY_OPEN)
		b->state = BACKUP_CLOSED;
	if (b->state == BACKUP_CLOSED) {
		if (do_open(fs, b) == SHB_OK) {
			b->state = BACKUP_OPEN;
		} else {
			shbfs_log(LOG_ERR, "cannot open backup %s: %s", b->ts, shb_errmsg());
			b->state = BACKUP_FAILED;
			b->failed_at = shb_now();
		}
	}
	if (b->state != BACKUP_OPEN)
		rc = -EIO;
	pthread_mutex_unlock(&b->mu);
	return rc;
}
