/*
 * Unit tests of backup/age: the primitives against their RFCs (HKDF-SHA-256
 * RFC 5869 case 1, X25519 RFC 7748 section 6.1), bech32 keys, the writer
 * and the plaintext source round trip at chunk-edge sizes with random range
 * reads (also from eight threads at once), tampering (header, MAC, chunks flipped, swapped, dropped,
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

struct par {
	struct shb_source *src;
	const unsigned char *plain;
	size_t size;
};

/* One of many concurrent range reads of the same source. */
static int par_read(void *ctx, size_t i)
{
	struct par *p = ctx;
	size_t off = (i * 40503u) % p->size, n = (i * 7919u) % (p->size - off + 1);
	unsigned char *buf = malloc(n + 1);
	int rc = buf ? shb_source_read(p->src, buf, n, off) : SHB_ENOMEM;

	if (!rc && memcmp(buf, p->plain + off, n))
		rc = shb_fail(SHB_ECORRUPT, "read %zu at %zu differs", n, off);
	free(buf);
	return rc;
}

static void test_threads(void)
{
	size_t size = 5 * 65536 + 77, ct_len = 0;
	unsigned char *plain = malloc(size), *ct;
	struct par p = { NULL, plain, size };

	for (size_t i = 0; i < size; i++)
		plain[i] = (unsigned char)(rand() >> 4);
	ct = encrypt_buf(plain, size, 65536, &ct_len);
	CHECK_OK(open_age(ct, ct_len, &p.src));
	if (p.src)
		CHECK_OK(shb_parallel(400, 8, par_read, &p));
	shb_source_close(p.src);
	free(ct);
	free(plain);
}

static void test_roundtrips(void)
{
	static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 3 * 65536, 3 * 65536 + 5 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		roundtrip(sizes[i]);
}

/* Header parser edges: no stanza, a cut header, one that never ends, not age. */
static void test_header_edges(void)
{
	static const char no_stanza[] = "age-encryption.org/v1\n--- "
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
	static const char grease[] = "age-encryption.org/v1\n-> a-b.c/d! x\n\n--- "
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nrest";
	unsigned char *big = malloc(SHB_AGE_MAX_HEADER + 10);
	struct shb_age_header h;

	CHECK(shb_age_header_parse((const unsigned char *)no_stanza, strlen(no_stanza), &h)
	      == SHB_EFORMAT);
	CHECK_OK(shb_age_header_parse((const unsigned char *)grease, strlen(grease), &h));
	CHECK(h.n == 1 && !strcmp(h.stanzas[0].type, "a-b.c/d!") && h.stanzas[0].nargs == 1
	      && h.stanzas[0].body_len == 0 && h.len == strlen(grease) - 4
	      && h.mac_offset == strlen(grease) - 4 - 45);
	CHECK(shb_age_unwrap(&h, (const unsigned char *)grease, &ids, (unsigned char[16]){ 0 })
	      == SHB_EKEY);
	shb_age_header_free(&h);
	CHECK(shb_age_header_parse((const unsigned char *)grease, 40, &h) == SHB_ETOOBIG);
	CHECK(shb_age_header_parse((const unsigned char *)grease, 10, &h) == SHB_ETOOBIG);
	CHECK(shb_age_header_parse((const unsigned char *)"\x1f\x8b\x08", 3, &h) == SHB_EFORMAT);
	memcpy(big, "age-encryption.org/v1\n-> X ", 27);
	memset(big + 27, 'A', SHB_AGE_MAX_HEADER + 10 - 27);
	CHECK(shb_age_header_parse(big, SHB_AGE_MAX_HEADER - 1, &h) == SHB_ETOOBIG);
	CHECK(shb_age_header_parse(big, SHB_AGE_MAX_HEADER + 10, &h) == SHB_EFORMAT);
	CHECK(shb_age_is_age(grease, 22) && !shb_age_is_age(grease, 21) && !shb_age_is_age(big + 1, 30));
	free(big);
}

#define TSIZE (3 * 65536 + 5)   /* three full chunks and a short last one */
#define CK SHB_AGE_CHUNK

static unsigned char *tplain;

/* Reads [off, off+n) expecting want; a failed read leaves buf untouched. */
static void check_read(struct shb_source *src, size_t off, size_t n, int want)
{
	unsigned char *buf = malloc(n);
	size_t i = 0;
	int rc;

	memset(buf, 0xaa, n);
	rc = shb_source_read(src, buf, n, off);
	CHECK(rc == want);
	if (want == SHB_OK)
		CHECK(!memcmp(buf, tplain + off, n));
	else
		while (i < n && buf[i] == 0xaa)
			i++;
	CHECK(want == SHB_OK || i == n);
	if (want != SHB_OK)
		CHECK(strstr(shb_errmsg(), "test.age") && strstr(shb_errmsg(), "chunk"));
	free(buf);
}

