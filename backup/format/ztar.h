/*
 * Private to format/: the tar header parser that shb_zindex_build() runs
 * over the inflated bytes of a plain .tar.gz in the same pass that records
 * the access points.  It is fed the tar stream in pieces of any size and
 * turns every header into an index entry (path, type, mode, size, offset
 * of the data); ztar.c explains the format it walks.
 */
#ifndef SHB_ZTAR_H
#define SHB_ZTAR_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "util.h"

/*
 * The parser's state.  Set idx (the index to append entries to, with
 * nentries and entries as the parser left them) and zero the rest before
 * the first shb_tarp_feed(); not shared between threads.
 */
struct shb_tarp {
	uint64_t pos;               /* offset of the next byte fed */
	unsigned char hdr[512];
	size_t hlen;
	uint64_t skip;              /* data and padding still to pass over */
	struct shb_buf ext;         /* pax or GNU long name being collected */
	uint64_t ext_left, ext_pad;
	char ext_type;
	char *path_override;
	uint64_t size_override;
	int has_size_override;
	int zeros, done, err, oom;  /* done: the two zero blocks that end a tar were seen */
	struct shb_index *idx;
	size_t cap;
};

/*
 * Feeds the next n bytes of the tar stream.  Appends an entry to t->idx
 * for each header completed (the paths are malloc'd and owned by the
 * index); sets t->done at the end-of-archive marker and ignores anything
 * after it.  SHB_EFORMAT for a damaged header, a bad pax record, an empty
 * or over-long name or too many entries; SHB_ENOMEM.
 */
int shb_tarp_feed(struct shb_tarp *t, const unsigned char *p, size_t n);

/* Frees what the parser holds itself (not the index); t may be reused zeroed. */
void shb_tarp_release(struct shb_tarp *t);

#endif
