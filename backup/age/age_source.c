/*
 * The plaintext of an age file as a byte source: the header is read and
 * unwrapped once at open; every read then fetches the chunks that cover
 * its range in one read of the inner source, checks every tag (counter
 * and last flag included) and only then copies plaintext out.  Reads keep
 * no shared mutable state (a cipher context per call), so they may run
 * from several threads at once.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "age.h"
#include "age_impl.h"
#include "error.h"
#include "source.h"

#define FIRST_READ 4096u

struct age_source {
	struct shb_source base;
	struct shb_source *inner;   /* owned; immutable after open */
	unsigned char key[32];      /* the payload key; immutable after open */
	uint64_t payload;           /* offset of the first chunk in inner; immutable */
	uint64_t nchunks;           /* chunks in the payload; immutable after open */
	unsigned char *head;        /* header and nonce when taken from a copy (S3 metadata), */
	size_t head_len;            /* for shb_age_source_check_head(); else NULL; immutable */
};

/* The plaintext size of a payload of p bytes, or -1 when no chunking gives p. */
static int payload_chunks(uint64_t p, uint64_t *nchunks, uint64_t *plain)
{
	uint64_t n, last;

	if (p == 0)
		return -1;
	n = (p + SHB_AGE_CCHUNK - 1) / SHB_AGE_CCHUNK;
	last = p - (n - 1) * SHB_AGE_CCHUNK;
	if (last < SHB_AGE_TAG || (last == SHB_AGE_TAG && n > 1))
		return -1;
	*nchunks = n;
	*plain = p - n * SHB_AGE_TAG;
	return 0;
}

int shb_age_plain_size(uint64_t file_size, size_t header_len, uint64_t *plain)
{
	uint64_t n;

	if (file_size < (uint64_t)header_len + SHB_AGE_NONCE)
		return -1;
	return payload_chunks(file_size - header_len - SHB_AGE_NONCE, &n, plain);
}

/* Decrypts chunks first.. of ct[0..len) in place; SHB_ECORRUPT names the chunk. */
static int open_chunks(struct age_source *as, EVP_CIPHER_CTX *ctx, unsigned char *ct,
		       size_t len, uint64_t first)
{
	for (size_t at = 0; at < len; at += SHB_AGE_CCHUNK) {
		uint64_t i = first + at / SHB_AGE_CCHUNK;
		size_t n = len - at < SHB_AGE_CCHUNK ? len - at : SHB_AGE_CCHUNK;
		unsigned char nonce[12];
		int rc;

		shb_age_stream_nonce(i, i == as->nchunks - 1, nonce);
		rc = shb_age_aead_open(ctx, as->key, nonce, ct + at, n - SHB_AGE_TAG, ct + at);
		if (rc == SHB_ECORRUPT)
			rc = shb_fail(SHB_ECORRUPT, "encrypted archive '%s': chunk %llu of %llu fails "
				      "its authentication tag (damaged, truncated or reordered)",
				      as->base.name, (unsigned long long)i,
				      (unsigned long long)as->nchunks);
		if (rc)
			return rc;
	}
	return SHB_OK;
}

