/*
 * The S3 client (s3.h).  Every operation goes through shb_s3_perform(), which
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
#include "s3_impl.h"
#include "sigv4.h"

/* --- handles -------------------------------------------------------------- */

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
	} else if (len > sizeof(SHB_S3_META_HEADER) + 1
		   && !strncasecmp(p, SHB_S3_META_HEADER "-", sizeof(SHB_S3_META_HEADER))
		   && p[sizeof(SHB_S3_META_HEADER)] >= '1'
		   && p[sizeof(SHB_S3_META_HEADER)] < '1' + SHB_S3_META_PARTS
		   && p[sizeof(SHB_S3_META_HEADER) + 1] == ':') {
		/* Too long a part is no part: the value then does not decode. */
		char *part = rs->meta[p[sizeof(SHB_S3_META_HEADER)] - '1'];

		if (len <= sizeof(SHB_S3_META_HEADER) + 1 + SHB_S3_META_PART + 4)
			header_value(p, len, sizeof(SHB_S3_META_HEADER) + 1, part,
				     SHB_S3_META_PART + 1);
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

/* Headers signed and sent: host, date, payload hash, range, token, our metadata's parts. */
static struct curl_slist *sign_headers(struct shb_s3 *s3, const struct req *rq, const char *path,
				       int *failed)
{
	struct shb_kv h[5 + SHB_S3_META_PARTS];
	char names[SHB_S3_META_PARTS][sizeof(SHB_S3_META_HEADER) + 4];
	char parts[SHB_S3_META_PARTS][SHB_S3_META_PART + 1];
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
	for (size_t i = 0, n = rq->meta ? strlen(rq->meta) : 0; i * SHB_S3_META_PART < n
	     && i < SHB_S3_META_PARTS; i++) {
		snprintf(names[i], sizeof(names[i]), "%s-%zu", SHB_S3_META_HEADER, i + 1);
		snprintf(parts[i], sizeof(parts[i]), "%.*s", SHB_S3_META_PART,
			 rq->meta + i * SHB_S3_META_PART);
		h[nh++] = (struct shb_kv){ names[i], parts[i] };
	}
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

void shb_s3_resp_reset(struct resp *rs)
{
	shb_buf_free(&rs->body);
	memset(rs, 0, sizeof(*rs));
	shb_buf_init(&rs->body, MAX_XML);
}

int shb_s3_perform(struct shb_s3 *s3, struct req *rq, struct resp *rs)
{
	double deadline = shb_now() + s3->cfg.retry_seconds;
	char err[CURL_ERROR_SIZE] = "";

	for (int n = 1;; n++) {
		int retry, rc;
		CURLcode cc;
		double wait;

		shb_s3_resp_reset(rs);
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

int shb_s3_context(const struct shb_s3 *s3, int rc, const char *verb, const char *key)
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
	int rc = shb_s3_perform(s3, &rq, &rs);

	if (!rc)
		*size = rs.length;
	shb_s3_resp_reset(&rs);
	return shb_s3_context(s3, rc, "stat", key);
}

int shb_s3_get_meta(struct shb_s3 *s3, const char *key, uint64_t off, size_t len, void *buf,
		    char *meta)
{
	struct req rq = { .method = "GET", .key = key, .out = buf, .out_cap = len, .exact = 1 };
	struct resp rs = { 0 };
	int rc;

	if (meta)
		meta[0] = '\0';
	if (!len)
		return SHB_OK;
	snprintf(rq.range, sizeof(rq.range), "bytes=%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	rc = shb_s3_perform(s3, &rq, &rs);
	/* The parts in order, up to the first missing one. */
	for (size_t i = 0, n = 0; !rc && meta && i < SHB_S3_META_PARTS && rs.meta[i][0]; i++) {
		memcpy(meta + n, rs.meta[i], strlen(rs.meta[i]) + 1);
		n += strlen(rs.meta[i]);
	}
	shb_s3_resp_reset(&rs);
	return shb_s3_context(s3, rc, "read", key);
}

int shb_s3_get(struct shb_s3 *s3, const char *key, uint64_t off, size_t len, void *buf)
{
	return shb_s3_get_meta(s3, key, off, len, buf, NULL);
}

int shb_s3_get_tail(struct shb_s3 *s3, const char *key, size_t len, void *buf, size_t *got,
		    uint64_t *total)
{
	struct req rq = { .method = "GET", .key = key, .out = buf, .out_cap = len };
	struct resp rs = { 0 };
	int rc;

	snprintf(rq.range, sizeof(rq.range), "bytes=-%zu", len);
	rc = shb_s3_perform(s3, &rq, &rs);
	/* 206 with Content-Range, or 200 with the whole (smaller) object. */
	if (!rc && rs.status == 200)
		rs.total = rs.out_len;
	if (!rc && ((rs.status != 206 && rs.status != 200) || rs.total < rs.out_len
		    || (rs.out_len < len && rs.out_len != rs.total)))
		rc = shb_fail(SHB_EREMOTE, "malformed suffix-range response");
	*got = rs.out_len;
	*total = rs.total;
	shb_s3_resp_reset(&rs);
	return shb_s3_context(s3, rc, "read", key);
}

int shb_s3_delete(struct shb_s3 *s3, const char *key)
{
	struct req rq = { .method = "DELETE", .key = key };
	struct resp rs = { 0 };
	int rc = shb_s3_perform(s3, &rq, &rs);

	shb_s3_resp_reset(&rs);
	return shb_s3_context(s3, rc, "delete", key);
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
		rc = shb_s3_perform(s3, &rq, &rs);
		out->next_token = NULL;  /* the parser replaces it */
		if (!rc)
			rc = shb_s3xml_list((char *)rs.body.data, rs.body.len, 1, out);
		free(token);
		shb_s3_resp_reset(&rs);
	} while (!rc && out->truncated);
	if (rc)
		shb_s3_page_free(out);
	return shb_s3_context(s3, rc, "list", prefix);
}

