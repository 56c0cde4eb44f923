/*
 * The OpenSSL primitives at the sizes age uses: HKDF-SHA-256, HMAC-SHA-256,
 * X25519 and ChaCha20-Poly1305, and what age builds from them (the header
 * MAC, the payload key, the STREAM nonce, the X25519 stanza).
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "age.h"
#include "age_impl.h"
#include "error.h"
#include "strbuf.h"

#define X25519_INFO "age-encryption.org/v1/X25519"

int shb_age_hkdf(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt,
		 size_t salt_len, const char *info, unsigned char *out, size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[5], *p = params;
	int ok;

	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
	if (salt_len)  /* an empty salt is HashLen zero bytes, OpenSSL's default */
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
							 salt_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
						 strlen(info));
	*p = OSSL_PARAM_construct_end();
	ok = ctx && EVP_KDF_derive(ctx, out, out_len, params) > 0;
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ok ? SHB_OK : shb_fail(SHB_ENOMEM, "HKDF-SHA-256 failed in OpenSSL");
}

int shb_age_hmac(const unsigned char key[32], const unsigned char *data, size_t len,
		 unsigned char out[32])
{
	size_t out_len = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, 32, data, len, out, 32,
		       &out_len) || out_len != 32)
		return shb_fail(SHB_ENOMEM, "HMAC-SHA-256 failed in OpenSSL");
	return SHB_OK;
}

int shb_age_x25519_pub(const unsigned char secret[32], unsigned char pub[32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
	size_t len = 32;
	int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &len) && len == 32;

	EVP_PKEY_free(k);
	return ok ? SHB_OK : shb_fail(SHB_ENOMEM, "X25519 failed in OpenSSL");
}

int shb_age_x25519(const unsigned char secret[32], const unsigned char peer[32],
		   unsigned char shared[32])
{
	static const unsigned char zero[32];
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
	EVP_PKEY_CTX *ctx = k && pk ? EVP_PKEY_CTX_new(k, NULL) : NULL;
	size_t len = 32;
	int made = ctx && EVP_PKEY_derive_init(ctx) > 0, ok = 0;

	/* OpenSSL itself refuses an all-zero result (a low-order point). */
	if (made && EVP_PKEY_derive_set_peer(ctx, pk) > 0)
		ok = EVP_PKEY_derive(ctx, shared, &len) > 0 && len == 32;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	EVP_PKEY_free(k);
	if (!made)
		return shb_fail(SHB_ENOMEM, "X25519 failed in OpenSSL");
	if (!ok || CRYPTO_memcmp(shared, zero, 32) == 0) {
		OPENSSL_cleanse(shared, 32);
		return shb_fail(SHB_EFORMAT, "an X25519 share is a low-order point");
	}
	return SHB_OK;
}

static int aead_init(EVP_CIPHER_CTX *ctx, const unsigned char key[32],
		     const unsigned char nonce[12], int enc)
{
	return EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL, enc) > 0
	       && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) > 0
	       && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) > 0;
}

int shb_age_aead_seal(EVP_CIPHER_CTX *ctx, const unsigned char key[32],
		      const unsigned char nonce[12], const unsigned char *in, size_t len,
		      unsigned char *out)
{
	int n = 0, fin = 0;

	if (len > (size_t)SHB_AGE_CHUNK || !aead_init(ctx, key, nonce, 1)
	    || (len && EVP_EncryptUpdate(ctx, out, &n, in, (int)len) <= 0)
	    || EVP_EncryptFinal_ex(ctx, out + n, &fin) <= 0 || (size_t)(n + fin) != len
	    || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + len) <= 0)
		return shb_fail(SHB_ENOMEM, "ChaCha20-Poly1305 failed in OpenSSL");
	return SHB_OK;
}

