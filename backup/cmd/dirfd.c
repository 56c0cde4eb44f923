/*
 * Directory work by fd for the commands (dirfd.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "dirfd.h"



int shb_dir_each(int dirfd, int (*fn)(void *ctx, const char *name), void *ctx)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0, err;
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;

	if (!d) {
		err = errno;
		if (fd >= 0)
			close(fd);
		errno = err;
		return -1;
	}
	while (!rc && (errno = 0, de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = fn(ctx, de->d_name);
	err = errno;
	closedir(d);
	if (!rc && err) {
		errno = err;
		return -1;
	}
	return rc;
}

int shb_is_debris(const char *name, const char *staging, const char *tmp)
{
	size_t n = strlen(name), s = strlen(SHB_TMP_SUFFIX);

	if (!strncmp(name, staging, strlen(staging)))
		return 1;
	return name[0] == '.' && !strncmp(name + 1, tmp, strlen(tmp))
	       && n > s && !strcmp(name + n - s, SHB_TMP_SUFFIX);
}

static int unlink_one(void *ctx, const char *name)
{
	unlinkat(*(const int *)ctx, name, 0);
	return 0;
}

void shb_empty_dir(int fd)
{
	shb_dir_each(fd, unlink_one, &fd);
}

int shb_same_at(int dirfd, const char *name, const struct stat *st)
{
	struct stat cur;

	return fstatat(dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0
	       && cur.st_dev == st->st_dev && cur.st_ino == st->st_ino;
}
