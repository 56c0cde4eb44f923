/*
 * shbackup restore (restore.h): the guard against a running core, the
 * plan printed before anything changes, and the extraction of the backup
 * into the staging dir with every db verified there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "catalog.h"
#include "cli.h"
#include "config.h"
#include "error.h"
#include "input.h"
#include "restore.h"
#include "snapshot.h"
#include "util.h"

/* --- the live-core guard -------------------------------------------------- */

/*
 * True if another process holds a lock on path: SQLite's POSIX locks on the
 * db (rollback mode) or on its -shm (every open WAL connection holds one).
 */
static int locked_by_other(const char *path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int busy;

	if (fd < 0)
		return 0;
	busy = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return busy;
}

int guard(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);

	if (r->force)
		return SHB_OK;
	for (size_t i = 0; i < l->n; i++) {
		char *db, *shm;
		int busy;

		if (!r->want[i] || l->files[i].kind == SHB_FILE_SECRETS)
			continue;
		db = shb_aprintf("%s/%s", r->tp, l->files[i].rel);
		shm = db ? shb_aprintf("%s-shm", db) : NULL;
		busy = db && shm && (locked_by_other(db) || locked_by_other(shm));
		free(db);
		free(shm);
		if (busy)
			return shb_fail(SHB_EBUSY, "'%s' in '%s' is in use: stop the core first "
					"(or use --force)", l->files[i].rel, r->target);
	}
	return SHB_OK;
}

/* --- plan ----------------------------------------------------------------- */

int push(char ***v, size_t *n, char *s)
{
	char **grown = s ? realloc(*v, (*n + 1) * sizeof(**v)) : NULL;

	if (!grown) {
		free(s);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	*v = grown;
	(*v)[(*n)++] = s;
	return SHB_OK;
}

int target_apps(const char *target, char ***out, size_t *n)
{
	char *dir = shb_aprintf("%s/apps", target);
	DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *de;
	int rc = !dir ? SHB_ENOMEM : !d && errno != ENOENT
		? shb_fail_errno(SHB_EIO, "cannot read '%s'", dir) : SHB_OK;

	*out = NULL;
	*n = 0;
	while (!rc && d && (errno = 0, de = readdir(d))) {
		char *rel = shb_aprintf("apps/%s/app.db", de->d_name);
		char *abs = rel ? shb_aprintf("%s/%s", target, rel) : NULL;
		struct stat st;

		/* A linked app dir is not followed: restore neither reads nor writes there. */
		if (!abs) {
			rc = shb_fail(SHB_ENOMEM, "out of memory");
		} else if (shb_app_name_ok(de->d_name)
			   && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
			   && S_ISDIR(st.st_mode) && lstat(abs, &st) == 0 && S_ISREG(st.st_mode)) {
			rc = push(out, n, rel);
			rel = NULL;
		}
		free(rel);
		free(abs);
	}
	if (!rc && d && errno)
		rc = shb_fail_errno(SHB_EIO, "cannot read '%s'", dir);
	if (d)
		closedir(d);
	free(dir);
	return rc;
}

void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void print_plan(struct restore *r, FILE *f)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	size_t napps, saved;
	char **apps;

	target_apps(r->tp, &apps, &napps);  /* only to name what is kept */
	fprintf(f, "restore %s into %s:\n", r->backup_name, r->target);
	for (size_t i = 0; i < l->n; i++) {
		char *dest = shb_aprintf("%s/%s", r->tp, l->files[i].rel), a[32], b[32];
		struct stat st;
		int exists = dest && stat(dest, &st) == 0;

		if (!r->want[i])
			continue;
		shb_human_size(l->files[i].size, b, sizeof(b));
		shb_human_size(exists ? (uint64_t)st.st_size : 0, a, sizeof(a));
		if (exists)
			fprintf(f, "  replace %-32s %10s -> %s\n", l->files[i].rel, a, b);
		else
			fprintf(f, "  create  %-32s %10s\n", l->files[i].rel, b);
		free(dest);
	}
	for (size_t i = 0; i < napps; i++)
		if (!shb_layout_find(l, apps[i]))
			fprintf(f, "  keep    %-32s (not in the backup)\n", apps[i]);
	/* What make_rollback() saves: every app db and the top files the target has. */
	saved = napps + !faccessat(r->target_fd, "streamhub.db", F_OK, AT_SYMLINK_NOFOLLOW)
		+ !faccessat(r->target_fd, "secrets.json", F_OK, AT_SYMLINK_NOFOLLOW);
	if (saved)
		fprintf(f, "the current state is saved first to %s/%s<UTC>/\n", r->target,
			ROLLBACK_PREFIX);
	else
		fprintf(f, "the target holds no previous data, so there is no rollback copy\n");
	free_list(apps, napps);
}

