/*
 * Layer backup/base: what every other layer stands on.
 *
 * Owns the error codes and per-thread messages (error.h), the small file,
 * path, time and thread helpers (util.h), the byte source interface with
 * its local-file and in-memory sources (source.h), the disk cache with the
 * caching source (cache.h), the option tables that drive parsing and
 * --help (options.h) and the NUL-terminated string buffer (strbuf.h).
 * May include its own headers, libc and OpenSSL only: no archive format,
 * no S3, no SQLite, no FUSE.  Every layer above (format, s3, sqlite, repo,
 * cmd, fs, mount) may include it.  The rules: HACKING.md "Layers",
 * tests/check/layers.py.
 */
/*
 * Small file, path and time helpers shared by every command.  They report
 * failures through error.h like the rest of the layer.
 */
#ifndef SHB_UTIL_H
#define SHB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "strbuf.h"

/* "YYYYMMDDTHHMMSSZ" plus the terminating NUL. */
#define SHB_TS_LEN 17

/*
 * Appends s as a JSON string literal, quotes included: '"' and '\\' and
 * every control byte escaped, bytes that are not UTF-8 as U+FFFD, other
 * bytes as they are.  The one JSON string writer of every --json output.
 * SHB_ENOMEM (or SHB_ETOOBIG past b's cap) on failure.
 */
int shb_json_quote(struct shb_buf *b, const char *s);

/* malloc'd printf; NULL (and shb_errmsg set) when out of memory. */
char *shb_aprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes all n bytes, retrying short writes and EINTR.  SHB_EIO on error. */
int shb_write_all(int fd, const void *p, size_t n, const char *what);
/* Reads exactly n bytes at off.  SHB_EIO on error, SHB_EFORMAT on EOF. */
int shb_pread_all(int fd, void *p, size_t n, uint64_t off, const char *what);
/* fsync()s a file by name. */
int shb_fsync_path(const char *path);
/* fsync()s a directory so a rename inside it is durable. */
int shb_fsync_dir(const char *dir);
/* Creates dir with mode 0700 (parents too); an existing dir is fine. */
int shb_mkdir_p(const char *dir);
/*
 * Copies src byte for byte to the new file dst (mode 0600, fsync'd).  A
 * link at src is refused.
 */
int shb_copy_file(const char *src, const char *dst);
/*
 * Removes a file or a whole tree; a missing path is fine.  The walk goes
 * by directory fd with O_NOFOLLOW (a link is removed, never followed), so
 * a directory another user can write cannot redirect it.  _at removes
 * name under dirfd; shb_clear_dir() empties the directory open at fd.
 */
int shb_remove_tree(const char *path);
/*
 * Opens a backup directory for reading (*out, O_DIRECTORY).  Its last
 * component may be a symlink (backups on a disk mounted elsewhere) only if
 * root or the calling user made the link: the owner of DATA_DIR, where the
 * default backup dir lives, could otherwise point writes, deletes and
 * listings anywhere (SHB_EINVAL naming the link's owner).  SHB_ENOTFOUND
 * when there is no such directory, SHB_EIO on other errors.
 */
int shb_open_backup_dir(const char *dir, int *out);
int shb_remove_tree_at(int dirfd, const char *name);
int shb_clear_dir(int fd);

/* Formats t (UTC) as YYYYMMDDTHHMMSSZ into out[SHB_TS_LEN]. */
void shb_ts_format(time_t t, char out[SHB_TS_LEN]);
/* Parses exactly a YYYYMMDDTHHMMSSZ stamp; 0 on success, -1 if malformed. */
int shb_ts_parse(const char *s, time_t *t);

/* "1.5 MiB"-style rendering of a byte count into out. */
void shb_human_size(uint64_t n, char *out, size_t outlen);

/*
 * Runs fn(ctx, i) for every i in [0, n) on up to threads threads.  After the
 * first failure no new i is started; that failure's code is returned with
 * its message set in the calling thread.
 */
int shb_parallel(size_t n, int threads, int (*fn)(void *ctx, size_t i), void *ctx);

/* Seconds since an arbitrary point, from CLOCK_MONOTONIC. */
double shb_now(void);

/*
 * For a process that holds secret keys or decrypted data: no core dump
 * from here on (RLIMIT_CORE 0, and not dumpable, which also covers a
 * core_pattern pipe such as systemd-coredump and keeps other users'
 * ptrace out).  Inherited by fork; never fails (best effort).
 */
void shb_no_core_dumps(void);

#endif
