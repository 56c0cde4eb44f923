/*
 * Internals of backup/age shared by its files (not for other layers): the
 * bech32 and base64 codecs, the OpenSSL primitives wrapped to the sizes
 * age uses, and the STREAM nonce.  Every function returns an SHB_E* code
 * with shb_errmsg() set unless it says otherwise.
 */
#ifndef SHB_AGE_IMPL_H
#define SHB_AGE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* Ciphertext bytes of one full STREAM chunk. */
#define SHB_AGE_CCHUNK (SHB_AGE_CHUNK + SHB_AGE_TAG)
#define SHB_AGE_NONCE 16u  /* the payload nonce after the header */

/*
 * Encodes data[0..len) as bech32 (BIP-173) with hrp into out[0..cap)
 * (NUL-terminated), lower case, or upper case when upper is set.  No
 * length limit.  Returns 0, or -1 when cap is too small.
 */
int shb_bech32_encode(const char *hrp, const unsigned char *data, size_t len, int upper,
		      char *out, size_t cap);
/*
 * Decodes the bech32 string s: checks the case (all lower or all upper),
 * the checksum and the padding, copies the HRP (lower-cased) into
 * hrp[0..hrp_cap) and the data into data[0..data_cap), *len set.
 * Returns 0, or -1 for anything invalid (no message set).
 */
int shb_bech32_decode(const char *s, char *hrp, size_t hrp_cap, unsigned char *data,
		      size_t data_cap, size_t *len);

/* Unpadded standard base64 of in[0..len) into out (4*len/3+2 bytes, NUL-terminated). */
void shb_age_b64_encode(const unsigned char *in, size_t len, char *out);
/*
 * Decodes len characters of canonical unpadded base64 into out (at least
 * len*3/4 bytes), *out_len set.  Returns 0, or -1 for a character outside
 * the alphabet, padding, a length of 1 mod 4 or nonzero trailing bits.
 */
int shb_age_b64_decode(const char *in, size_t len, unsigned char *out, size_t *out_len);

/* HKDF-SHA-256 (RFC 5869) with out_len bytes of output.  SHB_ENOMEM on failure. */
int shb_age_hkdf(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt,
		 size_t salt_len, const char *info, unsigned char *out, size_t out_len);
/* HMAC-SHA-256 of data with a 32-byte key.  SHB_ENOMEM on failure. */
int shb_age_hmac(const unsigned char key[32], const unsigned char *data, size_t len,
		 unsigned char out[32]);
/* The X25519 public key of secret.  SHB_ENOMEM on failure. */
int shb_age_x25519_pub(const unsigned char secret[32], unsigned char pub[32]);
/*
 * The X25519 shared secret of secret and peer.  SHB_EFORMAT when it is
 * all zero (a low-order peer point), SHB_ENOMEM for other failures.
 */
int shb_age_x25519(const unsigned char secret[32], const unsigned char peer[32],
		   unsigned char shared[32]);
/*
 * ChaCha20-Poly1305 with a 32-byte key and a 12-byte nonce, no AAD, on
 * ctx (a fresh or reused EVP_CIPHER_CTX of the caller).  seal writes len
 * bytes and the 16-byte tag after them; open reads len bytes plus the tag
 * and writes len bytes (out may equal in).  open returns SHB_ECORRUPT
 * without a message for a tag that does not match (out is then wiped);
 * both SHB_ENOMEM for an OpenSSL failure.
 */
int shb_age_aead_seal(EVP_CIPHER_CTX *ctx, const unsigned char key[32],
		      const unsigned char nonce[12], const unsigned char *in, size_t len,
		      unsigned char *out);
int shb_age_aead_open(EVP_CIPHER_CTX *ctx, const unsigned char key[32],
		      const unsigned char nonce[12], const unsigned char *in, size_t len,
		      unsigned char *out);
/* The STREAM nonce of chunk counter with the last flag. */
void shb_age_stream_nonce(uint64_t counter, int last, unsigned char nonce[12]);
/* The header MAC: HMAC(HKDF(file_key, "", "header"), hdr[0..len)). */
int shb_age_header_mac(const unsigned char file_key[16], const unsigned char *hdr,
		       size_t len, unsigned char mac[32]);
/* The payload key: HKDF(file_key, nonce, "payload"). */
int shb_age_payload_key(const unsigned char file_key[16],
			const unsigned char nonce[SHB_AGE_NONCE], unsigned char key[32]);
/*
 * Unwraps one well-formed X25519 stanza (share and body decoded) with the
 * identity id.  SHB_OK and file_key set; SHB_EKEY without a message when
 * id is not its recipient; SHB_EFORMAT for a low-order share; SHB_ENOMEM.
 */
struct shb_age_key;
int shb_age_unwrap_x25519(const unsigned char share[32], const unsigned char body[32],
			  const struct shb_age_key *id, unsigned char file_key[16]);
/*
 * Wraps file_key for the recipient pub as an X25519 stanza appended to
 * the header text in *b (a struct shb_buf).  SHB_ENOMEM.
 */
struct shb_buf;
int shb_age_wrap_x25519(const unsigned char file_key[16], const unsigned char pub[32],
			struct shb_buf *b);

#endif
