/*
 * Unit tests of the plain tar.gz indexer (zindex.h) over streams built in
 * memory: reads across chunk and segment boundaries equal the tar bytes,
 * the cached form round-trips and refuses damage and the old version, a
 * stream changed after indexing reads SHB_ECORRUPT where it changed and
 * right elsewhere, and hostile pax records are refused without reading
 * past their buffer (run under ASan and valgrind).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "check.h"
#include "error.h"
#include "zindex.h"

static void header(unsigned char *h, const char *name, uint64_t size, char type)
{
	unsigned sum = 0;

	memset(h, 0, 512);
	snprintf((char *)h, 100, "%s", name);
	memcpy(h + 100, "0000644", 8);
	snprintf((char *)h + 124, 12, "%011o", (unsigned)(size & 037777777777u));
	memcpy(h + 136, "15000000000", 12);
	h[156] = (unsigned char)type;
	memcpy(h + 257, "ustar\0" "00", 8);
	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum & 0777777u);
}

/* A tar of: optional pax record bytes, then one file of n bytes. */
static unsigned char *make_tar(const char *pax, size_t paxlen, size_t n, size_t *len)
{
	size_t padx = paxlen ? 512 + (paxlen + 511) / 512 * 512 : 0;
	unsigned char *t = calloc(1, padx + 512 + (n + 511) / 512 * 512 + 1024), *p = t;
	uint32_t x = 12345;

	if (paxlen) {
		header(p, "PaxHeaders/f", paxlen, 'x');
		memcpy(p + 512, pax, paxlen);
		p += padx;
	}
	header(p, "streamhub.db", n, '0');
	p += 512;
	/* Compressible but not trivially: words from a small LCG vocabulary. */
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (unsigned char)("abcdefghij klmnop\n"[(x >> 16) % 18]);
	}
	*len = padx + 512 + (n + 511) / 512 * 512 + 1024;
	return t;
}

