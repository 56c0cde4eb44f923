/*
 * shbfs: the read-only filesystem of every backup, over the catalog and
 * the archive reader.  This header is the contract with mount/, which
 * parses options, mounts and runs the loop.
 *
 *   /<YYYYMMDDTHHMMSSZ>/streamhub.db
 *   /<ts>/secrets.json           0400, readable by the mount's owner only
 *   /<ts>/apps/<app>/app.db
 *   /latest -> <newest ts>
 *
 * The root is a catalog listing (local readdir + S3 ListObjectsV2, no
 * archive bytes), made by a thread of its own after list_ttl or on
 * shbfs_refresh(), so no lookup or read waits for it; each source that
 * fails keeps its last good listing.
 *
 * Modes: dirs 0500 and files their archived mode less write bits, owned by
 * cfg.uid/gid; with cfg.umask_set, dirs 0555 and files 0444 less the umask.
 * secrets.json is 0400 always.  A backup is opened (index
 * read: one tail read, through the repository's disk cache for S3) the
 * first time something inside it is looked at.  Reads fetch only the
 * members they need.
 */
#ifndef SHBFS_FS_H
#define SHBFS_FS_H

#include <stdint.h>
#include <sys/types.h>

struct shb_repo;
struct shbfs;

struct shbfs_config {
	/*
	 * Where the backups are (local dir, S3 bucket, both) and the disk
	 * cache remote bytes are read through (repo.h); borrowed, must
	 * outlive the filesystem.
	 */
	struct shb_repo *repo;
	double list_ttl;          /* seconds a root listing is served */
	uid_t uid;                /* owner of every file */
	gid_t gid;
	int umask_set;            /* 0: files keep their archived mode, less write bits */
	mode_t umask;             /* else files 0444 & ~umask, dirs 0555 & ~umask */
};

/*
 * A new filesystem over cfg (copied; cfg->repo borrowed), nothing listed
 * yet.  SHB_OK and *out (free with shbfs_free, after unmounting); else an
 * error code with shb_errmsg() set.
 */
int shbfs_new(const struct shbfs_config *cfg, struct shbfs **out);
/* Frees fs (NULL is fine): every backup object, reader and cache of it. */
void shbfs_free(struct shbfs *fs);

/*
 * The FUSE operations (a static table); private_data must be the struct
 * shbfs.  They are called from libfuse's threads at once: every shared
 * field of struct shbfs says which lock protects it (fs/shbfs.h).  Errors
 * reach the kernel as negative errno values (-EIO, -ENOENT), with the
 * cause logged through shbfs_log().
 */
const struct fuse_operations *shbfs_operations(void);

/*
 * Makes the next root lookup list the sources again (SIGHUP).  One atomic
 * add: safe from a signal handler.
 */
void shbfs_refresh(struct shbfs *fs);

/*
 * Logs a line (no newline in fmt; priority a syslog LOG_* level):
 * "shbackupfs: ..." on stderr in the foreground, syslog once
 * shbfs_log_to_syslog() was called.  Never fails.
 */
void shbfs_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Switches shbfs_log() to syslog (LOG_DAEMON); call once, before threads start. */
void shbfs_log_to_syslog(void);

#endif
