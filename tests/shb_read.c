/*
 * shb-read: a test tool that prints bytes of one archive entry through the
 * reader, so integration tests can compare any range with the extracted
 * file.  Usage: shb-read ARCHIVE PATH OFFSET LENGTH.  The number of members
 * inflated and of bytes read from the file go to stderr.  With the archive
 * alone, it prints the index: one line per entry,
 * "type mode size offset sha256 path", then "members N".
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"
#include "reader.h"

static int dump_index(const char *path)
{
	struct shb_source *src;
	struct shb_reader *r;
	const struct shb_index *idx;

	if (shb_source_open_file(path, &src) || shb_reader_open(src, &r)) {
		fprintf(stderr, "error: %s\n", shb_errmsg());
		return 1;
	}
	idx = shb_reader_index(r);
	for (size_t i = 0; i < idx->nentries; i++) {
		const struct shb_entry *e = &idx->entries[i];

		printf("%s %o %llu %llu ", e->type == SHB_ENTRY_DIR ? "dir" : "file", e->mode,
		       (unsigned long long)e->size, (unsigned long long)e->offset);
		for (int k = 0; k < 32; k++)
			printf("%02x", e->sha256[k]);
		printf(" %s\n", e->path);
	}
	printf("members %zu\n", idx->nmembers);
	shb_reader_close(r);
	return 0;
}

int main(int argc, char **argv)
{
	struct shb_source *src;
	struct shb_reader *r;
	const struct shb_entry *e;
	unsigned long long off, len;
	unsigned char *buf;
	size_t got;
	int rc = 1;

	if (argc == 2)
		return dump_index(argv[1]);
	if (argc != 5) {
		fprintf(stderr, "usage: shb-read ARCHIVE [PATH OFFSET LENGTH]\n");
		return 2;
	}
	off = strtoull(argv[3], NULL, 10);
	len = strtoull(argv[4], NULL, 10);
	if (shb_source_open_file(argv[1], &src) || shb_reader_open(src, &r)) {
		fprintf(stderr, "error: %s\n", shb_errmsg());
		return 1;
	}
	e = shb_index_find(shb_reader_index(r), argv[2]);
	buf = malloc(len ? len : 1);
	if (!e || !buf)
		fprintf(stderr, "error: no entry '%s'\n", argv[2]);
	else if (shb_reader_pread(r, e, buf, len, off, &got))
		fprintf(stderr, "error: %s\n", shb_errmsg());
	else if (fwrite(buf, 1, got, stdout) == got)
		rc = 0;
	fprintf(stderr, "inflated=%llu fetched=%llu\n",
		(unsigned long long)shb_reader_inflated(r),
		(unsigned long long)shb_reader_source(r)->fetched);
	free(buf);
	shb_reader_close(r);
	return rc;
}
