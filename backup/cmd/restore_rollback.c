/*
 * shbackup restore (restore.h): the rollback point, a complete copy of
 * every file the restore replaces, made before the first one is.
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

/* --- the rollback point ------------------------------------------------------ */

struct saved {
	struct restore *r;
	int fd;         /* the temporary rollback dir being filled, held from its mkdirat */
	char *dir;      /* "/proc/self/fd/<fd>" */
	char **rels;    /* what the target has now */
	size_t n;
};

/* A db that SQLite cannot copy (damaged, hot journal on a read-only open) is kept raw. */
static int save_raw(const char *src, const char *dst, const char *rel)
{
	static const char *const sfx[] = { "", "-wal", "-journal" };
	int rc = SHB_OK;

	shb_warning("cannot copy '%s' through SQLite (%s); keeping its files as they are", rel,
		    shb_errmsg());
	for (size_t i = 0; i < 3 && !rc; i++) {
		char *s = shb_aprintf("%s%s", src, sfx[i]), *d = shb_aprintf("%s%s", dst, sfx[i]);

		if (!s || !d)
			rc = SHB_ENOMEM;
		else if (i == 0 || access(s, F_OK) == 0)
			rc = shb_copy_file(s, d);
		free(s);
		free(d);
	}
	return rc;
}

int replaced(const struct restore *r, const char *rel)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	const struct shb_layout_file *f = shb_layout_find(l, rel);

	return f && r->want[f - l->files];
}

/*
 * The directory of the target file rel ("streamhub.db" or
 * "apps/<app>/app.db"), opened from the held target fd without following
 * a link, and the file's name in it.  Returns the fd (the caller closes
 * it), or -1 with the error set.
 */
static int open_parent(struct restore *r, const char *rel, const char **name)
{
	const char *slash = strrchr(rel, '/');
	char *dir;
	int fd;

	*name = slash ? slash + 1 : rel;
	if (!slash)
		return fcntl(r->target_fd, F_DUPFD_CLOEXEC, 0);
	if (!(dir = strndup(rel, (size_t)(slash - rel)))) {
		shb_fail(SHB_ENOMEM, "out of memory");
		return -1;
	}
	/* One component at a time, following no link (restore never writes through one). */
	fd = fcntl(r->target_fd, F_DUPFD_CLOEXEC, 0);
	for (char *c = dir, *next; fd >= 0 && c; c = next) {
		int sub;

		if ((next = strchr(c, '/')))
			*next++ = '\0';
		sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = sub;
	}
	if (fd < 0)
		shb_fail_errno(SHB_EIO, "cannot open the directory of '%s' in '%s'", rel, r->target);
	free(dir);
	return fd;
}

static int save_one(void *ctx, size_t i)
{
	struct saved *sv = ctx;
	const char *rel = sv->rels[i], *name;
	int sdir = open_parent(sv->r, rel, &name);
	char *src = sdir < 0 ? NULL : shb_aprintf("/proc/self/fd/%d/%s", sdir, name);
	char *dst = shb_aprintf("%s/%s", sv->dir, rel), *parent = dst ? strdup(dst) : NULL;
	int rc = sdir < 0 ? SHB_EIO : src && dst && parent ? shb_mkdir_p(dirname(parent)) : SHB_ENOMEM;

	if (!rc && !strcmp(rel, "secrets.json")) {
		rc = shb_copy_file(src, dst);
	} else if (!rc) {
		/*
		 * A db about to be replaced, once its -wal is folded in, is
		 * completely copied by a hard link that costs nothing: after the
		 * rename the link is the only name of the old file, so it never
		 * changes again.  A db that stays (not in the backup, or not
		 * --app) or that someone else may still write (--force) would
		 * keep changing under a link, so it is copied through SQLite,
		 * read-only, which also takes committed rows from its -wal and
		 * leaves its journal mode alone.
		 */
		int linked = !sv->r->force && replaced(sv->r, rel) && !shb_fold_journal(src)
			     && linkat(sdir, name, AT_FDCWD, dst, 0) == 0;

		if (!linked && shb_snapshot_db(src, dst))
			rc = save_raw(src, dst, rel);
		else if (!(rc = integrity_flags(dst, rel, linked ? SQLITE_OPEN_READWRITE
						 : SQLITE_OPEN_READONLY)))
			rc = shb_fsync_path(dst);
	}
	if (!rc) {
		free(parent);
		parent = strdup(dst);
		rc = parent ? shb_fsync_dir(dirname(parent)) : SHB_ENOMEM;
	}
	if (sdir >= 0)
		close(sdir);
	free(src);
	free(dst);
	free(parent);
	return rc ? shb_fail(rc, "cannot save the current '%s': %s", rel, shb_errmsg()) : SHB_OK;
}

