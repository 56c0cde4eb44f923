/*
 * The S3 object byte source (source.h): each read is one ranged GET.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "error.h"
#include "s3.h"
#include "source.h"

struct s3_source {
	struct shb_source base;
	struct shb_s3 *s3;
	char *key;
	char *etag;         /* from the listing, or NULL */
};

static int s3_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	struct s3_source *ss = (struct s3_source *)src;

	return shb_s3_get(ss->s3, ss->key, off, len, buf);
}

/* The suffix, and the head our upload put in the object's metadata (base64). */
static int s3_tail_and_head(struct shb_source *src, void *tail_buf, size_t tail, void *head,
			    size_t cap, size_t *got)
{
	struct s3_source *ss = (struct s3_source *)src;
	char meta[SHB_S3_META_MAX + 1];
	unsigned char bin[SHB_S3_META_MAX];
	size_t n, pad;
	int len, rc;

	if ((rc = shb_s3_get_meta(ss->s3, ss->key, src->size - tail, tail, tail_buf, meta)))
		return rc;
	n = strlen(meta);
	pad = n >= 2 ? (meta[n - 1] == '=') + (meta[n - 2] == '=') : 0;
	/* Anything but whole, canonical base64 is no head: the caller reads it instead. */
	if (n && n % 4 == 0 && (len = EVP_DecodeBlock(bin, (unsigned char *)meta, (int)n)) >= 0
	    && (size_t)len - pad <= cap) {
		memcpy(head, bin, (size_t)len - pad);
		*got = (size_t)len - pad;
	}
	return SHB_OK;
}

static void s3_close(struct shb_source *src)
{
	free(((struct s3_source *)src)->key);
	free(((struct s3_source *)src)->etag);
}

static int s3_version(struct shb_source *src, char *buf, size_t len, int *names_content)
{
	struct s3_source *ss = (struct s3_source *)src;

	snprintf(buf, len, "etag %s", ss->etag ? ss->etag : "");
	*names_content = ss->etag != NULL;
	return SHB_OK;
}

static const struct shb_source_ops s3_ops = { s3_read, s3_close, s3_version, NULL,
					      s3_tail_and_head };

int shb_source_open_s3(struct shb_s3 *s3, const char *key, uint64_t size,
		       struct shb_source **out)
{
	return shb_source_open_s3_etag(s3, key, size, NULL, out);
}

int shb_source_open_s3_etag(struct shb_s3 *s3, const char *key, uint64_t size,
			    const char *etag, struct shb_source **out)
{
	struct s3_source *ss = calloc(1, sizeof(*ss));
	char url[1024];

	if (!ss)
		return shb_fail(SHB_ENOMEM, "out of memory");
	shb_s3_url(s3, key, url, sizeof(url));
	ss->base.ops = &s3_ops;
	ss->base.size = size;
	ss->s3 = s3;
	ss->key = strdup(key);
	ss->etag = etag && *etag ? strdup(etag) : NULL;
	ss->base.name = strdup(url);
	if (!ss->key || !ss->base.name || (etag && *etag && !ss->etag)) {
		free(ss->key);
		free(ss->etag);
		free(ss->base.name);
		free(ss);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	*out = &ss->base;
	return SHB_OK;
}
