/*
 * Layer backup/format: the archive format, and nothing about where an
 * archive lives.
 *
 * Owns the seekable .tar.gz format (FORMAT.md): the index and its gzip
 * framing (index.h), the layout rule of what a backup may hold (layout.h),
 * the parallel writer (writer.h), the reader of our archives over any byte
 * source (reader.h) and random access into plain tar.gz files (zindex.h).
 * May include backup/base and its own headers, plus zlib, libarchive and
 * OpenSSL; never S3, SQLite, repo, cmd or FUSE headers.  It reads through
 * struct shb_source (source.h), so S3 and the disk cache stay out of it.
 * Used by sqlite, repo, cmd and fs.  Rules: HACKING.md "Layers".
 */
/*
 * The index of a seekable archive and the gzip framing that carries it.
 * backup/format/FORMAT.md gives the byte layout; this header is the C contract.
 *
 * An archive is a pax tar compressed as independent gzip members.  The
 * index lists every member (compressed and uncompressed length, in file
 * order) and every tar entry (path, type, mode, owner, mtime, size, offset
 * of its data in the uncompressed tar stream, sha256 of its data).  It
 * travels after the tar in empty gzip members, and a fixed-size footer
 * member at the very end says where it starts.
 */
#ifndef SHB_INDEX_H
#define SHB_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SHB_INDEX_VERSION 1
/* Uncompressed bytes per member: a multiple of every SQLite page size. */
#define SHB_BLOCK_SIZE (256u * 1024u)
/* Size in bytes of the footer member that ends every archive. */
#define SHB_FOOTER_SIZE 98

enum shb_entry_type {
	SHB_ENTRY_FILE = 1,
	SHB_ENTRY_DIR = 2,
	SHB_ENTRY_OTHER = 3,  /* link or special file, seen in foreign archives only */
};

struct shb_member {
	uint64_t coff;  /* offset of the member in the archive file */
	uint64_t uoff;  /* offset of its bytes in the tar stream */
	uint32_t clen;
	uint32_t ulen;
};

struct shb_entry {
	char *path;     /* as in the tar, e.g. "streamhub-backup-<ts>/streamhub.db" */
	uint8_t type;   /* enum shb_entry_type */
	uint32_t mode;  /* permission bits */
	uint32_t uid, gid;
	int64_t mtime;
	uint64_t size;
	uint64_t offset;  /* of the data in the tar stream */
	unsigned char sha256[32];
};

/*
 * An index is immutable once decoded (or once the writer has finished
 * it): a reader's threads share it without a lock.
 */
struct shb_index {
	uint32_t version;
	uint32_t block_size;
	uint64_t tar_size;  /* sum of member ulen */
	size_t nmembers;
	struct shb_member *members;
	size_t nentries;
	struct shb_entry *entries;
};

/* What the footer says. */
struct shb_footer {
	uint64_t index_offset;  /* file offset of the first index member */
	uint64_t index_length;  /* bytes of all index members together */
	uint64_t blob_length;   /* length of the encoded index */
	unsigned char blob_sha256[32];
};

/*
 * Serialises idx into a new blob (*out, *outlen; malloc'd, the caller
 * frees it).  Only version, block_size, tar_size, member clen/ulen and the
 * entries are written; coff/uoff are derived again on decode.  SHB_ENOMEM
 * is the only failure.
 */
int shb_index_encode(const struct shb_index *idx, unsigned char **out, size_t *outlen);
/*
 * Parses and validates blob[0..len) into a new index (*out, the caller's:
 * free with shb_index_free; blob stays the caller's and is not kept).
 * Every length and offset is checked, so hostile bytes give SHB_EFORMAT
 * with a message naming what is wrong, never an out-of-bounds access;
 * SHB_ENOMEM otherwise.  Member offsets are derived.  *out is set only on
 * success.
 */
int shb_index_decode(const unsigned char *blob, size_t len, struct shb_index **out);
/*
 * The same for the entries of a plain archive's index (zindex.h): no
 * members at all, so tar_size is taken as given.  Same errors.
 */
int shb_index_decode_plain(const unsigned char *blob, size_t len, struct shb_index **out);
/* Frees idx, its arrays and entry paths; NULL is fine. */
void shb_index_free(struct shb_index *idx);

/*
 * The entry with exactly this path (as in the tar, top folder included),
 * or NULL.  A linear scan; the pointer is into idx and lives as long as it.
 */
const struct shb_entry *shb_index_find(const struct shb_index *idx, const char *path);
/*
 * Index of the member holding tar offset uoff, by binary search.  The
 * caller guarantees nmembers > 0 and uoff < idx->tar_size; never fails.
 */
size_t shb_index_member_at(const struct shb_index *idx, uint64_t uoff);
/*
 * Binary search over n records of stride bytes at arr, sorted by the
 * uint64_t at byte offset field of each (an output offset, strictly
 * increasing): the index of the last record whose offset is <= key, or 0
 * if none is (or n is 0).  Shared by members and access points.
 */
size_t shb_uoff_search(const void *arr, size_t n, size_t stride, size_t field, uint64_t key);

/*
 * Appends to out the index members carrying blob[0..len) (65531-byte
 * chunks), then the footer member; index_offset is the file offset at
 * which out's bytes will land.  SHB_ENOMEM only; out may then hold part
 * of the trailer, and stays the caller's to free.
 */
int shb_index_write_trailer(struct shb_buf *out, const unsigned char *blob, size_t len,
			    uint64_t index_offset);
/*
 * Parses the last SHB_FOOTER_SIZE bytes of an archive (p) into *f.
 * SHB_EFORMAT if they are not our footer or name another format version.
 * f's offsets are not checked against the file: the caller does that.
 */
int shb_footer_parse(const unsigned char *p, struct shb_footer *f);
/*
 * Collects the blob from the index members in p[0..len) (the bytes from
 * footer.index_offset up to the footer), checking its length and sha256.
 * *blob is malloc'd (free() it; never NULL on success, even for an empty
 * blob); SHB_EFORMAT, SHB_ECORRUPT or SHB_ENOMEM with *blob untouched.
 */
int shb_index_members_parse(const unsigned char *p, size_t len, const struct shb_footer *f,
			    unsigned char **blob);

#endif
