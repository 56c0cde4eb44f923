/*
 * The archive reader (reader.h): footer and index loading, and ranged reads
 * by pieces (members, or a plain archive's segments) that inflate only the
 * pieces a range touches, through the memory cache of pieces.h when given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "error.h"
#include "pieces.h"
#include "reader.h"
#include "zindex.h"

/* Compressed bytes at most in one source read of a run of members. */
#define RUN_MAX (16u << 20)

/* The next reader's serial number: owners in the memory cache are never reused. */
static uint64_t next_serial;

struct shb_reader {
	struct shb_source *src;
	struct shb_index *idx;      /* ours, or the entries of z */
	struct shb_zindex *z;       /* a plain tar.gz: access points */
	unsigned char *trailer;  /* index members + footer: the file's last bytes */
	size_t trailer_len;
	uint64_t serial;            /* names this reader's pieces in a shb_pieces */
	uint64_t inflated;          /* atomic */
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
	r->serial = __atomic_add_fetch(&next_serial, 1, __ATOMIC_RELAXED);
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

/* --- reading: pieces, memory cache, read-ahead ------------------------------ */

/* The piece holding tar offset uoff: a member, or a plain archive's segment. */
static size_t piece_at(const struct shb_reader *r, uint64_t uoff)
{
	uint64_t start;
	size_t len;

	if (r->z)
		return shb_zindex_segment_at(r->z, uoff, &start, &len);
	return shb_index_member_at(r->idx, uoff);
}

/* The tar bytes piece i holds: [*start, *start + *len). */
static void piece_span(const struct shb_reader *r, size_t i, uint64_t *start, uint64_t *len)
{
	if (r->z) {
		uint64_t end = i + 1 < r->z->npoints ? r->z->points[i + 1].uoff : r->z->usize;

		*start = r->z->points[i].uoff;
		*len = end - *start;
	} else {
		*start = r->idx->members[i].uoff;
		*len = r->idx->members[i].ulen;
	}
}

/* A read in progress: tar bytes [start, end) into buf; buf NULL for read-ahead. */
struct want {
	uint64_t start, end;
	unsigned char *buf;
};

/* The part of piece i that w wants: [*from, *to), empty when *from >= *to. */
static void overlap(const struct shb_reader *r, size_t i, const struct want *w, uint64_t *ps,
		    uint64_t *from, uint64_t *to)
{
	uint64_t len;

	piece_span(r, i, ps, &len);
	*from = *ps > w->start ? *ps : w->start;
	*to = *ps + len < w->end ? *ps + len : w->end;
}

/* Piece i, inflated into plain: into the memory cache p, and its part of w into w->buf. */
static void deliver(struct shb_reader *r, struct shb_pieces *p, size_t i,
		    const unsigned char *plain, const struct want *w)
{
	uint64_t ps, len, from, to;

	piece_span(r, i, &ps, &len);
	if (p)
		shb_pieces_put(p, r->serial, i, plain, (size_t)len);
	if (!w || !w->buf)
		return;
	overlap(r, i, w, &ps, &from, &to);
	if (from < to)
		memcpy(w->buf + (from - w->start), plain + (from - ps), to - from);
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

/* Member i from its compressed bytes, CRC32- and length-checked (SHB_ECORRUPT). */
static int inflate_one(struct shb_reader *r, size_t i, const unsigned char *comp,
		       unsigned char *plain)
{
	const struct shb_member *m = &r->idx->members[i];

	if (inflate_member(comp, m->clen, plain, m->ulen))
		return shb_fail(SHB_ECORRUPT, "damaged data in '%s' (member %zu at offset %llu)",
				r->src->name, i, (unsigned long long)m->coff);
	__atomic_add_fetch(&r->inflated, 1, __ATOMIC_RELAXED);
	return SHB_OK;
}

/*
 * Members i..k in one source read, k <= hi the last of the run of adjacent
 * members not in p (nor, with fly, in flight there) within RUN_MAX
 * compressed bytes; each inflated and delivered.  *n: k - i + 1.
 */
static int load_members(struct shb_reader *r, struct shb_pieces *p, size_t i, size_t hi, int fly,
			const struct want *w, size_t *n)
{
	const struct shb_member *m = r->idx->members;
	unsigned char *comp = NULL, *plain = NULL;
	size_t k = i;
	int rc;

	while (k < hi && m[k + 1].coff + m[k + 1].clen - m[i].coff <= RUN_MAX
	       && !(p && shb_pieces_has(p, r->serial, k + 1, fly)))
		k++;
	comp = malloc(m[k].coff + m[k].clen - m[i].coff + 1);
	plain = malloc(r->idx->block_size + 1);
	if (!comp || !plain) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shb_source_read(r->src, comp, m[k].coff + m[k].clen - m[i].coff, m[i].coff)))
		goto out;
	for (size_t x = i; x <= k && !rc; x++)
		if (!(rc = inflate_one(r, x, comp + (m[x].coff - m[i].coff), plain)))
			deliver(r, p, x, plain, w);
	*n = k - i + 1;
out:
	free(plain);
	free(comp);
	return rc;
}

