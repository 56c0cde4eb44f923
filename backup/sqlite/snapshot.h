/*
 * Layer backup/sqlite: the SQLite-specific pieces, each over a database
 * file or an archive reader, none knowing where a backup is stored.
 *
 * Owns consistent snapshots of live databases and the open-beneath rule
 * for DATA_DIR (snapshot.h), the read-only VFS that opens a database
 * inside an archive in place (vfs.h) and the sampled b-tree check of
 * verify --quick (btree.h).  May include backup/base, backup/format (the
 * reader, for the VFS) and its own headers, plus sqlite3; never s3, repo,
 * cmd or FUSE headers.  Used by repo, cmd and fs.  Rules: HACKING.md
 * "Layers".
 */
/*
 * Consistent copies of live SQLite databases.  A snapshot is a single,
 * self-contained file holding one committed state of the source, stored in
 * rollback-journal mode (header bytes 18-19 = 1) so it opens anywhere,
 * read-only media included.  The source is opened read-only and locked no
 * longer than SQLite needs for one read transaction.  Also how create opens
 * what it reads from DATA_DIR: only through paths that stay beneath it.
 */
#ifndef SHB_SNAPSHOT_H
#define SHB_SNAPSHOT_H

/*
 * Copies the database at src to the new file dst (which must not exist)
 * with VACUUM INTO; where that is unavailable or fails for a reason the
 * online backup API avoids, falls back to the backup API.  A damaged
 * source is an error either way: SHB_ESQLITE, with SQLite's own message
 * ("database disk image is malformed") for the caller to put in context.
 * dst is created with mode 0600.  On failure dst is removed.  Also
 * SHB_EIO when dst cannot be created, SHB_EBUSY when the source stays
 * locked (see below).  Thread-safe: each call has its own connections.
 */
int shb_snapshot_db(const char *src, const char *dst);

/*
 * The same for the database open at fd (from shb_open_beneath()), so the
 * file snapshotted is the file that was checked.  SQLite is given
 * "/proc/self/fd/<fd>"; it resolves that to the file's real path, opens it
 * and finds its -wal beside it; the file SQLite opened is then checked to
 * be fd's (st_dev, st_ino).  A writer's lock on the source is waited for at
 * most busy_ms milliseconds; then "database is locked" (SHB_EBUSY).
 * fd is borrowed (left open).  SHB_EIO when SQLite opened another file
 * than fd's ("the file changed while being opened"); otherwise as above.
 */
int shb_snapshot_db_fd(int fd, const char *dst, int busy_ms);

/*
 * Leaves the db at path a single complete file, in the journal mode it has:
 * the first read rolls a hot journal back, a checkpoint folds a -wal in
 * and truncates it, and the close removes the empty -wal and the -shm.
 * The mode is the core's choice and stays: a rollback copy linked to this
 * file, or the file itself after an interrupted restore, keeps it.
 * SHB_ESQLITE with the message set if SQLite fails or the checkpoint
 * cannot finish (another connection is busy).
 */
int shb_fold_journal(const char *path);

/*
 * Opens rel (relative, '/'-separated) beneath the directory dirfd, like
 * openat(dirfd, rel, flags), following symlinks only while every step
 * stays beneath dirfd: openat2() with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS.
 * Where the kernel lacks openat2 (before 5.6), no symlink is followed at
 * all (O_NOFOLLOW per component).  Returns the fd, or -1 with errno set:
 * EXDEV or ELOOP when rel leads out of dirfd (see shb_beneath_refused()).
 */
int shb_open_beneath(int dirfd, const char *rel, int flags);

/* True if errno e from shb_open_beneath() means "leads out of dirfd". */
int shb_beneath_refused(int e);

#endif
