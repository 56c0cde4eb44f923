/*
 * Random access into archives that are not in our format: a plain
 * single-stream .tar.gz (made by the old script or `tar czf`).  One
 * sequential pass inflates the stream, records an access point (the
 * compressed bit position and the 32 KiB window zlib needs) every span of
 * output, and parses the tar headers on the fly into index entries (path,
 * type, size, data offset; no sha256).  A read then inflates from the
 * nearest access point before it: about one span of work, fetching only
 * nearby compressed bytes.
 *
 * The pass lets zlib check the gzip trailer (CRC32 and length of the whole
 * stream), and records a CRC32 of every chunk of inflated output (each
 * segment between two access points cut into SHB_ZCHUNK pieces from its
 * start).  A later read inflates on to the end of the last chunk it touches
 * and checks every chunk it crossed: an archive changed after it was
 * indexed (a flipped byte, even with size and mtime put back) gives
 * SHB_ECORRUPT for the ranges it affects, never wrong bytes.
 *
 * The index encodes to bytes for a disk cache; decoding validates like
 * shb_index_decode.  Entries that are links or special files are kept with
 * type SHB_ENTRY_OTHER so the layout check can refuse them by name.
 */
#ifndef SHB_ZINDEX_H
#define SHB_ZINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "source.h"

/* Output bytes between access points. */
#define SHB_ZSPAN (4u << 20)
/* The most output between two access points an index may have. */
#define SHB_ZSEGMENT_MAX (64u << 20)
/*
 * Output bytes per checksummed chunk: a read costs at most one more chunk
 * of inflation than it asks for.
 */
#define SHB_ZCHUNK (64u << 10)

struct shb_zpoint {
	uint64_t uoff;          /* output offset */
	uint64_t coff;          /* input offset of the first full byte */
	int bits;               /* bits of the byte before coff still to use (0..7) */
	size_t chunk;           /* index in crcs of this segment's first chunk */
	unsigned char window[32768];
};

/* An access-point index: immutable after build or decode, so threads share it freely. */
struct shb_zindex {
	uint64_t usize;         /* length of the uncompressed tar */
	size_t npoints;
	struct shb_zpoint *points;
	size_t nchunks;
	uint32_t *crcs;         /* CRC32 of each chunk, segment by segment */
	struct shb_index entries;  /* entries only: nmembers is 0 */
};

/*
 * Builds the index of a plain tar.gz in one pass over src into a new *out
 * (free with shb_zindex_free).  SHB_EFORMAT if src is not one gzip stream
 * of a complete tar, or cannot be indexed (a deflate block too large).
 */
int shb_zindex_build(struct shb_source *src, struct shb_zindex **out);
/*
 * Reads exactly len uncompressed bytes at off (off + len <= usize), checking
 * the CRC32 of every chunk the range touches: SHB_ECORRUPT on a mismatch,
 * on damaged deflate data, or if the stream ends early.
 */
int shb_zindex_read(struct shb_source *src, const struct shb_zindex *z, uint64_t off,
		    size_t len, void *buf);

/*
 * Segment i: the bytes from access point i to the next (or to the end);
 * reading one whole inflates each byte once, which sequential readers want.
 * shb_zindex_segment_at() returns the segment holding off (< usize) and
 * its start and length.
 */
size_t shb_zindex_segment_at(const struct shb_zindex *z, uint64_t off, uint64_t *start,
			     size_t *len);
/* Reads segment i whole into buf (room for its length), checked as shb_zindex_read(). */
int shb_zindex_read_segment(struct shb_source *src, const struct shb_zindex *z, size_t i,
			    unsigned char *buf);

/*
 * Inflates the whole gzip stream of src (every member, if several) so zlib
 * checks each CRC32 and length: SHB_ECORRUPT if any does not match.
 */
int shb_gzip_check(struct shb_source *src);

/*
 * Encodes z for the disk cache into a malloc'd *out of *len bytes
 * (zindex.c gives the layout).  SHB_ENOMEM on failure.
 */
int shb_zindex_encode(const struct shb_zindex *z, unsigned char **out, size_t *len);
/*
 * Decodes and validates an encoded index into a new *out (free with
 * shb_zindex_free): SHB_EFORMAT for anything damaged or of another
 * version, never an out-of-bounds access.
 */
int shb_zindex_decode(const unsigned char *p, size_t len, struct shb_zindex **out);
/* Frees z and everything in it; NULL is fine. */
void shb_zindex_free(struct shb_zindex *z);

#endif
