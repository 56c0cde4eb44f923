/*
 * shbackup verify: a restore drill without the restore.  Every db of a
 * backup is opened inside the archive through the read-only VFS (vfs.h), so
 * nothing is extracted and, for S3, only the pages SQLite reads are
 * fetched; it must pass integrity_check, match its sha256 in the index,
 * and report its page and row counts.  With --quick, the sampled check of
 * btree.h replaces all three, so a large db in S3 costs a few percent of its
 * archive.  secrets.json must parse as JSON.  A snapshot directory is
 * checked the same way through plain read-only opens.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "btree.h"
#include "age.h"
#include "catalog.h"
#include "cli.h"
#include "config.h"
#include "entry_hash.h"
#include "error.h"
#include "input.h"
#include "layout.h"
#include "metrics.h"
#include "options.h"
#include "reader.h"
#include "repo.h"
#include "vfs.h"

static const char usage[] =
	"shbackup verify [--from latest|<timestamp>|<archive>|<snapshot dir>] [--all]\n"
	"                       [--quick] [--json] [--metrics-file PATH]";

enum { EXIT_NOT_FOUND = 3, EXIT_FAILED = 4 };

/* Random root-to-leaf paths per b-tree with --quick, besides the outermost two. */
#define QUICK_PATHS 4

struct opts {
	const char *from, *metrics;
	int all, quick, json;
};

/* One backup being checked; what is printed about it. */
struct check {
	const struct opts *o;
	const char *name, *source;
	int ok, first;
	int nokey;  /* the archive is encrypted and no identity opens it */
};

/* What a check of one backup gives cmd_verify: ok, failed, or no key for it. */
enum { CHECK_FAILED = 0, CHECK_OK = 1, CHECK_NO_KEY = 2 };

static int outcome(const struct check *c)
{
	return c->ok ? CHECK_OK : c->nokey ? CHECK_NO_KEY : CHECK_FAILED;
}

/* The reader an open (rc) left in *r for c: NULL, and c->nokey noted, when it failed. */
static struct shb_reader *opened(struct check *c, int rc, struct shb_reader **r)
{
	c->nokey = rc == SHB_EKEY;
	return rc ? NULL : *r;
}

/* --- output ----------------------------------------------------------------- */

static void begin(struct check *c)
{
	if (c->o->json) {
		printf("{\"backup\": ");
		shb_json_string(c->name);
		printf(", \"source\": \"%s\", \"files\": [", c->source);
	} else if (!c->o->all) {
		printf("verify %s (%s)\n", c->name, c->source);
	}
}

/*
 * Reports one file: ok, or failed with why; detail (counts: JSON members
 * with --json, else text) may be NULL.
 */
static void file_result(struct check *c, const char *rel, const char *why, long long pages,
			const char *detail)
{
	if (why)
		c->ok = 0;
	if (c->o->json) {
		printf("%s\n  {\"path\": ", c->first++ ? "," : "");
		shb_json_string(rel);
		printf(", \"ok\": %s", why ? "false" : "true");
		if (why) {
			printf(", \"error\": ");
			shb_json_string(why);
		}
		if (pages >= 0)
			printf(", \"pages\": %lld", pages);
		if (detail)
			printf(", %s", detail);
		printf("}");
	} else if (!c->o->all) {
		printf("  %-28s %-6s %s\n", rel, why ? "FAILED" : "ok", why ? why : detail ? detail : "");
	} else if (why) {
		fprintf(stderr, "%s: %s: %s\n", c->name, rel, why);
	}
}

static void end(struct check *c)
{
	if (c->o->json)
		printf("\n], \"ok\": %s}", c->ok ? "true" : "false");
	else if (c->o->all)
		printf("%-40s %-6s %s\n", c->name, c->source, c->ok ? "ok" : "FAILED");
	else
		printf("result: %s\n", c->ok ? "ok" : "FAILED");
}

/* --- checks on an open db ----------------------------------------------------- */

