/*
 * age keys: recipients ("age1...") and identities ("AGE-SECRET-KEY-1..."),
 * their bech32 text, new key pairs, recipient lists and files, and the
 * identity file with ssh's permission checks.  Secrets are wiped when a
 * list grows or is freed, and never quoted in a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "age.h"
#include "age_impl.h"
#include "error.h"

#define RECIPIENT_HRP "age"
#define IDENTITY_HRP "age-secret-key-"
#define KEY_FILE_MAX (1u << 20)  /* a recipients or identity file larger is refused */

/*
 * A recipient that is a low-order point would make every file key it is
 * given wrap to an all-zero shared secret: refused when it is read, as age
 * does, not when the first archive is written.
 */
static int check_point(const unsigned char pub[32], const char *s)
{
	static const unsigned char probe[32] = { 0x48 };  /* any scalar: clamped, it kills order 8 */
	unsigned char shared[32];
	int rc = shb_age_x25519(probe, pub, shared);

	OPENSSL_cleanse(shared, sizeof(shared));
	if (rc == SHB_EFORMAT)
		return shb_fail(SHB_EINVAL, "'%.12s...' is not a usable age recipient (a low-order "
				"X25519 point)", s);
	return rc;
}

int shb_age_parse_recipient(const char *s, struct shb_age_key *key)
{
	char hrp[16];
	size_t n;

	if (strlen(s) != SHB_AGE_RECIPIENT_LEN - 1 || shb_bech32_decode(s, hrp, sizeof(hrp),
		key->pub, 32, &n) || n != 32 || strcmp(hrp, RECIPIENT_HRP)
	    || strncmp(s, "age1", 4))
		return shb_fail(SHB_EINVAL, "'%.12s...' is not an age recipient (age1...)", s);
	memset(key->secret, 0, 32);
	return check_point(key->pub, s);
}

int shb_age_parse_identity(const char *s, struct shb_age_key *key)
{
	char hrp[24];
	size_t n;
	int rc;

	if (strlen(s) != SHB_AGE_IDENTITY_LEN - 1 || strncmp(s, "AGE-SECRET-KEY-1", 16)
	    || shb_bech32_decode(s, hrp, sizeof(hrp), key->secret, 32, &n) || n != 32
	    || strcmp(hrp, IDENTITY_HRP)) {
		OPENSSL_cleanse(key->secret, 32);
		return shb_fail(SHB_EINVAL, "not an age identity (AGE-SECRET-KEY-1...)");
	}
	if ((rc = shb_age_x25519_pub(key->secret, key->pub)))
		OPENSSL_cleanse(key->secret, 32);
	return rc;
}

void shb_age_format_recipient(const struct shb_age_key *key, char out[SHB_AGE_RECIPIENT_LEN])
{
	shb_bech32_encode(RECIPIENT_HRP, key->pub, 32, 0, out, SHB_AGE_RECIPIENT_LEN);
}

void shb_age_format_identity(const struct shb_age_key *key, char out[SHB_AGE_IDENTITY_LEN])
{
	shb_bech32_encode(IDENTITY_HRP, key->secret, 32, 1, out, SHB_AGE_IDENTITY_LEN);
}

int shb_age_keygen(struct shb_age_key *key)
{
	if (RAND_bytes(key->secret, 32) != 1)
		return shb_fail(SHB_ENOMEM, "no random bytes from OpenSSL");
	return shb_age_x25519_pub(key->secret, key->pub);
}

/* Appends key; grows by copying so no secret is left behind in freed memory. */
static int keys_add(struct shb_age_keys *ks, const struct shb_age_key *key)
{
	if (ks->n == ks->alloc) {
		size_t alloc = ks->alloc ? 2 * ks->alloc : 4;
		struct shb_age_key *p = calloc(alloc, sizeof(*p));

		if (!p)
			return shb_fail(SHB_ENOMEM, "out of memory");
		if (ks->n) {
			memcpy(p, ks->keys, ks->n * sizeof(*p));
			OPENSSL_cleanse(ks->keys, ks->n * sizeof(*p));
		}
		free(ks->keys);
		ks->keys = p;
		ks->alloc = alloc;
	}
	ks->keys[ks->n++] = *key;
	return SHB_OK;
}

void shb_age_keys_unique(struct shb_age_keys *ks)
{
	size_t n = 0;

	for (size_t i = 0; i < ks->n; i++) {
		size_t k = 0;

		while (k < n && memcmp(ks->keys[k].pub, ks->keys[i].pub, 32))
			k++;
		if (k == n)
			ks->keys[n++] = ks->keys[i];
	}
	OPENSSL_cleanse(ks->keys + n, (ks->n - n) * sizeof(*ks->keys));
	ks->n = n;
}

void shb_age_keys_free(struct shb_age_keys *ks)
{
	if (ks->keys)
		OPENSSL_cleanse(ks->keys, ks->alloc * sizeof(*ks->keys));
	free(ks->keys);
	memset(ks, 0, sizeof(*ks));
}

