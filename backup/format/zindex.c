/*
 * Access points into a single gzip stream, and a tar header parser
 * (ztar.c) that runs over the inflated bytes in the same pass (zindex.h).
 *
 * A gzip stream is a header (magic, flags, optional name and comment), a
 * run of raw deflate blocks, and a trailer with the CRC32 and length of
 * the output.  Deflate blocks are not byte-aligned, and each may refer
 * back up to 32 KiB into the output before it, so inflation can only
 * restart at a block boundary, given the bit offset there and the last
 * 32 KiB of output.  The technique is the one zlib's examples/zran.c
 * describes: stop inflate at block boundaries (Z_BLOCK), and at most every
 * span of output remember the bit position and that window; a later read
 * primes a raw inflater with those (inflatePrime, inflateSetDictionary)
 * and runs forward, checking the CRC32 of each chunk it passes.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>
#include <zlib.h>

#include "error.h"
#include "zindex.h"
#include "ztar.h"

#define WIN 32768u
#define IN_CHUNK (256u * 1024u)

/* --- building ---------------------------------------------------------------- */

/* The CRC32 of the chunk being filled, while building. */
struct chunker {
	uint64_t start, pos;        /* output offsets: chunk start, next byte */
	uint32_t crc;
	size_t cap;
};

/* Records the chunk being filled (if any byte is in it) and starts the next. */
static int chunk_close(struct shb_zindex *z, struct chunker *k)
{
	if (k->pos == k->start)
		return SHB_OK;
	if (SHB_ALLOC_GROW(z->crcs, z->nchunks + 1, k->cap))
		return SHB_ENOMEM;
	z->crcs[z->nchunks++] = k->crc;
	k->start = k->pos;
	k->crc = (uint32_t)crc32(0, NULL, 0);
	return SHB_OK;
}

static int chunk_feed(struct shb_zindex *z, struct chunker *k, const unsigned char *p, size_t n)
{
	int rc = SHB_OK;

	while (n && !rc) {
		size_t room = SHB_ZCHUNK - (size_t)(k->pos - k->start), m = n < room ? n : room;

		k->crc = (uint32_t)crc32(k->crc, p, (uInt)m);
		k->pos += m;
		p += m;
		n -= m;
		if (k->pos - k->start == SHB_ZCHUNK)
			rc = chunk_close(z, k);
	}
	return rc;
}

static int add_point(struct shb_zindex *z, size_t *cap, struct chunker *k, uint64_t uoff,
		     uint64_t coff, int bits, const unsigned char *win, size_t wpos)
{
	struct shb_zpoint *p;
	int rc;

	/* A segment starts here: so does its first chunk. */
	if ((rc = chunk_close(z, k)))
		return rc;
	if (SHB_ALLOC_GROW(z->points, z->npoints + 1, *cap))
		return SHB_ENOMEM;
	p = &z->points[z->npoints++];
	p->uoff = uoff;
	p->coff = coff;
	p->bits = bits;
	p->chunk = z->nchunks;
	/* The last 32 KiB of output, oldest first, from the circular window. */
	memcpy(p->window, win + wpos, WIN - wpos);
	memcpy(p->window + (WIN - wpos), win, wpos);
	return SHB_OK;
}

#define REFILL_END (-1)

/*
 * Gives s the next piece of src (at most IN_CHUNK bytes from *in_off, into
 * in) once it has used up the last one.  SHB_OK; REFILL_END when src has
 * no byte left and s none either; or the error of the read.  The one input
 * loop of building, reading and checking.
 */
static int refill(struct shb_source *src, z_stream *s, unsigned char *in, uint64_t *in_off)
{
	size_t n;
	int rc;

	if (s->avail_in)
		return SHB_OK;
	n = src->size - *in_off < IN_CHUNK ? (size_t)(src->size - *in_off) : IN_CHUNK;
	if (!n)
		return REFILL_END;
	if ((rc = shb_source_read(src, in, n, *in_off)))
		return rc;
	*in_off += n;
	s->next_in = in;
	s->avail_in = (uInt)n;
	return SHB_OK;
}

/* One pass of shb_zindex_build(): the inflater, its buffers and what it has seen. */
struct builder {
	struct shb_source *src;
	struct shb_zindex *z;
	struct shb_tarp *t;
	struct chunker k;
	z_stream s;
	unsigned char *in, *win;    /* input piece; circular window of the last WIN bytes out */
	uint64_t in_off;            /* offset in src of the next input piece */
	uint64_t totin, totout;     /* bytes consumed and produced so far */
	uint64_t last;              /* output offset of the last access point */
	size_t cap;                 /* room in z->points */
};

