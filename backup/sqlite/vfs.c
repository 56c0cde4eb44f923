/*
 * The read-only archive VFS (vfs.h).  shb_vfs_open() hands the (reader,
 * entry) pair to xOpen through the open's own URI, as SQLite's memvfs
 * does: "file:archive.db?immutable=1&shb=<hex address of a struct
 * open_arg on its stack>", read back with sqlite3_uri_parameter() and
 * checked by a magic number, so no global state is shared between opens.
 * Everything but reading is either a no-op (locks) or refused (writes),
 * and time, randomness and sleep come from the default VFS.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "vfs.h"

#define CACHE_BLOCKS 8

struct block {
	uint64_t index;
	size_t len;
	unsigned char *data;
	uint64_t used;
};

/* One open db file: used by the one connection that opened it, never shared. */
struct vfile {
	sqlite3_file base;
	struct shb_reader *r;
	const struct shb_entry *e;
	uint32_t bsize;
	struct block cache[CACHE_BLOCKS];
	uint64_t clock;
};

#define OPEN_MAGIC 0x73686276u  /* "shbv" */

/* The pair being opened, handed from shb_vfs_open() to xOpen in the URI. */
struct open_arg {
	uint32_t magic;             /* OPEN_MAGIC: the address came from shb_vfs_open() */
	struct shb_reader *r;
	const struct shb_entry *e;
};

/* Entry block k, from the cache or one reader call. */
static int block(struct vfile *f, uint64_t k, const unsigned char **p, size_t *len)
{
	struct block *victim = &f->cache[0];
	size_t got;

	for (int i = 0; i < CACHE_BLOCKS; i++) {
		struct block *b = &f->cache[i];

		if (b->data && b->index == k) {
			b->used = ++f->clock;
			*p = b->data;
			*len = b->len;
			return SQLITE_OK;
		}
		if (!b->data || b->used < victim->used)
			victim = b;
	}
	if (!victim->data && !(victim->data = malloc(f->bsize)))
		return SQLITE_NOMEM;
	if (shb_reader_pread(f->r, f->e, victim->data, f->bsize, k * f->bsize, &got)) {
		victim->used = 0;
		victim->index = UINT64_MAX;
		return SQLITE_IOERR_READ;
	}
	victim->index = k;
	victim->len = got;
	victim->used = ++f->clock;
	*p = victim->data;
	*len = got;
	return SQLITE_OK;
}

static int x_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct vfile *f = (struct vfile *)file;
	unsigned char *out = buf;
	uint64_t pos = (uint64_t)off, end = pos + (uint64_t)amt;

	while (pos < end) {
		const unsigned char *p;
		size_t len;
		uint64_t k = pos / f->bsize, in = pos % f->bsize;
		int rc = block(f, k, &p, &len);

		if (rc)
			return rc;
		if (in >= len) {  /* past the end: SQLite wants zeros */
			memset(out + (pos - (uint64_t)off), 0, end - pos);
			return SQLITE_IOERR_SHORT_READ;
		}
		size_t n = len - in < end - pos ? len - in : (size_t)(end - pos);
		memcpy(out + (pos - (uint64_t)off), p + in, n);
		pos += n;
	}
	/* Rollback mode on the way out: a WAL db cannot open immutable otherwise. */
	for (uint64_t at = 18; at <= 19; at++)
		if (at >= (uint64_t)off && at < end && out[at - off] == 2)
			out[at - off] = 1;
	return SQLITE_OK;
}

static int x_close(sqlite3_file *file)
{
	struct vfile *f = (struct vfile *)file;

	for (int i = 0; i < CACHE_BLOCKS; i++)
		free(f->cache[i].data);
	return SQLITE_OK;
}

static int x_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	(void)f; (void)b; (void)n; (void)o;
	return SQLITE_READONLY;
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 n)
{
	(void)f; (void)n;
	return SQLITE_READONLY;
}

static int x_sync(sqlite3_file *f, int flags)
{
	(void)f; (void)flags;
	return SQLITE_OK;
}

static int x_size(sqlite3_file *file, sqlite3_int64 *size)
{
	*size = (sqlite3_int64)((struct vfile *)file)->e->size;
	return SQLITE_OK;
}

static int x_lock(sqlite3_file *f, int level)
{
	(void)f; (void)level;
	return SQLITE_OK;
}

static int x_reserved(sqlite3_file *f, int *out)
{
	(void)f;
	*out = 0;
	return SQLITE_OK;
}