/* --quick: the sampled b-tree check of btree.h; no rows counted. */
static void quick_db(struct check *c, sqlite3 *db, const char *rel)
{
	struct shb_btree_report r;
	char line[512];

	if (shb_btree_sample(db, QUICK_PATHS, &r)) {
		snprintf(line, sizeof(line), "sampled check failed: %s", shb_errmsg());
		file_result(c, rel, line, -1, NULL);
		return;
	}
	if (c->o->json)
		snprintf(line, sizeof(line), "\"btrees\": %lld, \"sampled_pages\": %lld", r.trees,
			 r.sampled);
	else
		snprintf(line, sizeof(line), "%lld pages; %lld b-trees, %lld pages sampled", r.pages,
			 r.trees, r.sampled);
	file_result(c, rel, NULL, r.pages, line);
}

/* PRAGMA integrity_check: true if "ok", else the failure is reported for rel. */
static int integrity_ok(struct check *c, sqlite3 *db, const char *rel)
{
	sqlite3_stmt *st = NULL;
	char first[256] = "", line[512];

	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK
	    && sqlite3_step(st) == SQLITE_ROW)
		snprintf(first, sizeof(first), "%s", (const char *)sqlite3_column_text(st, 0));
	else
		snprintf(first, sizeof(first), "%s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	if (!strcmp(first, "ok"))
		return 1;
	snprintf(line, sizeof(line), "integrity_check failed: %s", first);
	file_result(c, rel, line, -1, NULL);
	return 0;
}

/* integrity_check, page count and rows per table of db. */
static void check_db(struct check *c, sqlite3 *db, const char *rel)
{
	sqlite3_stmt *st = NULL, *cnt = NULL;
	struct shb_buf detail = SHB_BUF_INIT, plain = SHB_BUF_INIT;
	char line[512];
	long long pages = -1;

	if (c->o->quick) {
		quick_db(c, db, rel);
		return;
	}
	if (!integrity_ok(c, db, rel))
		return;
	if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &st, NULL) == SQLITE_OK
	    && sqlite3_step(st) == SQLITE_ROW)
		pages = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
			   -1, &st, NULL);
	shb_buf_add(&detail, "\"tables\": {", 11);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		char *q = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", t);
		long long rows = -1;

		if (q && sqlite3_prepare_v2(db, q, -1, &cnt, NULL) == SQLITE_OK
		    && sqlite3_step(cnt) == SQLITE_ROW)
			rows = sqlite3_column_int64(cnt, 0);
		sqlite3_finalize(cnt);
		sqlite3_free(q);
		/* Table names are the db's own: anything may be in them. */
		if (plain.len)
			shb_buf_add(&detail, ", ", 2);
		shb_json_quote(&detail, t ? t : "");
		snprintf(line, sizeof(line), ": %lld", rows);
		shb_buf_add(&detail, line, strlen(line));
		if (plain.len)
			shb_buf_add(&plain, ", ", 2);
		shb_buf_add(&plain, t ? t : "", t ? strlen(t) : 0);
		snprintf(line, sizeof(line), " %lld", rows);
		shb_buf_add(&plain, line, strlen(line));
	}
	sqlite3_finalize(st);
	shb_buf_add(&detail, "}", 1);
	snprintf(line, sizeof(line), "%lld pages; ", pages);
	struct shb_buf text = SHB_BUF_INIT;
	shb_buf_add(&text, line, strlen(line));
	shb_buf_add(&text, plain.data, plain.len);
	file_result(c, rel, NULL, pages, shb_buf_str(c->o->json ? &detail : &text));
	shb_buf_free(&detail);
	shb_buf_free(&plain);
	shb_buf_free(&text);
}

/* secrets.json must be JSON: the check restore makes too (input.h). */
static const char *json_problem(const unsigned char *p, size_t n)
{
	return shb_secrets_check(p, n, "secrets.json") ? shb_errmsg() : NULL;
}

/* --- an archive ------------------------------------------------------------------ */

static int keep_piece(void *ctx, const unsigned char *p, size_t len, uint64_t off)
{
	(void)off;
	return shb_buf_add(ctx, p, len);
}