/*
 * One step of the pass: inflates up to the next deflate block boundary
 * (Z_BLOCK) or the end of the window, feeds the new output to the tar
 * parser and the chunk checksums, and records an access point when the
 * step stopped at a block boundary (data_type bit 128) that is not the
 * stream's last (bit 64) and a span of output has passed since the last.
 * data_type & 7 is the number of bits of the last input byte not yet used.
 */
static int build_step(struct builder *b, int *zrc)
{
	z_stream *s = &b->s;
	int rc = refill(b->src, s, b->in, &b->in_off);

	if (rc == REFILL_END)
		return shb_fail(SHB_EFORMAT, "'%s' ends before its gzip stream", b->src->name);
	if (rc)
		return rc;
	if (!s->avail_out) {
		s->next_out = b->win;
		s->avail_out = WIN;
	}
	size_t wpos = WIN - s->avail_out, before_in = s->avail_in, before_out = s->avail_out;

	*zrc = inflate(s, Z_BLOCK);
	if (*zrc != Z_OK && *zrc != Z_STREAM_END)
		return shb_fail(SHB_EFORMAT, "'%s' is not a valid gzip stream: %s", b->src->name,
				s->msg ? s->msg : "inflate failed");
	b->totin += before_in - s->avail_in;
	b->totout += before_out - s->avail_out;
	rc = shb_tarp_feed(b->t, b->win + wpos, before_out - s->avail_out);
	if (!rc)
		rc = chunk_feed(b->z, &b->k, b->win + wpos, before_out - s->avail_out);
	if (rc || !(s->data_type & 128) || (s->data_type & 64)
	    || (b->totout != 0 && b->totout - b->last <= SHB_ZSPAN))
		return rc;
	if (b->totout - b->last > SHB_ZSEGMENT_MAX)
		return shb_fail(SHB_EFORMAT, "'%s' has a deflate block too large to index",
				b->src->name);
	rc = add_point(b->z, &b->cap, &b->k, b->totout, b->totin, s->data_type & 7, b->win,
		       WIN - s->avail_out);
	b->last = b->totout;
	return rc;
}

/*
 * Inflates the whole gzip stream of src once (windowBits 47: gzip or
 * zlib header, 32 KiB window), building z's access points and chunk
 * CRC32s and, through t, its entries.
 */
static int build(struct shb_source *src, struct shb_zindex *z, struct shb_tarp *t)
{
	struct builder b = { .src = src, .z = z, .t = t,
			     .k = { .crc = (uint32_t)crc32(0, NULL, 0) },
			     .in = malloc(IN_CHUNK), .win = calloc(1, WIN) };
	int rc = SHB_OK, zrc = Z_OK;

	if (!b.in || !b.win || inflateInit2(&b.s, 47) != Z_OK) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	while (zrc != Z_STREAM_END && !rc)
		rc = build_step(&b, &zrc);
	/* Reaching Z_STREAM_END means zlib has checked the trailer's CRC32 and length. */
	if (!rc)
		rc = chunk_close(z, &b.k);
	if (!rc && !t->done)
		rc = shb_fail(SHB_EFORMAT, "'%s' holds no complete tar archive", src->name);
	if (!rc && !z->npoints)
		rc = shb_fail(SHB_EFORMAT, "'%s' has no usable access point", src->name);
	if (!rc && b.totout - b.last > SHB_ZSEGMENT_MAX)
		rc = shb_fail(SHB_EFORMAT, "'%s' has a deflate block too large to index", src->name);
	z->usize = b.totout;
out:
	inflateEnd(&b.s);
	free(b.in);
	free(b.win);
	return rc;
}

int shb_zindex_build(struct shb_source *src, struct shb_zindex **out)
{
	struct shb_zindex *z = calloc(1, sizeof(*z));
	struct shb_tarp t = { .ext = SHB_BUF_INIT };
	int rc;

	if (!z)
		return shb_fail(SHB_ENOMEM, "out of memory");
	z->entries.version = SHB_INDEX_VERSION;
	z->entries.block_size = SHB_BLOCK_SIZE;
	t.idx = &z->entries;
	rc = build(src, z, &t);
	z->entries.tar_size = z->usize;
	shb_tarp_release(&t);
	if (rc) {
		shb_zindex_free(z);
		return rc;
	}
	*out = z;
	return SHB_OK;
}

/* --- reading ----------------------------------------------------------------- */

static size_t point_before(const struct shb_zindex *z, uint64_t off)
{
	return shb_uoff_search(z->points, z->npoints, sizeof(*z->points),
			       offsetof(struct shb_zpoint, uoff), off);
}

