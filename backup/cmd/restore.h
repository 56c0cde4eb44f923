/*
 * Private to shbackup restore (restore.c): the run's state and the steps
 * the command calls, one file a concern:
 *
 *   restore.c           flags, which backup, confirmation, the command
 *   restore_target.c    the target: lock, debris, link and mount checks, staging
 *   restore_plan.c      the live-core guard, the plan, extraction and verification
 *   restore_rollback.c  the rollback copy of the current state
 *   restore_place.c     moving each restored file into place
 *
 * Every function returns an error code (error.h) with the message set,
 * unless its comment says otherwise.  The run is single-threaded but for
 * the extraction and rollback workers, which get one index each.
 */
#ifndef SHB_CMD_RESTORE_H
#define SHB_CMD_RESTORE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"
#include "input.h"
#include "repo.h"

#define STAGING_PREFIX ".shbackup-restore-"
#define ROLLBACK_PREFIX "pre-restore-"

enum { EXIT_NOT_FOUND = 3, EXIT_VERIFY = 4, EXIT_ABORTED = 5 };

struct restore {
	struct shb_config cfg;
	const char *from, *target;
	int yes, force, dry_run, threads;
	char **apps;
	size_t napps;

	int target_fd;          /* locked for the whole run */
	dev_t dev;              /* its filesystem and mount: every file must be renamed */
	uint64_t mnt_id;        /* within them (mnt_id 0: unknown, before Linux 5.8) */
	/*
	 * The target may belong to a user who renames its entries or puts
	 * links in their place while we run: everything restore does in it
	 * goes through held directory fds, and code that takes a name (SQLite,
	 * file copies) is given "/proc/self/fd/<fd>/..." (shb_sqlite_fd_paths()).
	 */
	char *tp;               /* "/proc/self/fd/<target_fd>" */
	int staging_fd;         /* the staging dir, held from its creation; -1 if none */
	char *staging_name;     /* its name in the target */
	char *staging;          /* "/proc/self/fd/<staging_fd>"; NULL in a dry run */
	char *scratch;          /* where S3 archives may be downloaded */
	char *rollback;         /* final rollback dir, once made (for messages) */
	struct shb_repo *repo;  /* the backups' places; the input reads through it */
	struct shb_input *in;
	char *backup_name;
	unsigned char *want;    /* per layout file */
	unsigned char *wal;     /* per layout file: put the restored db in WAL mode */
	int default_wal;        /* the target's journal mode, for dbs it does not have yet */
	double last_progress;   /* written by on_extract, under the input's own mutex (input.h) */
};

/*
 * The top of the target, before anything is written to it: apps/,
 * streamhub.db and secrets.json must not be links.
 */
int check_target_top(struct restore *r);
/* Every wanted app's dir and db, once the backup says which apps. */
int check_target_apps(struct restore *r);
/*
 * Opens the directory restore just made as name in the target, without
 * following a link, and checks it is still ours (a directory owned by us
 * that no one else can enter): the target's owner may have renamed it and
 * put something else there in between.  Returns the fd, or -1 with the
 * error set.
 */
int open_own_dir(struct restore *r, const char *name);
/* Removes the dir name (ours, open at fd) from the target, unless it was replaced. */
void remove_own_dir(struct restore *r, const char *name, int fd);
/*
 * Opens and locks the target (flock on the dir itself), checks its top,
 * clears the debris of killed runs and makes the staging dir, held open
 * as r->staging_fd.  In a dry run nothing is written to the target: a
 * private dir in /tmp becomes the scratch dir instead.
 */
int prepare_target(struct restore *r);
/*
 * Refuses (SHB_EBUSY) when a db the restore would replace, or its -shm,
 * is locked by another process: the core is running.  --force skips it.
 */
int guard(struct restore *r);
/* Appends s (taken over; NULL means it could not be made) to the vector v of n strings. */
int push(char ***v, size_t *n, char *s);
/*
 * Apps with a db in the target: "apps/<app>/app.db" paths, malloc'd, in
 * *out.  Fails rather than leave one out (the rollback copy relies on it);
 * no apps dir is no apps.
 */
int target_apps(const char *target, char ***out, size_t *n);
/* Frees the n strings of v and v itself. */
void free_list(char **v, size_t n);
/* Prints to f what the restore replaces, adds and keeps, with sizes. */
void print_plan(struct restore *r, FILE *f);
/*
 * PRAGMA integrity_check on one db; SHB_ECORRUPT naming it if not "ok".
 * A read-only connection to a WAL db leaves a -wal and -shm behind, so a
 * db that may be in WAL mode is opened read-write (and only read).
 */
int integrity_flags(const char *path, const char *name, int flags);
/*
 * Extracts the wanted files into the staging dir and runs an integrity
 * check on every db there, with r->threads workers; the target itself is
 * not touched.
 */
int extract_and_verify(struct restore *r);
/* Whether the restore replaces the target's file rel. */
int replaced(const struct restore *r, const char *rel);
/*
 * Saves the current state into .pre-restore-<ts>.tmp, made and filled
 * through its held fd, then renames it to pre-restore-<ts> (never over
 * anything) and checks the name now leads to the dir we filled: the
 * target's owner may have swapped either name in between.
 */
int make_rollback(struct restore *r);
/* Moves every wanted staged file into place, stopping at the first failure. */
int replace_all(struct restore *r);

#endif
