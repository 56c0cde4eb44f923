/*
 * The root listing and opening backups.  Backup objects live until
 * unmount, so a listing refresh never pulls one out from under a read; a
 * refresh only swaps which of them the root shows.  Listing is the lister
 * thread's job, done with no lock held: S3 may take a timeout to answer,
 * and nothing already known should wait for it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <fuse.h>

#include "catalog.h"
#include "error.h"
#include "repo.h"
#include "shbfs.h"

static int same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/*
 * The backup object for item, reused when the same source was seen before;
 * an S3 object overwritten since (new ETag) gets a new one, so nothing read
 * from the old object is served for it (fs->mu held).
 */
static struct shbfs_backup *adopt(struct shbfs *fs, const struct shb_backup *item)
{
	struct shbfs_backup *b;

	for (b = fs->all; b; b = b->next)
		if (!strcmp(b->at.ts, item->ts) && b->at.encrypted == item->encrypted
		    && !!b->at.local_path == !!item->local_path
		    && !!b->at.s3_key == !!item->s3_key && b->at.local_size == item->local_size
		    && b->at.local_ino == item->local_ino && b->at.local_mtime_ns == item->local_mtime_ns
		    && b->at.s3_size == item->s3_size && same_str(b->at.s3_etag, item->s3_etag))
			return b;
	if (!(b = calloc(1, sizeof(*b))))
		return NULL;
	b->at = *item;
	b->at.name = b->at.ts;
	b->at.local_path = item->local_path ? strdup(item->local_path) : NULL;
	b->at.s3_key = item->s3_key ? strdup(item->s3_key) : NULL;
	b->at.s3_etag = item->s3_etag ? strdup(item->s3_etag) : NULL;
	if ((item->local_path && !b->at.local_path) || (item->s3_key && !b->at.s3_key)
	    || (item->s3_etag && !b->at.s3_etag)) {
		free(b->at.local_path);
		free(b->at.s3_key);
		free(b->at.s3_etag);
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->mu, NULL);
	b->next = fs->all;
	fs->all = b;
	return b;
}

void shbfs_s3_status(struct shbfs *fs, int rc, const char *why)
{
	int ok = rc == SHB_OK, was;

	/* Damaged or hostile bytes are not an outage: only these say S3 is away. */
	if (!ok && rc != SHB_ENET && rc != SHB_EREMOTE)
		return;
	was = __atomic_exchange_n(&fs->s3_down, !ok, __ATOMIC_ACQ_REL);

	if (!ok && !was)
		shbfs_log(LOG_WARNING, "S3 unreachable: reads of uncached data fail with EIO (%s)",
			  why);
	else if (ok && was)
		shbfs_log(LOG_NOTICE, "S3 reachable again");
}

/*
 * The listing shown: both last good catalogs merged by timestamp, newest
 * first (each is sorted so).  Swapped in only if every object could be
 * made; otherwise the previous listing stays.  fs->mu held.
 */
/* Backups a new listing replaced, for forget_replaced(). */
struct replaced {
	struct shbfs_backup **b;
	size_t n, alloc;
};

/*
 * The backups of the old listing that the new one replaces under the same
 * name (another size or ETag: another object), added to *gone.
 */
static void note_replaced(struct shbfs *fs, struct shbfs_backup **list, size_t n,
			  struct replaced *gone)
{
	for (size_t i = 0; i < fs->n; i++)
		for (size_t k = 0; k < n; k++)
			if (list[k] != fs->list[i] && !strcmp(list[k]->at.ts, fs->list[i]->at.ts)
			    && !SHB_ALLOC_GROW(gone->b, gone->n + 1, gone->alloc))
				gone->b[gone->n++] = fs->list[i];
}

/*
 * Makes the kernel forget what it cached of the files of replaced backups
 * (their pages and sizes), so no reader gets the old archive's bytes, or
 * old and new mixed, at the old object's paths.  No lock held: the kernel
 * may call back into the filesystem.
 */
