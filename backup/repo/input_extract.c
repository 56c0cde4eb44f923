/*
 * Backup inputs (input.h): extracting the wanted files into a directory,
 * by ranged reads for our archives, in one sequential pass for a plain
 * .tar.gz, by copying for a snapshot directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "entry_hash.h"
#include "error.h"
#include "input.h"
#include "input_impl.h"
#include "reader.h"
#include "snapshot.h"
#include "util.h"

/* --- extraction ----------------------------------------------------------- */

static void advance(struct shb_input *in, uint64_t n)
{
	pthread_mutex_lock(&in->mu);
	in->done += n;
	if (in->progress)
		in->progress(in->ctx, in->done, in->total);
	pthread_mutex_unlock(&in->mu);
}

/*
 * Creates the parent directories of rel (0700) under dirfd, one mkdirat at
 * a time: dirfd is a directory only we can write, so nothing on the way
 * can be swapped for a link.
 */
static int make_parents_at(int dirfd, const char *rel)
{
	char *copy = strdup(rel);
	int rc = copy ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");

	for (char *p = copy ? strchr(copy, '/') : NULL; !rc && p; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdirat(dirfd, copy, 0700) < 0 && errno != EEXIST)
			rc = shb_fail_errno(SHB_EIO, "cannot create directory '%s'", copy);
		*p = '/';
	}
	free(copy);
	return rc;
}

/*
 * The path SQLite and other by-name code use for rel under the directory
 * open at dirfd: through /proc/self/fd, so a rename of that directory, or
 * a link put in its place, cannot redirect it (see shb_sqlite_fd_paths()).
 */
static char *fd_path(int dirfd, const char *rel)
{
	return shb_aprintf("/proc/self/fd/%d/%s", dirfd, rel);
}

