/*
 * Unit tests of the disk cache and the caching source (cache.h) over a
 * counting source in memory: a read is fetched once and then served from
 * the cache (also after a reopen), a hole between cached pieces is one
 * inner read, the cap holds with least recently used pieces evicted, a
 * damaged or short cache file is a miss (right bytes, fetched again), a
 * new identity misses, named blobs round-trip, a private cache's directory
 * goes at close and cap 0 disables the cache.  Also the memory cache of
 * pieces (pieces.h): LRU within its byte cap.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "check.h"
#include "error.h"
#include "pieces.h"
#include "source.h"
#include "util.h"

#define SIZE (4u << 20)

struct counting {
	struct shb_source base;
	const unsigned char *data;
	const char *etag;
	const char *head;   /* what tail_and_head tells, NULL: nothing */
	unsigned reads;
	uint64_t bytes;
};

static int counting_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	struct counting *c = (struct counting *)src;

	c->reads++;
	c->bytes += len;
	memcpy(buf, c->data + off, len);
	return SHB_OK;
}

static void counting_close(struct shb_source *src)
{
	(void)src;
}

static int counting_version(struct shb_source *src, char *buf, size_t len, int *names_content)
{
	snprintf(buf, len, "etag %s", ((struct counting *)src)->etag);
	*names_content = 1;  /* like an S3 ETag: the identity costs no read */
	return SHB_OK;
}

/* Like an S3 object whose metadata holds c->head. */
static int counting_tail_and_head(struct shb_source *src, void *tail_buf, size_t tail,
				  void *head, size_t cap, size_t *got)
{
	struct counting *c = (struct counting *)src;

	counting_read(src, tail_buf, tail, src->size - tail);
	*got = c->head && strlen(c->head) <= cap ? strlen(c->head) : 0;
	memcpy(head, c->head ? c->head : "", *got);
	return SHB_OK;
}

static const struct shb_source_ops counting_ops = {
	counting_read, counting_close, counting_version, NULL, counting_tail_and_head
};

/* A counting source over data (the test keeps *c to read its counters). */
static struct counting *counting_new(const unsigned char *data, const char *etag)
{
	struct counting *c = calloc(1, sizeof(*c));

	c->base.ops = &counting_ops;
	c->base.size = SIZE;
	c->base.name = strdup("s3://bucket/archive");
	c->data = data;
	c->etag = etag;
	return c;
}

static struct shb_source *wrap(struct counting *inner, struct shb_cache *c)
{
	struct shb_source *s = NULL;

	CHECK_OK(shb_source_cached(&inner->base, c, &s));
	return s;
}

/* Reads [off, off + len) through s and checks the bytes. */
static void read_ok(struct shb_source *s, const unsigned char *data, uint64_t off, size_t len)
{
	unsigned char *buf = malloc(len);

	CHECK_OK(shb_source_read(s, buf, len, off));
	CHECK(memcmp(buf, data + off, len) == 0);
	free(buf);
}

/* Writes text to dir/name; 1 on success. */
static int write_text(const char *dir, const char *name, const char *text)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "w")))
		return 0;
	fputs(text, f);
	return fclose(f) == 0;
}

/* Files in dir whose name starts with prefix; their total size in *bytes. */
static size_t count_files(const char *dir, const char *prefix, uint64_t *bytes, char *first,
			  size_t first_len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	if (bytes)
		*bytes = 0;
	while (d && (de = readdir(d))) {
		char path[4096];
		struct stat st;

		if (strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && bytes)
			*bytes += (uint64_t)st.st_size;
		if (!n++ && first)
			snprintf(first, first_len, "%s", path);
	}
	if (d)
		closedir(d);
	return n;
}

