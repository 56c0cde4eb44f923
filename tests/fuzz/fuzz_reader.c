/*
 * libFuzzer target: arbitrary bytes as an archive, ours (footer, index,
 * members) or a plain tar.gz (access points and tar headers built in one
 * pass).  Whatever opens must pass the layout check or be refused, and
 * every entry must read back (or fail) without touching memory it should
 * not.
 */
#include <stdlib.h>

#include "layout.h"
#include "reader.h"

static void read_all(struct shb_reader *r)
{
	const struct shb_index *idx = shb_reader_index(r);
	struct shb_layout l;
	unsigned char buf[65536];

	if (shb_layout_from_index(idx, &l) == 0)
		shb_layout_free(&l);
	for (size_t i = 0; i < idx->nentries && i < 64; i++) {
		const struct shb_entry *e = &idx->entries[i];

		for (uint64_t off = 0; off < e->size && off < (1u << 20); off += sizeof(buf)) {
			size_t got;

			if (shb_reader_pread(r, e, buf, sizeof(buf), off, &got))
				break;
		}
	}
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct shb_source *src;
	struct shb_reader *r;

	if (shb_source_open_mem(data, size, "fuzz", &src) == 0 && shb_reader_open(src, &r) == 0) {
		read_all(r);
		shb_reader_close(r);
	}
	if (shb_source_open_mem(data, size, "fuzz", &src) == 0
	    && shb_reader_open_plain(src, NULL, 0, &r) == 0) {
		unsigned char *saved;
		size_t len;

		read_all(r);
		/* The cached form of the index must decode to the same thing. */
		if (shb_reader_plain_index(r, &saved, &len) == 0) {
			struct shb_source *again;
			struct shb_reader *r2;

			if (shb_source_open_mem(data, size, "fuzz", &again) == 0
			    && shb_reader_open_plain(again, saved, len, &r2) == 0) {
				if (shb_reader_index(r2)->nentries != shb_reader_index(r)->nentries)
					abort();
				shb_reader_close(r2);
			}
			free(saved);
		}
		shb_reader_close(r);
	}
	return 0;
}