/* Everything of the target that a restore may replace, in *v; all or an error. */
static int current_files(struct restore *r, char ***v, size_t *n)
{
	static const char *const top[] = { "streamhub.db", "secrets.json" };
	int rc = target_apps(r->tp, v, n);

	for (size_t i = 0; !rc && i < 2; i++) {
		struct stat st;

		if (fstatat(r->target_fd, top[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			rc = push(v, n, strdup(top[i]));
	}
	return rc;
}

int make_rollback(struct restore *r)
{
	struct saved sv = { .r = r, .fd = -1 };
	char ts[SHB_TS_LEN], *tmp = NULL, *name = NULL;
	struct stat a, b;
	int rc;

	if ((rc = current_files(r, &sv.rels, &sv.n)) || !sv.n) {
		free_list(sv.rels, sv.n);
		return rc;      /* an error, or nothing to save */
	}
	for (;;) {
		shb_ts_format(time(NULL), ts);
		free(name);
		/* Anything with the name, a dangling link included, is skipped. */
		if (!(name = shb_aprintf(ROLLBACK_PREFIX "%s", ts))
		    || (fstatat(r->target_fd, name, &a, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT))
			break;
		sleep(1);  /* never reuse a rollback dir */
	}
	tmp = shb_aprintf("." ROLLBACK_PREFIX "%s.tmp", ts);
	if (!name || !tmp)
		rc = SHB_ENOMEM;
	else if (mkdirat(r->target_fd, tmp, 0700) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot create '%s' in '%s'", tmp, r->target);
	else if ((sv.fd = open_own_dir(r, tmp)) < 0)
		rc = SHB_EINVAL;
	else if (!(sv.dir = shb_aprintf("/proc/self/fd/%d", sv.fd)))
		rc = SHB_ENOMEM;
	else if (!(rc = shb_parallel(sv.n, r->threads, save_one, &sv))
		 && renameat2(r->target_fd, tmp, r->target_fd, name, RENAME_NOREPLACE) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot rename '%s' in '%s'", tmp, r->target);
	else if (!rc && (fstat(sv.fd, &a) < 0 || fstatat(r->target_fd, name, &b, AT_SYMLINK_NOFOLLOW) < 0
			 || a.st_dev != b.st_dev || a.st_ino != b.st_ino))
		rc = shb_fail(SHB_EINVAL, "refusing to restore into '%s': the rollback dir '%s' was "
			      "replaced while being made", r->target, tmp);
	if (!rc && fsync(r->target_fd) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync directory '%s'", r->target);
	if (!rc && !(r->rollback = shb_aprintf("%s/%s", r->target, name)))
		rc = SHB_ENOMEM;
	if (!rc)
		fprintf(stderr, "saved the current state to %s\n", r->rollback);
	else if (sv.fd >= 0)
		remove_own_dir(r, tmp, sv.fd);
	if (sv.fd >= 0)
		close(sv.fd);
	free(sv.dir);
	free(tmp);
	free(name);
	free_list(sv.rels, sv.n);
	return rc;
}
