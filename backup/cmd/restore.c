/*
 * shbackup restore: put a backup back into a DATA_DIR without ever making
 * things worse.  In order: resolve the backup, check its layout, extract it
 * into a private staging dir inside the target (so the last step is a
 * rename), verify every db, confirm, save the current state to
 * <target>/pre-restore-<UTC>/, then move each file into place atomically.
 * Until the first rename the target is untouched; after it, every file is
 * wholly old or wholly new, and the rollback copy is complete before any
 * file is replaced.  The target may belong to a user racing us, so the
 * staging and rollback dirs are used only through fds held from their
 * creation, never by path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "repo.h"
#include "snapshot.h"
#include "util.h"

static const char usage[] =
	"shbackup restore --from <latest|timestamp|archive|snapshot dir> --target DIR\n"
	"                        [--yes] [--force] [--dry-run] [--app NAME]...\n"
	"   or: shbackup restore --list";

#define STAGING_PREFIX ".shbackup-restore-"
#define ROLLBACK_PREFIX "pre-restore-"

enum { EXIT_NOT_FOUND = 3, EXIT_VERIFY = 4, EXIT_ABORTED = 5 };

struct restore {
	struct shb_config cfg;
	const char *from, *target;
	int yes, force, dry_run, threads;
	char **apps;
	size_t napps;

	int target_fd;          /* locked for the whole run */
	dev_t dev;              /* its filesystem and mount: every file must be renamed */
	uint64_t mnt_id;        /* within them (mnt_id 0: unknown, before Linux 5.8) */
	/*
	 * The target may belong to a user who renames its entries or puts
	 * links in their place while we run: everything restore does in it
	 * goes through held directory fds, and code that takes a name (SQLite,
	 * file copies) is given "/proc/self/fd/<fd>/..." (shb_sqlite_fd_paths()).
	 */
	char *tp;               /* "/proc/self/fd/<target_fd>" */
	int staging_fd;         /* the staging dir, held from its creation; -1 if none */
	char *staging_name;     /* its name in the target */
	char *staging;          /* "/proc/self/fd/<staging_fd>"; NULL in a dry run */
	char *scratch;          /* where S3 archives may be downloaded */
	char *rollback;         /* final rollback dir, once made (for messages) */
	struct shb_repo *repo;  /* the backups' places; the input reads through it */
	struct shb_input *in;
	char *backup_name;
	unsigned char *want;    /* per layout file */
	unsigned char *wal;     /* per layout file: put the restored db in WAL mode */
	int default_wal;        /* the target's journal mode, for dbs it does not have yet */
	double last_progress;
};

/* --- flags --------------------------------------------------------------- */

static void print_help(void)
{
	printf("usage: %s\n\n"
	       "Restore a backup into a StreamHub DATA_DIR: verify every db (PRAGMA\n"
	       "integrity_check, and sha256 where the archive has an index), ask to type the\n"
	       "target path, save the current state to <target>/pre-restore-<UTC>/, then\n"
	       "replace streamhub.db, apps/<app>/app.db and secrets.json atomically.\n"
	       "Stop the core first.\n\n"
	       "options:\n"
	       "  --from X       latest (newest, local or S3, not dated in the future), a\n"
	       "                 timestamp or unique part of one, a .tar.gz file (ours or\n"
	       "                 plain), or a snapshot directory (an extracted backup, or one\n"
	       "                 inside a mounted shbackupfs); X is a path only if it has a\n"
	       "                 '/' or ends in .tar.gz (write ./dir for a dir here)\n"
	       "  --target DIR   the DATA_DIR to restore into (must exist)\n"
	       "  --yes          do not ask for confirmation (automation only)\n"
	       "  --force        restore even if a target db is in use\n"
	       "  --dry-run      print what would be done and change nothing\n"
	       "  --app NAME     restore only this app's db (repeatable)\n"
	       "  --list         list backups (as 'shbackup list')\n"
	       "  -h, --help     show this help\n\n"
	       "environment: as 'shbackup create' (BACKUP_LOCAL_DIR, BACKUP_S3_*, ...)\n\n"
	       "exit codes: 0 ok, 1 usage, 2 preflight (target missing or in use, cannot\n"
	       "write it, a symlink or mount point where restore writes, no room), 3 backup\n"
	       "not found, 4 verify failed (bad layout, sha256, integrity_check,\n"
	       "secrets.json), 5 aborted by user\n\n"
	       "New files take the target's owner: restore into a dir you made (mktemp -d),\n"
	       "not one another user can write.\n", usage);
}

