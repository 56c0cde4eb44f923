/*
 * shbackup create: a consistent, seekable backup of a live DATA_DIR.
 *
 * One thread snapshots the databases (and copies secrets.json) into a
 * private staging dir while the main thread archives each finished snapshot,
 * so snapshotting overlaps compression.  Everything is read through paths
 * that stay beneath DATA_DIR (shb_open_beneath), so a symlink planted there
 * by the service user cannot make root's backup copy a file from elsewhere;
 * app dirs whose names verify/restore would refuse are skipped with a
 * warning, so every backup create writes can be restored; so is a
 * secrets.json that verify/restore would refuse.  The backup dir may belong
 * to that user too, so everything create does there goes through one fd of
 * it and never follows a symlink: the archive is written through the fd of
 * a temporary it created (O_EXCL), made durable, renamed into place and
 * checked to be that very file, and uploaded from that fd.  A lock file
 * keeps concurrent runs apart and lets each run clear the debris of killed
 * ones.  With a bucket configured the archive is then uploaded and its size
 * checked, and retention runs on both sides.
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
#include "metrics.h"
#include "options.h"
#include "prune.h"
#include "repo.h"
#include "s3.h"
#include "snapshot.h"
#include "util.h"

static const char usage[] = "shbackup create [--level N] [--threads N] [--no-prune]";

/* --- flags --------------------------------------------------------------- */

static const struct shb_command_doc doc = {
	.usage = usage,
	.intro =
	"Snapshot every SQLite database of a StreamHub DATA_DIR (VACUUM INTO) plus\n"
	"secrets.json into a seekable streamhub-backup-<UTC>.tar.gz, then prune\n"
	"local backups older than the retention period.\n",
	.outro =
	"environment:\n"
	"  BACKUP_DATA_DIR        data dir to back up (default " SHB_DEFAULT_DATA_DIR ")\n"
	"  BACKUP_LOCAL_DIR       where archives are written (default <DATA_DIR>/backups)\n"
	"  BACKUP_RETENTION_DAYS  delete local backups older than this (default "
	SHB_STR(SHB_DEFAULT_RETENTION_DAYS) ";\n"
	"                         0 keeps all); the newest is always kept\n"
	"  BACKUP_S3_BUCKET       upload to this bucket too (default: local only)\n"
	"  BACKUP_S3_ENDPOINT     S3-compatible endpoint, path-style (default: AWS)\n"
	"  BACKUP_S3_PREFIX       key prefix (default " SHB_DEFAULT_S3_PREFIX "; '/' at the ends and\n"
	"                         repeated are dropped, '/' alone is the bucket root)\n"
	"  BACKUP_S3_REGION       region (default " SHB_DEFAULT_S3_REGION ")\n"
	"  BACKUP_S3_ACCESS_KEY_ID, BACKUP_S3_SECRET_ACCESS_KEY\n"
	"                         credentials (default: AWS_ACCESS_KEY_ID,\n"
	"                         AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)\n"
	"  BACKUP_S3_PART_SIZE_MB, BACKUP_S3_CONNECTIONS, BACKUP_S3_MAX_ATTEMPTS,\n"
	"  BACKUP_S3_RETRY_SECONDS, BACKUP_S3_TIMEOUT\n"
	"                         multipart part size (16), parallel parts (4), attempts\n"
	"                         per request (5), retry budget (60 s), stall timeout (30 s)\n"
	"  BACKUP_AGE_RECIPIENTS, BACKUP_AGE_RECIPIENTS_FILE\n"
	"                         encrypt to these age1 public keys (space or comma\n"
	"                         separated; a file: one per line): writes .tar.gz.age\n"
	"  BACKUP_METRICS_FILE    write Prometheus textfile metrics of the run here\n"
	"  BACKUP_LOCK_TIMEOUT    seconds to wait for a writer's lock on a db (default "
	SHB_STR(DEFAULT_LOCK_TIMEOUT) ")\n\n"
	"Only paths that stay inside DATA_DIR are read (symlinks included).  An app\n"
	"dir whose name is not 1-255 bytes of valid UTF-8, starts with '.', or holds\n"
	"a control character, '/' or '\\' is skipped with a warning; so is a\n"
	"secrets.json that is empty, not valid JSON, over 64 MiB or not a regular file.\n"
	"In a backup dir others can write to, snapshots are staged in $TMPDIR\n"
	"(default /var/tmp).\n\n"
	"exit codes: 0 ok, 1 usage, 2 preflight, 3 snapshot failed, 4 upload failed\n",
};

