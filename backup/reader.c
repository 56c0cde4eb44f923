/*
 * The archive reader (reader.h): footer and index loading, and ranged reads
 * that inflate only the members a range touches.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "error.h"
#include "reader.h"

struct shb_reader {
	struct shb_source *src;
	struct shb_index *idx;
	uint64_t inflated;
};

/* Reads footer and index members, which end the file. */
static int load_index(struct shb_source *src, struct shb_index **idx)
{
	uint64_t tail_len = src->size < SHB_TAIL_READ ? src->size : SHB_TAIL_READ;
	uint64_t tail_off = src->size - tail_len;
	unsigned char *tail = NULL, *blob = NULL, *span;
	struct shb_footer f;
	int rc;

	if (src->size < SHB_FOOTER_SIZE)
		return shb_fail(SHB_EFORMAT, "'%s' is too small to be a backup archive", src->name);
	if (!(tail = malloc(tail_len)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	if ((rc = shb_source_read(src, tail, tail_len, tail_off)))
		goto out;
	if ((rc = shb_footer_parse(tail + tail_len - SHB_FOOTER_SIZE, &f)))
		goto out;
	if (f.index_offset > src->size - SHB_FOOTER_SIZE
	    || f.index_length != src->size - SHB_FOOTER_SIZE - f.index_offset) {
		rc = shb_fail(SHB_EFORMAT, "index footer of '%s' points outside the file", src->name);
		goto out;
	}
	if (f.index_offset >= tail_off) {
		span = tail + (f.index_offset - tail_off);
	} else {
		/* A big index: fetch it whole, replacing the tail. */
		free(tail);
		if (!(tail = malloc(f.index_length))) {
			rc = shb_fail(SHB_ENOMEM, "out of memory loading an index of %llu bytes",
				      (unsigned long long)f.index_length);
			goto out;
		}
		if ((rc = shb_source_read(src, tail, f.index_length, f.index_offset)))
			goto out;
		span = tail;
	}
	if (!(rc = shb_index_members_parse(span, f.index_length, &f, &blob)))
		rc = shb_index_decode(blob, f.blob_length, idx);
	if (!rc && (*idx)->nmembers
	    && (*idx)->members[(*idx)->nmembers - 1].coff
	       + (*idx)->members[(*idx)->nmembers - 1].clen != f.index_offset) {
		shb_index_free(*idx);
		rc = shb_fail(SHB_EFORMAT, "archive index of '%s' does not match its members",
			      src->name);
	}
out:
	free(blob);
	free(tail);
	return rc;
}

int shb_reader_open(struct shb_source *src, struct shb_reader **out)
{
	struct shb_reader *r = calloc(1, sizeof(*r));
	int rc;

	if (!r) {
		shb_source_close(src);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	r->src = src;
	if ((rc = load_index(src, &r->idx))) {
		if (rc == SHB_EFORMAT || rc == SHB_ECORRUPT)
			rc = shb_fail(rc, "cannot read the index of '%s': %s", src->name,
				      shb_errmsg());
		shb_reader_close(r);
		return rc;
	}
	*out = r;
	return SHB_OK;
}

const struct shb_index *shb_reader_index(const struct shb_reader *r)
{
	return r->idx;
}

struct shb_source *shb_reader_source(const struct shb_reader *r)
{
	return r->src;
}

/* Inflates one gzip member of exactly clen bytes into exactly ulen bytes. */
static int inflate_member(const unsigned char *in, uint32_t clen, unsigned char *out,
			  uint32_t ulen)
{
	z_stream z = { 0 };
	unsigned char spare;
	int zrc;

	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return SHB_ENOMEM;
	z.next_in = (unsigned char *)in;
	z.avail_in = clen;
	z.next_out = out;
	z.avail_out = ulen;
	zrc = inflate(&z, Z_FINISH);
	if (zrc == Z_BUF_ERROR && z.avail_out == 0) {
		/* Output full: the member must end right here. */
		z.next_out = &spare;
		z.avail_out = 1;
		zrc = inflate(&z, Z_FINISH);
	}
	inflateEnd(&z);
	return zrc == Z_STREAM_END && z.avail_in == 0 && z.avail_out == 0 && z.total_out == ulen
		? SHB_OK : SHB_ECORRUPT;
}

int shb_reader_pread(struct shb_reader *r, const struct shb_entry *e, void *buf, size_t len,
		     uint64_t off, size_t *got)
{
	const struct shb_index *idx = r->idx;
	unsigned char *comp = NULL, *plain = NULL;
	uint64_t start, end, pos;
	size_t lo, hi;
	int rc = SHB_OK;

	*got = 0;
	if (off >= e->size || len == 0)
		return SHB_OK;
	if (len > e->size - off)
		len = (size_t)(e->size - off);
	start = e->offset + off;
	end = start + len;
	lo = shb_index_member_at(idx, start);
	hi = shb_index_member_at(idx, end - 1);
	uint64_t cstart = idx->members[lo].coff;
	uint64_t clen = idx->members[hi].coff + idx->members[hi].clen - cstart;

	comp = malloc(clen);
	plain = malloc(idx->block_size);
	if (!comp || !plain) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shb_source_read(r->src, comp, clen, cstart)))
		goto out;
	pos = start;
	for (size_t i = lo; i <= hi; i++) {
		const struct shb_member *m = &idx->members[i];
		uint64_t from = pos - m->uoff;
		uint64_t n = m->uoff + m->ulen < end ? m->uoff + m->ulen - pos : end - pos;

		if (inflate_member(comp + (m->coff - cstart), m->clen, plain, m->ulen)) {
			rc = shb_fail(SHB_ECORRUPT, "damaged data in '%s' (member %zu at offset %llu)",
				      r->src->name, i, (unsigned long long)m->coff);
			goto out;
		}
		__atomic_add_fetch(&r->inflated, 1, __ATOMIC_RELAXED);
		memcpy((unsigned char *)buf + (pos - start), plain + from, n);
		pos += n;
	}
	*got = len;
out:
	free(plain);
	free(comp);
	return rc;
}

uint64_t shb_reader_inflated(const struct shb_reader *r)
{
	return __atomic_load_n(&r->inflated, __ATOMIC_RELAXED);
}

void shb_reader_close(struct shb_reader *r)
{
	if (!r)
		return;
	shb_index_free(r->idx);
	shb_source_close(r->src);
	free(r);
}
