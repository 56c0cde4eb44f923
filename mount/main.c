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
#include "mountpoint.h"
#include "options.h"
#include "repo.h"
#include "util.h"

/*
 * The -o options, one table: each is taken by fuse_opt as a string into
 * options.raw[i] ("name=%s"), then parsed once by its type with the shared
 * number parser (options.h) into options.v.  Not fuse_opt's typed
 * templates: those are sscanf, which takes "-5" for %u and wraps on
 * overflow without a word.
 */
enum opt_type {
	T_STRING,   /* kept as given; never empty */
	T_SIZE,     /* bytes, with an optional K/M/G/T suffix, in [lo, hi] */
	T_SECONDS,  /* a decimal number of seconds in [lo, hi] */
	T_OCTAL,    /* a mode mask in [lo, hi] */
	T_USER,     /* a uid: a number, or a user name */
	T_GROUP,    /* a gid: a number, or a group name */
};

enum { O_LOCAL, O_S3, O_ENDPOINT, O_REGION, O_CACHE_DIR, O_CACHE_SIZE, O_LIST_TTL,
       O_TIMEOUT, O_UID, O_GID, O_UMASK, O_IDENTITY, NOPTS };

/* The typed values; strings point into options.raw, NULL when not given. */
struct values {
	const char *local, *s3, *endpoint, *region, *cache_dir, *identity;
	uint64_t cache_size;
	double list_ttl, timeout;
	uid_t uid;
	gid_t gid;
	mode_t umask;
};

struct opt_def {
	const char *templ;   /* the fuse_opt template, "name=%s" */
	enum opt_type type;
	size_t field;        /* offsetof(struct values, ...) */
	double lo, hi;
};

#define V(f) offsetof(struct values, f)

static const struct opt_def defs[NOPTS] = {
	[O_LOCAL] = { "local=%s", T_STRING, V(local), 0, 0 },
	[O_S3] = { "s3=%s", T_STRING, V(s3), 0, 0 },
	[O_ENDPOINT] = { "endpoint=%s", T_STRING, V(endpoint), 0, 0 },
	[O_REGION] = { "region=%s", T_STRING, V(region), 0, 0 },
	[O_CACHE_DIR] = { "cache_dir=%s", T_STRING, V(cache_dir), 0, 0 },
	[O_CACHE_SIZE] = { "cache_size=%s", T_SIZE, V(cache_size), 0, 1ull << 40 },
	[O_LIST_TTL] = { "list_ttl=%s", T_SECONDS, V(list_ttl), 0, 1e7 },
	[O_TIMEOUT] = { "timeout=%s", T_SECONDS, V(timeout), 1, 3600 },
	[O_UID] = { "uid=%s", T_USER, V(uid), 0, UINT32_MAX - 1 },
	[O_GID] = { "gid=%s", T_GROUP, V(gid), 0, UINT32_MAX - 1 },
	[O_UMASK] = { "umask=%s", T_OCTAL, V(umask), 0, 0777 },
	[O_IDENTITY] = { "identity=%s", T_STRING, V(identity), 0, 0 },
};

struct options {
	char *raw[NOPTS];        /* each -o value as given (malloc'd by fuse_opt), or NULL */
	struct values v;         /* raw parsed by parse_values() */
	char *source, *mountpoint;
	int help, version, bad;
};

enum { KEY_HELP, KEY_VERSION };

/* The fuse_opt spec of defs (plus help and version) into spec[NOPTS + 5]. */
static void make_spec(struct fuse_opt *spec)
{
	int n = 0;

	for (; n < NOPTS; n++)
		spec[n] = (struct fuse_opt){ defs[n].templ,
			offsetof(struct options, raw) + (size_t)n * sizeof(char *), 0 };
	spec[n++] = (struct fuse_opt)FUSE_OPT_KEY("-h", KEY_HELP);
	spec[n++] = (struct fuse_opt)FUSE_OPT_KEY("--help", KEY_HELP);
	spec[n++] = (struct fuse_opt)FUSE_OPT_KEY("-V", KEY_VERSION);
	spec[n++] = (struct fuse_opt)FUSE_OPT_KEY("--version", KEY_VERSION);
	spec[n] = (struct fuse_opt)FUSE_OPT_END;
}

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
	       "    -o identity=FILE       age identity file for encrypted backups\n"
	       "                           (default BACKUP_AGE_IDENTITY_FILE; not readable\n"
	       "                           by group or others)\n"
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

/* The name of defs[i], for messages: "cache_size" of "cache_size=%s". */
static const char *opt_name(int i, char *out, size_t n)
{
	snprintf(out, n, "%.*s", (int)strcspn(defs[i].templ, "="), defs[i].templ);
	return out;
}