/* The end of segment i: the next access point, or the end of the tar. */
static uint64_t segment_end(const struct shb_zindex *z, size_t i)
{
	return i + 1 < z->npoints ? z->points[i + 1].uoff : z->usize;
}

/* One shb_zindex_read(): the range asked for and the inflation walking to it. */
struct zread {
	struct shb_source *src;
	const struct shb_zindex *z;
	z_stream s;
	unsigned char *in, *scratch, *buf;
	uint64_t off, end;          /* the range asked for; buf holds its bytes */
	uint64_t pos;               /* output offset of the next byte inflated */
	uint64_t cstart, cend;      /* the chunk being checked */
	uint64_t send;              /* end of the segment pos is in */
	uint64_t in_off;            /* offset in src of the next input piece */
	size_t seg, ci;             /* that segment; the index in crcs of the chunk */
	uint32_t crc;               /* of the chunk's bytes so far */
};

/*
 * Primes a raw inflater (windowBits -15) at access point r->seg: the bits
 * of the byte before coff still to use, then the 32 KiB window.
 */
static int read_start(struct zread *r)
{
	const struct shb_zpoint *p = &r->z->points[r->seg];
	unsigned char byte;
	int rc;

	r->pos = r->cstart = p->uoff;
	r->send = segment_end(r->z, r->seg);
	r->cend = r->send - r->pos < SHB_ZCHUNK ? r->send : r->pos + SHB_ZCHUNK;
	r->ci = p->chunk;
	r->in_off = p->coff;
	r->crc = (uint32_t)crc32(0, NULL, 0);
	if (!(r->in = malloc(IN_CHUNK)) || !(r->scratch = malloc(SHB_ZCHUNK))
	    || inflateInit2(&r->s, -15) != Z_OK)
		return shb_fail(SHB_ENOMEM, "out of memory");
	if (p->bits) {
		if ((rc = shb_source_read(r->src, &byte, 1, p->coff - 1)))
			return rc;
		inflatePrime(&r->s, p->bits, byte >> (8 - p->bits));
	}
	inflateSetDictionary(&r->s, p->window, WIN);
	return SHB_OK;
}

/* At the end of a chunk: checks its CRC32 and moves on to the next one. */
static int chunk_done(struct zread *r)
{
	if (r->crc != r->z->crcs[r->ci])
		return shb_fail(SHB_ECORRUPT, "damaged data in '%s': tar bytes %llu-%llu "
				"differ from when it was indexed", r->src->name,
				(unsigned long long)r->cstart, (unsigned long long)r->cend);
	r->ci++;
	r->crc = (uint32_t)crc32(0, NULL, 0);
	r->cstart = r->pos;
	if (r->pos == r->send && r->seg + 1 < r->z->npoints)
		r->send = segment_end(r->z, ++r->seg);
	r->cend = r->send - r->pos < SHB_ZCHUNK ? r->send : r->pos + SHB_ZCHUNK;
	return SHB_OK;
}

/* Inflates on to at most the end of the current chunk, keeping what falls in the range. */
static int read_step(struct zread *r, int *zrc)
{
	z_stream *s = &r->s;
	uInt want = (uInt)(r->cend - r->pos), got, had;
	int rc = refill(r->src, s, r->in, &r->in_off);

	if (rc == REFILL_END)
		return shb_fail(SHB_ECORRUPT, "'%s' ends early", r->src->name);
	if (rc)
		return rc;
	had = s->avail_in;
	s->next_out = r->scratch;
	s->avail_out = want;
	*zrc = inflate(s, Z_NO_FLUSH);
	/* No progress with input and room to spare cannot be a valid stream. */
	if (*zrc == Z_BUF_ERROR && s->avail_in == had && s->avail_out == want)
		*zrc = Z_DATA_ERROR;
	if (*zrc != Z_OK && *zrc != Z_STREAM_END && *zrc != Z_BUF_ERROR)
		return shb_fail(SHB_ECORRUPT, "damaged data in '%s' near offset %llu", r->src->name,
				(unsigned long long)(r->in_off - s->avail_in));
	got = want - s->avail_out;
	r->crc = (uint32_t)crc32(r->crc, r->scratch, got);
	if (r->pos + got > r->off && r->pos < r->end) {
		uint64_t from = r->pos > r->off ? r->pos : r->off;
		uint64_t to = r->pos + got < r->end ? r->pos + got : r->end;

		memcpy(r->buf + (from - r->off), r->scratch + (from - r->pos), to - from);
	}
	r->pos += got;
	return r->pos == r->cend ? chunk_done(r) : SHB_OK;
}

