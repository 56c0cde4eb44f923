/*
 * shbackupfs: mount every local and S3 backup as a read-only tree.
 *
 *   shbackupfs [SOURCE] MOUNTPOINT [-f] [-o opt,...]
 *
 * Options come from a fuse_opt table; sources default to shbackup's
 * environment (BACKUP_LOCAL_DIR / BACKUP_DATA_DIR, BACKUP_S3_*).  The
 * optional SOURCE (a backup dir or s3://bucket/prefix) is what mount(8)
 * passes from the first field of an fstab line.  Life cycle, as in sshfs:
 * parse, build the filesystem, mount, daemonize, loop, then unwind in
 * reverse.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <spawn.h>
#include <stdatomic.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <fuse.h>
#include <fuse_lowlevel.h>

#include "config.h"
#include "error.h"
#include "fs.h"
#include "repo.h"
#include "util.h"

struct options {
	char *local, *s3, *endpoint, *region, *cache_dir, *cache_size, *list_ttl, *timeout;
	char *uid, *gid, *umask;
	char *source, *mountpoint;
	int help, version, bad;
};

enum { KEY_HELP, KEY_VERSION };

/*
 * Every value is taken as a string and checked by the parsers below, not
 * by fuse_opt's typed templates: those are sscanf, which takes "-5" for %u
 * and wraps on overflow without a word.
 */
#define OPT(t, p) { t, offsetof(struct options, p), 0 }

static const struct fuse_opt spec[] = {
	OPT("local=%s", local),
	OPT("s3=%s", s3),
	OPT("endpoint=%s", endpoint),
	OPT("region=%s", region),
	OPT("cache_dir=%s", cache_dir),
	OPT("cache_size=%s", cache_size),
	OPT("list_ttl=%s", list_ttl),
	OPT("timeout=%s", timeout),
	OPT("uid=%s", uid),
	OPT("gid=%s", gid),
	OPT("umask=%s", umask),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END
};

static struct shbfs *the_fs;

static void usage(void)
{
	printf("usage: shbackupfs [SOURCE] MOUNTPOINT [options]\n\n"
	       "Mount every StreamHub backup, local and in S3, as a read-only tree:\n"
	       "  /<UTC timestamp>/{streamhub.db,secrets.json,apps/<app>/app.db}, /latest\n"
	       "Nothing is downloaded until it is read.\n\n"
	       "SOURCE (optional, e.g. the first field of an fstab line): a local backup\n"
	       "directory or s3://bucket/prefix.  Unset sources come from shbackup's\n"
	       "environment: BACKUP_LOCAL_DIR (default <BACKUP_DATA_DIR>/backups),\n"
	       "BACKUP_S3_BUCKET, BACKUP_S3_PREFIX, BACKUP_S3_ENDPOINT, BACKUP_S3_REGION,\n"
	       "BACKUP_S3_ACCESS_KEY_ID, BACKUP_S3_SECRET_ACCESS_KEY.  MOUNTPOINT may not\n"
	       "be the backup directory or cache_dir, nor inside or above either.\n\n"
	       "shbackupfs options:\n"
	       "    -o local=DIR           local backup directory\n"
	       "    -o s3=s3://BUCKET/PREFIX  S3 backups\n"
	       "    -o endpoint=URL        S3-compatible endpoint (path-style)\n"
	       "    -o region=REGION       S3 region (default us-east-1)\n"
	       "    -o cache_dir=DIR       disk cache of fetched S3 bytes (default\n"
	       "                           /var/cache/shbackupfs as root, else\n"
	       "                           ~/.cache/shbackupfs)\n"
	       "    -o cache_size=N[KMGT]  disk cache cap, 0 to 1T (default 1G)\n"
	       "    -o list_ttl=SECONDS    how long a root listing is served, 0 to 1e7\n"
	       "                           (default 60; SIGHUP re-lists at once)\n"
	       "    -o timeout=SECONDS     how long an S3 request may try, 1 to 3600\n"
	       "                           (default 10)\n"
	       "    -o uid=N,gid=N         owner and group of every file, numbers or names\n"
	       "                           (default: the mounting user)\n"
	       "    -o umask=OOO           files 0444 and dirs 0555 less this (octal);\n"
	       "                           default: dirs 0500, files their archived mode\n"
	       "                           less write bits (0400 for shbackup's)\n"
	       "    -o allow_other         let other users in, as far as the modes say\n"
	       "                           (secrets.json stays 0400, owner only)\n"
	       "    -V, --version          print the version\n\n");
}