static void test_hits_holes_and_reopen(const char *dir, const unsigned char *data)
{
	struct shb_cache *c;
	struct counting *in = counting_new(data, "\"a\"");
	struct shb_source *s;

	CHECK_OK(shb_cache_open(dir, 256u << 20, &c));
	s = wrap(in, c);
	read_ok(s, data, 1000, 4000);
	CHECK(in->reads == 1 && in->bytes == 4000);
	read_ok(s, data, 1000, 4000);
	read_ok(s, data, 2000, 100);
	CHECK(in->reads == 1);
	/* Two holes around the cached piece: one inner read each, exactly them. */
	read_ok(s, data, 0, 10000);
	CHECK(in->reads == 3 && in->bytes == 4000 + 1000 + 5000);
	/* A long run is one inner read, stored in pieces. */
	read_ok(s, data, 10000, 1u << 20);
	CHECK(in->reads == 4);
	CHECK(count_files(dir, "m-", NULL, NULL, 0) >= 4 + 3);
	read_ok(s, data, 0, 10000 + (1u << 20));
	CHECK(in->reads == 4);
	CHECK(shb_source_fetched(s) == in->bytes);
	shb_source_close(s);
	shb_cache_close(c);

	/* A new run finds what the last one cached; another ETag does not. */
	CHECK_OK(shb_cache_open(dir, 256u << 20, &c));
	in = counting_new(data, "\"a\"");
	s = wrap(in, c);
	read_ok(s, data, 500, 200000);
	CHECK(in->reads == 0);
	shb_source_close(s);
	in = counting_new(data, "\"b\"");
	s = wrap(in, c);
	read_ok(s, data, 500, 200000);
	CHECK(in->reads == 1);
	shb_source_close(s);
	shb_cache_close(c);
}

static void test_damage_is_a_miss(const char *dir, const unsigned char *data)
{
	struct shb_cache *c;
	struct counting *in = counting_new(data, "\"damage\"");
	struct shb_source *s;
	char path[4096];
	FILE *f;

	CHECK_OK(shb_cache_open(dir, 256u << 20, &c));
	s = wrap(in, c);
	read_ok(s, data, 3u << 20, 100000);
	CHECK(count_files(dir, "m-", NULL, path, sizeof(path)) >= 1);
	shb_source_close(s);
	shb_cache_close(c);
	/* Every piece of this run is one file: flip a byte in the middle. */
	f = fopen(path, "r+b");
	CHECK(f != NULL);
	if (f) {
		int ch;

		fseek(f, 50000, SEEK_SET);
		ch = fgetc(f);
		fseek(f, 50000, SEEK_SET);
		fputc(0x5a ^ ch, f);
		fclose(f);
	}
	CHECK_OK(shb_cache_open(dir, 256u << 20, &c));
	in = counting_new(data, "\"damage\"");
	s = wrap(in, c);
	/* Only this run's piece is damaged: a read of it is right, fetched again. */
	read_ok(s, data, 3u << 20, 100000);
	CHECK(in->reads >= 1);
	shb_source_close(s);
	shb_cache_close(c);
}

static void test_cap_evicts_oldest(const char *dir, const unsigned char *data)
{
	uint64_t cap = 1u << 20, bytes;
	struct shb_cache *c;
	struct counting *in = counting_new(data, "\"cap\"");
	struct shb_source *s;

	CHECK_OK(shb_cache_open(dir, cap, &c));
	s = wrap(in, c);
	/* Files that are not the cache's own (a backup, the user's) are never evicted. */
	CHECK(write_text(dir, "streamhub-backup-20260101T000000Z.tar.gz", "keep")
	      && write_text(dir, "m-notours", "keep") && write_text(dir, "notes", "keep"));
	for (uint64_t off = 0; off < SIZE; off += 128u << 10)
		read_ok(s, data, off, 128u << 10);
	CHECK(in->reads == SIZE / (128u << 10));
	count_files(dir, "", &bytes, NULL, 0);
	CHECK(bytes <= cap);
	read_ok(s, data, SIZE - (128u << 10), 128u << 10);  /* the newest: kept */
	CHECK(in->reads == SIZE / (128u << 10));
	read_ok(s, data, 0, 128u << 10);  /* the oldest: evicted */
	CHECK(in->reads == SIZE / (128u << 10) + 1);
	shb_source_close(s);
	shb_cache_close(c);
	CHECK_OK(shb_cache_open(dir, 1, &c));  /* a scan at a tiny cap evicts all of its own */
	shb_cache_close(c);
	CHECK(count_files(dir, "streamhub-backup-", NULL, NULL, 0) == 1);
	CHECK(count_files(dir, "m-notours", NULL, NULL, 0) == 1);
	CHECK(count_files(dir, "notes", NULL, NULL, 0) == 1);
}