/*
 * Inflates from the access point before off on to the end of the last chunk
 * that [off, off + len) touches, checking each chunk's CRC32 on the way
 * (the chunks start at the access point, so no byte before it is needed).
 * On a mismatch buf may hold part of the damaged bytes: callers use buf only
 * when this returns SHB_OK.
 */
int shb_zindex_read(struct shb_source *src, const struct shb_zindex *z, uint64_t off,
		    size_t len, void *buf)
{
	struct zread r = { .src = src, .z = z, .buf = buf, .off = off, .end = off + len };
	int rc, zrc = Z_OK;

	if (off > z->usize || len > z->usize - off)
		return shb_fail(SHB_EFORMAT, "read past the end of '%s'", src->name);
	if (!len)
		return SHB_OK;
	r.seg = point_before(z, off);
	rc = read_start(&r);
	/* Until every wanted byte is out and the chunk holding the last one is checked. */
	while (!rc && (r.pos < r.end || r.pos > r.cstart)) {
		rc = read_step(&r, &zrc);
		if (!rc && zrc == Z_STREAM_END && (r.pos < r.end || r.pos > r.cstart))
			rc = shb_fail(SHB_ECORRUPT, "'%s' ends early", src->name);
	}
	inflateEnd(&r.s);
	free(r.in);
	free(r.scratch);
	return rc;
}

size_t shb_zindex_segment_at(const struct shb_zindex *z, uint64_t off, uint64_t *start,
			     size_t *len)
{
	size_t i = point_before(z, off);
	uint64_t end = segment_end(z, i);

	*start = z->points[i].uoff;
	*len = (size_t)(end - *start);
	return i;
}

int shb_zindex_read_segment(struct shb_source *src, const struct shb_zindex *z, size_t i,
			    unsigned char *buf)
{
	uint64_t end = segment_end(z, i);

	return shb_zindex_read(src, z, z->points[i].uoff, (size_t)(end - z->points[i].uoff), buf);
}

int shb_gzip_check(struct shb_source *src)
{
	unsigned char *in = malloc(IN_CHUNK), *out = malloc(IN_CHUNK);
	uint64_t off = 0;
	z_stream s = { 0 };
	int rc = SHB_OK, zrc = Z_OK, members = 0;

	if (!in || !out || inflateInit2(&s, 47) != Z_OK) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	while (!rc) {
		if ((rc = refill(src, &s, in, &off)))
			break;
		s.next_out = out;
		s.avail_out = IN_CHUNK;
		zrc = inflate(&s, Z_NO_FLUSH);
		if (zrc == Z_STREAM_END) {
			members++;
			inflateReset(&s);  /* a concatenated member may follow */
		} else if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
			rc = shb_fail(SHB_ECORRUPT, "'%s' fails its gzip check: %s", src->name,
				      s.msg ? s.msg : "inflate error");
		}
	}
	if (rc == REFILL_END)
		rc = SHB_OK;
	/* Ending inside a member (zrc not at a member end) means truncation. */
	if (!rc && (!members || (zrc != Z_STREAM_END && s.total_in)))
		rc = shb_fail(SHB_ECORRUPT, "'%s' ends inside its gzip stream", src->name);
out:
	inflateEnd(&s);
	free(in);
	free(out);
	return rc;
}

/* --- (de)serialising ------------------------------------------------------------ */

/*
 * The cached form: magic, usize, npoints, nchunks, chunk size (u64 each),
 * the points (uoff, coff, bits, window), the chunk CRC32s, the entries,
 * and a SHA-256 of all that, so a damaged cache file (a flipped bit in a
 * window would inflate wrong bytes the chunk CRCs then refuse forever) is
 * refused at decode and rebuilt.  Version 2 added the CRCs and the SHA-256:
 * a version 1 file is refused, so rebuilt.
 */
static const char zmagic[8] = { 'S', 'H', 'B', 'Z', 'I', 'D', 'X', '2' };
#define ZHEAD 40
#define POINT_REC (8 + 8 + 1 + WIN)