/* Creates <rel> (and its parents) under the extraction dir for writing, mode 0600. */
static int create_out(struct shb_input *in, const char *rel, int *fd)
{
	int rc = make_parents_at(in->dirfd, rel);

	if (rc)
		return rc;
	*fd = openat(in->dirfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return *fd < 0 ? shb_fail_errno(SHB_EIO, "cannot create '%s'", rel) : SHB_OK;
}

static int close_out(int fd, const char *path, int rc)
{
	if (!rc && fsync(fd) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync '%s'", path);
	if (close(fd) < 0 && !rc)
		rc = shb_fail_errno(SHB_EIO, "cannot write '%s'", path);
	return rc;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Whether f may be written where fd is: a secrets.json within
 * SHB_SECRETS_MAX, and every file within the filesystem's free space.
 */
static int fits(const struct shb_layout_file *f, int fd)
{
	struct statvfs v;

	if (f->kind == SHB_FILE_SECRETS && f->size > SHB_SECRETS_MAX)
		return shb_fail(SHB_EFORMAT, "refusing backup: '%s' is larger than %u MiB", f->rel,
				SHB_SECRETS_MAX >> 20);
	if (fstatvfs(fd, &v) == 0
	    && (uint64_t)v.f_bavail * v.f_frsize < f->size)
		return shb_fail(SHB_EIO, "no room for '%s' (%llu bytes) in the staging dir: %llu bytes "
				"free", f->rel, (unsigned long long)f->size,
				(unsigned long long)v.f_bavail * v.f_frsize);
	return SHB_OK;
}

/*
 * Judges a file by its first chunk (got bytes at b) before any of it is
 * written.  A db must start with SQLite's header and, where the header
 * knows its own size (page count valid for this change counter), be
 * exactly the size the archive claims; then the file must fit in the free
 * space of the staging filesystem.  A gzip bomb (gigabytes of zeros behind
 * a tar header) is so refused at its first chunk, not after filling the
 * disk.  SHB_EFORMAT for a lie in the backup, SHB_EIO for no room.
 */
static int first_chunk_ok(const struct shb_layout_file *f, int fd, const unsigned char *b,
			  size_t got)
{
	if (f->kind != SHB_FILE_SECRETS && f->size) {
		uint32_t page, pages;

		if (got < 100 || memcmp(b, "SQLite format 3", 16))
			return shb_fail(SHB_EFORMAT, "refusing backup: '%s' is not a SQLite database",
					f->rel);
		page = (uint32_t)b[16] << 8 | b[17];
		page = page == 1 ? 65536 : page;
		pages = be32(b + 28);
		if (pages && be32(b + 24) == be32(b + 92) && (uint64_t)pages * page != f->size)
			return shb_fail(SHB_EFORMAT, "refusing backup: '%s' is %llu bytes in the archive "
					"but its header says %llu", f->rel, (unsigned long long)f->size,
					(unsigned long long)pages * page);
	}
	return fits(f, fd);
}

/* Where extract_indexed() writes the pieces of one file. */
struct piece_out {
	struct shb_input *in;
	const struct shb_layout_file *f;
	int fd;
};

static int write_piece(void *ctx, const unsigned char *p, size_t len, uint64_t off)
{
	struct piece_out *o = ctx;
	int rc = off ? SHB_OK : first_chunk_ok(o->f, o->fd, p, len);

	if (!rc) {
		rc = shb_write_all(o->fd, p, len, o->f->rel);
		advance(o->in, len);
	}
	return rc;
}

/* One file of an indexed archive, streamed through the reader and hashed. */
static int extract_indexed(struct shb_input *in, const struct shb_layout_file *f)
{
	const struct shb_entry *e = &shb_reader_index(in->reader)->entries[f->raw];
	struct piece_out o = { .in = in, .f = f, .fd = -1 };
	unsigned char sum[32];
	int rc;

	if ((rc = create_out(in, f->rel, &o.fd)))
		return rc;
	rc = shb_entry_hash_read(in->reader, e, CHUNK, write_piece, &o, sum);
	if (!rc && memcmp(sum, e->sha256, 32))
		rc = shb_fail(SHB_ECORRUPT, "'%s' does not match its sha256 in the index", f->rel);
	return close_out(o.fd, f->rel, rc);
}

/* One file of a snapshot dir: dbs through SQLite, secrets byte for byte. */
static int extract_dir(struct shb_input *in, const struct shb_layout_file *f)
{
	char *src = shb_aprintf("%s/%s", in->path, f->rel), *dst = fd_path(in->dirfd, f->rel);
	int rc = src && dst ? make_parents_at(in->dirfd, f->rel) : SHB_ENOMEM;

	/* The bounds of first_chunk_ok(); SQLite checks the db itself as it copies. */
	if (!rc)
		rc = fits(f, in->dirfd);
	if (!rc && f->kind == SHB_FILE_SECRETS)
		rc = shb_copy_file(src, dst);
	else if (!rc && (rc = shb_snapshot_db(src, dst)))
		rc = shb_fail(rc, "cannot read '%s': %s", f->rel, shb_errmsg());
	else if (!rc)
		rc = shb_fsync_path(dst);
	advance(in, f->size);
	free(src);
	free(dst);
	return rc;
}

static int extract_one(void *ctx, size_t i)
{
	struct shb_input *in = ctx;

	return in->want[i] ? shb_input_extract_file(in, i) : SHB_OK;
}

int shb_input_extract_file(struct shb_input *in, size_t i)
{
	const struct shb_layout_file *f = &in->layout.files[i];

	return in->kind == SHB_INPUT_INDEXED ? extract_indexed(in, f) : extract_dir(in, f);
}

/* The layout file that came from raw entry r, if wanted. */
static const struct shb_layout_file *wanted_from_raw(struct shb_input *in, size_t r)
{
	for (size_t i = 0; i < in->layout.n; i++)
		if (in->layout.files[i].raw == r)
			return in->want[i] ? &in->layout.files[i] : NULL;
	return NULL;
}

static int tar_data(struct shb_input *in, struct archive *a, const struct shb_layout_file *f)
{
	unsigned char *buf = malloc(CHUNK);
	const char *path = f->rel;
	int fd = -1, rc = buf ? create_out(in, f->rel, &fd) : SHB_ENOMEM;
	la_ssize_t n = 0;
	uint64_t got = 0;

	while (!rc && (n = archive_read_data(a, buf, CHUNK)) > 0) {
		if (got + (uint64_t)n > f->size)
			break;  /* more than the header said: stop here */
		if (!got && (rc = first_chunk_ok(f, fd, buf, (size_t)n)))
			break;
		rc = shb_write_all(fd, buf, (size_t)n, path);
		got += (uint64_t)n;
		advance(in, (uint64_t)n);
	}
	if (!rc && (n < 0 || got != f->size))
		rc = shb_fail(SHB_EFORMAT, "cannot extract '%s': %s", f->rel,
			      n < 0 ? archive_error_string(a) : "size differs from its header");
	if (fd >= 0)
		rc = close_out(fd, path, rc);
	free(buf);
	return rc;
}

/* The second pass over a plain tar.gz; headers must match the first. */
static int extract_tar(struct shb_input *in)
{
	locale_t loc = shb_utf8_names_begin();
	struct archive *a = NULL;
	struct archive_entry *ae;
	size_t r = 0;
	int rc = shb_input_open_tar(in, &a), st = ARCHIVE_OK;

	if (rc) {
		shb_utf8_names_end(loc);
		return rc;
	}
	while (!rc && (st = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
		const char *p = shb_input_entry_name(ae);
		const struct shb_layout_file *f;

		if (r >= in->nraw || strcmp(p, in->raw[r].path) || shb_input_raw_type(ae) != in->raw[r].type) {
			rc = shb_fail(SHB_EFORMAT, "archive '%s' changed while being read", in->path);
			break;
		}
		if ((f = wanted_from_raw(in, r)))
			rc = tar_data(in, a, f);
		r++;
	}
	if (!rc && st != ARCHIVE_EOF)
		rc = shb_fail(SHB_EFORMAT, "cannot read archive '%s': %s", in->path,
			      archive_error_string(a));
	archive_read_free(a);
	shb_utf8_names_end(loc);
	return rc;
}

void shb_input_begin(struct shb_input *in, int dirfd, const unsigned char *want,
		     shb_input_progress_fn progress, void *ctx)
{
	in->dirfd = dirfd;
	in->want = want;
	in->progress = progress;
	in->ctx = ctx;
	in->done = in->total = 0;
	for (size_t i = 0; i < in->layout.n; i++)
		in->total += want[i] ? in->layout.files[i].size : 0;
}

int shb_input_extract(struct shb_input *in, int threads)
{
	if (in->kind == SHB_INPUT_TAR)
		return extract_tar(in);
	return shb_parallel(in->layout.n, threads, extract_one, in);
}
