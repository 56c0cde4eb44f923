/*
 * shb-pack: a test tool that packs arbitrary files into our archive format
 * with the real writer, so tests can build backups no `shbackup create`
 * would make (a WAL-mode db, odd layouts).
 *
 *   shb-pack OUT.tar.gz PATH=FILE...     (PATH is the entry's path in the tar)
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "writer.h"

int main(int argc, char **argv)
{
	struct shb_archive_opts o = { .level = 6, .threads = 2 };
	struct shb_archive_writer *w = NULL;
	int out, rc = SHB_OK;

	if (argc < 3) {
		fprintf(stderr, "usage: shb-pack OUT.tar.gz PATH=FILE...\n");
		return 2;
	}
	out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (out < 0 || (rc = shb_archive_begin(out, argv[1], &o, &w)))
		goto out;
	for (int i = 2; i < argc && !rc; i++) {
		char *eq = strchr(argv[i], '=');
		struct stat st;
		int fd;

		if (!eq) {
			rc = shb_fail(SHB_EINVAL, "expected PATH=FILE, got '%s'", argv[i]);
			break;
		}
		*eq = '\0';
		if ((fd = open(eq + 1, O_RDONLY)) < 0 || fstat(fd, &st) < 0) {
			rc = shb_fail_errno(SHB_EIO, "cannot open '%s'", eq + 1);
			break;
		}
		rc = S_ISDIR(st.st_mode) ? shb_archive_add_dir(w, argv[i], 0700, time(NULL))
			: shb_archive_add_file(w, argv[i], fd, (uint64_t)st.st_size, 0600, time(NULL));
		close(fd);
	}
	if (!rc)
		rc = shb_archive_finish(w);
out:
	shb_archive_free(w);
	if (out >= 0)
		close(out);
	if (rc || out < 0)
		fprintf(stderr, "error: %s\n", out < 0 ? "cannot create output" : shb_errmsg());
	return rc || out < 0 ? 1 : 0;
}
