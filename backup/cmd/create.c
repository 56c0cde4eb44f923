/*
 * shbackup create: a consistent, seekable backup of a live DATA_DIR.
 *
 * One thread snapshots the databases (and copies secrets.json) into a
 * private staging dir while the main thread archives each finished snapshot,
 * so snapshotting overlaps compression.  Everything is read through paths
 * that stay beneath DATA_DIR (shb_open_beneath), so a symlink planted there
 * by the service user cannot make root's backup copy a file from elsewhere;
 * app dirs whose names verify/restore would refuse are skipped with a
 * warning, so every backup create writes can be restored; so is a
 * secrets.json that verify/restore would refuse.  The backup dir may belong
 * to that user too, so everything create does there goes through one fd of
 * it and never follows a symlink: the archive is written through the fd of
 * a temporary it created (O_EXCL), made durable, renamed into place and
 * checked to be that very file, and uploaded from that fd.  A lock file
 * keeps concurrent runs apart and lets each run clear the debris of killed
 * ones.  With a bucket configured the archive is then uploaded and its size
 * checked, and retention runs on both sides.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "error.h"
#include "input.h"
#include "layout.h"
#include "metrics.h"
#include "prune.h"
#include "repo.h"
#include "s3.h"
#include "snapshot.h"
#include "util.h"

static const char usage[] = "shbackup create [--level N] [--threads N] [--no-prune]";

#define STAGING_PREFIX ".shbackup-staging-"
#define TMP_SUFFIX ".tmp"
#define DEFAULT_LOCK_TIMEOUT 60
#define LOCK_NAME ".shbackup.lock"

enum item_state { ITEM_PENDING, ITEM_READY, ITEM_FAILED, ITEM_SKIPPED };

/*
 * What to back up.  rel, app, staged and is_db are written by the main
 * thread before the snapshot thread starts and only read after that, by
 * both; state and msg are owned by the snapshot thread until it sets state
 * away from ITEM_PENDING, protected by job->mu.
 */
struct item {
	char *rel;      /* path inside DATA_DIR and the backup, e.g. "apps/a/app.db" */
	char *app;      /* "a" for an app db, else NULL */
	char *staged;   /* snapshot or copy in the staging dir, full path (for SQLite) */
	char *staged_name;  /* the same, relative to job->staging_fd */
	int is_db;
	enum item_state state;   /* protected by job->mu */
	char msg[512];           /* protected by job->mu */
};

/*
 * One run.  Everything down to nitems is set by the main thread before the
 * snapshot thread starts and only read after that (the snapshot thread
 * reads cfg, data_fd, lock_ms and items); the rest says who owns it.
 */
struct job {
	struct shb_config cfg;
	int level, threads, prune;
	char ts[SHB_TS_LEN];
	time_t time;
	char *top;          /* streamhub-backup-<ts> */
	char *staging;          /* full path, through trusted dirs only (SQLite writes by path) */
	char *staging_name;     /* the same, relative to staging_parent_fd */
	int staging_parent_fd;
	char *tmp_path;
	char *tmp_name;
	char *final_path;
	char *final_name;
	int lock_fd, out_fd;
	int dir_fd;             /* the backup dir: every name in it is used relative to this */
	int staging_fd;
	struct stat out_st;     /* the temporary we created: what out_fd writes */
	int tmp_ours;           /* tmp_name is still out_fd's file */
	int tmp_anon;           /* out_fd is an O_TMPFILE: no name until published */
	int dir_trusted;        /* no one else can change the backup dir or its parents */
	struct stat staging_st;
	struct shb_s3 *s3;      /* NULL: local only */
	char *s3_key;
	int data_fd;            /* DATA_DIR, what every source is opened beneath */
	int lock_ms;            /* BACKUP_LOCK_TIMEOUT, in milliseconds */
	int fail_code;          /* exit code for a preflight failure other than 2 */
	struct item *items;
	size_t nitems;

	size_t napps, skipped;  /* main thread only */
	int secrets_skipped;    /* main thread only: an invalid or odd secrets.json left out */
	/*
	 * Owned by whoever reports progress: the main thread while archiving,
	 * then the upload's part workers, which call back under their own mutex.
	 */
	double last_progress;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int cancel;             /* protected by mu */
};

/* --- flags --------------------------------------------------------------- */

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out)
{
	return shb_option_int(usage, opt, v, lo, hi, out);
}

