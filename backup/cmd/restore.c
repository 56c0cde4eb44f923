/*
 * shbackup restore: put a backup back into a DATA_DIR without ever making
 * things worse.  In order: resolve the backup, check its layout, extract it
 * into a private staging dir inside the target (so the last step is a
 * rename), verify every db, confirm, save the current state to
 * <target>/pre-restore-<UTC>/, then move each file into place atomically.
 * Until the first rename the target is untouched; after it, every file is
 * wholly old or wholly new, and the rollback copy is complete before any
 * file is replaced.  The target may belong to a user racing us, so the
 * staging and rollback dirs are used only through fds held from their
 * creation, never by path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "catalog.h"
#include "cli.h"
#include "config.h"
#include "restore.h"
#include "error.h"
#include "input.h"
#include "options.h"
#include "repo.h"
#include "snapshot.h"
#include "util.h"

static const char usage[] =
	"shbackup restore --from <latest|timestamp|archive|snapshot dir> --target DIR\n"
	"                        [--yes] [--force] [--dry-run] [--app NAME]...\n"
	"   or: shbackup restore --list";

/* --- flags --------------------------------------------------------------- */

static const struct shb_command_doc doc = {
	.usage = usage,
	.intro =
	"Restore a backup into a StreamHub DATA_DIR: verify every db (PRAGMA\n"
	"integrity_check, and sha256 where the archive has an index), ask to type the\n"
	"target path, save the current state to <target>/pre-restore-<UTC>/, then\n"
	"replace streamhub.db, apps/<app>/app.db and secrets.json atomically.\n"
	"Stop the core first.\n",
	.outro =
	"environment: as 'shbackup create' (BACKUP_LOCAL_DIR, BACKUP_S3_*, ...), and\n"
	"BACKUP_AGE_IDENTITY_FILE to decrypt an encrypted backup (.tar.gz.age)\n\n"
	"exit codes: 0 ok, 1 usage, 2 preflight (target missing or in use, cannot\n"
	"write it, a symlink or mount point where restore writes, no room, no\n"
	"identity that opens an encrypted backup), 3 backup\n"
	"not found, 4 verify failed (bad layout, sha256, integrity_check,\n"
	"secrets.json), 5 aborted by user\n\n"
	"New files take the target's owner: restore into a dir you made (mktemp -d),\n"
	"not one another user can write.\n",
};

/* --app NAME: one more app to restore, into the struct restore at opt->value. */
static int add_app(const struct shb_option *opt, const char *name)
{
	struct restore *r = opt->value;
	char **grown;

	if (!shb_app_name_ok(name))
		return shb_usage_error(usage, "invalid app name '%s'", name);
	if (!(grown = realloc(r->apps, (r->napps + 1) * sizeof(*grown))))
		return SHB_EXIT_PREFLIGHT;
	r->apps = grown;
	r->apps[r->napps++] = (char *)name;
	return SHB_OPTS_RUN;
}

/* --list: the command is 'shbackup list' instead. */
static int run_list(const struct shb_option *opt, const char *arg)
{
	char *list_argv[] = { "list", NULL };

	(void)opt, (void)arg;
	return cmd_list(1, list_argv);
}

/* The flags into r: SHB_OPTS_RUN, or the exit code (after --help or --list). */
static int parse_args(struct restore *r, int argc, char **argv)
{
	const struct shb_option opts[] = {
		SHB_OPT_STRING(0, "from", &r->from, "X",
			       "latest (newest, local or S3, not dated in the future), a\n"
			       "timestamp or unique part of one, a .tar.gz file (ours or\n"
			       "plain), or a snapshot directory (an extracted backup, or one\n"
			       "inside a mounted shbackupfs); X is a path only if it has a\n"
			       "'/' or ends in .tar.gz (write ./dir for a dir here)"),
		SHB_OPT_STRING(0, "target", &r->target, "DIR",
			       "the DATA_DIR to restore into (must exist)"),
		SHB_OPT_FLAG('y', "yes", &r->yes, "do not ask for confirmation (automation only)"),
		SHB_OPT_FLAG(0, "force", &r->force, "restore even if a target db is in use"),
		SHB_OPT_FLAG(0, "dry-run", &r->dry_run, "print what would be done and change nothing"),
		SHB_OPT_CALLBACK(0, "app", r, "NAME", "restore only this app's db (repeatable)",
				 add_app),
		SHB_OPT_CALL_FLAG(0, "list", NULL, "list backups (as 'shbackup list')", run_list),
		SHB_OPT_END,
	};
	int code;

	if ((code = shb_options_parse(&doc, opts, argc, argv)) != SHB_OPTS_RUN)
		return code;
	if (!r->from)
		return shb_usage_error(usage, "--from is required (e.g. --from latest)");
	if ((code = shb_check_from(usage, r->from)))
		return code;
	if (!r->target)
		return shb_usage_error(usage, "--target is required");
	return SHB_OPTS_RUN;
}