/* Segment i of a plain archive, inflated (chunk CRCs checked) and delivered. */
static int load_segment(struct shb_reader *r, struct shb_pieces *p, size_t i,
			const struct want *w, size_t *n)
{
	uint64_t ps, len;
	unsigned char *seg;
	int rc;

	piece_span(r, i, &ps, &len);
	if (!(seg = malloc(len + 1)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	if (!(rc = shb_zindex_read_segment(r->src, r->z, i, seg)))
		deliver(r, p, i, seg, w);
	free(seg);
	*n = 1;
	return rc;
}

static int load_run(struct shb_reader *r, struct shb_pieces *p, size_t i, size_t hi, int fly,
		    const struct want *w, size_t *n)
{
	if (r->z)
		return load_segment(r, p, i, w, n);
	return load_members(r, p, i, hi, fly, w, n);
}

/* Piece i's part of w from the memory cache, once no worker has it in flight. */
static int from_memory(struct shb_reader *r, struct shb_pieces *p, size_t i, const struct want *w)
{
	uint64_t ps, from, to;

	shb_pieces_wait(p, r->serial, i);
	overlap(r, i, w, &ps, &from, &to);
	return shb_pieces_read(p, r->serial, i, from - ps, (size_t)(to - from),
			       w->buf + (from - w->start));
}

int shb_reader_pread_cached(struct shb_reader *r, struct shb_pieces *p,
			    const struct shb_entry *e, void *buf, size_t len, uint64_t off,
			    size_t *got)
{
	struct want w = { e->offset + off, 0, buf };
	size_t n;
	int rc;

	*got = 0;
	if (off >= e->size || len == 0)
		return SHB_OK;
	if (len > e->size - off)
		len = (size_t)(e->size - off);
	w.end = w.start + len;
	if (r->z && !p) {
		/* No cache to keep a segment in: inflate just up to the range's end. */
		if ((rc = shb_zindex_read(r->src, r->z, w.start, len, buf)))
			return rc;
		*got = len;
		return SHB_OK;
	}
	for (size_t i = piece_at(r, w.start), hi = piece_at(r, w.end - 1); i <= hi; i += n) {
		n = 1;
		if (p && !from_memory(r, p, i, &w))
			continue;
		if ((rc = load_run(r, p, i, hi, 1, &w, &n)))
			return rc;
	}
	*got = len;
	return SHB_OK;
}

int shb_reader_pread(struct shb_reader *r, const struct shb_entry *e, void *buf, size_t len,
		     uint64_t off, size_t *got)
{
	return shb_reader_pread_cached(r, NULL, e, buf, len, off, got);
}

/* A read-ahead job: pieces lo..hi of the reader arg into p. */
static void fill(void *arg, struct shb_pieces *p, size_t lo, size_t hi)
{
	struct shb_reader *r = arg;
	size_t n;

	for (size_t i = lo; i <= hi; i += n) {
		n = 1;
		if (!shb_pieces_has(p, r->serial, i, 0) && load_run(r, p, i, hi, 0, NULL, &n))
			break;
	}
}

void shb_reader_readahead(struct shb_reader *r, struct shb_pieces *p, const struct shb_entry *e,
			  uint64_t off, uint64_t len, size_t batch)
{
	uint64_t start = e->offset + off;

	if (!p || off >= e->size || !len)
		return;
	if (len > e->size - off)
		len = e->size - off;
	shb_pieces_ahead(p, r->serial, piece_at(r, start), piece_at(r, start + len - 1),
			 batch ? batch : 1, fill, r);
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