/* Opens a tampered copy: open must give open_rc; then the chunk reads. */
static void tampered(const unsigned char *ct, size_t len, int open_rc, const int chunk_rc[4])
{
	struct shb_source *src = NULL;
	int rc = open_age(ct, len, &src);

	CHECK(rc == open_rc);
	if (rc) {
		CHECK(src == NULL && strstr(shb_errmsg(), "test.age"));
		return;
	}
	for (int k = 0; k < 4; k++) {
		size_t off = (size_t)k * CK, n = k == 3 ? 5 : CK;

		if (off + n <= src->size)
			check_read(src, off + n / 3, n - n / 3, chunk_rc[k]);
	}
	check_read(src, 0, src->size, chunk_rc[0] ? chunk_rc[0] : chunk_rc[1] ? chunk_rc[1]
		   : chunk_rc[2] ? chunk_rc[2] : chunk_rc[3]);
	shb_source_close(src);
}

static void test_tamper(void)
{
	static const int ok[4] = { 0 }, c1[4] = { 0, SHB_ECORRUPT, 0, 0 },
		c3[4] = { 0, 0, 0, SHB_ECORRUPT }, c01[4] = { SHB_ECORRUPT, SHB_ECORRUPT, 0, 0 },
		c2[4] = { 0, 0, SHB_ECORRUPT, 0 }, c1e[4] = { 0, SHB_ECORRUPT, 0, 0 };
	size_t len = 0, pay, cc = SHB_AGE_CCHUNK;
	unsigned char *ct, *t;
	struct shb_age_header h;
	char *share2;

	tplain = malloc(TSIZE);
	for (size_t i = 0; i < TSIZE; i++)
		tplain[i] = (unsigned char)(rand() >> 5);
	ct = encrypt_buf(tplain, TSIZE, 4096, &len);
	t = malloc(len);
	CHECK_OK(shb_age_header_parse(ct, len, &h));
	pay = h.len + SHB_AGE_NONCE;
	memcpy(t, ct, len);
	tampered(t, len, SHB_OK, ok);
	t[3] ^= 1;                                   /* the magic line */
	tampered(t, len, SHB_EFORMAT, ok);
	memcpy(t, ct, len);
	share2 = strstr(strstr((char *)t, "-> X25519 ") + 1, "-> X25519 ") + 10;
	*share2 = *share2 == 'A' ? 'B' : 'A';        /* the other recipient's share */
	tampered(t, len, SHB_ECORRUPT, ok);
	memcpy(t, ct, len);
	t[h.mac_offset + 2] = t[h.mac_offset + 2] == 'A' ? 'B' : 'A';  /* the MAC */
	tampered(t, len, SHB_ECORRUPT, ok);
	memcpy(t, ct, len);
	t[pay + cc + 100] ^= 0x40;                   /* a middle chunk */
	tampered(t, len, SHB_OK, c1);
	memcpy(t, ct, len);
	t[len - 3] ^= 1;                             /* the last chunk's tag */
	tampered(t, len, SHB_OK, c3);
	memcpy(t, ct, len);
	memcpy(t + pay, ct + pay + cc, cc);          /* chunks 0 and 1 swapped */
	memcpy(t + pay + cc, ct + pay, cc);
	tampered(t, len, SHB_OK, c01);
	memcpy(t, ct, len);
	tampered(t, pay + 3 * cc, SHB_OK, c2);       /* the last chunk dropped */
	tampered(t, pay + 2 * cc, SHB_OK, c1e);      /* cut at a chunk boundary */
	tampered(t, pay + 2 * cc + 1000, SHB_OK, c2);   /* cut inside a chunk */
	tampered(t, pay + 2 * cc + 7, SHB_EFORMAT, ok); /* a chunk shorter than a tag */
	tampered(t, pay, SHB_EFORMAT, ok);              /* no chunk at all */
	tampered(t, pay - 3, SHB_EFORMAT, ok);          /* a short nonce */
	tampered(t, h.len - 10, SHB_EFORMAT, ok);       /* inside the header */
	shb_age_header_free(&h);
	free(t);
	free(ct);
	free(tplain);
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

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	CHECK(chmod(path, mode) == 0);
}

