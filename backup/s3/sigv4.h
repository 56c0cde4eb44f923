/*
 * AWS Signature Version 4 for S3, written against OpenSSL.  The caller
 * gives the request as it will be sent (method, unencoded path, unencoded
 * query parameters, headers) and gets back the Authorization header value;
 * the same encoding functions build the URL, so what is signed is what is
 * sent.
 *
 * Canonical form: the path is percent-encoded per segment ('/' kept), the
 * query is sorted by encoded name then value with every name carrying '='
 * (so "?uploads" signs as "uploads="), everything encoded AWS-style
 * (unreserved A-Z a-z 0-9 - _ . ~ kept, the rest %XX uppercase), header names
 * lowercased, values trimmed with inner runs of spaces folded, and headers
 * sorted by name.
 */
#ifndef SHB_SIGV4_H
#define SHB_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "util.h"

/* SHA-256 of the empty string, the payload hash of body-less requests. */
#define SHB_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct shb_kv {
	const char *key;
	const char *value;  /* NULL or "" for a name without value */
};

struct shb_sigv4 {
	const char *method;            /* "GET" */
	const char *path;              /* unencoded, starts with '/' */
	const struct shb_kv *query;    /* unencoded, any order */
	size_t nquery;
	const struct shb_kv *headers;  /* every header to sign, host included */
	size_t nheaders;
	const char *payload_sha256;    /* lowercase hex, or "UNSIGNED-PAYLOAD" */
	const char *region;
	const char *service;           /* "s3" */
	const char *access_key;
	const char *secret_key;
	time_t time;                   /* the x-amz-date header's time */
};

/*
 * The three appenders below add to out (a string buffer, strbuf.h, so the
 * result is NUL-terminated) and fail only as it does: SHB_ENOMEM, or
 * SHB_ETOOBIG past out's cap, with part of the text possibly appended.
 */
/* Appends s percent-encoded AWS-style; '/' is kept when keep_slash. */
int shb_uri_encode(struct shb_buf *out, const char *s, int keep_slash);
/* Appends the canonical (and sendable) query string of q to out. */
int shb_sigv4_query(struct shb_buf *out, const struct shb_kv *q, size_t n);
/* Appends the canonical request to out (exposed for tests). */
int shb_sigv4_canonical(struct shb_buf *out, const struct shb_sigv4 *req);
/*
 * The Authorization header value, malloc'd into *auth (the caller frees
 * it; NULL on failure).  SHB_ENOMEM only.  The derived signing keys are
 * wiped from memory before returning.  Every function here is pure (no
 * I/O, no shared state) and thread-safe.
 */
int shb_sigv4_sign(const struct shb_sigv4 *req, char **auth);
/* Lowercase hex SHA-256 of p[0..n) into out[65] (NUL-terminated).  Never fails. */
void shb_sha256_hex(const void *p, size_t n, char out[65]);

#endif