static int age_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	struct age_source *as = (struct age_source *)src;
	uint64_t first = off / SHB_AGE_CHUNK, last, end;
	size_t clen;
	unsigned char *ct;
	EVP_CIPHER_CTX *ctx;
	int rc;

	if (!len)
		return SHB_OK;
	last = (off + len - 1) / SHB_AGE_CHUNK;
	end = (last + 1) * SHB_AGE_CCHUNK;
	if (end > as->inner->size - as->payload)
		end = as->inner->size - as->payload;
	clen = (size_t)(end - first * SHB_AGE_CCHUNK);
	if (!(ct = malloc(clen)) || !(ctx = EVP_CIPHER_CTX_new())) {
		free(ct);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	rc = shb_source_read(as->inner, ct, clen, as->payload + first * SHB_AGE_CCHUNK);
	if (!rc)
		rc = open_chunks(as, ctx, ct, clen, first);
	if (!rc) {
		/* Plaintext of chunk k sits at ct + k * CCHUNK: copy it out chunk by chunk. */
		for (uint64_t p = off; p < off + len;) {
			uint64_t k = p / SHB_AGE_CHUNK, in = p % SHB_AGE_CHUNK;
			size_t n = (size_t)(SHB_AGE_CHUNK - in);

			if (n > off + len - p)
				n = (size_t)(off + len - p);
			memcpy((unsigned char *)buf + (p - off),
			       ct + (k - first) * SHB_AGE_CCHUNK + in, n);
			p += n;
		}
	}
	OPENSSL_cleanse(ct, clen);
	free(ct);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

static void age_close(struct shb_source *src)
{
	struct age_source *as = (struct age_source *)src;

	free(as->head);
	shb_source_close(as->inner);
	OPENSSL_cleanse(as->key, sizeof(as->key));
}

static int age_version(struct shb_source *src, char *buf, size_t len, int *names_content)
{
	struct shb_source *inner = ((struct age_source *)src)->inner;

	return inner->ops->version(inner, buf, len, names_content);
}

static struct shb_source *age_under(const struct shb_source *src)
{
	return ((const struct age_source *)src)->inner;
}

static const struct shb_source_ops age_ops = { age_read, age_close, age_version, age_under,
					       NULL };
/* For an inner source without a version (memory): the identity hashes the tail. */
static const struct shb_source_ops age_ops_nover = { age_read, age_close, NULL, age_under,
						     NULL };

/*
 * The suffix read when the header comes with it (an S3 object we uploaded
 * carries a copy in its metadata): the reader's first read is its 128 KiB
 * tail, which in ciphertext lies within the last three chunks, so reading
 * those first costs no extra request and the cache below keeps them.
 */
#define TAIL_GUESS (3u * SHB_AGE_CCHUNK)

/*
 * The header from inner's tail read (inner->ops->tail_and_head): SHB_OK
 * with *hdr (header and nonce, malloc'd) and h; SHB_ENOTFOUND when the
 * read told none, or none that parses whole: the caller reads the start.
 * The tail read is in *tail_buf (malloc'd, *tail_len bytes) either way.
 */
static int header_from_tail(struct shb_source *inner, unsigned char **hdr, size_t *hdr_len,
			    struct shb_age_header *h, unsigned char **tail_buf, size_t *tail_len)
{
	size_t tail = inner->size < TAIL_GUESS ? (size_t)inner->size : TAIL_GUESS, got = 0;
	unsigned char *buf = malloc(tail ? tail : 1), *head = malloc(FIRST_READ);
	int rc = buf && head ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");

	if (!rc)
		rc = shb_source_tail_and_head(inner, buf, tail, head, FIRST_READ, &got);
	*tail_buf = buf;
	*tail_len = tail;
	if (!rc && (!got || shb_age_header_parse(head, got, h) != SHB_OK))
		rc = SHB_ENOTFOUND;
	else if (!rc && got < h->len + SHB_AGE_NONCE) {
		shb_age_header_free(h);
		rc = SHB_ENOTFOUND;
	}
	if (rc) {
		free(head);
		return rc;
	}
	*hdr = head;
	*hdr_len = got;
	return SHB_OK;
}

/* Reads and parses the header of inner into *hdr (malloc'd) and h. */
static int read_header(struct shb_source *inner, unsigned char **hdr, size_t *hdr_len,
		       struct shb_age_header *h)
{
	size_t len = inner->size < FIRST_READ ? (size_t)inner->size : FIRST_READ, have = 0;
	unsigned char *buf = NULL, *p;
	int rc;

	for (;;) {
		if (!(p = realloc(buf, len ? len : 1))) {
			free(buf);
			return shb_fail(SHB_ENOMEM, "out of memory");
		}
		buf = p;
		if ((rc = shb_source_read(inner, buf + have, len - have, have)))
			break;
		have = len;
		rc = shb_age_header_parse(buf, len, h);
		if (rc != SHB_ETOOBIG)
			break;
		if (len == inner->size) {
			rc = shb_fail(SHB_EFORMAT, "not a valid age header: the file ends inside it");
			break;
		}
		len = inner->size - len < len ? (size_t)inner->size : 2 * len;
		if (len > SHB_AGE_MAX_HEADER)
			len = SHB_AGE_MAX_HEADER;
	}
	if (rc) {
		free(buf);
		return rc;
	}
	*hdr = buf;
	*hdr_len = len;
	return SHB_OK;
}

/* The file key of inner's header (in hdr), with the messages of the contract. */
static int file_key_of(struct shb_source *inner, const unsigned char *hdr,
		       const struct shb_age_header *h, const struct shb_age_keys *ids,
		       unsigned char file_key[16])
{
	int rc = shb_age_unwrap(h, hdr, ids, file_key);

	if (rc == SHB_EKEY && h->n == 1 && !strcmp(h->stanzas[0].type, "scrypt"))
		return shb_fail(SHB_EKEY, "'%s' is encrypted with a passphrase (age -p), which is "
				"not supported: encrypt to an identity's public key", inner->name);
	if (rc == SHB_EKEY && (!ids || !ids->n))
		return shb_fail(SHB_EKEY, "'%s' is encrypted and no identity given "
				"(BACKUP_AGE_IDENTITY_FILE)", inner->name);
	if (rc == SHB_EKEY)
		return shb_fail(SHB_EKEY, "no identity in BACKUP_AGE_IDENTITY_FILE matches "
				"encrypted archive '%s'", inner->name);
	if (rc)
		return shb_fail(rc, "encrypted archive '%s': %s", inner->name, shb_errmsg());
	return SHB_OK;
}

/* Derives the payload key of as from the nonce after the header; sizes as. */
static int payload_of(struct age_source *as, const unsigned char *hdr, size_t hdr_len,
		      size_t h_len, const unsigned char file_key[16])
{
	unsigned char nonce[SHB_AGE_NONCE];
	uint64_t plain;
	int rc;

	as->payload = h_len + SHB_AGE_NONCE;
	if (as->inner->size < as->payload)
		return shb_fail(SHB_EFORMAT, "encrypted archive '%s' ends before its payload nonce",
				as->inner->name);
	if (hdr_len >= as->payload)
		memcpy(nonce, hdr + h_len, SHB_AGE_NONCE);
	else if ((rc = shb_source_read(as->inner, nonce, SHB_AGE_NONCE, h_len)))
		return rc;
	if (payload_chunks(as->inner->size - as->payload, &as->nchunks, &plain))
		return shb_fail(SHB_EFORMAT, "encrypted archive '%s' is truncated (a payload of "
				"%llu bytes is no whole chunking)", as->inner->name,
				(unsigned long long)(as->inner->size - as->payload));
	as->base.size = plain;
	return shb_age_payload_key(file_key, nonce, as->key);
}

/*
 * Checks the last chunk's tag at open, from the tail read when there is
 * one: a header copy that is not this file's (another backup's, whose MAC
 * holds) is caught here, and an empty plaintext (which no read would
 * touch) is checked at all.
 */
static int check_last(struct age_source *as, const unsigned char *tail, size_t tail_len)
{
	uint64_t last = as->inner->size - as->payload - (as->nchunks - 1) * SHB_AGE_CCHUNK;
	unsigned char *ct = malloc((size_t)last);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int rc = ct && ctx ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");

	if (!rc && tail && tail_len >= last)
		memcpy(ct, tail + tail_len - last, (size_t)last);
	else if (!rc)
		rc = shb_source_read(as->inner, ct, (size_t)last, as->inner->size - last);
	if (!rc)
		rc = open_chunks(as, ctx, ct, (size_t)last, as->nchunks - 1);
	if (ct)
		OPENSSL_cleanse(ct, (size_t)last);
	free(ct);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

/*
 * One way to the payload key: the header copy a tail read brings (meta 1;
 * SHB_ENOTFOUND when there is none) or the file's own first bytes.
 */
static int start(struct age_source *as, const struct shb_age_keys *ids, int meta)
{
	struct shb_age_header h = { 0 };
	unsigned char *hdr = NULL, *tail = NULL, file_key[16];
	size_t hdr_len = 0, tail_len = 0;
	int rc;

	rc = meta ? header_from_tail(as->inner, &hdr, &hdr_len, &h, &tail, &tail_len)
		  : read_header(as->inner, &hdr, &hdr_len, &h);
	if (rc == SHB_EFORMAT && !meta)
		rc = shb_fail(rc, "'%s' is not an age file: %s", as->inner->name, shb_errmsg());
	if (!rc && !(rc = file_key_of(as->inner, hdr, &h, ids, file_key))) {
		rc = payload_of(as, hdr, hdr_len, h.len, file_key);
		OPENSSL_cleanse(file_key, sizeof(file_key));
	}
	if (!rc && (meta || !as->base.size))
		rc = check_last(as, tail, tail_len);
	if (!rc && meta) {
		as->head = hdr;
		as->head_len = h.len + SHB_AGE_NONCE;
		hdr = NULL;
	}
	shb_age_header_free(&h);
	free(hdr);
	free(tail);
	return rc;
}

int shb_age_source_open(struct shb_source *inner, const struct shb_age_keys *ids,
			struct shb_source **out)
{
	struct age_source *as = calloc(1, sizeof(*as));
	int rc;

	if (!as || !(as->base.name = strdup(inner->name))) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto fail;
	}
	as->inner = inner;
	as->base.ops = inner->ops->version ? &age_ops : &age_ops_nover;
	rc = inner->ops->tail_and_head ? start(as, ids, 1) : SHB_ENOTFOUND;
	/* A copy that does not open this file is not trusted: the file's own header decides. */
	if (rc && rc != SHB_ENOMEM && rc != SHB_ENET && rc != SHB_EREMOTE)
		rc = start(as, ids, 0);
	if (rc)
		goto fail;
	*out = &as->base;
	return SHB_OK;
fail:
	if (as) {
		OPENSSL_cleanse(as->key, sizeof(as->key));
		free(as->head);
		free(as->base.name);
		free(as);
	}
	shb_source_close(inner);
	return rc;
}

int shb_age_source_check_head(struct shb_source *src)
{
	struct age_source *as = (struct age_source *)src;
	unsigned char *buf;
	int rc;

	if (!shb_age_source_is(src) || !as->head)
		return SHB_OK;
	if (!(buf = malloc(as->head_len)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	rc = shb_source_read(as->inner, buf, as->head_len, 0);
	if (!rc && memcmp(buf, as->head, as->head_len))
		rc = shb_fail(SHB_ECORRUPT, "encrypted archive '%s': its first bytes are not the age "
			      "header stored with it (its metadata): age -d would refuse it",
			      as->base.name);
	free(buf);
	return rc;
}

int shb_age_source_is(const struct shb_source *src)
{
	return src && (src->ops == &age_ops || src->ops == &age_ops_nover);
}

struct shb_source *shb_age_source_inner(const struct shb_source *src)
{
	return shb_age_source_is(src) ? ((const struct age_source *)src)->inner : NULL;
}

int shb_age_is_age(const void *buf, size_t len)
{
	size_t n = strlen(SHB_AGE_MAGIC "\n");

	return len >= n && !memcmp(buf, SHB_AGE_MAGIC "\n", n);
}
