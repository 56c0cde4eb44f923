/*
 * The sampled b-tree check of verify --quick: a sound database made by
 * SQLite passes while reading a small share of its pages, and each kind of
 * damage on a page it always visits (roots, the leftmost path, the header)
 * is refused with the tree and page named.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "btree.h"
#include "check.h"
#include "error.h"

#define PAGE 4096

static char dir[] = "/tmp/shb-btree-XXXXXX", good[64], bad[64];

static int exec(sqlite3 *db, const char *sql)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
	return rc;
}

/* A table of 20,000 rows (some with overflow pages), an index, a small table. */
static int make_db(void)
{
	sqlite3 *db;
	int rc = sqlite3_open(good, &db);

	rc = rc ? rc : exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b BLOB);"
			    "CREATE INDEX t_a ON t(a); CREATE TABLE small(x);"
			    "INSERT INTO small VALUES (1), (2);"
			    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
			    "WHERE i < 20000) INSERT INTO t SELECT i, hex(randomblob(24)), "
			    "CASE WHEN i % 97 = 0 THEN zeroblob(9000) END FROM n;"
			    "VACUUM;");
	sqlite3_close(db);
	return rc;
}

static uint32_t root_of(const char *name)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	uint32_t root = 0;

	sqlite3_open_v2(good, &db, SQLITE_OPEN_READONLY, NULL);
	sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_master WHERE name = ?", -1, &st, NULL);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		root = (uint32_t)sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return root;
}

static int sample(const char *path, struct shb_btree_report *r)
{
	sqlite3 *db;
	int rc;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -1;
	rc = shb_btree_sample(db, 4, r);
	sqlite3_close(db);
	return rc;
}

static unsigned char *load(size_t *n)
{
	FILE *f = fopen(good, "rb");
	unsigned char *p = malloc(64u << 20);

	*n = f && p ? fread(p, 1, 64u << 20, f) : 0;
	if (f)
		fclose(f);
	return p;
}

static void save(const unsigned char *p, size_t n)
{
	FILE *f = fopen(bad, "wb");

	if (f) {
		fwrite(p, 1, n, f);
		fclose(f);
	}
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset in the file of the first cell of page pgno (not page 1). */
static size_t first_cell(const unsigned char *file, uint32_t pgno)
{
	const unsigned char *pg = file + (size_t)(pgno - 1) * PAGE;
	unsigned hsize = pg[0] == 2 || pg[0] == 5 ? 12 : 8;

	return (size_t)(pgno - 1) * PAGE + (pg[hsize] << 8 | pg[hsize + 1]);
}

/* Damage applied by f to a copy must be refused naming why (and where). */
static void refuses(void (*f)(unsigned char *, size_t *), const char *why)
{
	struct shb_btree_report r;
	size_t n;
	unsigned char *file = load(&n);

	f(file, &n);
	save(file, n);
	free(file);
	CHECK(sample(bad, &r) == SHB_ECORRUPT);
	CHECK(strstr(shb_errmsg(), why) != NULL);
	if (!strstr(shb_errmsg(), why))
		fprintf(stderr, "  expected '%s', got: %s\n", why, shb_errmsg());
}

static void truncate_page(unsigned char *p, size_t *n)
{
	(void)p;
	*n -= PAGE;
}

static void root_child_outside(unsigned char *p, size_t *n)
{
	(void)n;
	size_t c = first_cell(p, root_of("t"));

	p[c] = 0x7f;    /* left child 0x7f...: far past the end */
}

static void leftmost_leaf_cell_count(unsigned char *p, size_t *n)
{
	(void)n;
	uint32_t pg = root_of("t");

	while (p[(size_t)(pg - 1) * PAGE] == 5)
		pg = be32(p + first_cell(p, pg));
	p[(size_t)(pg - 1) * PAGE + 3] = 0xff;
}

static void index_root_type(unsigned char *p, size_t *n)
{
	(void)n;
	p[(size_t)(root_of("t_a") - 1) * PAGE] = 7;
}

static void header_page_size(unsigned char *p, size_t *n)
{
	(void)n;
	p[16] = 0x30;   /* 0x3000: not a power of two */
}

int main(void)
{
	struct shb_btree_report r;

	if (!mkdtemp(dir))
		return 1;
	snprintf(good, sizeof(good), "%s/good.db", dir);
	snprintf(bad, sizeof(bad), "%s/bad.db", dir);
	CHECK(make_db() == SQLITE_OK);

	CHECK_OK(sample(good, &r));
	CHECK(r.trees == 4 && r.pages > 1000);
	CHECK(r.sampled > r.trees && r.sampled * 20 < r.pages);

	refuses(truncate_page, "truncated");
	refuses(root_child_outside, "'t': page");
	refuses(root_child_outside, "child page number is outside the file");
	refuses(leftmost_leaf_cell_count, "cell count or cell content area is out of bounds");
	refuses(index_root_type, "'t_a': page");
	refuses(index_root_type, "not a b-tree page");
	refuses(header_page_size, "page size");

	unlink(good);
	unlink(bad);
	rmdir(dir);
	return check_done("test_btree");
}
