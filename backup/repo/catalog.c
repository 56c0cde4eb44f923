/*
 * Building the catalog of backups (catalog.h) from a local directory and
 * an S3 prefix, merged by timestamp, and the lookups over it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "error.h"
#include "layout.h"
#include "s3.h"

int shb_backup_name_parse(const char *name, char ts[SHB_TS_LEN], time_t *t)
{
	size_t plen = strlen(SHB_NAME_PREFIX), base = plen + SHB_TS_LEN - 1 + strlen(SHB_NAME_SUFFIX);
	size_t n = strlen(name);
	int encrypted = n == base + strlen(SHB_AGE_SUFFIX);

	if ((n != base && !encrypted) || strncmp(name, SHB_NAME_PREFIX, plen)
	    || strncmp(name + plen + SHB_TS_LEN - 1, SHB_NAME_SUFFIX, strlen(SHB_NAME_SUFFIX))
	    || (encrypted && strcmp(name + base, SHB_AGE_SUFFIX)))
		return -1;
	memcpy(ts, name + plen, SHB_TS_LEN - 1);
	ts[SHB_TS_LEN - 1] = '\0';
	return shb_ts_parse(ts, t) ? -1 : encrypted;
}

static int newest_first(const void *a, const void *b)
{
	const struct shb_backup *x = a, *y = b;
	int c = strcmp(y->ts, x->ts);

	return c ? c : strcmp(x->name, y->name);
}

/* Counts a backup that lost to another of the same second (item_for). */
static void shadow(struct shb_catalog *cat, const char *name)
{
	if (!cat->shadowed++)
		snprintf(cat->shadowed_name, sizeof(cat->shadowed_name), "%s", name);
}

/* Forgets b's copies (those of a backup that lost), keeping its place. */
static void drop_copies(struct shb_backup *b)
{
	free(b->local_path);
	free(b->s3_key);
	free(b->s3_etag);
	b->local_path = b->s3_key = b->s3_etag = NULL;
	b->local_size = b->local_ino = b->s3_size = 0;
	b->local_mtime_ns = 0;
}

/*
 * The item for ts, appended (zeroed but for the name) if absent; NULL if no
 * memory.  One backup per second: create never writes a plain and an
 * encrypted name of the same second, so when both show, one was put there
 * by someone else.  The local copy's kind wins over the S3 one (who can
 * write the bucket must not hide what the backup host has), and in one
 * place the encrypted one wins (a plain file must not stand in for an
 * encrypted backup; hiding a plain one takes the same write access as
 * deleting it).  The loser is counted in cat->shadowed; *skip is set when
 * that is name (from S3 when s3).
 */
static struct shb_backup *item_for(struct shb_catalog *cat, const char *name, const char *ts,
				   time_t t, int s3, int *skip)
{
	size_t n = strlen(name), s = strlen(SHB_AGE_SUFFIX);
	int enc = n > s && !strcmp(name + n - s, SHB_AGE_SUFFIX);
	struct shb_backup *b;

	*skip = 0;
	for (size_t i = 0; i < cat->n; i++) {
		if (strcmp((b = &cat->items[i])->ts, ts))
			continue;
		if (b->encrypted == enc)
			return b;
		/* Keep b: a local copy against an S3 one, or in one place the encrypted one. */
		if ((s3 && b->local_path) || ((s3 ? !b->local_path : !!b->local_path) && !enc)) {
			shadow(cat, name);
			*skip = 1;
			return b;
		}
		shadow(cat, b->name);
		drop_copies(b);
		free(b->name);
		b->encrypted = enc;
		return (b->name = strdup(name)) ? b : NULL;
	}
	if (SHB_ALLOC_GROW(cat->items, cat->n + 1, cat->alloc))
		return NULL;
	b = &cat->items[cat->n];
	memset(b, 0, sizeof(*b));
	memcpy(b->ts, ts, SHB_TS_LEN);
	b->time = t;
	b->encrypted = enc;
	if (!(b->name = strdup(name)))
		return NULL;
	cat->n++;
	return b;
}

/*
 * The backup dir may be writable by the service user, who must not make us
 * read something else under a backup's name: only a regular file counts (a
 * symlink is not followed, whatever it points to).  Anything else with a
 * backup's name is counted in cat->ignored for the caller to warn about.
 */