static void print_help(void)
{
	printf("usage: %s\n\n"
	       "Snapshot every SQLite database of a StreamHub DATA_DIR (VACUUM INTO) plus\n"
	       "secrets.json into a seekable streamhub-backup-<UTC>.tar.gz, then prune\n"
	       "local backups older than the retention period.\n\n"
	       "options:\n"
	       "  --level N      gzip compression level 1..9 (default 6)\n"
	       "  --threads N    compression threads (default: number of CPUs)\n"
	       "  --no-prune     skip retention after the backup\n"
	       "  -h, --help     show this help\n\n"
	       "environment:\n"
	       "  BACKUP_DATA_DIR        data dir to back up (default %s)\n"
	       "  BACKUP_LOCAL_DIR       where archives are written (default <DATA_DIR>/backups)\n"
	       "  BACKUP_RETENTION_DAYS  delete local backups older than this (default %d;\n"
	       "                         0 keeps all); the newest is always kept\n"
	       "  BACKUP_S3_BUCKET       upload to this bucket too (default: local only)\n"
	       "  BACKUP_S3_ENDPOINT     S3-compatible endpoint, path-style (default: AWS)\n"
	       "  BACKUP_S3_PREFIX       key prefix (default %s; '/' at the ends and\n"
	       "                         repeated are dropped, '/' alone is the bucket root)\n"
	       "  BACKUP_S3_REGION       region (default %s)\n"
	       "  BACKUP_S3_ACCESS_KEY_ID, BACKUP_S3_SECRET_ACCESS_KEY\n"
	       "                         credentials (default: AWS_ACCESS_KEY_ID,\n"
	       "                         AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)\n"
	       "  BACKUP_S3_PART_SIZE_MB, BACKUP_S3_CONNECTIONS, BACKUP_S3_MAX_ATTEMPTS,\n"
	       "  BACKUP_S3_RETRY_SECONDS, BACKUP_S3_TIMEOUT\n"
	       "                         multipart part size (16), parallel parts (4), attempts\n"
	       "                         per request (5), retry budget (60 s), stall timeout (30 s)\n"
	       "  BACKUP_METRICS_FILE    write Prometheus textfile metrics of the run here\n"
	       "  BACKUP_LOCK_TIMEOUT    seconds to wait for a writer's lock on a db (default %d)\n\n"
	       "Only paths that stay inside DATA_DIR are read (symlinks included).  An app\n"
	       "dir whose name is not 1-255 bytes of valid UTF-8, starts with '.', or holds\n"
	       "a control character, '/' or '\\' is skipped with a warning; so is a\n"
	       "secrets.json that is empty, not valid JSON, over 64 MiB or not a regular file.\n"
	       "In a backup dir others can write to, snapshots are staged in $TMPDIR\n"
	       "(default /var/tmp).\n\n"
	       "exit codes: 0 ok, 1 usage, 2 preflight, 3 snapshot failed, 4 upload failed\n",
	       usage, SHB_DEFAULT_DATA_DIR, SHB_DEFAULT_RETENTION_DAYS, SHB_DEFAULT_S3_PREFIX,
	       SHB_DEFAULT_S3_REGION, DEFAULT_LOCK_TIMEOUT);
}

static int parse_args(struct job *job, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "level", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "no-prune", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int c, rc = SHB_EXIT_OK;

	job->level = 6;
	job->threads = ncpu > 0 ? (int)ncpu : 1;
	job->prune = 1;
	opterr = 0;
	while (!rc && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'l': rc = parse_int("--level", optarg, 1, 9, &job->level); break;
		case 't': rc = parse_int("--threads", optarg, 1, 256, &job->threads); break;
		case 'n': job->prune = 0; break;
		case 'h': print_help(); return -1;
		default:
			return shb_option_error(usage, c, argv);
		}
	}
	if (!rc && optind < argc)
		rc = shb_usage_error(usage, "unexpected argument '%s'", argv[optind]);
	return rc;
}

/* --- what to back up ----------------------------------------------------- */

static int add_item(struct job *job, const char *rel, const char *app, int is_db)
{
	struct item *it, *grown = realloc(job->items, (job->nitems + 1) * sizeof(*grown));

	if (!grown)
		return shb_fail(SHB_ENOMEM, "out of memory");
	job->items = grown;
	it = &job->items[job->nitems];
	memset(it, 0, sizeof(*it));
	it->is_db = is_db;
	it->rel = strdup(rel);
	it->app = app ? strdup(app) : NULL;
	it->staged = shb_aprintf("%s/%zu", job->staging, job->nitems);
	it->staged_name = shb_aprintf("%zu", job->nitems);
	job->nitems++;
	if (!it->rel || (app && !it->app) || !it->staged || !it->staged_name)
		return shb_fail(SHB_ENOMEM, "out of memory");
	return SHB_OK;
}

enum probe { P_FILE, P_MISSING, P_OTHER, P_OUTSIDE };

/*
 * Whether rel beneath DATA_DIR is a regular file create may read.  Missing
 * is P_MISSING, not a regular file (a FIFO, a dir...) P_OTHER; a path
 * leading out of DATA_DIR P_OUTSIDE; any other error is an error.  The open
 * does not block on a FIFO.
 */
