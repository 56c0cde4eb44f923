/*
 * Encoding, decoding and gzip framing of the archive index (FORMAT.md).
 * Decoding treats its input as hostile: every count is bounded by the bytes
 * that remain before anything is allocated for it.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "error.h"
#include "index.h"

static const char blob_magic[8] = { 'S', 'H', 'B', 'I', 'N', 'D', 'X', '1' };
static const char foot_magic[8] = { 'S', 'H', 'B', 'F', 'O', 'O', 'T', '1' };
#define FOOT_PAYLOAD 72
/* Largest subfield payload that fits XLEN together with its 4-byte header. */
#define CHUNK_MAX 65531
/* gzip header, XLEN and subfield header; then "03 00", CRC32 and ISIZE. */
#define EXTRA_HEAD 16
#define EXTRA_TAIL 10

/* --- little-endian cursor ----------------------------------------------- */

struct cursor {
	const unsigned char *p;
	size_t left;
	int bad;
};

static uint64_t get(struct cursor *c, int bytes)
{
	uint64_t v = 0;

	if (c->bad || c->left < (size_t)bytes) {
		c->bad = 1;
		return 0;
	}
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)c->p[i] << (8 * i);
	c->p += bytes;
	c->left -= (size_t)bytes;
	return v;
}

static const unsigned char *get_bytes(struct cursor *c, size_t n)
{
	const unsigned char *p = c->p;

	if (c->bad || c->left < n) {
		c->bad = 1;
		return NULL;
	}
	c->p += n;
	c->left -= n;
	return p;
}

static void put(unsigned char **p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		(*p)[i] = (unsigned char)(v >> (8 * i));
	*p += bytes;
}

/* --- the blob ------------------------------------------------------------ */

#define MEMBER_REC 8
#define ENTRY_FIXED (2 + 1 + 4 + 4 + 4 + 8 + 8 + 8 + 32)

int shb_index_encode(const struct shb_index *idx, unsigned char **out, size_t *outlen)
{
	size_t len = 8 + 4 + 4 + 8 + 8 + 8 + idx->nmembers * MEMBER_REC;
	unsigned char *blob, *p;

	for (size_t i = 0; i < idx->nentries; i++)
		len += ENTRY_FIXED + strlen(idx->entries[i].path);
	blob = p = malloc(len);
	if (!blob)
		return shb_fail(SHB_ENOMEM, "out of memory encoding the index");
	memcpy(p, blob_magic, 8);
	p += 8;
	put(&p, idx->version, 4);
	put(&p, idx->block_size, 4);
	put(&p, idx->tar_size, 8);
	put(&p, idx->nmembers, 8);
	put(&p, idx->nentries, 8);
	for (size_t i = 0; i < idx->nmembers; i++) {
		put(&p, idx->members[i].clen, 4);
		put(&p, idx->members[i].ulen, 4);
	}
	for (size_t i = 0; i < idx->nentries; i++) {
		const struct shb_entry *e = &idx->entries[i];
		size_t plen = strlen(e->path);

		put(&p, plen, 2);
		memcpy(p, e->path, plen);
		p += plen;
		put(&p, e->type, 1);
		put(&p, e->mode, 4);
		put(&p, e->uid, 4);
		put(&p, e->gid, 4);
		put(&p, (uint64_t)e->mtime, 8);
		put(&p, e->size, 8);
		put(&p, e->offset, 8);
		memcpy(p, e->sha256, 32);
		p += 32;
	}
	*out = blob;
	*outlen = len;
	return SHB_OK;
}

