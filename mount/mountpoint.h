/*
 * Checks shbackupfs makes of a mount point before it mounts there.
 * Part of mount/, the top layer (it may include base, repo and fs); these
 * need only base's util.h.
 */
#ifndef SHBFS_MOUNTPOINT_H
#define SHBFS_MOUNTPOINT_H

/*
 * Whether mount point mnt overlaps the backup dir local or the cache dir
 * cache (either may be NULL): one is the other or inside it, seen through
 * symlinks and bind mounts.  Such a mount would have the daemon read
 * through its own mount: the first lookup waits on itself forever (a hang
 * in D state that no signal ends and no unmount clears).  0 when apart;
 * -1 after printing "shbackupfs: mount point ... overlaps ..." to stderr.
 */
int shbfs_check_overlap(const char *mnt, const char *local, const char *cache);

/*
 * The fstype of the topmost mount exactly at dir (from
 * /proc/self/mountinfo, which unlike stat() cannot hang on a dead FUSE
 * daemon), malloc'd for the caller to free; NULL when nothing is mounted
 * there, or when it cannot be told (no memory, no /proc).
 */
char *shbfs_mounted_fstype(const char *dir);

#endif
