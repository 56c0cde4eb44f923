/*
 * Access points into a single gzip stream, and a tar header parser that
 * runs over the inflated bytes in the same pass (zindex.h).  The technique
 * is the one zlib's examples/zran.c describes: stop inflate at deflate
 * block boundaries (Z_BLOCK), and at most every span of output remember
 * the bit position and the last 32 KiB of output; a later read primes a
 * raw inflater with those and runs forward.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>
#include <zlib.h>

#include "error.h"
#include "zindex.h"

#define WIN 32768u
#define IN_CHUNK (256u * 1024u)
#define MAX_ENTRIES 100000
#define MAX_EXT (1u << 20)
/* The largest entry size accepted: keeps size + padding and offsets from wrapping. */
#define MAX_SIZE (UINT64_C(1) << 62)

/* --- tar headers ---------------------------------------------------------- */

struct tarp {
	uint64_t pos;               /* offset of the next byte fed */
	unsigned char hdr[512];
	size_t hlen;
	uint64_t skip;              /* data and padding still to pass over */
	struct shb_buf ext;         /* pax or GNU long name being collected */
	uint64_t ext_left, ext_pad;
	char ext_type;
	char *path_override;
	uint64_t size_override;
	int has_size_override;
	int zeros, done, err, oom;
	struct shb_index *idx;
	size_t cap;
};

static uint64_t tar_number(const unsigned char *f, size_t n, int *bad)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {  /* base-256 */
		if (f[0] != 0x80)
			*bad = 1;
		for (i = 1; i < n; i++) {
			if (v >> 56)
				*bad = 1;
			v = v << 8 | f[i];
		}
		return v;
	}
	while (i < n && (f[i] == ' ' || f[i] == '\0'))
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			*bad = 1;
		v = v * 8 + (uint64_t)(f[i] - '0');
	}
	return v;
}

static int checksum_ok(const unsigned char *h)
{
	int bad = 0;
	uint64_t want = tar_number(h + 148, 8, &bad), sum = 0;

	for (int i = 0; i < 512; i++)
		sum += i >= 148 && i < 156 ? ' ' : h[i];
	return !bad && sum == want;
}

/*
 * A decimal number made of exactly the n bytes at p: no sign, no spaces,
 * no overflow.  The bytes come from the archive and are not NUL-terminated,
 * so the strto* family (which reads until a non-digit, and skips leading
 * whitespace) must not be used on them.
 */