/* The flags into job: SHB_OPTS_RUN, or the exit code (after --help, 0). */
static int parse_args(struct job *job, int argc, char **argv)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int no_prune = 0, code;
	const struct shb_option opts[] = {
		SHB_OPT_INT(0, "level", &job->level, "N", 1, 9,
			    "gzip compression level 1..9 (default 6)"),
		SHB_OPT_INT(0, "threads", &job->threads, "N", 1, 256,
			    "compression threads (default: number of CPUs)"),
		SHB_OPT_FLAG(0, "no-prune", &no_prune, "skip retention after the backup"),
		SHB_OPT_END,
	};

	job->level = 6;
	job->threads = ncpu > 0 ? (int)ncpu : 1;
	code = shb_options_parse(&doc, opts, argc, argv);
	job->prune = !no_prune;
	return code;
}

static void report_pruned(void *ctx, const struct shb_backup *b, const char *where, int failed)
{
	(void)ctx;
	if (failed)
		shb_warning("retention: %s", shb_errmsg());
	else if (shb_show_progress())
		fprintf(stderr, "pruned %s (%s)\n", b->name, where);
}

/* Prometheus textfile metrics of this run, when BACKUP_METRICS_FILE is set. */
static void write_metrics(struct job *job, uint64_t size, double secs)
{
	const char *path = getenv("BACKUP_METRICS_FILE");
	struct shb_catalog cat = { 0 };
	struct shb_repo *repo = NULL;
	struct shb_metric m[5] = {
		{ "shbackup_create_last_success_timestamp_seconds",
		  "When the last successful backup was created.", NULL, (double)time(NULL) },
		{ "shbackup_create_last_duration_seconds", "How long the last backup took.", NULL,
		  secs },
		{ "shbackup_create_last_size_bytes", "Size of the last backup archive.", NULL,
		  (double)size },
	};
	size_t n = 3;

	if (!path || !*path)
		return;
	if (!shb_repo_load(&job->cfg, NULL, 0, &repo, &cat)) {
		shb_metrics_counts(&cat, m + 3);
		n = 5;
	}
	if (shb_metrics_write(path, m, n))
		shb_warning("%s", shb_errmsg());
	shb_catalog_free(&cat);
	shb_repo_close(repo);
}

/*
 * Retention after the backup: locally always, in S3 only when with_s3 (not
 * after a failed upload: the bucket may be unreachable, but a full disk
 * must not follow from expired credentials).
 */
static void prune(struct job *job, int with_s3)
{
	struct shb_config cfg = job->cfg;  /* no bucket: local only; no cache: a tail or two */
	struct shb_catalog cat = { 0 };
	struct shb_repo *repo = NULL;

	cfg.s3_bucket = with_s3 ? cfg.s3_bucket : NULL;
	if (shb_repo_load(&cfg, NULL, 0, &repo, &cat)) {
		shb_warning("retention skipped: %s", shb_errmsg());
	} else {
		shb_warn_future(&cat);
		shb_prune(&cat, job->cfg.retention_days, time(NULL), 0, repo, report_pruned, NULL);
	}
	shb_catalog_free(&cat);
	shb_repo_close(repo);
}

/* --- the command --------------------------------------------------------- */

static void job_free(struct job *job)
{
	/* Our temporary only: a name swapped under us is the dir owner's. */
	if (job->tmp_ours && shb_same_at(job->dir_fd, job->tmp_name, &job->out_st))
		unlinkat(job->dir_fd, job->tmp_name, 0);
	if (job->out_fd >= 0)
		close(job->out_fd);
	if (job->staging_fd >= 0) {
		shb_empty_dir(job->staging_fd);
		if (shb_same_at(job->staging_parent_fd, job->staging_name, &job->staging_st))
			unlinkat(job->staging_parent_fd, job->staging_name, AT_REMOVEDIR);
		close(job->staging_fd);
	}
	if (job->staging_parent_fd >= 0)
		close(job->staging_parent_fd);
	if (job->dir_fd >= 0)
		close(job->dir_fd);
	if (job->lock_fd >= 0)
		close(job->lock_fd);
	if (job->data_fd >= 0)
		close(job->data_fd);
	for (size_t i = 0; i < job->nitems; i++) {
		free(job->items[i].rel);
		free(job->items[i].app);
		free(job->items[i].staged);
		free(job->items[i].staged_name);
	}
	free(job->items);
	free(job->top);
	free(job->staging);
	free(job->staging_name);
	free(job->tmp_path);
	free(job->tmp_name);
	free(job->final_path);
	free(job->final_name);
	free(job->s3_key);
	shb_s3_free(job->s3);
	shb_age_keys_free(&job->recipients);
	free(job->s3_meta);
	shb_config_free(&job->cfg);
	pthread_mutex_destroy(&job->mu);
	pthread_cond_destroy(&job->cv);
}

static void print_summary(struct job *job, uint64_t size, double secs)
{
	char human[32], url[1024] = "";

	shb_progress_done();
	shb_human_size(size, human, sizeof(human));
	if (job->s3)
		shb_s3_url(job->s3, job->s3_key, url, sizeof(url));
	printf("created %s (%s, %zu app%s", job->final_path, human, job->napps,
	       job->napps == 1 ? "" : "s");
	if (job->skipped)
		printf(", %zu skipped", job->skipped);
	if (job->secrets_skipped)
		printf(", secrets.json skipped");
	if (job->recipients.n)
		printf(", encrypted to %zu key%s", job->recipients.n, job->recipients.n == 1 ? "" : "s");
	printf(", %.1f s)%s%s\n", secs, job->s3 ? ", uploaded to " : "", url);
	fflush(stdout);
}

