/*
 * Helpers shared by the shbackup commands (cli.h): messages, usage
 * errors, progress lines, and how --from names a backup.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "cli.h"
#include "options.h"
#include "util.h"

static int progress_shown;

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
	shb_progress_done();
	fputs(prefix, stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void shb_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage("error: ", fmt, ap);
	va_end(ap);
}

void shb_warning(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage("warning: ", fmt, ap);
	va_end(ap);
}

_Static_assert(SHB_EXIT_USAGE == SHB_OPTS_USAGE, "a usage error exits the same everywhere");

int shb_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	int code;

	shb_progress_done();
	va_start(ap, fmt);
	code = shb_options_vusage(usage, fmt, ap);
	va_end(ap);
	return code;
}

void shb_json_string(const char *s)
{
	struct shb_buf b = SHB_BUF_INIT;

	/* Out of memory prints null: still valid JSON. */
	if (shb_json_quote(&b, s))
		fputs("null", stdout);
	else
		fwrite(b.data, 1, b.len, stdout);
	shb_buf_free(&b);
}

int shb_show_progress(void)
{
	return isatty(STDERR_FILENO);
}

void shb_progress_line(const char *fmt, ...)
{
	va_list ap;

	if (!shb_show_progress())
		return;
	fputs("\r\033[K", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
	progress_shown = 1;
}

void shb_progress_bytes(double *last, const char *verb, const char *what, uint64_t done,
			uint64_t total)
{
	char a[32], b[32];
	double now = shb_now();

	if (done != total && now - *last < 0.1)
		return;
	*last = now;
	shb_human_size(done, a, sizeof(a));
	shb_human_size(total, b, sizeof(b));
	shb_progress_line("%s %s: %s / %s", verb, what, a, b);
}

void shb_progress_done(void)
{
	if (!progress_shown)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	progress_shown = 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && !strcmp(s + n - k, suffix);
}

int shb_from_is_path(const char *from)
{
	return strchr(from, '/') || ends_with(from, ".tar.gz") || ends_with(from, ".tar.gz.age");
}

int shb_check_from(const char *usage, const char *from)
{
	if (!*from)
		return shb_usage_error(usage, "--from needs a backup: 'latest', a timestamp, or a path");
	return SHB_EXIT_OK;
}

void shb_warn_ignored(const struct shb_catalog *cat)
{
	if (cat->ignored == 1)
		shb_warning("ignoring '%s' in the backup dir: not a regular file (a symlink is "
			    "never followed there)", cat->ignored_name);
	else if (cat->ignored)
		shb_warning("ignoring %zu entries in the backup dir that are not regular files, "
			    "'%s' first (a symlink is never followed there)", cat->ignored,
			    cat->ignored_name);
	if (cat->shadowed)
		shb_warning("ignoring '%s'%s: another backup of the same second exists (the local "
			    "one wins, then the encrypted one), and create never writes both",
			    cat->shadowed_name, cat->shadowed > 1 ? " and others like it" : "");
}

void shb_warn_future(const struct shb_catalog *cat)
{
	time_t now = time(NULL);

	shb_warn_ignored(cat);

	for (size_t i = 0; i < cat->n; i++)
		if (shb_backup_time_in_future(cat->items[i].time, now))
			shb_warning("backup %s (%s) is dated in the future: 'latest' skips it and prune "
				    "keeps it; check the clock that made it", cat->items[i].ts,
				    shb_backup_source(&cat->items[i]));
}

/* Exit code of restore and verify when nothing matches --from. */
#define EXIT_NOT_FOUND 3

const struct shb_backup *shb_pick_backup(const struct shb_catalog *cat, const char *from,
					 int *code)
{
	const struct shb_backup *hit;
	size_t n = shb_catalog_match(cat, from, &hit);
	struct stat st;
	int is_file;

	if (!strcmp(from, "latest"))
		shb_warn_future(cat);
	else
		shb_warn_ignored(cat);
	if (n == 1)
		return hit;
	if (n == 0) {
		/* A bare word is never a path (shb_from_is_path): say how to mean one. */
		is_file = stat(from, &st) == 0;
		*code = EXIT_NOT_FOUND;
		shb_error("no backup matches '%s'%s%s%s", from,
			  !cat->n ? " (there are no backups)"
			  : shb_catalog_count_future(cat, time(NULL)) == cat->n
				  ? " (every backup is dated in the future)" : "",
			  is_file ? "; for the file, write ./" : "", is_file ? from : "");
		return NULL;
	}
	*code = SHB_EXIT_USAGE;
	shb_error("'%s' matches %zu backups; say which:", from, n);
	for (size_t i = 0; i < cat->n; i++)
		if (strstr(cat->items[i].name, from))
			fprintf(stderr, "  %s (%s)\n", cat->items[i].ts, shb_backup_source(&cat->items[i]));
	return NULL;
}