int shb_age_aead_open(EVP_CIPHER_CTX *ctx, const unsigned char key[32],
		      const unsigned char nonce[12], const unsigned char *in, size_t len,
		      unsigned char *out)
{
	unsigned char tag[16];
	int n = 0, fin = 0;

	memcpy(tag, in + len, 16);  /* in may be out: keep the tag apart */
	if (len > (size_t)SHB_AGE_CHUNK || !aead_init(ctx, key, nonce, 0)
	    || (len && EVP_DecryptUpdate(ctx, out, &n, in, (int)len) <= 0)
	    || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag) <= 0)
		return shb_fail(SHB_ENOMEM, "ChaCha20-Poly1305 failed in OpenSSL");
	if (EVP_DecryptFinal_ex(ctx, out + n, &fin) <= 0 || (size_t)(n + fin) != len) {
		OPENSSL_cleanse(out, len);
		return SHB_ECORRUPT;
	}
	return SHB_OK;
}

void shb_age_stream_nonce(uint64_t counter, int last, unsigned char nonce[12])
{
	memset(nonce, 0, 12);
	for (int i = 0; i < 8; i++)
		nonce[10 - i] = (unsigned char)(counter >> (8 * i));
	nonce[11] = last ? 1 : 0;
}

int shb_age_header_mac(const unsigned char file_key[16], const unsigned char *hdr,
		       size_t len, unsigned char mac[32])
{
	unsigned char key[32];
	int rc = shb_age_hkdf(file_key, 16, NULL, 0, "header", key, 32);

	if (!rc)
		rc = shb_age_hmac(key, hdr, len, mac);
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

int shb_age_payload_key(const unsigned char file_key[16],
			const unsigned char nonce[SHB_AGE_NONCE], unsigned char key[32])
{
	return shb_age_hkdf(file_key, 16, nonce, SHB_AGE_NONCE, "payload", key, 32);
}

/* The wrapping key of an X25519 stanza: HKDF(shared, share || pub). */
static int x25519_wrap_key(const unsigned char shared[32], const unsigned char share[32],
			   const unsigned char pub[32], unsigned char key[32])
{
	unsigned char salt[64];

	memcpy(salt, share, 32);
	memcpy(salt + 32, pub, 32);
	return shb_age_hkdf(shared, 32, salt, 64, X25519_INFO, key, 32);
}

int shb_age_wrap_x25519(const unsigned char file_key[16], const unsigned char pub[32],
			struct shb_buf *b)
{
	static const unsigned char zero_nonce[12];
	unsigned char eph[32], share[32], shared[32], key[32], body[32];
	char share64[48], body64[48];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int rc = SHB_ENOMEM;

	if (!ctx || RAND_bytes(eph, 32) != 1) {
		rc = shb_fail(SHB_ENOMEM, "no random bytes from OpenSSL");
		goto out;
	}
	if ((rc = shb_age_x25519_pub(eph, share)) || (rc = shb_age_x25519(eph, pub, shared))
	    || (rc = x25519_wrap_key(shared, share, pub, key))
	    || (rc = shb_age_aead_seal(ctx, key, zero_nonce, file_key, 16, body)))
		goto out;
	shb_age_b64_encode(share, 32, share64);
	shb_age_b64_encode(body, 32, body64);
	rc = shb_buf_addf(b, "-> X25519 %s\n%s\n", share64, body64);
out:
	OPENSSL_cleanse(eph, sizeof(eph));
	OPENSSL_cleanse(shared, sizeof(shared));
	OPENSSL_cleanse(key, sizeof(key));
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

/*
 * Unwraps one X25519 stanza (already checked well-formed: share and body
 * decoded) with id.  SHB_OK and file_key set; SHB_EKEY (no message) when
 * id is not its recipient; SHB_EFORMAT for a low-order share; SHB_ENOMEM.
 */
int shb_age_unwrap_x25519(const unsigned char share[32], const unsigned char body[32],
			  const struct shb_age_key *id, unsigned char file_key[16])
{
	static const unsigned char zero_nonce[12];
	unsigned char shared[32], key[32], out[16];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int rc;

	if (!ctx)
		return shb_fail(SHB_ENOMEM, "out of memory");
	if (!(rc = shb_age_x25519(id->secret, share, shared))
	    && !(rc = x25519_wrap_key(shared, share, id->pub, key))) {
		rc = shb_age_aead_open(ctx, key, zero_nonce, body, 16, out);
		if (rc == SHB_ECORRUPT)
			rc = SHB_EKEY;
		if (!rc)
			memcpy(file_key, out, 16);
	}
	OPENSSL_cleanse(shared, sizeof(shared));
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(out, sizeof(out));
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}