/* uid= and gid=: a number up to hi, or a user or group name, into *out. */
static int parse_id(const char *name, const char *s, int group, long long hi, long long *out)
{
	if (*s >= '0' && *s <= '9') {
		if (!shb_parse_number(s, SHB_NUM_UINT, 0, hi, out))
			return 0;
		fprintf(stderr, "shbackupfs: invalid %s '%s'\n", name, s);
		return -1;
	}
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

/* One given option, raw, into its field of v as defs[i] says; -1 after saying why. */
static int parse_value(int i, const char *raw, struct values *v)
{
	const struct opt_def *d = &defs[i];
	void *field = (char *)v + d->field;
	char name[32];
	long long n = 0;
	int bad = 0;

	opt_name(i, name, sizeof(name));
	switch (d->type) {
	case T_STRING:
		/* "cache_dir=" would be the working directory: refused, not guessed. */
		bad = !*raw;
		*(const char **)field = raw;
		break;
	case T_SECONDS:
		bad = shb_parse_seconds(raw, d->lo, d->hi, (double *)field);
		break;
	case T_SIZE:
		bad = shb_parse_number(raw, SHB_NUM_SIZE, (long long)d->lo, (long long)d->hi, &n);
		*(uint64_t *)field = (uint64_t)n;
		break;
	case T_OCTAL:
		bad = shb_parse_number(raw, SHB_NUM_OCTAL, (long long)d->lo, (long long)d->hi, &n);
		*(mode_t *)field = (mode_t)n;
		break;
	case T_USER:
	case T_GROUP:
		/* parse_id() says why itself ("no such user") */
		if (parse_id(name, raw, d->type == T_GROUP, (long long)d->hi, &n))
			return -1;
		if (d->type == T_USER)
			*(uid_t *)field = (uid_t)n;
		else
			*(gid_t *)field = (gid_t)n;
		break;
	}
	if (bad)
		fprintf(stderr, "shbackupfs: invalid %s '%s'\n", name, raw);
	return bad ? -1 : 0;
}

/* o->v: the defaults, then every option given, in table order. */
static int parse_values(struct options *o)
{
	o->v = (struct values){ .cache_size = 1ull << 30, .list_ttl = 60, .timeout = 10,
				.uid = getuid(), .gid = getgid() };
	for (int i = 0; i < NOPTS; i++)
		if (o->raw[i] && parse_value(i, o->raw[i], &o->v))
			return -1;
	return 0;
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
 * A local dir that is not there mounts an empty tree that looks like "no
 * backups": refused, unless it is the default one and S3 is set (a host
 * that keeps its backups in S3 only).  0, or -1 after saying why.
 */
static int check_local_dir(const struct shb_config *env, int local_given)
{
	struct stat st;
	const char *why;

	if (!env->local_dir || !(local_given || getenv("BACKUP_LOCAL_DIR") || !env->s3_bucket))
		return 0;
	why = stat(env->local_dir, &st) < 0 ? strerror(errno)
	      : !S_ISDIR(st.st_mode) ? "not a directory" : NULL;
	if (!why)
		return 0;
	fprintf(stderr, "shbackupfs: cannot use backup directory '%s': %s\n", env->local_dir, why);
	return -1;
}

/* S3 requests of the mount give up after timeout seconds, three tries at most. */
static void s3_settings(struct shb_config *env, double timeout)
{
	if (env->s3_bucket) {
		env->s3_max_attempts = 3;
		env->s3_retry_seconds = (int)timeout;
		env->s3_timeout = (int)timeout;
	}
}

/*
 * The repository the mount reads (repo.h) with its disk cache in dir;
 * 0, or -1 after saying why.  Without S3 a cache dir that cannot be used
 * costs only plain archives' indexing passes, so the mount goes on
 * without one.
 */
static int open_repo(const struct shb_config *env, const char *dir, struct shb_repo **out)
{
	int bad = shb_repo_open(env, dir, env->cache_size, out);

	if (bad == SHB_EKEY) {
		fprintf(stderr, "shbackupfs: %s\n", shb_errmsg());
		return -1;
	}
	if (bad && !env->s3_bucket)
		shbfs_log(LOG_WARNING, "%s: mounting without a disk cache (plain archives are "
			  "indexed again at each mount)", shb_errmsg());
	if (bad && (env->s3_bucket || shb_repo_open(env, NULL, 0, out)))
		fprintf(stderr, "shbackupfs: %s\n", shb_errmsg());
	return *out ? 0 : -1;
}

/*
 * Fills env (the environment, then the sources and S3 settings the
 * options give) and the shbfs config c from them; 0, or -1 after saying
 * why.
 */
static int configure(struct options *o, struct shb_config *env, struct shbfs_config *c)
{
	const struct values *v = &o->v;
	int local_given;

	if (parse_values(o))
		return -1;
	local_given = v->local || (o->source && strncmp(o->source, "s3://", 5));
	if (shb_config_load(env)) {
		fprintf(stderr, "shbackupfs: %s\n", shb_errmsg());
		return -1;
	}
	if (o->source && !strncmp(o->source, "s3://", 5) && parse_s3_url(o->source, env))
		return -1;
	if (v->s3 && parse_s3_url(v->s3, env))
		return -1;
	replace(&env->s3_endpoint, v->endpoint);
	replace(&env->s3_region, v->region);
	if (local_given)
		replace(&env->local_dir, v->local ? v->local : o->source);
	if (env->local_dir && replace_abs(&env->local_dir, env->local_dir))
		return -1;
	/* BACKUP_AGE_IDENTITY_FILE too: a relative path must not depend on where the daemon runs. */
	if (replace_abs(&env->age_identity_file, v->identity ? v->identity : env->age_identity_file))
		return -1;
	memset(c, 0, sizeof(*c));
	c->uid = v->uid;
	c->gid = v->gid;
	c->umask_set = o->raw[O_UMASK] != NULL;
	c->umask = v->umask;
	env->cache_size = v->cache_size;
	c->list_ttl = v->list_ttl;
	if (check_local_dir(env, local_given))
		return -1;
	s3_settings(env, v->timeout);
	return 0;
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

/* --help, --version or no mount point: the exit code, or -1 to go on and mount. */
static int early_exit(const struct options *o, struct fuse_args *args)
{
	if (o->version) {
		printf("shbackupfs %s (libfuse %s)\n", SHB_VERSION, fuse_pkgversion());
		return 0;
	}
	if (o->help) {
		usage();
		fuse_cmdline_help();
		fuse_lib_help(args);
		return 0;
	}
	if (!o->mountpoint) {
		fprintf(stderr, "shbackupfs: no mountpoint (see 'shbackupfs --help')\n");
		return 1;
	}
	return -1;
}

/*
 * The cache dir (malloc'd) once the mount point is known to be free (a
 * second FUSE mount on top would hide the first, silently) and apart
 * from the backup and cache dirs; NULL after saying why not.
 */
static char *check_mountpoint(const struct options *o, const char *mnt, const char *local)
{
	char *fstype = shbfs_mounted_fstype(mnt), *cache_dir = NULL;

	if (fstype && !strncmp(fstype, "fuse", 4)) {
		fprintf(stderr, "shbackupfs: '%s' is already a mount point (%s): unmount it first\n",
			mnt, fstype);
		goto out;
	}
	cache_dir = o->v.cache_dir ? absolute(o->v.cache_dir) : default_cache_dir();
	if (!cache_dir) {
		fprintf(stderr, "shbackupfs: cannot resolve cache_dir '%s': %s\n",
			o->v.cache_dir ? o->v.cache_dir : "(default)", strerror(errno));
		goto out;
	}
	if (shbfs_check_overlap(mnt, local, cache_dir)) {
		free(cache_dir);
		cache_dir = NULL;
	}
out:
	free(fstype);
	return cache_dir;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_opt spec[NOPTS + 5];
	struct fuse_cmdline_opts cl = { 0 };
	struct options o = { 0 };
	struct shb_config env = { 0 };
	struct shbfs_config c = { 0 };
	char *cache_dir = NULL;
	int rc = 1;

	umask(077);
	make_spec(spec);
	if (fuse_opt_parse(&args, &o, spec, on_arg) || o.bad)
		goto out;
	if ((rc = early_exit(&o, &args)) >= 0)
		goto out;
	rc = 1;
	if (fuse_opt_add_arg(&args, o.mountpoint)
	    || fuse_opt_add_arg(&args, "-oro,default_permissions,fsname=shbackupfs,subtype=shbackupfs")
	    || fuse_parse_cmdline(&args, &cl) || configure(&o, &env, &c)
	    || !(cache_dir = check_mountpoint(&o, cl.mountpoint, env.local_dir))
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
	free(cl.mountpoint);
	free(o.source);
	free(o.mountpoint);
	for (int i = 0; i < NOPTS; i++)
		free(o.raw[i]);
	fuse_opt_free_args(&args);
	return rc;
}
