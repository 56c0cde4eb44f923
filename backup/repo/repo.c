/*
 * The repository (repo.h): listing the places backups live and opening a
 * backup's bytes, remote ones through the disk cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "age.h"
#include "cache.h"
#include "error.h"
#include "repo.h"
#include "s3.h"
#include "util.h"

struct shb_repo {
	char *local_dir;          /* NULL: no local backups */
	struct shb_s3 *s3;        /* NULL: no bucket */
	char *s3_prefix;          /* normalised (config.h); set with s3 */
	struct shb_cache *cache;  /* NULL: reads go straight to the source */
	struct shb_age_keys ids;  /* BACKUP_AGE_IDENTITY_FILE's identities; may be none */
};

int shb_repo_open(const struct shb_config *cfg, const char *cache_dir, uint64_t cache_cap,
		  struct shb_repo **out)
{
	struct shb_repo *r = calloc(1, sizeof(*r));
	int rc = SHB_OK;

	*out = NULL;
	if (!r)
		return shb_fail(SHB_ENOMEM, "out of memory");
	if ((cfg->local_dir && !(r->local_dir = strdup(cfg->local_dir)))
	    || (cfg->s3_bucket && !(r->s3_prefix = strdup(cfg->s3_prefix ? cfg->s3_prefix : ""))))
		rc = shb_fail(SHB_ENOMEM, "out of memory");
	/* An identity file that cannot be used is SHB_EKEY: no cache dir can stand in for it. */
	if (!rc && cfg->age_identity_file) {
		shb_no_core_dumps();  /* the keys, and what they decrypt, never reach a core file */
		if ((rc = shb_age_identities_load(&r->ids, cfg->age_identity_file)) && rc != SHB_ENOMEM)
			rc = SHB_EKEY;
	}
	if (!rc && cfg->s3_bucket)
		rc = shb_config_s3(cfg, &r->s3);
	/* A private cache is a saving, not a promise: without one, reads go straight. */
	if (!rc && cache_cap && (rc = shb_cache_open(cache_dir, cache_cap, &r->cache)) && !cache_dir)
		rc = SHB_OK;
	if (rc) {
		shb_repo_close(r);
		return rc;
	}
	*out = r;
	return SHB_OK;
}

void shb_repo_close(struct shb_repo *r)
{
	if (!r)
		return;
	shb_cache_close(r->cache);
	shb_s3_free(r->s3);
	shb_age_keys_free(&r->ids);
	free(r->s3_prefix);
	free(r->local_dir);
	free(r);
}

int shb_repo_has_s3(const struct shb_repo *r)
{
	return r->s3 != NULL;
}

struct shb_s3 *shb_repo_s3(struct shb_repo *r)
{
	return r->s3;
}

struct shb_cache *shb_repo_cache(struct shb_repo *r)
{
	return r->cache;
}

const struct shb_age_keys *shb_repo_identities(const struct shb_repo *r)
{
	return &r->ids;
}

int shb_repo_list_local(struct shb_repo *r, struct shb_catalog *cat)
{
	return r->local_dir ? shb_catalog_add_local(cat, r->local_dir) : SHB_OK;
}

int shb_repo_list_s3(struct shb_repo *r, struct shb_catalog *cat)
{
	return r->s3 ? shb_catalog_add_s3(cat, r->s3, r->s3_prefix) : SHB_OK;
}

int shb_repo_list(struct shb_repo *r, struct shb_catalog *cat)
{
	int rc = shb_repo_list_local(r, cat);

	return rc ? rc : shb_repo_list_s3(r, cat);
}

int shb_repo_load(const struct shb_config *cfg, const char *cache_dir, uint64_t cache_cap,
		  struct shb_repo **repo, struct shb_catalog *cat)
{
	int rc = shb_repo_open(cfg, cache_dir, cache_cap, repo);

	return rc ? rc : shb_repo_list(*repo, cat);
}

/* b's S3 object, read through r's cache. */
static int open_s3(struct shb_repo *r, const struct shb_backup *b, struct shb_source **out)
{
	struct shb_source *inner;
	int rc;

	if (!b->s3_key || !r->s3)
		return shb_fail(SHB_ENOTFOUND, "%s has no copy in S3", b->name);
	if ((rc = shb_source_open_s3_etag(r->s3, b->s3_key, b->s3_size, b->s3_etag, &inner)))
		return rc;
	return shb_source_cached(inner, r->cache, out);
}

int shb_repo_open_raw(struct shb_repo *r, const struct shb_backup *b, int copy,
		      struct shb_source **out, struct shb_repo_opened *how)
{
	struct shb_repo_opened ignored;
	int rc;

	how = how ? how : &ignored;
	memset(how, 0, sizeof(*how));
	if (copy == SHB_COPY_S3 || (copy != SHB_COPY_LOCAL && !b->local_path)) {
		how->remote = 1;
		return open_s3(r, b, out);
	}
	if (!b->local_path)
		return shb_fail(SHB_ENOTFOUND, "%s has no local copy", b->name);
	rc = shb_source_open_backup_file(b->local_path, out);
	if (rc && copy == SHB_COPY_ANY) {
		if (!b->s3_key || !r->s3)
			return shb_fail(SHB_ENOTFOUND, "no readable copy");
		how->remote = 1;
		return open_s3(r, b, out);
	}
	return rc;
}

