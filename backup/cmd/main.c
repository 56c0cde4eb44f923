/*
 * shbackup: the command table.  Each command parses its flags from its own
 * option table (options.h) and returns the exit code its --help lists
 * (README, "Exit codes"); main only dispatches, and answers --help,
 * -h, help and --version itself.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

struct cmd_struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct cmd_struct commands[] = {
	{ "create", cmd_create, "make a consistent, seekable backup of DATA_DIR" },
	{ "list", cmd_list, "list backups, newest first" },
	{ "prune", cmd_prune, "delete backups older than the retention period" },
	{ "restore", cmd_restore, "verify a backup and put it back into a DATA_DIR" },
	{ "verify", cmd_verify, "check backups inside their archives, without extracting" },
	{ "keygen", cmd_keygen, "make an age identity for encrypted backups" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_usage(FILE *f)
{
	fprintf(f, "usage: shbackup <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'shbackup <command> --help' describes a command, its options and exit codes.\n");
}

int main(int argc, char **argv)
{
	/* Nothing this program creates is for other users. */
	umask(077);
	if (argc < 2) {
		print_usage(stderr);
		return SHB_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		print_usage(stdout);
		return SHB_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("shbackup %s\n", SHB_VERSION);
		return SHB_EXIT_OK;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "error: '%s' is not a shbackup command\n", argv[1]);
	print_usage(stderr);
	return SHB_EXIT_USAGE;
}