int shb_age_recipients_add_list(struct shb_age_keys *ks, const char *list, const char *what)
{
	static const char seps[] = " \t\r\n,";
	struct shb_age_key key;
	char item[128];

	for (const char *p = list; *p;) {
		size_t n = strcspn(p, seps);

		if (n) {
			snprintf(item, sizeof(item), "%.*s", (int)(n < 127 ? n : 127), p);
			if (n > 127)
				return shb_fail(SHB_EINVAL, "%s: '%.12s...' is not an age recipient "
						"(age1...)", what, item);
			if (shb_age_parse_recipient(item, &key))
				return shb_fail(SHB_EINVAL, "%s: %s", what, shb_errmsg());
			if (keys_add(ks, &key))
				return SHB_ENOMEM;
		}
		p += n;
		p += strspn(p, seps);
	}
	return SHB_OK;
}

/* Refuses an identity file others may read, or that is someone else's. */
static int check_private(const char *path, const struct stat *st)
{
	uid_t me = geteuid();

	if (st->st_mode & (S_IRGRP | S_IROTH))
		return shb_fail(SHB_EINVAL, "identity file '%s' is readable by others (mode %04o); "
				"chmod 600 it", path, (unsigned)(st->st_mode & 07777));
	if (st->st_uid != me && me != 0)
		return shb_fail(SHB_EINVAL, "identity file '%s' belongs to uid %u, not to uid %u",
				path, (unsigned)st->st_uid, (unsigned)me);
	return SHB_OK;
}

/*
 * Reads a whole key file (NUL-terminated) into *out; checks it when
 * private (an identity file).  Messages name it as an identity or a
 * recipients file.
 */
static int read_key_file(const char *path, int private, char **out, size_t *len)
{
	const char *what = private ? "identity file" : "recipients file";
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), rc = SHB_OK;
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t r;

	if (fd < 0)
		return shb_fail_errno(SHB_EIO, "cannot open %s '%s'", what, path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
		rc = shb_fail(SHB_EIO, "cannot read %s '%s': not a regular file of at most 1 MiB",
			      what, path);
		goto out;
	}
	if ((private && (rc = check_private(path, &st))))
		goto out;
	if (!(buf = malloc(KEY_FILE_MAX + 1))) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	while (got < KEY_FILE_MAX && (r = read(fd, buf + got, KEY_FILE_MAX - got)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = shb_fail_errno(SHB_EIO, "cannot read %s '%s'", what, path);
			OPENSSL_cleanse(buf, got);
			free(buf);
			goto out;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	if (memchr(buf, '\0', got)) {
		rc = shb_fail(SHB_EINVAL, "%s '%s' holds a NUL byte: not a key file", what, path);
		OPENSSL_cleanse(buf, got);
		free(buf);
		goto out;
	}
	*out = buf;
	*len = got;
out:
	close(fd);
	return rc;
}

/*
 * The next line of a key file at *p (cut in place, blanks around it and a
 * CR removed), skipping blank lines and '#' comments; NULL at the end.
 * *lineno counts every line.
 */
static char *next_key_line(char **p, size_t *lineno)
{
	while (**p) {
		char *line = *p, *nl = strchr(line, '\n'), *end;

		*p = nl ? nl + 1 : line + strlen(line);
		if (nl)
			*nl = '\0';
		++*lineno;
		line += strspn(line, " \t");
		end = line + strlen(line);
		while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*line && *line != '#')
			return line;
	}
	return NULL;
}

/*
 * The keys of a recipients file (secret 0) or an identity file (secret 1),
 * all of them or none: a bad line is named by number (a recipient is
 * quoted in part, a secret never), and everything read is wiped.
 */
static int load_keys(struct shb_age_keys *ks, const char *path, int secret)
{
	struct shb_age_key key;
	size_t len = 0, lineno = 0, before = ks->n;
	char *buf = NULL, *p, *line;
	int rc;

	if ((rc = read_key_file(path, secret, &buf, &len)))
		return rc;
	p = buf;
	while (!rc && (line = next_key_line(&p, &lineno))) {
		if (secret && shb_age_parse_identity(line, &key))
			rc = shb_fail(SHB_EINVAL, "identity file '%s': line %zu is not an age "
				      "identity (AGE-SECRET-KEY-1...)", path, lineno);
		else if (!secret && shb_age_parse_recipient(line, &key))
			rc = shb_fail(SHB_EINVAL, "%s:%zu: %s", path, lineno, shb_errmsg());
		else
			rc = keys_add(ks, &key);
		OPENSSL_cleanse(&key, sizeof(key));
	}
	if (!rc && secret && ks->n == before)
		rc = shb_fail(SHB_EINVAL, "identity file '%s' holds no age identity", path);
	if (rc && ks->n > before) {  /* all of the file or nothing */
		OPENSSL_cleanse(ks->keys + before, (ks->n - before) * sizeof(*ks->keys));
		ks->n = before;
	}
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rc;
}

int shb_age_recipients_add_file(struct shb_age_keys *ks, const char *path)
{
	return load_keys(ks, path, 0);
}

int shb_age_identities_load(struct shb_age_keys *ks, const char *path)
{
	return load_keys(ks, path, 1);
}
