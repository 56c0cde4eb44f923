/*
 * Reading a file of a backup: map the range to members, take each from the
 * memory cache, else from the disk cache (remote archives), else fetch the
 * missing run of adjacent members in one source read (one GET), cache the
 * compressed bytes, inflate with the CRC check, and keep the result in
 * memory.  Sequential readers get a read-ahead that doubles while they stay
 * sequential.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "error.h"
#include "shbfs.h"

#define AHEAD_MAX 32            /* members: 8 MiB of data */
#define RUN_MAX (16u << 20)     /* compressed bytes in one fetch */

struct job {
	struct shbfs *fs;
	struct shbfs_backup *b;
	const struct shb_index *idx;
	unsigned char *plain;       /* one member's bytes */
};

static void member_name(const struct shbfs_backup *b, size_t i, char *out, size_t len)
{
	snprintf(out, len, "m-%s-%zu", b->key, i);
}

static int in_memory(struct job *j, size_t i)
{
	return !shbfs_cache_get_plain(j->fs->cache, j->b->key, i, j->plain,
				      j->idx->members[i].ulen);
}

static int on_disk(struct job *j, size_t i, unsigned char *comp)
{
	char name[80];

	if (!j->b->remote)
		return 0;
	member_name(j->b, i, name, sizeof(name));
	return !shbfs_cache_get(j->fs->cache, name, comp, j->idx->members[i].clen);
}

/* Inflates member i from comp into j->plain and remembers it. */
static int settle(struct job *j, size_t i, const unsigned char *comp)
{
	int rc = shb_reader_inflate(j->b->reader, i, comp, j->plain);

	if (!rc)
		shbfs_cache_put_plain(j->fs->cache, j->b->key, i, j->plain, j->idx->members[i].ulen);
	return rc;
}

/*
 * Fetches members i.. (as many adjacent ones up to last as are in no cache,
 * within RUN_MAX) in one read; caches and inflates them.  Returns how many
 * members were handled, or -1.
 */
static long fetch_run(struct job *j, size_t i, size_t last)
{
	const struct shb_member *m = j->idx->members;
	size_t k = i;
	unsigned char *comp;
	char name[80];
	int rc;

	while (k < last && m[k + 1].coff + m[k + 1].clen - m[i].coff <= RUN_MAX
	       && !shbfs_cache_has_plain(j->fs->cache, j->b->key, k + 1))
		k++;
	if (!(comp = malloc(m[k].coff + m[k].clen - m[i].coff))) {
		shb_fail(SHB_ENOMEM, "out of memory");
		return -1;
	}
	rc = shb_reader_fetch(j->b->reader, i, k, comp);
	if (j->b->remote)
		shbfs_s3_status(j->fs, rc, shb_errmsg());
	if (rc) {
		free(comp);
		return -1;
	}
	for (size_t x = i; x <= k; x++) {
		const unsigned char *c = comp + (m[x].coff - m[i].coff);

		if (j->b->remote) {
			member_name(j->b, x, name, sizeof(name));
			shbfs_cache_put(j->fs->cache, name, c, m[x].clen);
		}
		if (settle(j, x, c)) {
			free(comp);
			return -1;
		}
	}
	free(comp);
	return (long)(k - i + 1);
}

/* Makes member i available in j->plain (mem, disk or source). */
static int load(struct job *j, size_t i, size_t last)
{
	unsigned char *comp;
	char name[80];
	int rc;

	shbfs_prefetch_wait(j->fs, j->b, i);
	if (in_memory(j, i))
		return SHB_OK;
	if ((comp = malloc(j->idx->members[i].clen)) && on_disk(j, i, comp)) {
		rc = settle(j, i, comp);
		free(comp);
		if (!rc)
			return SHB_OK;
		/* A damaged cache file: drop it and go to the source. */
		member_name(j->b, i, name, sizeof(name));
		shbfs_cache_drop(j->fs->cache, name);
	} else {
		free(comp);
	}
	if (fetch_run(j, i, last) < 0)
		return SHB_EIO;
	return in_memory(j, i) ? SHB_OK : SHB_EIO;
}

/* The read-ahead for a read at off: doubles while the reader is sequential. */
static size_t ahead_for(struct shbfs_handle *h, uint64_t off, size_t size)
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
	return ahead;
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

