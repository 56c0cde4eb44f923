/*
 * The byte buffer and array growth of strbuf.h.  Every function keeps the
 * invariants listed there; the only memory a buffer owns is data while
 * alloc is not 0.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "strbuf.h"

const unsigned char shb_buf_empty[1];

void shb_buf_init(struct shb_buf *b, size_t max)
{
	*b = (struct shb_buf){ .data = (unsigned char *)shb_buf_empty, .max = max };
}

int shb_buf_grow(struct shb_buf *b, size_t extra)
{
	size_t want, alloc;
	unsigned char *p;

	if (b->max && extra > b->max - b->len)
		return shb_fail(SHB_ETOOBIG, "buffer would pass its limit of %zu bytes", b->max);
	if (extra >= SIZE_MAX - b->len)
		return shb_fail(SHB_ENOMEM, "buffer size overflow");
	want = b->len + extra + 1;
	if (want <= b->alloc)
		return SHB_OK;
	if (!b->alloc && want == 1) {
		/* Nothing to hold: a zeroed struct gets the shared empty string. */
		b->data = (unsigned char *)shb_buf_empty;
		return SHB_OK;
	}
	alloc = b->alloc ? b->alloc : 256;
	while (alloc < want)
		alloc = alloc > SIZE_MAX / 2 ? want : alloc * 2;
	p = realloc(b->alloc ? b->data : NULL, alloc);
	if (!p)
		return shb_fail(SHB_ENOMEM, "out of memory growing a buffer to %zu bytes", alloc);
	if (!b->alloc)
		p[0] = 0;
	b->data = p;
	b->alloc = alloc;
	return SHB_OK;
}

void shb_buf_setlen(struct shb_buf *b, size_t n)
{
	if (!b->alloc) {
		/* Only 0 fits, and the shared empty string already ends there. */
		b->data = (unsigned char *)shb_buf_empty;
		b->len = 0;
		return;
	}
	b->len = n;
	b->data[n] = 0;
}

int shb_buf_add(struct shb_buf *b, const void *p, size_t n)
{
	int rc = shb_buf_grow(b, n);

	if (rc)
		return rc;
	if (n) {
		memcpy(b->data + b->len, p, n);
		shb_buf_setlen(b, b->len + n);
	}
	return SHB_OK;
}

int shb_buf_adds(struct shb_buf *b, const char *s)
{
	return shb_buf_add(b, s, strlen(s));
}

int shb_buf_addf(struct shb_buf *b, const char *fmt, ...)
{
	va_list ap;
	int k, rc;

	va_start(ap, fmt);
	k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (k < 0)
		return shb_fail(SHB_EINVAL, "cannot format '%s'", fmt);
	if ((rc = shb_buf_grow(b, (size_t)k)))
		return rc;
	if (!k)
		return SHB_OK;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)k + 1, fmt, ap);
	va_end(ap);
	shb_buf_setlen(b, b->len + (size_t)k);
	return SHB_OK;
}

char *shb_buf_detach(struct shb_buf *b, size_t *len)
{
	char *s = (char *)b->data;
	size_t n = b->len;

	if (!b->alloc && !(s = calloc(1, 1))) {
		shb_fail(SHB_ENOMEM, "out of memory");
		return NULL;
	}
	shb_buf_init(b, b->max);
	if (len)
		*len = n;
	return s;
}

void shb_buf_free(struct shb_buf *b)
{
	if (b->alloc)
		free(b->data);
	shb_buf_init(b, b->max);
}

int shb_alloc_grow(void **ptr, size_t elem, size_t nr, size_t *alloc)
{
	size_t n = *alloc ? *alloc : 16;
	void *p;

	if (nr <= *alloc)
		return SHB_OK;
	while (n < nr)
		n = n > SIZE_MAX / 2 ? nr : n * 2;
	if (!elem || n > SIZE_MAX / elem)
		return shb_fail(SHB_ENOMEM, "out of memory");
	if (!(p = realloc(*ptr, n * elem)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	*ptr = p;
	*alloc = n;
	return SHB_OK;
}
