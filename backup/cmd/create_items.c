/*
 * shbackup create (create.h): what to back up, found beneath DATA_DIR, and
 * the snapshot thread that copies each item into the staging dir while the
 * main thread archives the ones already done.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writer.h"
#include "catalog.h"
#include "cli.h"
#include "config.h"
#include "create.h"
#include "dirfd.h"
#include "error.h"
#include "input.h"
#include "layout.h"
#include "s3.h"
#include "snapshot.h"
#include "util.h"

/* --- what to back up ----------------------------------------------------- */

static int add_item(struct job *job, const char *rel, const char *app, int is_db)
{
	struct item *it;

	if (SHB_ALLOC_GROW(job->items, job->nitems + 1, job->items_alloc))
		return SHB_ENOMEM;
	it = &job->items[job->nitems];
	memset(it, 0, sizeof(*it));
	it->is_db = is_db;
	it->rel = strdup(rel);
	it->app = app ? strdup(app) : NULL;
	it->staged = shb_aprintf("%s/%zu", job->staging, job->nitems);
	it->staged_name = shb_aprintf("%zu", job->nitems);
	job->nitems++;
	if (!it->rel || (app && !it->app) || !it->staged || !it->staged_name)
		return shb_fail(SHB_ENOMEM, "out of memory");
	return SHB_OK;
}

enum probe { P_FILE, P_MISSING, P_OTHER, P_OUTSIDE };

/*
 * Whether rel beneath DATA_DIR is a regular file create may read.  Missing
 * is P_MISSING, not a regular file (a FIFO, a dir...) P_OTHER; a path
 * leading out of DATA_DIR P_OUTSIDE; any other error is an error.  The open
 * does not block on a FIFO.
 */
static int probe(struct job *job, const char *rel, enum probe *out)
{
	int fd = shb_open_beneath(job->data_fd, rel, O_RDONLY | O_NONBLOCK);
	struct stat st;

	if (fd < 0) {
		if (shb_beneath_refused(errno))
			*out = P_OUTSIDE;
		else if (errno == ENOENT || errno == ENOTDIR)
			*out = P_MISSING;
		else
			return shb_fail_errno(SHB_EIO, "cannot open '%s/%s'", job->cfg.data_dir, rel);
		return SHB_OK;
	}
	*out = fstat(fd, &st) < 0 ? P_MISSING : S_ISREG(st.st_mode) ? P_FILE : P_OTHER;
	close(fd);
	return SHB_OK;
}

/*
 * The first of a db's side files (-wal, -shm, -journal) that exists and is
 * not a regular file, or NULL.  SQLite refuses a db whose side file is a
 * symlink ("unable to open database file"), so such a db cannot be
 * snapshotted; it is judged here so that it costs only its own app.
 */
static const char *odd_side_file(struct job *job, const char *rel)
{
	static const char *const sfx[] = { "-wal", "-shm", "-journal" };

	for (size_t k = 0; k < sizeof(sfx) / sizeof(*sfx); k++) {
		char *side = shb_aprintf("%s%s", rel, sfx[k]);
		struct stat st;
		int odd;

		if (!side)
			return NULL;  /* the snapshot will say what SQLite makes of it */
		odd = fstatat(job->data_fd, side, &st, AT_SYMLINK_NOFOLLOW) == 0
		      && !S_ISREG(st.st_mode);
		free(side);
		if (odd)
			return sfx[k];
	}
	return NULL;
}

static int leaves(struct job *job, const char *rel)
{
	job->fail_code = SHB_EXIT_SNAPSHOT;
	return shb_fail(SHB_EIO, "cannot back up '%s': it leaves DATA_DIR '%s'", rel,
			job->cfg.data_dir);
}

