/*
 * Output helpers shared by the shbackup commands (cli.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
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

int shb_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage("error: ", fmt, ap);
	va_end(ap);
	fprintf(stderr, "usage: %s\n", usage);
	return SHB_EXIT_USAGE;
}

void shb_json_string(const char *s)
{
	struct shb_buf b = { 0 };

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
