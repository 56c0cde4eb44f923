/*
 * Helpers for the things every command does with files: write them whole,
 * make them durable, name them by UTC time, and clean them up.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;

	if (s[0] < 0x80)
		return 1;
	if (!n || s[0] > 0xf4)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong forms, surrogates and code points past U+10FFFF. */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0)
	    || (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

int shb_json_quote(struct shb_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc = shb_buf_add(b, "\"", 1);

	while (!rc && *p) {
		size_t n = utf8_len(p);
		char esc[8];

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			rc = shb_buf_add(b, esc, 2);
		} else if (*p < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			rc = shb_buf_add(b, esc, 6);
		} else if (!n) {
			/* JSON is UTF-8: a byte that is not becomes U+FFFD. */
			rc = shb_buf_add(b, "\\ufffd", 6);
			n = 1;
		} else {
			rc = shb_buf_add(b, p, n);
		}
		p += n ? n : 1;
	}
	return rc ? rc : shb_buf_add(b, "\"", 1);
}

char *shb_aprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		shb_fail(SHB_ENOMEM, "out of memory");
		return NULL;
	}
	return s;
}

int shb_write_all(int fd, const void *p, size_t n, const char *what)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return shb_fail_errno(SHB_EIO, "cannot write '%s'", what);
		c += w;
		n -= (size_t)w;
	}
	return SHB_OK;
}

