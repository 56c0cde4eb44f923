/*
 * libFuzzer target: bytes as an age file.  They go through the header
 * parser (and, when it parses, the unwrap with a fixed identity), then
 * through the plaintext source over memory with the same identity, whose
 * whole plaintext is read at once and then in three ranges: when both
 * succeed they must agree (a range that avoids a damaged chunk may succeed
 * where the whole read fails).  The seeds in
 * corpus/age were encrypted to this identity's recipient
 * age1w3tyke4gev25vaxxsvcgqu4484rf6ejpmavs57p6yz6lhy2sfs5swrvwyn (`age-keygen -y`
 * of IDENTITY) with /usr/bin/age.
 */
#include <stdlib.h>
#include <string.h>

#include "age.h"
#include "error.h"
#include "source.h"

#define IDENTITY "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6"

static struct shb_age_keys ids;

static void setup(void)
{
	static struct shb_age_key key;

	if (ids.n)
		return;
	if (shb_age_parse_identity(IDENTITY, &key))
		abort();
	ids.keys = &key;
	ids.n = ids.alloc = 1;
}

static void parse_header(const unsigned char *data, size_t size)
{
	struct shb_age_header h;
	unsigned char file_key[16];

	if (shb_age_header_parse(data, size, &h))
		return;
	if (h.len > size || h.mac_offset > h.len)
		abort();
	shb_age_unwrap(&h, data, &ids, file_key);
	shb_age_header_free(&h);
}

/* Reads src whole and in ranges; the ranges must match the whole read. */
static void read_ranges(struct shb_source *src, size_t size)
{
	unsigned char *all = malloc(size + 1), *part = malloc(size + 1);
	int whole = shb_source_read(src, all, size, 0);
	size_t cuts[] = { 0, size / 3, size / 2 + 1, size };

	for (int i = 0; all && part && i < 3; i++) {
		size_t off = cuts[i], n = cuts[i + 1] > off ? cuts[i + 1] - off : 0;

		if (shb_source_read(src, part, n, off) == SHB_OK && whole == SHB_OK
		    && memcmp(part, all + off, n))
			abort();
	}
	free(all);
	free(part);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct shb_source *mem, *src;

	setup();
	parse_header(data, size);
	if (shb_source_open_mem(data, size, "fuzz.age", &mem))
		return 0;
	if (shb_age_source_open(mem, &ids, &src))
		return 0;
	if (src->size > size)
		abort();
	read_ranges(src, (size_t)src->size);
	shb_source_close(src);
	return 0;
}
