/*
 * The S3 client's uploads (s3.h, s3_impl.h): a single PUT for a small
 * object, else a multipart upload whose parts are read from the file and
 * sent by parallel workers, and the clean-up of stale multipart uploads.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "error.h"
#include "s3.h"
#include "s3_impl.h"
#include "sigv4.h"

/* --- uploads -------------------------------------------------------------- */

static int put_object(struct shb_s3 *s3, const char *key, const unsigned char *body, size_t len,
		      const struct shb_kv *query, size_t nquery, char *etag, size_t etag_cap,
		      const char *meta)
{
	struct req rq = { .method = "PUT", .key = key, .body = body, .body_len = len,
			  .nquery = nquery, .meta = meta };
	struct resp rs = { 0 };
	int rc;

	if (nquery)
		memcpy(rq.query, query, nquery * sizeof(*query));
	rc = shb_s3_perform(s3, &rq, &rs);
	if (!rc && etag)
		snprintf(etag, etag_cap, "%s", rs.etag);
	if (!rc && etag && !etag[0])
		rc = shb_fail(SHB_EREMOTE, "no ETag in the response to a part upload");
	shb_s3_resp_reset(&rs);
	return rc;
}

/*
 * One multipart upload, shared by its part workers.  The fields above mu
 * are immutable while the workers run, but for etags, of which each
 * worker writes only the parts it took; the rest is protected by mu.
 */
struct mpu {
	struct shb_s3 *s3;
	const char *key;
	const char *meta;   /* the object's SHB_S3_META_HEADER, or NULL */
	const char *upload_id;
	int fd;
	uint64_t size;
	size_t nparts;
	char (*etags)[128];         /* one per part, written by the worker that sent it */
	shb_s3_progress_fn progress;
	void *ctx;
	pthread_mutex_t mu;
	size_t next;                /* next part to take: protected by mu */
	uint64_t done;              /* bytes sent: protected by mu */
	int rc;                     /* first failure: protected by mu */
	char msg[1024];             /* its message: protected by mu */
};

static int upload_part(struct mpu *u, size_t i, unsigned char *buf)
{
	uint64_t off = (uint64_t)i * u->s3->cfg.part_size;
	size_t len = (size_t)(u->size - off < u->s3->cfg.part_size ? u->size - off
								    : u->s3->cfg.part_size);
	char num[24];
	struct shb_kv q[2] = { { "partNumber", num }, { "uploadId", u->upload_id } };
	int rc = shb_pread_all(u->fd, buf, len, off, u->key);

	snprintf(num, sizeof(num), "%zu", i + 1);
	if (!rc)
		rc = put_object(u->s3, u->key, buf, len, q, 2, u->etags[i], sizeof(u->etags[i]),
				NULL);
	pthread_mutex_lock(&u->mu);
	u->done += rc ? 0 : len;
	if (!rc && u->progress)
		u->progress(u->ctx, u->done, u->size);
	pthread_mutex_unlock(&u->mu);
	return rc;
}

static void *part_worker(void *arg)
{
	struct mpu *u = arg;
	unsigned char *buf = malloc(u->s3->cfg.part_size);

	for (;;) {
		size_t i;
		int rc;

		pthread_mutex_lock(&u->mu);
		i = u->next++;
		if (u->rc || i >= u->nparts || !buf) {
			if (!buf && !u->rc)
				u->rc = shb_fail(SHB_ENOMEM, "out of memory for an upload part");
			pthread_mutex_unlock(&u->mu);
			break;
		}
		pthread_mutex_unlock(&u->mu);
		rc = upload_part(u, i, buf);
		if (rc) {
			pthread_mutex_lock(&u->mu);
			if (!u->rc) {
				u->rc = rc;
				snprintf(u->msg, sizeof(u->msg), "part %zu: %s", i + 1, shb_errmsg());
			}
			pthread_mutex_unlock(&u->mu);
		}
	}
	free(buf);
	return NULL;
}

static int start_multipart(struct shb_s3 *s3, const char *key, const char *meta, char **id)
{
	struct req rq = { .method = "POST", .key = key, .nquery = 1, .meta = meta };
	struct resp rs = { 0 };
	int rc;

	rq.query[0] = (struct shb_kv){ "uploads", "" };
	rc = shb_s3_perform(s3, &rq, &rs);
	if (!rc && !(*id = shb_s3xml_upload_id((char *)rs.body.data, rs.body.len)))
		rc = shb_fail(SHB_EREMOTE, "no UploadId in the response to CreateMultipartUpload");
	shb_s3_resp_reset(&rs);
	return rc;
}