int shb_pread_all(int fd, void *p, size_t n, uint64_t off, const char *what)
{
	char *c = p;

	while (n) {
		ssize_t r = pread(fd, c, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return shb_fail_errno(SHB_EIO, "cannot read '%s'", what);
		if (r == 0)
			return shb_fail(SHB_EFORMAT, "cannot read '%s': unexpected end of file", what);
		c += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return SHB_OK;
}

int shb_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = SHB_OK;

	if (fd < 0)
		return shb_fail_errno(SHB_EIO, "cannot open '%s'", path);
	if (fsync(fd) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync '%s'", path);
	close(fd);
	return rc;
}

int shb_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = SHB_OK;

	if (fd < 0)
		return shb_fail_errno(SHB_EIO, "cannot open directory '%s'", dir);
	if (fsync(fd) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync directory '%s'", dir);
	close(fd);
	return rc;
}

int shb_mkdir_p(const char *dir)
{
	char *copy = strdup(dir);
	int rc = SHB_OK;
	char *p;

	if (!copy)
		return shb_fail(SHB_ENOMEM, "out of memory");
	for (p = copy + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(copy, 0700) < 0 && errno != EEXIST) {
			rc = shb_fail_errno(SHB_EIO, "cannot create directory '%s'", copy);
			break;
		}
		*p = saved;
		if (!saved)
			break;
	}
	free(copy);
	return rc;
}

int shb_copy_file(const char *src, const char *dst)
{
	char buf[65536];
	/* O_NONBLOCK and the S_ISREG check: a fifo or device put at src must not hang us. */
	int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), out = -1;
	struct stat st;
	int rc = SHB_OK;
	ssize_t n;

	if (in >= 0 && fstat(in, &st) == 0 && !S_ISREG(st.st_mode))
		errno = EINVAL;
	else if (in >= 0)
		out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (in < 0 || out < 0) {
		rc = shb_fail_errno(SHB_EIO, "cannot copy '%s'", src);
		goto out;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if ((rc = shb_write_all(out, buf, (size_t)n, dst)))
			goto out;
	if (n < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot read '%s'", src);
	else if (fsync(out) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync '%s'", dst);
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

/*
 * Empties the directory open at fd, descending by fd only (O_NOFOLLOW at
 * each step): a link is removed, never followed, and a directory renamed
 * or swapped for a link halfway cannot redirect a removal elsewhere, as a
 * walk by path (nftw) could in a directory another user can write.
 */
static int clear_dir(int fd, int depth)
{
	int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
	struct dirent *de;
	int rc = SHB_OK;

	if (!d) {
		if (dup_fd >= 0)
			close(dup_fd);
		return shb_fail_errno(SHB_EIO, "cannot read a directory to remove");
	}
	while (!rc && (errno = 0, de = readdir(d))) {
		int sub;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(fd, de->d_name, 0) == 0 || errno == ENOENT)
			continue;
		if (errno != EISDIR || depth > 64) {
			rc = shb_fail_errno(SHB_EIO, "cannot remove '%s'", de->d_name);
			break;
		}
		sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			if (errno != ENOENT)
				rc = shb_fail_errno(SHB_EIO, "cannot open '%s'", de->d_name);
			continue;
		}
		rc = clear_dir(sub, depth + 1);
		close(sub);
		if (!rc && unlinkat(fd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			rc = shb_fail_errno(SHB_EIO, "cannot remove '%s'", de->d_name);
	}
	if (!rc && errno)
		rc = shb_fail_errno(SHB_EIO, "cannot read a directory to remove");
	closedir(d);
	return rc;
}

int shb_clear_dir(int fd)
{
	return clear_dir(fd, 0);
}

int shb_remove_tree_at(int dirfd, const char *name)
{
	int fd, rc;

	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return SHB_OK;
	if (errno != EISDIR)
		return shb_fail_errno(SHB_EIO, "cannot remove '%s'", name);
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SHB_OK : shb_fail_errno(SHB_EIO, "cannot open '%s'", name);
	rc = clear_dir(fd, 0);
	close(fd);
	if (!rc && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = shb_fail_errno(SHB_EIO, "cannot remove '%s'", name);
	return rc;
}

int shb_remove_tree(const char *path)
{
	return shb_remove_tree_at(AT_FDCWD, path);
}

void shb_ts_format(time_t t, char out[SHB_TS_LEN])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, SHB_TS_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

int shb_ts_parse(const char *s, time_t *t)
{
	struct tm tm = { 0 };
	char back[SHB_TS_LEN];
	const char *end;

	end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
	if (!end || *end || strlen(s) != SHB_TS_LEN - 1)
		return -1;
	*t = timegm(&tm);
	/* Reject stamps such as month 13 that strptime would normalise. */
	shb_ts_format(*t, back);
	return strcmp(back, s) ? -1 : 0;
}

void shb_human_size(uint64_t n, char *out, size_t outlen)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, outlen, "%llu B", (unsigned long long)n);
	else
		snprintf(out, outlen, "%.1f %s", v, units[u]);
}

struct pool {
	size_t n, next;
	int (*fn)(void *ctx, size_t i);
	void *ctx;
	pthread_mutex_t mu;
	int rc;
	char msg[1024];
};

static void *pool_worker(void *arg)
{
	struct pool *p = arg;

	for (;;) {
		size_t i;
		int rc;

		pthread_mutex_lock(&p->mu);
		i = p->next++;
		rc = p->rc;
		pthread_mutex_unlock(&p->mu);
		if (rc || i >= p->n)
			return NULL;
		rc = p->fn(p->ctx, i);
		if (rc) {
			pthread_mutex_lock(&p->mu);
			if (!p->rc) {
				p->rc = rc;
				snprintf(p->msg, sizeof(p->msg), "%s", shb_errmsg());
			}
			pthread_mutex_unlock(&p->mu);
		}
	}
}

int shb_parallel(size_t n, int threads, int (*fn)(void *ctx, size_t i), void *ctx)
{
	struct pool p = { .n = n, .fn = fn, .ctx = ctx };
	pthread_t tid[64];
	int started = 0;

	pthread_mutex_init(&p.mu, NULL);
	if (threads > 64)
		threads = 64;
	if ((size_t)threads > n)
		threads = (int)n;
	/* The calling thread works too, so one thread means no new thread. */
	while (started < threads - 1 && !pthread_create(&tid[started], NULL, pool_worker, &p))
		started++;
	pool_worker(&p);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_mutex_destroy(&p.mu);
	return p.rc ? shb_fail(p.rc, "%s", p.msg) : SHB_OK;
}

double shb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The symlink check is on an fd of the link's own inode (O_PATH), and the
 * target it names is read from that same inode, so the link judged is the
 * link followed.
 */
int shb_open_backup_dir(const char *dir, int *out)
{
	char target[PATH_MAX], *parent;
	struct stat st;
	ssize_t n;
	int link, at = AT_FDCWD, fd;

	*out = -1;
	link = open(dir, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (link < 0 && errno == ENOENT)
		return shb_fail(SHB_ENOTFOUND, "no such directory");
	if (link < 0 || fstat(link, &st) < 0) {
		if (link >= 0)
			close(link);
		return shb_fail_errno(SHB_EIO, "cannot open backup directory '%s'", dir);
	}
	if (!S_ISLNK(st.st_mode)) {
		close(link);
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		goto opened;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		close(link);
		return shb_fail(SHB_EINVAL, "cannot use backup directory '%s': it is a symlink "
				"owned by uid %u (only root's or our own are followed)",
				dir, (unsigned)st.st_uid);
	}
	n = readlinkat(link, "", target, sizeof(target));
	close(link);
	if (n < 0 || (size_t)n >= sizeof(target))
		return shb_fail_errno(SHB_EIO, "cannot read the symlink '%s'", dir);
	target[n] = '\0';
	/* A relative target is relative to the link's own directory. */
	if (target[0] != '/' && strchr(dir, '/')) {
		if (!(parent = strdup(dir)))
			return shb_fail(SHB_ENOMEM, "out of memory");
		*strrchr(parent, '/') = '\0';
		at = open(*parent ? parent : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		free(parent);
		if (at < 0)
			return shb_fail_errno(SHB_EIO, "cannot open backup directory '%s'", dir);
	}
	fd = openat(at, target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (at != AT_FDCWD)
		close(at);
opened:
	if (fd < 0 && errno == ENOENT)
		return shb_fail(SHB_ENOTFOUND, "no such directory");
	if (fd < 0 && errno == ENOTDIR)
		return shb_fail(SHB_EINVAL, "cannot use backup directory '%s': not a directory", dir);
	if (fd < 0)
		return shb_fail_errno(SHB_EIO, "cannot open backup directory '%s'", dir);
	*out = fd;
	return SHB_OK;
}

void shb_no_core_dumps(void)
{
	struct rlimit none = { 0, 0 };

	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