static int probe(struct job *job, const char *rel, enum probe *out)
{
	int fd = shb_open_beneath(job->data_fd, rel, O_RDONLY | O_NONBLOCK);
	struct stat st;

	if (fd < 0) {
		if (shb_beneath_refused(errno))
			*out = P_OUTSIDE;
		else if (errno == ENOENT || errno == ENOTDIR)
			*out = P_MISSING;
		else
			return shb_fail_errno(SHB_EIO, "cannot open '%s/%s'", job->cfg.data_dir, rel);
		return SHB_OK;
	}
	*out = fstat(fd, &st) < 0 ? P_MISSING : S_ISREG(st.st_mode) ? P_FILE : P_OTHER;
	close(fd);
	return SHB_OK;
}

/*
 * The first of a db's side files (-wal, -shm, -journal) that exists and is
 * not a regular file, or NULL.  SQLite refuses a db whose side file is a
 * symlink ("unable to open database file"), so such a db cannot be
 * snapshotted; it is judged here so that it costs only its own app.
 */
static const char *odd_side_file(struct job *job, const char *rel)
{
	static const char *const sfx[] = { "-wal", "-shm", "-journal" };

	for (size_t k = 0; k < sizeof(sfx) / sizeof(*sfx); k++) {
		char *side = shb_aprintf("%s%s", rel, sfx[k]);
		struct stat st;
		int odd;

		if (!side)
			return NULL;  /* the snapshot will say what SQLite makes of it */
		odd = fstatat(job->data_fd, side, &st, AT_SYMLINK_NOFOLLOW) == 0
		      && !S_ISREG(st.st_mode);
		free(side);
		if (odd)
			return sfx[k];
	}
	return NULL;
}

static int leaves(struct job *job, const char *rel)
{
	job->fail_code = SHB_EXIT_SNAPSHOT;
	return shb_fail(SHB_EIO, "cannot back up '%s': it leaves DATA_DIR '%s'", rel,
			job->cfg.data_dir);
}

static void skip_app(struct job *job, const char *name, const char *why)
{
	char esc[1100];

	shb_name_escape(name, esc, sizeof(esc));
	shb_warning("skipping app 'apps/%s': %s", esc, why);
	job->skipped++;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/*
 * Every apps/<app>/app.db.  An app whose name breaks the rule of
 * shb_app_name_ok() or whose db leads out of DATA_DIR is skipped with a
 * warning: the rest of the backup is still worth having.
 */
static int find_apps(struct job *job)
{
	struct dirent **names = NULL;
	enum probe pr;
	int fd, n, rc = SHB_OK;

	fd = shb_open_beneath(job->data_fd, "apps", O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (shb_beneath_refused(errno))
			return leaves(job, "apps");
		if (errno == ENOENT || errno == ENOTDIR)
			return SHB_OK;
		return shb_fail_errno(SHB_EIO, "cannot read '%s/apps'", job->cfg.data_dir);
	}
	n = scandirat(fd, ".", &names, NULL, by_name);
	close(fd);
	if (n < 0)
		return shb_fail_errno(SHB_EIO, "cannot read '%s/apps'", job->cfg.data_dir);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name, *side;
		char *rel = NULL;

		if (!rc && strcmp(name, ".") && strcmp(name, "..")
		    && !(rc = (rel = shb_aprintf("apps/%s/app.db", name)) ? SHB_OK : SHB_ENOMEM)
		    && !(rc = probe(job, rel, &pr))) {
			if (pr == P_OUTSIDE)
				skip_app(job, name, "it leaves DATA_DIR");
			else if (pr == P_FILE && !shb_app_name_ok(name))
				skip_app(job, name, "name not allowed (valid UTF-8, 1-255 bytes, "
					 "no leading '.', control characters, '/' or '\\')");
			else if (pr == P_FILE && (side = odd_side_file(job, rel))) {
				char why[64];

				snprintf(why, sizeof(why), "'app.db%s' is not a regular file", side);
				skip_app(job, name, why);
			}
			else if (pr == P_FILE && !(rc = add_item(job, rel, name, 1)))
				job->napps++;
		}
		free(rel);
		free(names[i]);
	}
	free(names);
	return rc;
}

static int find_items(struct job *job)
{
	const char *side;
	enum probe pr;
	int rc;

	if ((rc = probe(job, "streamhub.db", &pr)))
		return rc;
	if (pr == P_OUTSIDE)
		return leaves(job, "streamhub.db");
	if (pr == P_FILE && (side = odd_side_file(job, "streamhub.db"))) {
		job->fail_code = SHB_EXIT_SNAPSHOT;
		return shb_fail(SHB_EIO, "cannot back up 'streamhub.db': 'streamhub.db%s' is not a "
				"regular file", side);
	}
	if (pr == P_FILE) {
		if ((rc = add_item(job, "streamhub.db", NULL, 1)))
			return rc;
	} else {
		shb_warning("no streamhub.db in '%s'", job->cfg.data_dir);
	}
	if ((rc = find_apps(job)))
		return rc;
	if (!job->nitems)
		return shb_fail(SHB_ENOTFOUND, "no database found in '%s' (streamhub.db, apps/*/app.db)",
				job->cfg.data_dir);
	if ((rc = probe(job, "secrets.json", &pr)))
		return rc;
	if (pr == P_OUTSIDE)
		return leaves(job, "secrets.json");
	if (pr == P_FILE)
		return add_item(job, "secrets.json", NULL, 0);
	if (pr == P_OTHER) {
		shb_warning("'secrets.json' in '%s' is not a regular file; backing up the databases only",
			    job->cfg.data_dir);
		job->secrets_skipped = 1;
		return SHB_OK;
	}
	shb_warning("no secrets.json in '%s'; backing up the databases only", job->cfg.data_dir);
	return SHB_OK;
}

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