static void forget_replaced(struct shbfs *fs, struct replaced *gone)
{
	char path[SHB_TS_LEN + 4096];

	for (size_t i = 0; fs->fuse && i < gone->n; i++) {
		struct shbfs_backup *b = gone->b[i];

		shbfs_log(LOG_NOTICE, "backup %s was replaced under its name: serving the new one, "
			  "files still open on the old one read EIO", b->at.ts);
		pthread_mutex_lock(&b->mu);
		/* Handles still open on b read EIO from now on, not old pages into new ones. */
		__atomic_store_n(&b->replaced, 1, __ATOMIC_RELEASE);
		if (b->served)
			memset(b->served, 0, b->layout.n ? b->layout.n : 1);
		for (size_t f = 0; b->state == BACKUP_OPEN && f < b->layout.n; f++) {
			snprintf(path, sizeof(path), "/%s/%s", b->at.ts, b->layout.files[f].rel);
			fuse_invalidate_path(fs->fuse, path);
		}
		pthread_mutex_unlock(&b->mu);
		snprintf(path, sizeof(path), "/%s", b->at.ts);
		fuse_invalidate_path(fs->fuse, path);
	}
	free(gone->b);
	memset(gone, 0, sizeof(*gone));
}

static void publish(struct shbfs *fs, struct replaced *gone)
{
	const struct shb_catalog *l = &fs->local, *r = &fs->remote;
	struct shbfs_backup **list = calloc(l->n + r->n + 1, sizeof(*list));
	size_t i = 0, j = 0, n = 0;

	if (!list)
		return;
	while (i < l->n || j < r->n) {
		int c = i == l->n ? 1 : j == r->n ? -1 : strcmp(r->items[j].ts, l->items[i].ts);
		struct shb_backup item;

		/* c < 0: the local one is newer; c == 0: one backup in both places. */
		if (c < 0) {
			item = l->items[i++];
		} else if (c > 0) {
			item = r->items[j++];
		} else if (l->items[i].encrypted != r->items[j].encrypted) {
			/* One backup per second: the local one (catalog.c, item_for). */
			item = l->items[i++];
			j++;
		} else {
			item = l->items[i++];
			item.s3_key = r->items[j].s3_key;
			item.s3_etag = r->items[j].s3_etag;
			item.s3_size = r->items[j++].s3_size;
		}
		if (!(list[n++] = adopt(fs, &item))) {
			free(list);
			return;
		}
	}
	note_replaced(fs, list, n, gone);
	for (size_t k = 0; k < n; k++)  /* one swapped back in serves again */
		__atomic_store_n(&list[k]->replaced, 0, __ATOMIC_RELEASE);
	free(fs->list);
	fs->list = list;
	fs->n = n;
}

/* What a new local listing ignores, logged when it first shows, not at every listing. */
static void warn_ignored(const struct shb_catalog *old, const struct shb_catalog *now)
{
	if (now->ignored && (old->ignored != now->ignored
			     || strcmp(old->ignored_name, now->ignored_name)))
		shbfs_log(LOG_WARNING, "ignoring %zu entr%s in the backup dir that %s not a regular "
			  "file, '%s' first (a symlink is never followed there)", now->ignored,
			  now->ignored == 1 ? "y" : "ies", now->ignored == 1 ? "is" : "are",
			  now->ignored_name);
	if (now->shadowed && (old->shadowed != now->shadowed
			      || strcmp(old->shadowed_name, now->shadowed_name)))
		shbfs_log(LOG_WARNING, "ignoring '%s'%s: another backup of the same second exists",
			  now->shadowed_name, now->shadowed > 1 ? " and others like it" : "");
}