/* Reads entry e whole: its sha256 (when the index has one) and, if keep, the bytes. */
static int read_entry(struct shb_reader *r, const struct shb_entry *e, int hash,
		      struct shb_buf *keep, int *sha_ok)
{
	unsigned char sum[32];
	int rc = shb_entry_hash_read(r, e, 4u << 20, keep ? keep_piece : NULL, keep, sum);

	*sha_ok = !hash || rc || !memcmp(sum, e->sha256, 32);
	return rc;
}

static void check_archive_file(struct check *c, struct shb_reader *r,
			       const struct shb_layout_file *f)
{
	const struct shb_entry *e = &shb_reader_index(r)->entries[f->raw];
	int hash = shb_reader_seekable(r), sha_ok = 1;
	struct shb_buf bytes = SHB_BUF_INIT;
	sqlite3 *db;

	if (f->kind == SHB_FILE_SECRETS) {
		if (e->size > SHB_SECRETS_MAX)
			file_result(c, f->rel, "larger than the limit for secrets.json", -1, NULL);
		else if (read_entry(r, e, hash, &bytes, &sha_ok))
			file_result(c, f->rel, shb_errmsg(), -1, NULL);
		else
			file_result(c, f->rel, !sha_ok ? "sha256 mismatch"
				    : json_problem(bytes.data, bytes.len), -1,
				    c->o->json ? NULL : "valid JSON");
		shb_buf_free(&bytes);
		return;
	}
	if (hash && !c->o->quick && read_entry(r, e, 1, NULL, &sha_ok)) {
		file_result(c, f->rel, shb_errmsg(), -1, NULL);
		return;
	}
	if (!sha_ok) {
		file_result(c, f->rel, "sha256 mismatch with the index", -1, NULL);
		return;
	}
	if (shb_vfs_open(r, e, &db)) {
		file_result(c, f->rel, shb_errmsg(), -1, NULL);
		return;
	}
	check_db(c, db, f->rel);
	sqlite3_close(db);
}

/* Checks every file of the archive open in r (taken); NULL: it did not open (shb_errmsg). */
static void check_archive(struct check *c, struct shb_reader *r)
{
	struct shb_layout l = { 0 };
	int rc;

	if (!r) {
		file_result(c, "(archive)", shb_errmsg(), -1, NULL);
		return;
	}
	/* An S3 object's header copy opened it: its own header must say the same. */
	if ((rc = shb_age_source_check_head(shb_reader_source(r)))
	    || (rc = shb_layout_from_index(shb_reader_index(r), &l)))
		file_result(c, "(archive)", shb_errmsg(), -1, NULL);
	for (size_t i = 0; !rc && i < l.n; i++)
		check_archive_file(c, r, &l.files[i]);
	shb_layout_free(&l);
	shb_reader_close(r);
}

/* --- a snapshot directory ----------------------------------------------------------- */

/* Whether db at path has committed pages still in a non-empty -wal file. */
static int wal_pending(const char *path)
{
	char *wal = shb_aprintf("%s-wal", path);
	struct stat st;
	int pending = wal && stat(wal, &st) == 0 && st.st_size > 0;

	free(wal);
	return pending;
}

/* One db of a directory, read through the default VFS. */
static void check_dir_db(struct check *c, const char *path, const char *rel)
{
	const struct opts *o = c->o;
	struct opts full = *o;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		file_result(c, rel, db ? sqlite3_errmsg(db) : "cannot open", -1, NULL);
	} else {
		/* The sampled check reads the main file raw: with a -wal, check fully. */
		full.quick = 0;
		if (o->quick && wal_pending(path))
			c->o = &full;
		check_db(c, db, rel);
		c->o = o;
	}
	sqlite3_close(db);
}

static void check_dir_file(struct check *c, const char *dir, const struct shb_layout_file *f)
{
	char *path = shb_aprintf("%s/%s", dir, f->rel);

	if (!path) {
		file_result(c, f->rel, "out of memory", -1, NULL);
	} else if (f->kind == SHB_FILE_SECRETS) {
		file_result(c, f->rel, shb_secrets_check_file(path, f->rel) ? shb_errmsg() : NULL, -1,
			    c->o->json ? NULL : "valid JSON");
	} else {
		check_dir_db(c, path, f->rel);
	}
	free(path);
}

