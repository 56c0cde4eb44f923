/*
 * Sampled b-tree check (btree.h).  Page layout per SQLite's "Database File
 * Format" document: a 100-byte file header on page 1, then on every b-tree
 * page an 8-byte (leaf) or 12-byte (interior) page header, the cell pointer
 * array, and cells packed at the end of the usable area.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "btree.h"
#include "error.h"

#define MAX_DEPTH 40            /* SQLite's own b-trees stay far below this */

enum { INDEX_INTERIOR = 2, TABLE_INTERIOR = 5, INDEX_LEAF = 10, TABLE_LEAF = 13 };

struct walk {
	sqlite3_file *f;
	unsigned page_size, usable;
	uint32_t npages;
	unsigned char *page;            /* one page */
	uint32_t *kids;                 /* children of the last interior page read */
	unsigned char *seen;            /* a bit per page: read and checked */
	uint64_t rng;
	struct shb_btree_report *out;
};

static unsigned be16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* SQLite's varint at p, which must end before end: its length, or 0. */
static int varint(const unsigned char *p, const unsigned char *end, uint64_t *v)
{
	uint64_t x = 0;

	for (int i = 0; i < 9 && p + i < end; i++) {
		if (i == 8) {
			*v = x << 8 | p[i];
			return 9;
		}
		x = x << 7 | (p[i] & 0x7f);
		if (!(p[i] & 0x80)) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

static int bad(uint32_t pgno, const char *what)
{
	return shb_fail(SHB_ECORRUPT, "page %u: %s", pgno, what);
}

/* Bytes of a payload of size p kept on the page itself (the rest overflows). */
static uint64_t local_size(unsigned u, int table_leaf, uint64_t p)
{
	uint64_t x = table_leaf ? u - 35 : (u - 12) * 64 / 255 - 23;
	uint64_t m = (u - 12) * 32 / 255 - 23;
	uint64_t k = m + (p - m) % (u - 4);

	if (p <= x)
		return p;
	return k <= x ? k : m;
}

static int read_page(struct walk *w, uint32_t pgno)
{
	int rc = w->f->pMethods->xRead(w->f, w->page, (int)w->page_size,
				       (sqlite3_int64)(pgno - 1) * w->page_size);

	if (rc != SQLITE_OK)
		return shb_fail(SHB_EIO, "page %u: cannot read it: %s", pgno, sqlite3_errstr(rc));
	if (!(w->seen[pgno / 8] & 1u << pgno % 8)) {
		w->seen[pgno / 8] |= (unsigned char)(1u << pgno % 8);
		w->out->sampled++;
	}
	return SHB_OK;
}

static int page_in_file(const struct walk *w, uint64_t pgno)
{
	return pgno >= 2 && pgno <= w->npages;
}

/*
 * Checks the cell at c (the page's usable area ends at e) of a page of
 * type t: *child gets an interior cell's left child, *key a table cell's rowid.
 */
static int check_cell(const struct walk *w, uint32_t pgno, int t, const unsigned char *c,
		      const unsigned char *e, uint32_t *child, uint64_t *key)
{
	uint64_t payload = 0, local;
	int n;

	if (t == INDEX_INTERIOR || t == TABLE_INTERIOR) {
		if (e - c < 4)
			return bad(pgno, "a cell runs past the page");
		*child = be32(c);
		c += 4;
	}
	if (t != TABLE_INTERIOR) {
		if (!(n = varint(c, e, &payload)))
			return bad(pgno, "a cell runs past the page");
		c += n;
	}
	if (t == TABLE_INTERIOR || t == TABLE_LEAF) {
		if (!(n = varint(c, e, key)))
			return bad(pgno, "a cell runs past the page");
		c += n;
	}
	if (t == TABLE_INTERIOR)
		return SHB_OK;
	if (payload > (uint64_t)w->npages * w->usable)
		return bad(pgno, "a cell's payload is larger than the file");
	local = local_size(w->usable, t == TABLE_LEAF, payload);
	if (local + (local < payload ? 4 : 0) > (uint64_t)(e - c))
		return bad(pgno, "a cell's payload runs past the page");
	if (local < payload && !page_in_file(w, be32(c + local)))
		return bad(pgno, "an overflow page number is outside the file");
	return SHB_OK;
}

/* The freeblock chain starting at offset fb: ascending, apart, in the content area. */
static int check_freeblocks(const struct walk *w, uint32_t pgno, unsigned fb, unsigned content)
{
	unsigned prev_end = content;

	for (unsigned n = 0; fb; n++) {
		unsigned size;

		if (fb < prev_end || fb > w->usable - 4 || n > w->usable / 4)
			return bad(pgno, "the freeblock chain is out of order or out of bounds");
		size = be16(w->page + fb + 2);
		if (size < 4 || fb + size > w->usable)
			return bad(pgno, "a freeblock is out of bounds");
		prev_end = fb + size;
		fb = be16(w->page + fb);
	}
	return SHB_OK;
}

/*
 * Checks the b-tree page pgno, just read, whose tree is of family *family
 * (0 until the root sets it); an interior page's children go to w->kids and
 * their number to *nkids (0 for a leaf).
 */
static int check_page(struct walk *w, uint32_t pgno, int *family, unsigned *nkids)
{
	const unsigned char *h = w->page + (pgno == 1 ? 100 : 0), *e = w->page + w->usable;
	int t = h[0], interior = t == INDEX_INTERIOR || t == TABLE_INTERIOR, rc;
	unsigned ncell = be16(h + 3), content = be16(h + 5) ? be16(h + 5) : 65536;
	size_t array_end = (size_t)(h - w->page) + (interior ? 12 : 8) + 2 * (size_t)ncell;
	uint64_t key = 0, last = 0;

	if (!interior && t != INDEX_LEAF && t != TABLE_LEAF)
		return bad(pgno, "not a b-tree page");
	if (*family && (t & 7) != *family)
		return bad(pgno, "a table page inside an index or an index page inside a table");
	*family = t & 7;
	if (ncell > (w->usable - 8) / 6 || array_end > content || content > w->usable)
		return bad(pgno, "the cell count or cell content area is out of bounds");
	if (h[7] > 60)
		return bad(pgno, "more than 60 fragmented free bytes");
	if ((rc = check_freeblocks(w, pgno, be16(h + 1), content)))
		return rc;
	for (unsigned i = 0; i < ncell; i++) {
		unsigned off = be16(h + (interior ? 12 : 8) + 2 * i);

		if (off < content || off > w->usable - 4)
			return bad(pgno, "a cell pointer is out of bounds");
		if ((rc = check_cell(w, pgno, t, w->page + off, e, &w->kids[i], &key)))
			return rc;
		if ((t & 7) == 5 && i && (interior ? key < last : key <= last))
			return bad(pgno, "rowids out of order");
		last = key;
		if (interior && !page_in_file(w, w->kids[i]))
			return bad(pgno, "a child page number is outside the file");
	}
	*nkids = 0;
	if (interior) {
		w->kids[ncell] = be32(h + 8);
		if (!page_in_file(w, w->kids[ncell]))
			return bad(pgno, "the right child page number is outside the file");
		*nkids = ncell + 1;
	}
	return SHB_OK;
}

static uint64_t next_random(struct walk *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

/*
 * One path from pgno, a child of a checked root of family `family`, down to
 * a leaf: path 0 keeps left, 1 keeps right, the others choose at random.
 */
static int descend(struct walk *w, uint32_t pgno, int family, int path)
{
	unsigned nkids;
	int rc;

	for (int depth = 1; depth < MAX_DEPTH; depth++) {
		if ((rc = read_page(w, pgno)) || (rc = check_page(w, pgno, &family, &nkids)))
			return rc;
		if (!nkids)
			return SHB_OK;
		pgno = w->kids[path == 0 ? 0 : path == 1 ? nkids - 1 : next_random(w) % nkids];
	}
	return bad(pgno, "the b-tree is deeper than 40 levels (a loop?)");
}

/* The tree rooted at root: the root, then 2 + paths paths below it. */
static int check_tree(struct walk *w, uint32_t root, int paths)
{
	uint32_t *kids;
	unsigned nkids;
	int family = 0, rc;

	w->out->trees++;
	if ((rc = read_page(w, root)) || (rc = check_page(w, root, &family, &nkids)) || !nkids)
		return rc;
	/* Pages below overwrite w->kids: keep the root's. */
	if (!(kids = malloc(nkids * sizeof(*kids))))
		return shb_fail(SHB_ENOMEM, "out of memory");
	memcpy(kids, w->kids, nkids * sizeof(*kids));
	for (int p = 0; !rc && p < 2 + paths; p++) {
		unsigned k = p == 0 ? 0 : p == 1 ? nkids - 1 : next_random(w) % nkids;

		rc = descend(w, kids[k], family, p);
	}
	free(kids);
	return rc;
}

/* The file header against the file: sets page size, usable size and pages. */
static int check_header(struct walk *w)
{
	unsigned char h[100];
	sqlite3_int64 fsize;
	uint32_t claimed;

	if (w->f->pMethods->xFileSize(w->f, &fsize) != SQLITE_OK
	    || w->f->pMethods->xRead(w->f, h, 100, 0) != SQLITE_OK)
		return shb_fail(SHB_EIO, "cannot read the database header");
	w->page_size = be16(h + 16) == 1 ? 65536 : be16(h + 16);
	if (w->page_size < 512 || (w->page_size & (w->page_size - 1)) || h[20] > w->page_size - 480
	    || h[21] != 64 || h[22] != 32 || h[23] != 32)
		return bad(1, "the header's page size, reserved bytes or fractions are invalid");
	w->usable = w->page_size - h[20];
	claimed = be32(h + 24) == be32(h + 92) ? be32(h + 28) : 0;
	w->npages = claimed ? claimed : (uint32_t)(fsize / w->page_size);
	if (fsize % w->page_size || (uint64_t)fsize < (uint64_t)w->npages * w->page_size)
		return bad(1, "the file is not the size its header gives (truncated?)");
	if (be32(h + 32) > w->npages || be32(h + 36) >= w->npages)
		return bad(1, "the freelist is outside the file");
	w->out->pages = w->npages;
	return SHB_OK;
}

static int check_schema_trees(struct walk *w, sqlite3 *db, int paths)
{
	sqlite3_stmt *st = NULL;
	int rc = check_tree(w, 1, paths), step;

	if (rc)
		return shb_fail(rc, "schema: %s", shb_errmsg());
	if (sqlite3_prepare_v2(db, "SELECT name, rootpage FROM sqlite_master WHERE rootpage <> 0",
			       -1, &st, NULL) != SQLITE_OK)
		return shb_fail(SHB_ESQLITE, "cannot read the schema: %s", sqlite3_errmsg(db));
	while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		sqlite3_int64 root = sqlite3_column_int64(st, 1);

		if (!page_in_file(w, (uint64_t)root))
			rc = shb_fail(SHB_ECORRUPT, "'%s': root page %lld is outside the file",
				      name ? name : "?", (long long)root);
		else if ((rc = check_tree(w, (uint32_t)root, paths)))
			rc = shb_fail(rc, "'%s': %s", name ? name : "?", shb_errmsg());
	}
	if (!rc && step != SQLITE_DONE)
		rc = shb_fail(SHB_ESQLITE, "cannot read the schema: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc;
}

int shb_btree_sample(sqlite3 *db, int paths, struct shb_btree_report *out)
{
	struct walk w = { .out = out };
	int rc;

	memset(out, 0, sizeof(*out));
	w.rng = ((uint64_t)time(NULL) << 20 ^ (uint64_t)getpid()) | 1;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &w.f) != SQLITE_OK
	    || !w.f || !w.f->pMethods)
		return shb_fail(SHB_ESQLITE, "cannot reach the database file");
	if ((rc = check_header(&w)))
		return rc;
	w.page = malloc(w.page_size);
	w.kids = malloc(((w.usable - 8) / 6 + 1) * sizeof(*w.kids));
	w.seen = calloc(w.npages / 8 + 1, 1);
	rc = w.page && w.kids && w.seen ? check_schema_trees(&w, db, paths)
		: shb_fail(SHB_ENOMEM, "out of memory");
	free(w.page);
	free(w.kids);
	free(w.seen);
	return rc;
}
