/*
 * shbackup restore (restore.h): the target dir, held open and locked for
 * the whole run: the debris of killed runs, the checks that every file is
 * ours to rename (no links, one mount), and the staging dir.
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
#include "dirfd.h"
#include "restore.h"
#include "snapshot.h"
#include "util.h"

/* --- the target: lock, debris, staging ------------------------------------ */

/*
 * Removes what killed runs left; safe because we hold the target's lock.
 * We only ever leave directories there, so anything else with such a name
 * (a symlink placed where our staging or rollback dir would go) is refused
 * rather than removed or followed.
 */
static int clear_one(void *ctx, const char *name)
{
	struct restore *r = ctx;
	struct stat st;

	if (!shb_is_debris(name, STAGING_PREFIX, ROLLBACK_PREFIX)
	    || fstatat(r->target_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return SHB_OK;
	if (!S_ISDIR(st.st_mode))
		return shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' is not a directory "
				"(a symlink?)", r->target, name);
	if (shb_remove_tree_at(r->target_fd, name))
		shb_warning("%s", shb_errmsg());
	return SHB_OK;
}

static int clear_debris(struct restore *r)
{
	int rc = shb_dir_each(r->target_fd, clear_one, r);

	return rc < 0 ? shb_fail_errno(SHB_EIO, "cannot read target '%s'", r->target) : rc;
}

/* The mount id of name under dirfd (of dirfd itself if name is ""), 0 if unknown. */
static uint64_t mount_id(int dirfd, const char *name)
{
	struct statx stx;

	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH), STATX_MNT_ID,
		  &stx) < 0 || !(stx.stx_mask & STATX_MNT_ID))
		return 0;
	return stx.stx_mnt_id;
}

/* A bind mount of the target's own filesystem has its st_dev but refuses renames too. */
static int same_mount(struct restore *r, int dirfd, const char *name)
{
	uint64_t id = r->mnt_id ? mount_id(dirfd, name) : 0;

	return !id || id == r->mnt_id;
}

/*
 * Fails unless name under dirfd is absent or a real directory (dir) or
 * regular file (!dir): a symlink anywhere on the path of a file restore
 * writes would make the write land outside the target.
 */
static int no_link_at(struct restore *r, int dirfd, const char *name, const char *rel, int dir)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? SHB_OK
			: shb_fail_errno(SHB_EIO, "cannot stat '%s' in '%s'", rel, r->target);
	if (S_ISLNK(st.st_mode))
		return shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' is a symlink",
				r->target, rel);
	if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' is not a %s",
				r->target, rel, dir ? "directory" : "regular file");
	/*
	 * Files are staged in the target and renamed into place: a directory
	 * on another filesystem (a mount point) would fail that rename after
	 * other files were already replaced, so it is refused before any.
	 */
	if (dir && (st.st_dev != r->dev || !same_mount(r, dirfd, name)))
		return shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' is on another "
				"filesystem than the target (a mount point?), files cannot be moved "
				"into it", r->target, rel);
	return SHB_OK;
}

/* The db file name and the side files SQLite and settle_old() touch beside it. */
static const char *const db_sfx[] = { "", "-wal", "-journal", "-shm" };

/* Checks a file restore may write in dirfd, and its SQLite side files. */
static int no_link_file(struct restore *r, int dirfd, const char *name, const char *rel, int db)
{
	int rc = SHB_OK;

	for (size_t k = 0; !rc && k < (db ? 4u : 1u); k++) {
		char *n = shb_aprintf("%s%s", name, db_sfx[k]), *rn = shb_aprintf("%s%s", rel, db_sfx[k]);

		rc = n && rn ? no_link_at(r, dirfd, n, rn, 0) : shb_fail(SHB_ENOMEM, "out of memory");
		free(n);
		free(rn);
	}
	return rc;
}

int check_target_top(struct restore *r)
{
	int rc = no_link_at(r, r->target_fd, "apps", "apps", 1);

	if (!rc)
		rc = no_link_file(r, r->target_fd, "streamhub.db", "streamhub.db", 1);
	if (!rc)
		rc = no_link_file(r, r->target_fd, "secrets.json", "secrets.json", 0);
	return rc;
}