static int add_local(struct shb_catalog *cat, const char *dir, int dfd, const char *name)
{
	char ts[SHB_TS_LEN];
	struct shb_backup *b;
	struct stat st;
	char *path;
	time_t t;
	int skip;

	if (shb_backup_name_parse(name, ts, &t) < 0)
		return SHB_OK;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return SHB_OK;  /* gone since readdir */
	if (!S_ISREG(st.st_mode)) {
		if (!cat->ignored++)
			memcpy(cat->ignored_name, name, strlen(name) + 1);  /* parsed: <= 44 bytes */
		return SHB_OK;
	}
	if (!(path = shb_aprintf("%s/%s", dir, name)))
		return SHB_ENOMEM;
	if (!(b = item_for(cat, name, ts, t, 0, &skip))) {
		free(path);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	if (skip) {
		free(path);
		return SHB_OK;
	}
	free(b->local_path);
	b->local_path = path;
	b->local_size = (uint64_t)st.st_size;
	b->local_ino = (uint64_t)st.st_ino;
	b->local_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return SHB_OK;
}

static void sort(struct shb_catalog *cat)
{
	if (cat->n)
		qsort(cat->items, cat->n, sizeof(*cat->items), newest_first);
}

int shb_catalog_add_local(struct shb_catalog *cat, const char *dir)
{
	struct dirent *de;
	int rc, fd;
	DIR *d;

	if ((rc = shb_open_backup_dir(dir, &fd)))
		return rc == SHB_ENOTFOUND ? SHB_OK : rc;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return shb_fail_errno(SHB_EIO, "cannot read backup directory '%s'", dir);
	}
	while (!rc && (de = readdir(d)))
		rc = add_local(cat, dir, dirfd(d), de->d_name);
	closedir(d);
	sort(cat);
	return rc;
}

int shb_catalog_add_s3(struct shb_catalog *cat, struct shb_s3 *s3, const char *prefix)
{
	/* prefix is normalised where it was read (config.h), as upload keys are. */
	struct shb_s3_page page;
	char *dir = *prefix ? shb_aprintf("%s/", prefix) : strdup("");
	size_t dlen;
	int rc;

	if (!dir)
		return shb_fail(SHB_ENOMEM, "out of memory");
	dlen = strlen(dir);
	rc = shb_s3_list(s3, dir, &page);
	for (size_t i = 0; !rc && i < page.n; i++) {
		const struct shb_s3_object *o = &page.items[i];
		const char *name = o->key + dlen;
		char ts[SHB_TS_LEN];
		struct shb_backup *b;
		time_t t;
		int skip;

		if (strncmp(o->key, dir, dlen) || shb_backup_name_parse(name, ts, &t) < 0)
			continue;
		if (!(b = item_for(cat, name, ts, t, 1, &skip))) {
			rc = shb_fail(SHB_ENOMEM, "out of memory");
			break;
		}
		if (skip)
			continue;
		free(b->s3_key);
		free(b->s3_etag);
		b->s3_size = o->size;
		b->s3_etag = o->etag ? strdup(o->etag) : NULL;
		if (!(b->s3_key = strdup(o->key)) || (o->etag && !b->s3_etag))
			rc = shb_fail(SHB_ENOMEM, "out of memory");
	}
	shb_s3_page_free(&page);
	free(dir);
	sort(cat);
	return rc;
}

int shb_backup_time_in_future(time_t t, time_t now)
{
	return t > now && t - now > SHB_FUTURE_SKEW_SECONDS;
}

const struct shb_backup *shb_catalog_latest(const struct shb_catalog *cat, time_t now)
{
	for (size_t i = 0; i < cat->n; i++)
		if (!shb_backup_time_in_future(cat->items[i].time, now))
			return &cat->items[i];
	return NULL;
}

size_t shb_catalog_count_future(const struct shb_catalog *cat, time_t now)
{
	size_t n = 0;

	for (size_t i = 0; i < cat->n; i++)
		n += shb_backup_time_in_future(cat->items[i].time, now) != 0;
	return n;
}

size_t shb_catalog_match(const struct shb_catalog *cat, const char *from,
			 const struct shb_backup **hit)
{
	size_t n = 0;

	if (!strcmp(from, "latest")) {
		*hit = shb_catalog_latest(cat, time(NULL));
		return *hit ? 1 : 0;
	}
	*hit = NULL;
	for (size_t i = 0; *from && i < cat->n; i++)
		if (strstr(cat->items[i].name, from) && ++n == 1)
			*hit = &cat->items[i];
	return n;
}

const char *shb_backup_source(const struct shb_backup *b)
{
	return b->local_path && b->s3_key ? "both" : b->s3_key ? "s3" : "local";
}

void shb_catalog_free(struct shb_catalog *cat)
{
	for (size_t i = 0; i < cat->n; i++) {
		free(cat->items[i].name);
		free(cat->items[i].local_path);
		free(cat->items[i].s3_key);
		free(cat->items[i].s3_etag);
	}
	free(cat->items);
	cat->items = NULL;
	cat->n = cat->alloc = 0;
	cat->ignored = 0;
}

size_t shb_index_count_apps(const struct shb_index *idx)
{
	size_t n = 0;

	for (size_t i = 0; i < idx->nentries; i++) {
		const char *p = strchr(idx->entries[i].path, '/');
		const char *app, *rest;

		if (!p || strncmp(p, "/apps/", 6) || idx->entries[i].type != SHB_ENTRY_FILE)
			continue;
		app = p + 6;
		rest = strchr(app, '/');
		if (rest && rest > app && !strcmp(rest, "/app.db")) {
			char name[256];

			/* Only what the layout check accepts counts (layout.h). */
			if ((size_t)(rest - app) < sizeof(name)) {
				memcpy(name, app, (size_t)(rest - app));
				name[rest - app] = '\0';
				n += shb_app_name_ok(name);
			}
		}
	}
	return n;
}
