/*
 * The S3 XML parsers on real-shaped responses (namespaced, url-encoded
 * keys, continuation tokens, errors inside a 200) and on hostile bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "s3xml.h"

static const char list_page[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>b</Name><Prefix>p%2F</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
	"<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
	"<Contents><Key>p/a+b%2Bc%25d%C3%A9.tar.gz</Key>"
	"<LastModified>2026-11-26T03:15:00.000Z</LastModified>"
	"<ETag>&quot;abc-2&quot;</ETag><Size>123456789012</Size></Contents>"
	"<Contents><Key>p/x</Key><LastModified>2026-11-26T03:15:01.000Z</LastModified>"
	"<Size>1</Size></Contents>"
	"<NextContinuationToken>tok/=+</NextContinuationToken></ListBucketResult>";

static void test_list(void)
{
	struct shb_s3_page page = { 0 };

	CHECK_OK(shb_s3xml_list(list_page, sizeof(list_page) - 1, 1, &page));
	CHECK(page.n == 2 && page.truncated && !strcmp(page.next_token, "tok/=+"));
	CHECK(!strcmp(page.items[0].key, "p/a b+c%d\xc3\xa9.tar.gz"));
	CHECK(page.items[0].size == 123456789012ull);
	CHECK(page.items[0].mtime == 1795662900);
	CHECK(!strcmp(page.items[0].etag, "\"abc-2\""));
	CHECK(!strcmp(page.items[1].key, "p/x") && page.items[1].size == 1);
	/* A second page appends. */
	static const char last[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
		"<Contents><Key>p/y</Key><Size>2</Size></Contents></ListBucketResult>";
	CHECK_OK(shb_s3xml_list(last, sizeof(last) - 1, 1, &page));
	CHECK(page.n == 3 && !page.truncated && !page.next_token);
	shb_s3_page_free(&page);
}

static void test_bad_lists(void)
{
	static const char *const bad[] = {
		"", "<", "not xml", "<Error><Code>x</Code></Error>",
		"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
		"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>bad%zz</Key></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>nul%00</Key></Contents></ListBucketResult>",
		"<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">"
		"<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;\">"
		"<!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;\">]><ListBucketResult><Contents><Key>&e;"
		"</Key></Contents></ListBucketResult>",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shb_s3_page page = { 0 };

		CHECK(shb_s3xml_list(bad[i], strlen(bad[i]), 1, &page) == SHB_EFORMAT);
		shb_s3_page_free(&page);
	}
}

static void test_error_and_upload_id(void)
{
	static const char err[] = "<?xml version='1.0' encoding='UTF-8'?>\n<Error>"
		"<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
		"does not match</Message><RequestId>tx1</RequestId></Error>";
	static const char init[] = "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/"
		"doc/2006-03-01/\"><Bucket>b</Bucket><Key>k</Key><UploadId>Zm9v-YmFy</UploadId>"
		"</InitiateMultipartUploadResult>";
	struct shb_s3_error e;
	char *id;

	CHECK(shb_s3xml_error(err, sizeof(err) - 1, &e) == 0);
	CHECK(!strcmp(e.code, "SignatureDoesNotMatch"));
	CHECK(!strncmp(e.message, "The request signature", 21));
	CHECK(shb_s3xml_error(list_page, sizeof(list_page) - 1, &e) == -1);
	CHECK(shb_s3xml_error("<Error></Error>", 15, &e) == -1);
	id = shb_s3xml_upload_id(init, sizeof(init) - 1);
	CHECK(id && !strcmp(id, "Zm9v-YmFy"));
	free(id);
	CHECK(shb_s3xml_upload_id(err, sizeof(err) - 1) == NULL);
}

static void test_uploads(void)
{
	static const char body[] = "<ListMultipartUploadsResult xmlns=\"x\"><Bucket>b</Bucket>"
		"<Upload><Key>p/a.tar.gz</Key><UploadId>id-1</UploadId></Upload>"
		"<Upload><Key>p/b c.tar.gz</Key><UploadId>id-2</UploadId></Upload>"
		"<Upload><Key>p/no-id</Key></Upload></ListMultipartUploadsResult>";
	struct shb_s3_upload_item *v = NULL;
	size_t n = 0;

	CHECK(shb_s3xml_uploads(body, sizeof(body) - 1, &v, &n) == SHB_EFORMAT);
	static const char ok[] = "<ListMultipartUploadsResult><Upload><Key>p/a.tar.gz</Key>"
		"<UploadId>id-1</UploadId></Upload><Upload><Key>p/b c.tar.gz</Key>"
		"<UploadId>id-2</UploadId></Upload></ListMultipartUploadsResult>";
	CHECK_OK(shb_s3xml_uploads(ok, sizeof(ok) - 1, &v, &n));
	CHECK(n == 2 && !strcmp(v[1].key, "p/b c.tar.gz") && !strcmp(v[1].id, "id-2"));
	shb_s3xml_uploads_free(v, n);
	CHECK(shb_s3xml_uploads("<Error/>", 8, &v, &n) == SHB_EFORMAT);
}

int main(void)
{
	test_uploads();
	test_list();
	test_bad_lists();
	test_error_and_upload_id();
	return check_done("test_s3xml");
}
