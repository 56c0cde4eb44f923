/*
 * Writer and reader together: archives of files whose sizes straddle member
 * boundaries are read back at random offsets and lengths through the index
 * alone, counting the members inflated; damaged members must give an error,
 * never wrong bytes.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "check.h"
#include "error.h"
#include "reader.h"
#include "writer.h"

static const uint64_t sizes[] = { 0, 1, 511, 4096, SHB_BLOCK_SIZE, 3 * SHB_BLOCK_SIZE + 17,
				  5000000 };
#define NFILES (sizeof(sizes) / sizeof(sizes[0]))

static unsigned char *contents[NFILES];
static char dir[] = "/tmp/shb-test-archive-XXXXXX";

/* Half-compressible bytes, like a database page. */
static unsigned char *make_content(uint64_t n, unsigned seed)
{
	unsigned char *p = malloc(n + 1);

	srand(seed);
	for (uint64_t i = 0; i < n; i++)
		p[i] = (i / 64) % 2 ? (unsigned char)rand() : (unsigned char)('a' + i % 26);
	return p;
}

static void write_archive(const char *path, int threads)
{
	struct shb_archive_opts o = { .level = 6, .threads = threads };
	struct shb_archive_writer *w = NULL;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK_OK(shb_archive_begin(fd, path, &o, &w));
	CHECK_OK(shb_archive_add_dir(w, "top", 0700, 1700000000));
	for (size_t i = 0; i < NFILES; i++) {
		char name[64], src[600];
		int in;

		snprintf(src, sizeof(src), "%s/src%zu", dir, i);
		in = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(write(in, contents[i], sizes[i]) == (ssize_t)sizes[i]);
		close(in);
		in = open(src, O_RDONLY);
		snprintf(name, sizeof(name), "top/file%zu", i);
		CHECK_OK(shb_archive_add_file(w, name, in, sizes[i], 0600, 1700000000));
		close(in);
	}
	CHECK_OK(shb_archive_finish(w));
	shb_archive_free(w);
	close(fd);
}

static struct shb_reader *open_reader(const char *path)
{
	struct shb_source *src = NULL;
	struct shb_reader *r = NULL;

	CHECK_OK(shb_source_open_file(path, &src));
	if (src)
		CHECK_OK(shb_reader_open(src, &r));
	return r;
}

/* Members whose tar bytes intersect [start, end). */
static size_t covering(const struct shb_index *idx, uint64_t start, uint64_t end)
{
	size_t n = 0;

	for (size_t i = 0; i < idx->nmembers; i++)
		n += idx->members[i].uoff < end && idx->members[i].uoff + idx->members[i].ulen > start;
	return n;
}

static void test_random_reads(struct shb_reader *r)
{
	const struct shb_index *idx = shb_reader_index(r);
	unsigned char *buf = malloc(sizes[NFILES - 1] + 1);
	unsigned char sum[32];

	CHECK(idx->nentries == NFILES + 1);
	srand(42);
	for (size_t i = 0; i < NFILES; i++) {
		char name[64];
		const struct shb_entry *e;
		size_t got;

		snprintf(name, sizeof(name), "top/file%zu", i);
		e = shb_index_find(idx, name);
		CHECK(e && e->size == sizes[i]);
		if (!e)
			continue;
		/* Every entry's data starts a member: pages never straddle two. */
		CHECK(e->size == 0 || idx->members[shb_index_member_at(idx, e->offset)].uoff == e->offset);
		SHA256(contents[i], sizes[i], sum);
		CHECK(!memcmp(sum, e->sha256, 32));
		CHECK_OK(shb_reader_pread(r, e, buf, sizes[i] + 10, 0, &got));
		CHECK(got == sizes[i] && !memcmp(buf, contents[i], sizes[i]));
		for (int k = 0; k < 200 && sizes[i]; k++) {
			uint64_t off = (uint64_t)rand() % sizes[i];
			size_t len = 1 + (size_t)rand() % (k % 2 ? 4096 : 2 * SHB_BLOCK_SIZE);
			uint64_t before = shb_reader_inflated(r);
			size_t want = off + len > sizes[i] ? sizes[i] - off : len;

			CHECK_OK(shb_reader_pread(r, e, buf, len, off, &got));
			CHECK(got == want && !memcmp(buf, contents[i] + off, want));
			CHECK(shb_reader_inflated(r) - before
			      == covering(idx, e->offset + off, e->offset + off + want));
		}
		CHECK_OK(shb_reader_pread(r, e, buf, 10, sizes[i], &got));
		CHECK(got == 0);
	}
	free(buf);
}

static void test_damage(const char *path, struct shb_reader *r)
{
	const struct shb_index *idx = shb_reader_index(r);
	const struct shb_entry *e = shb_index_find(idx, "top/file6");
	size_t m = shb_index_member_at(idx, e->offset + 1000000), got;
	unsigned char *buf = malloc(e->size), byte;
	int fd = open(path, O_RDWR);
	uint64_t at = idx->members[m].coff + idx->members[m].clen / 2;

	CHECK(pread(fd, &byte, 1, (off_t)at) == 1);
	byte ^= 0x55;
	CHECK(pwrite(fd, &byte, 1, (off_t)at) == 1);
	close(fd);
	CHECK(shb_reader_pread(r, e, buf, 100, 1000000, &got) == SHB_ECORRUPT);
	CHECK(shb_reader_pread(r, e, buf, e->size, 0, &got) == SHB_ECORRUPT);
	/* Ranges in other members still read correctly. */
	CHECK_OK(shb_reader_pread(r, e, buf, 100, 0, &got));
	CHECK(got == 100 && !memcmp(buf, contents[6], 100));
	free(buf);
}

int main(void)
{
	char path[600];

	CHECK(mkdtemp(dir) != NULL);
	for (size_t i = 0; i < NFILES; i++)
		contents[i] = make_content(sizes[i], (unsigned)i);
	for (int threads = 1; threads <= 3; threads += 2) {
		struct shb_reader *r;

		snprintf(path, sizeof(path), "%s/a%d.tar.gz", dir, threads);
		write_archive(path, threads);
		r = open_reader(path);
		if (!r)
			break;
		test_random_reads(r);
		test_damage(path, r);
		shb_reader_close(r);
	}
	/* Not an archive of ours: a clean format error. */
	snprintf(path, sizeof(path), "%s/src6", dir);
	struct shb_source *src = NULL;
	struct shb_reader *r = NULL;
	CHECK_OK(shb_source_open_file(path, &src));
	CHECK(shb_reader_open(src, &r) == SHB_EFORMAT && r == NULL);
	for (size_t i = 0; i < NFILES; i++)
		free(contents[i]);
	shb_remove_tree(dir);
	return check_done("test_archive");
}
