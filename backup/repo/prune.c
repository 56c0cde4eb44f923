/*
 * Retention (prune.h), applied to each place a backup can live.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "age.h"
#include "error.h"
#include "prune.h"
#include "reader.h"
#include "repo.h"
#include "s3.h"
#include "source.h"

/*
 * Deletes b's local copy by its name inside the backup dir, opened under
 * the rule every command uses (shb_open_backup_dir): were the dir replaced
 * by someone else's link since it was listed, nothing is deleted.
 */
static int delete_local(const struct shb_backup *b, struct shb_repo *r)
{
	size_t n = strlen(b->local_path), m = strlen(b->name);
	char *dir;
	int fd, rc;

	(void)r;
	if (n <= m || b->local_path[n - m - 1] != '/' || strcmp(b->local_path + n - m, b->name))
		return shb_fail(SHB_EINVAL, "cannot delete '%s': not in a backup dir", b->local_path);
	if (!(dir = strndup(b->local_path, n - m - 1)))
		return shb_fail(SHB_ENOMEM, "out of memory");
	rc = shb_open_backup_dir(*dir ? dir : "/", &fd);
	free(dir);
	if (rc)
		return shb_fail(rc, "cannot delete '%s': %s", b->local_path, shb_errmsg());
	if (unlinkat(fd, b->name, 0) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot delete '%s'", b->local_path);
	close(fd);
	return rc;
}

static int delete_s3(const struct shb_backup *b, struct shb_repo *r)
{
	return shb_s3_delete(shb_repo_s3(r), b->s3_key);
}

static int has_local(const struct shb_backup *b)
{
	return b->local_path != NULL;
}

static int has_s3(const struct shb_backup *b)
{
	return b->s3_key != NULL;
}

struct place {
	const char *name;
	int copy;  /* enum shb_repo_copy */
	int (*has)(const struct shb_backup *b);
	int (*delete)(const struct shb_backup *b, struct shb_repo *r);
};

/* A plain tar.gz, as far as its first and last bytes tell (prune.h). */
static int plain_ok(struct shb_source *src)
{
	unsigned char head[3], tail[4];
	uint32_t isize;
	int rc;

	if (src->size < 18)  /* a gzip header and trailer */
		return shb_fail(SHB_EFORMAT, "%llu bytes, too small for a tar.gz",
				(unsigned long long)src->size);
	if ((rc = shb_source_read(src, head, sizeof(head), 0))
	    || (rc = shb_source_read(src, tail, sizeof(tail), src->size - sizeof(tail))))
		return rc;
	isize = tail[0] | tail[1] << 8 | tail[2] << 16 | (uint32_t)tail[3] << 24;
	if (head[0] != 0x1f || head[1] != 0x8b || head[2] != 8)
		return shb_fail(SHB_EFORMAT, "no gzip header");
	/* A tar is whole 512-byte blocks; ISIZE is its size mod 2^32. */
	if (!isize || isize % 512)
		return shb_fail(SHB_EFORMAT, "not a gzip-compressed tar");
	return SHB_OK;
}

/*
 * An encrypted copy where no identity is given (the backup host holds only
 * public keys): an age header that parses and a size that whole chunks
 * give.  That is all a key-less check can tell (README, "Threat model").
 */
static int age_ok(struct shb_source *src)
{
	unsigned char head[4096];
	size_t n = src->size < sizeof(head) ? (size_t)src->size : sizeof(head);
	struct shb_age_header h;
	int rc;

	if ((rc = shb_source_read(src, head, n, 0)))
		return rc;
	uint64_t plain;

	if ((rc = shb_age_header_parse(head, n, &h)))
		return rc == SHB_ETOOBIG ? SHB_OK : rc;  /* a long header: many recipients */
	/* A tar.gz is a gzip header and trailer, and more. */
	if (shb_age_plain_size(src->size, h.len, &plain) || plain < 18 + 512)
		rc = shb_fail(SHB_EFORMAT, "%llu bytes, no whole age file around a tar.gz",
			      (unsigned long long)src->size);
	shb_age_header_free(&h);
	return rc;
}

/*
 * Whether b's copy in this place is an archive that can be read: ours with
 * an index that parses, or a plain tar.gz (plain_ok), decrypted when it is
 * encrypted; with no identity given at all, an age file that looks whole
 * (age_ok).  SHB_OK if so; SHB_ENET or SHB_ENOMEM when that could not be
 * told; another code if not.
 */
static int readable(const struct place *pl, const struct shb_backup *b, struct shb_repo *repo)
{
	struct shb_source *src;
	struct shb_reader *r;
	int rc;

	/* With identities given, one that does not open the copy makes it unreadable. */
	if ((rc = shb_repo_open_source(repo, b, pl->copy, &src, NULL)) == SHB_EKEY
	    && (!repo || !shb_repo_identities(repo)->n)
	    && !(rc = shb_repo_open_raw(repo, b, pl->copy, &src, NULL))) {
		rc = age_ok(src);
		shb_source_close(src);
		return rc;
	}
	if (rc)
		return rc;
	if (!(rc = shb_reader_open(src, &r))) {
		rc = shb_age_source_check_head(src);
		shb_reader_close(r);
		return rc;
	}
	if (rc != SHB_EFORMAT || (rc = shb_repo_open_source(repo, b, pl->copy, &src, NULL)))
		return rc;
	rc = plain_ok(src);
	shb_source_close(src);
	return rc;
}

/*
 * The copy in this place that counts as the newest, walking newest first
 * past those dated in the future and those that cannot be read (each one
 * reported); NULL, with an error, when there is none to trust: nothing is
 * deleted in this place then.
 */
static const struct shb_backup *newest_readable(const struct place *pl,
						const struct shb_catalog *cat, time_t now,
						struct shb_repo *r, shb_prune_fn report, void *ctx,
						int *rc)
{
	size_t bad = 0;

	for (size_t i = 0; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		int err;

		if (!pl->has(b) || shb_backup_time_in_future(b->time, now))
			continue;
		if (!(err = readable(pl, b, r)))
			return b;
		if (err == SHB_ENET || err == SHB_ENOMEM) {
			*rc = shb_fail(err, "%s retention skipped: cannot tell whether %s can be "
				       "read: %s", pl->name, b->name, shb_errmsg());
			return NULL;
		}
		shb_fail(err, "%s (%s) is not a readable backup, so not kept as the newest: %s",
			 b->name, pl->name, shb_errmsg());
		if (report)
			report(ctx, b, pl->name, SHB_PRUNE_UNREADABLE);
		if (++bad == SHB_PRUNE_MAX_UNREADABLE) {
			*rc = shb_fail(SHB_ECORRUPT, "%s retention skipped: the newest %zu backups "
				       "there are not readable", pl->name, bad);
			return NULL;
		}
	}
	*rc = bad ? shb_fail(SHB_ECORRUPT, "%s retention skipped: no backup there is readable",
			     pl->name) : SHB_OK;
	return NULL;
}

static int prune_place(const struct place *pl, const struct shb_catalog *cat, time_t now,
		       time_t cutoff, int dry_run, struct shb_repo *r, shb_prune_fn report,
		       void *ctx)
{
	const struct shb_backup *keep;
	int rc = SHB_OK;

	/*
	 * The newest copy here always survives; one dated in the future is
	 * neither deleted nor that newest copy (it says nothing about how
	 * recent the real backups are: cli warns), and neither is one that
	 * cannot be read (junk under a backup's name), which the days rule
	 * still deletes like any other.
	 */
	if (!(keep = newest_readable(pl, cat, now, r, report, ctx, &rc))) {
		if (rc && report)
			report(ctx, NULL, pl->name, SHB_PRUNE_SKIPPED);
		return rc;
	}
	for (size_t i = 0; i < cat->n; i++) {
		const struct shb_backup *b = &cat->items[i];
		int err = SHB_OK;

		if (!pl->has(b) || shb_backup_time_in_future(b->time, now) || b == keep
		    || b->time >= cutoff)
			continue;
		if (!dry_run && (err = pl->delete(b, r)))
			rc = err;
		if (report)
			report(ctx, b, pl->name, err != SHB_OK ? SHB_PRUNE_FAILED : SHB_PRUNE_DELETED);
	}
	return rc;
}

int shb_prune(const struct shb_catalog *cat, int days, time_t now, int dry_run,
	      struct shb_repo *r, shb_prune_fn report, void *ctx)
{
	static const struct place local = { "local", SHB_COPY_LOCAL, has_local, delete_local };
	static const struct place remote = { "s3", SHB_COPY_S3, has_s3, delete_s3 };
	time_t cutoff = now - (time_t)days * 86400;
	int rc, rc2 = SHB_OK;

	if (days <= 0)
		return SHB_OK;
	rc = prune_place(&local, cat, now, cutoff, dry_run, r, report, ctx);
	if (r && shb_repo_has_s3(r))
		rc2 = prune_place(&remote, cat, now, cutoff, dry_run, r, report, ctx);
	return rc ? rc : rc2;
}