static int pax_number(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9' || v > (max - (uint64_t)(p[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

/* Applies "len key=value\n" records of a pax header (n bytes at p). */
static void parse_pax(struct tarp *t, const char *p, size_t n)
{
	while (n) {
		const char *sp = memchr(p, ' ', n < 21 ? n : 21), *kv, *eq, *val;
		uint64_t len;
		size_t vlen;

		/* The length counts the whole record, so it is at most what is left. */
		if (!sp || pax_number(p, (size_t)(sp - p), n, &len) || len <= (uint64_t)(sp - p) + 1
		    || p[len - 1] != '\n') {
			t->err = 1;
			return;
		}
		kv = sp + 1;
		eq = memchr(kv, '=', (size_t)(p + len - 1 - kv));
		if (!eq) {
			t->err = 1;
			return;
		}
		val = eq + 1;
		vlen = (size_t)(p + len - 1 - val);
		if (eq - kv == 4 && !memcmp(kv, "path", 4)) {
			free(t->path_override);
			if (!(t->path_override = strndup(val, vlen)))
				t->oom = 1;
		} else if (eq - kv == 4 && !memcmp(kv, "size", 4)) {
			if (pax_number(val, vlen, MAX_SIZE, &t->size_override)) {
				t->err = 1;
				return;
			}
			t->has_size_override = 1;
		}
		p += len;
		n -= (size_t)len;
	}
}

static int add_entry(struct tarp *t, char *path, uint8_t type, uint32_t mode, uint64_t size)
{
	struct shb_index *idx = t->idx;

	if (idx->nentries == MAX_ENTRIES)
		return shb_fail(SHB_EFORMAT, "refusing backup: more than %d entries", MAX_ENTRIES);
	/*
	 * What the cached index cannot hold (index.h: a path is 1 to 65535
	 * bytes) must not be indexed either: the cache would fail to decode.
	 * No layout accepts such a name, so the archive is refused here.
	 */
	if (!*path || strlen(path) > 65535)
		return shb_fail(SHB_EFORMAT, "tar entry at offset %llu has an %s name",
				(unsigned long long)(t->pos - 512), *path ? "over-long" : "empty");
	if (SHB_ALLOC_GROW(idx->entries, idx->nentries + 1, t->cap))
		return SHB_ENOMEM;
	idx->entries[idx->nentries++] = (struct shb_entry){
		.path = path, .type = type, .mode = mode & 07777,
		.size = type == SHB_ENTRY_FILE ? size : 0, .offset = t->pos };
	return SHB_OK;
}

static int on_header(struct tarp *t)
{
	const unsigned char *h = t->hdr;
	char name[257], type = (char)h[156];
	int bad = 0, rc;
	uint64_t size = tar_number(h + 124, 12, &bad);
	uint32_t mode = (uint32_t)tar_number(h + 100, 8, &bad);
	char *path;

	if (!memcmp(h, (unsigned char[512]){ 0 }, 512)) {
		t->done = ++t->zeros >= 2;
		return SHB_OK;
	}
	if (t->zeros || bad || !checksum_ok(h))
		return shb_fail(SHB_EFORMAT, "damaged tar header at offset %llu",
				(unsigned long long)(t->pos - 512));
	if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
		if (size > MAX_EXT)
			return shb_fail(SHB_EFORMAT, "oversized tar extension header");
		t->ext_type = type;
		t->ext_left = size;
		t->ext_pad = (512 - size % 512) % 512;
		shb_buf_reset(&t->ext);
		return SHB_OK;
	}
	if (t->has_size_override)
		size = t->size_override;
	if (size > MAX_SIZE)
		return shb_fail(SHB_EFORMAT, "tar entry at offset %llu is too large",
				(unsigned long long)(t->pos - 512));
	if (t->path_override) {
		path = t->path_override;
		t->path_override = NULL;
	} else {
		size_t pl = strnlen((const char *)h + 345, 155);

		if (!memcmp(h + 257, "ustar", 5) && pl)
			snprintf(name, sizeof(name), "%.*s/%.*s", (int)pl, h + 345,
				 (int)strnlen((const char *)h, 100), h);
		else
			snprintf(name, sizeof(name), "%.*s", (int)strnlen((const char *)h, 100), h);
		path = strdup(name);
	}
	t->has_size_override = 0;
	if (!path)
		return shb_fail(SHB_ENOMEM, "out of memory");
	t->skip = type == '0' || type == '\0' || type == '7' ? size + (512 - size % 512) % 512 : 0;
	if ((rc = add_entry(t, path, type == '0' || type == '\0' || type == '7' ? SHB_ENTRY_FILE
			    : type == '5' ? SHB_ENTRY_DIR : SHB_ENTRY_OTHER, mode, size)))
		free(path);
	return rc;
}

static int ext_done(struct tarp *t)
{
	if (t->ext_type == 'x')
		parse_pax(t, shb_buf_str(&t->ext), t->ext.len);
	else if (t->ext_type == 'L') {
		free(t->path_override);
		t->path_override = strndup(shb_buf_str(&t->ext), t->ext.len);
		if (!t->path_override)
			t->oom = 1;
	}
	t->ext_type = 0;
	t->skip = t->ext_pad;
	if (t->oom)
		return shb_fail(SHB_ENOMEM, "out of memory");
	return t->err ? shb_fail(SHB_EFORMAT, "damaged pax header at offset %llu",
				 (unsigned long long)t->pos) : SHB_OK;
}

/* Feeds n inflated bytes to the parser. */
static int tar_feed(struct tarp *t, const unsigned char *p, size_t n)
{
	int rc = SHB_OK;

	while (n && !rc && !t->done) {
		size_t k;

		if (t->skip) {
			k = t->skip < n ? (size_t)t->skip : n;
			t->skip -= k;
		} else if (t->ext_type) {
			k = t->ext_left < n ? (size_t)t->ext_left : n;
			rc = shb_buf_add(&t->ext, p, k);
			t->ext_left -= k;
			if (!rc && !t->ext_left) {
				t->pos += k;
				p += k;
				n -= k;
				rc = ext_done(t);
				continue;
			}
		} else {
			k = 512 - t->hlen < n ? 512 - t->hlen : n;
			memcpy(t->hdr + t->hlen, p, k);
			t->hlen += k;
			if (t->hlen == 512) {
				t->pos += k;
				p += k;
				n -= k;
				t->hlen = 0;
				rc = on_header(t);
				continue;
			}
		}
		t->pos += k;
		p += k;
		n -= k;
	}
	return rc;
}

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

