/*
 * shbackup create (create.h): writing the archive from the staged items,
 * publishing it under its final name, and uploading it.
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

#include <openssl/evp.h>

#include "age.h"
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

/* --- archiving ----------------------------------------------------------- */

static void on_progress(void *ctx, const char *path, uint64_t done, uint64_t total)
{
	struct job *job = ctx;

	shb_progress_bytes(&job->last_progress, "archiving", strchr(path, '/') + 1, done, total);
}

/* Waits for the snapshot thread to finish it; sets *skipped for a skipped app. */
static int wait_item(struct job *job, struct item *it, int *skipped)
{
	enum item_state st;
	int rc = SHB_OK;

	shb_progress_line("snapshot %s", it->rel);
	pthread_mutex_lock(&job->mu);
	while ((st = it->state) == ITEM_PENDING)
		pthread_cond_wait(&job->cv, &job->mu);
	*skipped = st == ITEM_SKIPPED;
	if (st == ITEM_FAILED) {
		rc = shb_fail(SHB_ESQLITE, "%s", it->msg);
	} else if (*skipped && it->app) {
		skip_app(job, it->app, it->msg);
	} else if (*skipped) {
		shb_warning("%s; backing up the databases only", it->msg);
		job->secrets_skipped = 1;
	}
	pthread_mutex_unlock(&job->mu);
	return rc;
}

static int add_dir(struct shb_archive_writer *w, struct job *job, const char *rel)
{
	char *p = rel ? shb_aprintf("%s/%s", job->top, rel) : strdup(job->top);
	int rc = p ? shb_archive_add_dir(w, p, 0700, job->time) : SHB_ENOMEM;

	free(p);
	return rc;
}

