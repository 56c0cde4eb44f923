/*
 * Private to shbackup create (create.c): the run's state and the steps the
 * command calls, one file a concern:
 *
 *   create.c          flags, retention and metrics, the command
 *   create_items.c    what to back up, and the snapshot thread
 *   create_dir.c      the backup dir: lock, debris, names, staging, the temporary
 *   create_archive.c  writing, publishing and uploading the archive
 *
 * Every function returns an error code (error.h) with the message set,
 * unless its comment says otherwise.
 */
#ifndef SHB_CMD_CREATE_H
#define SHB_CMD_CREATE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "age.h"
#include "config.h"
#include "s3.h"
#include "util.h"

#define STAGING_PREFIX ".shbackup-staging-"
#define DEFAULT_LOCK_TIMEOUT 60
#define LOCK_NAME ".shbackup.lock"

enum item_state { ITEM_PENDING, ITEM_READY, ITEM_FAILED, ITEM_SKIPPED };

/*
 * What to back up.  rel, app, staged and is_db are written by the main
 * thread before the snapshot thread starts and only read after that, by
 * both; state and msg are owned by the snapshot thread until it sets state
 * away from ITEM_PENDING, protected by job->mu.
 */
struct item {
	char *rel;      /* path inside DATA_DIR and the backup, e.g. "apps/a/app.db" */
	char *app;      /* "a" for an app db, else NULL */
	char *staged;   /* snapshot or copy in the staging dir, full path (for SQLite) */
	char *staged_name;  /* the same, relative to job->staging_fd */
	int is_db;
	enum item_state state;   /* protected by job->mu */
	char msg[512];           /* protected by job->mu */
};

/*
 * One run.  Everything down to nitems is set by the main thread before the
 * snapshot thread starts and only read after that (the snapshot thread
 * reads cfg, data_fd, lock_ms and items); the rest says who owns it.
 */
struct job {
	struct shb_config cfg;
	struct shb_age_keys recipients;  /* none: the archive is not encrypted */
	char *s3_meta;          /* encrypted: its age head in base64, for the S3 object; or NULL */
	int level, threads, prune;
	char ts[SHB_TS_LEN];
	time_t time;
	char *top;          /* streamhub-backup-<ts> */
	char *staging;          /* full path, through trusted dirs only (SQLite writes by path) */
	char *staging_name;     /* the same, relative to staging_parent_fd */
	int staging_parent_fd;
	char *tmp_path;
	char *tmp_name;
	char *final_path;
	char *final_name;
	int lock_fd, out_fd;
	int dir_fd;             /* the backup dir: every name in it is used relative to this */
	int staging_fd;
	struct stat out_st;     /* the temporary we created: what out_fd writes */
	int tmp_ours;           /* tmp_name is still out_fd's file */
	int tmp_anon;           /* out_fd is an O_TMPFILE: no name until published */
	int dir_trusted;        /* no one else can change the backup dir or its parents */
	struct stat staging_st;
	struct shb_s3 *s3;      /* NULL: local only */
	char *s3_key;
	int data_fd;            /* DATA_DIR, what every source is opened beneath */
	int lock_ms;            /* BACKUP_LOCK_TIMEOUT, in milliseconds */
	int fail_code;          /* exit code for a preflight failure other than 2 */
	struct item *items;
	size_t nitems, items_alloc;

	size_t napps, skipped;  /* main thread only */
	int secrets_skipped;    /* main thread only: an invalid or odd secrets.json left out */
	/*
	 * Owned by whoever reports progress: the main thread while archiving,
	 * then the upload's part workers, which call back under their own mutex.
	 */
	double last_progress;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int cancel;             /* protected by mu */
};

/*
 * The archive's name for job->ts: streamhub-backup-<ts>.tar.gz, with .age
 * when job encrypts (malloc'd; NULL when out of memory).
 */
char *backup_name(const struct job *job);
/* Warns that app name is left out of the backup, and why; counts it in job->skipped. */
void skip_app(struct job *job, const char *name, const char *why);
/*
 * Fills job->items from DATA_DIR (open as job->data_fd): streamhub.db,
 * each app's app.db, secrets.json.  Apps whose names or files restore
 * would refuse are skipped with a warning; a file that leads out of
 * DATA_DIR fails the run (job->fail_code set to the snapshot exit code).
 */
int find_items(struct job *job);
/*
 * The temporary archive (read back by the upload), created by this open
 * (O_EXCL, O_NOFOLLOW) so it is ours: a name planted since clear_debris (we
 * hold the lock, so no run of ours made it) is removed, never opened.  In
 * a backup dir others can write to, a name could still be swapped before the rename (publish would
 * then fail): there the archive has no name at all until it is complete
 * (O_TMPFILE, where the filesystem has it).
 */
int create_tmp(struct job *job);
/*
 * Everything before the first byte is written: DATA_DIR opened, the backup
 * dir made, opened and locked, the debris of killed runs cleared, the
 * backup named, its staging dir made and the items found.
 */
int preflight(struct job *job);
/*
 * The snapshot thread (arg is the job): snapshots or copies each item into
 * the staging dir in order, setting its state and message under job->mu
 * and signalling job->cv; stops at the first failure or when job->cancel
 * is set.  Returns NULL.
 */
void *snapshot_thread(void *arg);
/* Snapshots and archives everything into job->out_fd. */
int write_archive(struct job *job, uint64_t *size);
/*
 * Makes the archive durable and gives it its final name.  The rename is
 * by name, and the backup dir's owner may have swapped the temporary's
 * name for a symlink or file of theirs: so the final name must then be
 * out_fd's file, or whatever we moved there is removed and the run fails.
 * RENAME_NOREPLACE: nothing already at the final name is overwritten.
 */
int publish(struct job *job);
/*
 * Uploads the published archive and checks its size on the server.  Parts
 * left by a killed earlier run are aborted first: one create at a time
 * writes under a prefix, so any unfinished upload of a backup is stale.
 */
int upload(struct job *job, uint64_t size);

#endif
