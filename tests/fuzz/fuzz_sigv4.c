/*
 * libFuzzer target: SigV4 canonicalisation of arbitrary keys, query
 * parameters and header values.  The input is split at NUL bytes into a
 * path, then name/value pairs.
 */
#include <stdlib.h>
#include <string.h>

#include "sigv4.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char *copy = malloc(size + 1), *parts[9] = { 0 }, *auth = NULL;
	struct shb_kv q[3], h[3];
	struct shb_buf b = SHB_BUF_INIT;
	int n = 0;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (char *p = copy; n < 9 && p <= copy + size; p += strlen(p) + 1)
		parts[n++] = p;
	for (int i = 0; i < 9; i++)
		if (!parts[i])
			parts[i] = "";
	for (int i = 0; i < 3; i++)
		q[i] = (struct shb_kv){ parts[1 + i], parts[4 + i] };
	h[0] = (struct shb_kv){ "host", parts[7] };
	h[1] = (struct shb_kv){ "x-amz-date", "20130524T000000Z" };
	h[2] = (struct shb_kv){ "x-amz-meta-note", parts[8] };
	struct shb_sigv4 req = { "GET", parts[0], q, 3, h, 3, SHB_EMPTY_SHA256, "us-east-1", "s3",
				 "AKID", "SECRET", 1369353600 };
	shb_uri_encode(&b, parts[0], 1);
	shb_buf_free(&b);
	shb_sigv4_query(&b, q, 3);
	shb_buf_free(&b);
	shb_sigv4_canonical(&b, &req);
	shb_buf_free(&b);
	if (shb_sigv4_sign(&req, &auth) == 0)
		free(auth);
	free(copy);
	return 0;
}
