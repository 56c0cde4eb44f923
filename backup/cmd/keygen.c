/*
 * shbackup keygen: a new age identity (age.h) in age-keygen's file format,
 * so no other tool is needed to turn encryption on, and its public key.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "age.h"
#include "cli.h"
#include "error.h"
#include "options.h"
#include "util.h"

static const char usage[] = "shbackup keygen [-o FILE]";

static const struct shb_command_doc doc = {
	.usage = usage,
	.intro =
	"Make a new age identity (X25519 key pair) for encrypted backups.\n"
	"With -o, write it to FILE (mode 0600; an existing FILE is never\n"
	"overwritten) and print its public key (age1...) on stdout: give that\n"
	"to the backup host as BACKUP_AGE_RECIPIENTS, keep FILE for restore,\n"
	"verify and the mount (BACKUP_AGE_IDENTITY_FILE, -o identity=FILE).\n"
	"Without -o, print the identity file on stdout and the public key on\n"
	"stderr, as age-keygen does.  Files from age-keygen work the same.\n",
	.outro = "exit codes: 0 ok, 1 usage, 2 FILE exists or cannot be written\n",
};

/* The identity file's text, as age-keygen writes it. */
static void identity_text(const struct shb_age_key *key, char *out, size_t len)
{
	char id[SHB_AGE_IDENTITY_LEN], pub[SHB_AGE_RECIPIENT_LEN], when[32];
	time_t now = time(NULL);
	struct tm tm;

	shb_age_format_identity(key, id);
	shb_age_format_recipient(key, pub);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	snprintf(out, len, "# created: %s\n# public key: %s\n%s\n", when, pub, id);
	OPENSSL_cleanse(id, sizeof(id));
}

/* Writes text to a new file at path, 0600, never replacing one. */
static int write_new(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return shb_fail_errno(SHB_EIO, "cannot create identity file '%s'%s", path,
				      errno == EEXIST ? " (it exists; it is never overwritten)" : "");
	rc = shb_write_all(fd, text, strlen(text), path);
	if (!rc && fsync(fd) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot fsync '%s'", path);
	if (close(fd) < 0 && !rc)
		rc = shb_fail_errno(SHB_EIO, "cannot write '%s'", path);
	if (rc)
		unlink(path);
	return rc;
}

int cmd_keygen(int argc, char **argv)
{
	const char *out = NULL;
	const struct shb_option opts[] = {
		SHB_OPT_STRING('o', "output", &out, "FILE", "write the identity to FILE (0600)"),
		SHB_OPT_END,
	};
	char text[256], pub[SHB_AGE_RECIPIENT_LEN];
	struct shb_age_key key;
	int code;

	if ((code = shb_options_parse(&doc, opts, argc, argv)) != SHB_OPTS_RUN)
		return code;
	shb_no_core_dumps();  /* a fresh secret key is in memory from here on */
	if (shb_age_keygen(&key)) {
		shb_error("%s", shb_errmsg());
		return SHB_EXIT_PREFLIGHT;
	}
	identity_text(&key, text, sizeof(text));
	shb_age_format_recipient(&key, pub);
	OPENSSL_cleanse(&key, sizeof(key));
	code = SHB_EXIT_PREFLIGHT;
	/* The public key is shown only once its identity is safely out. */
	if (!out) {
		if (fputs(text, stdout) < 0 || fflush(stdout))
			shb_error("cannot write the identity to stdout: %s", strerror(errno));
		else if (fprintf(stderr, "Public key: %s\n", pub) > 0)
			code = SHB_EXIT_OK;
	} else if (write_new(out, text)) {
		shb_error("%s", shb_errmsg());
	} else if (printf("%s\n", pub) < 0 || fflush(stdout)) {
		shb_error("identity written to '%s', but its public key could not be printed: "
			  "%s (it is in the file's '# public key' line)", out, strerror(errno));
	} else {
		code = SHB_EXIT_OK;
	}
	OPENSSL_cleanse(text, sizeof(text));
	return code;
}
