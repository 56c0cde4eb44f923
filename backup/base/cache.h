/*
 * The disk cache of fetched bytes, and the caching byte source over it.
 *
 * A struct shb_cache is a directory of files under a hard size cap (least
 * recently used files evicted on insert).  It holds two kinds of thing:
 *  - blocks of remote sources, put there by a caching source (below), keyed
 *    by the source's content identity (shb_source_identity), so an archive
 *    rewritten in place or an S3 object overwritten is a new key and its
 *    old bytes are never served for it;
 *  - named blobs derived from a source (a plain archive's access-point
 *    index), which callers key by that identity themselves.
 *
 * Every function is thread-safe.  Cache trouble is never an error for the
 * caller: a failed put is skipped, a failed get is a miss, a damaged block
 * is caught by the readers' own checksums (member and chunk CRC32s).
 */
#ifndef SHB_CACHE_H
#define SHB_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct shb_cache;
struct shb_source;

/*
 * Opens the cache in dir (created 0700 if missing) capped at cap bytes.
 * dir NULL: a private cache in a new directory under $TMPDIR (or /tmp),
 * removed with everything in it by shb_cache_close().  cap 0 disables
 * the cache: every get misses, every put is dropped.  SHB_EIO naming dir
 * when it cannot be created or used.
 */
int shb_cache_open(const char *dir, uint64_t cap, struct shb_cache **out);
/* Closes c (NULL is fine); a private cache's directory is removed. */
void shb_cache_close(struct shb_cache *c);

/* A named blob: 0 and a malloc'd copy in *buf, *len on a hit; -1 on a miss. */
int shb_cache_get_blob(struct shb_cache *c, const char *name, unsigned char **buf,
		       size_t *len);
/* Stores a named blob (replacing one of that name); trouble skips it. */
void shb_cache_put_blob(struct shb_cache *c, const char *name, const void *buf, size_t len);
/* Forgets a named blob (a damaged one, found so by its reader). */
void shb_cache_drop(struct shb_cache *c, const char *name);

/*
 * Wraps inner (taking ownership, also on failure) in a source whose reads
 * are served from c where the bytes are cached and fetched from inner
 * where they are not, in as few inner reads as possible, and kept.  The
 * wrapper has inner's size, name and identity.  c is borrowed and must
 * outlive the source; c NULL returns inner itself.
 */
int shb_source_cached(struct shb_source *inner, struct shb_cache *c, struct shb_source **out);

#endif
