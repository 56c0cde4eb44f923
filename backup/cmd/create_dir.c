/*
 * shbackup create (create.h): the backup dir, used only through one fd of
 * it: the lock, the debris of killed runs, the new backup's name, the
 * staging dir and the temporary the archive is written to.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writer.h"
#include "catalog.h"
#include "cli.h"
#include "config.h"
#include "create.h"
#include "dirfd.h"
#include "error.h"
#include "input.h"
#include "layout.h"
#include "s3.h"
#include "snapshot.h"
#include "util.h"

/* --- the backup directory: lock, debris, names --------------------------- */

/*
 * The backup dir, held open for the whole run: everything else in it is
 * reached relative to this fd, so renaming or replacing the dir later
 * changes nothing we write (shb_open_backup_dir() says which links it follows).
 */
static int open_backup_dir(struct job *job)
{
	int rc = shb_open_backup_dir(job->cfg.local_dir, &job->dir_fd);

	return rc == SHB_ENOTFOUND
		? shb_fail(SHB_EIO, "cannot open backup directory '%s': %s", job->cfg.local_dir,
			   shb_errmsg())
		: rc;
}

static int lock_dir(struct job *job)
{
	/* O_NOFOLLOW: a symlink planted at the name must not make root create a file elsewhere. */
	job->lock_fd = openat(job->dir_fd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (job->lock_fd < 0)
		return shb_fail_errno(SHB_EIO, "cannot write to backup directory '%s'", job->cfg.local_dir);
	if (flock(job->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return shb_fail(SHB_EBUSY, "another shbackup create is running in '%s'",
				job->cfg.local_dir);
	return SHB_OK;
}

/*
 * Removes name in the backup dir without following it: a file or symlink is
 * unlinked, a dir (a staging dir) emptied through an O_NOFOLLOW fd and
 * removed.
 */
static void remove_debris(struct job *job, const char *name)
{
	struct stat st;
	int fd;

	if (fstatat(job->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(job->dir_fd, name, 0) < 0 && errno != ENOENT)
			shb_warning("cannot remove '%s/%s': %s", job->cfg.local_dir, name, strerror(errno));
		return;
	}
	fd = openat(job->dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		shb_empty_dir(fd);
		close(fd);
	}
	if (unlinkat(job->dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		shb_warning("cannot remove '%s/%s': %s", job->cfg.local_dir, name, strerror(errno));
}

static int remove_if_debris(void *ctx, const char *name)
{
	if (shb_is_debris(name, STAGING_PREFIX, SHB_NAME_PREFIX))
		remove_debris(ctx, name);
	return 0;
}

/* Removes temporaries of killed runs; safe because we hold the lock. */
static void clear_debris(struct job *job)
{
	shb_dir_each(job->dir_fd, remove_if_debris, job);
}

/* Seconds create waits for a second no backup is named after. */
#define NAME_WAIT 5

char *backup_name(const struct job *job)
{
	return shb_aprintf(SHB_NAME_PREFIX "%s" SHB_NAME_SUFFIX "%s", job->ts,
			   job->recipients.n ? SHB_AGE_SUFFIX : "");
}

/* True when a backup of job->ts exists, plain or encrypted. */
static int taken(const struct job *job)
{
	char name[128];
	struct stat st;

	snprintf(name, sizeof(name), SHB_NAME_PREFIX "%s" SHB_NAME_SUFFIX, job->ts);
	if (fstatat(job->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	strcat(name, SHB_AGE_SUFFIX);
	return fstatat(job->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int name_backup(struct job *job)
{
	const char *dir = job->cfg.local_dir;

	for (int waited = 0;; waited++) {
		job->time = time(NULL);
		shb_ts_format(job->time, job->ts);
		if (!taken(job))
			break;
		/* Only names dated ahead of the clock keep it taken this long. */
		if (waited == NAME_WAIT)
			return shb_fail(SHB_EBUSY, "a backup named for each of the next %d seconds "
					"is already in '%s' (dated in the future?)", NAME_WAIT, dir);
		sleep(1);  /* one backup per second: never overwrite one */
	}
	if (!(job->final_name = backup_name(job)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	job->top = shb_aprintf(SHB_NAME_PREFIX "%s", job->ts);
	job->final_path = shb_aprintf("%s/%s", dir, job->final_name);
	job->tmp_name = shb_aprintf(".%s" SHB_NAME_SUFFIX SHB_TMP_SUFFIX, job->top ? job->top : "");
	job->tmp_path = shb_aprintf("%s/%s", dir, job->tmp_name ? job->tmp_name : "");
	if (!job->top || !job->final_path || !job->tmp_name || !job->tmp_path)
		return SHB_ENOMEM;
	return SHB_OK;
}

/* A dir (not a symlink) of root or us that others cannot write to, or sticky. */
static int dir_safe(const char *p)
{
	struct stat st;

	return lstat(p, &st) == 0 && S_ISDIR(st.st_mode)
	       && (st.st_uid == 0 || st.st_uid == geteuid())
	       && (!(st.st_mode & 022) || (st.st_mode & S_ISVTX));
}

/*
 * Whether no one but root (or us) can rename or replace anything along the
 * absolute, symlink-free path: every dir on it is dir_safe().
 */
static int trusted_path(const char *path)
{
	char *p = strdup(path);
	int ok = p != NULL;

	for (char *slash = p; ok && slash; slash = strchr(slash + 1, '/')) {
		char c = slash[1];

		slash[1] = '\0';  /* the prefix up to and including this '/' */
		ok = dir_safe(p);
		slash[1] = c;
	}
	ok = ok && dir_safe(p);
	free(p);
	return ok;
}

/*
 * The private staging dir, held open.  SQLite writes the snapshots there by
 * path, so that path must pass only through dirs no one else can change:
 * the backup dir when it and its parents are so (the usual root-owned
 * layout), else a fresh dir in $TMPDIR (default /var/tmp).  A backup dir
 * the service user can write to would let that user swap the staging dir
 * for a symlink and have root write snapshots anywhere.
 */
static int make_staging(struct job *job)
{
	char *real = realpath(job->cfg.local_dir, NULL);
	struct stat st, dir_st;

	job->dir_trusted = real && trusted_path(real) && stat(real, &st) == 0
			   && fstat(job->dir_fd, &dir_st) == 0 && st.st_dev == dir_st.st_dev
			   && st.st_ino == dir_st.st_ino;
	if (job->dir_trusted) {
		job->staging_name = shb_aprintf(STAGING_PREFIX "%s", job->ts);
		job->staging = shb_aprintf("%s/" STAGING_PREFIX "%s", real, job->ts);
		job->staging_parent_fd = dup(job->dir_fd);
		free(real);
		if (!job->staging_name || !job->staging)
			return shb_fail(SHB_ENOMEM, "out of memory");
		if (job->staging_parent_fd < 0 || mkdirat(job->dir_fd, job->staging_name, 0700) < 0)
			return shb_fail_errno(SHB_EIO, "cannot create staging dir '%s'", job->staging);
	} else {
		const char *tmpdir = getenv("TMPDIR");

		free(real);
		if (!tmpdir || !*tmpdir)
			tmpdir = "/var/tmp";
		job->staging = shb_aprintf("%s/shbackup-staging-%s-XXXXXX", tmpdir, job->ts);
		if (!job->staging)
			return shb_fail(SHB_ENOMEM, "out of memory");
		if (!mkdtemp(job->staging))
			return shb_fail_errno(SHB_EIO, "cannot create staging dir '%s'", job->staging);
		job->staging_name = strdup(strrchr(job->staging, '/') + 1);
		job->staging_parent_fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (!job->staging_name || job->staging_parent_fd < 0)
			return shb_fail_errno(SHB_EIO, "cannot open '%s'", tmpdir);
	}
	job->staging_fd = openat(job->staging_parent_fd, job->staging_name,
				 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (job->staging_fd < 0 || fstat(job->staging_fd, &job->staging_st) < 0)
		return shb_fail_errno(SHB_EIO, "cannot open staging dir '%s'", job->staging);
	if (job->staging_st.st_uid != geteuid() || (job->staging_st.st_mode & 077))
		return shb_fail(SHB_EIO, "staging dir '%s' was replaced while being created",
				job->staging);
	return SHB_OK;
}

int create_tmp(struct job *job)
{
	if (!job->dir_trusted) {
		job->out_fd = openat(job->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (job->out_fd >= 0) {
			job->tmp_anon = 1;
			if (fstat(job->out_fd, &job->out_st) < 0)
				return shb_fail_errno(SHB_EIO, "cannot create a temporary in '%s'",
						      job->cfg.local_dir);
			return SHB_OK;
		}
	}
	for (int tries = 0; tries < 16; tries++) {
		job->out_fd = openat(job->dir_fd, job->tmp_name,
				     O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (job->out_fd >= 0) {
			if (fstat(job->out_fd, &job->out_st) < 0)
				return shb_fail_errno(SHB_EIO, "cannot create '%s'", job->tmp_path);
			job->tmp_ours = 1;
			return SHB_OK;
		}
		if (errno != EEXIST || unlinkat(job->dir_fd, job->tmp_name, 0) < 0)
			break;
	}
	return shb_fail_errno(SHB_EIO, "cannot create '%s'", job->tmp_path);
}

int preflight(struct job *job)
{
	int rc;

	job->data_fd = open(job->cfg.data_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (job->data_fd < 0)
		return shb_fail(SHB_ENOTFOUND, "data directory '%s' does not exist", job->cfg.data_dir);
	if ((rc = shb_mkdir_p(job->cfg.local_dir)))
		return shb_fail(rc, "cannot use backup directory: %s", shb_errmsg());
	if ((rc = open_backup_dir(job)) || (rc = lock_dir(job)))
		return rc;
	clear_debris(job);
	if ((rc = name_backup(job)) || (rc = make_staging(job)))
		return rc;
	return find_items(job);
}
