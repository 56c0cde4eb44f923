/*
 * Unit tests of backup/age: the primitives against their RFCs (HKDF-SHA-256
 * RFC 5869 case 1, X25519 RFC 7748 section 6.1), bech32 keys, the writer
 * and the plaintext source round trip at chunk-edge sizes with random range
 * reads, tampering (header, MAC, chunks flipped, swapped, dropped,
 * truncated) with the documented codes and no plaintext of a bad chunk in
 * the caller's buffer, identity files (mode, comments, bad lines), the
 * cctv-age vectors (tests/unit/age_vectors.js dumps them; AGE_VECTORS
 * names the directory) and interop with /usr/bin/age when it is installed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <zlib.h>

#include "age.h"
#include "age_impl.h"
#include "check.h"
#include "error.h"
#include "source.h"
#include "util.h"

static char tmpdir[] = "/tmp/shb-test-age-XXXXXX";

static size_t unhex(const char *s, unsigned char *out)
{
	size_t n = strlen(s) / 2;

	for (size_t i = 0; i < n; i++)
		sscanf(s + 2 * i, "%2hhx", &out[i]);
	return n;
}

static void test_hkdf(void)
{
	unsigned char ikm[22], salt[13], okm[42], want[42];
	char info[11];

	memset(ikm, 0x0b, sizeof(ikm));
	for (int i = 0; i < 13; i++)
		salt[i] = (unsigned char)i;
	for (int i = 0; i < 10; i++)
		info[i] = (char)(0xf0 + i);
	info[10] = '\0';
	unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
	      want);
	CHECK_OK(shb_age_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info, okm, sizeof(okm)));
	CHECK(!memcmp(okm, want, sizeof(want)));
}

static void test_x25519(void)
{
	unsigned char a[32], b[32], apub[32], bpub[32], s1[32], s2[32], want[32], zero[32] = { 0 };

	unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", a);
	unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", b);
	CHECK_OK(shb_age_x25519_pub(a, apub));
	CHECK_OK(shb_age_x25519_pub(b, bpub));
	unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", want);
	CHECK(!memcmp(apub, want, 32));
	unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", want);
	CHECK(!memcmp(bpub, want, 32));
	unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", want);
	CHECK_OK(shb_age_x25519(a, bpub, s1));
	CHECK_OK(shb_age_x25519(b, apub, s2));
	CHECK(!memcmp(s1, want, 32) && !memcmp(s2, want, 32));
	/* The zero point is of low order: an all-zero secret is refused. */
	CHECK(shb_age_x25519(a, zero, s1) == SHB_EFORMAT);
}

static void test_bech32(void)
{
	struct shb_age_key k, k2;
	char r[SHB_AGE_RECIPIENT_LEN], id[SHB_AGE_IDENTITY_LEN], bad[SHB_AGE_IDENTITY_LEN];
	unsigned char data[40];
	char hrp[8], enc[32];
	size_t n;

	CHECK_OK(shb_age_keygen(&k));
	shb_age_format_recipient(&k, r);
	shb_age_format_identity(&k, id);
	CHECK(strlen(r) == SHB_AGE_RECIPIENT_LEN - 1 && !strncmp(r, "age1", 4));
	CHECK(strlen(id) == SHB_AGE_IDENTITY_LEN - 1 && !strncmp(id, "AGE-SECRET-KEY-1", 16));
	CHECK_OK(shb_age_parse_recipient(r, &k2));
	CHECK(!memcmp(k.pub, k2.pub, 32));
	CHECK_OK(shb_age_parse_identity(id, &k2));
	CHECK(!memcmp(k.secret, k2.secret, 32) && !memcmp(k.pub, k2.pub, 32));
	/* A changed character breaks the checksum. */
	memcpy(bad, r, sizeof(r));
	bad[10] = bad[10] == 'q' ? 'p' : 'q';
	CHECK(shb_age_parse_recipient(bad, &k2) == SHB_EINVAL);
	/* Mixed case is refused; all upper case is bech32 but not a recipient. */
	memcpy(bad, r, sizeof(r));
	bad[20] = bad[20] >= 'a' && bad[20] <= 'z' ? (char)(bad[20] - 32) : bad[20];
	bad[5] = 'Q';
	CHECK(shb_bech32_decode(bad, hrp, sizeof(hrp), data, sizeof(data), &n) == -1);
	memcpy(bad, id, sizeof(id));
	bad[30] = (char)(bad[30] | 0x20);
	bad[31] = 'q';
	CHECK(shb_age_parse_identity(bad, &k2) == SHB_EINVAL);
	CHECK(strstr(shb_errmsg(), bad + 16) == NULL);
	/* BIP-173's valid examples. */
	CHECK(shb_bech32_decode("A12UEL5L", hrp, sizeof(hrp), data, sizeof(data), &n) == 0 && n == 0);
	CHECK(shb_bech32_decode("a12uel5l", hrp, sizeof(hrp), data, sizeof(data), &n) == 0);
	CHECK(shb_bech32_encode("a", data, 0, 0, enc, sizeof(enc)) == 0 && !strcmp(enc, "a12uel5l"));
	CHECK(shb_bech32_decode("a12uel5m", hrp, sizeof(hrp), data, sizeof(data), &n) == -1);
}