/* One listing: each source on its own, no lock held while it is read. */
static void relist(struct shbfs *fs)
{
	struct shb_catalog local = { 0 }, remote = { 0 };
	struct replaced gone = { 0 };
	int lrc = SHB_OK, rrc = SHB_OK;
	char why[512] = "";

	if ((lrc = shb_repo_list_local(fs->cfg.repo, &local)))
		snprintf(why, sizeof(why), "%s", shb_errmsg());
	pthread_mutex_lock(&fs->mu);
	if (!lrc)
		warn_ignored(&fs->local, &local);
	if (!lrc) {
		shb_catalog_free(&fs->local);
		fs->local = local;
		memset(&local, 0, sizeof(local));
		if (fs->local_failed)
			shbfs_log(LOG_NOTICE, "local backups readable again");
		fs->local_failed = 0;
	} else if (!fs->local_failed) {
		shbfs_log(LOG_WARNING, "cannot list local backups, serving the last listing: %s",
			  why);
		fs->local_failed = 1;
	}
	/* Local backups show at once, whatever S3 does next. */
	publish(fs, &gone);
	pthread_mutex_unlock(&fs->mu);
	shb_catalog_free(&local);
	forget_replaced(fs, &gone);

	if (!shb_repo_has_s3(fs->cfg.repo))
		return;
	rrc = shb_repo_list_s3(fs->cfg.repo, &remote);
	if (rrc)
		snprintf(why, sizeof(why), "cannot list backups, serving the last listing: %s",
			 shb_errmsg());
	shbfs_s3_status(fs, rrc, why);
	pthread_mutex_lock(&fs->mu);
	/* Not an outage (say, an answer that does not parse): logged once too. */
	if (rrc && rrc != SHB_ENET && rrc != SHB_EREMOTE && !fs->remote_failed)
		shbfs_log(LOG_WARNING, "S3: %s", why);
	fs->remote_failed = rrc && rrc != SHB_ENET && rrc != SHB_EREMOTE;
	if (!rrc) {
		shb_catalog_free(&fs->remote);
		fs->remote = remote;
		memset(&remote, 0, sizeof(remote));
		publish(fs, &gone);
	}
	pthread_mutex_unlock(&fs->mu);
	shb_catalog_free(&remote);
	forget_replaced(fs, &gone);
}

/* Whether the listing should be made again (fs->mu held). */
static int due(struct shbfs *fs)
{
	return fs->want || !fs->listed
	       || __atomic_load_n(&fs->gen, __ATOMIC_ACQUIRE) != fs->listed_gen;
}

/*
 * The lister: lists when asked (a lookup found the listing older than
 * list_ttl) or when a refresh bumped gen, also one that came during the
 * previous listing: gen is read before listing, so a SIGHUP that lands
 * while it runs makes the next round start at once.  The signal handler
 * can only set gen, so the thread also looks at it every quarter second.
 */
static void *lister(void *arg)
{
	struct shbfs *fs = arg;

	pthread_mutex_lock(&fs->mu);
	for (;;) {
		while (!fs->stop && !due(fs)) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 250 * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&fs->wake, &fs->mu, &until);
		}
		if (fs->stop)
			break;
		unsigned g = __atomic_load_n(&fs->gen, __ATOMIC_ACQUIRE);

		fs->want = 0;
		fs->listing = 1;
		pthread_mutex_unlock(&fs->mu);
		relist(fs);
		pthread_mutex_lock(&fs->mu);
		fs->listing = 0;
		fs->listed = 1;
		fs->listed_gen = g;
		fs->listed_at = shb_now();
		pthread_cond_broadcast(&fs->listed_cv);
	}
	pthread_mutex_unlock(&fs->mu);
	return NULL;
}

void shbfs_lister_start(struct shbfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	if (!fs->lister_running && !pthread_create(&fs->lister, NULL, lister, fs))
		fs->lister_running = 1;
	pthread_mutex_unlock(&fs->mu);
}

void shbfs_lister_stop(struct shbfs *fs)
{
	int running;

	pthread_mutex_lock(&fs->mu);
	fs->stop = 1;
	running = fs->lister_running;
	fs->lister_running = 0;
	pthread_cond_broadcast(&fs->wake);
	pthread_cond_broadcast(&fs->listed_cv);
	pthread_mutex_unlock(&fs->mu);
	if (running)
		pthread_join(fs->lister, NULL);
}