static int on_arg(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct options *o = data;

	(void)out;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (!o->mountpoint) {
			o->mountpoint = strdup(arg);
		} else if (!o->source) {
			o->source = o->mountpoint;
			o->mountpoint = strdup(arg);
		} else {
			fprintf(stderr, "shbackupfs: unexpected argument '%s'\n", arg);
			o->bad = 1;
		}
		return 0;
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	default:
		return 1;
	}
}

/* --- option values ------------------------------------------------------------- */

/*
 * The one parser of whole numbers: decimal (octal with base 8), an optional
 * K/M/G/T suffix when shift is allowed, within lo..hi; anything else (a
 * sign, spaces, overflow) is an error naming the option.
 */
static int parse_uint(const char *name, const char *s, int base, int suffix, uint64_t lo,
		      uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (*s < '0' || *s > '9')
		goto bad;
	v = strtoull(s, &end, base);
	if (errno || end == s)
		goto bad;
	if (suffix && *end) {
		const char *units = "KMGT", *u = strchr(units, *end & ~0x20);

		if (!u || !*u)
			goto bad;
		shift = 10 * (unsigned)(u - units + 1);
		end++;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		goto bad;
	v <<= shift;
	if (v < lo || v > hi)
		goto bad;
	*out = v;
	return 0;
bad:
	fprintf(stderr, "shbackupfs: invalid %s '%s'\n", name, s);
	return -1;
}

static int parse_number(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	/* Written so that NaN, which compares false with everything, fails too. */
	if (errno || end == s || *end || !(*out >= lo && *out <= hi)) {
		fprintf(stderr, "shbackupfs: invalid %s '%s'\n", name, s);
		return -1;
	}
	return 0;
}

/* uid= and gid=: a number, or a user or group name. */
static int parse_id(const char *name, const char *s, int group, uint64_t *out)
{
	if (*s >= '0' && *s <= '9')
		return parse_uint(name, s, 10, 0, 0, UINT32_MAX - 1, out);
	if (group) {
		struct group *g = getgrnam(s);

		if (g) {
			*out = g->gr_gid;
			return 0;
		}
	} else {
		struct passwd *pw = getpwnam(s);

		if (pw) {
			*out = pw->pw_uid;
			return 0;
		}
	}
	fprintf(stderr, "shbackupfs: invalid %s '%s': no such %s\n", name, s,
		group ? "group" : "user");
	return -1;
}

/*
 * An absolute form of path: the daemon changes to "/" once mounted, so a
 * relative one would name something else.  Missing components are fine.
 */
static char *absolute(const char *path)
{
	char cwd[PATH_MAX];

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	return shb_aprintf("%s/%s", cwd, path);
}

/* replace() with the absolute form of v. */
static int replace_abs(char **field, const char *v)
{
	char *abs;

	if (!v)
		return 0;
	if (!(abs = absolute(v))) {
		fprintf(stderr, "shbackupfs: cannot resolve '%s': %s\n", v, strerror(errno));
		return -1;
	}
	free(*field);
	*field = abs;
	return 0;
}

/* "s3://bucket/prefix" into cfg's bucket and prefix. */
static int parse_s3_url(const char *url, struct shb_config *cfg)
{
	const char *b = url + 5, *slash;

	if (strncmp(url, "s3://", 5) || !*b || *b == '/') {
		fprintf(stderr, "shbackupfs: invalid s3 source '%s': expected s3://bucket/prefix\n", url);
		return -1;
	}
	slash = strchr(b, '/');
	free(cfg->s3_bucket);
	free(cfg->s3_prefix);
	cfg->s3_bucket = slash ? strndup(b, (size_t)(slash - b)) : strdup(b);
	/* The spelling create uploads under: "s3://b/p/" and "s3://b//p" are "p". */
	cfg->s3_prefix = shb_s3_prefix_normalize(slash ? slash + 1 : "");
	return cfg->s3_bucket && cfg->s3_prefix ? 0 : -1;
}

static void replace(char **field, const char *v)
{
	if (!v)
		return;
	free(*field);
	*field = strdup(v);
}

static char *default_cache_dir(void)
{
	const char *home = getenv("HOME"), *xdg = getenv("XDG_CACHE_HOME");

	if (getuid() == 0)
		return strdup("/var/cache/shbackupfs");
	if (xdg && *xdg)
		return shb_aprintf("%s/shbackupfs", xdg);
	return shb_aprintf("%s/.cache/shbackupfs", home ? home : "/tmp");
}

/*
 * path with symlinks resolved as far as it exists; the missing rest (a
 * cache dir not made yet) appended as written.  NULL if out of memory.
 */
static char *resolve(const char *path)
{
	char *head = strdup(path), *real, *out, *slash;
	size_t cut;

	if (!head)
		return NULL;
	while (!(real = realpath(head, NULL))) {
		if (!(slash = strrchr(head, '/')) || slash == head) {
			real = strdup("/");
			break;
		}
		*slash = '\0';
	}
	cut = strlen(head);
	out = real ? shb_aprintf("%s%s", strcmp(real, "/") ? real : "", path + cut) : NULL;
	if (out && !*out) {
		free(out);
		out = strdup("/");
	}
	free(real);
	free(head);
	return out;
}

/*
 * Whether dir a is dir b or inside it: each ancestor of a's real path is
 * compared with b by device and inode, so a bind mount of b or a symlink
 * to it is seen too.
 */
static int within(const char *a, const char *b)
{
	struct stat sb, st;
	char *p, *slash;
	int hit = 0;

	if (stat(b, &sb) < 0 || !(p = resolve(a)))
		return 0;
	for (;;) {
		if (stat(p, &st) == 0 && st.st_dev == sb.st_dev && st.st_ino == sb.st_ino) {
			hit = 1;
			break;
		}
		if (!strcmp(p, "/") || !(slash = strrchr(p, '/')))
			break;
		slash[slash == p] = '\0';  /* "/x" becomes "/" */
	}
	free(p);
	return hit;
}

/*
 * A mount point that is the backup dir, or inside it, or above it, or
 * above the cache dir, would have the daemon read through its own mount:
 * the first lookup waits on itself forever (a hang in D state that no
 * signal ends and no unmount clears).  Refused before mounting.
 */
static int check_overlap(const char *mnt, const char *local, const char *cache)
{
	const char *what = NULL, *dir = NULL;

	if (local && (within(mnt, local) || within(local, mnt)))
		what = "backup directory", dir = local;
	else if (cache && (within(mnt, cache) || within(cache, mnt)))
		what = "cache_dir", dir = cache;
	if (!what)
		return 0;
	fprintf(stderr, "shbackupfs: mount point '%s' overlaps the %s '%s' (one is inside the "
		"other): it would deadlock reading itself\n", mnt, what, dir);
	return -1;
}

/* Fills env (the repository's) and the shbfs config from options and environment. */
static int configure(struct options *o, struct shb_config *env, struct shbfs_config *c)
{
	double ttl = 60, timeout = 10;
	uint64_t v;
	int local_given = o->local || (o->source && strncmp(o->source, "s3://", 5));
	struct stat st;

	if (shb_config_load(env)) {
		fprintf(stderr, "shbackupfs: %s\n", shb_errmsg());
		return -1;
	}
	if (o->source && !strncmp(o->source, "s3://", 5) && parse_s3_url(o->source, env))
		return -1;
	if (o->s3 && parse_s3_url(o->s3, env))
		return -1;
	replace(&env->s3_endpoint, o->endpoint);
	replace(&env->s3_region, o->region);
	if (local_given)
		replace(&env->local_dir, o->local ? o->local : o->source);
	if (env->local_dir && replace_abs(&env->local_dir, env->local_dir))
		return -1;
	memset(c, 0, sizeof(*c));
	c->uid = getuid();
	c->gid = getgid();
	env->cache_size = 1ull << 30;
	if ((o->list_ttl && parse_number("list_ttl", o->list_ttl, 0, 1e7, &ttl))
	    || (o->timeout && parse_number("timeout", o->timeout, 1, 3600, &timeout)))
		return -1;
	if (o->uid) {
		if (parse_id("uid", o->uid, 0, &v))
			return -1;
		c->uid = (uid_t)v;
	}
	if (o->gid) {
		if (parse_id("gid", o->gid, 1, &v))
			return -1;
		c->gid = (gid_t)v;
	}
	if (o->umask) {
		if (parse_uint("umask", o->umask, 8, 0, 0, 0777, &v))
			return -1;
		c->umask_set = 1;
		c->umask = (mode_t)v;
	}
	if (o->cache_size
	    && parse_uint("cache_size", o->cache_size, 10, 1, 0, 1ull << 40, &env->cache_size))
		return -1;
	c->list_ttl = ttl;
	/*
	 * A local dir that is not there mounts an empty tree that looks like
	 * "no backups": refuse it, unless it is the default one and S3 is set
	 * (a host that keeps its backups in S3 only).
	 */
	if (env->local_dir && (local_given || getenv("BACKUP_LOCAL_DIR") || !env->s3_bucket)) {
		const char *why = stat(env->local_dir, &st) < 0 ? strerror(errno)
				  : !S_ISDIR(st.st_mode) ? "not a directory" : NULL;

		if (why) {
			fprintf(stderr, "shbackupfs: cannot use backup directory '%s': %s\n",
				env->local_dir, why);
			return -1;
		}
	}
	if (env->s3_bucket) {
		env->s3_max_attempts = 3;
		env->s3_retry_seconds = (int)timeout;
		env->s3_timeout = (int)timeout;
	}
	return 0;
}

/* The repository; without S3 a bad cache_dir costs only plain archives' index passes. */
static int open_repo(const struct shb_config *env, const char *dir, struct shb_repo **out)
{
	int bad = shb_repo_open(env, dir, env->cache_size, out);

	if (bad && !env->s3_bucket)
		shbfs_log(LOG_WARNING, "%s: mounting without a disk cache (plain archives are "
			  "indexed again at each mount)", shb_errmsg());
	if (bad && (env->s3_bucket || shb_repo_open(env, NULL, 0, out)))
		fprintf(stderr, "shbackupfs: %s\n", shb_errmsg());
	return *out ? 0 : -1;
}

/* Splits line at spaces into at most max fields, in place; returns how many. */
static int split_fields(char *line, char **fields, int max)
{
	int n = 0;

	while (*line && n < max) {
		while (*line == ' ' || *line == '\n')
			*line++ = '\0';
		if (!*line)
			break;
		fields[n++] = line;
		while (*line && *line != ' ' && *line != '\n')
			line++;
	}
	return n;
}

/* Undoes mountinfo's octal escapes (\040 for a space), in place. */
static void unescape(char *s)
{
	char *w = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7'
		    && s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 4;
		} else {
			*w++ = *s++;
		}
	}
	*w = '\0';
}

