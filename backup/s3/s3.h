/*
 * Layer backup/s3: talking to S3, and nothing about what is stored there.
 *
 * Owns the S3 client and its transport (s3.h, libcurl), request signing
 * (sigv4.h), the XML response parsers (s3xml.h) and the S3 object byte
 * source (shb_source_open_s3 below).  May include backup/base and its own
 * headers, plus libcurl, expat and OpenSSL; never format, sqlite, repo,
 * cmd or FUSE headers.  Used by repo and cmd only: fs/ and mount/ reach a
 * backup in S3 through repo's API, never through this header.  Rules:
 * HACKING.md "Layers".
 */
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

/*
 * Errors in full (error.h): SHB_EREMOTE when the server refused or
 * answered wrongly (its code and message quoted), SHB_ENOTFOUND for a 404,
 * SHB_ENET when it could not be reached in time (curl's reason),
 * SHB_EFORMAT for a response body that does not parse or is longer than
 * asked for, SHB_EIO for a local file an upload reads, SHB_EINVAL for bad
 * configuration, SHB_ENOMEM.  Each operation's shb_errmsg() says what it
 * did and on what, with "(gave up after N attempts)" when retries ran out.
 *
 * Threads: one client serves any number of threads at once; its handle
 * pool and request counter are protected by a mutex inside it, and the
 * configuration is immutable after shb_s3_new().  Freeing a client wipes
 * its secret key and session token from memory; no request may be in
 * flight then, and every source opened on it must be closed first.
 */

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

/*
 * Creates a client (*out, the caller's: free with shb_s3_free()); the
 * config strings are copied, so cfg may go once this returns.  SHB_EINVAL
 * when the access or secret key is empty (the message names the
 * variables) or the endpoint is not usable, SHB_ENOMEM.  No request is
 * sent.
 */
int shb_s3_new(const struct shb_s3_config *cfg, struct shb_s3 **out);
/*
 * SHB_OK if ep is "http(s)://host[:port]" (a trailing '/' allowed), else
 * SHB_EINVAL with a message naming what (e.g. the variable) and ep.
 */
int shb_s3_endpoint_check(const char *ep, const char *what);
/* Frees a client and its pooled connections; NULL is fine. */
void shb_s3_free(struct shb_s3 *s3);

/* "s3://bucket/key" for messages, into out (truncated to outlen). */
void shb_s3_url(const struct shb_s3 *s3, const char *key, char *out, size_t outlen);

/*
 * Every object under prefix, across all ListObjectsV2 pages, into *out
 * (keys decoded; the caller frees it with shb_s3_page_free()).  On
 * failure *out is left empty (freeing it again is harmless).
 */
int shb_s3_list(struct shb_s3 *s3, const char *prefix, struct shb_s3_page *out);
/* Size of an object, by HEAD; SHB_ENOTFOUND if it does not exist. */
int shb_s3_head(struct shb_s3 *s3, const char *key, uint64_t *size);
/*
 * Exactly len bytes at off into buf (the caller's), by one ranged GET: a
 * response that is short, too long or not ranged is an error (retried
 * first).  len 0 sends nothing.
 */
int shb_s3_get(struct shb_s3 *s3, const char *key, uint64_t off, size_t len, void *buf);
/*
 * The one piece of user metadata we give an object (an encrypted backup's
 * age header, so that its first ranged GET brings it: age.h), sent in parts
 * "<SHB_S3_META_HEADER>-1", "-2", ... of at most SHB_S3_META_PART
 * characters each (Swift allows 256 a value), SHB_S3_META_MAX in all (S3
 * allows 2 KB of user metadata, names included).
 */
#define SHB_S3_META_HEADER "x-amz-meta-shb-age-prefix"
#define SHB_S3_META_PART 240
#define SHB_S3_META_PARTS 7
#define SHB_S3_META_MAX (SHB_S3_META_PART * SHB_S3_META_PARTS)
/*
 * shb_s3_get(), also copying the object's SHB_S3_META_HEADER value (its
 * parts joined, up to the first missing one) into meta[SHB_S3_META_MAX + 1]
 * ("" when it has none).
 */
int shb_s3_get_meta(struct shb_s3 *s3, const char *key, uint64_t off, size_t len, void *buf,
		    char *meta);
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
 * multipart upload over cfg->connections connections, aborted on failure
 * (best effort).  progress (may be NULL) is called from the uploading
 * threads.
 */
int shb_s3_upload(struct shb_s3 *s3, const char *key, const char *path,
		  shb_s3_progress_fn progress, void *ctx);
/*
 * The same from the open file fd (read with pread, left open): what a caller
 * that wrote the file uploads, so a name swapped since cannot change what
 * is sent.  name is for messages.  meta (NULL: none; at most
 * SHB_S3_META_MAX printable ASCII characters) is stored as the object's
 * SHB_S3_META_HEADER, in parts.
 */
int shb_s3_upload_fd(struct shb_s3 *s3, const char *key, int fd, const char *name,
		     const char *meta, shb_s3_progress_fn progress, void *ctx);

/*
 * Aborts the unfinished multipart uploads under prefix whose keys pass keep
 * == NULL or keep(key) == 0 (a killed upload's parts cost storage until
 * then).  Returns how many aborts were sent (each best effort: a failed
 * abort is not reported), or -1 with shb_errmsg() set when the uploads
 * could not be listed.
 */
long shb_s3_abort_stale_uploads(struct shb_s3 *s3, const char *prefix,
				int (*keep)(const char *key, void *ctx), void *ctx);

/* Requests sent so far, retries included (for tests and statistics). */
uint64_t shb_s3_requests(const struct shb_s3 *s3);

struct shb_source;

/*
 * An S3 object of known size as a source: each read is one ranged GET
 * (shb_s3_get(), with its errors), from any thread.  *out is the caller's
 * (shb_source_close()); key is copied; the client is borrowed and must
 * outlive the source.  Nothing is sent at open.  SHB_ENOMEM only.
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