static struct shb_age_keys ids, rcpts;

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	*len = 0;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	if ((buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Encrypts plain to rcpts in pieces of step bytes; returns the age file's bytes. */
static unsigned char *encrypt_buf(const unsigned char *plain, size_t len, size_t step,
				  size_t *out_len)
{
	char path[128];
	struct shb_age_writer *w = NULL;
	unsigned char *out = NULL;
	int fd;

	snprintf(path, sizeof(path), "%s/enc.age", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_OK(shb_age_writer_open(fd, &rcpts, path, &w));
	for (size_t at = 0; w && at < len; at += step)
		CHECK_OK(shb_age_write(w, plain + at, len - at < step ? len - at : step));
	if (w) {
		CHECK_OK(shb_age_writer_finish(w));
		CHECK(shb_age_writer_size(w) == (uint64_t)lseek(fd, 0, SEEK_CUR));
	}
	shb_age_writer_free(w);
	close(fd);
	out = slurp(path, out_len);
	CHECK(out != NULL);
	return out;
}

static int open_age(const unsigned char *ct, size_t len, struct shb_source **out)
{
	struct shb_source *mem;

	CHECK_OK(shb_source_open_mem(ct, len, "test.age", &mem));
	return shb_age_source_open(mem, &ids, out);
}

static void roundtrip(size_t size)
{
	unsigned char *plain = malloc(size + 1), *got = malloc(size + 1), *ct;
	struct shb_source *src = NULL;
	size_t ct_len = 0;

	for (size_t i = 0; i < size; i++)
		plain[i] = (unsigned char)(rand() >> 7);
	ct = encrypt_buf(plain, size, size % 7 == 5 ? 1000 : SHB_AGE_CHUNK + 3, &ct_len);
	CHECK_OK(open_age(ct, ct_len, &src));
	if (src) {
		CHECK(src->size == size);
		CHECK(shb_age_source_is(src) && shb_age_source_inner(src) != NULL);
		CHECK_OK(shb_source_read(src, got, size, 0));
		CHECK(!memcmp(got, plain, size));
		for (int i = 0; size && i < 200; i++) {
			size_t off = (size_t)rand() % size, n = (size_t)rand() % (size - off + 1);

			if (i % 3 == 0)
				n = n % 70;
			memset(got, 0, n);
			CHECK_OK(shb_source_read(src, got, n, off));
			CHECK(!memcmp(got, plain + off, n));
		}
		CHECK(shb_source_read(src, got, 1, size) == SHB_EFORMAT);
	}
	shb_source_close(src);
	free(ct);
	free(plain);
	free(got);
}

static void test_roundtrips(void)
{
	static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 3 * 65536, 3 * 65536 + 5 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		roundtrip(sizes[i]);
}

/* Runs argv (argv[0] a path) with stdin from in and stdout to out (NULL: inherited). */
static int run(char *const argv[], const char *in, const char *out)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd;

		if (in && ((fd = open(in, O_RDONLY)) < 0 || dup2(fd, 0) < 0))
			_exit(127);
		if (out && ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0
			    || dup2(fd, 1) < 0))
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* One cctv-age vector, split into its textual header and the age file. */
struct vector {
	char expect[32], payload[65], file_key[33];
	int armored, passphrase, pq, zlib;
	struct shb_age_keys ids;
	unsigned char *age;
	size_t age_len;
};

static unsigned char *inflate_all(const unsigned char *in, size_t len, size_t *out_len)
{
	size_t cap = len * 4 + 1024;
	unsigned char *out = malloc(cap);
	z_stream z = { 0 };
	int rc;

	if (!out || inflateInit(&z) != Z_OK) {
		free(out);
		return NULL;
	}
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)len;
	for (;;) {
		z.next_out = out + z.total_out;
		z.avail_out = (uInt)(cap - z.total_out);
		rc = inflate(&z, Z_NO_FLUSH);
		if (rc == Z_STREAM_END)
			break;
		if (rc != Z_OK && rc != Z_BUF_ERROR) {
			inflateEnd(&z);
			free(out);
			return NULL;
		}
		out = realloc(out, cap *= 2);
	}
	*out_len = z.total_out;
	inflateEnd(&z);
	return out;
}

static void vector_field(struct vector *v, const char *key, const char *val)
{
	struct shb_age_key k;

	if (!strcmp(key, "expect"))
		snprintf(v->expect, sizeof(v->expect), "%s", val);
	else if (!strcmp(key, "payload"))
		snprintf(v->payload, sizeof(v->payload), "%s", val);
	else if (!strcmp(key, "file key"))
		snprintf(v->file_key, sizeof(v->file_key), "%s", val);
	else if (!strcmp(key, "armored"))
		v->armored = !strcmp(val, "yes");
	else if (!strcmp(key, "passphrase"))
		v->passphrase = 1;
	else if (!strcmp(key, "compressed"))
		v->zlib = !strcmp(val, "zlib");
	else if (!strcmp(key, "identity") && !strncmp(val, "AGE-SECRET-KEY-PQ-", 18))
		v->pq = 1;
	else if (!strcmp(key, "identity")) {
		CHECK_OK(shb_age_parse_identity(val, &k));
		v->ids.keys = realloc(v->ids.keys, (v->ids.n + 1) * sizeof(k));
		v->ids.keys[v->ids.n++] = k;
		v->ids.alloc = v->ids.n;
	}
}

/* Splits the file at path into v; -1 when it has no blank line. */
static int vector_load(const char *path, struct vector *v)
{
	size_t len, at = 0;
	unsigned char *buf = slurp(path, &len);
	char line[256], *colon;

	memset(v, 0, sizeof(*v));
	while (buf && at < len && buf[at] != '\n') {
		const unsigned char *nl = memchr(buf + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (buf + at)) : len - at;

		snprintf(line, sizeof(line), "%.*s", (int)n, (const char *)buf + at);
		if ((colon = strstr(line, ": "))) {
			*colon = '\0';
			vector_field(v, line, colon + 2);
		}
		at += n + 1;
	}
	if (!buf || at >= len) {
		free(buf);
		return -1;
	}
	at++;
	if (v->zlib)
		v->age = inflate_all(buf + at, len - at, &v->age_len);
	else if ((v->age = malloc(len - at + 1)))
		memcpy(v->age, buf + at, v->age_len = len - at);
	free(buf);
	return v->age ? 0 : -1;
}

/* The file key as the header gives it, when it parses and unwraps. */
static int vector_file_key(const struct vector *v, char hex[33])
{
	struct shb_age_header h;
	unsigned char key[16];
	int rc = shb_age_header_parse(v->age, v->age_len, &h);

	if (!rc)
		rc = shb_age_unwrap(&h, v->age, &v->ids, key);
	for (int i = 0; !rc && i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	shb_age_header_free(&h);
	return rc;
}

/* Opens and reads the whole plaintext: 0 and sum set, or where it failed. */
static int vector_decrypt(const struct vector *v, int *open_rc, unsigned char sum[32])
{
	struct shb_source *src = NULL;
	unsigned char *plain;
	int rc;

	if ((*open_rc = open_age(v->age, v->age_len, &src)))
		return *open_rc;
	if (!(plain = malloc(src->size + 1)))
		return SHB_ENOMEM;
	if (!(rc = shb_source_read(src, plain, src->size, 0)))
		SHA256(plain, src->size, sum);
	free(plain);
	shb_source_close(src);
	return rc;
}

/* Checks one vector against its expectation; 0 when it holds. */
static int vector_check(const char *name, const struct vector *v)
{
	struct shb_age_keys saved = ids;
	unsigned char sum[32];
	char hex[65], key[33];
	int open_rc, rc;

	ids = v->ids;
	rc = vector_decrypt(v, &open_rc, sum);
	ids = saved;
	for (int i = 0; !rc && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
	if (!strcmp(v->expect, "success"))
		rc = rc ? rc : strcmp(hex, v->payload) ? -1
		     : v->file_key[0] && (vector_file_key(v, key) || strcmp(key, v->file_key)) ? -2 : 0;
	else if (!strcmp(v->expect, "no match"))
		rc = open_rc == SHB_EKEY ? 0 : -3;
	else if (!strcmp(v->expect, "HMAC failure"))
		rc = open_rc == SHB_ECORRUPT ? 0 : -3;
	else if (!strcmp(v->expect, "header failure"))
		rc = open_rc == SHB_EFORMAT ? 0 : -3;
	else if (!strcmp(v->expect, "payload failure"))
		rc = (open_rc == SHB_EFORMAT || (!open_rc && rc)) ? 0 : -3;
	else
		rc = -4;
	if (rc)
		fprintf(stderr, "cctv vector %s (expect %s): got %d (open %d): %s\n", name, v->expect,
			rc, open_rc, shb_errmsg());
	return rc;
}

/* The vectors: AGE_VECTORS names a directory, else NODE runs AGE_VECTORS_JS. */
static const char *vector_dir(char *buf, size_t len)
{
	const char *dir = getenv("AGE_VECTORS"), *node = getenv("NODE");
	char *js = getenv("AGE_VECTORS_JS");

	if (dir && *dir)
		return dir;
	snprintf(buf, len, "%s/vectors", tmpdir);
	if (!node || !*node || !js || !*js)
		return NULL;
	char *argv[] = { (char *)node, js, buf, NULL };
	return run(argv, NULL, "/dev/null") == 0 ? buf : NULL;
}

static void test_vectors(void)
{
	char buf[256], path[512];
	const char *dir = vector_dir(buf, sizeof(buf));
	DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *e;
	int checked = 0, armored = 0, passphrase = 0, pq = 0;
	struct vector v;

	CHECK(d != NULL);
	if (!d) {
		fprintf(stderr, "test_age: the cctv-age vectors are missing (npm ci; "
			"AGE_VECTORS=DIR or NODE and AGE_VECTORS_JS)\n");
		return;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		CHECK(vector_load(path, &v) == 0);
		if (v.armored || v.passphrase || (v.pq && !v.ids.n)) {
			armored += v.armored;
			passphrase += !v.armored && v.passphrase;
			pq += !v.armored && !v.passphrase;
		} else {
			CHECK(vector_check(e->d_name, &v) == 0);
			checked++;
		}
		free(v.age);
		shb_age_keys_free(&v.ids);
	}
	closedir(d);
	CHECK(checked > 0);
	printf("test_age: %d cctv-age vectors checked, %d skipped (%d armored, %d passphrase, "
	       "%d post-quantum identity only)\n", checked, armored + passphrase + pq, armored,
	       passphrase, pq);
}

/* Setup: one identity in ids, its recipient and a second one in rcpts. */
static void make_keys(void)
{
	struct shb_age_key k, other;
	char r[SHB_AGE_RECIPIENT_LEN * 2 + 4], r2[SHB_AGE_RECIPIENT_LEN];

	CHECK_OK(shb_age_keygen(&k));
	CHECK_OK(shb_age_keygen(&other));
	shb_age_format_recipient(&k, r);
	shb_age_format_recipient(&other, r2);
	strcat(r, " ,");
	strcat(r, r2);
	CHECK_OK(shb_age_recipients_add_list(&rcpts, r, "BACKUP_AGE_RECIPIENTS"));
	CHECK(rcpts.n == 2);
	ids.keys = calloc(4, sizeof(*ids.keys));
	ids.alloc = 4;
	ids.keys[ids.n++] = k;
	CHECK(shb_age_recipients_add_list(&rcpts, "age1nope", "BACKUP_AGE_RECIPIENTS")
	      == SHB_EINVAL && strstr(shb_errmsg(), "BACKUP_AGE_RECIPIENTS"));
}

int main(void)
{
	srand(12);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_hkdf();
	test_x25519();
	test_bech32();
	make_keys();
	test_roundtrips();
	test_vectors();
	shb_age_keys_free(&ids);
	shb_age_keys_free(&rcpts);
	shb_remove_tree(tmpdir);
	return check_done("test_age");
}