/*
 * A plain tar.gz: whole segments (from one access point to the next), each
 * inflated once and kept in memory, so sequential readers do not inflate
 * the same span again for every request.
 */
static int read_plain(struct shbfs *fs, struct shbfs_backup *b, char *buf, uint64_t start,
		      size_t size)
{
	uint64_t end = start + size, pos = start;
	unsigned char *seg = NULL;
	int rc = SHB_OK;

	while (pos < end && !rc) {
		uint64_t sstart;
		size_t slen, i = shb_reader_segment_at(b->reader, pos, &sstart, &slen);
		size_t n = end < sstart + slen ? (size_t)(end - pos) : (size_t)(sstart + slen - pos);

		free(seg);
		if (!(seg = malloc(slen ? slen : 1))) {
			rc = shb_fail(SHB_ENOMEM, "out of memory");
			break;
		}
		if (shbfs_cache_get_plain(fs->cache, b->key, i, seg, slen)) {
			if ((rc = shb_reader_read_segment(b->reader, i, seg)))
				break;
			shbfs_cache_put_plain(fs->cache, b->key, i, seg, slen);
		}
		memcpy(buf + (pos - start), seg + (pos - sstart), n);
		pos += n;
	}
	free(seg);
	return rc;
}

void shbfs_fill(struct shbfs *fs, struct shbfs_backup *b, size_t lo, size_t hi)
{
	struct job j = { fs, b, shb_reader_index(b->reader), NULL };

	if ((j.plain = malloc(j.idx->block_size)))
		fetch_run(&j, lo, hi);
	free(j.plain);
}

int shbfs_read(struct shbfs *fs, struct shbfs_handle *h, char *buf, size_t size, uint64_t off)
{
	struct shbfs_backup *b = h->b;
	const struct shb_layout_file *f = &b->layout.files[h->file];
	struct job j = { fs, b, shb_reader_index(b->reader), NULL };
	const struct shb_entry *e = &j.idx->entries[f->raw];
	uint64_t start, end, pos;
	size_t lo, hi, last, ahead;
	int rc = SHB_OK;

	if (off >= e->size || !size)
		return 0;
	if (size > e->size - off)
		size = (size_t)(e->size - off);
	if (!shb_reader_seekable(b->reader)) {
		if (read_plain(fs, b, buf, e->offset + off, size)) {
			shbfs_log(LOG_ERR, "read of %s/%s at %llu failed: %s", b->ts, f->rel,
				  (unsigned long long)off, shb_errmsg());
			return -EIO;
		}
		patch_header(f, buf, off, size);
		return (int)size;
	}
	start = e->offset + off;
	end = start + size;
	lo = shb_index_member_at(j.idx, start);
	hi = shb_index_member_at(j.idx, end - 1);
	last = shb_index_member_at(j.idx, e->offset + e->size - 1);  /* the entry's end */
	ahead = ahead_for(h, off, size);
	if (hi + ahead < last)
		last = hi + ahead;
	if (!(j.plain = malloc(j.idx->block_size)))
		return -ENOMEM;
	/* The request fetches only what it needs; the rest is read-ahead. */
	for (size_t i = lo; i <= hi && !rc; i++) {
		const struct shb_member *m = &j.idx->members[i];
		uint64_t stop = end < m->uoff + m->ulen ? end : m->uoff + m->ulen;

		if ((rc = load(&j, i, hi)))
			break;
		pos = start > m->uoff ? start : m->uoff;
		memcpy(buf + (pos - start), j.plain + (pos - m->uoff), stop - pos);
	}
	free(j.plain);
	/* Read-ahead: the members after the request, inflated by the workers. */
	if (!rc && last > hi)
		shbfs_prefetch(fs, b, hi + 1, last, b->remote ? AHEAD_MAX : 2);
	if (rc) {
		/* During an S3 outage the one "S3 unreachable" line says it all. */
		if (!b->remote || !__atomic_load_n(&fs->s3_down, __ATOMIC_ACQUIRE))
			shbfs_log(LOG_ERR, "read of %s/%s at %llu failed: %s", b->ts, f->rel,
				  (unsigned long long)off, shb_errmsg());
		return -EIO;
	}
	patch_header(f, buf, off, size);
	return (int)size;
}