static unsigned char *gzip_of(const unsigned char *in, size_t n, size_t *len)
{
	uLongf cap = compressBound(n) + 64;
	unsigned char *out = malloc(cap);
	z_stream s = { 0 };

	deflateInit2(&s, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	s.next_in = (unsigned char *)in;
	s.avail_in = (uInt)n;
	s.next_out = out;
	s.avail_out = (uInt)cap;
	deflate(&s, Z_FINISH);
	*len = cap - s.avail_out;
	deflateEnd(&s);
	return out;
}

static int build(const unsigned char *gz, size_t len, struct shb_zindex **z)
{
	struct shb_source *src;
	int rc;

	if (shb_source_open_mem(gz, len, "mem", &src))
		return SHB_ENOMEM;
	rc = shb_zindex_build(src, z);
	shb_source_close(src);
	return rc;
}

static int read_at(const unsigned char *gz, size_t len, const struct shb_zindex *z, uint64_t off,
		   size_t n, unsigned char *buf)
{
	struct shb_source *src;
	int rc;

	if (shb_source_open_mem(gz, len, "mem", &src))
		return SHB_ENOMEM;
	rc = shb_zindex_read(src, z, off, n, buf);
	shb_source_close(src);
	return rc;
}

static void test_reads_and_cache_form(void)
{
	size_t tlen, glen, elen, n = 11u << 20;
	unsigned char *tar = make_tar(NULL, 0, n, &tlen), *gz = gzip_of(tar, tlen, &glen);
	unsigned char *buf = malloc(tlen), *enc = NULL;
	struct shb_zindex *z = NULL, *z2 = NULL;

	CHECK_OK(build(gz, glen, &z));
	if (!z)
		goto out;
	CHECK(z->usize == tlen && z->npoints >= 3 && z->nchunks >= tlen / SHB_ZCHUNK);
	/* Across a chunk boundary, across a segment boundary, one byte, the end. */
	uint64_t offs[] = { 0, SHB_ZCHUNK - 3, z->points[1].uoff - 10, z->points[2].uoff,
			    tlen - 1, 777777 };
	size_t lens[] = { 1, 7, 20, 100000, 1, (size_t)z->points[2].uoff };
	for (size_t i = 0; i < sizeof(offs) / sizeof(*offs); i++) {
		size_t l = lens[i] < tlen - offs[i] ? lens[i] : (size_t)(tlen - offs[i]);

		CHECK_OK(read_at(gz, glen, z, offs[i], l, buf));
		CHECK(!memcmp(buf, tar + offs[i], l));
	}
	CHECK(read_at(gz, glen, z, tlen - 5, 10, buf) == SHB_EFORMAT);  /* bounds, no leak */

	CHECK_OK(shb_zindex_encode(z, &enc, &elen));
	CHECK_OK(shb_zindex_decode(enc, elen, &z2));
	if (z2) {
		CHECK(z2->npoints == z->npoints && z2->nchunks == z->nchunks
		      && !memcmp(z2->crcs, z->crcs, z->nchunks * 4));
		CHECK_OK(read_at(gz, glen, z2, z->points[1].uoff - 10, 5000, buf));
		CHECK(!memcmp(buf, tar + z->points[1].uoff - 10, 5000));
		shb_zindex_free(z2);
		z2 = NULL;
	}
	/* A damaged cache file, and one of the old version, are refused. */
	enc[elen / 2] ^= 1;
	CHECK(shb_zindex_decode(enc, elen, &z2) == SHB_EFORMAT);
	enc[elen / 2] ^= 1;
	enc[7] = '1';
	CHECK(shb_zindex_decode(enc, elen, &z2) == SHB_EFORMAT);

	/* The stream changed after indexing: damage is ECORRUPT, the rest reads. */
	size_t at = (size_t)z->points[2].coff + 1000;
	gz[at] ^= 0x10;
	int rc = read_at(gz, glen, z, z->points[2].uoff, (size_t)(tlen - z->points[2].uoff), buf);
	CHECK(rc == SHB_ECORRUPT);
	CHECK_OK(read_at(gz, glen, z, 1000, 100000, buf));
	CHECK(!memcmp(buf, tar + 1000, 100000));
	gz[at] ^= 0x10;
	/* And a fresh index of the damaged stream fails the gzip CRC32. */
	gz[at] ^= 0x10;
	shb_zindex_free(z2);
	z2 = NULL;
	CHECK(build(gz, glen, &z2) != SHB_OK);
out:
	shb_zindex_free(z);
	shb_zindex_free(z2);
	free(enc);
	free(buf);
	free(gz);
	free(tar);
}

static void test_pax(void)
{
	static const struct {
		const char *rec;
		int ok;
	} cases[] = {
		{ "21 path=streamhub.db\n", 1 },
		{ "13 size=4096\n", 1 },
		{ "99 path=streamhub.db\n", 0 },          /* length past the end */
		{ "12 pathname\n", 0 },                    /* no '=' */
		{ "16 path=abcdefg ", 0 },                 /* no newline */
		{ "8 size=\n", 0 },                        /* empty number */
		{ "11 size=-1\n", 0 },
		{ "29 size=99999999999999999999\n", 0 },   /* overflows */
		{ "0 path=x\n", 0 },
	};
	char digits[257];

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases) + 1; i++) {
		const char *rec = i < sizeof(cases) / sizeof(*cases) ? cases[i].rec : digits;
		int ok = i < sizeof(cases) / sizeof(*cases) ? cases[i].ok : 0;
		size_t tlen, glen;
		unsigned char *tar, *gz;
		struct shb_zindex *z = NULL;

		/* Last: 256 digits filling the pax buffer's allocation exactly. */
		memset(digits, '9', 256);
		digits[256] = '\0';
		tar = make_tar(rec, strlen(rec), 4096, &tlen);
		gz = gzip_of(tar, tlen, &glen);
		int rc = build(gz, glen, &z);

		if (ok) {
			CHECK_OK(rc);
		} else if (rc != SHB_EFORMAT) {
			CHECK(rc == SHB_EFORMAT);
			fprintf(stderr, "  case %zu: rc %d\n", i, rc);
		}
		if (z && !strncmp(rec, "21 path", 7))
			CHECK(!strcmp(z->entries.entries[0].path, "streamhub.db"));
		shb_zindex_free(z);
		free(gz);
		free(tar);
	}
}

int main(void)
{
	test_reads_and_cache_form();
	test_pax();
	return check_done("test_zindex");
}