static int is_debris(const char *name)
{
	size_t n = strlen(name), s = strlen(TMP_SUFFIX);

	if (!strncmp(name, STAGING_PREFIX, strlen(STAGING_PREFIX)))
		return 1;
	return name[0] == '.' && !strncmp(name + 1, SHB_NAME_PREFIX, strlen(SHB_NAME_PREFIX))
	       && n > s && !strcmp(name + n - s, TMP_SUFFIX);
}

/*
 * Removes the files directly in the dir open as fd (a staging dir holds
 * nothing else).  Symlinks are removed, never followed.
 */
static void empty_dir(int fd)
{
	int dup_fd = dup(fd);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (dup_fd >= 0)
			close(dup_fd);
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(fd, de->d_name, 0);
	closedir(d);
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
		empty_dir(fd);
		close(fd);
	}
	if (unlinkat(job->dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		shb_warning("cannot remove '%s/%s': %s", job->cfg.local_dir, name, strerror(errno));
}

/* Removes temporaries of killed runs; safe because we hold the lock. */
static void clear_debris(struct job *job)
{
	int fd = dup(job->dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (is_debris(de->d_name))
			remove_debris(job, de->d_name);
	closedir(d);
}

static int name_backup(struct job *job)
{
	const char *dir = job->cfg.local_dir;
	struct stat st;

	for (;;) {
		job->time = time(NULL);
		shb_ts_format(job->time, job->ts);
		free(job->final_name);
		job->final_name = shb_aprintf(SHB_NAME_PREFIX "%s" SHB_NAME_SUFFIX, job->ts);
		if (!job->final_name)
			return SHB_ENOMEM;
		if (fstatat(job->dir_fd, job->final_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			break;
		sleep(1);  /* one backup per second: never overwrite one */
	}
	job->top = shb_aprintf(SHB_NAME_PREFIX "%s", job->ts);
	job->final_path = shb_aprintf("%s/%s", dir, job->final_name);
	job->tmp_name = shb_aprintf(".%s" SHB_NAME_SUFFIX TMP_SUFFIX, job->top ? job->top : "");
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

/* Whether name in the dir open as dirfd is the file st describes (never following it). */
static int same_at(int dirfd, const char *name, const struct stat *st)
{
	struct stat cur;

	return fstatat(dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0
	       && cur.st_dev == st->st_dev && cur.st_ino == st->st_ino;
}

/*
 * The temporary archive (read back by the upload), created by this open
 * (O_EXCL, O_NOFOLLOW) so it is ours: a name planted since clear_debris (we
 * hold the lock, so no run of ours made it) is removed, never opened.  In a backup dir others can
 * write to, a name could still be swapped before the rename (publish would
 * then fail): there the archive has no name at all until it is complete
 * (O_TMPFILE, where the filesystem has it).
 */
static int create_tmp(struct job *job)
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

static int preflight(struct job *job)
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

/* --- snapshot thread ----------------------------------------------------- */

/*
 * Copies secrets.json from the open file in to name in the staging dir
 * (0600, fsync'd) if shb_secrets_check(), the check verify and restore
 * make, passes: else ITEM_SKIPPED with the reason set, as a backup that
 * holds it could not be restored.  At most SHB_SECRETS_MAX + 1 bytes are
 * read, and none of a file whose size already says it is too big.
 */
static enum item_state copy_secrets(struct job *job, int in, const struct stat *st,
				    const struct item *it)
{
	struct shb_buf b = { 0 };
	char buf[65536];
	ssize_t n = 0;
	int out = -1, rc = SHB_OK;
	enum item_state res = ITEM_FAILED;

	if ((uint64_t)st->st_size > SHB_SECRETS_MAX) {
		/* Judged by its size alone, in the check's own words. */
		shb_secrets_check("", (size_t)SHB_SECRETS_MAX + 1, it->rel);
		return ITEM_SKIPPED;
	}
	while (!rc && b.len <= SHB_SECRETS_MAX && (n = read(in, buf, sizeof(buf))) > 0)
		rc = shb_buf_add(&b, buf, (size_t)n);
	if (!rc && n < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot read it");
	if (rc)
		goto out;
	if (shb_secrets_check(b.data, b.len, it->rel)) {
		res = ITEM_SKIPPED;
		goto out;
	}
	out = openat(job->staging_fd, it->staged_name,
		     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot create '%s'", it->staged);
	else if (!(rc = shb_write_all(out, b.data, b.len, it->staged)) && fsync(out) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync '%s'", it->staged);
	if (!rc)
		res = ITEM_READY;
out:
	if (out >= 0)
		close(out);
	shb_buf_free(&b);
	return res;
}

/*
 * Snapshots one item from what is beneath DATA_DIR now: the check made at
 * discovery is made again by the open whose fd is read, so a swap since
 * then cannot win.  An app found leading out of DATA_DIR now is skipped,
 * as at discovery; so is a secrets.json that is not a regular file now.
 */
static enum item_state snapshot_item(struct job *job, const struct item *it)
{
	int fd = shb_open_beneath(job->data_fd, it->rel, O_RDONLY | O_NONBLOCK);
	enum item_state res = ITEM_FAILED;
	struct stat st;
	int rc = SHB_OK;

	if (fd < 0 && it->app && shb_beneath_refused(errno)) {
		shb_fail(SHB_EIO, "it leaves DATA_DIR");
		return ITEM_SKIPPED;
	}
	if (fd < 0 && shb_beneath_refused(errno))
		rc = shb_fail(SHB_EIO, "it leaves DATA_DIR '%s'", job->cfg.data_dir);
	else if (fd < 0 || fstat(fd, &st) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot open it");
	else if (!S_ISREG(st.st_mode) && !it->is_db) {
		shb_fail(SHB_EIO, "'%s' is not a regular file", it->rel);
		res = ITEM_SKIPPED;
	} else if (!S_ISREG(st.st_mode))
		rc = shb_fail(SHB_EIO, "not a regular file");
	else if (!it->is_db)
		res = copy_secrets(job, fd, &st, it);
	else if (!(rc = shb_snapshot_db_fd(fd, it->staged, job->lock_ms))
		 && !same_at(job->staging_parent_fd, job->staging_name, &job->staging_st))
		/* SQLite wrote by path: a staging dir swapped meanwhile got it, not ours. */
		rc = shb_fail(SHB_EIO, "staging dir '%s' was replaced", job->staging);
	if (fd >= 0)
		close(fd);
	if (rc)
		return ITEM_FAILED;
	return it->is_db ? ITEM_READY : res;
}

static void *snapshot_thread(void *arg)
{
	struct job *job = arg;

	for (size_t i = 0; i < job->nitems; i++) {
		struct item *it = &job->items[i];
		enum item_state st;
		int cancel;

		pthread_mutex_lock(&job->mu);
		cancel = job->cancel;
		pthread_mutex_unlock(&job->mu);
		if (cancel)
			break;
		st = snapshot_item(job, it);
		pthread_mutex_lock(&job->mu);
		it->state = st;
		if (st == ITEM_FAILED)
			snprintf(it->msg, sizeof(it->msg), "cannot snapshot '%s': %s", it->rel,
				 shb_errmsg());
		else if (st == ITEM_SKIPPED)
			snprintf(it->msg, sizeof(it->msg), "%s", shb_errmsg());
		pthread_cond_broadcast(&job->cv);
		pthread_mutex_unlock(&job->mu);
		if (st == ITEM_FAILED)
			break;
	}
	return NULL;
}

/* --- archiving ----------------------------------------------------------- */

static void on_progress(void *ctx, const char *path, uint64_t done, uint64_t total)
{
	struct job *job = ctx;

	shb_progress_bytes(&job->last_progress, "archiving", strchr(path, '/') + 1, done, total);
}

/* Waits for the snapshot thread to finish it; sets *skipped for a skipped app. */
static int wait_item(struct job *job, struct item *it, int *skipped)
{
	enum item_state st;
	int rc = SHB_OK;

	shb_progress_line("snapshot %s", it->rel);
	pthread_mutex_lock(&job->mu);
	while ((st = it->state) == ITEM_PENDING)
		pthread_cond_wait(&job->cv, &job->mu);
	*skipped = st == ITEM_SKIPPED;
	if (st == ITEM_FAILED) {
		rc = shb_fail(SHB_ESQLITE, "%s", it->msg);
	} else if (*skipped && it->app) {
		skip_app(job, it->app, it->msg);
	} else if (*skipped) {
		shb_warning("%s; backing up the databases only", it->msg);
		job->secrets_skipped = 1;
	}
	pthread_mutex_unlock(&job->mu);
	return rc;
}

static int add_dir(struct shb_archive_writer *w, struct job *job, const char *rel)
{
	char *p = rel ? shb_aprintf("%s/%s", job->top, rel) : strdup(job->top);
	int rc = p ? shb_archive_add_dir(w, p, 0700, job->time) : SHB_ENOMEM;

	free(p);
	return rc;
}

static int archive_item(struct shb_archive_writer *w, struct job *job, struct item *it)
{
	char *path = shb_aprintf("%s/%s", job->top, it->rel);
	int fd = openat(job->staging_fd, it->staged_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int rc;

	if (!path || fd < 0 || fstat(fd, &st) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot open snapshot of '%s'", it->rel);
	else
		rc = shb_archive_add_file(w, path, fd, (uint64_t)st.st_size, 0600, job->time);
	if (fd >= 0)
		close(fd);
	unlinkat(job->staging_fd, it->staged_name, 0);  /* keep staging small: one at a time */
	free(path);
	return rc;
}

/*
 * Each item once its snapshot is ready; an app's directories are written
 * only then, so a skipped app leaves nothing behind in the archive.
 */
static int archive_items(struct shb_archive_writer *w, struct job *job)
{
	int rc = add_dir(w, job, NULL), apps_dir = 0, skipped = 0;

	for (size_t i = 0; !rc && i < job->nitems; i++) {
		struct item *it = &job->items[i];

		if ((rc = wait_item(job, it, &skipped)))
			break;
		if (skipped) {
			job->napps -= it->app != NULL;
			continue;
		}
		if (it->app) {
			char *dir = shb_aprintf("apps/%s", it->app);

			if (!apps_dir++)
				rc = add_dir(w, job, "apps");
			if (!rc)
				rc = dir ? add_dir(w, job, dir) : SHB_ENOMEM;
			free(dir);
		}
		if (!rc)
			rc = archive_item(w, job, it);
	}
	return rc;
}

/* Snapshots and archives everything into job->out_fd. */
static int write_archive(struct job *job, uint64_t *size)
{
	struct shb_archive_opts o = { .level = job->level, .threads = job->threads,
				      .uid = getuid(), .gid = getgid(),
				      .progress = on_progress, .progress_ctx = job };
	struct shb_archive_writer *w = NULL;
	pthread_t snap;
	int rc;

	if (pthread_create(&snap, NULL, snapshot_thread, job))
		return shb_fail(SHB_ENOMEM, "cannot start the snapshot thread");
	rc = shb_archive_begin(job->out_fd, job->tmp_path, &o, &w);
	if (!rc)
		rc = archive_items(w, job);
	if (!rc)
		rc = shb_archive_finish(w);
	if (!rc)
		*size = shb_archive_size(w);
	pthread_mutex_lock(&job->mu);
	job->cancel = 1;
	pthread_mutex_unlock(&job->mu);
	pthread_join(snap, NULL);
	shb_archive_free(w);
	return rc;
}

/*
 * Makes the archive durable and gives it its final name.  The rename is
 * by name, and the backup dir's owner may have swapped the temporary's
 * name for a symlink or file of theirs: so the final name must then be
 * out_fd's file, or whatever we moved there is removed and the run fails.
 * RENAME_NOREPLACE: nothing already at the final name is overwritten.
 */
static int publish(struct job *job)
{
	int r;

	if (fsync(job->out_fd) < 0)
		return shb_fail_errno(SHB_EIO, "cannot fsync '%s'", job->tmp_path);
	if (job->tmp_anon) {
		/* A link never replaces a name; AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH. */
		char proc[64];

		r = linkat(job->out_fd, "", job->dir_fd, job->final_name, AT_EMPTY_PATH);
		if (r < 0 && errno != EEXIST) {
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", job->out_fd);
			r = linkat(AT_FDCWD, proc, job->dir_fd, job->final_name, AT_SYMLINK_FOLLOW);
		}
		if (r < 0)
			return shb_fail_errno(SHB_EIO, "cannot create '%s'", job->final_path);
		goto check;
	}
	r = renameat2(job->dir_fd, job->tmp_name, job->dir_fd, job->final_name, RENAME_NOREPLACE);
	if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
		/* No RENAME_NOREPLACE here: a link never replaces either. */
		r = linkat(job->dir_fd, job->tmp_name, job->dir_fd, job->final_name, 0);
		if (r == 0)
			unlinkat(job->dir_fd, job->tmp_name, 0);
	}
	if (r < 0)
		return shb_fail_errno(SHB_EIO, "cannot rename '%s' to '%s'", job->tmp_path,
				      job->final_name);
	job->tmp_ours = 0;
check:
	if (!same_at(job->dir_fd, job->final_name, &job->out_st)) {
		unlinkat(job->dir_fd, job->final_name, 0);
		return shb_fail(SHB_EIO, "cannot publish '%s': '%s' was replaced while being written",
				job->final_path, job->tmp_path);
	}
	if (fsync(job->dir_fd) < 0)
		return shb_fail_errno(SHB_EIO, "cannot fsync '%s'", job->cfg.local_dir);
	return SHB_OK;
}

/* --- upload and retention ------------------------------------------------ */

static void on_upload_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct job *job = ctx;

	shb_progress_bytes(&job->last_progress, "uploading", job->s3_key, done, total);
}

/*
 * Keeps every upload that is not a backup of ours: ours are directly under
 * our prefix (ctx, "<prefix>/" or ""), as the catalog reads them; a backup
 * under a deeper prefix belongs to another deployment, maybe uploading now.
 */
static int not_a_backup(const char *key, void *ctx)
{
	const char *dir = ctx;
	size_t dlen = strlen(dir);
	char ts[SHB_TS_LEN];
	time_t t;

	return strncmp(key, dir, dlen) || shb_backup_name_parse(key + dlen, ts, &t) != 0;
}

/*
 * Uploads the published archive and checks its size on the server.  Parts
 * left by a killed earlier run are aborted first: one create at a time
 * writes under a prefix, so any unfinished upload of a backup is stale.
 */
static int upload(struct job *job, uint64_t size)
{
	uint64_t remote = 0;
	char url[1024], stale_msg[1024] = "", *dir = shb_config_s3_key(&job->cfg, "");
	long stale;
	int rc;

	stale = dir ? shb_s3_abort_stale_uploads(job->s3, dir, not_a_backup, dir) : -1;
	free(dir);
	if (stale < 0)
		snprintf(stale_msg, sizeof(stale_msg), "%s", shb_errmsg());
	else if (stale > 0 && shb_show_progress())
		fprintf(stderr, "aborted %ld unfinished upload%s of an earlier run\n", stale,
			stale == 1 ? "" : "s");

	/* A bad key or bucket fails both: the upload's error alone says it once. */
	if ((rc = shb_s3_upload_fd(job->s3, job->s3_key, job->out_fd, job->final_path,
				   on_upload_progress, job))
	    || (rc = shb_s3_head(job->s3, job->s3_key, &remote)))
		return rc;
	if (stale_msg[0])
		shb_warning("%s", stale_msg);
	if (remote != size) {
		shb_s3_url(job->s3, job->s3_key, url, sizeof(url));
		return shb_fail(SHB_EREMOTE, "upload of '%s' is %llu bytes on the server, not %llu",
				url, (unsigned long long)remote, (unsigned long long)size);
	}
	return SHB_OK;
}

static void report_pruned(void *ctx, const struct shb_backup *b, const char *where, int failed)
{
	(void)ctx;
	if (failed)
		shb_warning("retention: %s", shb_errmsg());
	else if (shb_show_progress())
		fprintf(stderr, "pruned %s (%s)\n", b->name, where);
}

/* Prometheus textfile metrics of this run, when BACKUP_METRICS_FILE is set. */
static void write_metrics(struct job *job, uint64_t size, double secs)
{
	const char *path = getenv("BACKUP_METRICS_FILE");
	struct shb_catalog cat = { 0 };
	struct shb_repo *repo = NULL;
	struct shb_metric m[5] = {
		{ "shbackup_create_last_success_timestamp_seconds",
		  "When the last successful backup was created.", NULL, (double)time(NULL) },
		{ "shbackup_create_last_duration_seconds", "How long the last backup took.", NULL,
		  secs },
		{ "shbackup_create_last_size_bytes", "Size of the last backup archive.", NULL,
		  (double)size },
	};
	size_t n = 3;

	if (!path || !*path)
		return;
	if (!shb_repo_load(&job->cfg, NULL, 0, &repo, &cat)) {
		shb_metrics_counts(&cat, m + 3);
		n = 5;
	}
	if (shb_metrics_write(path, m, n))
		shb_warning("%s", shb_errmsg());
	shb_catalog_free(&cat);
	shb_repo_close(repo);
}

/*
 * Retention after the backup: locally always, in S3 only when with_s3 (not
 * after a failed upload: the bucket may be unreachable, but a full disk
 * must not follow from expired credentials).
 */
static void prune(struct job *job, int with_s3)
{
	struct shb_config cfg = job->cfg;  /* no bucket: local only; no cache: a tail or two */
	struct shb_catalog cat = { 0 };
	struct shb_repo *repo = NULL;

	cfg.s3_bucket = with_s3 ? cfg.s3_bucket : NULL;
	if (shb_repo_load(&cfg, NULL, 0, &repo, &cat)) {
		shb_warning("retention skipped: %s", shb_errmsg());
	} else {
		shb_warn_future(&cat);
		shb_prune(&cat, job->cfg.retention_days, time(NULL), 0, repo, report_pruned, NULL);
	}
	shb_catalog_free(&cat);
	shb_repo_close(repo);
}

/* --- the command --------------------------------------------------------- */

static void job_free(struct job *job)
{
	/* Our temporary only: a name swapped under us is the dir owner's. */
	if (job->tmp_ours && same_at(job->dir_fd, job->tmp_name, &job->out_st))
		unlinkat(job->dir_fd, job->tmp_name, 0);
	if (job->out_fd >= 0)
		close(job->out_fd);
	if (job->staging_fd >= 0) {
		empty_dir(job->staging_fd);
		if (same_at(job->staging_parent_fd, job->staging_name, &job->staging_st))
			unlinkat(job->staging_parent_fd, job->staging_name, AT_REMOVEDIR);
		close(job->staging_fd);
	}
	if (job->staging_parent_fd >= 0)
		close(job->staging_parent_fd);
	if (job->dir_fd >= 0)
		close(job->dir_fd);
	if (job->lock_fd >= 0)
		close(job->lock_fd);
	if (job->data_fd >= 0)
		close(job->data_fd);
	for (size_t i = 0; i < job->nitems; i++) {
		free(job->items[i].rel);
		free(job->items[i].app);
		free(job->items[i].staged);
		free(job->items[i].staged_name);
	}
	free(job->items);
	free(job->top);
	free(job->staging);
	free(job->staging_name);
	free(job->tmp_path);
	free(job->tmp_name);
	free(job->final_path);
	free(job->final_name);
	free(job->s3_key);
	shb_s3_free(job->s3);
	shb_config_free(&job->cfg);
	pthread_mutex_destroy(&job->mu);
	pthread_cond_destroy(&job->cv);
}

static void print_summary(struct job *job, uint64_t size, double secs)
{
	char human[32], url[1024] = "";

	shb_progress_done();
	shb_human_size(size, human, sizeof(human));
	if (job->s3)
		shb_s3_url(job->s3, job->s3_key, url, sizeof(url));
	printf("created %s (%s, %zu app%s", job->final_path, human, job->napps,
	       job->napps == 1 ? "" : "s");
	if (job->skipped)
		printf(", %zu skipped", job->skipped);
	if (job->secrets_skipped)
		printf(", secrets.json skipped");
	printf(", %.1f s)%s%s\n", secs, job->s3 ? ", uploaded to " : "", url);
	fflush(stdout);
}

/* BACKUP_LOCK_TIMEOUT: how long a snapshot waits for a writer's lock. */
static int lock_timeout(struct job *job)
{
	const char *v = getenv("BACKUP_LOCK_TIMEOUT");
	char *end;
	long n;

	job->lock_ms = DEFAULT_LOCK_TIMEOUT * 1000;
	if (!v || !*v)
		return SHB_OK;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || end == v || n < 0 || n > 86400)
		return shb_fail(SHB_EINVAL, "invalid BACKUP_LOCK_TIMEOUT '%s': expected 0..86400 seconds",
				v);
	job->lock_ms = (int)n * 1000;
	return SHB_OK;
}

/* The S3 client and key, when a bucket is configured. */
static int setup_s3(struct job *job)
{
	char *name;
	int rc;

	if (!job->cfg.s3_bucket)
		return SHB_OK;
	if ((rc = shb_config_s3(&job->cfg, &job->s3)))
		return rc;
	name = shb_aprintf(SHB_NAME_PREFIX "%s" SHB_NAME_SUFFIX, job->ts);
	job->s3_key = name ? shb_config_s3_key(&job->cfg, name) : NULL;
	free(name);
	return job->s3_key ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");
}

int cmd_create(int argc, char **argv)
{
	struct job job = { .lock_fd = -1, .out_fd = -1, .data_fd = -1, .dir_fd = -1,
			   .staging_fd = -1, .staging_parent_fd = -1 };
	double start = shb_now();
	uint64_t size = 0;
	int rc, code;

	pthread_mutex_init(&job.mu, NULL);
	pthread_cond_init(&job.cv, NULL);
	if ((code = parse_args(&job, argc, argv)))
		goto out;
	code = SHB_EXIT_USAGE;
	if ((rc = shb_config_load(&job.cfg)) || (rc = lock_timeout(&job)))
		goto fail;
	code = SHB_EXIT_PREFLIGHT;
	if ((rc = preflight(&job)) || (rc = setup_s3(&job))) {
		code = job.fail_code ? job.fail_code : code;
		goto fail;
	}
	if ((rc = create_tmp(&job)))
		goto fail;
	code = SHB_EXIT_SNAPSHOT;
	if ((rc = write_archive(&job, &size)) || (rc = publish(&job)))
		goto fail;
	code = SHB_EXIT_UPLOAD;
	if (job.s3 && (rc = upload(&job, size))) {
		shb_error("%s (the local backup is kept: %s)", shb_errmsg(), job.final_path);
		if (job.prune)
			prune(&job, 0);
		goto out;
	}
	print_summary(&job, size, shb_now() - start);
	if (job.prune)
		prune(&job, 1);
	write_metrics(&job, size, shb_now() - start);
	code = SHB_EXIT_OK;
	goto out;
fail:
	shb_error("%s", shb_errmsg());
out:
	job_free(&job);
	return code < 0 ? SHB_EXIT_OK : code;
}
