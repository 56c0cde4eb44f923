/*
 * Writing an age file: the header (a fresh file key wrapped for every
 * recipient, the MAC), the payload nonce, then STREAM chunks.  A full
 * chunk is held back until more data arrives, since only the last chunk
 * carries the last flag and it may be full.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "age.h"
#include "age_impl.h"
#include "error.h"
#include "strbuf.h"
#include "util.h"

/* Used by one thread at a time, the caller's: no field is shared. */
struct shb_age_writer {
	int fd;                       /* borrowed */
	char *name;                   /* for messages */
	unsigned char key[32];        /* the payload key */
	EVP_CIPHER_CTX *ctx;
	unsigned char *plain;         /* SHB_AGE_CHUNK bytes held back */
	size_t fill;                  /* bytes in plain */
	unsigned char *out;           /* one sealed chunk */
	uint64_t counter;             /* chunks written */
	uint64_t size;                /* bytes written to fd */
	int finished;
	struct shb_buf head;          /* the header and nonce written first */
};

/* The header text for recipients with file_key, MAC line included. */
static int build_header(const struct shb_age_keys *recipients,
			const unsigned char file_key[16], struct shb_buf *b)
{
	unsigned char mac[32];
	char mac64[48];
	int rc;

	if ((rc = shb_buf_adds(b, SHB_AGE_MAGIC "\n")))
		return rc;
	for (size_t i = 0; i < recipients->n; i++)
		if ((rc = shb_age_wrap_x25519(file_key, recipients->keys[i].pub, b)))
			return rc;
	if ((rc = shb_buf_adds(b, "---"))
	    || (rc = shb_age_header_mac(file_key, b->data, b->len, mac)))
		return rc;
	shb_age_b64_encode(mac, 32, mac64);
	return shb_buf_addf(b, " %s\n", mac64);
}

/* Writes the header and the nonce, and derives the payload key. */
static int write_start(struct shb_age_writer *w, const struct shb_age_keys *recipients)
{
	unsigned char file_key[16], nonce[SHB_AGE_NONCE];
	struct shb_buf *b = &w->head;
	int rc;

	if (RAND_bytes(file_key, 16) != 1 || RAND_bytes(nonce, SHB_AGE_NONCE) != 1)
		return shb_fail(SHB_ENOMEM, "no random bytes from OpenSSL");
	if (!(rc = build_header(recipients, file_key, b))
	    && !(rc = shb_buf_add(b, nonce, SHB_AGE_NONCE))
	    && !(rc = shb_age_payload_key(file_key, nonce, w->key))
	    && !(rc = shb_write_all(w->fd, b->data, b->len, w->name)))
		w->size = b->len;
	OPENSSL_cleanse(file_key, sizeof(file_key));
	return rc;
}

int shb_age_writer_open(int fd, const struct shb_age_keys *recipients, const char *name,
			struct shb_age_writer **out)
{
	struct shb_age_writer *w;
	int rc;

	if (!recipients || !recipients->n)
		return shb_fail(SHB_EINVAL, "cannot encrypt '%s': no age recipient", name);
	if (recipients->n > SHB_AGE_MAX_RECIPIENTS)
		return shb_fail(SHB_EINVAL, "cannot encrypt '%s': %zu recipients, more than %d",
				name, recipients->n, SHB_AGE_MAX_RECIPIENTS);
	if (!(w = calloc(1, sizeof(*w))))
		return shb_fail(SHB_ENOMEM, "out of memory");
	shb_buf_init(&w->head, SHB_AGE_MAX_HEADER + SHB_AGE_NONCE);
	if (!(w->name = strdup(name))
	    || !(w->ctx = EVP_CIPHER_CTX_new()) || !(w->plain = malloc(SHB_AGE_CHUNK))
	    || !(w->out = malloc(SHB_AGE_CCHUNK))) {
		shb_age_writer_free(w);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	w->fd = fd;
	if ((rc = write_start(w, recipients))) {
		shb_age_writer_free(w);
		return rc;
	}
	*out = w;
	return SHB_OK;
}

/* Seals and writes the held-back chunk. */
static int flush_chunk(struct shb_age_writer *w, int last)
{
	unsigned char nonce[12];
	int rc;

	shb_age_stream_nonce(w->counter, last, nonce);
	if ((rc = shb_age_aead_seal(w->ctx, w->key, nonce, w->plain, w->fill, w->out))
	    || (rc = shb_write_all(w->fd, w->out, w->fill + SHB_AGE_TAG, w->name)))
		return rc;
	w->size += w->fill + SHB_AGE_TAG;
	w->counter++;
	w->fill = 0;
	return SHB_OK;
}

int shb_age_write(struct shb_age_writer *w, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	int rc;

	if (w->finished)
		return shb_fail(SHB_EINVAL, "'%s': write after the age file was finished", w->name);
	while (len) {
		size_t n;

		/* Only now is it known that the full chunk held back is not the last. */
		if (w->fill == SHB_AGE_CHUNK && (rc = flush_chunk(w, 0)))
			return rc;
		n = SHB_AGE_CHUNK - w->fill < len ? SHB_AGE_CHUNK - w->fill : len;
		memcpy(w->plain + w->fill, p, n);
		w->fill += n;
		p += n;
		len -= n;
	}
	return SHB_OK;
}

int shb_age_writer_finish(struct shb_age_writer *w)
{
	int rc;

	if (w->finished)
		return SHB_OK;
	if ((rc = flush_chunk(w, 1)))
		return rc;
	w->finished = 1;
	return SHB_OK;
}

uint64_t shb_age_writer_size(const struct shb_age_writer *w)
{
	return w->size;
}

void shb_age_writer_free(struct shb_age_writer *w)
{
	if (!w)
		return;
	OPENSSL_cleanse(w->key, sizeof(w->key));
	if (w->plain)
		OPENSSL_cleanse(w->plain, SHB_AGE_CHUNK);
	free(w->plain);
	free(w->out);
	EVP_CIPHER_CTX_free(w->ctx);
	shb_buf_free(&w->head);
	free(w->name);
	free(w);
}

const void *shb_age_writer_head(const struct shb_age_writer *w, size_t *len)
{
	*len = w->head.len;
	return w->head.data;
}