static int complete_multipart(struct mpu *u)
{
	struct shb_buf xml = SHB_BUF_INIT;
	struct req rq = { .method = "POST", .key = u->key, .nquery = 1, .error_in_200 = 1 };
	struct resp rs = { 0 };
	char part[sizeof(*u->etags) + 64];
	int rc = shb_buf_add(&xml, "<CompleteMultipartUpload>", 25);

	for (size_t i = 0; i < u->nparts && !rc; i++) {
		/* snprintf returns what it would have written: check, never add it blindly. */
		int n = snprintf(part, sizeof(part),
				 "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>", i + 1,
				 u->etags[i]);

		rc = n < 0 || (size_t)n >= sizeof(part)
			? shb_fail(SHB_EREMOTE, "part %zu: ETag too long", i + 1)
			: shb_buf_add(&xml, part, (size_t)n);
	}
	if (!rc)
		rc = shb_buf_add(&xml, "</CompleteMultipartUpload>", 26);
	rq.query[0] = (struct shb_kv){ "uploadId", u->upload_id };
	rq.body = xml.data;
	rq.body_len = xml.len;
	if (!rc)
		rc = shb_s3_perform(u->s3, &rq, &rs);
	shb_s3_resp_reset(&rs);
	shb_buf_free(&xml);
	return rc;
}

static void abort_multipart(struct shb_s3 *s3, const char *key, const char *id)
{
	struct req rq = { .method = "DELETE", .key = key, .nquery = 1 };
	struct resp rs = { 0 };
	char saved[1024];

	/* Best effort; keep the error that made us abort. */
	snprintf(saved, sizeof(saved), "%s", shb_errmsg());
	rq.query[0] = (struct shb_kv){ "uploadId", id };
	shb_s3_perform(s3, &rq, &rs);
	shb_s3_resp_reset(&rs);
	shb_fail(SHB_OK, "%s", saved);
}

static int multipart(struct shb_s3 *s3, struct mpu *u)
{
	int nthreads = s3->cfg.connections, started = 0, rc;
	pthread_t threads[64];
	char *id = NULL;

	if ((rc = start_multipart(s3, u->key, u->meta, &id)))
		return rc;
	u->upload_id = id;
	u->nparts = (size_t)((u->size + s3->cfg.part_size - 1) / s3->cfg.part_size);
	u->etags = calloc(u->nparts, sizeof(*u->etags));
	if (!u->etags) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	if ((size_t)nthreads > u->nparts)
		nthreads = (int)u->nparts;
	for (; started < nthreads && started < 64; started++)
		if (pthread_create(&threads[started], NULL, part_worker, u))
			break;
	if (!started)
		part_worker(u);
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	rc = u->rc ? shb_fail(u->rc, "%s", u->msg) : complete_multipart(u);
out:
	if (rc)
		abort_multipart(s3, u->key, id);
	free(u->etags);
	free(id);
	return rc;
}

int shb_s3_upload_fd(struct shb_s3 *s3, const char *key, int fd, const char *name,
		     const char *meta, shb_s3_progress_fn progress, void *ctx)
{
	struct mpu u = { .s3 = s3, .key = key, .meta = meta, .progress = progress, .ctx = ctx,
			 .fd = fd };
	unsigned char *buf = NULL;
	struct stat st;
	int rc;

	pthread_mutex_init(&u.mu, NULL);
	if (fstat(u.fd, &st) < 0) {
		rc = shb_fail_errno(SHB_EIO, "cannot open '%s'", name);
		goto out;
	}
	u.size = (uint64_t)st.st_size;
	if (u.size >= s3->cfg.part_size) {
		rc = multipart(s3, &u);
		goto out;
	}
	buf = malloc(u.size ? u.size : 1);
	rc = buf ? shb_pread_all(u.fd, buf, u.size, 0, name) : shb_fail(SHB_ENOMEM, "out of memory");
	if (!rc)
		rc = put_object(s3, key, buf, u.size, NULL, 0, NULL, 0, meta);
	if (!rc && progress)
		progress(ctx, u.size, u.size);
out:
	free(buf);
	pthread_mutex_destroy(&u.mu);
	return shb_s3_context(s3, rc, "upload", key);
}

int shb_s3_upload(struct shb_s3 *s3, const char *key, const char *path,
		  shb_s3_progress_fn progress, void *ctx)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return shb_s3_context(s3, shb_fail_errno(SHB_EIO, "cannot open '%s'", path), "upload", key);
	rc = shb_s3_upload_fd(s3, key, fd, path, NULL, progress, ctx);
	close(fd);
	return rc;
}

long shb_s3_abort_stale_uploads(struct shb_s3 *s3, const char *prefix,
				int (*keep)(const char *key, void *ctx), void *ctx)
{
	struct req rq = { .method = "GET", .nquery = 2 };
	struct resp rs = { 0 };
	struct shb_s3_upload_item *v = NULL;
	size_t n = 0;
	long aborted = 0;
	int rc;

	rq.query[0] = (struct shb_kv){ "uploads", "" };
	rq.query[1] = (struct shb_kv){ "prefix", prefix };
	rc = shb_s3_perform(s3, &rq, &rs);
	if (!rc)
		rc = shb_s3xml_uploads((char *)rs.body.data, rs.body.len, &v, &n);
	shb_s3_resp_reset(&rs);
	if (shb_s3_context(s3, rc, "list uploads under", prefix))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (keep && keep(v[i].key, ctx))
			continue;
		abort_multipart(s3, v[i].key, v[i].id);
		aborted++;
	}
	shb_s3xml_uploads_free(v, n);
	return aborted;
}
