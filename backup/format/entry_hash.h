/*
 * Reading one entry of an archive whole, in order, while computing the
 * SHA-256 of its bytes: what extraction and verify both do to check an
 * entry against the sha256 of the index.
 */
#ifndef SHB_ENTRY_HASH_H
#define SHB_ENTRY_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "reader.h"

/* Given each piece of the entry in order: p[0..len) are its bytes at off. */
typedef int (*shb_piece_fn)(void *ctx, const unsigned char *p, size_t len, uint64_t off);

/*
 * Reads entry e of r from start to end in pieces of at most chunk bytes
 * (one buffer, freed before returning), calls fn(ctx, ...) with each piece
 * unless fn is NULL, and leaves the SHA-256 of all the bytes in sum.
 * Returns SHB_OK, the reader's error (SHB_ECORRUPT, ...), the first non-zero
 * return of fn, or SHB_ENOMEM; sum is meaningful only on SHB_OK.  The
 * caller compares sum with e->sha256 (an entry of a plain archive has none).
 */
int shb_entry_hash_read(struct shb_reader *r, const struct shb_entry *e, size_t chunk,
			shb_piece_fn fn, void *ctx, unsigned char sum[32]);

#endif