/*
 * Decoding walks the index blob of FORMAT.md ("Index blob") front to back
 * with a bounds-checked little-endian cursor; a read past the end sets
 * c->bad and yields zeros, so each step checks once after its reads:
 *
 *     "SHBINDX1"  version u32  block_size u32  tar_size u64  M u64  E u64
 *     M x { clen u32, ulen u32 }              members, in file order
 *     E x { P u16, path[P], type u8, mode u32, uid u32, gid u32,
 *           mtime i64, size u64, offset u64, sha256[32] }
 *
 * and nothing after the last entry.  decode() checks the header: magic,
 * version 1, block_size in 1..64 MiB, and M and E no larger than the bytes
 * left could hold (8 per member, ENTRY_FIXED per entry), so a hostile
 * count cannot make calloc() huge.  decode_members() derives each member's
 * coff/uoff as running sums, requires 18 <= clen (the smallest gzip member)
 * and 1 <= ulen <= block_size, and that the ulens add up to tar_size (a
 * plain archive's index has no members and skips that).  decode_entry()
 * requires a path of 1..65535 bytes without NUL, a known type, size 0 for
 * anything but a file, and [offset, offset + size) inside the tar.  The
 * footer and index members around the blob are parsed further down
 * (shb_footer_parse, shb_index_members_parse).
 */
static int decode_members(struct cursor *c, struct shb_index *idx, int plain)
{
	uint64_t coff = 0, uoff = 0;

	for (size_t i = 0; i < idx->nmembers; i++) {
		struct shb_member *m = &idx->members[i];

		m->clen = (uint32_t)get(c, 4);
		m->ulen = (uint32_t)get(c, 4);
		m->coff = coff;
		m->uoff = uoff;
		if (c->bad || m->clen < 18 || m->ulen == 0 || m->ulen > idx->block_size)
			return shb_fail(SHB_EFORMAT, "invalid member %zu in the archive index", i);
		coff += m->clen;
		uoff += m->ulen;
	}
	if (uoff != idx->tar_size && (idx->nmembers || !plain))
		return shb_fail(SHB_EFORMAT, "archive index members do not add up to the tar size");
	return SHB_OK;
}

static int decode_entry(struct cursor *c, const struct shb_index *idx, struct shb_entry *e)
{
	size_t plen = (size_t)get(c, 2);
	const unsigned char *path = get_bytes(c, plen);

	if (!path || plen == 0 || memchr(path, '\0', plen))
		return shb_fail(SHB_EFORMAT, "invalid entry path in the archive index");
	e->type = (uint8_t)get(c, 1);
	e->mode = (uint32_t)get(c, 4);
	e->uid = (uint32_t)get(c, 4);
	e->gid = (uint32_t)get(c, 4);
	e->mtime = (int64_t)get(c, 8);
	e->size = get(c, 8);
	e->offset = get(c, 8);
	const unsigned char *sum = get_bytes(c, 32);
	if (!sum)
		return shb_fail(SHB_EFORMAT, "truncated entry in the archive index");
	if ((e->type != SHB_ENTRY_FILE && e->type != SHB_ENTRY_DIR && e->type != SHB_ENTRY_OTHER)
	    || (e->type != SHB_ENTRY_FILE && e->size)
	    || e->offset > idx->tar_size || e->size > idx->tar_size - e->offset)
		return shb_fail(SHB_EFORMAT, "invalid entry '%.*s' in the archive index",
				(int)(plen > 200 ? 200 : plen), (const char *)path);
	memcpy(e->sha256, sum, 32);
	e->path = malloc(plen + 1);
	if (!e->path)
		return shb_fail(SHB_ENOMEM, "out of memory decoding the index");
	memcpy(e->path, path, plen);
	e->path[plen] = '\0';
	return SHB_OK;
}

