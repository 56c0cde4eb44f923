/*
 * The archive reader (reader.h): footer and index loading, and ranged reads
 * that inflate only the members a range touches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "error.h"
#include "reader.h"
#include "zindex.h"

struct shb_reader {
	struct shb_source *src;
	struct shb_index *idx;      /* ours, or the entries of z */
	struct shb_zindex *z;       /* a plain tar.gz: access points */
	unsigned char *trailer;  /* index members + footer: the file's last bytes */
	size_t trailer_len;
	uint64_t inflated;
};

static int check_trailer(struct shb_reader *r, const unsigned char *t, size_t len);

/*
 * Parses the trailer t (the last len bytes of src) into r.  Once a footer of
 * ours is found, anything wrong after it is damage (SHB_ECORRUPT), never
 * "not our format": a lying index must not send readers to other paths.
 */
static int parse_trailer(struct shb_reader *r, const unsigned char *t, size_t len)
{
	int rc = check_trailer(r, t, len);

	if (rc == SHB_EFORMAT && len >= SHB_FOOTER_SIZE) {
		struct shb_footer f;
		char msg[1024];

		snprintf(msg, sizeof(msg), "%s", shb_errmsg());
		if (!shb_footer_parse(t + len - SHB_FOOTER_SIZE, &f))
			rc = shb_fail(SHB_ECORRUPT, "%s", msg);
		else
			shb_fail(rc, "%s", msg);
	}
	return rc;
}

static int check_trailer(struct shb_reader *r, const unsigned char *t, size_t len)
{
	uint64_t size = r->src->size;
	unsigned char *blob = NULL;
	struct shb_footer f;
	int rc;

	if (len < SHB_FOOTER_SIZE || len > size)
		return shb_fail(SHB_EFORMAT, "'%s' is too small to be a backup archive", r->src->name);
	if ((rc = shb_footer_parse(t + len - SHB_FOOTER_SIZE, &f)))
		return rc;
	if (f.index_offset > size - SHB_FOOTER_SIZE
	    || f.index_length != size - SHB_FOOTER_SIZE - f.index_offset
	    || size - f.index_offset != len)
		return shb_fail(SHB_EFORMAT, "index footer of '%s' points outside the file",
				r->src->name);
	if (!(rc = shb_index_members_parse(t, f.index_length, &f, &blob)))
		rc = shb_index_decode(blob, f.blob_length, &r->idx);
	free(blob);
	if (!rc && r->idx->nmembers
	    && r->idx->members[r->idx->nmembers - 1].coff
	       + r->idx->members[r->idx->nmembers - 1].clen != f.index_offset)
		rc = shb_fail(SHB_EFORMAT, "archive index of '%s' does not match its members",
			      r->src->name);
	if (!rc && !(r->trailer = malloc(len)))
		rc = shb_fail(SHB_ENOMEM, "out of memory");
	if (!rc) {
		memcpy(r->trailer, t, len);
		r->trailer_len = len;
	}
	return rc;
}

