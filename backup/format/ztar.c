/*
 * The tar header parser of the access-point index (ztar.h).
 *
 * A tar stream is a run of 512-byte blocks.  Each entry is one header
 * block followed by its data, padded with zeros to a multiple of 512; two
 * all-zero blocks end the archive.  A header holds, at fixed offsets,
 * NUL-padded text fields: name (0, 100 bytes), mode (100, 8, octal),
 * size (124, 12, octal or, with the top bit of the first byte set, a
 * big-endian base-256 number), checksum (148, 8: the byte sum of the
 * header with this field read as spaces), type flag (156), the "ustar"
 * magic (257) and, for ustar, a name prefix (345, 155) joined to the name
 * with '/'.  Longer names and larger sizes come in an extension entry just
 * before the header they apply to: pax ('x': "len key=value\n" records,
 * of which path and size are used; 'g', global, is read past) or GNU
 * ('L': the next entry's long name; 'K': a long link target, skipped).
 *
 * The parser is a small state machine over the bytes fed: collecting a
 * header (hdr, hlen), collecting an extension's body (ext, ext_left), or
 * skipping data and padding (skip).  pos is the stream offset of the next
 * byte, so an entry's data offset is pos right after its header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ztar.h"

#define MAX_ENTRIES 100000
#define MAX_EXT (1u << 20)
/* The largest entry size accepted: keeps size + padding and offsets from wrapping. */
#define MAX_SIZE (UINT64_C(1) << 62)

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
static void parse_pax(struct shb_tarp *t, const char *p, size_t n)
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

static int add_entry(struct shb_tarp *t, char *path, uint8_t type, uint32_t mode, uint64_t size)
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

/*
 * Handles the header block just collected in t->hdr: counts end-of-archive
 * zero blocks, checks the checksum and numbers, starts collecting an
 * extension body, or adds the entry (its path from a pending pax or GNU
 * long name, else the ustar prefix and name) and sets how much data and
 * padding to skip before the next header.
 */
static int on_header(struct shb_tarp *t)
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

static int ext_done(struct shb_tarp *t)
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

int shb_tarp_feed(struct shb_tarp *t, const unsigned char *p, size_t n)
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
void shb_tarp_release(struct shb_tarp *t)
{
	free(t->path_override);
	t->path_override = NULL;
	shb_buf_free(&t->ext);
}
