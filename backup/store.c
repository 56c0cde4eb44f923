/*
 * The local file byte source, and the generic entry points that bound-check
 * every read before it reaches a concrete source.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "store.h"
#include "util.h"

struct file_source {
	struct shb_source base;
	int fd;
};

static int file_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	struct file_source *fs = (struct file_source *)src;

	return shb_pread_all(fs->fd, buf, len, off, src->name);
}

static void file_close(struct shb_source *src)
{
	struct file_source *fs = (struct file_source *)src;

	close(fs->fd);
}

static const struct shb_source_ops file_ops = { file_read, file_close };

int shb_source_open_file(const char *path, struct shb_source **out)
{
	struct file_source *fs = calloc(1, sizeof(*fs));
	struct stat st;

	if (!fs)
		return shb_fail(SHB_ENOMEM, "out of memory");
	fs->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fs->fd < 0) {
		int rc = errno == ENOENT ? SHB_ENOTFOUND : SHB_EIO;

		free(fs);
		return shb_fail_errno(rc, "cannot open archive '%s'", path);
	}
	if (fstat(fs->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fs->fd);
		free(fs);
		return shb_fail(SHB_EIO, "cannot open archive '%s': not a regular file", path);
	}
	fs->base.ops = &file_ops;
	fs->base.size = (uint64_t)st.st_size;
	fs->base.name = strdup(path);
	if (!fs->base.name) {
		file_close(&fs->base);
		free(fs);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	*out = &fs->base;
	return SHB_OK;
}

int shb_source_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	int rc;

	if (off > src->size || len > src->size - off)
		return shb_fail(SHB_EFORMAT, "read past the end of '%s'", src->name);
	rc = src->ops->read(src, buf, len, off);
	if (!rc)
		__atomic_add_fetch(&src->fetched, len, __ATOMIC_RELAXED);
	return rc;
}

void shb_source_close(struct shb_source *src)
{
	if (!src)
		return;
	src->ops->close(src);
	free(src->name);
	free(src);
}