/* Reads the trailer: one read of the file's tail unless the index is big. */
static int load_index(struct shb_reader *r)
{
	struct shb_source *src = r->src;
	uint64_t tail_len = src->size < SHB_TAIL_READ ? src->size : SHB_TAIL_READ;
	uint64_t tail_off = src->size - tail_len;
	unsigned char *tail = NULL;
	struct shb_footer f;
	int rc;

	if (src->size < SHB_FOOTER_SIZE)
		return shb_fail(SHB_EFORMAT, "'%s' is too small to be a backup archive", src->name);
	if (!(tail = malloc(tail_len)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	if ((rc = shb_source_read(src, tail, tail_len, tail_off))
	    || (rc = shb_footer_parse(tail + tail_len - SHB_FOOTER_SIZE, &f)))
		goto out;
	if (f.index_offset >= tail_off && f.index_offset < src->size) {
		rc = parse_trailer(r, tail + (f.index_offset - tail_off), src->size - f.index_offset);
	} else if (f.index_offset < tail_off && src->size - f.index_offset <= (64u << 20)) {
		uint64_t len = src->size - f.index_offset;

		free(tail);
		if (!(tail = malloc(len)))
			rc = shb_fail(SHB_ENOMEM, "out of memory");
		else if (!(rc = shb_source_read(src, tail, len, f.index_offset)))
			rc = parse_trailer(r, tail, len);
	} else {
		rc = shb_fail(SHB_ECORRUPT, "index footer of '%s' points outside the file", src->name);
	}
out:
	free(tail);
	return rc;
}

/*
 * Opens src as ours (from the saved trailer, or its tail) or, with plain,
 * as a plain tar.gz (from a saved access-point index, or one pass).
 */
static int open_reader(struct shb_source *src, int plain, const unsigned char *saved,
		       size_t len, struct shb_reader **out)
{
	struct shb_reader *r = calloc(1, sizeof(*r));
	int rc;

	if (!r) {
		shb_source_close(src);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	r->src = src;
	if (plain) {
		rc = saved ? shb_zindex_decode(saved, len, &r->z) : shb_zindex_build(src, &r->z);
		if (!rc)
			r->idx = &r->z->entries;
	} else {
		rc = saved ? parse_trailer(r, saved, len) : load_index(r);
		if (rc == SHB_EFORMAT || rc == SHB_ECORRUPT)
			rc = shb_fail(rc, "cannot read the index of '%s': %s", src->name,
				      shb_errmsg());
	}
	if (rc) {
		shb_reader_close(r);
		return rc;
	}
	*out = r;
	return SHB_OK;
}

int shb_reader_open(struct shb_source *src, struct shb_reader **out)
{
	return open_reader(src, 0, NULL, 0, out);
}

int shb_reader_open_trailer(struct shb_source *src, const unsigned char *trailer, size_t len,
			    struct shb_reader **out)
{
	return open_reader(src, 0, trailer, len, out);
}

int shb_reader_open_plain(struct shb_source *src, const unsigned char *cached, size_t len,
			  struct shb_reader **out)
{
	return open_reader(src, 1, cached, len, out);
}

int shb_reader_seekable(const struct shb_reader *r)
{
	return r->z == NULL;
}

size_t shb_reader_segment_at(const struct shb_reader *r, uint64_t uoff, uint64_t *start,
			     size_t *len)
{
	return shb_zindex_segment_at(r->z, uoff, start, len);
}

int shb_reader_read_segment(struct shb_reader *r, size_t i, unsigned char *buf)
{
	return shb_zindex_read_segment(r->src, r->z, i, buf);
}

int shb_reader_plain_index(const struct shb_reader *r, unsigned char **out, size_t *len)
{
	if (!r->z)
		return shb_fail(SHB_EINVAL, "not a plain archive");
	return shb_zindex_encode(r->z, out, len);
}

void shb_reader_trailer(const struct shb_reader *r, const unsigned char **p, size_t *len)
{
	*p = r->trailer;
	*len = r->trailer_len;
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

int shb_reader_fetch(struct shb_reader *r, size_t lo, size_t hi, unsigned char *comp)
{
	const struct shb_member *m = r->idx->members;

	return shb_source_read(r->src, comp, m[hi].coff + m[hi].clen - m[lo].coff, m[lo].coff);
}

int shb_reader_inflate(struct shb_reader *r, size_t i, const unsigned char *comp,
		       unsigned char *plain)
{
	const struct shb_member *m = &r->idx->members[i];

	if (inflate_member(comp, m->clen, plain, m->ulen))
		return shb_fail(SHB_ECORRUPT, "damaged data in '%s' (member %zu at offset %llu)",
				r->src->name, i, (unsigned long long)m->coff);
	__atomic_add_fetch(&r->inflated, 1, __ATOMIC_RELAXED);
	return SHB_OK;
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
	if (r->z) {
		if ((rc = shb_zindex_read(r->src, r->z, e->offset + off, len, buf)))
			return rc;
		*got = len;
		return SHB_OK;
	}
	start = e->offset + off;
	end = start + len;
	lo = shb_index_member_at(idx, start);
	hi = shb_index_member_at(idx, end - 1);
	comp = malloc(idx->members[hi].coff + idx->members[hi].clen - idx->members[lo].coff);
	plain = malloc(idx->block_size);
	if (!comp || !plain) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shb_reader_fetch(r, lo, hi, comp)))
		goto out;
	pos = start;
	for (size_t i = lo; i <= hi; i++) {
		const struct shb_member *m = &idx->members[i];
		uint64_t n = m->uoff + m->ulen < end ? m->uoff + m->ulen - pos : end - pos;

		if ((rc = shb_reader_inflate(r, i, comp + (m->coff - idx->members[lo].coff), plain)))
			goto out;
		memcpy((unsigned char *)buf + (pos - start), plain + (pos - m->uoff), n);
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
	if (r->z)
		shb_zindex_free(r->z);
	else
		shb_index_free(r->idx);
	shb_source_close(r->src);
	free(r->trailer);
	free(r);
}
