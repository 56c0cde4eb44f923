/*
 * Command-line options from one table, in the spirit of git's
 * parse-options: each command describes its options once (a struct
 * shb_option array built with the SHB_OPT_* macros, ending in
 * SHB_OPT_END), and both the parsing and the --help text come from that
 * description, so they cannot drift apart.  A command's own checks after
 * parsing (a required option) use shb_options_vusage() for the same
 * "error: ... / usage: ..." shape.
 *
 * Also the one parser of numbers given by a user (flags, BACKUP_*
 * variables, mount options): whole numbers, sizes and seconds, each
 * within a range, refusing signs, blanks, garbage and overflow that
 * strtol() and sscanf() would let through.
 *
 * Base layer: options.c includes nothing of the project but error.h.
 */
#ifndef SHB_OPTIONS_H
#define SHB_OPTIONS_H

#include <stdarg.h>
#include <stdio.h>

/* shb_options_parse()'s answer when the command should go on and run. */
#define SHB_OPTS_RUN (-1)
/* The process exit code of a usage error (SHB_EXIT_USAGE of the commands). */
#define SHB_OPTS_USAGE 1

enum shb_opt_type {
	SHB_OPTION_END = 0,     /* ends a table */
	SHB_OPTION_FLAG,        /* no value: sets *(int *)value to 1 */
	SHB_OPTION_STRING,      /* a value: *(const char **)value = the argv string */
	SHB_OPTION_INT,         /* a whole number in [lo, hi] into *(int *)value */
	SHB_OPTION_CALLBACK,    /* a value, handed to cb */
	SHB_OPTION_CALL_FLAG,   /* no value: cb is called with arg NULL */
};

struct shb_option;

/*
 * A callback option's handler: SHB_OPTS_RUN to go on parsing, or the exit
 * code the command returns at once (after printing why, if it failed).
 */
typedef int shb_option_fn(const struct shb_option *opt, const char *arg);

struct shb_option {
	enum shb_opt_type type;
	const char *name;     /* the long name, without "--" */
	char short_name;      /* 0: none */
	void *value;          /* where the value goes (see the types); cb's context */
	const char *argh;     /* the value's name in --help ("N", "PATH"); NULL: none */
	const char *help;     /* may hold '\n': continuation lines, indented */
	long long lo, hi;     /* SHB_OPTION_INT: the range */
	shb_option_fn *cb;    /* SHB_OPTION_CALLBACK, SHB_OPTION_CALL_FLAG */
};

#define SHB_OPT_FLAG(s, l, v, h) { SHB_OPTION_FLAG, (l), (s), (v), NULL, (h), 0, 0, NULL }
#define SHB_OPT_STRING(s, l, v, a, h) { SHB_OPTION_STRING, (l), (s), (v), (a), (h), 0, 0, NULL }
#define SHB_OPT_INT(s, l, v, a, lo, hi, h) \
	{ SHB_OPTION_INT, (l), (s), (v), (a), (h), (lo), (hi), NULL }
#define SHB_OPT_CALLBACK(s, l, ctx, a, h, fn) \
	{ SHB_OPTION_CALLBACK, (l), (s), (ctx), (a), (h), 0, 0, (fn) }
#define SHB_OPT_CALL_FLAG(s, l, ctx, h, fn) \
	{ SHB_OPTION_CALL_FLAG, (l), (s), (ctx), NULL, (h), 0, 0, (fn) }
#define SHB_OPT_END { SHB_OPTION_END, NULL, 0, NULL, NULL, NULL, 0, 0, NULL }

/* A macro's value as a string literal, for defaults quoted in help texts. */
#define SHB_STR(x) SHB_STR_(x)
#define SHB_STR_(x) #x

/* A command: its usage line(s), the text around its option table. */
struct shb_command_doc {
	const char *usage;    /* after "usage: "; continuation lines written in full */
	const char *intro;    /* what the command does, before "options:" */
	const char *outro;    /* after the options: environment, exit codes, notes */
};

/*
 * Parses argv[1..argc-1] (argv[0] is the command's name) against opts,
 * storing values as each entry's type says.  "-h"/"--help" is always
 * known: it prints shb_options_help() to stdout and returns 0.  Values are
 * taken as "--name V", "--name=V" or "-x V"; options and other arguments
 * may come in any order, and no command takes other arguments, so one is
 * an error.  On an unknown option, a missing value, a number out of its
 * range or an extra argument, prints "error: <why>" and "usage: <usage>"
 * to stderr, leaves <why> in shb_errmsg() and returns SHB_OPTS_USAGE.
 * Otherwise returns SHB_OPTS_RUN, or the exit code a callback stopped
 * with.  Stored strings point into argv.  Uses getopt_long (not
 * reentrant: one parse at a time).
 */
int shb_options_parse(const struct shb_command_doc *doc, const struct shb_option *opts,
		      int argc, char **argv);

/*
 * Writes the --help text of doc and opts to f: the usage, the intro, one
 * aligned line per option (then "-h, --help") with its help, the outro.
 */
void shb_options_help(FILE *f, const struct shb_command_doc *doc,
		      const struct shb_option *opts);

/*
 * Prints "error: <fmt...>" then "usage: <usage>" to stderr, leaves the
 * message in shb_errmsg(), and returns SHB_OPTS_USAGE: for the checks a
 * command makes after parsing (a required option, two that exclude each
 * other).
 */
int shb_options_vusage(const char *usage, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* How shb_parse_number() reads its string. */
enum shb_num_kind {
	SHB_NUM_INT,    /* decimal digits, an optional leading '-' */
	SHB_NUM_UINT,   /* decimal digits only */
	SHB_NUM_OCTAL,  /* octal digits only (a umask) */
	SHB_NUM_SIZE,   /* decimal digits and an optional K, M, G or T (x1024^n, any case) */
};

/*
 * The one parser of whole numbers from a user: all of s, as kind says,
 * within [lo, hi], into *out.  0, or -1 if s is empty, has a '+', blanks,
 * other characters, overflows, or is out of range ("4294967297" never
 * wraps to 1, "-5" is never a huge unsigned).  Sets no message: callers
 * name the flag, variable or option in their own words.
 */
int shb_parse_number(const char *s, enum shb_num_kind kind, long long lo, long long hi,
		     long long *out);

/*
 * A number of seconds (a decimal, fractions and exponents allowed) within
 * [lo, hi] into *out.  0, or -1 if malformed, NaN, infinite or out of range.
 */
int shb_parse_seconds(const char *s, double lo, double hi, double *out);

#endif
