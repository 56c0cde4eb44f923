/*
 * Database snapshots (snapshot.h).  VACUUM INTO gives a compacted copy in
 * one read transaction; the backup API is the fallback for old SQLite and
 * for sources VACUUM INTO cannot handle.  Either result is then switched to
 * rollback-journal mode, which rewrites header bytes 18-19.  Waits for a
 * writer's lock are bounded, and create's sources are opened beneath
 * DATA_DIR so a symlink planted there cannot make root copy another file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <sqlite3.h>

#include "error.h"
#include "snapshot.h"

/* shb_snapshot_db()'s wait for a writer holding a lock on the source. */
#define BUSY_TIMEOUT_MS 30000

static int sql_fail(sqlite3 *db, int code)
{
	return shb_fail(SHB_ESQLITE, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
}

static int is_damage(int code)
{
	code &= 0xff;
	return code == SQLITE_CORRUPT || code == SQLITE_NOTADB;
}

static int vacuum_into(sqlite3 *db, const char *dst)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, dst, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_extended_errcode(db);
	sqlite3_finalize(st);
	return rc;
}

static int is_busy(int code)
{
	code &= 0xff;
	return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int backup_api(sqlite3 *src, const char *dst_path, int busy_ms)
{
	double deadline = now_ms() + busy_ms;
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int rc = sqlite3_open_v2(dst_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);

	if (rc != SQLITE_OK)
		goto out;
	b = sqlite3_backup_init(dst, "main", src, "main");
	if (!b) {
		rc = sqlite3_errcode(dst);
		goto out;
	}
	/*
	 * One step copies everything in a single read transaction on src.  A
	 * step that finds src locked returns at once, so the wait is ours to
	 * bound: the same budget busy_timeout gives VACUUM INTO.
	 */
	while (is_busy(rc = sqlite3_backup_step(b, -1)) && now_ms() < deadline)
		sqlite3_sleep(50);
	sqlite3_backup_finish(b);
	rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
out:
	sqlite3_close(dst);
	return rc;
}

/*
 * Opens the db at path read-write and runs sql on it: SQLITE_OK or
 * SQLite's code.  *db is left for the caller to read its message and close
 * (also on failure).
 */
static int open_exec(const char *path, const char *sql, sqlite3 **db)
{
	int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(*db, sql, NULL, NULL, NULL);
	return rc;
}

/* Rewrites the copy's header to rollback-journal mode. */
static int to_rollback_mode(const char *dst)
{
	sqlite3 *db = NULL;
	int rc = open_exec(dst, "PRAGMA journal_mode=DELETE", &db);

	if (rc != SQLITE_OK)
		shb_fail(SHB_ESQLITE, "cannot set journal mode of snapshot '%s': %s", dst,
			 sqlite3_errmsg(db));
	sqlite3_close(db);
	return rc == SQLITE_OK ? SHB_OK : SHB_ESQLITE;
}

int shb_fold_journal(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = open_exec(path, "SELECT count(*) FROM sqlite_master", &db), busy = 1;

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		busy = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_OK || busy)
		shb_fail(SHB_ESQLITE, "cannot checkpoint '%s': %s", path,
			 rc != SQLITE_OK ? sqlite3_errmsg(db) : "the database is busy");
	sqlite3_close(db);
	return rc == SQLITE_OK && !busy ? SHB_OK : SHB_ESQLITE;
}

/* Creates dst empty with mode 0600 so SQLite never creates it wider. */
static int create_private(const char *dst)
{
	int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		return shb_fail_errno(SHB_EIO, "cannot create snapshot '%s'", dst);
	close(fd);
	return SHB_OK;
}

/*
 * True if the main file SQLite opened for db is fd's.  SQLite opened the
 * path it resolved from "/proc/self/fd/N" by name, so a rename or symlink
 * swap inside DATA_DIR between that resolution and its open() could hand it
 * another file; this catches it, because the name must still lead to fd's
 * inode now.  What it cannot catch is a swap that is undone again between
 * SQLite's open() and this stat(): a window of microseconds that the
 * attacker must hit twice, and would still need a file beneath DATA_DIR's
 * own path at that name when it closes.
 */