static int build(struct shb_source *src, struct shb_zindex *z, struct tarp *t)
{
	unsigned char *in = malloc(IN_CHUNK), *win = calloc(1, WIN);
	uint64_t in_off = 0, totin = 0, totout = 0, last = 0;
	size_t cap = 0;
	struct chunker k = { .crc = (uint32_t)crc32(0, NULL, 0) };
	z_stream s = { 0 };
	int rc = SHB_OK, zrc = Z_OK;

	if (!in || !win || inflateInit2(&s, 47) != Z_OK) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	while (zrc != Z_STREAM_END && !rc) {
		if (!s.avail_in) {
			size_t n = src->size - in_off < IN_CHUNK ? (size_t)(src->size - in_off) : IN_CHUNK;

			if (!n) {
				rc = shb_fail(SHB_EFORMAT, "'%s' ends before its gzip stream", src->name);
				break;
			}
			if ((rc = shb_source_read(src, in, n, in_off)))
				break;
			in_off += n;
			s.next_in = in;
			s.avail_in = (uInt)n;
		}
		if (!s.avail_out) {
			s.next_out = win;
			s.avail_out = WIN;
		}
		size_t wpos = WIN - s.avail_out, before_in = s.avail_in, before_out = s.avail_out;

		zrc = inflate(&s, Z_BLOCK);
		if (zrc != Z_OK && zrc != Z_STREAM_END) {
			rc = shb_fail(SHB_EFORMAT, "'%s' is not a valid gzip stream: %s", src->name,
				      s.msg ? s.msg : "inflate failed");
			break;
		}
		totin += before_in - s.avail_in;
		totout += before_out - s.avail_out;
		rc = tar_feed(t, win + wpos, before_out - s.avail_out);
		if (!rc)
			rc = chunk_feed(z, &k, win + wpos, before_out - s.avail_out);
		if (!rc && (s.data_type & 128) && !(s.data_type & 64)
		    && (totout == 0 || totout - last > SHB_ZSPAN)) {
			if (totout - last > SHB_ZSEGMENT_MAX) {
				rc = shb_fail(SHB_EFORMAT, "'%s' has a deflate block too large to "
					      "index", src->name);
				break;
			}
			rc = add_point(z, &cap, &k, totout, totin, s.data_type & 7, win,
				       WIN - s.avail_out);
			last = totout;
		}
	}
	/* Reaching Z_STREAM_END means zlib has checked the trailer's CRC32 and length. */
	if (!rc)
		rc = chunk_close(z, &k);
	if (!rc && !t->done)
		rc = shb_fail(SHB_EFORMAT, "'%s' holds no complete tar archive", src->name);
	if (!rc && !z->npoints)
		rc = shb_fail(SHB_EFORMAT, "'%s' has no usable access point", src->name);
	if (!rc && totout - last > SHB_ZSEGMENT_MAX)
		rc = shb_fail(SHB_EFORMAT, "'%s' has a deflate block too large to index", src->name);
	z->usize = totout;
out:
	inflateEnd(&s);
	free(in);
	free(win);
	return rc;
}

