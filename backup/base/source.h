/*
 * Byte sources: the one thing the reader needs from wherever an archive
 * lives.  A source knows its size and reads exact byte ranges; the local
 * file source and the S3 object source share the ops below.
 */
#ifndef SHB_SOURCE_H
#define SHB_SOURCE_H

#include <stddef.h>
#include <stdint.h>

struct shb_source;

struct shb_source_ops {
	/* Reads exactly len bytes at off (off + len <= size), or fails. */
	int (*read)(struct shb_source *src, void *buf, size_t len, uint64_t off);
	void (*close)(struct shb_source *src);
	/*
	 * Appends what tells this version of the bytes from another (stat
	 * fields, an ETag) to buf; NULL when the source has nothing to add.
	 * Sets *names_content when that text alone names the content (an
	 * ETag), so shb_source_identity() need not read the tail.
	 */
	int (*version)(struct shb_source *src, char *buf, size_t len, int *names_content);
};

struct shb_source {
	const struct shb_source_ops *ops;
	uint64_t size;
	char *name;        /* for messages: a path or an s3:// URL */
	uint64_t fetched;  /* bytes read so far (statistics, updated atomically) */
};

/*
 * Opens a local file read-only as a source.  SHB_ENOTFOUND if missing;
 * anything but a regular file (after following symlinks) is SHB_EIO.  For
 * a path the operator named.
 */
int shb_source_open_file(const char *path, struct shb_source **out);
/*
 * The same for a backup found in the backup dir (catalog.h): a symlink in
 * its last component is refused, not followed, since whoever can write the
 * backup dir could point it at an archive they may not read.
 */
int shb_source_open_backup_file(const char *path, struct shb_source **out);

/* A source over bytes in memory (borrowed; they must outlive the source). */
int shb_source_open_mem(const void *data, uint64_t len, const char *name,
			struct shb_source **out);

/* Reads exactly len bytes at off; SHB_EFORMAT if the range passes the end. */
int shb_source_read(struct shb_source *src, void *buf, size_t len, uint64_t off);

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
 */
int shb_source_identity(struct shb_source *src, unsigned char id[32]);

/* Closes and frees a source; NULL is fine. */
void shb_source_close(struct shb_source *src);

#endif
