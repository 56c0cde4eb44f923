/*
 * Parsers for the S3 XML responses shbackup reads: ListObjectsV2 pages,
 * error documents, InitiateMultipartUpload results.  They use expat and
 * match local element names (any namespace), never scan text by hand, and
 * take the whole body at once, so they can be fuzzed on arbitrary bytes.
 */
#ifndef SHB_S3XML_H
#define SHB_S3XML_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct shb_s3_object {
	char *key;       /* decoded (encoding-type=url undone) */
	uint64_t size;
	time_t mtime;
	char *etag;
};

struct shb_s3_page {
	struct shb_s3_object *items;
	size_t n;
	size_t alloc;      /* items allocated (SHB_ALLOC_GROW) */
	int truncated;
	char *next_token;  /* NULL when not truncated */
};

struct shb_s3_error {
	char code[64];
	char message[256];
};

/*
 * Parses one ListObjectsV2 page (body[0..len), not NUL-terminated),
 * appending its objects to page->items (malloc'd, owned by page) and
 * replacing truncated and next_token.  url_encoded: keys come
 * percent-encoded (encoding-type=url).  SHB_EFORMAT ("malformed
 * ListObjectsV2 response") for anything that is not a well-formed
 * ListBucketResult, for a truncated page without a continuation token,
 * and when out of memory; objects appended before the failure stay in
 * page for shb_s3_page_free().
 */
int shb_s3xml_list(const char *body, size_t len, int url_encoded, struct shb_s3_page *page);
/* Frees what page holds and zeroes it (page itself is the caller's). */
void shb_s3_page_free(struct shb_s3_page *page);

/*
 * Parses an <Error> document into *err (code and message truncated to
 * fit, NUL-terminated); 0 if body is one with a Code, -1 if not (no
 * message is set: not being an error document is not an error).
 */
int shb_s3xml_error(const char *body, size_t len, struct shb_s3_error *err);

/* An unfinished multipart upload (ListMultipartUploads). */
struct shb_s3_upload_item {
	char *key;
	char *id;
};

/*
 * Parses a ListMultipartUploads result into a malloc'd array (*out, *n;
 * free with shb_s3xml_uploads_free).  Keys are as sent (no url encoding).
 * SHB_EFORMAT for a malformed result or when out of memory; *out and *n
 * are then untouched.
 */
int shb_s3xml_uploads(const char *body, size_t len, struct shb_s3_upload_item **out, size_t *n);
void shb_s3xml_uploads_free(struct shb_s3_upload_item *v, size_t n);

/*
 * The UploadId of an InitiateMultipartUpload result, malloc'd (the caller
 * frees it); NULL if there is none, the body is malformed or memory ran
 * out (no message set: the caller names the failure).
 */
char *shb_s3xml_upload_id(const char *body, size_t len);

#endif