/*
 * A dir another user owns, or one others may write to (/tmp), is refused,
 * and left as it was: what is in it is not ours to trust.
 */
static void test_foreign_dir_refused(const char *dir, const char *shared)
{
	struct shb_cache *c = NULL;
	struct stat st;

	CHECK(mkdir(dir, 0700) == 0 && chown(dir, 65534, 65534) == 0);
	if (geteuid() == 0)
		CHECK(shb_cache_open(dir, 1u << 20, &c) == SHB_EIO && !c);
	CHECK(mkdir(shared, 0700) == 0 && chmod(shared, 01777) == 0);
	CHECK(shb_cache_open(shared, 1u << 20, &c) == SHB_EIO && !c);
	CHECK(stat(shared, &st) == 0 && (st.st_mode & 07777) == 01777);
}

/* A private cache that a killed run left behind is removed by the next one. */
static void test_stale_private_swept(const char *tmp)
{
	struct shb_cache *c;
	char stale[4200], live[4200];

	setenv("TMPDIR", tmp, 1);
	/* pid 2^22 + 1 is above any pid_max: that run is gone. */
	snprintf(stale, sizeof(stale), "%s/shb-cache-4194305-abcdef", tmp);
	snprintf(live, sizeof(live), "%s/shb-cache-1-abcdef", tmp);  /* init: alive */
	CHECK(mkdir(stale, 0700) == 0 && write_text(stale, "m-00-0-1", "x") && mkdir(live, 0700) == 0);
	CHECK_OK(shb_cache_open(NULL, 8u << 20, &c));
	CHECK(access(stale, F_OK) != 0 && access(live, F_OK) == 0);
	shb_cache_close(c);
	rmdir(live);
}

static void test_blobs(const char *dir)
{
	struct shb_cache *c;
	unsigned char *buf;
	size_t len;

	CHECK_OK(shb_cache_open(dir, 64u << 20, &c));
	CHECK(shb_cache_get_blob(c, "idx-0a", &buf, &len) == -1 && !shb_cache_has_blob(c, "idx-0a"));
	shb_cache_put_blob(c, "idx-0a", "hello", 5);
	CHECK(shb_cache_has_blob(c, "idx-0a"));
	CHECK(shb_cache_get_blob(c, "idx-0a", &buf, &len) == 0 && len == 5 && !memcmp(buf, "hello", 5));
	free(buf);
	shb_cache_put_blob(c, "idx-0a", "bye", 3);
	CHECK(shb_cache_get_blob(c, "idx-0a", &buf, &len) == 0 && len == 3 && !memcmp(buf, "bye", 3));
	free(buf);
	shb_cache_put_blob(c, "../escape", "no", 2);
	CHECK(!shb_cache_has_blob(c, "../escape"));
	shb_cache_drop(c, "idx-0a");
	CHECK(shb_cache_get_blob(c, "idx-0a", &buf, &len) == -1);
	shb_cache_close(c);
}

static void test_private_and_disabled(const char *tmp, const unsigned char *data)
{
	struct shb_cache *c;
	struct counting *in;
	struct shb_source *s;

	setenv("TMPDIR", tmp, 1);
	CHECK_OK(shb_cache_open(NULL, 8u << 20, &c));
	CHECK(count_files(tmp, "shb-cache-", NULL, NULL, 0) == 1);
	in = counting_new(data, "\"p\"");
	s = wrap(in, c);
	read_ok(s, data, 0, 300000);
	read_ok(s, data, 0, 300000);
	CHECK(in->reads == 1);
	shb_source_close(s);
	shb_cache_close(c);
	CHECK(count_files(tmp, "shb-cache-", NULL, NULL, 0) == 0);

	CHECK_OK(shb_cache_open(NULL, 0, &c));
	CHECK(count_files(tmp, "shb-cache-", NULL, NULL, 0) == 0);
	in = counting_new(data, "\"p\"");
	CHECK(wrap(in, c) == &in->base);  /* disabled: the inner source itself */
	shb_source_close(&in->base);
	shb_cache_close(c);
}

