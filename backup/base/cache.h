/*
 * The disk cache of fetched bytes, and the caching byte source over it.
 *
 * A struct shb_cache is a directory of files under a hard size cap (least
 * recently used files evicted on insert).  It holds two kinds of thing:
 *  - pieces of remote sources (the byte ranges fetched), put there by a
 *    caching source (below), keyed by the source's content identity
 *    (shb_source_identity), so an archive rewritten in place or an S3
 *    object overwritten is a new key and its old bytes are never served
 *    for it; each piece carries a CRC32, so a damaged or short cache file
 *    is a miss, never wrong bytes;
 *  - named blobs derived from a source (a plain archive's access-point
 *    index), which callers key by that identity themselves.
 *
 * The directory is 0700 and its files 0600; files are opened relative to
 * it without following links.  Every function is thread-safe.  Cache trouble is never an error for the
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
 * Opens the cache in dir (created 0700 if missing, made 0700 if not)
 * capped at cap bytes.  dir must belong to the effective user: a dir
 * another user owns could hold bytes of theirs whose CRC32s match, so it
 * is refused.  Only the cache's own files there (names it makes: a
 * lower-case word, '-', hex groups; owned by the user) are read, charged
 * and evicted; anything else in dir is never touched.  dir NULL: a private
 * cache in a new directory "shb-cache-<pid>-XXXXXX" under $TMPDIR (or
 * /tmp), removed with everything in it by shb_cache_close(); opening one
 * also removes those of runs whose pid is gone (killed ones).  cap 0
 * disables the cache: every get misses, every put is dropped.  SHB_EIO
 * naming dir when it cannot be created or used (the message in
 * shb_errmsg()); SHB_ENOMEM.  *out is the caller's, for shb_cache_close().
 */
int shb_cache_open(const char *dir, uint64_t cap, struct shb_cache **out);
/* Closes c (NULL is fine); a private cache's directory is removed. */
void shb_cache_close(struct shb_cache *c);

/*
 * Named blobs: names are plain file names (no '/', no leading dot) that
 * callers make unique, e.g. by putting the source identity in them.
 * shb_cache_get_blob: 0 and a malloc'd copy (the caller frees it) in *buf,
 * *len on a hit; -1 on a miss, *buf NULL.  Names starting "m-" are the
 * caching source's.
 */
int shb_cache_get_blob(struct shb_cache *c, const char *name, unsigned char **buf,
		       size_t *len);
/* Whether a named blob is cached (no I/O; a later get may still miss). */
int shb_cache_has_blob(struct shb_cache *c, const char *name);
/* Stores a named blob (replacing one of that name); trouble skips it. */
void shb_cache_put_blob(struct shb_cache *c, const char *name, const void *buf, size_t len);
/* Forgets a named blob (a damaged one, found so by its reader). */
void shb_cache_drop(struct shb_cache *c, const char *name);

/*
 * Wraps inner (taking ownership, also on failure) in a source whose reads
 * are served from c where the bytes are cached and fetched from inner
 * where they are not, in as few inner reads as possible, and kept.  The
 * wrapper has inner's size, name and identity.  c is borrowed and must
 * outlive the source; c NULL or disabled (cap 0) returns inner itself.
 * Wrapping computes inner's identity (no read for an S3 object with an
 * ETag, a tail read otherwise); its error is returned, inner closed.
 */
int shb_source_cached(struct shb_source *inner, struct shb_cache *c, struct shb_source **out);

#endif
