/*
 * libFuzzer target: the archive footer and index parsers on arbitrary
 * bytes, both as a whole trailer (footer at the end, index members before
 * it) and as a bare index blob.
 */
#include <stdlib.h>

#include "index.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct shb_index *idx = NULL;
	struct shb_footer f;
	unsigned char *blob = NULL;

	if (shb_index_decode(data, size, &idx) == 0)
		shb_index_free(idx);
	if (shb_index_decode_plain(data, size, &idx) == 0)
		shb_index_free(idx);
	if (size >= SHB_FOOTER_SIZE && shb_footer_parse(data + size - SHB_FOOTER_SIZE, &f) == 0
	    && f.index_length <= size - SHB_FOOTER_SIZE
	    && shb_index_members_parse(data + size - SHB_FOOTER_SIZE - f.index_length,
				       f.index_length, &f, &blob) == 0) {
		if (shb_index_decode(blob, f.blob_length, &idx) == 0)
			shb_index_free(idx);
		free(blob);
	}
	return 0;
}