static int same_file(sqlite3 *db, int fd)
{
	const char *name = sqlite3_db_filename(db, "main");
	struct stat a, b;

	if (!name || fstat(fd, &a) < 0 || stat(name, &b) < 0)
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int snapshot(const char *src, int src_fd, const char *dst, int busy_ms)
{
	sqlite3 *db = NULL;
	int rc, err, flags = SQLITE_OPEN_READONLY;

again:
	rc = sqlite3_open_v2(src, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		err = sql_fail(db, rc);
		goto out;
	}
	if (src_fd >= 0 && !same_file(db, src_fd)) {
		err = shb_fail(SHB_EIO, "the file changed while being opened");
		goto out;
	}
	sqlite3_extended_result_codes(db, 1);  /* to tell a hot journal from other refusals */
	sqlite3_busy_timeout(db, busy_ms);
	/* VACUUM INTO refuses an existing non-empty file; an empty one is fine. */
	if ((err = create_private(dst)))
		goto out;
	/* SHB_TEST_FORCE_BACKUP_API lets the tests exercise the fallback path. */
	rc = getenv("SHB_TEST_FORCE_BACKUP_API") ? SQLITE_ERROR : vacuum_into(db, dst);
	/*
	 * A hot rollback journal (a writer crashed mid-transaction) must be
	 * rolled back before anything is read, and a read-only connection
	 * cannot.  The committed state is what the rollback gives, so open the
	 * db for writing once, as any SQLite client (and the old script's
	 * sqlite3) would: it restores the pages and removes the journal, and
	 * creates no file, since a db with a rollback journal is not in WAL mode.
	 */
	if (rc == SQLITE_READONLY_ROLLBACK && flags == SQLITE_OPEN_READONLY) {
		sqlite3_close(db);
		db = NULL;
		unlink(dst);
		flags = SQLITE_OPEN_READWRITE;
		goto again;
	}
	/* A lock held past busy_timeout would hold the backup API up just the same. */
	if (rc != SQLITE_OK && !is_damage(rc) && !is_busy(rc)) {
		unlink(dst);
		if ((err = create_private(dst)))
			goto out;
		rc = backup_api(db, dst, busy_ms);
	}
	if (is_busy(rc)) {
		err = shb_fail(SHB_EBUSY, "database is locked (gave up after %d s)",
			       (busy_ms + 999) / 1000);
		goto out;
	}
	if (rc != SQLITE_OK) {
		err = sql_fail(db, rc);
		goto out;
	}
	err = to_rollback_mode(dst);
out:
	sqlite3_close(db);
	if (err)
		unlink(dst);
	return err;
}

int shb_snapshot_db(const char *src, const char *dst)
{
	return snapshot(src, -1, dst, BUSY_TIMEOUT_MS);
}

int shb_snapshot_db_fd(int fd, const char *dst, int busy_ms)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return snapshot(path, fd, dst, busy_ms);
}

int shb_beneath_refused(int e)
{
	return e == EXDEV || e == ELOOP;
}

/* Before Linux 5.6: one component at a time, following no symlink at all. */
static int open_nofollow(int dirfd, const char *rel, int flags)
{
	char *copy = strdup(rel);
	int cur = dirfd, fd = -1, e = 0;

	if (!copy) {
		errno = ENOMEM;
		return -1;
	}
	for (char *c = copy, *next; c; c = next) {
		struct stat st;
		int nfd;

		next = strchr(c, '/');
		if (next)
			*next++ = '\0';
		if (!strcmp(c, "..")) {
			e = EXDEV;
			break;
		}
		if (!next) {
			fd = openat(cur, c, flags | O_NOFOLLOW | O_CLOEXEC);
			e = fd < 0 ? errno : 0;
			break;
		}
		/* O_PATH | O_NOFOLLOW opens a symlink itself, so fstat sees it. */
		nfd = openat(cur, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0 || fstat(nfd, &st) < 0) {
			e = errno;
			if (nfd >= 0)
				close(nfd);
			break;
		}
		if (cur != dirfd)
			close(cur);
		cur = nfd;
		if (!S_ISDIR(st.st_mode)) {
			e = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
			break;
		}
	}
	if (cur != dirfd)
		close(cur);
	free(copy);
	errno = e;
	return e ? -1 : fd;
}

int shb_open_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	/* SHB_TEST_NO_OPENAT2 lets the tests run the pre-5.6 path. */
	fd = getenv("SHB_TEST_NO_OPENAT2") ? (errno = ENOSYS, -1)
		: syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS)
		return open_nofollow(dirfd, rel, flags);
	return (int)fd;
}