static int decode(const unsigned char *blob, size_t len, int plain, struct shb_index **out)
{
	struct cursor c = { blob, len, 0 };
	struct shb_index *idx = calloc(1, sizeof(*idx));
	const unsigned char *magic = get_bytes(&c, 8);
	uint64_t nm, ne;
	int rc;

	if (!idx)
		return shb_fail(SHB_ENOMEM, "out of memory decoding the index");
	rc = shb_fail(SHB_EFORMAT, "invalid archive index header");
	if (!magic || memcmp(magic, blob_magic, 8))
		goto fail;
	idx->version = (uint32_t)get(&c, 4);
	idx->block_size = (uint32_t)get(&c, 4);
	idx->tar_size = get(&c, 8);
	nm = get(&c, 8);
	ne = get(&c, 8);
	if (c.bad || idx->version != SHB_INDEX_VERSION || idx->block_size == 0
	    || idx->block_size > 64u * 1024 * 1024
	    || nm > c.left / MEMBER_REC || ne > c.left / ENTRY_FIXED)
		goto fail;
	idx->nmembers = (size_t)nm;
	idx->nentries = (size_t)ne;
	idx->members = calloc(idx->nmembers + 1, sizeof(*idx->members));
	idx->entries = calloc(idx->nentries + 1, sizeof(*idx->entries));
	if (!idx->members || !idx->entries) {
		rc = shb_fail(SHB_ENOMEM, "out of memory decoding the index");
		goto fail;
	}
	rc = decode_members(&c, idx, plain);
	for (size_t i = 0; !rc && i < idx->nentries; i++)
		rc = decode_entry(&c, idx, &idx->entries[i]);
	if (!rc && c.left)
		rc = shb_fail(SHB_EFORMAT, "trailing bytes after the archive index");
	if (rc)
		goto fail;
	*out = idx;
	return SHB_OK;
fail:
	shb_index_free(idx);
	return rc;
}

int shb_index_decode(const unsigned char *blob, size_t len, struct shb_index **out)
{
	return decode(blob, len, 0, out);
}

int shb_index_decode_plain(const unsigned char *blob, size_t len, struct shb_index **out)
{
	return decode(blob, len, 1, out);
}

void shb_index_free(struct shb_index *idx)
{
	if (!idx)
		return;
	for (size_t i = 0; idx->entries && i < idx->nentries; i++)
		free(idx->entries[i].path);
	free(idx->entries);
	free(idx->members);
	free(idx);
}

const struct shb_entry *shb_index_find(const struct shb_index *idx, const char *path)
{
	for (size_t i = 0; i < idx->nentries; i++)
		if (!strcmp(idx->entries[i].path, path))
			return &idx->entries[i];
	return NULL;
}

