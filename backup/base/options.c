/*
 * Options from one table (options.h): getopt_long does the scanning, with
 * a struct option array and an optstring generated from the table; the
 * help text is generated from the same table.  Also the one parser of
 * numbers a user writes.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "options.h"

/* The most options one command may have (getopt_long needs a fixed array). */
#define MAX_OPTIONS 32
/* getopt_long's answer for table entry i: above every short option's char. */
#define LONG_BASE 256

int shb_options_vusage(const char *usage, const char *fmt, va_list ap)
{
	char msg[1024];
	va_list copy;

	va_copy(copy, ap);
	vsnprintf(msg, sizeof(msg), fmt, copy);
	va_end(copy);
	shb_fail(SHB_EINVAL, "%s", msg);
	fputs("error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nusage: %s\n", usage);
	return SHB_OPTS_USAGE;
}

static int usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = shb_options_vusage(usage, fmt, ap);
	va_end(ap);
	return rc;
}

static int takes_value(const struct shb_option *o)
{
	return o->type == SHB_OPTION_STRING || o->type == SHB_OPTION_INT
	       || o->type == SHB_OPTION_CALLBACK;
}

/* "-x, --name ARGH" or "--name ARGH" into out; its length. */
static int spec_of(const struct shb_option *o, char *out, size_t n)
{
	char shrt[8] = "";

	if (o->short_name)
		snprintf(shrt, sizeof(shrt), "-%c, ", o->short_name);
	return snprintf(out, n, "%s--%s%s%s", shrt, o->name, o->argh ? " " : "",
			o->argh ? o->argh : "");
}

/* One option's lines: the spec padded to col, then help, continuations indented. */
static void help_line(FILE *f, const char *spec, const char *help, int col)
{
	const char *nl;

	fprintf(f, "  %-*s", col - 2, spec);
	while ((nl = strchr(help, '\n'))) {
		fprintf(f, "%.*s\n%*s", (int)(nl - help), help, col, "");
		help = nl + 1;
	}
	fprintf(f, "%s\n", help);
}

void shb_options_help(FILE *f, const struct shb_command_doc *doc,
		      const struct shb_option *opts)
{
	static const struct shb_option help = SHB_OPT_FLAG('h', "help", NULL, "show this help");
	char spec[128];
	int width = spec_of(&help, spec, sizeof(spec));

	for (const struct shb_option *o = opts; o->type; o++) {
		int n = spec_of(o, spec, sizeof(spec));

		width = n > width ? n : width;
	}
	fprintf(f, "usage: %s\n\n%s\noptions:\n", doc->usage, doc->intro);
	for (const struct shb_option *o = opts; o->type; o++) {
		spec_of(o, spec, sizeof(spec));
		help_line(f, spec, o->help, width + 4);
	}
	spec_of(&help, spec, sizeof(spec));
	help_line(f, spec, help.help, width + 4);
	if (doc->outro)
		fprintf(f, "\n%s", doc->outro);
}

/* Stores one option's value as its type says: SHB_OPTS_RUN or an exit code. */
static int take(const struct shb_command_doc *doc, const struct shb_option *o, const char *arg)
{
	long long n;

	switch (o->type) {
	case SHB_OPTION_FLAG:
		*(int *)o->value = 1;
		return SHB_OPTS_RUN;
	case SHB_OPTION_STRING:
		*(const char **)o->value = arg;
		return SHB_OPTS_RUN;
	case SHB_OPTION_INT:
		if (shb_parse_number(arg, SHB_NUM_INT, o->lo, o->hi, &n))
			return usage_error(doc->usage, "invalid --%s '%s': expected a whole number "
					   "from %lld to %lld", o->name, arg, o->lo, o->hi);
		*(int *)o->value = (int)n;
		return SHB_OPTS_RUN;
	default:
		return o->cb(o, arg);
	}
}