/*
 * The fstype of the topmost mount exactly at dir (from
 * /proc/self/mountinfo, which unlike stat() cannot hang on a dead FUSE
 * daemon), or NULL when nothing is mounted there.
 */
static char *mounted_fstype(const char *dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char *line = NULL, *found = NULL;
	size_t cap = 0;

	while (f && getline(&line, &cap, f) > 0) {
		char *fields[16];
		int n = split_fields(line, fields, 16);

		if (n < 7)
			continue;
		unescape(fields[4]);  /* the mount point */
		if (strcmp(fields[4], dir))
			continue;
		/* After the optional fields comes "-", then the fstype. */
		for (int i = 6; i + 1 < n; i++)
			if (!strcmp(fields[i], "-")) {
				free(found);
				found = strdup(fields[i + 1]);
				break;
			}
	}
	free(line);
	if (f)
		fclose(f);
	return found;
}

/* --- running --------------------------------------------------------------------- */

static void on_hup(int sig)
{
	(void)sig;
	if (the_fs)
		shbfs_refresh(the_fs);
}

/*
 * Stopping on SIGTERM/SIGINT.  libfuse's own handler ends the loop at once,
 * dropping requests the kernel has already queued: the RELEASEDIR of a
 * directory closed just before the signal then never arrives, and libfuse's
 * handle for it is lost.  So the handler only wakes the stopper thread,
 * which unmounts lazily as `fusermount3 -u -z` does; the loop then serves
 * what is queued and ends when the kernel closes the connection.  If that
 * does not happen within STOP_GRACE_SECONDS (a reader keeps a file open, or
 * the unmount failed) the loop is ended as libfuse would have ended it.
 */
