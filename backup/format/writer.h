/*
 * The seekable archive writer.  It produces an ordinary .tar.gz (pax tar,
 * readable by gzip and GNU tar) whose gzip stream is a sequence of
 * independent members, followed by the index and footer of index.h, so a
 * reader can later inflate any byte range of any entry on its own.
 *
 * libarchive writes the tar unblocked; the bytes it emits are cut into
 * members (a new one at the start of every entry's data and every
 * SHB_BLOCK_SIZE bytes after it) that a pool of threads deflates in
 * parallel while the caller keeps feeding data.  Output is written to the
 * caller's file descriptor in order.  The writer never fsyncs or renames:
 * making the file durable and visible is the caller's job.
 */
#ifndef SHB_WRITER_H
#define SHB_WRITER_H

#include <stdint.h>

struct shb_archive_writer;

/* Called as data is archived: done of total bytes of the current entry. */
typedef void (*shb_progress_fn)(void *ctx, const char *path, uint64_t done, uint64_t total);

/*
 * Threads: one caller thread drives a writer (begin, add_*, finish, free);
 * the compression pool is internal.  progress is called from that caller
 * thread.
 */
struct shb_archive_opts {
	int level;      /* zlib level 1..9 */
	int threads;    /* compression threads, >= 1 */
	uint32_t uid, gid;
	shb_progress_fn progress;  /* may be NULL */
	void *progress_ctx;
	/*
	 * Where the archive's bytes go, in order, from the caller's thread:
	 * NULL writes them to fd; else write(write_ctx, ...) gets them all (an
	 * encrypting sink) and returns SHB_OK or an error code with
	 * shb_errmsg() set, which sticks as the writer's.
	 */
	int (*write)(void *ctx, const void *buf, size_t len);
	void *write_ctx;
};

/*
 * Starts an archive on fd (positioned at 0; borrowed, never closed; unused
 * when opts->write is set) and
 * starts opts->threads compression threads.  *out is the caller's, to free
 * with shb_archive_free().  name (copied) is for messages.  SHB_ENOMEM, or
 * SHB_EARCHIVE when libarchive refuses to start.
 *
 * The first failure of any call below sticks: every later call on the
 * same writer returns it again, and only shb_archive_free() is useful.
 * Errors: SHB_EIO (reading the input or writing fd), SHB_EARCHIVE
 * (libarchive), SHB_EFORMAT, SHB_ENOMEM, each with shb_errmsg() naming the
 * entry or file.
 */
int shb_archive_begin(int fd, const char *name, const struct shb_archive_opts *opts,
		      struct shb_archive_writer **out);
/* Adds a directory entry; path is copied. */
int shb_archive_add_dir(struct shb_archive_writer *w, const char *path, uint32_t mode,
			int64_t mtime);
/*
 * Adds a regular file whose size bytes are read from fd (from its current
 * position; fd is borrowed, left open).  Its sha256 is computed on the way
 * for the index.  Fails with SHB_EIO if fd does not hold exactly size
 * bytes (the file changed size while read).
 */
int shb_archive_add_file(struct shb_archive_writer *w, const char *path, int fd,
			 uint64_t size, uint32_t mode, int64_t mtime);
/*
 * Ends the tar, waits for all members, appends index and footer.  The
 * file is then complete but neither fsync'd nor renamed.
 */
int shb_archive_finish(struct shb_archive_writer *w);
/* Total archive bytes written so far (final size after finish), before any sink's framing. */
uint64_t shb_archive_size(const struct shb_archive_writer *w);
/*
 * Stops the threads and frees everything; safe after any failure and on
 * NULL.  Freeing a writer that was not finished leaves fd holding a
 * partial archive, which the caller removes.
 */
void shb_archive_free(struct shb_archive_writer *w);

#endif