size_t shb_uoff_search(const void *arr, size_t n, size_t stride, size_t field, uint64_t key)
{
	const unsigned char *base = arr;
	size_t lo = 0, hi = n;

	/* Invariant: the answer lies in [lo, hi). */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t v;

		memcpy(&v, base + mid * stride + field, sizeof(v));
		if (v <= key)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

size_t shb_index_member_at(const struct shb_index *idx, uint64_t uoff)
{
	return shb_uoff_search(idx->members, idx->nmembers, sizeof(*idx->members),
			       offsetof(struct shb_member, uoff), uoff);
}

/* --- gzip framing -------------------------------------------------------- */

static int add_extra_member(struct shb_buf *out, char si2, const unsigned char *payload,
			    size_t len)
{
	unsigned char head[EXTRA_HEAD], *p = head;
	static const unsigned char tail[EXTRA_TAIL] = { 0x03, 0x00 };
	int rc;

	/* ID1 ID2 CM FLG=FEXTRA MTIME(4) XFL OS=unknown */
	static const unsigned char fixed[10] = { 0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255 };
	memcpy(p, fixed, 10);
	p += 10;
	put(&p, len + 4, 2);
	*p++ = 'S';
	*p++ = (unsigned char)si2;
	put(&p, len, 2);
	if ((rc = shb_buf_add(out, head, sizeof(head))) || (rc = shb_buf_add(out, payload, len)))
		return rc;
	return shb_buf_add(out, tail, sizeof(tail));
}

int shb_index_write_trailer(struct shb_buf *out, const unsigned char *blob, size_t len,
			    uint64_t index_offset)
{
	unsigned char foot[FOOT_PAYLOAD], *p = foot;
	size_t start = out->len;
	int rc;

	for (size_t off = 0; off < len; off += CHUNK_MAX) {
		size_t n = len - off < CHUNK_MAX ? len - off : CHUNK_MAX;

		if ((rc = add_extra_member(out, 'I', blob + off, n)))
			return rc;
	}
	memcpy(p, foot_magic, 8);
	p += 8;
	put(&p, SHB_INDEX_VERSION, 4);
	put(&p, 0, 4);
	put(&p, index_offset, 8);
	put(&p, out->len - start, 8);
	put(&p, len, 8);
	SHA256(blob, len, p);
	return add_extra_member(out, 'F', foot, sizeof(foot));
}

/*
 * Checks that p holds one of our empty extra-field members with subfield
 * 'S' si2 whose payload length is at most max, and returns the payload.
 */
static int parse_extra_member(struct cursor *c, char si2, size_t max,
			      const unsigned char **payload, size_t *len)
{
	static const unsigned char fixed[10] = { 0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255 };
	static const unsigned char tail[EXTRA_TAIL] = { 0x03, 0x00 };
	const unsigned char *h = get_bytes(c, 10);
	size_t xlen = (size_t)get(c, 2);
	const unsigned char *id = get_bytes(c, 2);
	size_t n = (size_t)get(c, 2);

	if (!id || memcmp(h, fixed, 10) || id[0] != 'S' || id[1] != (unsigned char)si2
	    || xlen != n + 4 || n > max)
		return SHB_EFORMAT;
	*payload = get_bytes(c, n);
	*len = n;
	const unsigned char *t = get_bytes(c, EXTRA_TAIL);
	return t && !memcmp(t, tail, EXTRA_TAIL) ? SHB_OK : SHB_EFORMAT;
}

/*
 * The footer is one empty gzip member (FORMAT.md, "Index members and
 * footer"): the fixed 10-byte gzip header with FEXTRA, XLEN, subfield "SF"
 * with its 72-byte payload, then "03 00" and a zero CRC32 and ISIZE.  The
 * payload is "SHBFOOT1", version u32, flags u32 (ignored), index_offset
 * u64, index_length u64, blob_length u64 and the blob's sha256[32].
 */
int shb_footer_parse(const unsigned char *p, struct shb_footer *f)
{
	struct cursor c = { p, SHB_FOOTER_SIZE, 0 };
	const unsigned char *pl;
	size_t len;

	if (parse_extra_member(&c, 'F', FOOT_PAYLOAD, &pl, &len) || len != FOOT_PAYLOAD
	    || memcmp(pl, foot_magic, 8))
		return shb_fail(SHB_EFORMAT, "no shbackup index footer");
	struct cursor q = { pl + 8, FOOT_PAYLOAD - 8, 0 };
	if (get(&q, 4) != SHB_INDEX_VERSION)
		return shb_fail(SHB_EFORMAT, "unsupported archive index version");
	get(&q, 4);
	f->index_offset = get(&q, 8);
	f->index_length = get(&q, 8);
	f->blob_length = get(&q, 8);
	memcpy(f->blob_sha256, get_bytes(&q, 32), 32);
	return SHB_OK;
}

int shb_index_members_parse(const unsigned char *p, size_t len, const struct shb_footer *f,
			    unsigned char **blob)
{
	struct cursor c = { p, len, 0 };
	struct shb_buf b = SHB_BUF_INIT;
	unsigned char sum[32];
	int rc = SHB_OK;

	if (f->blob_length > len)
		return shb_fail(SHB_EFORMAT, "archive index length exceeds the file");
	while (c.left && !rc) {
		const unsigned char *pl;
		size_t n;

		if (parse_extra_member(&c, 'I', CHUNK_MAX, &pl, &n))
			rc = shb_fail(SHB_EFORMAT, "damaged archive index member");
		else
			rc = shb_buf_add(&b, pl, n);
	}
	if (!rc && b.len != f->blob_length)
		rc = shb_fail(SHB_EFORMAT, "archive index has the wrong length");
	if (!rc) {
		SHA256(b.data, b.len, sum);
		if (memcmp(sum, f->blob_sha256, 32))
			rc = shb_fail(SHB_ECORRUPT, "archive index checksum mismatch");
	}
	if (rc) {
		shb_buf_free(&b);
		return rc;
	}
	*blob = (unsigned char *)shb_buf_detach(&b, NULL);
	return *blob ? SHB_OK : SHB_ENOMEM;
}