static int parse_args(struct restore *r, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "target", required_argument, NULL, 't' },
		{ "yes", no_argument, NULL, 'y' },
		{ "force", no_argument, NULL, 'F' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "app", required_argument, NULL, 'a' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char **grown;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hy", opts, NULL)) != -1) {
		switch (c) {
		case 'f': r->from = optarg; break;
		case 't': r->target = optarg; break;
		case 'y': r->yes = 1; break;
		case 'F': r->force = 1; break;
		case 'n': r->dry_run = 1; break;
		case 'l': {
			char *list_argv[] = { "list", NULL };

			optind = 1;
			return -1 - cmd_list(1, list_argv);
		}
		case 'a':
			if (!shb_app_name_ok(optarg))
				return shb_usage_error(usage, "invalid app name '%s'", optarg);
			if (!(grown = realloc(r->apps, (r->napps + 1) * sizeof(*grown))))
				return SHB_EXIT_PREFLIGHT;
			r->apps = grown;
			r->apps[r->napps++] = optarg;
			break;
		case 'h': print_help(); return -1;
		default:
			return shb_option_error(usage, c, argv);
		}
	}
	if (optind < argc)
		return shb_usage_error(usage, "unexpected argument '%s'", argv[optind]);
	if (!r->from)
		return shb_usage_error(usage, "--from is required (e.g. --from latest)");
	if ((c = shb_check_from(usage, r->from)))
		return c;
	if (!r->target)
		return shb_usage_error(usage, "--target is required");
	return SHB_EXIT_OK;
}

/* --- the target: lock, debris, staging ------------------------------------ */

static int is_debris(const char *name)
{
	size_t n = strlen(name);

	return !strncmp(name, STAGING_PREFIX, strlen(STAGING_PREFIX))
	       || (!strncmp(name, "." ROLLBACK_PREFIX, strlen(ROLLBACK_PREFIX) + 1)
		   && n > 4 && !strcmp(name + n - 4, ".tmp"));
}

/*
 * Removes what killed runs left; safe because we hold the target's lock.
 * We only ever leave directories there, so anything else with such a name
 * (a symlink placed where our staging or rollback dir would go) is refused
 * rather than removed or followed.
 */
