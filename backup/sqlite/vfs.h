/*
 * A read-only SQLite VFS over the archive reader, so a database inside a
 * backup opens in place: no extraction, no FUSE, and for S3 only the pages
 * SQLite reads are fetched.  The VFS registers itself on first use; a db
 * is opened with
 *
 *     shb_vfs_open(reader, entry, &db)
 *
 * which opens it immutable (no locks, no journal, no -wal).  Opens carry
 * their reader in their own URI, so any number may run at once, from any
 * thread.  Reads go in
 * whole members (256 KiB) through a small per-file cache, so SQLite's page
 * by page reads inflate each member once; a WAL-flagged header is served
 * in rollback mode.
 */
#ifndef SHB_VFS_H
#define SHB_VFS_H

#include <sqlite3.h>

#include "reader.h"

/*
 * Opens entry e of r as a read-only database in *db, to be closed with
 * sqlite3_close(); r and e must outlive it.  Its temporary tables and
 * sorts stay in memory (temp_store=MEMORY), so no plaintext of an
 * encrypted backup lands in a temp file.  SHB_ESQLITE with SQLite's
 * message on failure (*db is then NULL).
 */
int shb_vfs_open(struct shb_reader *r, const struct shb_entry *e, sqlite3 **db);

#endif
