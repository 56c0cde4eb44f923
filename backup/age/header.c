/*
 * The age header: the parser (every rule of the specification's grammar,
 * strictly: VCHAR arguments, 64-column canonical base64 bodies ended by a
 * short line, the MAC line) and the unwrapping of the file key with the
 * X25519 identities, MAC checked.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "age.h"
#include "age_impl.h"
#include "error.h"

#define MAGIC_LINE SHB_AGE_MAGIC "\n"

/* The parser's cursor over buf[0..len). */
struct cursor {
	const unsigned char *buf;
	size_t len, pos;
};

/* Result of next_line(): a line without its "\n", or why there is none. */
enum { LINE_OK, LINE_SHORT };

static int next_line(struct cursor *c, const char **line, size_t *n)
{
	const unsigned char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);

	if (!nl)
		return LINE_SHORT;
	*line = (const char *)c->buf + c->pos;
	*n = (size_t)(nl - (c->buf + c->pos));
	c->pos += *n + 1;
	return LINE_OK;
}

static int bad(const char *what)
{
	return shb_fail(SHB_EFORMAT, "not a valid age header: %s", what);
}

/* SHB_ETOOBIG (read more) while the buffer may still grow, else SHB_EFORMAT. */
static int short_header(const struct cursor *c)
{
	if (c->len < SHB_AGE_MAX_HEADER)
		return shb_fail(SHB_ETOOBIG, "age header continues past %zu bytes", c->len);
	return bad("longer than 64 KiB");
}