/* --- extract and verify ---------------------------------------------------- */

static void on_extract(void *ctx, uint64_t done, uint64_t total)
{
	struct restore *r = ctx;

	shb_progress_bytes(&r->last_progress, "extracting", r->backup_name, done, total);
}

int integrity_flags(const char *path, const char *name, int flags)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char first[200] = "";
	int rc = sqlite3_open_v2(path, &db, flags, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		snprintf(first, sizeof(first), "%s", (const char *)sqlite3_column_text(st, 0));
	else
		snprintf(first, sizeof(first), "%s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (strcmp(first, "ok"))
		return shb_fail(SHB_ECORRUPT, "'%s' failed integrity_check: %s", name, first);
	return SHB_OK;
}

static int integrity(const char *path, const char *name)
{
	return integrity_flags(path, name, SQLITE_OPEN_READONLY);
}

/* Puts the staged db at path in WAL mode, as the db it replaces was. */
static int set_wal(const char *path, const char *rel)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), wal = 0;

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		wal = !strcmp((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	if (!wal)
		shb_fail(SHB_ESQLITE, "cannot put '%s' in WAL mode: %s", rel, sqlite3_errmsg(db));
	/* The last connection to close checkpoints and removes the -wal and -shm. */
	sqlite3_close(db);
	return wal ? SHB_OK : SHB_ESQLITE;
}

static int verify_staged(struct restore *r, size_t i)
{
	const struct shb_layout_file *f = &shb_input_layout(r->in)->files[i];
	char *p;
	int rc;

	if (!(p = shb_aprintf("%s/%s", r->staging, f->rel)))
		return SHB_ENOMEM;
	if (f->kind == SHB_FILE_SECRETS)
		rc = shb_secrets_check_file(p, f->rel);
	else
		rc = integrity(p, f->rel);
	if (!rc && r->wal[i])
		rc = set_wal(p, f->rel);
	free(p);
	return rc;
}

static int verify_one(void *ctx, size_t i)
{
	struct restore *r = ctx;

	return r->want[i] ? verify_staged(r, i) : SHB_OK;
}

/* One file extracted and checked: the unit of work when files are independent. */
static int extract_verify_one(void *ctx, size_t i)
{
	struct restore *r = ctx;
	int rc;

	if (!r->want[i])
		return SHB_OK;
	rc = shb_input_extract_file(r->in, i);
	return rc ? rc : verify_staged(r, i);
}

int extract_and_verify(struct restore *r)
{
	size_t n = shb_input_layout(r->in)->n;
	int rc;

	shb_input_begin(r->in, r->staging_fd, r->want, on_extract, r);
	if (shb_input_kind(r->in) == SHB_INPUT_TAR) {
		rc = shb_input_extract(r->in, r->threads);
		shb_progress_line("verifying %s", r->backup_name);
		if (!rc)
			rc = shb_parallel(n, r->threads, verify_one, r);
	} else {
		rc = shb_parallel(n, r->threads, extract_verify_one, r);
	}
	shb_progress_done();
	return rc;
}
