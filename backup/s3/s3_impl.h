/*
 * Private to the S3 client (s3.h): the client's state and one request, as
 * shared by its files:
 *
 *   s3.c         the transport (handle pool, curl callbacks, one signed
 *                attempt, retries) and the single-request operations
 *   s3_upload.c  uploads: single PUT and multipart with part workers
 *   s3_client.c  the client's life cycle: endpoint check, addressing, new, free
 *
 * Every function returns an error code (error.h) with the message set,
 * unless its comment says otherwise.
 */
#ifndef SHB_S3_IMPL_H
#define SHB_S3_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "s3.h"
#include "sigv4.h"
#include "util.h"

#define POOL_MAX 16
#define MAX_XML (16u << 20)
#define BACKOFF_BASE 0.2
#define BACKOFF_CAP 5.0

/* One client; everything but mu's fields is immutable after shb_s3_new(). */
struct shb_s3 {
	struct shb_s3_config cfg;   /* strings owned */
	char *origin;               /* "http://127.0.0.1:8080" */
	char *host;                 /* Host header value */
	char *base;                 /* "/bucket" (path-style) or "" */
	pthread_mutex_t mu;
	CURL *pool[POOL_MAX];       /* idle easy handles: protected by mu */
	int npool;                  /* protected by mu */
	uint64_t requests;          /* requests sent: written under mu (statistics) */
};

/* One request, as an operation describes it: owned by one thread. */
struct req {
	const char *method;
	const char *key;               /* NULL: the bucket itself */
	struct shb_kv query[6];
	size_t nquery;
	char range[64];                /* "" for none */
	const unsigned char *body;     /* PUT and POST */
	size_t body_len;
	void *out;                     /* GET into a caller buffer of out_cap */
	size_t out_cap;
	int exact;                     /* a 2xx must be a 206 filling out_cap exactly */
	const char *meta;              /* SHB_S3_META_HEADER's value to send, or NULL */
	int error_in_200;              /* a 200 may carry <Error> */
};

/* What came back for one request: owned by the thread that sent it. */
struct resp {
	long status;
	struct shb_buf body;           /* capped at MAX_XML by shb_s3_resp_reset() */
	size_t out_len;
	char etag[128];
	uint64_t total;                /* from Content-Range */
	uint64_t length;               /* from Content-Length */
	size_t sent;
	int overflow;
	/* SHB_S3_META_HEADER's parts as they came, "" for each missing one */
	char meta[SHB_S3_META_PARTS][SHB_S3_META_PART + 1];
};

/* Frees rs's body and zeroes rs, for another attempt or request. */
void shb_s3_resp_reset(struct resp *rs);
/*
 * Sends rq with a pooled handle, signed afresh for each attempt, and fills
 * rs; retries what is retryable (s3.h) within the attempt and time bounds.
 * SHB_OK on a 2xx that meets rq's expectations; else an error code with
 * the server's code and message (or curl's) set.
 * rs->body is the caller's to free (shb_buf_free).
 */
int shb_s3_perform(struct shb_s3 *s3, struct req *rq, struct resp *rs);
/* Prefixes the current error with "cannot <verb> 's3://b/k': ". */
int shb_s3_context(const struct shb_s3 *s3, int rc, const char *verb, const char *key);

#endif
