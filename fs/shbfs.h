/*
 * Internals shared by the files of fs/: the filesystem state, the backups
 * it knows, and the functions each file offers the others.  mount/ sees
 * only fs.h.
 */
#ifndef SHBFS_INTERNAL_H
#define SHBFS_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>


#include "catalog.h"
#include "fs.h"
#include "layout.h"
#include "pieces.h"
#include "reader.h"
#include "util.h"

struct fuse;

/*
 * BACKUP_FAILED is tried again after SHBFS_RETRY_OPEN; BACKUP_NO_KEY (an
 * encrypted backup no identity of the mount opens) never is.
 */
enum backup_state { BACKUP_CLOSED, BACKUP_OPEN, BACKUP_FAILED, BACKUP_NO_KEY };

/*
 * Bytes of inflated pieces the mount keeps in memory (pieces.h): 64
 * members of 256 KiB, as the old 64-slot cache; two read-aheads of 8 MiB,
 * or four plain-archive segments of 4 MiB.
 */
#define SHBFS_MEM_CACHE (16u << 20)

/* Seconds before a backup that failed to open is tried again. */
#define SHBFS_RETRY_OPEN 5.0

/*
 * A backup the mount has seen.  The fields above mu never change after
 * adopt() creates the object; the ones below it are written under mu, and
 * the layout and reader only once, before state becomes BACKUP_OPEN, so a
 * thread that saw BACKUP_OPEN (through shbfs_open_backup) reads them freely.
 */
struct shbfs_backup {
	/*
	 * Where it lives, as the listing had it: the strings are this
	 * object's copies, at.name points at at.ts.
	 */
	struct shb_backup at;

	pthread_mutex_t mu;         /* protects what follows, up to next */
	char key[33];               /* cache key: content identity of the source in use */
	int remote;                 /* reads go to S3 */
	enum backup_state state;
	double failed_at;
	struct shb_reader *reader;
	struct shb_layout layout;
	/*
	 * Per layout file: it was opened through this object, so the kernel's
	 * cached pages of that path are this object's bytes (see keep_pages).
	 */
	unsigned char *served;
	int replaced;               /* atomic: a newer listing put another object at ts */
	struct shbfs_backup *next;  /* every backup ever seen, for freeing; protected by shbfs.mu */
};

struct shbfs {
	struct shbfs_config cfg;    /* read-only after shbfs_new; cfg.repo borrowed, thread-safe */
	struct shb_pieces *pieces;  /* inflated pieces and read-ahead workers; thread-safe itself */
	struct fuse *fuse;          /* set by init before the lister starts; NULL before */
	time_t mounted_at;

	/*
	 * The listing.  The lister thread lists the sources with no lock held
	 * and swaps the result in under mu, so lookups and reads never wait
	 * for S3; only the very first listing is waited for.
	 */
	pthread_mutex_t mu;         /* protects every field up to gen */
	pthread_cond_t wake;        /* lister: a listing is wanted, or stop */
	pthread_cond_t listed_cv;   /* waiters: a listing was swapped in */
	struct shbfs_backup **list; /* current listing, newest first */
	size_t n;
	struct shbfs_backup *all;
	struct shb_catalog local;   /* last good local listing */
	struct shb_catalog remote;  /* last good S3 listing */
	double listed_at;
	int listed;                 /* a first listing has completed */
	int listing;                /* the lister is at work */
	int want;                   /* someone asked for a fresh listing */
	int local_failed;           /* the last local listing failed (logged once) */
	int remote_failed;          /* the last S3 listing failed for a reason other than an outage */
	int stop;                   /* unmounting: the lister ends */
	unsigned listed_gen;        /* value of gen the current listing started from */
	pthread_t lister;
	int lister_running;

	unsigned gen;               /* bumped by shbfs_refresh (SIGHUP); atomic */
	int s3_down;                /* last S3 request failed; atomic */
};

/* An open file. */
struct shbfs_handle {
	struct shbfs_backup *b;
	size_t file;                /* index into b->layout.files */
	pthread_mutex_t mu;         /* protects next_off and ahead */
	uint64_t next_off;          /* where a sequential read would go on */
	size_t ahead;               /* read-ahead in 256 KiB units, grows while sequential */
};

/* tree.c: the listing and opening backups. */
/* Starts and stops the lister thread (after daemonizing, as threads do not survive it). */
void shbfs_lister_start(struct shbfs *fs);
void shbfs_lister_stop(struct shbfs *fs);
/* Asks for a fresh listing when the current one is older than list_ttl or a
 * refresh was requested; waits only if there has never been one. */
void shbfs_list(struct shbfs *fs);
/* Frees the listing state (at shbfs_free). */
void shbfs_list_free(struct shbfs *fs);
/* The backup named ts in the current listing, or NULL. */
struct shbfs_backup *shbfs_find(struct shbfs *fs, const char *ts);
/* 0 once b is open (its layout usable), else -errno. */
int shbfs_open_backup(struct shbfs *fs, struct shbfs_backup *b);

/*
 * tree.c: records whether the last S3 request worked (rc SHB_OK, or
 * SHB_ENET/SHB_EREMOTE: unreachable; other codes say nothing about S3);
 * logs a line when that changes, so an outage is one line, not one per
 * failed read.  why: the error message.
 */
void shbfs_s3_status(struct shbfs *fs, int rc, const char *why);
/* The mode bits of layout file i of b, and of any directory (ops.c). */
mode_t shbfs_file_mode(const struct shbfs *fs, const struct shbfs_backup *b, size_t i);
mode_t shbfs_dir_mode(const struct shbfs *fs);

/*
 * read.c: bytes of an open file (b open): the number read, or -EIO on any
 * failure, never wrong bytes.  Queues read-ahead while h reads sequentially.
 */
int shbfs_read(struct shbfs *fs, struct shbfs_handle *h, char *buf, size_t size, uint64_t off);

#endif