static int clear_debris(struct restore *r)
{
	int fd = openat(r->target_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;
	int rc = SHB_OK;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return shb_fail_errno(SHB_EIO, "cannot read target '%s'", r->target);
	}
	while (!rc && (errno = 0, de = readdir(d))) {
		struct stat st;

		if (!is_debris(de->d_name))
			continue;
		if (fstatat(r->target_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISDIR(st.st_mode)) {
			rc = shb_fail(SHB_EINVAL, "refusing to restore into '%s': '%s' is not a directory "
				      "(a symlink?)", r->target, de->d_name);
		} else if (shb_remove_tree_at(r->target_fd, de->d_name)) {
			shb_warning("%s", shb_errmsg());
		}
	}
	if (!rc && errno)
		rc = shb_fail_errno(SHB_EIO, "cannot read target '%s'", r->target);
	closedir(d);
	return rc;
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

/*
 * The top of the target, before anything is written to it: apps/,
 * streamhub.db and secrets.json must not be links.
 */
static int check_target_top(struct restore *r)
{
	int rc = no_link_at(r, r->target_fd, "apps", "apps", 1);

	if (!rc)
		rc = no_link_file(r, r->target_fd, "streamhub.db", "streamhub.db", 1);
	if (!rc)
		rc = no_link_file(r, r->target_fd, "secrets.json", "secrets.json", 0);
	return rc;
}

/* Every wanted app's dir and db, once the backup says which apps. */
static int check_target_apps(struct restore *r)
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

/*
 * Opens the directory restore just made as name in the target, without
 * following a link, and checks it is still ours (a directory owned by us
 * that no one else can enter): the target's owner may have renamed it and
 * put something else there in between.  Returns the fd, or -1 with the
 * error set.
 */
static int open_own_dir(struct restore *r, const char *name)
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

/* Removes the dir name (ours, open at fd) from the target, unless it was replaced. */
static void remove_own_dir(struct restore *r, const char *name, int fd)
{
	struct stat a, b;

	if (shb_clear_dir(fd))
		shb_warning("%s", shb_errmsg());
	if (fstat(fd, &a) == 0 && fstatat(r->target_fd, name, &b, AT_SYMLINK_NOFOLLOW) == 0
	    && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlinkat(r->target_fd, name, AT_REMOVEDIR);
}

static int prepare_target(struct restore *r)
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

/* --- which backup ---------------------------------------------------------- */

static int open_input(struct restore *r, int *code)
{
	struct shb_catalog cat = { 0 };
	const struct shb_backup *b;
	int rc;

	*code = EXIT_VERIFY;
	if (shb_from_is_path(r->from)) {
		if ((rc = shb_input_open_path(r->from, &r->in)) == SHB_ENOTFOUND)
			*code = EXIT_NOT_FOUND;
		r->backup_name = strdup(r->from);
		return rc;
	}
	*code = SHB_EXIT_PREFLIGHT;
	if ((rc = shb_repo_load(&r->cfg, r->cfg.cache_dir, r->cfg.cache_size, &r->repo, &cat)))
		goto out;
	if (!(b = shb_pick_backup(&cat, r->from, code))) {
		rc = SHB_ENOTFOUND;
		shb_fail(rc, "%s", "");
		goto out;
	}
	r->backup_name = strdup(b->name);
	*code = EXIT_VERIFY;
	rc = b->local_path ? shb_input_open_backup_file(b->local_path, &r->in)
		: shb_input_open_s3(r->repo, b, r->scratch, &r->in);
	/* A plain archive downloaded into the target: no room there is preflight, as locally. */
	if (rc == SHB_EIO && !b->local_path)
		*code = SHB_EXIT_PREFLIGHT;
out:
	shb_catalog_free(&cat);
	return rc;
}

/* Marks the layout files to restore: all, or the --app ones. */
static int choose(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);

	if (!(r->want = calloc(l->n + 1, 1)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	for (size_t i = 0; i < l->n; i++)
		r->want[i] = !r->napps;
	for (size_t k = 0; k < r->napps; k++) {
		size_t i;

		for (i = 0; i < l->n; i++)
			if (l->files[i].app && !strcmp(l->files[i].app, r->apps[k]))
				break;
		if (i == l->n)
			return shb_fail(SHB_ENOTFOUND, "app '%s' is not in backup '%s'", r->apps[k],
					shb_input_name(r->in));
		r->want[i] = 1;
	}
	return SHB_OK;
}

/*
 * 1 if the db at path is in WAL mode (header bytes 18-19 = 2), 0 if in
 * rollback-journal mode, -1 if there is no db there.
 */
static int db_is_wal(const char *path)
{
	unsigned char h[20];
	/* O_NONBLOCK: a fifo swapped in by the target's owner must not hang us. */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : pread(fd, h, sizeof(h), 0);

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16))
		return -1;
	return h[18] == 2 && h[19] == 2;
}

static int target_apps(const char *target, char ***out, size_t *n);
static void free_list(char **v, size_t n);

/*
 * Backups hold dbs in rollback-journal mode, but the core expects the mode
 * it runs with: each restored db gets the mode of the db it replaces, and a
 * new one the mode of the target's other dbs (streamhub.db first).
 */
static int plan_journal(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	char **apps = NULL;
	size_t napps = 0;
	int rc;

	if (!(r->wal = calloc(l->n + 1, 1)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	if ((rc = target_apps(r->tp, &apps, &napps)))
		return rc;
	for (size_t i = 0; i <= napps; i++) {
		char *p = shb_aprintf("%s/%s", r->tp, i ? apps[i - 1] : "streamhub.db");
		int wal = p ? db_is_wal(p) : -1;

		free(p);
		if (wal >= 0) {
			r->default_wal = wal;
			break;
		}
	}
	free_list(apps, napps);
	for (size_t i = 0; i < l->n; i++) {
		char *p;
		int wal;

		if (!r->want[i] || l->files[i].kind == SHB_FILE_SECRETS)
			continue;
		if (!(p = shb_aprintf("%s/%s", r->tp, l->files[i].rel)))
			return shb_fail(SHB_ENOMEM, "out of memory");
		wal = db_is_wal(p);
		r->wal[i] = wal < 0 ? (unsigned char)r->default_wal : (unsigned char)wal;
		free(p);
	}
	return SHB_OK;
}

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

static int guard(struct restore *r)
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

/* Appends s (taken over; NULL means it could not be made) to the vector v of n strings. */
static int push(char ***v, size_t *n, char *s)
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

/*
 * Apps with a db in the target: "apps/<app>/app.db" paths, malloc'd, in
 * *out.  Fails rather than leave one out (the rollback copy relies on it);
 * no apps dir is no apps.
 */
static int target_apps(const char *target, char ***out, size_t *n)
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

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void print_plan(struct restore *r, FILE *f)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	size_t napps;
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
	fprintf(f, "the current state is saved first to %s/%s<UTC>/\n", r->target, ROLLBACK_PREFIX);
	free_list(apps, napps);
}

/* --- extract and verify ---------------------------------------------------- */

static void on_extract(void *ctx, uint64_t done, uint64_t total)
{
	struct restore *r = ctx;

	shb_progress_bytes(&r->last_progress, "extracting", r->backup_name, done, total);
}

/*
 * PRAGMA integrity_check on one db; SHB_ECORRUPT naming it if not "ok".
 * A read-only connection to a WAL db leaves a -wal and -shm behind, so a
 * db that may be in WAL mode is opened read-write (and only read).
 */
static int integrity_flags(const char *path, const char *name, int flags)
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

static int extract_and_verify(struct restore *r)
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

/* --- confirmation ----------------------------------------------------------- */

/* Returns 0 when the user typed the target path on the terminal. */
static int confirm(struct restore *r)
{
	char line[4096];
	FILE *tty;
	size_t n;

	if (r->yes)
		return 0;
	if (!(tty = fopen("/dev/tty", "r+"))) {
		shb_error("no terminal to confirm on; pass --yes to restore without confirmation");
		return -1;
	}
	print_plan(r, tty);
	fprintf(tty, "Stop the core first. Type the target path (%s) to confirm: ", r->target);
	fflush(tty);
	if (!fgets(line, sizeof(line), tty)) {
		fclose(tty);
		shb_error("aborted: no confirmation");
		return -1;
	}
	fclose(tty);
	n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (strcmp(line, r->target)) {
		shb_error("aborted: '%s' is not the target path", line);
		return -1;
	}
	return 0;
}

/* --- the rollback point ------------------------------------------------------ */

/*
 * Leaves the db at path a single complete file, in the journal mode it has:
 * the first read rolls a hot journal back, a checkpoint folds a -wal in
 * and truncates it, and the close removes the empty -wal and the -shm.
 * The mode is the core's choice and stays: a rollback copy linked to this
 * file, or the file itself after an interrupted restore, keeps it.
 */
static int fold_journal(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), busy = 1;

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
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

/* Whether the restore replaces the target's file rel. */
static int replaced(const struct restore *r, const char *rel)
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
		int linked = !sv->r->force && replaced(sv->r, rel) && !fold_journal(src)
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

/*
 * Saves the current state into .pre-restore-<ts>.tmp, made and filled
 * through its held fd, then renames it to pre-restore-<ts> (never over
 * anything) and checks the name now leads to the dir we filled: the
 * target's owner may have swapped either name in between.
 */
static int make_rollback(struct restore *r)
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
	if ((dest = shb_aprintf("/proc/self/fd/%d/%s", dirfd, name)) && fold_journal(dest))
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

static int replace_all(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	int rc = SHB_OK;

	for (size_t i = 0; i < l->n && !rc; i++)
		if (r->want[i])
			rc = place(r, i);
	return rc;
}

/* --- the command ------------------------------------------------------------- */

static void report(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	size_t napps, files = 0;
	char **apps;

	target_apps(r->tp, &apps, &napps);  /* only to name what was kept */

	for (size_t i = 0; i < napps; i++)
		if (!shb_layout_find(l, apps[i]))
			shb_warning("'%s' is not in the backup and was left as it was", apps[i]);
	free_list(apps, napps);
	for (size_t i = 0; i < l->n; i++)
		files += r->want[i];
	printf("restored %s into %s (%zu file%s)\n", r->backup_name, r->target, files,
	       files == 1 ? "" : "s");
	if (r->rollback)
		printf("the previous state is in %s\n", r->rollback);
	else
		printf("the target held no previous data, so there is no rollback copy\n");
	printf("next: start the core (docker compose start core, or systemctl start skyline-core)\n"
	       "      and check its health: curl -fsS http://127.0.0.1:3020/api/v1/health\n");
}

static int exit_code_for(int rc)
{
	switch (rc) {
	case SHB_ECORRUPT: case SHB_EFORMAT: return EXIT_VERIFY;
	case SHB_ENOTFOUND: return EXIT_NOT_FOUND;
	default: return SHB_EXIT_PREFLIGHT;
	}
}

static void cleanup(struct restore *r)
{
	shb_progress_done();
	if (r->staging_fd >= 0) {
		remove_own_dir(r, r->staging_name, r->staging_fd);
		close(r->staging_fd);
	}
	if (r->dry_run && r->scratch)
		shb_remove_tree(r->scratch);
	if (r->target_fd >= 0)
		close(r->target_fd);
	shb_input_close(r->in);
	shb_repo_close(r->repo);
	shb_config_free(&r->cfg);
	free(r->staging);
	free(r->staging_name);
	free(r->tp);
	free(r->scratch);
	free(r->rollback);
	free(r->backup_name);
	free(r->want);
	free(r->wal);
	free(r->apps);
}

int cmd_restore(int argc, char **argv)
{
	struct restore r = { .target_fd = -1, .staging_fd = -1 };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int code, rc;

	r.threads = ncpu > 0 ? (int)ncpu : 1;
	if ((code = parse_args(&r, argc, argv)))
		goto out;
	code = SHB_EXIT_USAGE;
	if ((rc = shb_config_load(&r.cfg)))
		goto fail;
	code = SHB_EXIT_PREFLIGHT;
	if ((rc = shb_sqlite_fd_paths()) || (rc = prepare_target(&r)) || (rc = open_input(&r, &code)))
		goto fail;
	if ((rc = choose(&r))) {
		code = exit_code_for(rc);
		goto fail;
	}
	code = SHB_EXIT_PREFLIGHT;
	if ((rc = check_target_apps(&r)) || (rc = guard(&r)) || (rc = plan_journal(&r)))
		goto fail;
	if (r.dry_run) {
		print_plan(&r, stdout);
		code = SHB_EXIT_OK;
		goto out;
	}
	if ((rc = extract_and_verify(&r))) {
		code = exit_code_for(rc == SHB_ENOTFOUND ? SHB_EIO : rc);
		goto fail;
	}
	if (confirm(&r)) {
		code = EXIT_ABORTED;
		goto out;
	}
	/* The wait for a confirmation may have been long: check the target again. */
	if ((rc = check_target_top(&r)) || (rc = check_target_apps(&r)) || (rc = guard(&r))
	    || (rc = make_rollback(&r)))
		goto fail;
	if ((rc = replace_all(&r))) {
		/* One line: what failed, that the target is mixed, and where its old state is. */
		if (r.rollback)
			shb_error("%s; the target is partly restored, its previous state is in %s",
				  shb_errmsg(), r.rollback);
		else
			shb_error("%s; the target is partly restored (it held no previous data)",
				  shb_errmsg());
		goto out;
	}
	report(&r);
	code = SHB_EXIT_OK;
	goto out;
fail:
	if (shb_errmsg()[0])
		shb_error("%s", shb_errmsg());
out:
	cleanup(&r);
	return code < 0 ? -1 - code : code;
}
