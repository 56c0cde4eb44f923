/*
 * shbackup list: the backups in the catalog, newest first, with the number
 * of apps each holds, read from its index alone (a tail read per archive).
 * shbackup prune: retention on demand, with --dry-run.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cli.h"
#include "config.h"
#include "error.h"
#include "prune.h"
#include "reader.h"

static const char list_usage[] = "shbackup list [--json]";
static const char prune_usage[] = "shbackup prune [--dry-run] [--days N]";

/* Apps in the backup per its index; -1 when it has none (foreign archive). */
static long count_apps(const struct shb_backup *b)
{
	struct shb_source *src;
	struct shb_reader *r;
	long n;

	if (!b->local_path || shb_source_open_file(b->local_path, &src))
		return -1;
	if (shb_reader_open(src, &r))
		return -1;
	n = (long)shb_index_count_apps(shb_reader_index(r));
	shb_reader_close(r);
	return n;
}

static void print_json(const struct shb_catalog *cat)
{
	printf("[");
	for (size_t i = 0; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		long apps = count_apps(b);

		printf("%s\n  {\"timestamp\": \"%s\", \"time\": %lld, \"name\": ", i ? "," : "",
		       b->ts, (long long)b->time);
		shb_json_string(b->name);
		printf(", \"source\": \"local\", \"size\": %llu, \"local_path\": ",
		       (unsigned long long)b->local_size);
		shb_json_string(b->local_path);
		if (apps < 0)
			printf(", \"apps\": null}");
		else
			printf(", \"apps\": %ld}", apps);
	}
	printf("%s]\n", cat->n ? "\n" : "");
}

static void print_table(const struct shb_catalog *cat)
{
	printf("%-17s  %10s  %4s  %-6s  %s\n", "TIMESTAMP", "SIZE", "APPS", "SOURCE", "NAME");
	for (size_t i = 0; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		long apps = count_apps(b);
		char size[32], napps[24];

		shb_human_size(b->local_size, size, sizeof(size));
		if (apps < 0)
			snprintf(napps, sizeof(napps), "?");
		else
			snprintf(napps, sizeof(napps), "%ld", apps);
		printf("%-17s  %10s  %4s  %-6s  %s\n", b->ts, size, napps, "local", b->name);
	}
}

/* Loads configuration and catalog; returns an exit code. */
static int load(struct shb_config *cfg, struct shb_catalog *cat)
{
	if (shb_config_load(cfg)) {
		shb_error("%s", shb_errmsg());
		return SHB_EXIT_USAGE;
	}
	if (shb_catalog_add_local(cat, cfg->local_dir)) {
		shb_error("%s", shb_errmsg());
		return SHB_EXIT_PREFLIGHT;
	}
	return SHB_EXIT_OK;
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct shb_config cfg = { 0 };
	struct shb_catalog cat = { 0 };
	int c, json = 0, code;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j') {
			json = 1;
		} else if (c == 'h') {
			printf("usage: %s\n\nList backups, newest first: timestamp, size, apps, source.\n"
			       "Reads BACKUP_LOCAL_DIR (default <BACKUP_DATA_DIR>/backups).\n\n"
			       "  --json   machine-readable output\n", list_usage);
			return SHB_EXIT_OK;
		} else {
			return shb_usage_error(list_usage, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return shb_usage_error(list_usage, "unexpected argument '%s'", argv[optind]);
	if ((code = load(&cfg, &cat)))
		goto out;
	if (json)
		print_json(&cat);
	else if (cat.n)
		print_table(&cat);
	else
		fprintf(stderr, "no backups in '%s'\n", cfg.local_dir);
out:
	shb_catalog_free(&cat);
	shb_config_free(&cfg);
	return code;
}

static void report(void *ctx, const struct shb_backup *b, int failed)
{
	int dry_run = *(int *)ctx;

	if (failed)
		shb_warning("%s", shb_errmsg());
	else
		printf("%s %s\n", dry_run ? "would delete" : "deleted", b->name);
}

int cmd_prune(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "days", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct shb_config cfg = { 0 };
	struct shb_catalog cat = { 0 };
	int c, dry_run = 0, code, days = -1;
	char *end;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "nh", opts, NULL)) != -1) {
		if (c == 'n') {
			dry_run = 1;
		} else if (c == 'd') {
			days = (int)strtol(optarg, &end, 10);
			if (*end || end == optarg || days < 0)
				return shb_usage_error(prune_usage, "invalid --days '%s'", optarg);
		} else if (c == 'h') {
			printf("usage: %s\n\nDelete local backups older than BACKUP_RETENTION_DAYS "
			       "(or --days N),\njudged by the timestamp in their names. The newest "
			       "backup is always kept;\n0 days keeps everything.\n\n"
			       "  -n, --dry-run  print what would be deleted, delete nothing\n"
			       "  --days N       retention period in days\n\n"
			       "exit codes: 0 ok, 1 usage, 2 a backup could not be deleted\n",
			       prune_usage);
			return SHB_EXIT_OK;
		} else {
			return shb_usage_error(prune_usage, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return shb_usage_error(prune_usage, "unexpected argument '%s'", argv[optind]);
	if ((code = load(&cfg, &cat)))
		goto out;
	if (days < 0)
		days = cfg.retention_days;
	if (shb_prune_local(&cat, days, time(NULL), dry_run, report, &dry_run))
		code = SHB_EXIT_PREFLIGHT;
out:
	shb_catalog_free(&cat);
	shb_config_free(&cfg);
	return code;
}
