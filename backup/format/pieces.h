/*
 * The memory cache of inflated pieces and the read-ahead workers that the
 * readers of one process share (reader.h: shb_reader_pread_cached).
 *
 * A piece is what a reader inflates as one: a member of our format, or the
 * segment between two access points of a plain tar.gz.  Pieces are keyed
 * by (owner, i): owner is a reader's serial number (unique in the process,
 * never reused), i the piece's number in that reader.  The cache is an LRU
 * bounded in bytes, so neighbouring small reads (SQLite pages) inflate a
 * piece once.
 *
 * Read-ahead: a reader queues a run of pieces with a fill function; worker
 * threads call it, which inflates the pieces into the cache.  A piece so
 * queued is "in flight" until its job ends: a read that needs it waits for
 * it (shb_pieces_wait) rather than inflating it a second time.  Workers
 * start at shb_pieces_start (after daemonizing: threads do not survive a
 * fork) and stop at shb_pieces_free.
 *
 * Every function is thread-safe.  Memory trouble is never an error: a
 * failed put is skipped, a job that cannot be queued is dropped.
 */
#ifndef SHB_PIECES_H
#define SHB_PIECES_H

#include <stddef.h>
#include <stdint.h>

struct shb_pieces;

/*
 * Makes an empty cache holding at most mem_cap bytes of pieces, with no
 * workers yet.  SHB_ENOMEM on failure.  Free with shb_pieces_free().
 */
int shb_pieces_new(size_t mem_cap, struct shb_pieces **out);
/*
 * Starts nthreads read-ahead workers (at least 1, at most 16; fewer when
 * the system refuses threads: with none, reads work without read-ahead).
 */
void shb_pieces_start(struct shb_pieces *p, int nthreads);
/*
 * Stops the workers (queued jobs are dropped, running ones finish) and
 * frees p; NULL is fine.  Every reader with jobs queued must still be
 * open when this is called.
 */
void shb_pieces_free(struct shb_pieces *p);

/*
 * Copies len bytes at offset at of piece (owner, i) into dst: 0 if cached
 * (at + len within the piece), -1 on a miss.
 */
int shb_pieces_read(struct shb_pieces *p, uint64_t owner, size_t i, uint64_t at, size_t len,
		    void *dst);
/* Whether piece (owner, i) is cached (or, with flying, in flight). */
int shb_pieces_has(struct shb_pieces *p, uint64_t owner, size_t i, int flying);
/* Caches a copy of piece (owner, i), len bytes, evicting older ones. */
void shb_pieces_put(struct shb_pieces *p, uint64_t owner, size_t i, const void *buf,
		    size_t len);
/* Returns once piece (owner, i) is not in flight. */
void shb_pieces_wait(struct shb_pieces *p, uint64_t owner, size_t i);

/* Fills pieces lo..hi of the reader arg into p (errors ignored). */
typedef void (*shb_pieces_fill_fn)(void *arg, struct shb_pieces *p, size_t lo, size_t hi);
/*
 * Queues pieces lo..hi of owner that are neither cached nor in flight, in
 * jobs of at most batch adjacent pieces, each run by a worker as
 * fill(arg, p, lo', hi').  No-op without workers.  arg must stay valid
 * until p is freed.
 */
void shb_pieces_ahead(struct shb_pieces *p, uint64_t owner, size_t lo, size_t hi, size_t batch,
		      shb_pieces_fill_fn fill, void *arg);

#endif
