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
 * Parses one ListObjectsV2 page, appending its objects to page->items.
 * url_encoded: keys come percent-encoded (encoding-type=url).
 */
int shb_s3xml_list(const char *body, size_t len, int url_encoded, struct shb_s3_page *page);
void shb_s3_page_free(struct shb_s3_page *page);

/* Parses an <Error> document; 0 if body is one, -1 if not. */
int shb_s3xml_error(const char *body, size_t len, struct shb_s3_error *err);

/* An unfinished multipart upload (ListMultipartUploads). */
struct shb_s3_upload_item {
	char *key;
	char *id;
};

/*
 * Parses a ListMultipartUploads result into a malloc'd array (*out, *n;
 * free with shb_s3xml_uploads_free).  Keys are as sent (no url encoding).
 */
int shb_s3xml_uploads(const char *body, size_t len, struct shb_s3_upload_item **out, size_t *n);
void shb_s3xml_uploads_free(struct shb_s3_upload_item *v, size_t n);

/* The UploadId of an InitiateMultipartUpload result, malloc'd; NULL if none. */
char *shb_s3xml_upload_id(const char *body, size_t len);

#endif
