/*
 * Database snapshots (snapshot.h).  VACUUM INTO gives a compacted copy in
 * one read transaction; the backup API is the fallback for old SQLite and
 * for sources VACUUM INTO cannot handle.  Either result is then switched to
 * rollback-journal mode, which rewrites header bytes 18-19.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "error.h"
#include "snapshot.h"

/* How long to wait for a writer holding an exclusive lock on the source. */
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
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
	sqlite3_finalize(st);
	return rc;
}

static int backup_api(sqlite3 *src, const char *dst_path)
{
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
	/* One step copies everything in a single read transaction on src. */
	while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED)
		sqlite3_sleep(50);
	sqlite3_backup_finish(b);
	rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
out:
	sqlite3_close(dst);
	return rc;
}

/* Rewrites the copy's header to rollback-journal mode. */
static int to_rollback_mode(const char *dst)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(dst, &db, SQLITE_OPEN_READWRITE, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		shb_fail(SHB_ESQLITE, "cannot set journal mode of snapshot '%s': %s", dst,
			 sqlite3_errmsg(db));
	sqlite3_close(db);
	return rc == SQLITE_OK ? SHB_OK : SHB_ESQLITE;
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

int shb_snapshot_db(const char *src, const char *dst)
{
	sqlite3 *db = NULL;
	int rc, err;

	rc = sqlite3_open_v2(src, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		err = sql_fail(db, rc);
		goto out;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	/* VACUUM INTO refuses an existing non-empty file; an empty one is fine. */
	if ((err = create_private(dst)))
		goto out;
	/* SHB_TEST_FORCE_BACKUP_API lets the tests exercise the fallback path. */
	rc = getenv("SHB_TEST_FORCE_BACKUP_API") ? SQLITE_ERROR : vacuum_into(db, dst);
	if (rc != SQLITE_OK && !is_damage(rc)) {
		unlink(dst);
		if ((err = create_private(dst)))
			goto out;
		rc = backup_api(db, dst);
		if (rc != SQLITE_OK) {
			err = sql_fail(NULL, rc);
			goto out;
		}
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