int check_target_apps(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	int apps = openat(r->target_fd, "apps", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int rc = SHB_OK;

	if (apps < 0)
		return errno == ENOENT ? SHB_OK : shb_fail_errno(SHB_EIO, "cannot open '%s/apps'",
								  r->target);
	for (size_t i = 0; !rc && i < l->n; i++) {
		const struct shb_layout_file *f = &l->files[i];
		char *rel;
		int app;

		if (!r->want[i] || !f->app)
			continue;
		if (!(rel = shb_aprintf("apps/%s", f->app)))
			rc = shb_fail(SHB_ENOMEM, "out of memory");
		else if (!(rc = no_link_at(r, apps, f->app, rel, 1))) {
			app = openat(apps, f->app, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (app >= 0) {
				rc = no_link_file(r, app, "app.db", f->rel, 1);
				close(app);
			} else if (errno != ENOENT) {
				rc = shb_fail_errno(SHB_EIO, "cannot open '%s' in '%s'", rel, r->target);
			}
		}
		free(rel);
	}
	close(apps);
	return rc;
}

int open_own_dir(struct restore *r, const char *name)
{
	int fd = openat(r->target_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 077)) {
		shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' was replaced while "
			 "being made", r->target, name);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

void remove_own_dir(struct restore *r, const char *name, int fd)
{
	struct stat a, b;

	if (shb_clear_dir(fd))
		shb_warning("%s", shb_errmsg());
	if (fstat(fd, &a) == 0 && fstatat(r->target_fd, name, &b, AT_SYMLINK_NOFOLLOW) == 0
	    && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlinkat(r->target_fd, name, AT_REMOVEDIR);
}

int prepare_target(struct restore *r)
{
	struct stat st;
	int rc;

	if (stat(r->target, &st) < 0 || !S_ISDIR(st.st_mode))
		return shb_fail(SHB_ENOTFOUND, "target directory '%s' does not exist", r->target);
	r->target_fd = open(r->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->target_fd < 0 || fstat(r->target_fd, &st) < 0)
		return shb_fail_errno(SHB_EIO, "cannot open target '%s'", r->target);
	r->dev = st.st_dev;
	r->mnt_id = mount_id(r->target_fd, "");
	if (!(r->tp = shb_aprintf("/proc/self/fd/%d", r->target_fd)))
		return SHB_ENOMEM;
	/* flock on the directory itself: a lock file would change the target. */
	if (flock(r->target_fd, LOCK_EX | LOCK_NB) < 0)
		return shb_fail(SHB_EBUSY, "another shbackup restore is running into '%s'", r->target);
	/* New files take the target's owner (the core runs as it): say who gets the secrets. */
	if (st.st_uid != geteuid() && st.st_uid != 0)
		shb_warning("target '%s' is owned by uid %u, not by the user running restore: the "
			    "restored files, secrets.json included, will belong to uid %u", r->target,
			    (unsigned)st.st_uid, (unsigned)st.st_uid);
	if ((rc = check_target_top(r)))
		return rc;
	if (r->dry_run) {
		char tmpl[] = "/tmp/shbackup-restore-XXXXXX";

		if (!mkdtemp(tmpl) || !(r->scratch = strdup(tmpl)))
			return shb_fail_errno(SHB_EIO, "cannot create a temporary directory");
		return SHB_OK;
	}
	if ((rc = clear_debris(r)))
		return rc;
	if (!(r->staging_name = shb_aprintf(STAGING_PREFIX "%d", (int)getpid())))
		return SHB_ENOMEM;
	if (mkdirat(r->target_fd, r->staging_name, 0700) < 0)
		return shb_fail_errno(SHB_EIO, "cannot write to target '%s'", r->target);
	if ((r->staging_fd = open_own_dir(r, r->staging_name)) < 0)
		return SHB_EINVAL;
	r->staging = shb_aprintf("/proc/self/fd/%d", r->staging_fd);
	if (!r->staging || !(r->scratch = strdup(r->staging)))
		return SHB_ENOMEM;
	return SHB_OK;
}
