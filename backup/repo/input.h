/*
 * A backup to read from, whatever its shape: one of our seekable archives
 * (local or in S3, read through its index), a plain .tar.gz (made by the old
 * script or by `tar czf`), or a directory laid out like a snapshot (an
 * extracted backup, or a snapshot inside a mounted shbackupfs).  Opening
 * checks the whole layout (layout.h) before a single byte is extracted.
 */
#ifndef SHB_INPUT_H
#define SHB_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"

struct shb_age_keys;
struct shb_backup;
struct shb_input;
struct shb_repo;

enum shb_input_kind {
	SHB_INPUT_INDEXED = 1,  /* our format: ranged reads, sha256 per file */
	SHB_INPUT_TAR,          /* any other .tar.gz: one sequential pass */
	SHB_INPUT_DIR,          /* a snapshot directory */
};

/* Called from extraction threads, one call at a time, with bytes extracted so far (all files). */
typedef void (*shb_input_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/*
 * Opens a local archive file or snapshot directory (*out, the caller's:
 * shb_input_close()), reading its index or listing (a plain tar.gz is read
 * through once) and checking its layout.  SHB_ENOTFOUND when path does
 * not exist, SHB_EIO when it cannot be read, SHB_EFORMAT when the archive
 * is damaged or its layout is refused (message naming the entry),
 * SHB_EARCHIVE from libarchive, SHB_ENOMEM.  An age file (its first bytes
 * tell) is read decrypted with ids (borrowed, must outlive the input;
 * NULL: none), adding SHB_EKEY and SHB_ECORRUPT (repo.h,
 * shb_repo_decrypt); plaintext is never written anywhere but the
 * extraction's files.  *out is set only on success.
 */
int shb_input_open_path(const char *path, const struct shb_age_keys *ids, struct shb_input **out);
/*
 * Opens catalog backup b's local file: a symlink there is refused
 * (shb_source_open_backup_file, source.h), a directory is not a backup
 * file, and b->encrypted (its name) says whether it is an age file.
 * Otherwise as shb_input_open_path().
 */
int shb_input_open_backup_file(const struct shb_backup *b, const struct shb_age_keys *ids,
			       struct shb_input **out);
/*
 * Opens the S3 copy of catalog backup b of repository r (repo.h), read
 * through r's cache: ours in place with ranged reads, a plain tar.gz
 * first copied whole into a new file <scratch_dir>/<name> (left for the
 * caller to remove; an encrypted one is copied as stored, ciphertext, and
 * decrypted as it is read).  r is borrowed and must outlive the input.  SHB_OK
 * and the input in *out (shb_input_close); else an error code with
 * shb_errmsg() set.
 */
int shb_input_open_s3(struct shb_repo *r, const struct shb_backup *b, const char *scratch_dir,
		      struct shb_input **out);

/*
 * What an open input holds (pointer into in), its enum shb_input_kind and
 * its name for messages (a path or an s3:// URL; owned by in).
 */
const struct shb_layout *shb_input_layout(const struct shb_input *in);
int shb_input_kind(const struct shb_input *in);
const char *shb_input_name(const struct shb_input *in);

/*
 * Extraction writes layout files to <rel> under the directory open at
 * dirfd (mode 0600, fsync'd; directories 0700), relative to that fd only:
 * every file is created with O_EXCL | O_NOFOLLOW, and SQLite is handed
 * "/proc/self/fd/<dirfd>/<rel>" (call shb_sqlite_fd_paths() first), so a
 * rename of the directory, or a link put at its name, cannot redirect a
 * write.  Files from an indexed archive are checked against
 * their sha256 (SHB_ECORRUPT); dbs from a directory are copied through
 * SQLite, so a -wal beside them counts.
 *
 * shb_input_begin() says where, which files (want[i] per layout file) and
 * whom to tell about progress; then either shb_input_extract() does every
 * wanted file on up to threads threads, or, for inputs that are not
 * SHB_INPUT_TAR (those allow one sequential pass only), the caller runs
 * shb_input_extract_file() per file from its own threads.  dirfd and want
 * are borrowed until the extraction ends; progress is called from the
 * extracting threads.  Errors: SHB_ECORRUPT (a sha256 or CRC mismatch),
 * SHB_EFORMAT, SHB_EIO (writing, or no room), SHB_ESQLITE (a db copied
 * through SQLite), SHB_EARCHIVE, the source's read errors, SHB_ENOMEM;
 * the first failure stops the others and is returned with its message.
 * Files already written stay for the caller to remove.
 */
void shb_input_begin(struct shb_input *in, int dirfd, const unsigned char *want,
		     shb_input_progress_fn progress, void *ctx);
int shb_input_extract(struct shb_input *in, int threads);
int shb_input_extract_file(struct shb_input *in, size_t i);

/* Closes in and frees everything it holds; NULL is fine. */
void shb_input_close(struct shb_input *in);

/*
 * Makes SQLite, in this process, open a "/proc/self/fd/<N>/..." name as
 * it is (the kernel resolves the held directory) instead of resolving it
 * to the directory's current path first, as its unix VFS does; the db's
 * -journal, -wal and -shm are then named from the fd path too.  Other
 * names are resolved as before.  Not for a process that relies on SQLite
 * finding a -wal beside a file opened by /proc/self/fd/<file fd> (create).
 * The VFS is registered once per process, as the default; SHB_ESQLITE if
 * that failed (every later call says so again).
 */
int shb_sqlite_fd_paths(void);

/*
 * The one check of a backup's secrets.json, for restore and verify alike:
 * its n bytes at p must be one valid JSON text (an empty or truncated file
 * is not), of at most SHB_SECRETS_MAX bytes.  SHB_ECORRUPT naming rel if
 * not.  _file reads path first, never through a symlink (SHB_EIO if it
 * cannot), and stops reading just past the limit.
 */
#define SHB_SECRETS_MAX (64u << 20)  /* a bigger secrets.json is refused unread */
int shb_secrets_check(const void *p, size_t n, const char *rel);
int shb_secrets_check_file(const char *path, const char *rel);

#endif
