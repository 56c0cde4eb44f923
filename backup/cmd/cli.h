/*
 * The command layer of shbackup: each command parses its flags from its
 * own option table (options.h), runs on the layers below, and returns the
 * process exit code that its --help and README's "Exit codes" give.
 * Messages to the user go through the helpers here, so they all read
 * "error: ..." / "warning: ..." on stderr, git style.
 *
 * Layer: cmd, the top of backup/; may include every layer below (base,
 * format, s3, sqlite, repo), and nothing includes it but the commands.
 */
#ifndef SHB_CLI_H
#define SHB_CLI_H

#include <stdint.h>

/* Exit codes shared by the commands (README, "Exit codes"). */
enum shb_exit {
	SHB_EXIT_OK = 0,
	SHB_EXIT_USAGE = 1,
	SHB_EXIT_PREFLIGHT = 2,
	SHB_EXIT_SNAPSHOT = 3,   /* create: snapshot failed */
	SHB_EXIT_UPLOAD = 4,     /* create: upload failed */
};

/*
 * The commands, called by main() with argv[0] the command's name.  Each
 * parses its options, runs, prints what it has to say and returns the
 * process exit code (SHB_EXIT_OK after --help).  They own nothing the
 * caller must free.
 */
int cmd_create(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_keygen(int argc, char **argv);

struct shb_catalog;
struct shb_backup;
/*
 * How restore and verify read --from X: X is a path (archive file or
 * snapshot dir) only when it contains a '/' or ends in ".tar.gz" or
 * ".tar.gz.age"; otherwise it names a backup of the catalog ("latest" or a
 * part of a name), whatever files the current directory holds.
 */
int shb_from_is_path(const char *from);
/* SHB_EXIT_OK, or prints why --from X is unusable ("") and returns 1. */
int shb_check_from(const char *usage, const char *from);
/*
 * The backup --from names in cat ("latest", or a unique part of a name);
 * NULL after printing why, with *code set to 3 (none) or 1 (several).
 * "latest" skips backups dated in the future, with a warning naming them.
 */
const struct shb_backup *shb_pick_backup(const struct shb_catalog *cat, const char *from,
					 int *code);
/*
 * One warning line per backup of cat dated in the future (catalog.h), after
 * shb_warn_ignored()'s: every command's warnings about its listing.
 */
void shb_warn_future(const struct shb_catalog *cat);
/* One warning line if the backup dir held entries that are not regular files. */
void shb_warn_ignored(const struct shb_catalog *cat);

/* Prints "error: <fmt>" / "warning: <fmt>" on stderr. */
void shb_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void shb_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Prints "error: <fmt>" and "usage: <usage>" on stderr (shb_options_vusage,
 * after clearing a progress line) and returns SHB_EXIT_USAGE: for the
 * checks a command makes once its options are parsed.
 */
int shb_usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes s to stdout as a JSON string literal, quotes included. */
void shb_json_string(const char *s);

/* True when stderr is a terminal, so progress lines make sense. */
int shb_show_progress(void);
/* Replaces the current progress line on stderr (no-op when not a TTY). */
void shb_progress_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * "<verb> <what>: 1.2 MiB / 3.4 MiB" as the progress line, at most ten times
 * a second (*last holds the time of the previous one) and always at the end.
 */
void shb_progress_bytes(double *last, const char *verb, const char *what, uint64_t done,
			uint64_t total);
/* Clears the progress line, if one is shown. */
void shb_progress_done(void);

#endif
