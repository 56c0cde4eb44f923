/*
 * The local file and memory byte sources (the S3 one is s3/s3_source.c), and
 * the generic entry points that bound-check every read before it reaches a
 * concrete source.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "error.h"
#include "source.h"
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

static int file_version(struct shb_source *src, char *buf, size_t len, int *names_content)
{
	struct file_source *fs = (struct file_source *)src;
	struct stat st;

	if (fstat(fs->fd, &st) < 0)
		return shb_fail_errno(SHB_EIO, "cannot stat archive '%s'", src->name);
	if ((uint64_t)st.st_size != src->size)
		return shb_fail(SHB_EIO, "archive '%s' changed size while open", src->name);
	snprintf(buf, len, "ino %llu mtime %lld.%09ld", (unsigned long long)st.st_ino,
		 (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
	*names_content = 0;  /* inode and mtime survive an edit that puts mtime back */
	return SHB_OK;
}

static const struct shb_source_ops file_ops = { file_read, file_close, file_version, NULL, NULL };

static int open_file(const char *path, int flags, struct shb_source **out);

int shb_source_open_file(const char *path, struct shb_source **out)
{
	return open_file(path, 0, out);
}

int shb_source_open_backup_file(const char *path, struct shb_source **out)
{
	/* O_NONBLOCK: a fifo swapped in after the listing must not hang the open. */
	return open_file(path, O_NOFOLLOW | O_NONBLOCK, out);
}

static int open_file(const char *path, int flags, struct shb_source **out)
{
	struct file_source *fs = calloc(1, sizeof(*fs));
	struct stat st;

	if (!fs)
		return shb_fail(SHB_ENOMEM, "out of memory");
	fs->fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	if (fs->fd < 0) {
		int rc = errno == ENOENT ? SHB_ENOTFOUND : SHB_EIO;

		free(fs);
		if (errno == ELOOP && (flags & O_NOFOLLOW))
			return shb_fail(rc, "cannot open archive '%s': it is a symlink", path);
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

static const struct shb_source_ops mem_ops = { mem_read, mem_close, NULL, NULL, NULL };

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

int shb_source_identity(struct shb_source *src, unsigned char id[32])
{
	/* v2: the first identity; cache files keyed by path and size alone are never hit. */
	char version[256] = "", hex[65], *text;
	unsigned char tail_sum[32] = { 0 }, *tail;
	size_t tlen = src->size < SHB_IDENTITY_TAIL ? (size_t)src->size : SHB_IDENTITY_TAIL;
	int rc, have_tag = 0;

	if (src->ops->version) {
		if ((rc = src->ops->version(src, version, sizeof(version), &have_tag)))
			return rc;
	}
	/* An ETag names the content already: reading the tail would cost a GET. */
	if (!have_tag) {
		if (!(tail = malloc(tlen ? tlen : 1)))
			return shb_fail(SHB_ENOMEM, "out of memory");
		rc = shb_source_read(src, tail, tlen, src->size - tlen);
		if (!rc)
			SHA256(tail, tlen, tail_sum);
		free(tail);
		if (rc)
			return rc;
	}
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", tail_sum[i]);
	if (!(text = shb_aprintf("shb-source-id v2\n%s\n%llu\n%s\n%s", src->name,
				 (unsigned long long)src->size, version, hex)))
		return SHB_ENOMEM;
	SHA256((const unsigned char *)text, strlen(text), id);
	free(text);
	return SHB_OK;
}

int shb_source_tail_and_head(struct shb_source *src, void *tail_buf, size_t tail, void *head,
			     size_t cap, size_t *got)
{
	int rc;

	*got = 0;
	if (!src->ops->tail_and_head)
		return SHB_OK;
	if (tail > src->size)
		return shb_fail(SHB_EFORMAT, "'%s': a read of %zu bytes past its end", src->name,
				tail);
	rc = src->ops->tail_and_head(src, tail_buf, tail, head, cap, got);
	if (!rc)
		__atomic_add_fetch(&src->fetched, tail, __ATOMIC_RELAXED);
	return rc;
}

uint64_t shb_source_fetched(const struct shb_source *src)
{
	while (src->ops->under)
		src = src->ops->under(src);
	return __atomic_load_n(&src->fetched, __ATOMIC_RELAXED);
}

void shb_source_close(struct shb_source *src)
{
	if (!src)
		return;
	src->ops->close(src);
	free(src->name);
	free(src);
}
