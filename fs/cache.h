/*
 * The caches behind shbackupfs reads.  They are keyed by a source key, the
 * content identity of the archive (shb_source_identity: name, size, inode
 * and mtime in ns or the S3 ETag, a hash of the tail), and, for members,
 * the member's index: an archive rewritten in place, or an S3 object
 * overwritten, is a new key, so its old cached bytes are never served for
 * it.  An edit that keeps that identity is caught by the checksums every
 * read checks (member CRC32s, the plain-archive index's chunk CRC32s).
 *
 *  - disk: compressed members and index trailers fetched from remote
 *    archives, as files under cache_dir (0700 dirs, 0600 files).  Its size
 *    is a hard cap enforced on insert by evicting least recently used
 *    files; a damaged file is caught by the member's CRC and dropped.
 *  - memory: a few inflated members, so neighbouring small reads (SQLite
 *    pages) inflate a member once.
 *
 * All functions are thread-safe.  Cache trouble is never an error for the
 * caller: a failed put is skipped, a failed get is a miss.
 */
#ifndef SHBFS_CACHE_H
#define SHBFS_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct shbfs_cache;

/* dir NULL (or disk_cap 0) disables the disk cache. */
int shbfs_cache_new(const char *dir, uint64_t disk_cap, size_t mem_members,
		    struct shbfs_cache **out);
void shbfs_cache_free(struct shbfs_cache *c);

/* Disk: 0 and exactly len bytes in buf on a hit, -1 on a miss. */
int shbfs_cache_get(struct shbfs_cache *c, const char *name, unsigned char *buf, size_t len);
/* Disk: a whole file into a new malloc'd buffer; -1 on a miss. */
int shbfs_cache_get_all(struct shbfs_cache *c, const char *name, unsigned char **buf,
			size_t *len);
/* Disk: whether name is cached (no I/O). */
int shbfs_cache_has(struct shbfs_cache *c, const char *name);
void shbfs_cache_put(struct shbfs_cache *c, const char *name, const unsigned char *buf,
		     size_t len);
void shbfs_cache_drop(struct shbfs_cache *c, const char *name);
/* Bytes the disk cache holds now. */
uint64_t shbfs_cache_usage(struct shbfs_cache *c);

/* Memory: inflated member i of source key. */
int shbfs_cache_get_plain(struct shbfs_cache *c, const char *key, size_t i,
			  unsigned char *buf, size_t len);
int shbfs_cache_has_plain(struct shbfs_cache *c, const char *key, size_t i);
void shbfs_cache_put_plain(struct shbfs_cache *c, const char *key, size_t i,
			   const unsigned char *buf, size_t len);

#endif