/*
 * A directory is listed as restore lists it (input.h): every app, and any
 * error reading the layout (an unreadable apps/) fails the check rather
 * than leaving apps out.
 */
static void check_dir(struct check *c, const char *dir)
{
	struct shb_input *in;
	const struct shb_layout *l;

	if (shb_input_open_path(dir, NULL, &in)) {
		file_result(c, "(directory)", shb_errmsg(), -1, NULL);
		return;
	}
	l = shb_input_layout(in);
	for (size_t i = 0; i < l->n; i++)
		check_dir_file(c, dir, &l->files[i]);
	shb_input_close(in);
}

/* --- the command ------------------------------------------------------------------- */

static const struct shb_command_doc doc = {
	.usage = usage,
	.intro =
	"Check backups without extracting them: every db is opened inside the archive\n"
	"(for S3, only the pages read are fetched) and must pass PRAGMA integrity_check\n"
	"and match its sha256 in the index; secrets.json must be valid JSON.  Prints\n"
	"page and row counts per db.\n",
	.outro = "An encrypted backup (.tar.gz.age) is read with BACKUP_AGE_IDENTITY_FILE.\n"
	"exit codes: 0 all good, 1 usage, 2 preflight (also: no identity opens an\n"
	"encrypted backup), 3 not found, 4 a check failed\n",
};

/* The flags into o: SHB_OPTS_RUN, or the exit code (after --help, 0). */
static int parse_args(struct opts *o, int argc, char **argv)
{
	const struct shb_option opts[] = {
		SHB_OPT_STRING(0, "from", &o->from, "X",
			       "latest (default; newest not dated in the future), a\n"
			       "timestamp or unique part of one, an archive file, or\n"
			       "a snapshot directory; a path only if it has a '/' or\n"
			       "ends in .tar.gz"),
		SHB_OPT_FLAG(0, "all", &o->all, "check every backup and print a table"),
		SHB_OPT_FLAG(0, "quick", &o->quick,
			     "a sampled check instead: the header, the schema and a\n"
			     "few root-to-leaf paths of every b-tree; no sha256, no\n"
			     "row counts; on S3 a few percent of a large archive"),
		SHB_OPT_FLAG(0, "json", &o->json, "machine-readable report"),
		SHB_OPT_STRING(0, "metrics-file", &o->metrics, "PATH",
			       "write Prometheus textfile metrics (also\n"
			       "BACKUP_METRICS_FILE)"),
		SHB_OPT_END,
	};
	int code;

	if ((code = shb_options_parse(&doc, opts, argc, argv)) != SHB_OPTS_RUN)
		return code;
	if (o->all && o->from)
		return shb_usage_error(usage, "--all and --from exclude each other");
	if (!o->from)
		o->from = "latest";
	if ((code = shb_check_from(usage, o->from)))
		return code;
	return SHB_OPTS_RUN;
}

/* Checks one catalog backup, local copy preferred: a CHECK_* outcome. */
static int check_backup(const struct opts *o, const struct shb_backup *b, struct shb_repo *repo)
{
	struct check c = { o, b->name, b->local_path ? "local" : "s3", 1, 0, 0 };
	struct shb_reader *r = NULL;

	begin(&c);
	check_archive(&c, opened(&c, shb_repo_open_reader(repo, b, SHB_COPY_PREFERRED, &r, NULL), &r));
	end(&c);
	return outcome(&c);
}

/*
 * Checks the archive or snapshot dir at path: a CHECK_* outcome, or -1
 * with *code set when it could not start.  *repo is opened for its
 * identities only (no catalog, no cache); the caller closes it.
 */
static int check_path(const struct opts *o, const char *path, const struct shb_config *cfg,
		      struct shb_repo **repo, int *code)
{
	struct check c = { o, path, "path", 1, 0, 0 };
	struct shb_reader *r = NULL;
	struct stat st;