void shbfs_list(struct shbfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	if (!fs->lister_running && !fs->stop) {
		/* No thread (not mounted through init): list in the caller. */
		if (due(fs) || shb_now() - fs->listed_at >= fs->cfg.list_ttl) {
			unsigned g = __atomic_load_n(&fs->gen, __ATOMIC_ACQUIRE);

			pthread_mutex_unlock(&fs->mu);
			relist(fs);
			pthread_mutex_lock(&fs->mu);
			fs->listed = 1;
			fs->listed_gen = g;
			fs->want = 0;
			fs->listed_at = shb_now();
		}
		pthread_mutex_unlock(&fs->mu);
		return;
	}
	if (!fs->listing && fs->listed && !fs->want
	    && shb_now() - fs->listed_at >= fs->cfg.list_ttl) {
		fs->want = 1;
		pthread_cond_signal(&fs->wake);
	}
	/* Nothing known yet: the first listing is worth waiting for. */
	while (!fs->listed && !fs->stop)
		pthread_cond_wait(&fs->listed_cv, &fs->mu);
	pthread_mutex_unlock(&fs->mu);
}

void shbfs_refresh(struct shbfs *fs)
{
	/* Called from a signal handler: an atomic add only. */
	__atomic_add_fetch(&fs->gen, 1, __ATOMIC_RELEASE);
}

void shbfs_list_free(struct shbfs *fs)
{
	while (fs->all) {
		struct shbfs_backup *b = fs->all;

		fs->all = b->next;
		shb_reader_close(b->reader);
		shb_layout_free(&b->layout);
		free(b->served);
		pthread_mutex_destroy(&b->mu);
		free(b->at.local_path);
		free(b->at.s3_key);
		free(b->at.s3_etag);
		free(b);
	}
	shb_catalog_free(&fs->local);
	shb_catalog_free(&fs->remote);
	free(fs->list);
	fs->list = NULL;
	fs->n = 0;
}

struct shbfs_backup *shbfs_find(struct shbfs *fs, const char *ts)
{
	struct shbfs_backup *hit = NULL;

	shbfs_list(fs);
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->n && !hit; i++)
		if (!strcmp(fs->list[i]->at.ts, ts))
			hit = fs->list[i];
	pthread_mutex_unlock(&fs->mu);
	return hit;
}

/* --- opening ------------------------------------------------------------- */

/*
 * Opens the local copy when it can be read, else the S3 copy (repo.h);
 * a plain archive's access-point index comes from the repository's cache.
 * b->key, the source's content identity, starts every cache name of b.
 */
static int do_open(struct shbfs *fs, struct shbfs_backup *b)
{
	struct shb_repo_opened how;
	int rc;

	rc = shb_repo_open_reader(fs->cfg.repo, &b->at, SHB_COPY_ANY, &b->reader, &how);
	b->remote = how.remote;
	if (b->remote)
		shbfs_s3_status(fs, rc, shb_errmsg());
	if (rc)
		return rc;
	memcpy(b->key, how.key, sizeof(b->key));
	if (how.indexed)
		shbfs_log(LOG_INFO, "indexing %s (not a seekable archive) took one pass over it",
			  b->at.ts);
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
		int err = do_open(fs, b);

		if (err == SHB_OK) {
			b->state = BACKUP_OPEN;
		} else if (err == SHB_EKEY) {
			/* The identities cannot change while mounted: say it once. */
			shbfs_log(LOG_ERR, "backup %s is encrypted: %s; its files read EACCES",
				  b->at.ts, shb_errmsg());
			b->state = BACKUP_NO_KEY;
		} else {
			shbfs_log(LOG_ERR, "cannot open backup %s: %s", b->at.ts, shb_errmsg());
			b->state = BACKUP_FAILED;
			b->failed_at = shb_now();
		}
	}
	if (b->state != BACKUP_OPEN)
		rc = b->state == BACKUP_NO_KEY ? -EACCES : -EIO;
	pthread_mutex_unlock(&b->mu);
	return rc;
}
