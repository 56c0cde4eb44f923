/*
 * SigV4 against AWS's published S3 examples (docs: "Signature Calculations
 * for the Authorization Header: Transferring Payload in a Single Chunk"),
 * plus the encoding rules for keys with spaces, '+', '%' and non-ASCII.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "sigv4.h"

#define AKID "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define T20130524 1369353600
#define HOST "examplebucket.s3.amazonaws.com"
#define CRED "AWS4-HMAC-SHA256 Credential=" AKID "/20130524/us-east-1/s3/aws4_request,"

static void check_sig(const char *method, const char *path, const struct shb_kv *q, size_t nq,
		      const struct shb_kv *h, size_t nh, const char *payload, const char *want)
{
	struct shb_sigv4 r = { method, path, q, nq, h, nh, payload, "us-east-1", "s3", AKID,
			       SECRET, T20130524 };
	char *auth = NULL;

	CHECK_OK(shb_sigv4_sign(&r, &auth));
	CHECK(auth && !strcmp(auth, want));
	if (auth && strcmp(auth, want))
		fprintf(stderr, "  got  %s\n  want %s\n", auth, want);
	free(auth);
}

static void test_get_object_range(void)
{
	const struct shb_kv h[] = {
		{ "Host", HOST }, { "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", SHB_EMPTY_SHA256 }, { "x-amz-date", "20130524T000000Z" },
	};
	struct shb_sigv4 r = { "GET", "/test.txt", NULL, 0, h, 4, SHB_EMPTY_SHA256, "us-east-1",
			       "s3", AKID, SECRET, T20130524 };
	struct shb_buf c = SHB_BUF_INIT;

	CHECK_OK(shb_sigv4_canonical(&c, &r));
	CHECK(c.data && !strcmp((char *)c.data,
		"GET\n/test.txt\n\nhost:" HOST "\nrange:bytes=0-9\n"
		"x-amz-content-sha256:" SHB_EMPTY_SHA256 "\nx-amz-date:20130524T000000Z\n\n"
		"host;range;x-amz-content-sha256;x-amz-date\n" SHB_EMPTY_SHA256));
	shb_buf_free(&c);
	check_sig("GET", "/test.txt", NULL, 0, h, 4, SHB_EMPTY_SHA256,
		  CRED "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
		  "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_put_object(void)
{
	const char *body_hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
	char hash[65];
	const struct shb_kv h[] = {
		{ "Date", "Fri, 24 May 2013 00:00:00 GMT" }, { "Host", HOST },
		{ "x-amz-date", "20130524T000000Z" }, { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
		{ "x-amz-content-sha256", body_hash },
	};

	shb_sha256_hex("Welcome to Amazon S3.", 21, hash);
	CHECK(!strcmp(hash, body_hash));
	/* '$' in the key is encoded in the canonical path. */
	check_sig("PUT", "/test$file.text", NULL, 0, h, 5, body_hash,
		  CRED "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
		  "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static const struct shb_kv empty_get[] = {
	{ "Host", HOST }, { "x-amz-date", "20130524T000000Z" },
	{ "x-amz-content-sha256", SHB_EMPTY_SHA256 },
};

static void test_value_less_query(void)
{
	const struct shb_kv q[] = { { "lifecycle", NULL } };

	check_sig("GET", "/", q, 1, empty_get, 3, SHB_EMPTY_SHA256,
		  CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
		  "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_several_query_parameters(void)
{
	/* Given out of order: signing must sort them. */
	const struct shb_kv q[] = { { "prefix", "J" }, { "max-keys", "2" } };

	check_sig("GET", "/", q, 2, empty_get, 3, SHB_EMPTY_SHA256,
		  CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
		  "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_encoding(void)
{
	const struct shb_kv q[] = {
		{ "uploads", "" }, { "prefix", "a b+c%d/é" }, { "encoding-type", "url" },
		{ "continuation-token", "1/x=y" }, { "prefix", "A" },
	};
	struct shb_buf b = SHB_BUF_INIT;

	CHECK_OK(shb_uri_encode(&b, "/backups/a b+c%d/é~_-.x", 1));
	CHECK(!strcmp((char *)b.data, "/backups/a%20b%2Bc%25d/%C3%A9~_-.x"));
	shb_buf_free(&b);
	CHECK_OK(shb_sigv4_query(&b, q, 5));
	CHECK(!strcmp((char *)b.data, "continuation-token=1%2Fx%3Dy&encoding-type=url"
		      "&prefix=A&prefix=a%20b%2Bc%25d%2F%C3%A9&uploads="));
	shb_buf_free(&b);
	CHECK_OK(shb_sigv4_query(&b, NULL, 0));
	CHECK(!strcmp((char *)b.data, ""));
	shb_buf_free(&b);
}

static void test_header_value_folding(void)
{
	const struct shb_kv h[] = { { "X-Amz-Meta-Note", "  two   spaces  " }, { "host", "h" } };
	struct shb_sigv4 r = { "HEAD", "/k", NULL, 0, h, 2, "UNSIGNED-PAYLOAD", "r", "s3", "a",
			       "s", 0 };
	struct shb_buf c = SHB_BUF_INIT;

	CHECK_OK(shb_sigv4_canonical(&c, &r));
	CHECK(!strcmp((char *)c.data, "HEAD\n/k\n\nhost:h\nx-amz-meta-note:two spaces\n\n"
		      "host;x-amz-meta-note\nUNSIGNED-PAYLOAD"));
	shb_buf_free(&c);
}

int main(void)
{
	test_get_object_range();
	test_put_object();
	test_value_less_query();
	test_several_query_parameters();
	test_encoding();
	test_header_value_folding();
	return check_done("test_sigv4");
}
