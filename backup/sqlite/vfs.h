/*
 * A read-only SQLite VFS over the archive reader, so a database inside a
 * backup opens in place: no extraction, no FUSE, and for S3 only the pages
 * SQLite reads are fetched.  Register once; then open a db with
 *
 *     shb_vfs_open(reader, entry, &db)
 *
 * which opens it immutable (no locks, no journal, no -wal).  Reads go in
 * whole members (256 KiB) through a small per-file cache, so SQLite's page
 * by page reads inflate each member once; a WAL-flagged header is served
 * in rollback mode.
 */
#ifndef SHB_VFS_H
#define SHB_VFS_H

#include <sqlite3.h>

#include "reader.h"

/* Opens entry e of r as a read-only database (the reader must outlive db). */
int shb_vfs_open(struct shb_reader *r, const struct shb_entry *e, sqlite3 **db);

#endif
