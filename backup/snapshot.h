/*
 * Consistent copies of live SQLite databases.  A snapshot is a single,
 * self-contained file holding one committed state of the source, stored in
 * rollback-journal mode (header bytes 18-19 = 1) so it opens anywhere,
 * read-only media included.  The source is opened read-only and locked no
 * longer than SQLite needs for one read transaction.
 */
#ifndef SHB_SNAPSHOT_H
#define SHB_SNAPSHOT_H

/*
 * Copies the database at src to the new file dst (which must not exist)
 * with VACUUM INTO; where that is unavailable or fails for a reason the
 * online backup API avoids, falls back to the backup API.  A damaged
 * source is an error either way: SHB_ESQLITE, with SQLite's own message
 * ("database disk image is malformed") for the caller to put in context.
 * dst is created with mode 0600.  On failure dst is removed.
 */
int shb_snapshot_db(const char *src, const char *dst);

#endif