static int add_arg(struct shb_age_stanza *st, const char *s, size_t n)
{
	char **args = realloc(st->args, (st->nargs + 1) * sizeof(char *));

	if (!args)
		return shb_fail(SHB_ENOMEM, "out of memory");
	st->args = args;
	if (!(args[st->nargs] = strndup(s, n)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	st->nargs++;
	return SHB_OK;
}

/* Splits "-> a b c" into the type a and the arguments b c. */
static int stanza_args(struct shb_age_stanza *st, const char *line, size_t n)
{
	size_t start = 3;
	int rc;

	for (size_t i = 3; i <= n; i++) {
		if (i < n && line[i] != ' ') {
			if ((unsigned char)line[i] < 0x21 || (unsigned char)line[i] > 0x7e)
				return bad("a stanza argument is not printable");
			continue;
		}
		if (i == start)
			return bad("an empty stanza argument");
		if ((rc = add_arg(st, line + start, i - start)))
			return rc;
		start = i + 1;
	}
	st->type = st->args[0];
	memmove(st->args, st->args + 1, (st->nargs - 1) * sizeof(char *));
	st->nargs--;
	return SHB_OK;
}

/* The body lines of a stanza: full 64-column lines, then a shorter one. */
static int stanza_body(struct cursor *c, struct shb_age_stanza *st)
{
	const char *line;
	size_t n, got;

	for (;;) {
		if (next_line(c, &line, &n) != LINE_OK)
			return short_header(c);
		if (n > 64)
			return bad("a stanza body line is longer than 64 columns");
		if (!(st->body = realloc(st->body, st->body_len + 49)))
			return shb_fail(SHB_ENOMEM, "out of memory");
		if (shb_age_b64_decode(line, n, st->body + st->body_len, &got))
			return bad("a stanza body is not canonical base64");
		st->body_len += got;
		if (n < 64)
			return SHB_OK;
	}
}

static int parse_stanza(struct cursor *c, const char *line, size_t n,
			struct shb_age_header *h)
{
	struct shb_age_stanza *st;
	void *p = realloc(h->stanzas, (h->n + 1) * sizeof(*h->stanzas));
	int rc;

	if (!p)
		return shb_fail(SHB_ENOMEM, "out of memory");
	h->stanzas = p;
	st = &h->stanzas[h->n++];
	memset(st, 0, sizeof(*st));
	if (n < 4)
		return bad("a stanza without a type");
	if ((rc = stanza_args(st, line, n)))
		return rc;
	return stanza_body(c, st);
}

static int parse_mac(const char *line, size_t n, struct shb_age_header *h)
{
	size_t got;

	if (n != 4 + 43 || line[3] != ' ' || shb_age_b64_decode(line + 4, 43, h->mac, &got)
	    || got != 32)
		return bad("a bad MAC line");
	return SHB_OK;
}

static int parse_all(struct cursor *c, struct shb_age_header *h)
{
	size_t ml = strlen(MAGIC_LINE), n;
	const char *line;
	int rc;

	if (memcmp(c->buf, MAGIC_LINE, c->len < ml ? c->len : ml))
		return bad("no age-encryption.org/v1 line");
	if (c->len < ml)
		return short_header(c);
	c->pos = ml;
	for (;;) {
		size_t at = c->pos;

		if (next_line(c, &line, &n) != LINE_OK)
			return short_header(c);
		if (n >= 3 && !memcmp(line, "---", 3)) {
			if (!h->n)
				return bad("no recipient stanza");
			if ((rc = parse_mac(line, n, h)))
				return rc;
			h->mac_offset = at + 3;
			h->len = c->pos;
			return SHB_OK;
		}
		if (n < 3 || memcmp(line, "-> ", 3))
			return bad("a line that is neither a stanza nor the MAC");
		if ((rc = parse_stanza(c, line, n, h)))
			return rc;
	}
}

int shb_age_header_parse(const unsigned char *buf, size_t len, struct shb_age_header *h)
{
	struct cursor c = { buf, len > SHB_AGE_MAX_HEADER ? SHB_AGE_MAX_HEADER : len, 0 };
	int rc;

	memset(h, 0, sizeof(*h));
	if ((rc = parse_all(&c, h)))
		shb_age_header_free(h);
	return rc;
}

void shb_age_header_free(struct shb_age_header *h)
{
	for (size_t i = 0; i < h->n; i++) {
		struct shb_age_stanza *st = &h->stanzas[i];

		for (size_t k = 0; k < st->nargs; k++)
			free(st->args[k]);
		free(st->args);
		free(st->type);
		free(st->body);
	}
	free(h->stanzas);
	memset(h, 0, sizeof(*h));
}

/* Decodes an X25519 stanza's share and body; SHB_EFORMAT when malformed. */
static int x25519_parts(const struct shb_age_stanza *st, unsigned char share[32],
			unsigned char body[32])
{
	size_t n;

	if (st->nargs != 1 || strlen(st->args[0]) != 43
	    || shb_age_b64_decode(st->args[0], 43, share, &n) || n != 32)
		return bad("an X25519 stanza without a 32-byte share");
	if (st->body_len != 32)
		return bad("an X25519 stanza whose body is not 32 bytes");
	memcpy(body, st->body, 32);
	return SHB_OK;
}

/* Checks every stanza before any is tried: one malformed X25519 fails all. */
static int check_stanzas(const struct shb_age_header *h)
{
	unsigned char share[32], body[32];
	int rc;

	for (size_t i = 0; i < h->n; i++) {
		/* The spec's rule: a scrypt stanza is the only one.  Alone, it is a key we lack. */
		if (!strcmp(h->stanzas[i].type, "scrypt") && h->n == 1)
			return shb_fail(SHB_EKEY, "encrypted with a passphrase (age -p), which is not "
					"supported: only identities (X25519) are");
		if (!strcmp(h->stanzas[i].type, "scrypt"))
			return bad("a passphrase (scrypt) stanza, not supported");
		if (!strcmp(h->stanzas[i].type, "X25519")
		    && (rc = x25519_parts(&h->stanzas[i], share, body)))
			return rc;
	}
	return SHB_OK;
}

/* Tries every identity on every X25519 stanza: SHB_OK, SHB_EKEY or a failure. */
static int find_file_key(const struct shb_age_header *h, const struct shb_age_keys *ids,
			 unsigned char file_key[16])
{
	unsigned char share[32], body[32];
	int rc;

	for (size_t i = 0; i < h->n; i++) {
		if (strcmp(h->stanzas[i].type, "X25519"))
			continue;  /* another recipient type, or grease */
		x25519_parts(&h->stanzas[i], share, body);
		for (size_t k = 0; ids && k < ids->n; k++) {
			rc = shb_age_unwrap_x25519(share, body, &ids->keys[k], file_key);
			if (rc != SHB_EKEY)
				return rc;
		}
	}
	return shb_fail(SHB_EKEY, "no identity matches a recipient of the age file");
}

int shb_age_unwrap(const struct shb_age_header *h, const unsigned char *hdr,
		   const struct shb_age_keys *ids, unsigned char file_key[16])
{
	unsigned char mac[32];
	int rc;

	if ((rc = check_stanzas(h)) || (rc = find_file_key(h, ids, file_key)))
		return rc;
	if ((rc = shb_age_header_mac(file_key, hdr, h->mac_offset, mac)))
		goto fail;
	if (CRYPTO_memcmp(mac, h->mac, 32)) {
		rc = shb_fail(SHB_ECORRUPT, "the age header MAC does not match");
		goto fail;
	}
	return SHB_OK;
fail:
	OPENSSL_cleanse(file_key, 16);
	return rc;
}
