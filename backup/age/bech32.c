/*
 * The two text encodings of age: bech32 (BIP-173, not bech32m, without
 * the 90-character limit) for keys, and canonical unpadded standard
 * base64 (RFC 4648) for the header.  Written here rather than taken from
 * OpenSSL because age needs the strict decoders: mixed case, padding and
 * nonzero trailing bits are all refused.
 */
#include <ctype.h>
#include <string.h>

#include "age.h"
#include "age_impl.h"

static const char bech32_set[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod_step(uint32_t chk, unsigned v)
{
	static const uint32_t gen[5] = { 0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd,
					 0x2a1462b3 };
	uint32_t top = chk >> 25;

	chk = ((chk & 0x1ffffff) << 5) ^ v;
	for (int i = 0; i < 5; i++)
		if ((top >> i) & 1)
			chk ^= gen[i];
	return chk;
}

/* The checksum state after the expanded (lower-case) HRP. */
static uint32_t polymod_hrp(const char *hrp, size_t n)
{
	uint32_t chk = 1;

	for (size_t i = 0; i < n; i++)
		chk = polymod_step(chk, (unsigned)tolower((unsigned char)hrp[i]) >> 5);
	chk = polymod_step(chk, 0);
	for (size_t i = 0; i < n; i++)
		chk = polymod_step(chk, (unsigned)tolower((unsigned char)hrp[i]) & 31);
	return chk;
}

static size_t bech32_emit(char *out, size_t o, unsigned v, uint32_t *chk)
{
	*chk = polymod_step(*chk, v);
	out[o] = bech32_set[v];
	return o + 1;
}

int shb_bech32_encode(const char *hrp, const unsigned char *data, size_t len, int upper,
		      char *out, size_t cap)
{
	size_t hlen = strlen(hrp), o = 0, nd = (len * 8 + 4) / 5;
	uint32_t chk = polymod_hrp(hrp, hlen), acc = 0;
	unsigned bits = 0;

	if (cap < hlen + 1 + nd + 6 + 1)
		return -1;
	for (size_t i = 0; i < hlen; i++)
		out[o++] = (char)tolower((unsigned char)hrp[i]);
	out[o++] = '1';
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | data[i];
		for (bits += 8; bits >= 5;) {
			bits -= 5;
			o = bech32_emit(out, o, (acc >> bits) & 31, &chk);
		}
		acc &= (1u << bits) - 1;
	}
	if (bits)
		o = bech32_emit(out, o, (acc << (5 - bits)) & 31, &chk);
	for (int i = 0; i < 6; i++)
		chk = polymod_step(chk, 0);
	chk ^= 1;
	for (int i = 0; i < 6; i++)
		out[o++] = bech32_set[(chk >> (5 * (5 - i))) & 31];
	out[o] = '\0';
	if (upper)
		for (size_t i = 0; i < o; i++)
			out[i] = (char)toupper((unsigned char)out[i]);
	return 0;
}

/* Case check: -1 for mixed case or a character outside 33..126. */
static int bech32_case(const char *s, size_t n)
{
	int lower = 0, upper = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 33 || c > 126)
			return -1;
		lower |= islower(c) != 0;
		upper |= isupper(c) != 0;
	}
	return lower && upper ? -1 : 0;
}

/* 5-bit groups to bytes, strictly: fewer than 5 padding bits, all zero. */
static int bech32_regroup(const unsigned char *v, size_t n, unsigned char *data,
			  size_t cap, size_t *len)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		acc = (acc << 5) | v[i];
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			data[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (bits >= 5 || acc)
		return -1;
	*len = o;
	return 0;
}

int shb_bech32_decode(const char *s, char *hrp, size_t hrp_cap, unsigned char *data,
		      size_t data_cap, size_t *len)
{
	size_t n = strlen(s), sep, nv;
	const char *p = strrchr(s, '1');
	unsigned char v[512];
	uint32_t chk;

	if (!p || bech32_case(s, n) || (sep = (size_t)(p - s)) < 1 || n - sep - 1 < 6
	    || sep + 1 > hrp_cap || n - sep - 1 - 6 > sizeof(v))
		return -1;
	chk = polymod_hrp(s, sep);
	nv = n - sep - 1;
	for (size_t i = 0; i < nv; i++) {
		const char *q = strchr(bech32_set, tolower((unsigned char)p[1 + i]));

		if (!q || !*q)
			return -1;
		chk = polymod_step(chk, (unsigned)(q - bech32_set));
		if (i < nv - 6)
			v[i] = (unsigned char)(q - bech32_set);
	}
	if (chk != 1 || bech32_regroup(v, nv - 6, data, data_cap, len))
		return -1;
	for (size_t i = 0; i < sep; i++)
		hrp[i] = (char)tolower((unsigned char)s[i]);
	hrp[sep] = '\0';
	return 0;
}

static const char b64_set[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void shb_age_b64_encode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		for (int k = 0; k < 4; k++)
			out[o++] = b64_set[(v >> (18 - 6 * k)) & 63];
	}
	if (len - i == 1) {
		out[o++] = b64_set[in[i] >> 2];
		out[o++] = b64_set[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];

		out[o++] = b64_set[v >> 10];
		out[o++] = b64_set[(v >> 4) & 63];
		out[o++] = b64_set[(v << 2) & 63];
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	const char *q = c ? memchr(b64_set, c, 64) : NULL;

	return q ? (int)(q - b64_set) : -1;
}

int shb_age_b64_decode(const char *in, size_t len, unsigned char *out, size_t *out_len)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc)
		return -1;  /* nonzero trailing bits: not canonical */
	*out_len = o;
	return 0;
}
