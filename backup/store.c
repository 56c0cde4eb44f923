/*
 * The local file and S3 object byte sources, and the generic entry points
 * that bound-check every read before it reaches a concrete source.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "s3.h"
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

struct mem_source {
	struct shb_source base;
	const unsigned char *data;
};

static int mem_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	memcpy(buf, ((struct mem_source *)src)->data + off, len);
	return SHB_OK;
}

static void mem_close(struct shb_source *src)
{
	(void)src;
}

static const struct shb_source_ops mem_ops = { mem_read, mem_close };

int shb_source_open_mem(const void *data, uint64_t len, const char *name,
			struct shb_source **out)
{
	struct mem_source *ms = calloc(1, sizeof(*ms));

	if (!ms || !(ms->base.name = strdup(name))) {
		free(ms);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	ms->base.ops = &mem_ops;
	ms->base.size = len;
	ms->data = data;
	*out = &ms->base;
	return SHB_OK;
}

struct s3_source {
	struct shb_source base;
	struct shb_s3 *s3;
	char *key;
};

static int s3_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	struct s3_source *ss = (struct s3_source *)src;

	return shb_s3_get(ss->s3, ss->key, off, len, buf);
}

static void s3_close(struct shb_source *src)
{
	free(((struct s3_source *)src)->key);
}

static const struct shb_source_ops s3_ops = { s3_read, s3_close };

int shb_source_open_s3(struct shb_s3 *s3, const char *key, uint64_t size,
		       struct shb_source **out)
{
	struct s3_source *ss = calloc(1, sizeof(*ss));
	char url[1024];

	if (!ss)
		return shb_fail(SHB_ENOMEM, "out of memory");
	shb_s3_url(s3, key, url, sizeof(url));
	ss->base.ops = &s3_ops;
	ss->base.size = size;
	ss->s3 = s3;
	ss->key = strdup(key);
	ss->base.name = strdup(url);
	if (!ss->key || !ss->base.name) {
		free(ss->key);
		free(ss->base.name);
		free(ss);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	*out = &ss->base;
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
