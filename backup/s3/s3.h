/*
 * The S3 client: the few operations shbackup needs, signed with SigV4
 * (sigv4.h), carried by libcurl, with bounded retries.
 *
 * Addressing is path-style (<endpoint>/<bucket>/<key>) when an endpoint is
 * configured (MinIO, Wasabi, Swift), virtual-hosted
 * (https://<bucket>.s3.<region>.amazonaws.com/<key>) for AWS.  TLS peers are
 * always verified.  Credentials never appear in messages.
 *
 * Retries: connection errors, timeouts, HTTP 500/502/503/504 and the error
 * codes SlowDown, InternalError and RequestTimeout are retried with
 * exponential backoff and full jitter, re-signed each time, within a bound
 * on attempts and on total time.  Any other error fails at once with the
 * server's code and message: SHB_EREMOTE (error.h), or SHB_ENET when the
 * server could not be reached in time, with shb_errmsg() like
 * "cannot upload 's3://b/k': SignatureDoesNotMatch: ...".
 */
#ifndef SHB_S3_H
#define SHB_S3_H

#include <stddef.h>
#include <stdint.h>

#include "s3xml.h"
#include "util.h"

struct shb_s3_config {
	const char *endpoint;       /* NULL or "" for AWS */
	const char *region;
	const char *bucket;
	const char *access_key;
	const char *secret_key;
	const char *session_token;  /* may be NULL */
	int max_attempts;           /* >= 1 */
	double retry_seconds;       /* total time budget for retries */
	long timeout;               /* seconds without progress before a request fails */
	size_t part_size;           /* multipart part size, >= 5 MiB */
	int connections;            /* parallel part uploads */
	int page_size;              /* ListObjectsV2 max-keys (0: server default) */
};

struct shb_s3;

/* Called during uploads with bytes sent so far and the total. */
typedef void (*shb_s3_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Creates a client; the config strings are copied. */
int shb_s3_new(const struct shb_s3_config *cfg, struct shb_s3 **out);
/*
 * SHB_OK if ep is "http(s)://host[:port]" (a trailing '/' allowed), else
 * SHB_EINVAL with a message naming what (e.g. the variable) and ep.
 */
int shb_s3_endpoint_check(const char *ep, const char *what);
/* Frees a client and its pooled connections; NULL is fine. */
void shb_s3_free(struct shb_s3 *s3);

/* "s3://bucket/key" for messages, into out. */
void shb_s3_url(const struct shb_s3 *s3, const char *key, char *out, size_t outlen);

/* Every object under prefix, across all pages.  Free with shb_s3_page_free. */
int shb_s3_list(struct shb_s3 *s3, const char *prefix, struct shb_s3_page *out);
/* Size of an object; SHB_ENOTFOUND if it does not exist. */
int shb_s3_head(struct shb_s3 *s3, const char *key, uint64_t *size);
/* Exactly len bytes at off into buf. */
int shb_s3_get(struct shb_s3 *s3, const char *key, uint64_t off, size_t len, void *buf);
/*
 * The last bytes of an object with one suffix-range GET ("bytes=-len"):
 * *got = min(len, object size) bytes into buf, *total = the object's size.
 */
int shb_s3_get_tail(struct shb_s3 *s3, const char *key, size_t len, void *buf, size_t *got,
		    uint64_t *total);
/* Deletes an object; the error convention of the operations above. */
int shb_s3_delete(struct shb_s3 *s3, const char *key);
/*
 * Uploads the file at path as key: one PUT below the part size, else a
 * multipart upload over cfg->connections connections, aborted on failure.
 */
int shb_s3_upload(struct shb_s3 *s3, const char *key, const char *path,
		  shb_s3_progress_fn progress, void *ctx);
/*
 * The same from the open file fd (read with pread, left open): what a caller
 * that wrote the file uploads, so a name swapped since cannot change what
 * is sent.  name is for messages.
 */
int shb_s3_upload_fd(struct shb_s3 *s3, const char *key, int fd, const char *name,
		     shb_s3_progress_fn progress, void *ctx);

/*
 * Aborts the unfinished multipart uploads under prefix whose keys pass keep
 * == NULL or keep(key) == 0 (a killed upload's parts cost storage until
 * then).  Returns how many were aborted, or -1 (message set).
 */
long shb_s3_abort_stale_uploads(struct shb_s3 *s3, const char *prefix,
				int (*keep)(const char *key, void *ctx), void *ctx);

/* Requests sent so far, retries included (for tests and statistics). */
uint64_t shb_s3_requests(const struct shb_s3 *s3);

struct shb_source;

/*
 * An S3 object of known size as a source: each read is one ranged GET.
 * The client is borrowed and must outlive the source.
 */
int shb_source_open_s3(struct shb_s3 *s3, const char *key, uint64_t size,
		       struct shb_source **out);

/*
 * The same, with the object's ETag from a listing (NULL if unknown), which
 * shb_source_identity() uses instead of reading the object's tail.
 */
int shb_source_open_s3_etag(struct shb_s3 *s3, const char *key, uint64_t size,
			    const char *etag, struct shb_source **out);

#endif
