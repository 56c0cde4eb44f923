/*
 * SigV4 signing (sigv4.h).  curl's CURLOPT_AWS_SIGV4 is not used: the
 * version in Debian 12 neither sorts nor normalises query parameters, signs
 * value-less ones such as "?uploads" wrongly and never sends
 * x-amz-content-sha256, which strict servers require.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "error.h"
#include "sigv4.h"

static int unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

int shb_uri_encode(struct shb_buf *out, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = SHB_OK;

	for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
		if (unreserved(*p) || (keep_slash && *p == '/')) {
			rc = shb_buf_add(out, p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };

			rc = shb_buf_add(out, e, 3);
		}
	}
	return rc;
}

struct pair {
	char *k, *v;
};

static int by_pair(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = strcmp(x->k, y->k);

	return c ? c : strcmp(x->v, y->v);
}

static char *encoded(const char *s)
{
	struct shb_buf b = SHB_BUF_INIT;

	if (shb_uri_encode(&b, s ? s : "", 0)) {
		shb_buf_free(&b);
		return NULL;
	}
	return shb_buf_detach(&b, NULL);
}

int shb_sigv4_query(struct shb_buf *out, const struct shb_kv *q, size_t n)
{
	struct pair *pairs = calloc(n + 1, sizeof(*pairs));
	int rc = pairs ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");

	for (size_t i = 0; i < n && !rc; i++) {
		pairs[i].k = encoded(q[i].key);
		pairs[i].v = encoded(q[i].value);
		if (!pairs[i].k || !pairs[i].v)
			rc = shb_fail(SHB_ENOMEM, "out of memory");
	}
	if (!rc)
		qsort(pairs, n, sizeof(*pairs), by_pair);
	for (size_t i = 0; i < n && !rc; i++) {
		if (i)
			rc = shb_buf_adds(out, "&");
		if (!rc && !(rc = shb_buf_adds(out, pairs[i].k)) && !(rc = shb_buf_adds(out, "=")))
			rc = shb_buf_adds(out, pairs[i].v);
	}
	for (size_t i = 0; pairs && i < n; i++) {
		free(pairs[i].k);
		free(pairs[i].v);
	}
	free(pairs);
	return rc;
}

/* Header value trimmed, with inner runs of spaces folded to one. */
static int add_header_value(struct shb_buf *b, const char *v)
{
	int rc = SHB_OK, space = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v && !rc; v++) {
		if (*v == ' ' || *v == '\t') {
			space = 1;
			continue;
		}
		if (space)
			rc = shb_buf_add(b, " ", 1);
		space = 0;
		if (!rc)
			rc = shb_buf_add(b, v, 1);
	}
	return rc;
}

static int by_header(const void *a, const void *b)
{
	const struct shb_kv *x = a, *y = b;

	return strcasecmp(x->key, y->key);
}

/* Appends "name:value\n" lines, then "\n", then "name;name" to signed. */
static int add_headers(struct shb_buf *b, struct shb_buf *signed_names,
		       const struct shb_kv *h, size_t n)
{
	struct shb_kv *sorted = malloc((n + 1) * sizeof(*sorted));
	int rc = sorted ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");

	if (!rc) {
		memcpy(sorted, h, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), by_header);
	}
	for (size_t i = 0; i < n && !rc; i++) {
		for (const char *k = sorted[i].key; *k && !rc; k++) {
			char c = (char)tolower((unsigned char)*k);

			if (!(rc = shb_buf_add(b, &c, 1)))
				rc = shb_buf_add(signed_names, &c, 1);
		}
		if (!rc && i + 1 < n)
			rc = shb_buf_add(signed_names, ";", 1);
		if (!rc && !(rc = shb_buf_add(b, ":", 1)) && !(rc = add_header_value(b, sorted[i].value)))
			rc = shb_buf_add(b, "\n", 1);
	}
	free(sorted);
	return rc;
}

/* The canonical request into out; the signed header names into names. */
static int canonical(struct shb_buf *out, struct shb_buf *names, const struct shb_sigv4 *req)
{
	int rc;

	if ((rc = shb_buf_adds(out, req->method)) || (rc = shb_buf_adds(out, "\n"))
	    || (rc = shb_uri_encode(out, req->path, 1)) || (rc = shb_buf_adds(out, "\n"))
	    || (rc = shb_sigv4_query(out, req->query, req->nquery)) || (rc = shb_buf_adds(out, "\n"))
	    || (rc = add_headers(out, names, req->headers, req->nheaders))
	    || (rc = shb_buf_adds(out, "\n")) || (rc = shb_buf_adds(out, shb_buf_str(names)))
	    || (rc = shb_buf_adds(out, "\n")) || (rc = shb_buf_adds(out, req->payload_sha256)))
		return rc;
	return SHB_OK;
}

int shb_sigv4_canonical(struct shb_buf *out, const struct shb_sigv4 *req)
{
	struct shb_buf names = SHB_BUF_INIT;
	int rc = canonical(out, &names, req);

	shb_buf_free(&names);
	return rc;
}

void shb_sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char sum[32];

	SHA256(p, n, sum);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", sum[i]);
}

static void hmac(const unsigned char *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

int shb_sigv4_sign(const struct shb_sigv4 *req, char **auth)
{
	struct shb_buf canon = SHB_BUF_INIT, names = SHB_BUF_INIT;
	char stamp[SHB_TS_LEN], day[9], hash[65], *scope = NULL, *to_sign = NULL, *key0 = NULL;
	unsigned char k[32], sig[32];
	char sighex[65];
	int rc;

	*auth = NULL;
	shb_ts_format(req->time, stamp);
	memcpy(day, stamp, 8);
	day[8] = '\0';
	if ((rc = canonical(&canon, &names, req)))
		goto out;
	shb_sha256_hex(canon.data, canon.len, hash);
	scope = shb_aprintf("%s/%s/%s/aws4_request", day, req->region, req->service);
	to_sign = scope ? shb_aprintf("AWS4-HMAC-SHA256\n%s\n%s\n%s", stamp, scope, hash) : NULL;
	key0 = shb_aprintf("AWS4%s", req->secret_key);
	if (!to_sign || !key0) {
		rc = SHB_ENOMEM;
		goto out;
	}
	hmac((unsigned char *)key0, strlen(key0), day, k);
	hmac(k, 32, req->region, k);
	hmac(k, 32, req->service, k);
	hmac(k, 32, "aws4_request", k);
	hmac(k, 32, to_sign, sig);
	for (int i = 0; i < 32; i++)
		snprintf(sighex + 2 * i, 3, "%02x", sig[i]);
	*auth = shb_aprintf("AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=%s,Signature=%s",
			    req->access_key, scope, shb_buf_str(&names), sighex);
	rc = *auth ? SHB_OK : SHB_ENOMEM;
out:
	if (key0)
		OPENSSL_cleanse(key0, strlen(key0));
	OPENSSL_cleanse(k, sizeof(k));
	free(key0);
	free(scope);
	free(to_sign);
	shb_buf_free(&canon);
	shb_buf_free(&names);
	return rc;
}
