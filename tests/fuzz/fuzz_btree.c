/*
 * libFuzzer target: the sampled b-tree check of verify --quick on an
 * arbitrary database image, opened read-only from memory.
 */
#include <string.h>

#include <sqlite3.h>

#include "btree.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct shb_btree_report r;
	unsigned char *image;
	sqlite3 *db;

	if (size > (1u << 20) || sqlite3_open(":memory:", &db) != SQLITE_OK)
		return 0;
	if (size && (image = sqlite3_malloc64(size))) {
		memcpy(image, data, size);
		if (sqlite3_deserialize(db, "main", image, (sqlite3_int64)size, (sqlite3_int64)size,
					SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_READONLY)
		    == SQLITE_OK)
			shb_btree_sample(db, 4, &r);
	}
	sqlite3_close(db);
	return 0;
}
