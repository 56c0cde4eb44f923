/*
 * shbackup list: the backups in the catalog (local dir and S3 prefix),
 * newest first, with the number of apps each holds, read from its index
 * alone: one tail read per archive, local copy preferred.
 * shbackup prune: retention on demand, with --dry-run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cli.h"
#include "config.h"
#include "error.h"
#include "options.h"
#include "prune.h"
#include "reader.h"
#include "repo.h"

static const char list_usage[] = "shbackup list [--json]";
static const char prune_usage[] = "shbackup prune [--dry-run] [--days N]";

/*
 * Apps in the backup per its index; -1 when it has none (foreign archive)
 * or it is encrypted and no identity opens it.
 */
static long count_apps(const struct shb_backup *b, struct shb_repo *repo)
{
	struct shb_source *src;
	struct shb_reader *r;
	long n;

	if (shb_repo_open_source(repo, b, SHB_COPY_PREFERRED, &src, NULL) || shb_reader_open(src, &r))
		return -1;
	n = (long)shb_index_count_apps(shb_reader_index(r));
	shb_reader_close(r);
	return n;
}

static uint64_t size_of(const struct shb_backup *b)
{
	return b->local_path ? b->local_size : b->s3_size;
}

static void print_json(const struct shb_catalog *cat, struct shb_repo *repo)
{
	printf("[");
	for (size_t i = 0; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		long apps = count_apps(b, repo);

		printf("%s\n  {\"timestamp\": \"%s\", \"time\": %lld, \"name\": ", i ? "," : "",
		       b->ts, (long long)b->time);
		shb_json_string(b->name);
		printf(", \"source\": \"%s\", \"size\": %llu, \"encrypted\": %s",
		       shb_backup_source(b), (unsigned long long)size_of(b),
		       b->encrypted ? "true" : "false");
		printf(", \"local_path\": ");
		b->local_path ? shb_json_string(b->local_path) : (void)printf("null");
		printf(", \"s3_key\": ");
		b->s3_key ? shb_json_string(b->s3_key) : (void)printf("null");
		/* every field in every object: null where there is no S3 copy */
		if (b->s3_key)
			printf(", \"s3_size\": %llu", (unsigned long long)b->s3_size);
		else
			printf(", \"s3_size\": null");
		if (apps < 0)
			printf(", \"apps\": null}");
		else
			printf(", \"apps\": %ld}", apps);
	}
	printf("%s]\n", cat->n ? "\n" : "");
}

static void print_table(const struct shb_catalog *cat, struct shb_repo *repo)
{
	printf("%-17s  %10s  %4s  %-6s  %-9s  %s\n", "TIMESTAMP", "SIZE", "APPS", "SOURCE",
	       "ENCRYPTED", "NAME");
	for (size_t i = 0; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		long apps = count_apps(b, repo);
		char size[32], napps[24];

		shb_human_size(size_of(b), size, sizeof(size));
		if (apps < 0)
			snprintf(napps, sizeof(napps), "?");
		else
			snprintf(napps, sizeof(napps), "%ld", apps);
		printf("%-17s  %10s  %4s  %-6s  %-9s  %s\n", b->ts, size, napps,
		       shb_backup_source(b), b->encrypted ? "yes" : "no", b->name);
	}
}

/*
 * Loads configuration, repository and catalog; returns an exit code.  An
 * unreachable S3 leaves the local part of the catalog and exit code 2.
 */
static int load(struct shb_config *cfg, struct shb_repo **repo, struct shb_catalog *cat)
{
	int code = SHB_EXIT_OK;

	if (shb_config_load(cfg)) {
		shb_error("%s", shb_errmsg());
		return SHB_EXIT_USAGE;
	}
	if (shb_repo_open(cfg, cfg->cache_dir, cfg->cache_size, repo)) {
		shb_error("%s", shb_errmsg());
		return SHB_EXIT_PREFLIGHT;
	}
	if (shb_repo_list_local(*repo, cat)) {
		shb_error("%s", shb_errmsg());
		code = SHB_EXIT_PREFLIGHT;
	}
	if (shb_repo_list_s3(*repo, cat)) {
		shb_error("%s", shb_errmsg());
		code = SHB_EXIT_PREFLIGHT;
	}
	shb_warn_future(cat);
	return code;
}