/* BACKUP_LOCK_TIMEOUT: how long a snapshot waits for a writer's lock. */
static int lock_timeout(struct job *job)
{
	const char *v = getenv("BACKUP_LOCK_TIMEOUT");
	long long n;

	job->lock_ms = DEFAULT_LOCK_TIMEOUT * 1000;
	if (!v || !*v)
		return SHB_OK;
	if (shb_parse_number(v, SHB_NUM_INT, 0, 86400, &n))
		return shb_fail(SHB_EINVAL, "invalid BACKUP_LOCK_TIMEOUT '%s': expected 0..86400 seconds",
				v);
	job->lock_ms = (int)n * 1000;
	return SHB_OK;
}

/* BACKUP_AGE_RECIPIENTS and BACKUP_AGE_RECIPIENTS_FILE: whom the archive is encrypted to. */
static int load_recipients(struct job *job)
{
	const struct shb_config *c = &job->cfg;
	const char *vars[] = { "BACKUP_AGE_RECIPIENTS", "BACKUP_AGE_RECIPIENTS_FILE" };
	int rc = SHB_OK;

	/* Set to nothing is a mistake ($UNSET in an env file), not "no encryption". */
	for (size_t i = 0; i < 2; i++)
		if (getenv(vars[i]) && !*getenv(vars[i]))
			return shb_fail(SHB_EINVAL, "%s is set but empty: give it a key (or "
					"unset it to make plain backups)", vars[i]);
	if (c->age_recipients)
		rc = shb_age_recipients_add_list(&job->recipients, c->age_recipients,
						 "BACKUP_AGE_RECIPIENTS");
	if (!rc && c->age_recipients_file)
		rc = shb_age_recipients_add_file(&job->recipients, c->age_recipients_file);
	if (!rc && (c->age_recipients || c->age_recipients_file) && !job->recipients.n)
		rc = shb_fail(SHB_EINVAL, "BACKUP_AGE_RECIPIENTS%s names no age1 key",
			      c->age_recipients ? "" : "_FILE");
	if (!rc)
		shb_age_keys_unique(&job->recipients);
	if (!rc && job->recipients.n > SHB_AGE_MAX_RECIPIENTS)
		rc = shb_fail(SHB_EINVAL, "%zu age recipients: an archive's header holds at most %d",
			      job->recipients.n, SHB_AGE_MAX_RECIPIENTS);
	return rc;
}

/* The S3 client and key, when a bucket is configured. */
static int setup_s3(struct job *job)
{
	char *name;
	int rc;

	if (!job->cfg.s3_bucket)
		return SHB_OK;
	if ((rc = shb_config_s3(&job->cfg, &job->s3)))
		return rc;
	name = backup_name(job);
	job->s3_key = name ? shb_config_s3_key(&job->cfg, name) : NULL;
	free(name);
	return job->s3_key ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");
}

int cmd_create(int argc, char **argv)
{
	struct job job = { .lock_fd = -1, .out_fd = -1, .data_fd = -1, .dir_fd = -1,
			   .staging_fd = -1, .staging_parent_fd = -1 };
	double start = shb_now();
	uint64_t size = 0;
	int rc, code;

	pthread_mutex_init(&job.mu, NULL);
	pthread_cond_init(&job.cv, NULL);
	if ((code = parse_args(&job, argc, argv)) != SHB_OPTS_RUN)
		goto out;
	code = SHB_EXIT_USAGE;
	if ((rc = shb_config_load(&job.cfg)) || (rc = lock_timeout(&job))
	    || (rc = load_recipients(&job)))
		goto fail;
	code = SHB_EXIT_PREFLIGHT;
	if ((rc = preflight(&job)) || (rc = setup_s3(&job))) {
		code = job.fail_code ? job.fail_code : code;
		goto fail;
	}
	if ((rc = create_tmp(&job)))
		goto fail;
	code = SHB_EXIT_SNAPSHOT;
	if ((rc = write_archive(&job, &size)) || (rc = publish(&job)))
		goto fail;
	code = SHB_EXIT_UPLOAD;
	if (job.s3 && (rc = upload(&job, size))) {
		shb_error("%s (the local backup is kept: %s)", shb_errmsg(), job.final_path);
		if (job.prune)
			prune(&job, 0);
		goto out;
	}
	print_summary(&job, size, shb_now() - start);
	if (job.prune)
		prune(&job, 1);
	write_metrics(&job, size, shb_now() - start);
	code = SHB_EXIT_OK;
	goto out;
fail:
	shb_error("%s", shb_errmsg());
out:
	job_free(&job);
	return code;
}