/* --- which backup ---------------------------------------------------------- */

static int open_input(struct restore *r, int *code)
{
	struct shb_catalog cat = { 0 };
	const struct shb_backup *b;
	int rc;

	if (shb_from_is_path(r->from)) {
		/* No catalog, no cache: the repository only for its identities. */
		*code = SHB_EXIT_PREFLIGHT;
		if ((rc = shb_repo_open(&r->cfg, NULL, 0, &r->repo)))
			return rc;
		rc = shb_input_open_path(r->from, shb_repo_identities(r->repo), &r->in);
		*code = rc == SHB_ENOTFOUND ? EXIT_NOT_FOUND
			: rc == SHB_EKEY ? SHB_EXIT_PREFLIGHT : EXIT_VERIFY;
		r->backup_name = strdup(r->from);
		return rc;
	}
	*code = SHB_EXIT_PREFLIGHT;
	if ((rc = shb_repo_load(&r->cfg, r->cfg.cache_dir, r->cfg.cache_size, &r->repo, &cat)))
		goto out;
	if (!(b = shb_pick_backup(&cat, r->from, code))) {
		rc = SHB_ENOTFOUND;
		shb_fail(rc, "%s", "");
		goto out;
	}
	r->backup_name = strdup(b->name);
	*code = EXIT_VERIFY;
	rc = b->local_path ? shb_input_open_backup_file(b, shb_repo_identities(r->repo), &r->in)
		: shb_input_open_s3(r->repo, b, r->scratch, &r->in);
	/* A plain archive downloaded into the target: no room there is preflight, as locally. */
	if ((rc == SHB_EIO && !b->local_path) || rc == SHB_EKEY)
		*code = SHB_EXIT_PREFLIGHT;
out:
	shb_catalog_free(&cat);
	return rc;
}

/* Marks the layout files to restore: all, or the --app ones. */
static int choose(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);

	if (!(r->want = calloc(l->n + 1, 1)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	for (size_t i = 0; i < l->n; i++)
		r->want[i] = !r->napps;
	for (size_t k = 0; k < r->napps; k++) {
		size_t i;

		for (i = 0; i < l->n; i++)
			if (l->files[i].app && !strcmp(l->files[i].app, r->apps[k]))
				break;
		if (i == l->n)
			return shb_fail(SHB_ENOTFOUND, "app '%s' is not in backup '%s'", r->apps[k],
					shb_input_name(r->in));
		r->want[i] = 1;
	}
	return SHB_OK;
}

/*
 * 1 if the db at path is in WAL mode (header bytes 18-19 = 2), 0 if in
 * rollback-journal mode, -1 if there is no db there.
 */
static int db_is_wal(const char *path)
{
	unsigned char h[20];
	/* O_NONBLOCK: a fifo swapped in by the target's owner must not hang us. */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : pread(fd, h, sizeof(h), 0);

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16))
		return -1;
	return h[18] == 2 && h[19] == 2;
}

/*
 * Backups hold dbs in rollback-journal mode, but the core expects the mode
 * it runs with: each restored db gets the mode of the db it replaces, and a
 * new one the mode of the target's other dbs (streamhub.db first).
 */