static const struct shb_command_doc list_doc = {
	.usage = list_usage,
	.intro =
	"List backups, newest first: timestamp, size, apps, source\n"
	"(local, s3 or both), encrypted (yes/no). Reads BACKUP_LOCAL_DIR (default\n"
	"<BACKUP_DATA_DIR>/backups) and, with BACKUP_S3_BUCKET set, the\n"
	"BACKUP_S3_PREFIX in that bucket (see 'shbackup create --help').\n"
	"Apps of an encrypted backup are counted with BACKUP_AGE_IDENTITY_FILE;\n"
	"'?' without an identity that opens it.\n",
	.outro =
	"exit codes: 0 ok, 1 usage, 2 a source could not be read (what could\n"
	"be read is still listed)\n",
};

int cmd_list(int argc, char **argv)
{
	struct shb_config cfg = { 0 };
	struct shb_catalog cat = { 0 };
	struct shb_repo *repo = NULL;
	int json = 0, code;
	const struct shb_option opts[] = {
		SHB_OPT_FLAG(0, "json", &json, "machine-readable output"),
		SHB_OPT_END,
	};

	if ((code = shb_options_parse(&list_doc, opts, argc, argv)) != SHB_OPTS_RUN)
		return code;
	code = load(&cfg, &repo, &cat);
	if (code == SHB_EXIT_USAGE || (code && !cat.n))
		goto out;
	if (json)
		print_json(&cat, repo);
	else if (cat.n)
		print_table(&cat, repo);
	else
		fprintf(stderr, "no backups in '%s'%s\n", cfg.local_dir,
			shb_repo_has_s3(repo) ? " nor in S3" : "");
out:
	shb_catalog_free(&cat);
	shb_repo_close(repo);
	shb_config_free(&cfg);
	return code;
}

static void report(void *ctx, const struct shb_backup *b, const char *where, int event)
{
	int dry_run = *(int *)ctx;

	if (event != SHB_PRUNE_DELETED)
		shb_warning("%s", shb_errmsg());
	else
		printf("%s %s (%s)\n", dry_run ? "would delete" : "deleted", b->name, where);
}

static const struct shb_command_doc prune_doc = {
	.usage = prune_usage,
	.intro =
	"Delete backups older than BACKUP_RETENTION_DAYS (or --days N), locally and\n"
	"in S3 when BACKUP_S3_BUCKET is set, judged by the timestamp in their names.\n"
	"The newest readable backup in each place is always kept;\n"
	"0 days keeps everything.\n"
	"Backups dated more than 10 minutes in the future are never deleted (a warning\n"
	"names them).\n",
	.outro =
	"exit codes: 0 ok, 1 usage, 2 a backup could not be deleted, or a place\n"
	"was skipped (no readable backup there, or S3 unreachable)\n",
};

int cmd_prune(int argc, char **argv)
{
	struct shb_config cfg = { 0 };
	struct shb_catalog cat = { 0 };
	struct shb_repo *repo = NULL;
	int dry_run = 0, code, days = -1;
	const struct shb_option opts[] = {
		SHB_OPT_FLAG('n', "dry-run", &dry_run, "print what would be deleted, delete nothing"),
		SHB_OPT_INT(0, "days", &days, "N", 0, SHB_MAX_RETENTION_DAYS,
			    "retention period in days"),
		SHB_OPT_END,
	};

	if ((code = shb_options_parse(&prune_doc, opts, argc, argv)) != SHB_OPTS_RUN)
		return code;
	/* A partial catalog could make an old copy look like the newest one. */
	if ((code = load(&cfg, &repo, &cat)))
		goto out;
	if (days < 0)
		days = cfg.retention_days;
	if (shb_prune(&cat, days, time(NULL), dry_run, repo, report, &dry_run))
		code = SHB_EXIT_PREFLIGHT;
out:
	shb_catalog_free(&cat);
	shb_repo_close(repo);
	shb_config_free(&cfg);
	return code;
}
