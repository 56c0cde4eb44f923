/*
 * A sampled structural check of a SQLite database, for verify --quick.
 *
 * PRAGMA quick_check visits every page, so over S3 it costs the whole
 * archive.  This check reads the header, the schema and, in every b-tree
 * (tables and indexes, the schema's own included), the root page and a few
 * root-to-leaf paths: the leftmost, the rightmost and `paths` random ones.
 * Each page met is checked the way SQLite's page loader would: page type
 * consistent within its tree, cell count, cell content area, freeblock
 * chain, every cell pointer and cell inside the usable area, child and
 * overflow page numbers within the file, rowids in order.  The header must
 * agree with the file: page size, reserved bytes, fractions, database size
 * (a truncated file fails) and the freelist.
 *
 * It proves far less than integrity_check: damage on a page that is not
 * visited goes unseen.  It reads the database through its own VFS (the
 * archive VFS of vfs.h, or the default one), so the reads are cached and,
 * for S3, fetched as SQLite's would be.
 */
#ifndef SHB_BTREE_H
#define SHB_BTREE_H

#include <sqlite3.h>

struct shb_btree_report {
	long long pages;        /* pages in the database */
	long long trees;        /* b-trees checked, the schema's included */
	long long sampled;      /* distinct pages read and checked */
};

/*
 * Checks db (borrowed, opened read-only; the check reads its main schema
 * and file only, from the calling thread).  paths is the number of random
 * root-to-leaf paths per b-tree besides the leftmost and rightmost.
 * Returns SHB_OK, or SHB_ECORRUPT (or SHB_EIO, SHB_ESQLITE, SHB_ENOMEM)
 * with a message naming the b-tree and page; *out (the caller's) is zeroed
 * first and filled either way with what was done.
 */
int shb_btree_sample(sqlite3 *db, int paths, struct shb_btree_report *out);

#endif