static void test_memory_pieces(void)
{
	struct shb_pieces *p;
	unsigned char a[1000], b[100];

	memset(a, 'a', sizeof(a));
	CHECK_OK(shb_pieces_new(2500, &p));
	shb_pieces_put(p, 1, 0, a, 1000);
	shb_pieces_put(p, 1, 1, a, 1000);
	CHECK(shb_pieces_read(p, 1, 0, 10, 100, b) == 0 && b[0] == 'a');  /* 0 is now newest */
	shb_pieces_put(p, 2, 0, a, 1000);  /* over the cap: evicts (1, 1) */
	CHECK(shb_pieces_has(p, 1, 0, 0) && !shb_pieces_has(p, 1, 1, 0) && shb_pieces_has(p, 2, 0, 0));
	CHECK(shb_pieces_read(p, 2, 0, 950, 100, b) == -1);  /* past the piece's end */
	shb_pieces_free(p);
}

/*
 * The tail and the head it told come from the inner source once; a later
 * run gets both from the cache, also when it told no head.
 */
static void test_tail_and_head(const char *dir, const unsigned char *data)
{
	const char *heads[] = { "age head", NULL };
	unsigned char tail[5000], head[64];
	struct shb_cache *c;
	struct counting *in;
	struct shb_source *s;
	size_t got;

	CHECK_OK(shb_cache_open(dir, 256u << 20, &c));
	for (int i = 0; i < 2; i++) {
		for (int run = 0; run < 2; run++) {
			char etag[16];

			snprintf(etag, sizeof(etag), "\"h%d\"", i);
			in = counting_new(data, etag);
			in->head = heads[i];
			s = wrap(in, c);
			CHECK_OK(shb_source_tail_and_head(s, tail, sizeof(tail), head, sizeof(head),
							  &got));
			CHECK(memcmp(tail, data + SIZE - sizeof(tail), sizeof(tail)) == 0);
			CHECK(got == (heads[i] ? strlen(heads[i]) : 0));
			CHECK(!got || memcmp(head, heads[i], got) == 0);
			CHECK(in->reads == (run ? 0u : 1u));
			read_ok(s, data, SIZE - 100, 100);  /* the tail is cached */
			CHECK(in->reads == (run ? 0u : 1u));
			shb_source_close(s);
		}
	}
	shb_cache_close(c);
}

int main(void)
{
	char tmp[] = "/tmp/shb-test-cache-XXXXXX", dir[4200], shared[4200];
	unsigned char *data = malloc(SIZE);

	if (!data || !mkdtemp(tmp))
		return 1;
	for (size_t i = 0; i < SIZE; i++)
		data[i] = (unsigned char)(i * 2654435761u >> 13);
	snprintf(dir, sizeof(dir), "%s/c1", tmp);
	test_hits_holes_and_reopen(dir, data);
	snprintf(dir, sizeof(dir), "%s/c2", tmp);
	test_damage_is_a_miss(dir, data);
	snprintf(dir, sizeof(dir), "%s/c3", tmp);
	test_cap_evicts_oldest(dir, data);
	snprintf(dir, sizeof(dir), "%s/c4", tmp);
	test_blobs(dir);
	test_private_and_disabled(tmp, data);
	snprintf(dir, sizeof(dir), "%s/c5", tmp);
	snprintf(shared, sizeof(shared), "%s/c6", tmp);
	test_foreign_dir_refused(dir, shared);
	test_stale_private_swept(tmp);
	test_memory_pieces();
	snprintf(dir, sizeof(dir), "%s/c7", tmp);
	test_tail_and_head(dir, data);
	shb_remove_tree(tmp);
	free(data);
	return check_done("test_cache");
}