#define STOP_GRACE_SECONDS 5

struct stopper {
	int pipe[2];                 /* the handler writes a byte to [1] */
	const char *mountpoint;
	struct fuse_session *se;
	pthread_t loop_thread;       /* the thread running the loop */
	atomic_int loop_done;        /* set once the loop has returned */
};
static struct stopper the_stopper = { .pipe = { -1, -1 } };

static void on_stop(int sig)
{
	int e = errno;

	(void)sig;
	if (write(the_stopper.pipe[1], "x", 1) < 0) {
		/* full pipe: a stop is already pending */
	}
	errno = e;
}

static void on_wake(int sig)
{
	(void)sig;  /* only interrupts the loop thread's wait */
}

static int lazy_unmount(const char *mp)
{
	char *argv[] = { "fusermount3", "-u", "-z", "--", (char *)mp, NULL };
	extern char **environ;
	pid_t pid;
	int status;

	if (geteuid() == 0)
		return umount2(mp, MNT_DETACH);
	if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ))
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void *stopper_main(void *arg)
{
	struct stopper *st = arg;
	char c;
	ssize_t n;

	while ((n = read(st->pipe[0], &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 1)
		return NULL;  /* the pipe was closed: the loop ended by itself */
	if (lazy_unmount(st->mountpoint) < 0)
		shbfs_log(LOG_WARNING, "cannot unmount %s: %s; stopping anyway", st->mountpoint,
			  strerror(errno));
	for (int i = 0; i < STOP_GRACE_SECONDS * 10 && !atomic_load(&st->loop_done); i++)
		nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
	if (!atomic_load(&st->loop_done)) {
		fuse_session_exit(st->se);
		pthread_kill(st->loop_thread, SIGUSR2);
	}
	return NULL;
}

static int catch_signal(int sig, void (*fn)(int))
{
	struct sigaction sa = { .sa_handler = fn };

	/* no SA_RESTART: the loop thread's read or wait must return EINTR */
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

static int run(struct fuse_args *args, struct fuse_cmdline_opts *cl, struct shbfs *fs)
{
	struct fuse_loop_config loop = { .clone_fd = 0, .max_idle_threads = 10 };
	struct fuse *fuse = fuse_new(args, shbfs_operations(), sizeof(struct fuse_operations), fs);
	struct fuse_session *se;
	pthread_t stopper;
	int rc = 1, have_stopper = 0;

	if (!fuse)
		return 1;  /* fuse_new said why: e.g. an unknown option */
	se = fuse_get_session(fuse);
	if (fuse_set_signal_handlers(se))
		goto out_destroy;
	signal(SIGHUP, on_hup);  /* re-list, instead of libfuse's exit on HUP */
	if (fuse_mount(fuse, cl->mountpoint))
		goto out_signals;
	if (fuse_daemonize(cl->foreground))
		goto out_unmount;
	if (!cl->foreground)
		shbfs_log_to_syslog();
	/* after fuse_daemonize(): a thread would not survive its fork */
	the_stopper.mountpoint = cl->mountpoint;
	the_stopper.se = se;
	the_stopper.loop_thread = pthread_self();
	if (pipe2(the_stopper.pipe, O_CLOEXEC | O_NONBLOCK) < 0
	    || fcntl(the_stopper.pipe[0], F_SETFL, 0) < 0
	    || pthread_create(&stopper, NULL, stopper_main, &the_stopper)) {
		shbfs_log(LOG_ERR, "cannot start the stopper thread");
		goto out_unmount;
	}
	have_stopper = 1;
	catch_signal(SIGUSR2, on_wake);
	catch_signal(SIGTERM, on_stop);
	catch_signal(SIGINT, on_stop);
	rc = cl->singlethread ? fuse_loop(fuse) : fuse_loop_mt(fuse, &loop);
	/* libfuse reports the signal that ended the loop: SIGTERM is a clean stop. */
	rc = rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP || rc == SIGUSR2 ? 0 : 1;
out_unmount:
	if (have_stopper) {
		/* no handler may write to the pipe once its number can be reused */
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		atomic_store(&the_stopper.loop_done, 1);
		close(the_stopper.pipe[1]);  /* wakes the stopper if no signal came */
		pthread_join(stopper, NULL);
		close(the_stopper.pipe[0]);
	}
	/*
	 * Also after the stopper's lazy unmount: this frees libfuse's copy of
	 * the mount point and closes the device (with a file still held open
	 * in the detached tree, libfuse says it failed to unmount: it was).
	 */
	fuse_unmount(fuse);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_destroy(fuse);
	return rc;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl = { 0 };
	struct options o = { 0 };
	struct shb_config env = { 0 };
	struct shbfs_config c = { 0 };
	char *cache_dir = NULL, *fstype = NULL;
	int rc = 1;

	umask(077);
	if (fuse_opt_parse(&args, &o, spec, on_arg) || o.bad)
		goto out;
	if (o.version) {
		printf("shbackupfs %s (libfuse %s)\n", SHB_VERSION, fuse_pkgversion());
		rc = 0;
		goto out;
	}
	if (o.help) {
		usage();
		fuse_cmdline_help();
		fuse_lib_help(&args);
		rc = 0;
		goto out;
	}
	if (!o.mountpoint) {
		fprintf(stderr, "shbackupfs: no mountpoint (see 'shbackupfs --help')\n");
		goto out;
	}
	if (fuse_opt_add_arg(&args, o.mountpoint)
	    || fuse_opt_add_arg(&args, "-oro,default_permissions,fsname=shbackupfs,subtype=shbackupfs")
	    || fuse_parse_cmdline(&args, &cl) || configure(&o, &env, &c))
		goto out;
	if ((fstype = mounted_fstype(cl.mountpoint)) && !strncmp(fstype, "fuse", 4)) {
		/* A second FUSE mount on top would hide the first, silently. */
		fprintf(stderr, "shbackupfs: '%s' is already a mount point (%s): unmount it first\n",
			cl.mountpoint, fstype);
		goto out;
	}
	cache_dir = o.cache_dir ? absolute(o.cache_dir) : default_cache_dir();
	if (!cache_dir) {
		fprintf(stderr, "shbackupfs: cannot resolve cache_dir '%s': %s\n",
			o.cache_dir ? o.cache_dir : "(default)", strerror(errno));
		goto out;
	}
	if (check_overlap(cl.mountpoint, env.local_dir, cache_dir)
	    || open_repo(&env, cache_dir, &c.repo))
		goto out;
	if (shbfs_new(&c, &the_fs)) {
		fprintf(stderr, "shbackupfs: %s\n", shb_errmsg());
		goto out;
	}
	rc = run(&args, &cl, the_fs);
out:
	shbfs_free(the_fs);
	shb_repo_close(c.repo);
	shb_config_free(&env);
	free(cache_dir);
	free(fstype);
	free(cl.mountpoint);
	free(o.source);
	free(o.mountpoint);
	free(o.local);
	free(o.s3);
	free(o.endpoint);
	free(o.region);
	free(o.cache_dir);
	free(o.cache_size);
	free(o.list_ttl);
	free(o.timeout);
	free(o.uid);
	free(o.gid);
	free(o.umask);
	fuse_opt_free_args(&args);
	return rc;
}
