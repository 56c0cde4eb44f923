/*
 * shbackup restore (restore.h): moving each restored file from the
 * staging dir into place, one atomic rename each.
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

/* --- replacing ----------------------------------------------------------------- */

/*
 * Opens the directory name under parent without following a link, creating
 * it first if missing; a new one gets the owner, group and mode of parent,
 * so the core, running as the target's owner, can use what restore makes.
 * Returns the fd, or -1 with the error set.
 */
static int open_dir_at(struct restore *r, int parent, const char *name, const char *rel)
{
	struct stat pst;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), made = 0;

	if (fd < 0 && errno == ENOENT) {
		if (fstat(parent, &pst) < 0) {
			shb_fail_errno(SHB_EIO, "cannot stat the parent of '%s'", rel);
			return -1;
		}
		made = mkdirat(parent, name, 0700) == 0;
		if (!made && errno != EEXIST) {
			shb_fail_errno(SHB_EIO, "cannot create '%s' in '%s'", rel, r->target);
			return -1;
		}
		fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' is not a directory "
				 "(a symlink?)", r->target, rel);
		else
			shb_fail_errno(SHB_EIO, "cannot open '%s' in '%s'", rel, r->target);
		return -1;
	}
	if (made && (fchown(fd, pst.st_uid, pst.st_gid) < 0 || fchmod(fd, pst.st_mode & 07777) < 0)) {
		shb_fail_errno(SHB_EIO, "cannot set the owner of '%s'", rel);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Gives the staged file rel the owner and mode of the file name in dirfd it
 * replaces, or, for a new file, the owner of dirfd and 0600; secrets.json
 * is 0600 always.
 */
static int adopt_owner(struct restore *r, int dirfd, const char *name, const char *rel,
		       int secrets)
{
	struct stat st;
	mode_t mode = 0600;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(st.st_mode))
			return shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' is not a "
					"regular file (a symlink?)", r->target, rel);
		mode = secrets ? 0600 : st.st_mode & 0777;
	} else if (errno != ENOENT || fstat(dirfd, &st) < 0) {
		return shb_fail_errno(SHB_EIO, "cannot stat '%s' in '%s'", rel, r->target);
	}
	if (fchownat(r->staging_fd, rel, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0
	    || fchmodat(r->staging_fd, rel, mode, 0) < 0)
		return shb_fail_errno(SHB_EIO, "cannot set the owner of the staged '%s'", rel);
	return SHB_OK;
}

/*
 * Folds the old db name in dirfd's -wal (or hot journal) into it and
 * leaves it a single file, so nothing of it can be replayed onto the new
 * db: through SQLite when it can, else by moving the side files into the
 * staging dir.  All by fd: dirfd is in a directory another user may own.
 */
static void settle_old(struct restore *r, int dirfd, const char *name, size_t i)
{
	static const char *const sfx[] = { "-wal", "-journal", "-shm" };
	char *dest;

	if (faccessat(dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if ((dest = shb_aprintf("/proc/self/fd/%d/%s", dirfd, name)) && shb_fold_journal(dest))
		shb_warning("%s", shb_errmsg());
	free(dest);
	for (size_t k = 0; k < 3; k++) {
		char *side = shb_aprintf("%s%s", name, sfx[k]);
		char *aside = shb_aprintf("old-%zu%s", i, sfx[k]);

		if (side && aside && faccessat(dirfd, side, F_OK, AT_SYMLINK_NOFOLLOW) == 0
		    && renameat(dirfd, side, r->staging_fd, aside) < 0)
			shb_warning("cannot move '%s' aside: %s", side, strerror(errno));
		free(side);
		free(aside);
	}
}

/*
 * Moves one staged file into place.  Every directory on the way is opened
 * from the held target fd without following links, and the rename is made
 * from the held staging fd to the last one, so nothing lands outside the
 * target even if a link appeared after the checks.
 */
static int place(struct restore *r, size_t i)
{
	const struct shb_layout_file *f = &shb_input_layout(r->in)->files[i];
	const char *name = f->app ? "app.db" : f->rel;
	char *apprel = f->app ? shb_aprintf("apps/%s", f->app) : NULL;
	int apps = -1, dir = r->target_fd;
	int rc = apprel || !f->app ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");

	if (!rc && f->app) {
		if ((apps = open_dir_at(r, r->target_fd, "apps", "apps")) < 0
		    || (dir = open_dir_at(r, apps, f->app, apprel)) < 0)
			rc = SHB_EIO;
	}
	if (!rc)
		rc = adopt_owner(r, dir, name, f->rel, f->kind == SHB_FILE_SECRETS);
	if (!rc && f->kind != SHB_FILE_SECRETS)
		settle_old(r, dir, name, i);
	if (!rc && renameat(r->staging_fd, f->rel, dir, name) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot move '%s' into place", f->rel);
	if (!rc && fsync(dir) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync the directory of '%s'", f->rel);
	if (dir >= 0 && dir != r->target_fd)
		close(dir);
	if (apps >= 0)
		close(apps);
	free(apprel);
	return rc;
}

int replace_all(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	int rc = SHB_OK;

	for (size_t i = 0; i < l->n && !rc; i++)
		if (r->want[i])
			rc = place(r, i);
	return rc;
}
