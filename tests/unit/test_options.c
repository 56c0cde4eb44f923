/*
 * Unit tests of options.c: parsing from a table, the generated --help,
 * the usage errors (unknown option, missing value, out of range, extra
 * argument), callbacks, and the one number parser.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "options.h"

static const struct shb_command_doc doc = {
	.usage = "demo [--level N] [--name S] [-q]",
	.intro = "Does nothing, for the tests.\n",
	.outro = "exit codes: 0 ok, 1 usage\n",
};

struct values {
	int level, quiet, calls;
	const char *name;
	const char *seen;
};

static int on_tag(const struct shb_option *opt, const char *arg)
{
	struct values *v = opt->value;

	v->calls++;
	v->seen = arg;
	return strcmp(arg, "stop") ? SHB_OPTS_RUN : 7;
}

/* Parses the NULL-terminated words after "demo" into *v (zeroed first). */
static int parse(struct values *v, const char *const *words)
{
	char *argv[16] = { "demo" };
	int argc = 1;
	const struct shb_option opts[] = {
		SHB_OPT_INT(0, "level", &v->level, "N", 1, 9, "a level 1..9"),
		SHB_OPT_STRING(0, "name", &v->name, "S", "a name\nover two lines"),
		SHB_OPT_FLAG('q', "quiet", &v->quiet, "say less"),
		SHB_OPT_CALLBACK('t', "tag", v, "T", "call back", on_tag),
		SHB_OPT_END,
	};

	memset(v, 0, sizeof(*v));
	while (*words && argc < 15)
		argv[argc++] = (char *)*words++;
	argv[argc] = NULL;
	return shb_options_parse(&doc, opts, argc, argv);
}

#define WORDS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void test_parse(void)
{
	struct values v;

	CHECK(parse(&v, WORDS("--level", "3", "-q", "--name=x")) == SHB_OPTS_RUN);
	CHECK(v.level == 3 && v.quiet && v.name && !strcmp(v.name, "x"));
	CHECK(parse(&v, WORDS("--level=9", "--quiet")) == SHB_OPTS_RUN);
	CHECK(v.level == 9 && v.quiet && !v.name);
	CHECK(parse(&v, WORDS("-t", "a", "--tag", "b")) == SHB_OPTS_RUN);
	CHECK(v.calls == 2 && !strcmp(v.seen, "b"));
	CHECK(parse(&v, WORDS("--tag", "stop", "--bogus")) == 7);
	CHECK(v.calls == 1);
	/* a second parse starts afresh */
	CHECK(parse(&v, WORDS("-q")) == SHB_OPTS_RUN && v.quiet && !v.level);
}

static void test_errors(void)
{
	struct values v;

	CHECK(parse(&v, WORDS("--bogus")) == SHB_OPTS_USAGE);
	CHECK(!strcmp(shb_errmsg(), "unknown option '--bogus'"));
	CHECK(parse(&v, WORDS("-x")) == SHB_OPTS_USAGE);
	CHECK(!strcmp(shb_errmsg(), "unknown option '-x'"));
	CHECK(parse(&v, WORDS("--level")) == SHB_OPTS_USAGE);
	CHECK(!strcmp(shb_errmsg(), "option '--level' requires a value"));
	CHECK(parse(&v, WORDS("--level", "10")) == SHB_OPTS_USAGE);
	CHECK(!strcmp(shb_errmsg(), "invalid --level '10': expected a whole number from 1 to 9"));
	CHECK(parse(&v, WORDS("--level", "+6")) == SHB_OPTS_USAGE);
	CHECK(parse(&v, WORDS("--level", "4294967299")) == SHB_OPTS_USAGE);
	CHECK(parse(&v, WORDS("-q", "extra")) == SHB_OPTS_USAGE);
	CHECK(!strcmp(shb_errmsg(), "unexpected argument 'extra'"));
}

static void test_help(void)
{
	static const char want[] =
		"usage: demo [--level N] [--name S] [-q]\n\n"
		"Does nothing, for the tests.\n\n"
		"options:\n"
		"  --level N    a level 1..9\n"
		"  --name S     a name\n"
		"               over two lines\n"
		"  -q, --quiet  say less\n"
		"  -t, --tag T  call back\n"
		"  -h, --help   show this help\n\n"
		"exit codes: 0 ok, 1 usage\n";
	struct values v;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	FILE *saved = stdout;

	if (!f) {
		CHECK(!"open_memstream");
		return;
	}
	stdout = f;
	CHECK(parse(&v, WORDS("--level", "3", "--help", "--bogus")) == 0);
	stdout = saved;
	fclose(f);
	CHECK(!strcmp(text, want));
	if (strcmp(text, want))
		fprintf(stderr, "got:\n%s", text);
	free(text);
}

static void test_numbers(void)
{
	long long n = 0;
	double d = 0;

	CHECK(!shb_parse_number("-5", SHB_NUM_INT, -10, 10, &n) && n == -5);
	CHECK(shb_parse_number("-5", SHB_NUM_UINT, -10, 10, &n));
	CHECK(shb_parse_number(" 5", SHB_NUM_INT, 0, 10, &n));
	CHECK(shb_parse_number("5 ", SHB_NUM_INT, 0, 10, &n));
	CHECK(shb_parse_number("", SHB_NUM_INT, 0, 10, &n));
	CHECK(shb_parse_number("0x10", SHB_NUM_INT, 0, 100, &n));
	CHECK(shb_parse_number("1e3", SHB_NUM_INT, 0, 10000, &n));
	CHECK(shb_parse_number("18446744073709551617", SHB_NUM_UINT, 0, 100, &n));
	CHECK(!shb_parse_number("0755", SHB_NUM_OCTAL, 0, 0777, &n) && n == 0755);
	CHECK(shb_parse_number("0999", SHB_NUM_OCTAL, 0, 0777, &n));
	CHECK(shb_parse_number("01000", SHB_NUM_OCTAL, 0, 0777, &n));
	CHECK(!shb_parse_number("16M", SHB_NUM_SIZE, 0, 1ll << 40, &n) && n == 16ll << 20);
	CHECK(!shb_parse_number("1t", SHB_NUM_SIZE, 0, 1ll << 40, &n) && n == 1ll << 40);
	CHECK(!shb_parse_number("1234", SHB_NUM_SIZE, 0, 1ll << 40, &n) && n == 1234);
	CHECK(shb_parse_number("2T", SHB_NUM_SIZE, 0, 1ll << 40, &n));
	CHECK(shb_parse_number("5X", SHB_NUM_SIZE, 0, 1ll << 40, &n));
	CHECK(shb_parse_number("5MB", SHB_NUM_SIZE, 0, 1ll << 40, &n));
	CHECK(shb_parse_number("99999999999G", SHB_NUM_SIZE, 0, 1ll << 40, &n));
	CHECK(shb_parse_number("-5", SHB_NUM_SIZE, 0, 1ll << 40, &n));
	CHECK(!shb_parse_seconds("0.5", 0, 10, &d) && d == 0.5);
	CHECK(!shb_parse_seconds("1e3", 0, 1e7, &d) && d == 1000);
	CHECK(shb_parse_seconds("nan", 0, 1e7, &d));
	CHECK(shb_parse_seconds("inf", 0, 1e7, &d));
	CHECK(shb_parse_seconds("-1", 0, 1e7, &d));
	CHECK(shb_parse_seconds("", 0, 1e7, &d));
	CHECK(shb_parse_seconds("5s", 0, 1e7, &d));
}

int main(void)
{
	test_parse();
	test_errors();
	test_help();
	test_numbers();
	return check_done("test_options");
}
