/*
 * Byte sources: the one thing the reader needs from wherever an archive
 * lives.  A source knows its size and reads exact byte ranges; the local
 * file source (here), the in-memory source (here), the S3 object source
 * (s3/s3.h) and the caching source (cache.h) share the ops below, so
 * everything above base/ reads an archive without knowing where it is.
 *
 * Threads: shb_source_read() may be called on one source from several
 * threads at once (every source here is pread-like); open and close are
 * the owner's, once.
 */
#ifndef SHB_SOURCE_H
#define SHB_SOURCE_H

#include <stddef.h>
#include <stdint.h>

struct shb_source;

struct shb_source_ops {
	/*
	 * Reads exactly len bytes at off (off + len <= size, checked by
	 * shb_source_read() before the call), or fails with an SHB_E* code
	 * and shb_errmsg() set.  Called from any thread.
	 */
	int (*read)(struct shb_source *src, void *buf, size_t len, uint64_t off);
	/* Frees what the concrete source holds; shb_source_close() frees the rest. */
	void (*close)(struct shb_source *src);
	/*
	 * Appends what tells this version of the bytes from another (stat
	 * fields, an ETag) to buf; NULL when the source has nothing to add.
	 * Sets *names_content when that text alone names the content (an
	 * ETag), so shb_source_identity() need not read the tail.
	 */
	int (*version)(struct shb_source *src, char *buf, size_t len, int *names_content);
	/*
	 * The source this one reads its bytes from (a caching or decrypting
	 * source's inner one), for shb_source_fetched(); NULL for a source
	 * that reads where the bytes live.
	 */
	struct shb_source *(*under)(const struct shb_source *src);
	/*
	 * Optional, for a source whose reads bring more than bytes (an S3
	 * object's metadata): reads the last tail bytes into tail_buf, as
	 * read would, and copies to head (cap bytes) the object's first bytes
	 * as far as that read told them: *got of them, 0 when it told none.
	 * The head is as the store gave it: the caller must verify it.
	 */
	int (*tail_and_head)(struct shb_source *src, void *tail_buf, size_t tail, void *head,
			     size_t cap, size_t *got);
};

struct shb_source {
	const struct shb_source_ops *ops;  /* immutable after open */
	uint64_t size;     /* immutable after open */
	char *name;        /* for messages: a path or an s3:// URL; immutable, owned */
	uint64_t fetched;  /* bytes read so far (statistics, updated atomically) */
};

/*
 * Opens a local file read-only as a source (*out, the caller's: close it
 * with shb_source_close()).  Its size is taken once, at open.
 * SHB_ENOTFOUND if missing; anything but a regular file (after following
 * symlinks) or an open that fails otherwise is SHB_EIO; SHB_ENOMEM.  The
 * message names path.  For a path the operator named.
 */
int shb_source_open_file(const char *path, struct shb_source **out);
/*
 * The same for a backup found in the backup dir (catalog.h): a symlink in
 * its last component is refused, not followed (SHB_EIO, "it is a
 * symlink"), since whoever can write the backup dir could point it at an
 * archive they may not read.  Opened O_NONBLOCK, so a fifo put there
 * after the listing cannot hang the open.
 */
int shb_source_open_backup_file(const char *path, struct shb_source **out);

/*
 * A source over data[0..len) in memory (borrowed; the bytes must outlive
 * the source); name (copied) is for messages.  SHB_ENOMEM only.  It has
 * no version, so its identity hashes name, size and tail.
 */
int shb_source_open_mem(const void *data, uint64_t len, const char *name,
			struct shb_source **out);

/*
 * Reads exactly len bytes at off into buf: SHB_EFORMAT (message naming the
 * source) if the range passes the end, else whatever the source's read
 * gives (SHB_EIO, SHB_EFORMAT on a short file, S3's SHB_EREMOTE/SHB_ENET/
 * SHB_ENOTFOUND, SHB_ENOMEM).  Adds len to src->fetched on success.
 */
int shb_source_read(struct shb_source *src, void *buf, size_t len, uint64_t off);

/*
 * ops->tail_and_head when src has it (SHB_OK, or the read's error; tail
 * <= size, added to src->fetched); else *got = 0 and nothing is read.
 * For the age source (age.h): the first GET of an encrypted S3 backup is
 * the suffix the reader needs anyway, and brings the header with it.
 */
int shb_source_tail_and_head(struct shb_source *src, void *tail_buf, size_t tail, void *head,
			     size_t cap, size_t *got);

/* Bytes of the tail that shb_source_identity() hashes. */
#define SHB_IDENTITY_TAIL (64u * 1024u)

/*
 * A SHA-256 that changes whenever the bytes behind src do, to key caches of
 * anything derived from them (indexes, fetched members): a format tag, the
 * name and size, then for a local file its inode and mtime (ns) and for an
 * S3 object its ETag, and the SHA-256 of the last SHB_IDENTITY_TAIL bytes
 * (read for a local file or an S3 object without a known ETag).  An edit
 * that keeps all of these (same size, mtime put back, tail untouched) is
 * left to the readers' own checksums: member CRC32s, zindex chunk CRC32s.
 * Fills id and returns SHB_OK, or the error of the version check or of
 * the tail read (SHB_EIO when a local file changed size while open, an S3
 * error), or SHB_ENOMEM; id is then undefined.
 */
int shb_source_identity(struct shb_source *src, unsigned char id[32]);

/*
 * Bytes read from where src's bytes live: following ops->under down to
 * the source that reads them (a file, an S3 object), that one's fetched.
 * So a caching source's cache hits and a decrypting source's plaintext
 * are not counted.  Grows only on successful reads (atomic).
 */
uint64_t shb_source_fetched(const struct shb_source *src);

/* Closes and frees a source, its name included; NULL is fine.  Never fails. */
void shb_source_close(struct shb_source *src);

#endif