void skip_app(struct job *job, const char *name, const char *why)
{
	char esc[1100];

	shb_name_escape(name, esc, sizeof(esc));
	shb_warning("skipping app 'apps/%s': %s", esc, why);
	job->skipped++;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/*
 * Every apps/<app>/app.db.  An app whose name breaks the rule of
 * shb_app_name_ok() or whose db leads out of DATA_DIR is skipped with a
 * warning: the rest of the backup is still worth having.
 */
static int find_apps(struct job *job)
{
	struct dirent **names = NULL;
	enum probe pr;
	int fd, n, rc = SHB_OK;

	fd = shb_open_beneath(job->data_fd, "apps", O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (shb_beneath_refused(errno))
			return leaves(job, "apps");
		if (errno == ENOENT || errno == ENOTDIR)
			return SHB_OK;
		return shb_fail_errno(SHB_EIO, "cannot read '%s/apps'", job->cfg.data_dir);
	}
	n = scandirat(fd, ".", &names, NULL, by_name);
	close(fd);
	if (n < 0)
		return shb_fail_errno(SHB_EIO, "cannot read '%s/apps'", job->cfg.data_dir);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name, *side;
		char *rel = NULL;

		if (!rc && strcmp(name, ".") && strcmp(name, "..")
		    && !(rc = (rel = shb_aprintf("apps/%s/app.db", name)) ? SHB_OK : SHB_ENOMEM)
		    && !(rc = probe(job, rel, &pr))) {
			if (pr == P_OUTSIDE)
				skip_app(job, name, "it leaves DATA_DIR");
			else if (pr == P_FILE && !shb_app_name_ok(name))
				skip_app(job, name, "name not allowed (valid UTF-8, 1-255 bytes, "
					 "no leading '.', control characters, '/' or '\\')");
			else if (pr == P_FILE && (side = odd_side_file(job, rel))) {
				char why[64];

				snprintf(why, sizeof(why), "'app.db%s' is not a regular file", side);
				skip_app(job, name, why);
			}
			else if (pr == P_FILE && !(rc = add_item(job, rel, name, 1)))
				job->napps++;
		}
		free(rel);
		free(names[i]);
	}
	free(names);
	return rc;
}

int find_items(struct job *job)
{
	const char *side;
	enum probe pr;
	int rc;

	if ((rc = probe(job, "streamhub.db", &pr)))
		return rc;
	if (pr == P_OUTSIDE)
		return leaves(job, "streamhub.db");
	if (pr == P_FILE && (side = odd_side_file(job, "streamhub.db"))) {
		job->fail_code = SHB_EXIT_SNAPSHOT;
		return shb_fail(SHB_EIO, "cannot back up 'streamhub.db': 'streamhub.db%s' is not a "
				"regular file", side);
	}
	if (pr == P_FILE) {
		if ((rc = add_item(job, "streamhub.db", NULL, 1)))
			return rc;
	} else {
		shb_warning("no streamhub.db in '%s'", job->cfg.data_dir);
	}
	if ((rc = find_apps(job)))
		return rc;
	if (!job->nitems)
		return shb_fail(SHB_ENOTFOUND, "no database found in '%s' (streamhub.db, apps/*/app.db)",
				job->cfg.data_dir);
	if ((rc = probe(job, "secrets.json", &pr)))
		return rc;
	if (pr == P_OUTSIDE)
		return leaves(job, "secrets.json");
	if (pr == P_FILE)
		return add_item(job, "secrets.json", NULL, 0);
	if (pr == P_OTHER) {
		shb_warning("'secrets.json' in '%s' is not a regular file; backing up the databases only",
			    job->cfg.data_dir);
		job->secrets_skipped = 1;
		return SHB_OK;
	}
	shb_warning("no secrets.json in '%s'; backing up the databases only", job->cfg.data_dir);
	return SHB_OK;
}

/* --- snapshot thread ----------------------------------------------------- */

/*
 * Copies secrets.json from the open file in to name in the staging dir
 * (0600, fsync'd) if shb_secrets_check(), the check verify and restore
 * make, passes: else ITEM_SKIPPED with the reason set, as a backup that
 * holds it could not be restored.  At most SHB_SECRETS_MAX + 1 bytes are
 * read, and none of a file whose size already says it is too big.
 */