int shb_zindex_build(struct shb_source *src, struct shb_zindex **out)
{
	struct shb_zindex *z = calloc(1, sizeof(*z));
	struct tarp t = { .ext = SHB_BUF_INIT };
	int rc;

	if (!z)
		return shb_fail(SHB_ENOMEM, "out of memory");
	z->entries.version = SHB_INDEX_VERSION;
	z->entries.block_size = SHB_BLOCK_SIZE;
	t.idx = &z->entries;
	rc = build(src, z, &t);
	z->entries.tar_size = z->usize;
	free(t.path_override);
	shb_buf_free(&t.ext);
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
	size_t lo = 0, hi = z->npoints;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (z->points[mid].uoff <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The end of segment i: the next access point, or the end of the tar. */
static uint64_t segment_end(const struct shb_zindex *z, size_t i)
{
	return i + 1 < z->npoints ? z->points[i + 1].uoff : z->usize;
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
	unsigned char *in = NULL, *scratch = NULL, byte;
	uint64_t end = off + len, pos, cstart, cend, send, in_off;
	size_t seg, ci;
	uint32_t crc = (uint32_t)crc32(0, NULL, 0);
	z_stream s = { 0 };
	int rc = SHB_OK, zrc = Z_OK;

	if (off > z->usize || len > z->usize - off)
		return shb_fail(SHB_EFORMAT, "read past the end of '%s'", src->name);
	if (!len)
		return SHB_OK;
	seg = point_before(z, off);
	pos = cstart = z->points[seg].uoff;
	send = segment_end(z, seg);
	cend = send - pos < SHB_ZCHUNK ? send : pos + SHB_ZCHUNK;
	ci = z->points[seg].chunk;
	in_off = z->points[seg].coff;
	if (!(in = malloc(IN_CHUNK)) || !(scratch = malloc(SHB_ZCHUNK))
	    || inflateInit2(&s, -15) != Z_OK) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	if (z->points[seg].bits) {
		if ((rc = shb_source_read(src, &byte, 1, z->points[seg].coff - 1)))
			goto out;
		inflatePrime(&s, z->points[seg].bits, byte >> (8 - z->points[seg].bits));
	}
	inflateSetDictionary(&s, z->points[seg].window, WIN);
	/* Until every wanted byte is out and the chunk holding the last one is checked. */
	while (pos < end || pos > cstart) {
		uInt want = (uInt)(cend - pos), got;

		if (!s.avail_in) {
			size_t n = src->size - in_off < IN_CHUNK ? (size_t)(src->size - in_off) : IN_CHUNK;

			if (!n) {
				rc = shb_fail(SHB_ECORRUPT, "'%s' ends early", src->name);
				break;
			}
			if ((rc = shb_source_read(src, in, n, in_off)))
				break;
			in_off += n;
			s.next_in = in;
			s.avail_in = (uInt)n;
		}
		uInt had = s.avail_in;

		s.next_out = scratch;
		s.avail_out = want;
		zrc = inflate(&s, Z_NO_FLUSH);
		/* No progress with input and room to spare cannot be a valid stream. */
		if (zrc == Z_BUF_ERROR && s.avail_in == had && s.avail_out == want)
			zrc = Z_DATA_ERROR;
		if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
			rc = shb_fail(SHB_ECORRUPT, "damaged data in '%s' near offset %llu", src->name,
				      (unsigned long long)(in_off - s.avail_in));
			break;
		}
		got = want - s.avail_out;
		crc = (uint32_t)crc32(crc, scratch, got);
		if (pos + got > off && pos < end) {
			uint64_t from = pos > off ? pos : off, to = pos + got < end ? pos + got : end;

			memcpy((unsigned char *)buf + (from - off), scratch + (from - pos), to - from);
		}
		pos += got;
		if (pos == cend) {
			if (crc != z->crcs[ci]) {
				rc = shb_fail(SHB_ECORRUPT, "damaged data in '%s': tar bytes %llu-%llu "
					      "differ from when it was indexed", src->name,
					      (unsigned long long)cstart, (unsigned long long)cend);
				break;
			}
			ci++;
			crc = (uint32_t)crc32(0, NULL, 0);
			cstart = pos;
			if (pos == send && seg + 1 < z->npoints)
				send = segment_end(z, ++seg);
			cend = send - pos < SHB_ZCHUNK ? send : pos + SHB_ZCHUNK;
		}
		if (zrc == Z_STREAM_END && (pos < end || pos > cstart)) {
			rc = shb_fail(SHB_ECORRUPT, "'%s' ends early", src->name);
			break;
		}
	}
out:
	inflateEnd(&s);
	free(in);
	free(scratch);
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
		if (!s.avail_in) {
			size_t n = src->size - off < IN_CHUNK ? (size_t)(src->size - off) : IN_CHUNK;

			if (!n)
				break;
			if ((rc = shb_source_read(src, in, n, off)))
				break;
			off += n;
			s.next_in = in;
			s.avail_in = (uInt)n;
		}
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