int shb_repo_decrypt(struct shb_source *src, int encrypted, const struct shb_age_keys *ids,
		     struct shb_source **out)
{
	unsigned char head[sizeof(SHB_AGE_MAGIC)];
	int rc;

	if (encrypted < 0) {
		encrypted = 0;
		if (src->size >= sizeof(head) && (rc = shb_source_read(src, head, sizeof(head), 0))) {
			shb_source_close(src);
			return rc;
		}
		encrypted = src->size >= sizeof(head) && shb_age_is_age(head, sizeof(head));
	}
	if (!encrypted) {
		*out = src;
		return SHB_OK;
	}
	return shb_age_source_open(src, ids, out);
}

int shb_repo_open_source(struct shb_repo *r, const struct shb_backup *b, int copy,
			 struct shb_source **out, struct shb_repo_opened *how)
{
	struct shb_source *raw;
	int rc;

	if ((rc = shb_repo_open_raw(r, b, copy, &raw, how)))
		return rc;
	return shb_repo_decrypt(raw, b->encrypted, r ? &r->ids : NULL, out);
}

/* Where open_any() gets its source from, again if it must (a reader took the first). */
struct opener {
	struct shb_repo *r;        /* NULL: path, nothing cached */
	const struct shb_backup *b;
	int copy;                  /* the copy the first open found */
	const char *path;
	const struct shb_age_keys *ids;  /* for path */
};

static int reopen(const struct opener *o, struct shb_source **src)
{
	struct shb_source *raw;
	int rc;

	if (o->r)
		return shb_repo_open_source(o->r, o->b, o->copy, src, NULL);
	if ((rc = shb_source_open_file(o->path, &raw)))
		return rc;
	return shb_repo_decrypt(raw, -1, o->ids, src);
}

/*
 * src (taken) as ours, or as a plain archive: from its access-point index
 * cached under the source's identity (a damaged one is dropped), else
 * indexed in one pass over the bytes and the index kept.  An encrypted
 * archive's index holds plaintext windows: it is never put on disk.
 */
static int open_any(const struct opener *o, struct shb_source *src, struct shb_reader **out,
		    struct shb_repo_opened *how)
{
	struct shb_cache *c = o->r && *how->key && !shb_age_source_is(src) ? o->r->cache : NULL;
	unsigned char *buf;
	char name[64];
	size_t len;
	int rc;

	snprintf(name, sizeof(name), "zidx-%s", how->key);
	if (c && shb_cache_get_blob(c, name, &buf, &len) == 0) {
		/* Known to be a plain archive: no need to look for our footer. */
		rc = shb_reader_open_plain(src, buf, len, out);
		free(buf);
		if (!rc)
			return SHB_OK;
		shb_cache_drop(c, name);
	} else if ((rc = shb_reader_open(src, out)) != SHB_EFORMAT) {
		return rc;
	}
	if ((rc = reopen(o, &src)) || (rc = shb_reader_open_plain(src, NULL, 0, out)))
		return rc;
	how->indexed = 1;
	if (c && !shb_reader_plain_index(*out, &buf, &len)) {
		shb_cache_put_blob(c, name, buf, len);
		free(buf);
	}
	return SHB_OK;
}

/* The identity of src in hex (first half), into how->key. */
static int identity_key(struct shb_source *src, struct shb_repo_opened *how)
{
	unsigned char sum[32];
	int rc = shb_source_identity(src, sum);

	for (int i = 0; !rc && i < 16; i++)
		snprintf(how->key + 2 * i, 3, "%02x", sum[i]);
	return rc;
}

int shb_repo_open_reader(struct shb_repo *r, const struct shb_backup *b, int copy,
			 struct shb_reader **out, struct shb_repo_opened *how)
{
	struct shb_repo_opened ignored;
	struct opener o = { r, b, copy, NULL, NULL };
	struct shb_source *src;
	int rc;

	how = how ? how : &ignored;
	if ((rc = shb_repo_open_source(r, b, copy, &src, how)))
		return rc;
	o.copy = how->remote ? SHB_COPY_S3 : SHB_COPY_LOCAL;
	if ((rc = identity_key(src, how))) {
		shb_source_close(src);
		return rc;
	}
	return open_any(&o, src, out, how);
}

int shb_repo_open_path_reader(const char *path, const struct shb_age_keys *ids,
			      struct shb_reader **out)
{
	struct shb_repo_opened how = { 0 };
	struct opener o = { NULL, NULL, SHB_COPY_LOCAL, path, ids };
	struct shb_source *src;
	int rc;

	if ((rc = reopen(&o, &src)))
		return rc;
	return open_any(&o, src, out, &how);
}
