/*
 * Errors of the backup layer.  Every library function returns one of the
 * codes below (SHB_OK on success) and, on failure, leaves a one-line,
 * human-readable description for the calling thread in shb_errmsg().  The
 * message says what failed first, in lowercase, without a full stop:
 *
 *     cannot snapshot 'apps/x/app.db': database disk image is malformed
 *
 * Library code never prints and never exits; only main() turns a code into
 * an exit status.
 */
#ifndef SHB_ERROR_H
#define SHB_ERROR_H

enum shb_err {
	SHB_OK = 0,
	SHB_ENOMEM,     /* out of memory */
	SHB_EIO,        /* a system call on a file or directory failed */
	SHB_EFORMAT,    /* bytes are not what the archive format says */
	SHB_ECORRUPT,   /* a checksum did not match */
	SHB_ENOTFOUND,  /* no such backup, entry or file */
	SHB_EINVAL,     /* bad argument or configuration value */
	SHB_ESQLITE,    /* SQLite reported an error */
	SHB_EARCHIVE,   /* libarchive reported an error */
	SHB_EBUSY,      /* another process holds what we need */
	SHB_EREMOTE,    /* the storage server refused a request */
	SHB_ENET,       /* the storage server could not be reached in time */
	SHB_ETOOBIG,    /* more bytes than a size limit allows */
	SHB_EKEY,       /* an encrypted backup and no identity that opens it */
	SHB_ERR_LAST
};

/*
 * Records a printf-style message as this thread's last error and returns
 * err, so a failure reads "return shb_fail(SHB_EIO, ...);".  The message may
 * quote shb_errmsg() itself to add context to a lower layer's message
 * ("cannot open '%s': %s", path, shb_errmsg()): it is formatted into a
 * scratch buffer first.  Messages longer than 1023 bytes are truncated.
 * Never fails and never allocates; err is returned unchanged (SHB_OK too,
 * though callers only pass failures).
 */
int shb_fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Like shb_fail() with ": strerror(errno)" appended; errno is read before
 * anything else runs, so it is the one the failed call left.
 */
int shb_fail_errno(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * This thread's last error message ("" if none was recorded yet).  The
 * pointer is to thread-local storage: valid in this thread until its next
 * shb_fail(); never free it, copy it to keep it.  A message set in another
 * thread (a worker of shb_parallel(), say) is not seen here unless that
 * code hands it over (shb_parallel() does).
 */
const char *shb_errmsg(void);

#endif
