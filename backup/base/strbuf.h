/*
 * Growable memory: a byte buffer with invariants (struct shb_buf) and the
 * one way to grow an array (SHB_ALLOC_GROW).  Both report failures through
 * error.h: SHB_ENOMEM when memory runs out, SHB_ETOOBIG when an append
 * would pass a buffer's hard cap; a failed call leaves the buffer or the
 * array exactly as it was.
 *
 * The buffer's invariants, true after SHB_BUF_INIT / shb_buf_init() and
 * after every call below, failed or not:
 *
 *   - data is never NULL and data[len] == 0, so data can be handed to any
 *     string function as it is (bytes before len may hold NULs too);
 *   - before the first growth data points at a shared, read-only empty
 *     string and alloc is 0 (no allocation is made for an empty buffer;
 *     never write through data while alloc is 0);
 *   - len < alloc once anything was allocated (one byte for the NUL);
 *   - len <= max when max is not 0 (the hard cap, set at init).
 *
 * A zeroed struct is accepted too and behaves as SHB_BUF_INIT, except that
 * its data stays NULL until its first successful call; initialise with
 * SHB_BUF_INIT or shb_buf_init() rather than rely on that.  A buffer is not
 * thread-safe: one thread owns it at a time.
 */
#ifndef SHB_STRBUF_H
#define SHB_STRBUF_H

#include <stddef.h>

/* The shared empty string an unallocated buffer points at. */
extern const unsigned char shb_buf_empty[1];

struct shb_buf {
	unsigned char *data;   /* len bytes then a NUL; never NULL after init */
	size_t len;            /* bytes held, not counting the NUL */
	size_t alloc;          /* bytes allocated at data; 0 while data is shb_buf_empty */
	size_t max;            /* hard cap on len, 0 for none; set at init */
};

/* An empty buffer without a cap, for "struct shb_buf b = SHB_BUF_INIT;". */
#define SHB_BUF_INIT { .data = (unsigned char *)shb_buf_empty }

/* Makes b an empty buffer whose len may never pass max (0: no cap). */
void shb_buf_init(struct shb_buf *b, size_t max);

/*
 * Makes room for extra more bytes (plus the NUL) without changing len, so
 * a caller may write up to shb_buf_avail() bytes at data + len and then
 * call shb_buf_setlen().  SHB_ETOOBIG if len + extra would pass the cap,
 * SHB_ENOMEM when memory runs out; the buffer is unchanged on failure.
 */
int shb_buf_grow(struct shb_buf *b, size_t extra);

/* Bytes that may be written at data + len without growing (0 if none). */
static inline size_t shb_buf_avail(const struct shb_buf *b)
{
	return b->alloc ? b->alloc - b->len - 1 : 0;
}

/*
 * Sets len to n and writes the NUL after it.  n must not pass
 * len + shb_buf_avail() (bytes written after shb_buf_grow()), nor the cap.
 */
void shb_buf_setlen(struct shb_buf *b, size_t n);

/* Empties b (len 0, NUL at data[0]) keeping its memory and cap. */
static inline void shb_buf_reset(struct shb_buf *b)
{
	shb_buf_setlen(b, 0);
}

/*
 * Appends n bytes at p (p may be NULL when n is 0).  SHB_ETOOBIG past the
 * cap, SHB_ENOMEM; the buffer is unchanged on failure.
 */
int shb_buf_add(struct shb_buf *b, const void *p, size_t n);

/* Appends the string s without its NUL; errors as shb_buf_add(). */
int shb_buf_adds(struct shb_buf *b, const char *s);

/*
 * Appends printf output of any length; errors as shb_buf_add(), and
 * SHB_EINVAL when the format cannot be rendered.
 */
int shb_buf_addf(struct shb_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The contents as a C string (the NUL is always there); owned by b. */
static inline const char *shb_buf_str(const struct shb_buf *b)
{
	return (const char *)b->data;
}

/*
 * Hands the contents over to the caller as a malloc'd, NUL-terminated
 * string (free() it), stores its length in *len unless len is NULL, and
 * leaves b empty with its cap.  NULL with SHB_ENOMEM set when an empty
 * buffer's string cannot be allocated (b is then unchanged).
 */
char *shb_buf_detach(struct shb_buf *b, size_t *len);

/* Frees b's memory and leaves it empty with its cap, ready for reuse. */
void shb_buf_free(struct shb_buf *b);

/*
 * Makes room for at least nr elements of size elem in the array *ptr of
 * *alloc elements, doubling (from 16) so that appending one at a time
 * stays linear.  *ptr and *alloc change only on success; SHB_ENOMEM on
 * failure (or overflow).  Use it through SHB_ALLOC_GROW.
 */
int shb_alloc_grow(void **ptr, size_t elem, size_t nr, size_t *alloc);

/*
 * Makes room for nr elements in the array ptr whose allocated count is the
 * size_t lvalue alloc, as in
 *
 *     if ((rc = SHB_ALLOC_GROW(v->items, v->n + 1, v->alloc)))
 *             return rc;
 *     v->items[v->n++] = item;
 *
 * Evaluates to SHB_OK or SHB_ENOMEM (message set); ptr and alloc are
 * updated only on success.  ptr and alloc are evaluated more than once.
 */
#define SHB_ALLOC_GROW(ptr, nr, alloc) __extension__ ({ \
	void *shb_grow_p_ = (ptr); \
	int shb_grow_rc_ = shb_alloc_grow(&shb_grow_p_, sizeof(*(ptr)), (nr), &(alloc)); \
	(ptr) = shb_grow_p_; \
	shb_grow_rc_; \
})

#endif