/*
 * The getopt_long tables for opts: longs (help last, then the end) and
 * shorts (":" first, so a missing value reads ':' and not '?').
 */
static int build(const struct shb_option *opts, struct option *longs, char *shorts)
{
	size_t i, s = 0;

	shorts[s++] = ':';
	shorts[s++] = 'h';
	for (i = 0; opts[i].type; i++) {
		if (i == MAX_OPTIONS)
			return shb_fail(SHB_EINVAL, "more than %d options", MAX_OPTIONS);
		longs[i] = (struct option){ opts[i].name, takes_value(&opts[i]) ? required_argument
					    : no_argument, NULL, LONG_BASE + (int)i };
		if (opts[i].short_name) {
			shorts[s++] = opts[i].short_name;
			if (takes_value(&opts[i]))
				shorts[s++] = ':';
		}
	}
	longs[i++] = (struct option){ "help", no_argument, NULL, 'h' };
	longs[i] = (struct option){ NULL, 0, NULL, 0 };
	shorts[s] = '\0';
	return SHB_OK;
}

/* The table entry getopt_long's answer c stands for, or NULL. */
static const struct shb_option *entry(const struct shb_option *opts, int c)
{
	if (c >= LONG_BASE)
		return &opts[c - LONG_BASE];
	for (const struct shb_option *o = opts; o->type; o++)
		if (o->short_name == c)
			return o;
	return NULL;
}

int shb_options_parse(const struct shb_command_doc *doc, const struct shb_option *opts,
		      int argc, char **argv)
{
	struct option longs[MAX_OPTIONS + 2];
	char shorts[2 * MAX_OPTIONS + 3];
	const struct shb_option *o;
	int c, rc;

	if (build(opts, longs, shorts))
		return usage_error(doc->usage, "%s", shb_errmsg());
	opterr = 0;
	optind = 0;  /* GNU: start afresh, whatever was parsed before */
	while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		if (c == 'h') {
			shb_options_help(stdout, doc, opts);
			return 0;
		}
		if (c == ':')
			return usage_error(doc->usage, "option '%s' requires a value", argv[optind - 1]);
		if (c == '?' || !(o = entry(opts, c)))
			return usage_error(doc->usage, "unknown option '%s'", argv[optind - 1]);
		if ((rc = take(doc, o, optarg)) != SHB_OPTS_RUN)
			return rc;
	}
	if (optind < argc)
		return usage_error(doc->usage, "unexpected argument '%s'", argv[optind]);
	return SHB_OPTS_RUN;
}

/* --- numbers ------------------------------------------------------------------- */

/* The binary shift of a size suffix at *end (advanced past it), or -1. */
static int suffix_shift(char **end)
{
	static const char units[] = "KMGT";
	const char *u;

	if (!**end)
		return 0;
	if (!(u = strchr(units, **end & ~0x20)) || !*u)
		return -1;
	(*end)++;
	return 10 * (int)(u - units + 1);
}

int shb_parse_number(const char *s, enum shb_num_kind kind, long long lo, long long hi,
		     long long *out)
{
	const char *d = s + (kind == SHB_NUM_INT && *s == '-');
	char *end;
	long long n;
	unsigned long long u;
	int shift = 0;

	/* strtoll alone would take " 5", "+5" and "" and clamp 2^64 silently. */
	if (*d < '0' || *d > '9')
		return -1;
	errno = 0;
	if (kind == SHB_NUM_INT) {
		n = strtoll(s, &end, 10);
	} else {
		u = strtoull(s, &end, kind == SHB_NUM_OCTAL ? 8 : 10);
		if (kind == SHB_NUM_SIZE && (shift = suffix_shift(&end)) < 0)
			return -1;
		if (u > (unsigned long long)LLONG_MAX >> shift)
			return -1;
		n = (long long)(u << shift);
	}
	if (errno || *end || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

int shb_parse_seconds(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	/* Written so that NaN, which compares false with everything, fails too. */
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}