static enum item_state copy_secrets(struct job *job, int in, const struct stat *st,
				    const struct item *it)
{
	struct shb_buf b = SHB_BUF_INIT;
	char buf[65536];
	ssize_t n = 0;
	int out = -1, rc = SHB_OK;
	enum item_state res = ITEM_FAILED;

	if ((uint64_t)st->st_size > SHB_SECRETS_MAX) {
		/* Judged by its size alone, in the check's own words. */
		shb_secrets_check("", (size_t)SHB_SECRETS_MAX + 1, it->rel);
		return ITEM_SKIPPED;
	}
	while (!rc && b.len <= SHB_SECRETS_MAX && (n = read(in, buf, sizeof(buf))) > 0)
		rc = shb_buf_add(&b, buf, (size_t)n);
	if (!rc && n < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot read it");
	if (rc)
		goto out;
	if (shb_secrets_check(b.data, b.len, it->rel)) {
		res = ITEM_SKIPPED;
		goto out;
	}
	out = openat(job->staging_fd, it->staged_name,
		     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot create '%s'", it->staged);
	else if (!(rc = shb_write_all(out, b.data, b.len, it->staged)) && fsync(out) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync '%s'", it->staged);
	if (!rc)
		res = ITEM_READY;
out:
	if (out >= 0)
		close(out);
	shb_buf_free(&b);
	return res;
}

/*
 * Snapshots one item from what is beneath DATA_DIR now: the check made at
 * discovery is made again by the open whose fd is read, so a swap since
 * then cannot win.  An app found leading out of DATA_DIR now is skipped,
 * as at discovery; so is a secrets.json that is not a regular file now.
 */
static enum item_state snapshot_item(struct job *job, const struct item *it)
{
	int fd = shb_open_beneath(job->data_fd, it->rel, O_RDONLY | O_NONBLOCK);
	enum item_state res = ITEM_FAILED;
	struct stat st;
	int rc = SHB_OK;

	if (fd < 0 && it->app && shb_beneath_refused(errno)) {
		shb_fail(SHB_EIO, "it leaves DATA_DIR");
		return ITEM_SKIPPED;
	}
	if (fd < 0 && shb_beneath_refused(errno))
		rc = shb_fail(SHB_EIO, "it leaves DATA_DIR '%s'", job->cfg.data_dir);
	else if (fd < 0 || fstat(fd, &st) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot open it");
	else if (!S_ISREG(st.st_mode) && !it->is_db) {
		shb_fail(SHB_EIO, "'%s' is not a regular file", it->rel);
		res = ITEM_SKIPPED;
	} else if (!S_ISREG(st.st_mode))
		rc = shb_fail(SHB_EIO, "not a regular file");
	else if (!it->is_db)
		res = copy_secrets(job, fd, &st, it);
	else if (!(rc = shb_snapshot_db_fd(fd, it->staged, job->lock_ms))
		 && !shb_same_at(job->staging_parent_fd, job->staging_name, &job->staging_st))
		/* SQLite wrote by path: a staging dir swapped meanwhile got it, not ours. */
		rc = shb_fail(SHB_EIO, "staging dir '%s' was replaced", job->staging);
	if (fd >= 0)
		close(fd);
	if (rc)
		return ITEM_FAILED;
	return it->is_db ? ITEM_READY : res;
}

void *snapshot_thread(void *arg)
{
	struct job *job = arg;

	for (size_t i = 0; i < job->nitems; i++) {
		struct item *it = &job->items[i];
		enum item_state st;
		int cancel;

		pthread_mutex_lock(&job->mu);
		cancel = job->cancel;
		pthread_mutex_unlock(&job->mu);
		if (cancel)
			break;
		st = snapshot_item(job, it);
		pthread_mutex_lock(&job->mu);
		it->state = st;
		if (st == ITEM_FAILED)
			snprintf(it->msg, sizeof(it->msg), "cannot snapshot '%s': %s", it->rel,
				 shb_errmsg());
		else if (st == ITEM_SKIPPED)
			snprintf(it->msg, sizeof(it->msg), "%s", shb_errmsg());
		pthread_cond_broadcast(&job->cv);
		pthread_mutex_unlock(&job->mu);
		if (st == ITEM_FAILED)
			break;
	}
	return NULL;
}
