/*
 * Backup inputs (input.h): listing each shape as raw entries for the
 * layout check, and extracting the wanted files into a directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "age.h"
#include "error.h"
#include "input.h"
#include "input_impl.h"
#include "reader.h"
#include "repo.h"
#include "snapshot.h"
#include "util.h"
#include "zindex.h"

/* --- raw entries ---------------------------------------------------------- */

static int add_raw(struct shb_input *in, const char *path, int type, uint64_t size)
{
	char *copy = strdup(path);

	if (!copy || SHB_ALLOC_GROW(in->raw, in->nraw + 1, in->raw_alloc)) {
		free(copy);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	in->raw[in->nraw++] = (struct shb_raw_entry){ copy, type, size };
	return SHB_OK;
}

int shb_input_raw_type(struct archive_entry *ae)
{
	if (archive_entry_hardlink(ae) || archive_entry_symlink(ae))
		return SHB_RAW_OTHER;
	switch (archive_entry_filetype(ae)) {
	case AE_IFREG: return SHB_RAW_FILE;
	case AE_IFDIR: return SHB_RAW_DIR;
	default: return SHB_RAW_OTHER;
	}
}

const char *shb_input_entry_name(struct archive_entry *ae)
{
	const char *p = archive_entry_pathname_utf8(ae);

	if (!p)
		p = archive_entry_pathname(ae);
	return p ? p : "";
}

/* The stored bytes of a TAR input's file, as the tar.gz they hold (decrypted). */
static int open_tar_source(const struct shb_input *in, struct shb_source **out)
{
	struct shb_source *raw;
	int rc;

	if ((rc = (in->backup ? shb_source_open_backup_file : shb_source_open_file)(in->path, &raw)))
		return rc;
	return shb_repo_decrypt(raw, in->encrypted, in->ids, out);
}

/* libarchive's reading end over a source: sequential reads of FEED bytes. */
#define FEED (256u << 10)

struct feed {
	struct shb_source *src;
	uint64_t off;
	unsigned char buf[FEED];
};

static la_ssize_t feed_read(struct archive *a, void *ctx, const void **out)
{
	struct feed *f = ctx;
	uint64_t left = f->src->size - f->off;
	size_t n = left < FEED ? (size_t)left : FEED;

	if (n && shb_source_read(f->src, f->buf, n, f->off)) {
		archive_set_error(a, EIO, "%s", shb_errmsg());
		return -1;
	}
	f->off += n;
	*out = f->buf;
	return (la_ssize_t)n;
}

static int feed_close(struct archive *a, void *ctx)
{
	struct feed *f = ctx;

	(void)a;
	shb_source_close(f->src);
	OPENSSL_cleanse(f->buf, sizeof(f->buf));
	free(f);
	return ARCHIVE_OK;
}

int shb_input_open_tar(const struct shb_input *in, struct archive **out)
{
	struct archive *a = archive_read_new();
	struct feed *f = calloc(1, sizeof(*f));
	int rc = a && f ? open_tar_source(in, &f->src) : shb_fail(SHB_ENOMEM, "out of memory");

	if (rc) {
		if (a)
			archive_read_free(a);
		free(f);
		return rc;
	}
	archive_read_support_filter_gzip(a);
	archive_read_support_format_tar(a);
	/* From here on feed_close owns f, also when the open fails. */
	if (archive_read_open(a, f, NULL, feed_read, feed_close) != ARCHIVE_OK) {
		rc = shb_fail(SHB_EFORMAT, "cannot read archive '%s': %s", in->path,
			      archive_error_string(a));
		archive_read_free(a);
		return rc;
	}
	*out = a;
	return SHB_OK;
}

/* One pass over the headers; a plain tar.gz has no index to ask. */
static int raw_from_tar(struct shb_input *in)
{
	locale_t loc = shb_utf8_names_begin();
	struct archive *a = NULL;
	struct archive_entry *ae;
	int r, rc = shb_input_open_tar(in, &a);

	if (rc) {
		shb_utf8_names_end(loc);
		return rc;
	}
	while (!rc && (r = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
		if (in->nraw >= 100000)
			rc = shb_fail(SHB_EFORMAT, "refusing backup: more than 100000 entries");
		else
			rc = add_raw(in, shb_input_entry_name(ae), shb_input_raw_type(ae),
				     (uint64_t)archive_entry_size(ae));
	}
	if (!rc && r != ARCHIVE_EOF)
		rc = shb_fail(SHB_EFORMAT, "cannot read archive '%s': %s", in->path,
			      archive_error_string(a));
	archive_read_free(a);
	shb_utf8_names_end(loc);
	return rc;
}

/*
 * A snapshot dir: probe the expected names, with lstat so links show.  Only
 * a name that is not there is skipped; any other error reading the input
 * fails it, so an unreadable dir never makes a silently shorter backup.
 */
static int probe(struct shb_input *in, const char *rel)
{
	char *p = shb_aprintf("%s/%s", in->path, rel);
	struct stat st;
	int rc = SHB_OK;

	if (!p)
		return shb_fail(SHB_ENOMEM, "out of memory");
	if (lstat(p, &st) == 0)
		rc = add_raw(in, rel, S_ISREG(st.st_mode) ? SHB_RAW_FILE
			     : S_ISDIR(st.st_mode) ? SHB_RAW_DIR : SHB_RAW_OTHER, (uint64_t)st.st_size);
	else if (errno != ENOENT)
		rc = shb_fail_errno(SHB_EIO, "cannot read '%s'", p);
	free(p);
	return rc;
}

static int raw_from_dir(struct shb_input *in)
{
	char *apps = shb_aprintf("%s/apps", in->path);
	struct stat st;
	struct dirent *de;
	DIR *d = NULL;
	int rc;

	if (!apps)
		return shb_fail(SHB_ENOMEM, "out of memory");
	if ((rc = probe(in, "streamhub.db")) || (rc = probe(in, "secrets.json"))
	    || (rc = probe(in, "apps")) || lstat(apps, &st) || !S_ISDIR(st.st_mode))
		goto out;       /* an error, or no apps dir (the layout check judges a link) */
	if (!(d = opendir(apps))) {
		rc = shb_fail_errno(SHB_EIO, "cannot read '%s'", apps);
		goto out;
	}
	while (!rc && (errno = 0, de = readdir(d))) {
		char *rel;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!(rel = shb_aprintf("apps/%s", de->d_name)))
			rc = shb_fail(SHB_ENOMEM, "out of memory");
		else if (!(rc = probe(in, rel))) {
			free(rel);
			rel = shb_aprintf("apps/%s/app.db", de->d_name);
			rc = rel ? probe(in, rel) : shb_fail(SHB_ENOMEM, "out of memory");
		}
		free(rel);
	}
	if (!rc && errno)
		rc = shb_fail_errno(SHB_EIO, "cannot read '%s'", apps);
out:
	if (d)
		closedir(d);
	free(apps);
	return rc;
}

/* --- opening -------------------------------------------------------------- */

static int check_stream(const struct shb_input *in)
{
	struct shb_source *src = NULL;
	int rc = open_tar_source(in, &src);

	if (!rc)
		rc = shb_gzip_check(src);
	shb_source_close(src);
	return rc;
}

static int finish_open(struct shb_input *in, struct shb_input **out)
{
	int rc;

	if (in->kind == SHB_INPUT_INDEXED)
		rc = shb_layout_from_index(shb_reader_index(in->reader), &in->layout);
	else if (!(rc = in->kind == SHB_INPUT_TAR ? raw_from_tar(in) : raw_from_dir(in)))
		rc = shb_layout_build(in->raw, in->nraw, &in->layout);
	/*
	 * libarchive stops at the tar's end and may never read the gzip trailer,
	 * and integrity_check cannot see a flipped byte in a row: without an
	 * index's sha256, only the stream's CRC32 can tell damage apart.
	 */
	if (!rc && in->kind == SHB_INPUT_TAR)
		rc = check_stream(in);
	if (rc) {
		shb_input_close(in);
		return rc;
	}
	*out = in;
	return SHB_OK;
}

static struct shb_input *new_input(const char *name, const char *path)
{
	struct shb_input *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	pthread_mutex_init(&in->mu, NULL);
	in->name = strdup(name);
	in->path = path ? strdup(path) : NULL;
	if (!in->name || (path && !in->path)) {
		shb_input_close(in);
		return NULL;
	}
	return in;
}

/*
 * backup: a catalog backup's file, never reached through a symlink
 * (source.h), encrypted as its name says; else a file the operator named,
 * encrypted as its first bytes say.
 */
static int open_path(const char *path, int backup, int encrypted,
		     const struct shb_age_keys *ids, struct shb_input **out)
{
	struct shb_input *in = new_input(path, path);
	struct shb_source *src;
	struct stat st;
	int rc;

	if (!in)
		return shb_fail(SHB_ENOMEM, "out of memory");
	if ((backup ? lstat(path, &st) : stat(path, &st)) < 0) {
		rc = shb_fail_errno(errno == ENOENT ? SHB_ENOTFOUND : SHB_EIO, "cannot open '%s'", path);
		shb_input_close(in);
		return rc;
	}
	if (S_ISDIR(st.st_mode) && !backup) {
		in->kind = SHB_INPUT_DIR;
		return finish_open(in, out);
	}
	if ((rc = (backup ? shb_source_open_backup_file : shb_source_open_file)(path, &src))
	    || (rc = shb_repo_decrypt(src, backup ? encrypted : -1, ids, &src))) {
		shb_input_close(in);
		return rc;
	}
	in->backup = backup;
	in->encrypted = shb_age_source_is(src);
	in->ids = ids;
	rc = shb_reader_open(src, &in->reader);
	if (rc && rc != SHB_EFORMAT) {
		shb_input_close(in);
		return rc;
	}
	in->kind = rc ? SHB_INPUT_TAR : SHB_INPUT_INDEXED;
	return finish_open(in, out);
}

int shb_input_open_path(const char *path, const struct shb_age_keys *ids, struct shb_input **out)
{
	return open_path(path, 0, -1, ids, out);
}

int shb_input_open_backup_file(const struct shb_backup *b, const struct shb_age_keys *ids,
			       struct shb_input **out)
{
	return open_path(b->local_path, 1, b->encrypted, ids, out);
}

static int download(struct shb_repo *r, const struct shb_backup *b, const char *path)
{
	unsigned char *buf = malloc(CHUNK);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc = buf && fd >= 0 ? SHB_OK : shb_fail_errno(SHB_EIO, "cannot create '%s'", path);
	struct shb_source *src = NULL;
	uint64_t size = b->s3_size;
	struct statvfs v;

	/* The same bound as extraction's: never start what cannot fit. */
	if (!rc && fstatvfs(fd, &v) == 0 && (uint64_t)v.f_bavail * v.f_frsize < size)
		rc = shb_fail(SHB_EIO, "no room to download '%s' (%llu bytes): %llu bytes free",
			      b->s3_key, (unsigned long long)size,
			      (unsigned long long)v.f_bavail * v.f_frsize);
	if (!rc)
		rc = shb_repo_open_raw(r, b, SHB_COPY_S3, &src, NULL);
	for (uint64_t off = 0; !rc && off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;

		if (!(rc = shb_source_read(src, buf, n, off)))
			rc = shb_write_all(fd, buf, n, path);
	}
	shb_source_close(src);
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

int shb_input_open_s3(struct shb_repo *r, const struct shb_backup *b, const char *scratch_dir,
		      struct shb_input **out)
{
	struct shb_input *in;
	struct shb_source *src;
	int rc;

	if ((rc = shb_repo_open_source(r, b, SHB_COPY_S3, &src, NULL)))
		return rc;
	if (!(in = new_input(src->name, NULL))) {
		shb_source_close(src);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	rc = shb_reader_open(src, &in->reader);
	if (!rc && (rc = shb_age_source_check_head(src))) {
		shb_input_close(in);
		return rc;
	}
	if (!rc) {
		in->kind = SHB_INPUT_INDEXED;
		return finish_open(in, out);
	}
	/* An encrypted archive is downloaded as it is stored: no plaintext on disk. */
	in->encrypted = b->encrypted;
	in->ids = shb_repo_identities(r);
	in->path = rc == SHB_EFORMAT ? shb_aprintf("%s/%s", scratch_dir, b->name) : NULL;
	if (!in->path || (rc = download(r, b, in->path))) {
		shb_input_close(in);
		return rc ? rc : shb_fail(SHB_ENOMEM, "out of memory");
	}
	in->kind = SHB_INPUT_TAR;
	return finish_open(in, out);
}

const struct shb_layout *shb_input_layout(const struct shb_input *in)
{
	return &in->layout;
}

int shb_input_kind(const struct shb_input *in)
{
	return in->kind;
}

const char *shb_input_name(const struct shb_input *in)
{
	return in->name;
}

void shb_input_close(struct shb_input *in)
{
	if (!in)
		return;
	shb_layout_free(&in->layout);
	for (size_t i = 0; i < in->nraw; i++)
		free((char *)in->raw[i].path);
	free(in->raw);
	shb_reader_close(in->reader);
	free(in->name);
	free(in->path);
	pthread_mutex_destroy(&in->mu);
	free(in);
}

/* --- SQLite by fd path --------------------------------------------------------- */

/*
 * SQLite's unix VFS turns a name into a full path by resolving every
 * symlink in it, /proc/self/fd/<N> included, and then opens that path (and
 * the db's -journal, -wal, -shm beside it) by name: a directory swapped
 * for a link in between would redirect it.  This VFS is the unix one
 * except that a /proc/self/fd/ name is taken as it is, so the kernel
 * resolves it to the held directory at each open.
 */
static sqlite3_vfs fd_vfs;
static int (*unix_full_pathname)(sqlite3_vfs *, const char *, int, char *);

static int fd_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	size_t len = strlen(name);

	if (strncmp(name, "/proc/self/fd/", 14))
		return unix_full_pathname(vfs, name, n, out);
	if (len >= (size_t)n)
		return SQLITE_CANTOPEN;
	memcpy(out, name, len + 1);
	return SQLITE_OK;
}

static int fd_vfs_rc = SQLITE_ERROR;

static void fd_vfs_init(void)
{
	sqlite3_vfs *unix_vfs = sqlite3_vfs_find(NULL);

	if (!unix_vfs)
		return;
	fd_vfs = *unix_vfs;
	fd_vfs.zName = "shb-fd";
	fd_vfs.pNext = NULL;
	unix_full_pathname = unix_vfs->xFullPathname;
	fd_vfs.xFullPathname = fd_full_pathname;
	fd_vfs_rc = sqlite3_vfs_register(&fd_vfs, 1);
}

int shb_sqlite_fd_paths(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, fd_vfs_init);
	return fd_vfs_rc == SQLITE_OK ? SHB_OK
		: shb_fail(SHB_ESQLITE, "cannot register the SQLite VFS for fd paths");
}

/* --- secrets.json ------------------------------------------------------------ */

int shb_secrets_check(const void *p, size_t n, const char *rel)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int valid = 0;

	if (!n)
		return shb_fail(SHB_ECORRUPT, "'%s' is empty", rel);
	if (n > SHB_SECRETS_MAX)
		return shb_fail(SHB_ECORRUPT, "'%s' is larger than %u MiB", rel, SHB_SECRETS_MAX >> 20);
	/* SQLite's json_valid() judges; a NUL would end its text early. */
	if (!memchr(p, 0, n) && n <= INT32_MAX
	    && sqlite3_open(":memory:", &db) == SQLITE_OK
	    && sqlite3_prepare_v2(db, "SELECT json_valid(?1)", -1, &st, NULL) == SQLITE_OK
	    && sqlite3_bind_text(st, 1, p, (int)n, SQLITE_STATIC) == SQLITE_OK
	    && sqlite3_step(st) == SQLITE_ROW)
		valid = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return valid ? SHB_OK : shb_fail(SHB_ECORRUPT, "'%s' is not valid JSON", rel);
}

int shb_secrets_check_file(const char *path, const char *rel)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct shb_buf b = SHB_BUF_INIT;
	char buf[65536];
	ssize_t n = 0;
	int rc = fd < 0 ? shb_fail_errno(SHB_EIO, "cannot read '%s'", rel) : SHB_OK;

	while (!rc && b.len <= SHB_SECRETS_MAX && (n = read(fd, buf, sizeof(buf))) > 0)
		rc = shb_buf_add(&b, buf, (size_t)n);
	if (!rc && n < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot read '%s'", rel);
	if (!rc)
		rc = shb_secrets_check(b.data, b.len, rel);
	if (fd >= 0)
		close(fd);
	shb_buf_free(&b);
	return rc;
}
