/*
 * Reading an entry whole while hashing it (entry_hash.h).
 */
#include <stdlib.h>

#include <openssl/evp.h>

#include "entry_hash.h"
#include "error.h"

int shb_entry_hash_read(struct shb_reader *r, const struct shb_entry *e, size_t chunk,
			shb_piece_fn fn, void *ctx, unsigned char sum[32])
{
	unsigned char *buf = malloc(chunk);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc = SHB_OK;

	if (!buf || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		rc = shb_fail(SHB_ENOMEM, "out of memory");
	for (uint64_t off = 0; !rc && off < e->size; off += chunk) {
		size_t got;

		if (!(rc = shb_reader_pread(r, e, buf, chunk, off, &got))) {
			EVP_DigestUpdate(md, buf, got);
			rc = fn ? fn(ctx, buf, got, off) : SHB_OK;
		}
	}
	if (!rc)
		EVP_DigestFinal_ex(md, sum, NULL);
	EVP_MD_CTX_free(md);
	free(buf);
	return rc;
}