static int archive_item(struct shb_archive_writer *w, struct job *job, struct item *it)
{
	char *path = shb_aprintf("%s/%s", job->top, it->rel);
	int fd = openat(job->staging_fd, it->staged_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int rc;

	if (!path || fd < 0 || fstat(fd, &st) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot open snapshot of '%s'", it->rel);
	else
		rc = shb_archive_add_file(w, path, fd, (uint64_t)st.st_size, 0600, job->time);
	if (fd >= 0)
		close(fd);
	unlinkat(job->staging_fd, it->staged_name, 0);  /* keep staging small: one at a time */
	free(path);
	return rc;
}

/*
 * Each item once its snapshot is ready; an app's directories are written
 * only then, so a skipped app leaves nothing behind in the archive.
 */
static int archive_items(struct shb_archive_writer *w, struct job *job)
{
	int rc = add_dir(w, job, NULL), apps_dir = 0, skipped = 0;

	for (size_t i = 0; !rc && i < job->nitems; i++) {
		struct item *it = &job->items[i];

		if ((rc = wait_item(job, it, &skipped)))
			break;
		if (skipped) {
			job->napps -= it->app != NULL;
			continue;
		}
		if (it->app) {
			char *dir = shb_aprintf("apps/%s", it->app);

			if (!apps_dir++)
				rc = add_dir(w, job, "apps");
			if (!rc)
				rc = dir ? add_dir(w, job, dir) : SHB_ENOMEM;
			free(dir);
		}
		if (!rc)
			rc = archive_item(w, job, it);
	}
	return rc;
}

/*
 * The age head (header and nonce) of an encrypted archive, in base64 for
 * its S3 object's metadata, so a reader's first GET (the suffix) brings it
 * (age.h, shb_age_writer_head).  None when too long for S3's metadata (many
 * recipients): readers then GET it.
 */
static int keep_head(struct job *job, const struct shb_age_writer *age)
{
	size_t len;
	const void *head = shb_age_writer_head(age, &len);

	if ((len + 2) / 3 * 4 > SHB_S3_META_MAX)
		return SHB_OK;
	if (!(job->s3_meta = malloc((len + 2) / 3 * 4 + 1)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	EVP_EncodeBlock((unsigned char *)job->s3_meta, head, (int)len);
	return SHB_OK;
}

/* The archive writer's sink when encrypting: every byte through age (age.h). */
static int age_sink(void *ctx, const void *buf, size_t len)
{
	return shb_age_write(ctx, buf, len);
}

int write_archive(struct job *job, uint64_t *size)
{
	struct shb_archive_opts o = { .level = job->level, .threads = job->threads,
				      .uid = getuid(), .gid = getgid(),
				      .progress = on_progress, .progress_ctx = job };
	struct shb_archive_writer *w = NULL;
	struct shb_age_writer *age = NULL;
	pthread_t snap;
	int rc = SHB_OK;

	/* Encrypted, the tar.gz exists only in memory, a chunk at a time. */
	if (job->recipients.n
	    && !(rc = shb_age_writer_open(job->out_fd, &job->recipients, job->tmp_path, &age))) {
		o.write = age_sink;
		o.write_ctx = age;
	}
	if (rc)
		return rc;
	if (pthread_create(&snap, NULL, snapshot_thread, job)) {
		shb_age_writer_free(age);
		return shb_fail(SHB_ENOMEM, "cannot start the snapshot thread");
	}
	rc = shb_archive_begin(job->out_fd, job->tmp_path, &o, &w);
	if (!rc)
		rc = archive_items(w, job);
	if (!rc)
		rc = shb_archive_finish(w);
	if (!rc && age && !(rc = shb_age_writer_finish(age)))
		rc = keep_head(job, age);
	if (!rc)
		*size = age ? shb_age_writer_size(age) : shb_archive_size(w);
	pthread_mutex_lock(&job->mu);
	job->cancel = 1;
	pthread_mutex_unlock(&job->mu);
	pthread_join(snap, NULL);
	shb_archive_free(w);
	shb_age_writer_free(age);
	return rc;
}

int publish(struct job *job)
{
	int r;

	if (fsync(job->out_fd) < 0)
		return shb_fail_errno(SHB_EIO, "cannot fsync '%s'", job->tmp_path);
	if (job->tmp_anon) {
		/* A link never replaces a name; AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH. */
		char proc[64];

		r = linkat(job->out_fd, "", job->dir_fd, job->final_name, AT_EMPTY_PATH);
		if (r < 0 && errno != EEXIST) {
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", job->out_fd);
			r = linkat(AT_FDCWD, proc, job->dir_fd, job->final_name, AT_SYMLINK_FOLLOW);
		}
		if (r < 0)
			return shb_fail_errno(SHB_EIO, "cannot create '%s'", job->final_path);
		goto check;
	}
	r = renameat2(job->dir_fd, job->tmp_name, job->dir_fd, job->final_name, RENAME_NOREPLACE);
	if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
		/* No RENAME_NOREPLACE here: a link never replaces either. */
		r = linkat(job->dir_fd, job->tmp_name, job->dir_fd, job->final_name, 0);
		if (r == 0)
			unlinkat(job->dir_fd, job->tmp_name, 0);
	}
	if (r < 0)
		return shb_fail_errno(SHB_EIO, "cannot rename '%s' to '%s'", job->tmp_path,
				      job->final_name);
	job->tmp_ours = 0;
check:
	if (!shb_same_at(job->dir_fd, job->final_name, &job->out_st)) {
		unlinkat(job->dir_fd, job->final_name, 0);
		return shb_fail(SHB_EIO, "cannot publish '%s': '%s' was replaced while being written",
				job->final_path, job->tmp_path);
	}
	if (fsync(job->dir_fd) < 0)
		return shb_fail_errno(SHB_EIO, "cannot fsync '%s'", job->cfg.local_dir);
	return SHB_OK;
}

/* --- upload and retention ------------------------------------------------ */

static void on_upload_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct job *job = ctx;

	shb_progress_bytes(&job->last_progress, "uploading", job->s3_key, done, total);
}

/*
 * Keeps every upload that is not a backup of ours: ours are directly under
 * our prefix (ctx, "<prefix>/" or ""), as the catalog reads them; a backup
 * under a deeper prefix belongs to another deployment, maybe uploading now.
 */
static int not_a_backup(const char *key, void *ctx)
{
	const char *dir = ctx;
	size_t dlen = strlen(dir);
	char ts[SHB_TS_LEN];
	time_t t;

	return strncmp(key, dir, dlen) || shb_backup_name_parse(key + dlen, ts, &t) < 0;
}

int upload(struct job *job, uint64_t size)
{
	uint64_t remote = 0;
	char url[1024], stale_msg[1024] = "", *dir = shb_config_s3_key(&job->cfg, "");
	long stale;
	int rc;

	stale = dir ? shb_s3_abort_stale_uploads(job->s3, dir, not_a_backup, dir) : -1;
	free(dir);
	if (stale < 0)
		snprintf(stale_msg, sizeof(stale_msg), "%s", shb_errmsg());
	else if (stale > 0 && shb_show_progress())
		fprintf(stderr, "aborted %ld unfinished upload%s of an earlier run\n", stale,
			stale == 1 ? "" : "s");

	/* A bad key or bucket fails both: the upload's error alone says it once. */
	if ((rc = shb_s3_upload_fd(job->s3, job->s3_key, job->out_fd, job->final_path,
				   job->s3_meta, on_upload_progress, job))
	    || (rc = shb_s3_head(job->s3, job->s3_key, &remote)))
		return rc;
	if (stale_msg[0])
		shb_warning("%s", stale_msg);
	if (remote != size) {
		shb_s3_url(job->s3, job->s3_key, url, sizeof(url));
		return shb_fail(SHB_EREMOTE, "upload of '%s' is %llu bytes on the server, not %llu",
				url, (unsigned long long)remote, (unsigned long long)size);
	}
	return SHB_OK;
}