static void test_identity_file(void)
{
	char path[128], text[512], id[SHB_AGE_IDENTITY_LEN], r[SHB_AGE_RECIPIENT_LEN];
	struct shb_age_keys ks = { 0 };

	snprintf(path, sizeof(path), "%s/key.txt", tmpdir);
	shb_age_format_identity(&ids.keys[0], id);
	shb_age_format_recipient(&ids.keys[0], r);
	snprintf(text, sizeof(text), "# created: now\n# public key: %s\n\n%s\r\n  \n", r, id);
	write_file(path, text, 0644);
	CHECK(shb_age_identities_load(&ks, path) == SHB_EINVAL);
	CHECK(strstr(shb_errmsg(), "readable by others") && strstr(shb_errmsg(), "0644"));
	write_file(path, text, 0640);
	CHECK(shb_age_identities_load(&ks, path) == SHB_EINVAL);
	write_file(path, text, 0600);
	CHECK_OK(shb_age_identities_load(&ks, path));
	CHECK(ks.n == 1 && !memcmp(ks.keys[0].pub, ids.keys[0].pub, 32));
	shb_age_keys_free(&ks);
	/* A bad line is named by number, and never quoted. */
	snprintf(text, sizeof(text), "# x\n%s\n%.70sQQQQ\n", id, id);
	write_file(path, text, 0400);
	CHECK(shb_age_identities_load(&ks, path) == SHB_EINVAL);
	CHECK(strstr(shb_errmsg(), "line 3") && !strstr(shb_errmsg(), id + 20));
	CHECK(ks.n == 0);  /* the good line 2 is not kept either */
	shb_age_keys_free(&ks);
	write_file(path, "# only a comment\n", 0600);
	CHECK(shb_age_identities_load(&ks, path) == SHB_EINVAL);
	CHECK(shb_age_identities_load(&ks, tmpdir) != SHB_OK);
	CHECK(shb_age_identities_load(&ks, "/nonexistent/key") == SHB_EIO);
	/* A recipients file: comments, CRLF, a bad line named path:line. */
	snprintf(text, sizeof(text), "# team\r\n%s\r\n\n", r);
	write_file(path, text, 0644);
	CHECK_OK(shb_age_recipients_add_file(&ks, path));
	CHECK(ks.n == 1 && !memcmp(ks.keys[0].pub, ids.keys[0].pub, 32));
	write_file(path, "# team\nage1bogus\n", 0644);
	CHECK(shb_age_recipients_add_file(&ks, path) == SHB_EINVAL && strstr(shb_errmsg(), ":2"));
	CHECK(ks.n == 1);
	shb_age_keys_free(&ks);
}

/* /usr/bin/age and age-keygen against us, both ways, when installed. */
static void test_interop(void)
{
	char in[128], enc[128], dec[128], key[128], r[SHB_AGE_RECIPIENT_LEN];
	char id[SHB_AGE_IDENTITY_LEN + 2];
	unsigned char *plain = malloc(200000), *got, *ct;
	size_t n = 0, ct_len = 0;
	struct shb_source *src = NULL;
	struct shb_age_keys saved = ids;

	if (access("/usr/bin/age", X_OK) || access("/usr/bin/age-keygen", X_OK)) {
		printf("test_age: /usr/bin/age missing, interop skipped\n");
		free(plain);
		return;
	}
	for (size_t i = 0; i < 200000; i++)
		plain[i] = (unsigned char)(rand() >> 3);
	snprintf(in, sizeof(in), "%s/plain", tmpdir);
	snprintf(enc, sizeof(enc), "%s/plain.age", tmpdir);
	snprintf(dec, sizeof(dec), "%s/plain.out", tmpdir);
	snprintf(key, sizeof(key), "%s/age-keygen.txt", tmpdir);
	FILE *f = fopen(in, "wb");
	CHECK(f && fwrite(plain, 1, 200000, f) == 200000);
	fclose(f);
	/* age -r with our recipient, decrypted by us. */
	shb_age_format_recipient(&ids.keys[0], r);
	char *a1[] = { "/usr/bin/age", "-r", r, "-o", enc, in, NULL };
	CHECK(run(a1, NULL, NULL) == 0);
	ct = slurp(enc, &ct_len);
	CHECK_OK(open_age(ct, ct_len, &src));
	got = malloc(200000);
	CHECK(src && src->size == 200000 && !shb_source_read(src, got, 200000, 0)
	      && !memcmp(got, plain, 200000));
	shb_source_close(src);
	free(ct);
	free(got);
	/* Ours decrypted by age -d with our identity written out. */
	ct = encrypt_buf(plain, 200000, 7777, &ct_len);
	shb_age_format_identity(&ids.keys[0], id);
	strcat(id, "\n");
	write_file(key, id, 0600);
	snprintf(enc, sizeof(enc), "%s/enc.age", tmpdir);
	char *a2[] = { "/usr/bin/age", "-d", "-i", key, "-o", dec, enc, NULL };
	CHECK(run(a2, NULL, NULL) == 0);
	got = slurp(dec, &n);
	CHECK(got && n == 200000 && !memcmp(got, plain, n));
	free(got);
	free(ct);
	/* An age-keygen identity loaded by us decrypts what we wrote to its key. */
	unlink(key);
	char *a3[] = { "/usr/bin/age-keygen", "-o", key, NULL };
	CHECK(run(a3, NULL, "/dev/null") == 0);
	ids = (struct shb_age_keys){ 0 };
	CHECK_OK(shb_age_identities_load(&ids, key));
	char *a4[] = { "/usr/bin/age", "-e", "-i", key, "-o", enc, in, NULL };
	CHECK(run(a4, NULL, NULL) == 0);
	ct = slurp(enc, &ct_len);
	CHECK_OK(open_age(ct, ct_len, &src));
	CHECK(src && src->size == 200000);
	shb_source_close(src);
	free(ct);
	shb_age_keys_free(&ids);
	ids = saved;
	free(plain);
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
	test_threads();
	test_header_edges();
	test_tamper();
	test_identity_file();
	test_interop();
	test_vectors();
	shb_age_keys_free(&ids);
	shb_age_keys_free(&rcpts);
	shb_remove_tree(tmpdir);
	return check_done("test_age");
}
