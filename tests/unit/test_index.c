/*
 * Unit tests of the index encoding and its gzip framing: round trips, member
 * lookup, and decoding of truncated and mutated bytes, which must fail
 * cleanly rather than crash or read out of bounds (run under ASan too).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "index.h"

static struct shb_member members[] = {
	{ 0, 0, 100, 1000 }, { 0, 0, 50, SHB_BLOCK_SIZE }, { 0, 0, 70, 24 },
};
static struct shb_entry entries[] = {
	{ "top", SHB_ENTRY_DIR, 0700, 1, 2, 1700000000, 0, 512, { 0 } },
	{ "top/streamhub.db", SHB_ENTRY_FILE, 0600, 1, 2, 1700000000, 4096, 1024, { 1, 2, 3 } },
	{ "top/secrets.json", SHB_ENTRY_FILE, 0600, 0, 0, -5, 0, 5120, { 9 } },
};

static struct shb_index sample(void)
{
	struct shb_index idx = { SHB_INDEX_VERSION, SHB_BLOCK_SIZE, 1000 + SHB_BLOCK_SIZE + 24,
				 3, members, 3, entries };
	return idx;
}

static void test_round_trip(void)
{
	struct shb_index in = sample(), *out = NULL;
	unsigned char *blob;
	size_t len;

	CHECK_OK(shb_index_encode(&in, &blob, &len));
	CHECK_OK(shb_index_decode(blob, len, &out));
	if (!out)
		return;
	CHECK(out->nmembers == 3 && out->nentries == 3 && out->tar_size == in.tar_size);
	CHECK(out->members[1].coff == 100 && out->members[1].uoff == 1000);
	CHECK(out->members[2].coff == 150 && out->members[2].uoff == 1000 + SHB_BLOCK_SIZE);
	for (size_t i = 0; i < 3; i++) {
		CHECK(!strcmp(out->entries[i].path, entries[i].path));
		CHECK(out->entries[i].mtime == entries[i].mtime);
		CHECK(out->entries[i].size == entries[i].size);
		CHECK(out->entries[i].offset == entries[i].offset);
		CHECK(!memcmp(out->entries[i].sha256, entries[i].sha256, 32));
	}
	CHECK(shb_index_find(out, "top/secrets.json") == &out->entries[2]);
	CHECK(shb_index_find(out, "top/nope") == NULL);
	CHECK(shb_index_member_at(out, 0) == 0);
	CHECK(shb_index_member_at(out, 999) == 0);
	CHECK(shb_index_member_at(out, 1000) == 1);
	CHECK(shb_index_member_at(out, 1000 + SHB_BLOCK_SIZE) == 2);
	CHECK(shb_index_member_at(out, out->tar_size - 1) == 2);
	shb_index_free(out);
	free(blob);
}

static void test_hostile_blobs(void)
{
	struct shb_index in = sample(), *out;
	unsigned char *blob, *copy;
	size_t len;

	CHECK_OK(shb_index_encode(&in, &blob, &len));
	copy = malloc(len);
	/* Every truncation fails. */
	for (size_t n = 0; n < len; n++) {
		memcpy(copy, blob, n);
		out = NULL;
		CHECK(shb_index_decode(copy, n, &out) != SHB_OK && out == NULL);
	}
	/* Random mutations never crash; those that decode stay self-consistent. */
	srand(1);
	for (int round = 0; round < 20000; round++) {
		memcpy(copy, blob, len);
		for (int k = 0; k < 1 + rand() % 4; k++)
			copy[(size_t)rand() % len] ^= (unsigned char)(1 + rand() % 255);
		out = NULL;
		if (shb_index_decode(copy, len, &out) == SHB_OK) {
			for (size_t i = 0; i < out->nentries; i++)
				CHECK(out->entries[i].offset + out->entries[i].size <= out->tar_size);
			shb_index_free(out);
		}
	}
	free(copy);
	free(blob);
}

static void test_trailer(void)
{
	struct shb_buf b = SHB_BUF_INIT;
	unsigned char big[200000], *blob = NULL;
	struct shb_footer f;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7);
	/* An index needing several members, after 1234 bytes of "tar". */
	CHECK_OK(shb_index_write_trailer(&b, big, sizeof(big), 1234));
	CHECK_OK(shb_footer_parse(b.data + b.len - SHB_FOOTER_SIZE, &f));
	CHECK(f.index_offset == 1234 && f.blob_length == sizeof(big));
	CHECK(f.index_length == b.len - SHB_FOOTER_SIZE);
	CHECK_OK(shb_index_members_parse(b.data, f.index_length, &f, &blob));
	CHECK(blob && !memcmp(blob, big, sizeof(big)));
	free(blob);
	blob = NULL;
	/* A flipped payload byte is caught by the sha256. */
	b.data[100] ^= 1;
	CHECK(shb_index_members_parse(b.data, f.index_length, &f, &blob) == SHB_ECORRUPT);
	/* A flipped footer byte makes it no footer at all. */
	b.data[b.len - 50] ^= 1;
	CHECK(shb_footer_parse(b.data + b.len - SHB_FOOTER_SIZE, &f) != SHB_OK
	      || f.index_offset != 1234 || f.blob_length != sizeof(big));
	shb_buf_free(&b);
}

int main(void)
{
	test_round_trip();
	test_hostile_blobs();
	test_trailer();
	return check_done("test_index");
}
