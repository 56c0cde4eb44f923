/*
 * Byte sources: the one thing the reader needs from wherever an archive
 * lives.  A source knows its size and reads exact byte ranges; the local
 * file source and the S3 object source share the ops below.
 */
#ifndef SHB_STORE_H
#define SHB_STORE_H

#include <stddef.h>
#include <stdint.h>

struct shb_source;

struct shb_source_ops {
	/* Reads exactly len bytes at off (off + len <= size), or fails. */
	int (*read)(struct shb_source *src, void *buf, size_t len, uint64_t off);
	void (*close)(struct shb_source *src);
};

struct shb_source {
	const struct shb_source_ops *ops;
	uint64_t size;
	char *name;        /* for messages: a path or an s3:// URL */
	uint64_t fetched;  /* bytes read so far (statistics, updated atomically) */
};

struct shb_s3;

/* Opens a local file read-only as a source.  SHB_ENOTFOUND if missing. */
int shb_source_open_file(const char *path, struct shb_source **out);

/*
 * An S3 object of known size as a source: each read is one ranged GET.
 * The client is borrowed and must outlive the source.
 */
int shb_source_open_s3(struct shb_s3 *s3, const char *key, uint64_t size,
		       struct shb_source **out);

/* A source over bytes in memory (borrowed; they must outlive the source). */
int shb_source_open_mem(const void *data, uint64_t len, const char *name,
			struct shb_source **out);

/* Reads exactly len bytes at off; SHB_EFORMAT if the range passes the end. */
int shb_source_read(struct shb_source *src, void *buf, size_t len, uint64_t off);

/* Closes and frees a source; NULL is fine. */
void shb_source_close(struct shb_source *src);

#endif