	if (shb_repo_open(cfg, NULL, 0, repo)) {
		shb_error("%s", shb_errmsg());
		*code = SHB_EXIT_PREFLIGHT;
		return -1;
	}

	if (stat(path, &st) < 0) {
		*code = EXIT_NOT_FOUND;
		shb_error("cannot verify '%s': %s", path, strerror(errno));
		return 0;
	}
	begin(&c);
	if (S_ISDIR(st.st_mode))
		check_dir(&c, path);
	else
		check_archive(&c, opened(&c, shb_repo_open_path_reader(path,
					 shb_repo_identities(*repo), &r), &r));
	end(&c);
	return outcome(&c);
}

static void write_metrics(const char *path, int ok, const struct shb_catalog *cat)
{
	struct shb_metric m[4] = {
		{ "shbackup_verify_last_timestamp_seconds", "When the last verify finished.", NULL,
		  (double)time(NULL) },
		{ "shbackup_verify_last_success", "1 if the last verify passed, else 0.", NULL, ok },
	};
	size_t n = 2;

	if (cat) {
		shb_metrics_counts(cat, m + 2);
		n = 4;
	}
	if (shb_metrics_write(path, m, n))
		shb_warning("%s", shb_errmsg());
}

static int load_catalog(struct shb_config *cfg, struct shb_repo **repo, struct shb_catalog *cat,
			int all)
{
	if (shb_repo_load(cfg, cfg->cache_dir, cfg->cache_size, repo, cat))
		return SHB_EXIT_PREFLIGHT;
	if (all)
		shb_warn_future(cat);  /* --from latest warns as it picks */
	return SHB_EXIT_OK;
}

int cmd_verify(int argc, char **argv)
{
	struct opts o = { 0 };
	struct shb_config cfg = { 0 };
	struct shb_catalog cat = { 0 };
	struct shb_repo *repo = NULL;
	const struct shb_backup *b;
	const char *metrics;
	int code, ok = 1, failed = 0, have_cat = 0, res;

	if ((code = parse_args(&o, argc, argv)) != SHB_OPTS_RUN)
		return code;
	code = SHB_EXIT_OK;
	if (shb_config_load(&cfg)) {
		shb_error("%s", shb_errmsg());
		return SHB_EXIT_USAGE;
	}
	metrics = o.metrics ? o.metrics : getenv("BACKUP_METRICS_FILE");
	if (!o.all && shb_from_is_path(o.from)) {
		if ((res = check_path(&o, o.from, &cfg, &repo, &code)) < 0)
			goto out;
		ok = res == CHECK_OK;
		failed = res == CHECK_FAILED;
	} else if ((code = load_catalog(&cfg, &repo, &cat, o.all))) {
		shb_error("%s", shb_errmsg());
		goto out;
	} else if (o.all) {
		have_cat = 1;
		if (o.json)
			printf("[");
		for (size_t i = 0; i < cat.n; i++) {
			if (o.json && i)
				printf(",\n");
			res = check_backup(&o, &cat.items[i], repo);
			ok &= res == CHECK_OK;
			failed |= res == CHECK_FAILED;
		}
		if (o.json)
			printf("]\n");
		if (!cat.n)
			fprintf(stderr, "no backups to verify\n");
	} else if ((b = shb_pick_backup(&cat, o.from, &code))) {
		have_cat = 1;
		res = check_backup(&o, b, repo);
		ok = res == CHECK_OK;
		failed = res == CHECK_FAILED;
	}
	if (o.json && !o.all && !code)
		printf("\n");
	if (!code)
		/* No identity for a backup is preflight, unless a real check failed too. */
		code = ok ? SHB_EXIT_OK : failed ? EXIT_FAILED : SHB_EXIT_PREFLIGHT;
	if (metrics && code != SHB_EXIT_USAGE)
		write_metrics(metrics, code == SHB_EXIT_OK, have_cat ? &cat : NULL);
out:
	shb_catalog_free(&cat);
	shb_repo_close(repo);
	shb_config_free(&cfg);
	return code;
}
