/*
 * libFuzzer target: the S3 response parsers (ListObjectsV2 pages, errors,
 * InitiateMultipartUpload, ListMultipartUploads) on arbitrary bytes.
 */
#include <stdlib.h>

#include "s3xml.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct shb_s3_page page = { 0 };
	struct shb_s3_error err;
	struct shb_s3_upload_item *v;
	size_t n;
	char *id;

	shb_s3xml_list((const char *)data, size, 1, &page);
	shb_s3xml_list((const char *)data, size, 0, &page);
	shb_s3_page_free(&page);
	shb_s3xml_error((const char *)data, size, &err);
	if ((id = shb_s3xml_upload_id((const char *)data, size)))
		free(id);
	if (shb_s3xml_uploads((const char *)data, size, &v, &n) == 0)
		shb_s3xml_uploads_free(v, n);
	return 0;
}
