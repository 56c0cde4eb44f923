/*
 * The S3 client (s3.h).  Every operation goes through perform(), which
 * signs, sends, classifies the outcome and retries; the operations only
 * describe requests and read responses.  Easy handles are pooled so
 * connections are reused across requests and threads.
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
#include "sigv4.h"

#define POOL_MAX 16
#define MAX_XML (16u << 20)
#define BACKOFF_BASE 0.2
#define BACKOFF_CAP 5.0

struct shb_s3 {
	struct shb_s3_config cfg;   /* strings owned */
	char *origin;               /* "http://127.0.0.1:8080" */
	char *host;                 /* Host header value */
	char *base;                 /* "/bucket" (path-style) or "" */
	pthread_mutex_t mu;
	CURL *pool[POOL_MAX];
	int npool;
	uint64_t requests;
};

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
	int error_in_200;              /* a 200 may carry <Error> */
};

struct resp {
	long status;
	struct shb_buf body;           /* capped at MAX_XML by resp_reset() */
	size_t out_len;
	char etag[128];
	uint64_t total;                /* from Content-Range */
	uint64_t length;               /* from Content-Length */
	size_t sent;
	int overflow;
};

/* --- handles -------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void init_curl(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static CURL *take_handle(struct shb_s3 *s3)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s3->mu);
	if (s3->npool)
		h = s3->pool[--s3->npool];
	s3->requests++;
	pthread_mutex_unlock(&s3->mu);
	return h ? h : curl_easy_init();
}

static void give_handle(struct shb_s3 *s3, CURL *h)
{
	pthread_mutex_lock(&s3->mu);
	if (s3->npool < POOL_MAX) {
		s3->pool[s3->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s3->mu);
	if (h)
		curl_easy_cleanup(h);
}

/* --- curl callbacks ------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
	struct req *rq = ((void **)data)[0];
	struct resp *rs = ((void **)data)[1];
	size_t len = size * n;

	if (rq->out && rs->status / 100 == 2) {
		if (len > rq->out_cap - rs->out_len) {
			rs->overflow = 1;
			return 0;
		}
		memcpy((char *)rq->out + rs->out_len, p, len);
		rs->out_len += len;
		return len;
	}
	if (shb_buf_add(&rs->body, p, len))
		return 0;
	return len;
}

static int header_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len > n && !strncasecmp(line, name, n) && line[n] == ':';
}

/* Copies a header's trimmed value into out. */
static void header_value(const char *line, size_t len, size_t name_len, char *out, size_t cap)
{
	const char *v = line + name_len + 1, *end = line + len;
	size_t n;

	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
	memcpy(out, v, n);
	out[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
	struct resp *rs = ((void **)data)[1];
	size_t len = size * n;
	char v[128];

	if (len > 5 && !strncmp(p, "HTTP/", 5)) {
		const char *sp = memchr(p, ' ', len);

		rs->status = sp ? strtol(sp + 1, NULL, 10) : 0;
	} else if (header_is(p, len, "ETag")) {
		header_value(p, len, 4, rs->etag, sizeof(rs->etag));
	} else if (header_is(p, len, "Content-Length")) {
		header_value(p, len, 14, v, sizeof(v));
		rs->length = strtoull(v, NULL, 10);
	} else if (header_is(p, len, "Content-Range")) {
		header_value(p, len, 13, v, sizeof(v));
		const char *slash = strchr(v, '/');
		rs->total = slash ? strtoull(slash + 1, NULL, 10) : 0;
	}
	return len;
}

static size_t on_read(char *p, size_t size, size_t n, void *data)
{
	struct req *rq = ((void **)data)[0];
	struct resp *rs = ((void **)data)[1];
	size_t len = size * n, left = rq->body_len - rs->sent;

	if (len > left)
		len = left;
	memcpy(p, rq->body + rs->sent, len);
	rs->sent += len;
	return len;
}

/* --- one attempt ---------------------------------------------------------- */

static int build_url(struct shb_s3 *s3, const struct req *rq, struct shb_buf *url,
		     struct shb_buf *path)
{
	int rc;

	if ((rc = shb_buf_add(path, s3->base, strlen(s3->base))) || (rc = shb_buf_add(path, "/", 1))
	    || (rq->key && (rc = shb_buf_add(path, rq->key, strlen(rq->key)))))
		return rc;
	if ((rc = shb_buf_add(url, s3->origin, strlen(s3->origin)))
	    || (rc = shb_uri_encode(url, (char *)path->data, 1)))
		return rc;
	if (rq->nquery) {
		if ((rc = shb_buf_add(url, "?", 1)))
			return rc;
		return shb_sigv4_query(url, rq->query, rq->nquery);
	}
	return SHB_OK;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *v,
				     int *failed)
{
	char *line = shb_aprintf("%s: %s", name, v);
	struct curl_slist *n = line ? curl_slist_append(l, line) : NULL;

	if (line)
		OPENSSL_cleanse(line, strlen(line));
	free(line);
	if (!n) {
		*failed = 1;
		return l;
	}
	return n;
}

/* Headers signed and sent: host, date, payload hash, range, token. */
static struct curl_slist *sign_headers(struct shb_s3 *s3, const struct req *rq, const char *path,
				       int *failed)
{
	struct shb_kv h[5];
	size_t nh = 0;
	char stamp[SHB_TS_LEN], hash[65], *auth = NULL;
	struct curl_slist *l = NULL;

	shb_ts_format(time(NULL), stamp);
	shb_sha256_hex(rq->body ? (const void *)rq->body : "", rq->body_len, hash);
	h[nh++] = (struct shb_kv){ "host", s3->host };
	h[nh++] = (struct shb_kv){ "x-amz-content-sha256", hash };
	h[nh++] = (struct shb_kv){ "x-amz-date", stamp };
	if (rq->range[0])
		h[nh++] = (struct shb_kv){ "range", rq->range };
	if (s3->cfg.session_token)
		h[nh++] = (struct shb_kv){ "x-amz-security-token", s3->cfg.session_token };
	struct shb_sigv4 sig = { rq->method, path, rq->query, rq->nquery, h, nh, hash,
				 s3->cfg.region, "s3", s3->cfg.access_key, s3->cfg.secret_key,
				 0 };
	shb_ts_parse(stamp, &sig.time);
	if (shb_sigv4_sign(&sig, &auth)) {
		*failed = 1;
		return NULL;
	}
	for (size_t i = 0; i < nh; i++)
		l = add_header(l, h[i].key, h[i].value, failed);
	l = add_header(l, "authorization", auth, failed);
	l = curl_slist_append(l, "Expect:");
	l = curl_slist_append(l, "Content-Type:");
	free(auth);
	return l;
}

static void set_method(CURL *h, const struct req *rq)
{
	if (!strcmp(rq->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(rq->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
	} else if (!strcmp(rq->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? (const char *)rq->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
	} else if (strcmp(rq->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
	}
}

/* One attempt: CURLE_OK and rs->status, or a curl error described in err. */
static CURLcode attempt(struct shb_s3 *s3, struct req *rq, struct resp *rs, char *err)
{
	struct shb_buf url = SHB_BUF_INIT, path = SHB_BUF_INIT;
	struct curl_slist *hdrs = NULL;
	void *pair[2] = { rq, rs };
	CURL *h = take_handle(s3);
	int failed = 0;
	CURLcode cc = CURLE_OUT_OF_MEMORY;

	/* err is what judge() reports on every path out of here, early ones too. */
	snprintf(err, CURL_ERROR_SIZE, "out of memory building the request");
	if (!h || build_url(s3, rq, &url, &path))
		goto out;
	hdrs = sign_headers(s3, rq, (char *)path.data, &failed);
	if (failed) {
		snprintf(err, CURL_ERROR_SIZE, "cannot sign the request: %s", shb_errmsg());
		goto out;
	}
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, (char *)url.data);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s3->cfg.timeout);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)pair);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, (void *)pair);
	curl_easy_setopt(h, CURLOPT_READDATA, (void *)pair);
	set_method(h, rq);
	err[0] = '\0';
	cc = curl_easy_perform(h);
	if (cc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
	if (!err[0])
		snprintf(err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
out:
	curl_slist_free_all(hdrs);
	shb_buf_free(&url);
	shb_buf_free(&path);
	if (h)
		give_handle(s3, h);
	return cc;
}

/* --- retries -------------------------------------------------------------- */

static int retryable_code(const char *code)
{
	return !strcmp(code, "SlowDown") || !strcmp(code, "InternalError")
	       || !strcmp(code, "RequestTimeout");
}

static int retryable_status(long st)
{
	return st == 500 || st == 502 || st == 503 || st == 504;
}

/* Seconds to wait before retry number n (1-based): full jitter. */
static double backoff(int n)
{
	double cap = BACKOFF_BASE * (double)(1u << (n < 10 ? n : 10));
	unsigned int r = 0;

	if (cap > BACKOFF_CAP)
		cap = BACKOFF_CAP;
	RAND_bytes((unsigned char *)&r, sizeof(r));
	return cap * ((double)r / 4294967296.0);
}

static void sleep_for(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The server's words end up in one "error: ..." line: no line breaks in them. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < ' ' || *s == 0x7f)
			*s = ' ';
}

/*
 * Classifies a finished attempt: SHB_OK, or an error code with shb_errmsg()
 * set, and *retry when trying again may help.
 */
static int judge(const struct req *rq, struct resp *rs, CURLcode cc, const char *err, int *retry)
{
	struct shb_s3_error e;
	int has_error;

	*retry = 0;
	if (cc != CURLE_OK) {
		*retry = cc != CURLE_OUT_OF_MEMORY && cc != CURLE_WRITE_ERROR;
		if (rs->overflow)
			return shb_fail(SHB_EFORMAT, "server sent more bytes than asked for");
		return shb_fail(SHB_ENET, "%s", err);
	}
	has_error = !shb_s3xml_error((char *)rs->body.data, rs->body.len, &e);
	if (rq->exact && rs->status / 100 == 2 && (rs->status != 206 || rs->out_len != rq->out_cap)) {
		/* A body cut short (or a range ignored): ask again. */
		*retry = 1;
		return shb_fail(SHB_EREMOTE, "short or unranged response (%zu of %zu bytes)",
				rs->out_len, rq->out_cap);
	}
	if (rs->status / 100 == 2 && !(rq->error_in_200 && has_error))
		return SHB_OK;
	if (!has_error) {
		snprintf(e.code, sizeof(e.code), "HTTP %ld", rs->status);
		snprintf(e.message, sizeof(e.message), "%s", rs->status == 404 ? "not found"
			 : rs->status == 403 ? "access denied" : "request failed");
	}
	*retry = retryable_status(rs->status) || retryable_code(e.code);
	one_line(e.code);
	one_line(e.message);
	if (rs->status == 404)
		return shb_fail(SHB_ENOTFOUND, "%s: %s", e.code, e.message);
	return shb_fail(SHB_EREMOTE, "%s: %s", e.code, e.message);
}

static void resp_reset(struct resp *rs)
{
	shb_buf_free(&rs->body);
	memset(rs, 0, sizeof(*rs));
	shb_buf_init(&rs->body, MAX_XML);
}

static int perform(struct shb_s3 *s3, struct req *rq, struct resp *rs)
{
	double deadline = shb_now() + s3->cfg.retry_seconds;
	char err[CURL_ERROR_SIZE] = "";

	for (int n = 1;; n++) {
		int retry, rc;
		CURLcode cc;
		double wait;

		resp_reset(rs);
		cc = attempt(s3, rq, rs, err);
		rc = judge(rq, rs, cc, err, &retry);
		if (!rc || !retry)
			return rc;
		wait = backoff(n);
		if (n >= s3->cfg.max_attempts || shb_now() + wait > deadline)
			return shb_fail(rc, "%s (gave up after %d attempt%s)", shb_errmsg(), n,
					n == 1 ? "" : "s");
		sleep_for(wait);
	}
}

/* --- operations ----------------------------------------------------------- */

void shb_s3_url(const struct shb_s3 *s3, const char *key, char *out, size_t outlen)
{
	snprintf(out, outlen, "s3://%s/%s", s3->cfg.bucket, key ? key : "");
}

/* Prefixes the current error with "cannot <verb> 's3://b/k': ". */
static int context(const struct shb_s3 *s3, int rc, const char *verb, const char *key)
{
	char url[1024];

	if (!rc)
		return rc;
	shb_s3_url(s3, key, url, sizeof(url));
	return shb_fail(rc, "cannot %s '%s': %s", verb, url, shb_errmsg());
}

int shb_s3_head(struct shb_s3 *s3, const char *key, uint64_t *size)
{
	struct req rq = { .method = "HEAD", .key = key };
	struct resp rs = { 0 };
	int rc = perform(s3, &rq, &rs);

	if (!rc)
		*size = rs.length;
	resp_reset(&rs);
	return context(s3, rc, "stat", key);
}

int shb_s3_get(struct shb_s3 *s3, const char *key, uint64_t off, size_t len, void *buf)
{
	struct req rq = { .method = "GET", .key = key, .out = buf, .out_cap = len, .exact = 1 };
	struct resp rs = { 0 };
	int rc;

	if (!len)
		return SHB_OK;
	snprintf(rq.range, sizeof(rq.range), "bytes=%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	rc = perform(s3, &rq, &rs);
	resp_reset(&rs);
	return context(s3, rc, "read", key);
}

int shb_s3_get_tail(struct shb_s3 *s3, const char *key, size_t len, void *buf, size_t *got,
		    uint64_t *total)
{
	struct req rq = { .method = "GET", .key = key, .out = buf, .out_cap = len };
	struct resp rs = { 0 };
	int rc;

	snprintf(rq.range, sizeof(rq.range), "bytes=-%zu", len);
	rc = perform(s3, &rq, &rs);
	/* 206 with Content-Range, or 200 with the whole (smaller) object. */
	if (!rc && rs.status == 200)
		rs.total = rs.out_len;
	if (!rc && ((rs.status != 206 && rs.status != 200) || rs.total < rs.out_len
		    || (rs.out_len < len && rs.out_len != rs.total)))
		rc = shb_fail(SHB_EREMOTE, "malformed suffix-range response");
	*got = rs.out_len;
	*total = rs.total;
	resp_reset(&rs);
	return context(s3, rc, "read", key);
}

int shb_s3_delete(struct shb_s3 *s3, const char *key)
{
	struct req rq = { .method = "DELETE", .key = key };
	struct resp rs = { 0 };
	int rc = perform(s3, &rq, &rs);

	resp_reset(&rs);
	return context(s3, rc, "delete", key);
}

int shb_s3_list(struct shb_s3 *s3, const char *prefix, struct shb_s3_page *out)
{
	char max_keys[16];
	int rc = SHB_OK;

	memset(out, 0, sizeof(*out));
	snprintf(max_keys, sizeof(max_keys), "%d", s3->cfg.page_size);
	do {
		struct req rq = { .method = "GET", .nquery = 3 };
		struct resp rs = { 0 };
		char *token = out->next_token;

		rq.query[0] = (struct shb_kv){ "list-type", "2" };
		rq.query[1] = (struct shb_kv){ "prefix", prefix };
		rq.query[2] = (struct shb_kv){ "encoding-type", "url" };
		if (s3->cfg.page_size > 0)
			rq.query[rq.nquery++] = (struct shb_kv){ "max-keys", max_keys };
		if (token)
			rq.query[rq.nquery++] = (struct shb_kv){ "continuation-token", token };
		rc = perform(s3, &rq, &rs);
		out->next_token = NULL;  /* the parser replaces it */
		if (!rc)
			rc = shb_s3xml_list((char *)rs.body.data, rs.body.len, 1, out);
		free(token);
		resp_reset(&rs);
	} while (!rc && out->truncated);
	if (rc)
		shb_s3_page_free(out);
	return context(s3, rc, "list", prefix);
}

/* --- uploads -------------------------------------------------------------- */

static int put_object(struct shb_s3 *s3, const char *key, const unsigned char *body, size_t len,
		      const struct shb_kv *query, size_t nquery, char *etag, size_t etag_cap)
{
	struct req rq = { .method = "PUT", .key = key, .body = body, .body_len = len,
			  .nquery = nquery };
	struct resp rs = { 0 };
	int rc;

	if (nquery)
		memcpy(rq.query, query, nquery * sizeof(*query));
	rc = perform(s3, &rq, &rs);
	if (!rc && etag)
		snprintf(etag, etag_cap, "%s", rs.etag);
	if (!rc && etag && !etag[0])
		rc = shb_fail(SHB_EREMOTE, "no ETag in the response to a part upload");
	resp_reset(&rs);
	return rc;
}

struct upload {
	struct shb_s3 *s3;
	const char *key;
	const char *upload_id;
	int fd;
	uint64_t size;
	size_t nparts;
	char (*etags)[128];
	pthread_mutex_t mu;
	size_t next;
	uint64_t done;
	int rc;
	char msg[1024];
	shb_s3_progress_fn progress;
	void *ctx;
};

static int upload_part(struct upload *u, size_t i, unsigned char *buf)
{
	uint64_t off = (uint64_t)i * u->s3->cfg.part_size;
	size_t len = (size_t)(u->size - off < u->s3->cfg.part_size ? u->size - off
								    : u->s3->cfg.part_size);
	char num[24];
	struct shb_kv q[2] = { { "partNumber", num }, { "uploadId", u->upload_id } };
	int rc = shb_pread_all(u->fd, buf, len, off, u->key);

	snprintf(num, sizeof(num), "%zu", i + 1);
	if (!rc)
		rc = put_object(u->s3, u->key, buf, len, q, 2, u->etags[i], sizeof(u->etags[i]));
	pthread_mutex_lock(&u->mu);
	u->done += rc ? 0 : len;
	if (!rc && u->progress)
		u->progress(u->ctx, u->done, u->size);
	pthread_mutex_unlock(&u->mu);
	return rc;
}

static void *part_worker(void *arg)
{
	struct upload *u = arg;
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

static int start_multipart(struct shb_s3 *s3, const char *key, char **id)
{
	struct req rq = { .method = "POST", .key = key, .nquery = 1 };
	struct resp rs = { 0 };
	int rc;

	rq.query[0] = (struct shb_kv){ "uploads", "" };
	rc = perform(s3, &rq, &rs);
	if (!rc && !(*id = shb_s3xml_upload_id((char *)rs.body.data, rs.body.len)))
		rc = shb_fail(SHB_EREMOTE, "no UploadId in the response to CreateMultipartUpload");
	resp_reset(&rs);
	return rc;
}

static int complete_multipart(struct upload *u)
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
		rc = perform(u->s3, &rq, &rs);
	resp_reset(&rs);
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
	perform(s3, &rq, &rs);
	resp_reset(&rs);
	shb_fail(SHB_OK, "%s", saved);
}

static int multipart(struct shb_s3 *s3, struct upload *u)
{
	int nthreads = s3->cfg.connections, started = 0, rc;
	pthread_t threads[64];
	char *id = NULL;

	if ((rc = start_multipart(s3, u->key, &id)))
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
		     shb_s3_progress_fn progress, void *ctx)
{
	struct upload u = { .s3 = s3, .key = key, .progress = progress, .ctx = ctx, .fd = fd };
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
		rc = put_object(s3, key, buf, u.size, NULL, 0, NULL, 0);
	if (!rc && progress)
		progress(ctx, u.size, u.size);
out:
	free(buf);
	pthread_mutex_destroy(&u.mu);
	return context(s3, rc, "upload", key);
}

int shb_s3_upload(struct shb_s3 *s3, const char *key, const char *path,
		  shb_s3_progress_fn progress, void *ctx)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return context(s3, shb_fail_errno(SHB_EIO, "cannot open '%s'", path), "upload", key);
	rc = shb_s3_upload_fd(s3, key, fd, path, progress, ctx);
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
	rc = perform(s3, &rq, &rs);
	if (!rc)
		rc = shb_s3xml_uploads((char *)rs.body.data, rs.body.len, &v, &n);
	resp_reset(&rs);
	if (context(s3, rc, "list uploads under", prefix))
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

/* --- life cycle ----------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

int shb_s3_endpoint_check(const char *ep, const char *what)
{
	const char *host = !strncmp(ep, "http://", 7) ? ep + 7
		: !strncmp(ep, "https://", 8) ? ep + 8 : NULL;
	const char *end, *close, *p;

	if (!host)
		goto bad;
	end = host + strlen(host);
	while (end > host && end[-1] == '/')
		end--;
	/* An IPv6 literal is bracketed: its colons are not the port's. */
	close = *host == '[' ? memchr(host, ']', (size_t)(end - host)) : NULL;
	p = close ? close + 1 : host + strcspn(host, ":/");
	if (p == host)
		goto bad;
	if (p < end && *p == ':') {
		unsigned long port = 0;

		if (++p == end)
			goto bad;
		for (; p < end && port <= 65535; p++) {
			if (*p < '0' || *p > '9')
				goto bad;
			port = port * 10 + (unsigned long)(*p - '0');
		}
		if (port == 0 || port > 65535)
			return shb_fail(SHB_EINVAL, "invalid %s '%s': port must be 1-65535", what, ep);
	}
	if (p != end)
		return shb_fail(SHB_EINVAL, "invalid %s '%s': no path allowed", what, ep);
	/*
	 * Userinfo ("user@host") would be sent to the server as-is by curl and
	 * is never how S3 credentials are given; '?' and '#' would end the
	 * host part of every URL built on it.
	 */
	for (p = host; p < end; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '@' || *p == '?' || *p == '#')
			goto bad;
	return SHB_OK;
bad:
	return shb_fail(SHB_EINVAL, "invalid %s '%s': expected http(s)://host[:port]", what, ep);
}

/* Origin, Host and base path for path-style or virtual-hosted addressing. */
static int address(struct shb_s3 *s3)
{
	const char *ep = s3->cfg.endpoint;

	if (ep) {
		const char *h = strstr(ep, "://");
		size_t n = strlen(ep);
		int rc;

		if ((rc = shb_s3_endpoint_check(ep, "S3 endpoint")))
			return rc;
		while (n && ep[n - 1] == '/')
			n--;
		s3->origin = strndup(ep, n);
		s3->host = strndup(h + 3, n - (size_t)(h + 3 - ep));
		s3->base = shb_aprintf("/%s", s3->cfg.bucket);
	} else {
		s3->host = shb_aprintf("%s.s3.%s.amazonaws.com", s3->cfg.bucket, s3->cfg.region);
		s3->origin = s3->host ? shb_aprintf("https://%s", s3->host) : NULL;
		s3->base = strdup("");
	}
	return s3->origin && s3->host && s3->base ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");
}

int shb_s3_new(const struct shb_s3_config *cfg, struct shb_s3 **out)
{
	struct shb_s3 *s3 = calloc(1, sizeof(*s3));
	int rc;

	pthread_once(&curl_once, init_curl);
	if (!s3)
		return shb_fail(SHB_ENOMEM, "out of memory");
	pthread_mutex_init(&s3->mu, NULL);
	s3->cfg = *cfg;
	s3->cfg.endpoint = dup_or_null(cfg->endpoint);
	s3->cfg.region = strdup(cfg->region ? cfg->region : "us-east-1");
	s3->cfg.bucket = strdup(cfg->bucket ? cfg->bucket : "");
	s3->cfg.access_key = strdup(cfg->access_key ? cfg->access_key : "");
	s3->cfg.secret_key = strdup(cfg->secret_key ? cfg->secret_key : "");
	s3->cfg.session_token = dup_or_null(cfg->session_token);
	if (!s3->cfg.region || !s3->cfg.bucket || !s3->cfg.access_key || !s3->cfg.secret_key) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto fail;
	}
	if (!*s3->cfg.access_key || !*s3->cfg.secret_key) {
		rc = shb_fail(SHB_EINVAL, "no S3 credentials: set BACKUP_S3_ACCESS_KEY_ID and "
			      "BACKUP_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and "
			      "AWS_SECRET_ACCESS_KEY)");
		goto fail;
	}
	if ((rc = address(s3)))
		goto fail;
	*out = s3;
	return SHB_OK;
fail:
	shb_s3_free(s3);
	return rc;
}

static void free_secret(const char *s)
{
	if (s)
		OPENSSL_cleanse((char *)s, strlen(s));
	free((char *)s);
}

void shb_s3_free(struct shb_s3 *s3)
{
	if (!s3)
		return;
	for (int i = 0; i < s3->npool; i++)
		curl_easy_cleanup(s3->pool[i]);
	free((char *)s3->cfg.endpoint);
	free((char *)s3->cfg.region);
	free((char *)s3->cfg.bucket);
	free((char *)s3->cfg.access_key);
	free_secret(s3->cfg.secret_key);
	free_secret(s3->cfg.session_token);
	free(s3->origin);
	free(s3->host);
	free(s3->base);
	pthread_mutex_destroy(&s3->mu);
	free(s3);
}

uint64_t shb_s3_requests(const struct shb_s3 *s3)
{
	return s3->requests;
}
