/*
 * Private to base/: the pieces of sources in the disk cache, between the
 * cache (cache.c) and the caching source (cache_source.c).  A piece is a
 * range [off, off + len) of the source whose identity is id (the first 16
 * bytes of shb_source_identity() in hex); pieces of one source may overlap
 * (two threads fetched the same hole) and any may be evicted at any time.
 */
#ifndef SHB_CACHE_PIECES_H
#define SHB_CACHE_PIECES_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"

#define SHB_CACHE_ID_LEN 32
/* The longest piece: the caching source stores longer runs as several. */
#define SHB_CACHE_PIECE_MAX (256u * 1024u)

struct shb_piece {
	uint64_t off, len;
};

/* True when c stores anything (an open, enabled cache). */
int shb_cache_enabled(const struct shb_cache *c);
/*
 * The pieces of source id that overlap [off, end), in no order, as a
 * malloc'd array in *out (the caller frees it); returns how many.
 */
size_t shb_cache_pieces(struct shb_cache *c, const char *id, uint64_t off, uint64_t end,
			struct shb_piece **out);
/*
 * Piece p of id: 0 and a malloc'd buffer of at least p->len bytes in *buf
 * on a hit; -1 on a miss.  A file of the wrong size or whose CRC32 does
 * not match is dropped and a miss.
 */
int shb_cache_get_piece(struct shb_cache *c, const char *id, const struct shb_piece *p,
			unsigned char **buf);
/* Stores len bytes of id at off as one piece; trouble skips it. */
void shb_cache_put_piece(struct shb_cache *c, const char *id, uint64_t off, const void *buf,
			 size_t len);

#endif
