/*
 * Random access to the entries of one seekable archive over a byte source.
 * Opening reads only the footer and the index (one read of the file's tail
 * when the index is small); a read maps the requested range to the members
 * that cover it, fetches exactly those compressed bytes in one source read,
 * inflates them and checks each member's CRC32 and length.
 *
 * A reader is safe to use from several threads at once.
 */
#ifndef SHB_READER_H
#define SHB_READER_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "source.h"

/* The tail read when opening: footer plus, usually, the whole index. */
#define SHB_TAIL_READ (128u * 1024u)

struct shb_reader;

/*
 * Opens the archive behind src (the reader takes ownership of src, also on
 * failure).  SHB_EFORMAT if src is not a seekable shbackup archive.
 */
int shb_reader_open(struct shb_source *src, struct shb_reader **out);
/*
 * Opens with a trailer saved earlier from shb_reader_trailer() instead of
 * reading the file's tail: no byte of src is read.  The trailer is
 * validated (footer position, index sha256) as if it had been read.
 */
int shb_reader_open_trailer(struct shb_source *src, const unsigned char *trailer, size_t len,
			    struct shb_reader **out);
/*
 * Opens a plain single-stream tar.gz (not ours): builds its access-point
 * index in one pass over src (zindex.h), or decodes the one given in
 * cached (from shb_reader_plain_index() of an earlier open).  Entries carry
 * no sha256; reads inflate from the nearest access point.
 */
int shb_reader_open_plain(struct shb_source *src, const unsigned char *cached, size_t len,
			  struct shb_reader **out);
/* True for our seekable format (members, fetch/inflate below apply). */
int shb_reader_seekable(const struct shb_reader *r);
/*
 * Plain archives are read by segments (the bytes between two access
 * points, a few MiB): the segment holding tar offset uoff, and reading one.
 */
size_t shb_reader_segment_at(const struct shb_reader *r, uint64_t uoff, uint64_t *start,
			     size_t *len);
int shb_reader_read_segment(struct shb_reader *r, size_t i, unsigned char *buf);
/* A plain archive's access-point index as bytes, for caching (malloc'd). */
int shb_reader_plain_index(const struct shb_reader *r, unsigned char **out, size_t *len);

/* The file's last bytes that hold index and footer, for caching. */
void shb_reader_trailer(const struct shb_reader *r, const unsigned char **p, size_t *len);
const struct shb_index *shb_reader_index(const struct shb_reader *r);
struct shb_source *shb_reader_source(const struct shb_reader *r);

/*
 * Reads up to len bytes of entry e at off into buf; *got is len clipped to
 * the entry's end (0 at or past it).  SHB_ECORRUPT if a member fails its
 * CRC or length check: never returns wrong bytes.
 */
int shb_reader_pread(struct shb_reader *r, const struct shb_entry *e, void *buf, size_t len,
		     uint64_t off, size_t *got);

/*
 * The two halves of a read, for callers that cache members: one source read
 * of the compressed bytes of members lo..hi (contiguous in the file, into
 * comp), and the inflation of member i from its compressed bytes into plain
 * (members[i].ulen bytes), CRC32- and length-checked (SHB_ECORRUPT).
 */
int shb_reader_fetch(struct shb_reader *r, size_t lo, size_t hi, unsigned char *comp);
int shb_reader_inflate(struct shb_reader *r, size_t i, const unsigned char *comp,
		       unsigned char *plain);

/* Number of members inflated since open (for tests and statistics). */
uint64_t shb_reader_inflated(const struct shb_reader *r);

void shb_reader_close(struct shb_reader *r);

#endif
