/*
 * Random access to the entries of one archive over a byte source: our
 * seekable format, or a plain tar.gz through its access-point index.
 * Opening ours reads only the footer and the index (one read of the file's
 * tail when the index is small).
 *
 * A read maps the requested range to the pieces that cover it (members of
 * our format, or a plain archive's segments between access points: one
 * code path for both), takes what it can from a memory cache of inflated
 * pieces (pieces.h) when given one, fetches each missing run of adjacent
 * members in one source read, and inflates with the CRC32 and length check
 * (chunk CRC32s for plain archives): never wrong bytes.  Read-ahead queues
 * the pieces after a read for the memory cache's workers.  Caching of the
 * fetched (compressed) bytes is the source's business (cache.h), below.
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

struct shb_pieces;
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
/* True for our seekable format (entries carry sha256s), false for a plain tar.gz. */
int shb_reader_seekable(const struct shb_reader *r);
/*
 * A plain archive's access-point index as bytes, for caching: a malloc'd
 * buffer in *out (the caller frees it).  SHB_EINVAL for our format.
 */
int shb_reader_plain_index(const struct shb_reader *r, unsigned char **out, size_t *len);

/*
 * The file's last bytes that hold index and footer, for caching (our
 * format; NULL and 0 for a plain archive).  Borrowed: valid while r is open.
 */
void shb_reader_trailer(const struct shb_reader *r, const unsigned char **p, size_t *len);
/* The entries (and, for our format, members) of r; borrowed, valid while r is open. */
const struct shb_index *shb_reader_index(const struct shb_reader *r);
/* The source r reads; still owned by r. */
struct shb_source *shb_reader_source(const struct shb_reader *r);

/*
 * Reads up to len bytes of entry e at off into buf; *got is len clipped to
 * the entry's end (0 at or past it).  SHB_ECORRUPT if a member fails its
 * CRC or length check (a plain archive, a chunk CRC): never returns wrong
 * bytes.  Inflates exactly the members the range touches; no memory cache.
 */
int shb_reader_pread(struct shb_reader *r, const struct shb_entry *e, void *buf, size_t len,
		     uint64_t off, size_t *got);
/*
 * shb_reader_pread through the memory cache p (NULL: none): pieces found
 * there (or in flight there, waited for) are not inflated again, pieces
 * inflated are kept there.  A plain archive is read by whole segments.
 */
int shb_reader_pread_cached(struct shb_reader *r, struct shb_pieces *p,
			    const struct shb_entry *e, void *buf, size_t len, uint64_t off,
			    size_t *got);
/*
 * Queues the pieces holding bytes [off, off + len) of entry e (clipped to
 * its end) that p has neither cached nor in flight, for p's workers to
 * inflate into p: jobs of at most batch pieces, each fetched in one source
 * read.  No-op when p is NULL or has no workers.  r must stay open until p
 * is freed.  Errors are ignored: the read that needs a piece tries again.
 */
void shb_reader_readahead(struct shb_reader *r, struct shb_pieces *p, const struct shb_entry *e,
			  uint64_t off, uint64_t len, size_t batch);

/* Number of members inflated since open (for tests and statistics). */
uint64_t shb_reader_inflated(const struct shb_reader *r);

/* Closes r and its source; NULL is fine.  No read-ahead of r may be queued. */
void shb_reader_close(struct shb_reader *r);

#endif
