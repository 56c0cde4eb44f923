/*
 * The disk cache (cache.h).  A placeholder while the real one moves here
 * from fs/: every get misses, the caching source reads through.
 */
#include <stdlib.h>

#include "cache.h"
#include "error.h"
#include "source.h"

struct shb_cache {
	uint64_t cap;
};

int shb_cache_open(const char *dir, uint64_t cap, struct shb_cache **out)
{
	(void)dir;
	if (!(*out = calloc(1, sizeof(**out))))
		return shb_fail(SHB_ENOMEM, "out of memory");
	(*out)->cap = cap;
	return SHB_OK;
}

void shb_cache_close(struct shb_cache *c)
{
	free(c);
}

int shb_cache_get_blob(struct shb_cache *c, const char *name, unsigned char **buf,
		       size_t *len)
{
	(void)c, (void)name, (void)buf, (void)len;
	return -1;
}

void shb_cache_put_blob(struct shb_cache *c, const char *name, const void *buf, size_t len)
{
	(void)c, (void)name, (void)buf, (void)len;
}

void shb_cache_drop(struct shb_cache *c, const char *name)
{
	(void)c, (void)name;
}

int shb_source_cached(struct shb_source *inner, struct shb_cache *c, struct shb_source **out)
{
	(void)c;
	*out = inner;
	return SHB_OK;
}
