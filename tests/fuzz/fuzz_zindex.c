/*
 * libFuzzer target: whole plain tar.gz streams through the access-point
 * indexer (zindex.h) and back out through the reader.  An input that is not
 * already a gzip stream is gzip-compressed here first, so the fuzzer mutates
 * tar bytes (ustar headers, pax records, GNU long names) instead of deflate
 * bits that would mostly fail to inflate.  When the tar bytes are known,
 * every entry read back must equal them at the entry's offset; the cached
 * form of the index must decode to the same index and read the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "reader.h"
#include "zindex.h"

#define READ_MAX (1u << 20)

static unsigned char *gzip_of(const unsigned char *data, size_t size, size_t *out_len)
{
	z_stream s = { 0 };
	unsigned char *out;
	size_t cap;

	if (deflateInit2(&s, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	cap = deflateBound(&s, size) + 32;
	if (!(out = malloc(cap))) {
		deflateEnd(&s);
		return NULL;
	}
	s.next_in = (unsigned char *)data;
	s.avail_in = (uInt)size;
	s.next_out = out;
	s.avail_out = (uInt)cap;
	if (deflate(&s, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&s);
		free(out);
		return NULL;
	}
	*out_len = cap - s.avail_out;
	deflateEnd(&s);
	return out;
}

/* Reads every entry (up to READ_MAX each); checks against tar when known. */
static void read_back(struct shb_reader *r, const unsigned char *tar, size_t tar_len,
		      unsigned char *buf)
{
	const struct shb_index *idx = shb_reader_index(r);

	for (size_t i = 0; i < idx->nentries && i < 64; i++) {
		const struct shb_entry *e = &idx->entries[i];
		size_t want = e->size < READ_MAX ? (size_t)e->size : READ_MAX, got;

		/* The indexer only records entries whose data it passed over. */
		if (e->offset > idx->tar_size || e->size > idx->tar_size - e->offset)
			abort();
		/* Bytes we compressed ourselves must always read back. */
		if (shb_reader_pread(r, e, buf, want, 0, &got)) {
			if (tar)
				abort();
			continue;
		}
		if (got != want || (tar && (e->offset + want > tar_len
					    || memcmp(buf, tar + e->offset, want))))
			abort();
		/* An unaligned read inside the entry must agree with the whole one. */
		if (want > 3 && shb_reader_pread(r, e, buf + want, want / 2, want / 3, &got) == 0
		    && memcmp(buf + want, buf + want / 3, got))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const unsigned char *gz = data, *tar = NULL;
	unsigned char *made = NULL, *buf = NULL, *saved = NULL;
	size_t gz_len = size, saved_len;
	struct shb_source *src;
	struct shb_reader *r = NULL, *r2 = NULL;

	if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) {
		if (!(made = gzip_of(data, size, &gz_len)))
			return 0;
		gz = made;
		tar = data;
	}
	if (!(buf = malloc(READ_MAX + READ_MAX / 2)))
		goto out;
	if (shb_source_open_mem(gz, gz_len, "fuzz", &src) || shb_reader_open_plain(src, NULL, 0, &r))
		goto out;
	if (tar && shb_reader_index(r)->tar_size != size)
		abort();
	read_back(r, tar, size, buf);
	if (shb_reader_plain_index(r, &saved, &saved_len))
		goto out;
	if (shb_source_open_mem(gz, gz_len, "fuzz", &src)
	    || shb_reader_open_plain(src, saved, saved_len, &r2))
		abort();  /* what the indexer wrote must decode */
	if (shb_reader_index(r2)->nentries != shb_reader_index(r)->nentries
	    || shb_reader_index(r2)->tar_size != shb_reader_index(r)->tar_size)
		abort();
	read_back(r2, tar, size, buf);
out:
	shb_reader_close(r2);
	shb_reader_close(r);
	free(saved);
	free(buf);
	free(made);
	return 0;
}