int shb_zindex_encode(const struct shb_zindex *z, unsigned char **out, size_t *len)
{
	unsigned char *ents = NULL, *p;
	size_t elen;
	int rc = shb_index_encode(&z->entries, &ents, &elen);

	if (rc)
		return rc;
	*len = ZHEAD + z->npoints * POINT_REC + z->nchunks * 4 + elen + 32;
	if (!(p = *out = malloc(*len))) {
		free(ents);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	memcpy(p, zmagic, 8);
	memcpy(p + 8, &z->usize, 8);
	memcpy(p + 16, &(uint64_t){ z->npoints }, 8);
	memcpy(p + 24, &(uint64_t){ z->nchunks }, 8);
	memcpy(p + 32, &(uint64_t){ SHB_ZCHUNK }, 8);
	p += ZHEAD;
	for (size_t i = 0; i < z->npoints; i++, p += POINT_REC) {
		memcpy(p, &z->points[i].uoff, 8);
		memcpy(p + 8, &z->points[i].coff, 8);
		p[16] = (unsigned char)z->points[i].bits;
		memcpy(p + 17, z->points[i].window, WIN);
	}
	memcpy(p, z->crcs, z->nchunks * 4);
	p += z->nchunks * 4;
	memcpy(p, ents, elen);
	free(ents);
	SHA256(*out, *len - 32, p + elen);
	return SHB_OK;
}

/* Checks the points of a decoded z and gives each its first chunk. */
static int check_points(struct shb_zindex *z)
{
	size_t chunks = 0;

	if (z->points[0].uoff != 0)
		return -1;
	for (size_t i = 0; i < z->npoints; i++) {
		const struct shb_zpoint *p = &z->points[i];
		uint64_t end = i + 1 < z->npoints ? z->points[i + 1].uoff : z->usize;

		if (p->bits > 7 || p->uoff > z->usize || end < p->uoff
		    || (i + 1 < z->npoints && end == p->uoff) || end - p->uoff > SHB_ZSEGMENT_MAX
		    || (p->bits && !p->coff))
			return -1;
		z->points[i].chunk = chunks;
		chunks += (size_t)((end - p->uoff + SHB_ZCHUNK - 1) / SHB_ZCHUNK);
	}
	return chunks == z->nchunks ? 0 : -1;
}

int shb_zindex_decode(const unsigned char *p, size_t len, struct shb_zindex **out)
{
	const unsigned char *end;
	unsigned char sum[32];
	struct shb_zindex *z;
	struct shb_index *idx = NULL;
	uint64_t n, nc, chunk;
	int rc = SHB_OK;

	if (len < ZHEAD + 32 || memcmp(p, zmagic, 8))
		return shb_fail(SHB_EFORMAT, "not a cached access-point index");
	len -= 32;
	SHA256(p, len, sum);
	if (memcmp(sum, p + len, 32))
		return shb_fail(SHB_EFORMAT, "damaged access-point index");
	end = p + len;
	memcpy(&n, p + 16, 8);
	memcpy(&nc, p + 24, 8);
	memcpy(&chunk, p + 32, 8);
	if (chunk != SHB_ZCHUNK || n == 0 || n > (len - ZHEAD) / POINT_REC
	    || nc > (len - ZHEAD - n * POINT_REC) / 4)
		return shb_fail(SHB_EFORMAT, "damaged access-point index");
	if (!(z = calloc(1, sizeof(*z))) || !(z->points = calloc((size_t)n, sizeof(*z->points)))
	    || !(z->crcs = malloc(nc ? (size_t)nc * 4 : 1))) {
		shb_zindex_free(z);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	memcpy(&z->usize, p + 8, 8);
	z->npoints = (size_t)n;
	z->nchunks = (size_t)nc;
	p += ZHEAD;
	for (size_t i = 0; i < z->npoints; i++, p += POINT_REC) {
		memcpy(&z->points[i].uoff, p, 8);
		memcpy(&z->points[i].coff, p + 8, 8);
		z->points[i].bits = p[16];
		memcpy(z->points[i].window, p + 17, WIN);
	}
	memcpy(z->crcs, p, z->nchunks * 4);
	p += z->nchunks * 4;
	if (check_points(z))
		rc = shb_fail(SHB_EFORMAT, "damaged access-point index");
	if (!rc)
		rc = shb_index_decode_plain(p, (size_t)(end - p), &idx);
	if (!rc && (idx->tar_size != z->usize || idx->nmembers))
		rc = shb_fail(SHB_EFORMAT, "damaged access-point index");
	if (!rc) {
		z->entries = *idx;
		free(idx);
		*out = z;
		return SHB_OK;
	}
	shb_index_free(idx);
	shb_zindex_free(z);
	return rc;
}

void shb_zindex_free(struct shb_zindex *z)
{
	if (!z)
		return;
	for (size_t i = 0; i < z->entries.nentries; i++)
		free(z->entries.entries[i].path);
	free(z->entries.entries);
	free(z->entries.members);
	free(z->points);
	free(z->crcs);
	free(z);
}
