/*
 * Internals shared by the files of fs/: the filesystem state, the backups
 * it knows, and the functions each file offers the others.  mount/ sees
 * only fs.h.
 */
#ifndef SHBFS_INTERNAL_H
#define SHBFS_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "cache.h"
#include "fs.h"
#include "layout.h"
#include "reader.h"
#include "util.h"

enum backup_state { BACKUP_CLOSED, BACKUP_OPEN, BACKUP_FAILED };

/* Seconds before a backup that failed to open is tried again. */
#define SHBFS_RETRY_OPEN 5.0

struct shbfs_backup {
	char ts[SHB_TS_LEN];
	time_t time;
	char *local_path;
	uint64_t local_size;
	char *s3_key;
	uint64_t s3_size;
	char *s3_etag;              /* from the listing; NULL if none */
	char key[33];               /* cache key: content identity of the source in use */
	int remote;                 /* reads go to S3 */

	pthread_mutex_t mu;         /* guards opening */
	enum backup_state state;
	double failed_at;
	struct shb_reader *reader;
	struct shb_layout layout;
	struct shbfs_backup *next;  /* every backup ever seen, for freeing */
};

struct shbfs {
	struct shbfs_config cfg;    /* strings owned */
	struct shbfs_cache *cache;
	time_t mounted_at;

	pthread_mutex_t mu;         /* guards the listing */
	struct shbfs_backup **list; /* current listing, newest first */
	size_t n;
	struct shbfs_backup *all;
	double listed_at;
	int stale;
	struct shbfs_prefetch *prefetch;  /* read-ahead workers, NULL until init */
};

/* An open file. */
struct shbfs_handle {
	struct shbfs_backup *b;
	size_t file;                /* index into b->layout.files */
	pthread_mutex_t mu;
	uint64_t next_off;          /* where a sequential read would go on */
	size_t ahead;               /* members of read-ahead, grows while sequential */
};

/* tree.c: the listing and opening backups. */
void shbfs_list(struct shbfs *fs);
/* The backup named ts in the current listing, or NULL. */
struct shbfs_backup *shbfs_find(struct shbfs *fs, const char *ts);
/* 0 once b is open (its layout usable), else -errno. */
int shbfs_open_backup(struct shbfs *fs, struct shbfs_backup *b);

/* read.c: bytes of an open file; -EIO on any failure, never wrong bytes. */
int shbfs_read(struct shbfs *fs, struct shbfs_handle *h, char *buf, size_t size, uint64_t off);
/* read.c: members lo..hi of b into the memory cache (one fetch; errors ignored). */
void shbfs_fill(struct shbfs *fs, struct shbfs_backup *b, size_t lo, size_t hi);

/* prefetch.c: read-ahead inflated on worker threads. */
void shbfs_prefetch_start(struct shbfs *fs);
void shbfs_prefetch_stop(struct shbfs *fs);
/* Queues members lo..hi not cached or in flight, per members a job. */
void shbfs_prefetch(struct shbfs *fs, struct shbfs_backup *b, size_t lo, size_t hi, size_t per);
/* Returns once member i of b is no longer being prefetched. */
void shbfs_prefetch_wait(struct shbfs *fs, struct shbfs_backup *b, size_t i);

#endif