static int x_control(sqlite3_file *f, int op, void *arg)
{
	(void)f; (void)op; (void)arg;
	return SQLITE_NOTFOUND;
}

static int x_sector(sqlite3_file *f)
{
	(void)f;
	return 4096;
}

static int x_caps(sqlite3_file *f)
{
	(void)f;
	return SQLITE_IOCAP_IMMUTABLE;
}

static const sqlite3_io_methods io = {
	.iVersion = 1, .xClose = x_close, .xRead = x_read, .xWrite = x_write,
	.xTruncate = x_truncate, .xSync = x_sync, .xFileSize = x_size, .xLock = x_lock,
	.xUnlock = x_lock, .xCheckReservedLock = x_reserved, .xFileControl = x_control,
	.xSectorSize = x_sector, .xDeviceCharacteristics = x_caps,
};

/* The open_arg whose address the URI of the main db name carries, or NULL. */
static const struct open_arg *open_arg_of(const char *name, int flags)
{
	const char *v = (flags & SQLITE_OPEN_URI) && name ? sqlite3_uri_parameter(name, "shb") : NULL;
	const struct open_arg *a;
	char *end;
	uintmax_t addr;

	if (!v || !*v)
		return NULL;
	addr = strtoumax(v, &end, 16);
	if (*end || !addr || addr > UINTPTR_MAX)
		return NULL;
	a = (const struct open_arg *)(uintptr_t)addr;
	return a->magic == OPEN_MAGIC ? a : NULL;
}

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
	struct vfile *f = (struct vfile *)file;
	const struct open_arg *a = (flags & SQLITE_OPEN_MAIN_DB) ? open_arg_of(name, flags) : NULL;

	(void)vfs;
	memset(f, 0, sizeof(*f));
	if (!a)
		return SQLITE_CANTOPEN;
	f->r = a->r;
	f->e = a->e;
	f->bsize = shb_reader_index(a->r)->block_size;
	f->base.pMethods = &io;
	if (out)
		*out = SQLITE_OPEN_READONLY;
	return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *n, int s)
{
	(void)v; (void)n; (void)s;
	return SQLITE_READONLY;
}

static int v_access(sqlite3_vfs *v, const char *n, int flags, int *out)
{
	(void)v; (void)n; (void)flags;
	*out = 0;  /* no journal, no -wal: nothing but the db exists */
	return SQLITE_OK;
}

static int v_fullpath(sqlite3_vfs *v, const char *n, int len, char *out)
{
	(void)v;
	snprintf(out, (size_t)len, "%s", n);
	return SQLITE_OK;
}

static int v_random(sqlite3_vfs *v, int n, char *out)
{
	sqlite3_vfs *d = sqlite3_vfs_find(NULL);

	(void)v;
	return d->xRandomness(d, n, out);
}

static int v_sleep(sqlite3_vfs *v, int us)
{
	sqlite3_vfs *d = sqlite3_vfs_find(NULL);

	(void)v;
	return d->xSleep(d, us);
}

static int v_time(sqlite3_vfs *v, double *out)
{
	sqlite3_vfs *d = sqlite3_vfs_find(NULL);

	(void)v;
	return d->xCurrentTime(d, out);
}

static sqlite3_vfs vfs = {
	.iVersion = 1, .szOsFile = sizeof(struct vfile), .mxPathname = 512,
	.zName = "shb-archive", .xOpen = v_open, .xDelete = v_delete, .xAccess = v_access,
	.xFullPathname = v_fullpath, .xRandomness = v_random, .xSleep = v_sleep,
	.xCurrentTime = v_time,
};

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void register_vfs(void)
{
	sqlite3_vfs_register(&vfs, 0);
}

int shb_vfs_open(struct shb_reader *r, const struct shb_entry *e, sqlite3 **db)
{
	struct open_arg a = { .magic = OPEN_MAGIC, .r = r, .e = e };
	char uri[64];
	int rc;

	pthread_once(&once, register_vfs);
	snprintf(uri, sizeof(uri), "file:archive.db?immutable=1&shb=%" PRIxPTR, (uintptr_t)&a);
	rc = sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "shb-archive");
	if (rc != SQLITE_OK) {
		shb_fail(SHB_ESQLITE, "cannot open '%s' in the archive: %s", e->path,
			 sqlite3_errmsg(*db));
		sqlite3_close(*db);
		*db = NULL;
		return SHB_ESQLITE;
	}
	/* A db of an encrypted backup must not spill plaintext into temp files. */
	sqlite3_exec(*db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL);
	return SHB_OK;
}