static int plan_journal(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	char **apps = NULL;
	size_t napps = 0;
	int rc;

	if (!(r->wal = calloc(l->n + 1, 1)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	if ((rc = target_apps(r->tp, &apps, &napps)))
		return rc;
	for (size_t i = 0; i <= napps; i++) {
		char *p = shb_aprintf("%s/%s", r->tp, i ? apps[i - 1] : "streamhub.db");
		int wal = p ? db_is_wal(p) : -1;

		free(p);
		if (wal >= 0) {
			r->default_wal = wal;
			break;
		}
	}
	free_list(apps, napps);
	for (size_t i = 0; i < l->n; i++) {
		char *p;
		int wal;

		if (!r->want[i] || l->files[i].kind == SHB_FILE_SECRETS)
			continue;
		if (!(p = shb_aprintf("%s/%s", r->tp, l->files[i].rel)))
			return shb_fail(SHB_ENOMEM, "out of memory");
		wal = db_is_wal(p);
		r->wal[i] = wal < 0 ? (unsigned char)r->default_wal : (unsigned char)wal;
		free(p);
	}
	return SHB_OK;
}

/* --- confirmation ----------------------------------------------------------- */

/* Returns 0 when the user typed the target path on the terminal. */
static int confirm(struct restore *r)
{
	char line[4096];
	FILE *tty;
	size_t n;

	if (r->yes)
		return 0;
	if (!(tty = fopen("/dev/tty", "r+"))) {
		shb_error("no terminal to confirm on; pass --yes to restore without confirmation");
		return -1;
	}
	print_plan(r, tty);
	fprintf(tty, "Stop the core first. Type the target path (%s) to confirm: ", r->target);
	fflush(tty);
	if (!fgets(line, sizeof(line), tty)) {
		fclose(tty);
		shb_error("aborted: no confirmation");
		return -1;
	}
	fclose(tty);
	n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (strcmp(line, r->target)) {
		shb_error("aborted: '%s' is not the target path", line);
		return -1;
	}
	return 0;
}

/* --- the command ------------------------------------------------------------- */

static void report(struct restore *r)
{
	const struct shb_layout *l = shb_input_layout(r->in);
	size_t napps, files = 0;
	char **apps;

	target_apps(r->tp, &apps, &napps);  /* only to name what was kept */

	for (size_t i = 0; i < napps; i++)
		if (!shb_layout_find(l, apps[i]))
			shb_warning("'%s' is not in the backup and was left as it was", apps[i]);
	free_list(apps, napps);
	for (size_t i = 0; i < l->n; i++)
		files += r->want[i];
	printf("restored %s into %s (%zu file%s)\n", r->backup_name, r->target, files,
	       files == 1 ? "" : "s");
	if (r->rollback)
		printf("the previous state is in %s\n", r->rollback);
	else
		printf("the target held no previous data, so there is no rollback copy\n");
	printf("next: start the core (docker compose start core, or systemctl start <its unit>)\n"
	       "      and check its health: curl -fsS http://127.0.0.1:3020/api/v1/health\n");
}

static int exit_code_for(int rc)
{
	switch (rc) {
	case SHB_ECORRUPT: case SHB_EFORMAT: return EXIT_VERIFY;
	case SHB_ENOTFOUND: return EXIT_NOT_FOUND;
	default: return SHB_EXIT_PREFLIGHT;
	}
}

static void cleanup(struct restore *r)
{
	shb_progress_done();
	if (r->staging_fd >= 0) {
		remove_own_dir(r, r->staging_name, r->staging_fd);
		close(r->staging_fd);
	}
	if (r->dry_run && r->scratch)
		shb_remove_tree(r->scratch);
	if (r->target_fd >= 0)
		close(r->target_fd);
	shb_input_close(r->in);
	shb_repo_close(r->repo);
	shb_config_free(&r->cfg);
	free(r->staging);
	free(r->staging_name);
	free(r->tp);
	free(r->scratch);
	free(r->rollback);
	free(r->backup_name);
	free(r->want);
	free(r->wal);
	free(r->apps);
}

int cmd_restore(int argc, char **argv)
{
	struct restore r = { .target_fd = -1, .staging_fd = -1 };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int code, rc;

	r.threads = ncpu > 0 ? (int)ncpu : 1;
	if ((code = parse_args(&r, argc, argv)) != SHB_OPTS_RUN)
		goto out;
	code = SHB_EXIT_USAGE;
	if ((rc = shb_config_load(&r.cfg)))
		goto fail;
	code = SHB_EXIT_PREFLIGHT;
	if ((rc = shb_sqlite_fd_paths()) || (rc = prepare_target(&r)) || (rc = open_input(&r, &code)))
		goto fail;
	if ((rc = choose(&r))) {
		code = exit_code_for(rc);
		goto fail;
	}
	code = SHB_EXIT_PREFLIGHT;
	if ((rc = check_target_apps(&r)) || (rc = guard(&r)) || (rc = plan_journal(&r)))
		goto fail;
	if (r.dry_run) {
		print_plan(&r, stdout);
		code = SHB_EXIT_OK;
		goto out;
	}
	if ((rc = extract_and_verify(&r))) {
		code = exit_code_for(rc == SHB_ENOTFOUND ? SHB_EIO : rc);
		goto fail;
	}
	if (confirm(&r)) {
		code = EXIT_ABORTED;
		goto out;
	}
	/* The wait for a confirmation may have been long: check the target again. */
	if ((rc = check_target_top(&r)) || (rc = check_target_apps(&r)) || (rc = guard(&r))
	    || (rc = make_rollback(&r)))
		goto fail;
	if ((rc = replace_all(&r))) {
		/* One line: what failed, that the target is mixed, and where its old state is. */
		if (r.rollback)
			shb_error("%s; the target is partly restored, its previous state is in %s",
				  shb_errmsg(), r.rollback);
		else
			shb_error("%s; the target is partly restored (it held no previous data)",
				  shb_errmsg());
		goto out;
	}
	report(&r);
	code = SHB_EXIT_OK;
	goto out;
fail:
	if (shb_errmsg()[0])
		shb_error("%s", shb_errmsg());
out:
	cleanup(&r);
	return code;
}
