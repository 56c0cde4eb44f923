/*
 * The caching byte source (shb_source_cached in cache.h).
 *
 * Why pieces of exactly the fetched ranges rather than aligned blocks: the
 * readers above already ask for exactly the bytes they need (a footer and
 * index tail of at most 128 KiB, runs of whole members, access-point
 * segments), so caching those ranges as they are fetches no byte more than
 * an uncached read would; aligned blocks would round every read out to
 * block edges and fetch up to a block more at each end.  A fetched hole is
 * stored in pieces of at most PIECE_MAX bytes, so a later small read loads
 * and CRC-checks one small file, not the whole run it came with.
 *
 * A read walks the range: bytes a cached piece holds are copied from it,
 * and each hole between cached pieces is fetched from the inner source in
 * one read and stored.  A piece that fails its CRC is a hole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cache_pieces.h"
#include "error.h"
#include "source.h"

#define PIECE_MAX SHB_CACHE_PIECE_MAX

struct cached_source {
	struct shb_source base;
	struct shb_source *inner;     /* owned */
	struct shb_cache *cache;      /* borrowed */
	char id[SHB_CACHE_ID_LEN + 1];  /* immutable after open */
};

/*
 * Copies bytes at pos (up to end) from a cached piece into out; returns how
 * many, 0 when no good piece covers pos.  A damaged piece is marked dead
 * (len 0) in v so the hole search skips it.
 */
static uint64_t from_cache(struct cached_source *cs, struct shb_piece *v, size_t n,
			   uint64_t pos, uint64_t end, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char *data;
		uint64_t stop;

		if (!v[i].len || v[i].off > pos || v[i].off + v[i].len <= pos)
			continue;
		if (shb_cache_get_piece(cs->cache, cs->id, &v[i], &data)) {
			v[i].len = 0;
			continue;
		}
		stop = v[i].off + v[i].len < end ? v[i].off + v[i].len : end;
		memcpy(out, data + (pos - v[i].off), stop - pos);
		free(data);
		return stop - pos;
	}
	return 0;
}

/* Where the hole at pos ends: the next live piece's start, or end. */
static uint64_t hole_end(const struct shb_piece *v, size_t n, uint64_t pos, uint64_t end)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].len && v[i].off > pos && v[i].off < end)
			end = v[i].off;
	return end;
}

/* Caches the fetched bytes [pos, stop) at data, in pieces of at most PIECE_MAX. */
static void store(struct cached_source *cs, const unsigned char *data, uint64_t pos,
		  uint64_t stop)
{
	for (uint64_t at = pos; at < stop; at += PIECE_MAX) {
		uint64_t len = stop - at < PIECE_MAX ? stop - at : PIECE_MAX;

		shb_cache_put_piece(cs->cache, cs->id, at, data + (at - pos), (size_t)len);
	}
}

/* Fetches [pos, stop) from the inner source into out and caches it. */
static int fetch_hole(struct cached_source *cs, unsigned char *out, uint64_t pos, uint64_t stop)
{
	int rc = shb_source_read(cs->inner, out, (size_t)(stop - pos), pos);

	if (!rc)
		store(cs, out, pos, stop);
	return rc;
}

static int cached_read(struct shb_source *src, void *buf, size_t len, uint64_t off)
{
	struct cached_source *cs = (struct cached_source *)src;
	uint64_t end = off + len, pos = off;
	struct shb_piece *v;
	size_t n = shb_cache_pieces(cs->cache, cs->id, off, end, &v);
	int rc = SHB_OK;

	while (pos < end && !rc) {
		uint64_t took = from_cache(cs, v, n, pos, end, (unsigned char *)buf + (pos - off));

		if (took) {
			pos += took;
		} else {
			uint64_t stop = hole_end(v, n, pos, end);

			rc = fetch_hole(cs, (unsigned char *)buf + (pos - off), pos, stop);
			pos = stop;
		}
	}
	free(v);
	return rc;
}

static void cached_close(struct shb_source *src)
{
	shb_source_close(((struct cached_source *)src)->inner);
}

static int cached_version(struct shb_source *src, char *buf, size_t len, int *names_content)
{
	struct shb_source *inner = ((struct cached_source *)src)->inner;

	if (!inner->ops->version) {
		*buf = '\0';
		*names_content = 0;
		return SHB_OK;
	}
	return inner->ops->version(inner, buf, len, names_content);
}

/*
 * The tail through the cache, and the head the inner source told with it,
 * kept as a named blob ("head-<id>": 1 and the head, or 0 when it told
 * none) so a later run needs no GET for either.
 */
static int cached_tail_and_head(struct shb_source *src, void *tail_buf, size_t tail, void *head,
				size_t cap, size_t *got)
{
	struct cached_source *cs = (struct cached_source *)src;
	uint64_t off = src->size - tail;
	char name[16 + SHB_CACHE_ID_LEN];
	unsigned char *blob;
	size_t len;
	int rc;

	snprintf(name, sizeof(name), "head-%s", cs->id);
	if (shb_cache_get_blob(cs->cache, name, &blob, &len) == 0) {
		if (blob[0] == 1 && len - 1 <= cap) {
			memcpy(head, blob + 1, len - 1);
			*got = len - 1;
		}
		free(blob);
		return cached_read(src, tail_buf, tail, off);
	}
	if (!cs->inner->ops->tail_and_head)
		return cached_read(src, tail_buf, tail, off);
	if ((rc = shb_source_tail_and_head(cs->inner, tail_buf, tail, head, cap, got)))
		return rc;
	store(cs, tail_buf, off, src->size);
	/* 1 and the head, or 0 to remember the tail told none: a later run reads the cache. */
	if ((blob = malloc(*got + 1))) {
		blob[0] = *got != 0;
		memcpy(blob + 1, head, *got);
		shb_cache_put_blob(cs->cache, name, blob, *got + 1);
		free(blob);
	}
	return SHB_OK;
}

static struct shb_source *cached_under(const struct shb_source *src)
{
	return ((const struct cached_source *)src)->inner;
}

static const struct shb_source_ops cached_ops = { cached_read, cached_close, cached_version,
						  cached_under, cached_tail_and_head };

int shb_source_cached(struct shb_source *inner, struct shb_cache *c, struct shb_source **out)
{
	struct cached_source *cs;
	unsigned char id[32];
	int rc;

	if (!shb_cache_enabled(c)) {
		*out = inner;
		return SHB_OK;
	}
	if ((rc = shb_source_identity(inner, id))) {
		shb_source_close(inner);
		return rc;
	}
	if (!(cs = calloc(1, sizeof(*cs))) || !(cs->base.name = strdup(inner->name))) {
		free(cs);
		shb_source_close(inner);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	for (int i = 0; i < SHB_CACHE_ID_LEN / 2; i++)
		snprintf(cs->id + 2 * i, 3, "%02x", id[i]);
	cs->base.ops = &cached_ops;
	cs->base.size = inner->size;
	cs->inner = inner;
	cs->cache = c;
	*out = &cs->base;
	return SHB_OK;
}
