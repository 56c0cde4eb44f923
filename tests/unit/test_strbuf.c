/*
 * Unit tests of the byte buffer and SHB_ALLOC_GROW (strbuf.h): the
 * invariants after every operation, the cap's refusal leaving the contents
 * alone, detach and the array growth.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "strbuf.h"

/* What strbuf.h promises after every call, failed or not. */
static int invariants_hold(const struct shb_buf *b)
{
	if (!b->data || b->data[b->len] != 0)
		return 0;
	if (!b->alloc)
		return b->len == 0 && b->data == shb_buf_empty;
	return b->len < b->alloc && (!b->max || b->len <= b->max);
}

static int holds(const struct shb_buf *b, const char *s, size_t n)
{
	return invariants_hold(b) && b->len == n && !memcmp(b->data, s, n);
}

static void test_empty(void)
{
	struct shb_buf b = SHB_BUF_INIT, z = { 0 };

	CHECK(holds(&b, "", 0) && !strcmp(shb_buf_str(&b), ""));
	CHECK_OK(shb_buf_add(&b, NULL, 0));
	CHECK(holds(&b, "", 0) && b.alloc == 0);
	shb_buf_reset(&b);
	CHECK(holds(&b, "", 0));
	shb_buf_free(&b);
	CHECK(holds(&b, "", 0));
	/* A zeroed struct becomes a proper empty buffer on its first call. */
	CHECK_OK(shb_buf_add(&z, "", 0));
	CHECK(holds(&z, "", 0));
	shb_buf_free(&z);
	CHECK(holds(&z, "", 0));
}

static void test_add(void)
{
	struct shb_buf b = SHB_BUF_INIT;
	char big[1000];

	CHECK_OK(shb_buf_add(&b, "ab", 2));
	CHECK(holds(&b, "ab", 2));
	CHECK_OK(shb_buf_adds(&b, "cd"));
	CHECK(holds(&b, "abcd", 4) && !strcmp(shb_buf_str(&b), "abcd"));
	/* Bytes may be NULs: the terminator comes after len all the same. */
	CHECK_OK(shb_buf_add(&b, "x\0y", 3));
	CHECK(holds(&b, "abcdx\0y", 7));
	memset(big, 'q', sizeof(big));
	CHECK_OK(shb_buf_add(&b, big, sizeof(big)));
	CHECK(invariants_hold(&b) && b.len == 1007 && b.data[1006] == 'q');
	CHECK_OK(shb_buf_addf(&b, "%d-%s", 42, "z"));
	CHECK(invariants_hold(&b) && b.len == 1011 && !memcmp(b.data + 1007, "42-z", 4));
	CHECK_OK(shb_buf_addf(&b, "%s", ""));
	CHECK(invariants_hold(&b) && b.len == 1011);
	shb_buf_reset(&b);
	CHECK(holds(&b, "", 0) && b.alloc > 0);
	CHECK_OK(shb_buf_addf(&b, "%0600d", 7));
	CHECK(invariants_hold(&b) && b.len == 600 && b.data[599] == '7');
	/* A size that cannot be represented fails and changes nothing. */
	CHECK(shb_buf_grow(&b, SIZE_MAX) == SHB_ENOMEM);
	CHECK(invariants_hold(&b) && b.len == 600);
	shb_buf_free(&b);
	CHECK(holds(&b, "", 0));
}

static void test_cap(void)
{
	struct shb_buf b;
	unsigned char *data;

	shb_buf_init(&b, 10);
	CHECK(holds(&b, "", 0) && b.max == 10);
	CHECK(shb_buf_add(&b, "0123456789x", 11) == SHB_ETOOBIG);
	CHECK(holds(&b, "", 0));
	CHECK_OK(shb_buf_add(&b, "012345", 6));
	data = b.data;
	CHECK(shb_buf_add(&b, "abcde", 5) == SHB_ETOOBIG);
	CHECK(strstr(shb_errmsg(), "limit of 10 bytes") != NULL);
	CHECK(holds(&b, "012345", 6) && b.data == data);
	CHECK(shb_buf_addf(&b, "%s", "abcde") == SHB_ETOOBIG);
	CHECK(holds(&b, "012345", 6));
	CHECK_OK(shb_buf_add(&b, "6789", 4));
	CHECK(holds(&b, "0123456789", 10));
	CHECK(shb_buf_add(&b, "a", 1) == SHB_ETOOBIG);
	CHECK(shb_buf_grow(&b, 1) == SHB_ETOOBIG);
	CHECK_OK(shb_buf_add(&b, "", 0));
	CHECK(holds(&b, "0123456789", 10));
	/* The cap outlives free and detach. */
	shb_buf_free(&b);
	CHECK(holds(&b, "", 0) && b.max == 10);
	CHECK(shb_buf_add(&b, "0123456789x", 11) == SHB_ETOOBIG);
	CHECK(holds(&b, "", 0));
	shb_buf_free(&b);
}

static void test_grow_setlen(void)
{
	struct shb_buf b = SHB_BUF_INIT;

	CHECK(shb_buf_avail(&b) == 0);
	CHECK_OK(shb_buf_add(&b, "ab", 2));
	CHECK_OK(shb_buf_grow(&b, 300));
	CHECK(holds(&b, "ab", 2) && shb_buf_avail(&b) >= 300);
	memset(b.data + b.len, 'z', 300);
	shb_buf_setlen(&b, b.len + 300);
	CHECK(invariants_hold(&b) && b.len == 302 && b.data[301] == 'z');
	shb_buf_setlen(&b, 1);
	CHECK(holds(&b, "a", 1));
	shb_buf_free(&b);
}

static void test_detach(void)
{
	struct shb_buf b;
	size_t n = 99;
	char *s;

	shb_buf_init(&b, 100);
	s = shb_buf_detach(&b, &n);
	CHECK(s && !strcmp(s, "") && n == 0);
	free(s);
	CHECK(holds(&b, "", 0) && b.max == 100);
	CHECK_OK(shb_buf_add(&b, "hello", 5));
	s = shb_buf_detach(&b, &n);
	CHECK(s && !strcmp(s, "hello") && n == 5);
	CHECK(holds(&b, "", 0) && b.alloc == 0 && b.max == 100);
	free(s);
	CHECK_OK(shb_buf_adds(&b, "again"));
	CHECK(holds(&b, "again", 5));
	shb_buf_free(&b);
}

static void test_alloc_grow(void)
{
	struct { int *v; size_t n, alloc; } a = { 0 };
	int *before;

	for (int i = 0; i < 1000; i++) {
		CHECK_OK(SHB_ALLOC_GROW(a.v, a.n + 1, a.alloc));
		a.v[a.n++] = i;
		CHECK(a.alloc >= a.n);
	}
	CHECK(a.alloc == 1024);
	for (size_t i = 0; i < a.n; i++)
		CHECK(a.v[i] == (int)i);
	/* Enough room already: nothing moves. */
	before = a.v;
	CHECK_OK(SHB_ALLOC_GROW(a.v, 10, a.alloc));
	CHECK(a.v == before && a.alloc == 1024);
	/* An overflowing count fails and leaves the array as it was. */
	CHECK(SHB_ALLOC_GROW(a.v, SIZE_MAX / 2, a.alloc) == SHB_ENOMEM);
	CHECK(a.v == before && a.alloc == 1024 && a.v[999] == 999);
	free(a.v);
}

int main(void)
{
	test_empty();
	test_add();
	test_cap();
	test_grow_setlen();
	test_detach();
	test_alloc_grow();
	return check_done("test_strbuf");
}
