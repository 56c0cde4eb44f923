/*
 * The seekable archive writer (writer.h).  Three parts: the member cutter
 * fed by libarchive's write callback, the deflate thread pool, and the
 * in-order drain that writes finished members and records them in the
 * index.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "writer.h"
#include "error.h"
#include "index.h"
#include "layout.h"
#include "util.h"

#define READ_CHUNK (1u << 20)

struct job {
	struct job *next;
	unsigned char *in;
	size_t inlen;
	struct shb_buf out;
	int done;
	int rc;
};

struct shb_archive_writer {
	int fd;
	char *name;
	struct shb_archive_opts opts;
	struct archive *ar;
	int rc;             /* first failure; sticky */

	unsigned char *chunk;   /* uncompressed bytes of the member being cut */
	size_t chunk_len;
	uint64_t tar_off;       /* tar bytes received from libarchive */
	uint64_t file_off;      /* compressed bytes written to fd */

	struct shb_index idx;   /* members and entries recorded so far */
	size_t mcap, ecap;

	pthread_t *threads;
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t work_cv, done_cv;
	struct job *head, *tail, *todo;  /* in-flight jobs in file order */
	size_t inflight;
	int stop;
};

/* --- deflate pool -------------------------------------------------------- */

static int deflate_job(z_stream *z, struct job *j)
{
	if (deflateReset(z) != Z_OK || shb_buf_grow(&j->out, deflateBound(z, j->inlen)))
		return SHB_ENOMEM;
	z->next_in = j->in;
	z->avail_in = (uInt)j->inlen;
	z->next_out = j->out.data;
	z->avail_out = (uInt)shb_buf_avail(&j->out);
	if (deflate(z, Z_FINISH) != Z_STREAM_END)
		return SHB_EIO;
	shb_buf_setlen(&j->out, shb_buf_avail(&j->out) - z->avail_out);
	return SHB_OK;
}

static void *worker(void *arg)
{
	struct shb_archive_writer *w = arg;
	z_stream z = { 0 };
	int zok = deflateInit2(&z, w->opts.level, Z_DEFLATED, 15 + 16, 8,
			       Z_DEFAULT_STRATEGY) == Z_OK;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->todo && !w->stop)
			pthread_cond_wait(&w->work_cv, &w->mu);
		if (!w->todo)
			break;
		struct job *j = w->todo;

		w->todo = j->next;
		pthread_mutex_unlock(&w->mu);
		int rc = zok ? deflate_job(&z, j) : SHB_ENOMEM;
		pthread_mutex_lock(&w->mu);
		j->rc = rc;
		j->done = 1;
		pthread_cond_broadcast(&w->done_cv);
	}
	pthread_mutex_unlock(&w->mu);
	if (zok)
		deflateEnd(&z);
	return NULL;
}

static int start_pool(struct shb_archive_writer *w)
{
	w->threads = calloc((size_t)w->opts.threads, sizeof(*w->threads));
	if (!w->threads)
		return shb_fail(SHB_ENOMEM, "out of memory");
	for (; w->nthreads < w->opts.threads; w->nthreads++)
		if (pthread_create(&w->threads[w->nthreads], NULL, worker, w))
			return shb_fail(SHB_ENOMEM, "cannot start a compression thread");
	return SHB_OK;
}

static void stop_pool(struct shb_archive_writer *w)
{
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_cond_broadcast(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	w->nthreads = 0;
}

/* --- in-order drain ------------------------------------------------------ */

static int record_member(struct shb_archive_writer *w, const struct job *j)
{
	struct shb_member *m;

	if (SHB_ALLOC_GROW(w->idx.members, w->idx.nmembers + 1, w->mcap))
		return SHB_ENOMEM;
	m = &w->idx.members[w->idx.nmembers++];
	m->coff = w->file_off;
	m->uoff = w->idx.tar_size;
	m->clen = (uint32_t)j->out.len;
	m->ulen = (uint32_t)j->inlen;
	w->idx.tar_size += j->inlen;
	w->file_off += j->out.len;
	return SHB_OK;
}

static void free_job(struct job *j)
{
	free(j->in);
	shb_buf_free(&j->out);
	free(j);
}

/* Writes the oldest job once done.  Waits for it only if wait is set. */
/* Output, in order: to the caller's sink when it gave one, else to fd. */
static int emit(struct shb_archive_writer *w, const void *buf, size_t len)
{
	if (w->opts.write)
		return w->opts.write(w->opts.write_ctx, buf, len);
	return shb_write_all(w->fd, buf, len, w->name);
}

static int drain_one(struct shb_archive_writer *w, int wait)
{
	struct job *j;
	int rc;

	pthread_mutex_lock(&w->mu);
	while (wait && w->head && !w->head->done)
		pthread_cond_wait(&w->done_cv, &w->mu);
	j = w->head;
	if (!j || !j->done) {
		pthread_mutex_unlock(&w->mu);
		return SHB_EBUSY;
	}
	w->head = j->next;
	if (!w->head)
		w->tail = NULL;
	w->inflight--;
	pthread_mutex_unlock(&w->mu);

	rc = j->rc ? shb_fail(j->rc, "cannot compress '%s'", w->name)
		   : emit(w, j->out.data, j->out.len);
	if (!rc)
		rc = record_member(w, j);
	free_job(j);
	return rc;
}

static int drain(struct shb_archive_writer *w, size_t keep)
{
	int rc;

	while (w->inflight > keep)
		if ((rc = drain_one(w, 1)))
			return rc;
	while ((rc = drain_one(w, 0)) == SHB_OK)
		;
	return rc == SHB_EBUSY ? SHB_OK : rc;
}

/* --- member cutter ------------------------------------------------------- */

/* Hands the current chunk to the pool as one member. */
static int cut_member(struct shb_archive_writer *w)
{
	struct job *j;

	if (w->rc || !w->chunk_len)
		return w->rc;
	j = calloc(1, sizeof(*j));
	if (!j)
		return w->rc = shb_fail(SHB_ENOMEM, "out of memory");
	shb_buf_init(&j->out, 0);
	j->in = w->chunk;
	j->inlen = w->chunk_len;
	w->chunk = malloc(SHB_BLOCK_SIZE);
	w->chunk_len = 0;
	if (!w->chunk) {
		free_job(j);
		return w->rc = shb_fail(SHB_ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&w->mu);
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	if (!w->todo)
		w->todo = j;
	w->inflight++;
	pthread_cond_signal(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
	return w->rc = drain(w, 2 * (size_t)w->opts.threads + 2);
}

static la_ssize_t on_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct shb_archive_writer *w = ctx;
	const unsigned char *p = buf;
	size_t left = len;

	(void)a;
	while (left && !w->rc) {
		size_t n = SHB_BLOCK_SIZE - w->chunk_len;

		if (n > left)
			n = left;
		memcpy(w->chunk + w->chunk_len, p, n);
		w->chunk_len += n;
		w->tar_off += n;
		p += n;
		left -= n;
		if (w->chunk_len == SHB_BLOCK_SIZE)
			cut_member(w);
	}
	return w->rc ? -1 : (la_ssize_t)len;
}

/* --- entries ------------------------------------------------------------- */

static int record_entry(struct shb_archive_writer *w, const struct shb_entry *e)
{
	struct shb_entry *n;

	if (SHB_ALLOC_GROW(w->idx.entries, w->idx.nentries + 1, w->ecap))
		return w->rc = SHB_ENOMEM;
	n = &w->idx.entries[w->idx.nentries];
	*n = *e;
	n->path = strdup(e->path);
	if (!n->path)
		return w->rc = shb_fail(SHB_ENOMEM, "out of memory");
	w->idx.nentries++;
	return SHB_OK;
}

static int write_header(struct shb_archive_writer *w, const struct shb_entry *e)
{
	locale_t loc;
	struct archive_entry *ae;
	int rc = SHB_OK;

	/* pax names are UTF-8; libarchive 3.6 crashes converting one that is not. */
	if (!shb_utf8_valid((const unsigned char *)e->path, strlen(e->path)))
		return w->rc = shb_fail(SHB_EFORMAT, "cannot write '%s' header: name is not UTF-8",
					e->path);
	loc = shb_utf8_names_begin();  /* see layout.h */
	ae = archive_entry_new();
	if (!ae) {
		shb_utf8_names_end(loc);
		return w->rc = shb_fail(SHB_ENOMEM, "out of memory");
	}
	archive_entry_set_pathname_utf8(ae, e->path);
	archive_entry_set_filetype(ae, e->type == SHB_ENTRY_DIR ? AE_IFDIR : AE_IFREG);
	archive_entry_set_perm(ae, e->mode);
	archive_entry_set_size(ae, (la_int64_t)e->size);
	archive_entry_set_mtime(ae, e->mtime, 0);
	archive_entry_set_uid(ae, e->uid);
	archive_entry_set_gid(ae, e->gid);
	if (archive_write_header(w->ar, ae) != ARCHIVE_OK)
		rc = w->rc ? w->rc : (w->rc = shb_fail(SHB_EARCHIVE, "cannot write '%s' header: %s",
						       e->path, archive_error_string(w->ar)));
	archive_entry_free(ae);
	shb_utf8_names_end(loc);
	return rc;
}

int shb_archive_add_dir(struct shb_archive_writer *w, const char *path, uint32_t mode,
			int64_t mtime)
{
	struct shb_entry e = { .path = (char *)path, .type = SHB_ENTRY_DIR, .mode = mode,
			       .uid = w->opts.uid, .gid = w->opts.gid, .mtime = mtime };
	int rc;

	if (w->rc)
		return w->rc;
	if ((rc = write_header(w, &e)))
		return rc;
	e.offset = w->tar_off;
	return record_entry(w, &e);
}

/* Streams size bytes from fd into the open entry, hashing them. */
static int copy_data(struct shb_archive_writer *w, struct shb_entry *e, int fd)
{
	unsigned char *buf = malloc(READ_CHUNK);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t done = 0;
	int rc = SHB_OK;

	if (!buf || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, READ_CHUNK);

		if (n < 0) {
			rc = shb_fail_errno(SHB_EIO, "cannot read '%s'", e->path);
			goto out;
		}
		if (n == 0 || (uint64_t)n > e->size - done)
			break;
		EVP_DigestUpdate(md, buf, (size_t)n);
		if (archive_write_data(w->ar, buf, (size_t)n) != n) {
			rc = w->rc ? w->rc : shb_fail(SHB_EARCHIVE, "cannot archive '%s': %s",
						      e->path, archive_error_string(w->ar));
			goto out;
		}
		done += (uint64_t)n;
		if (w->opts.progress)
			w->opts.progress(w->opts.progress_ctx, e->path, done, e->size);
	}
	if (done != e->size) {
		rc = shb_fail(SHB_EIO, "cannot archive '%s': file changed size while read", e->path);
		goto out;
	}
	EVP_DigestFinal_ex(md, e->sha256, NULL);
out:
	EVP_MD_CTX_free(md);
	free(buf);
	return rc ? (w->rc = rc) : SHB_OK;
}

int shb_archive_add_file(struct shb_archive_writer *w, const char *path, int fd,
			 uint64_t size, uint32_t mode, int64_t mtime)
{
	struct shb_entry e = { .path = (char *)path, .type = SHB_ENTRY_FILE, .mode = mode,
			       .uid = w->opts.uid, .gid = w->opts.gid, .mtime = mtime,
			       .size = size };
	int rc;

	if (w->rc)
		return w->rc;
	if ((rc = write_header(w, &e)) || (rc = cut_member(w)))
		return rc;
	e.offset = w->tar_off;
	if ((rc = copy_data(w, &e, fd)))
		return rc;
	return record_entry(w, &e);
}

/* --- life cycle ---------------------------------------------------------- */

int shb_archive_begin(int fd, const char *name, const struct shb_archive_opts *opts,
		      struct shb_archive_writer **out)
{
	struct shb_archive_writer *w = calloc(1, sizeof(*w));
	locale_t loc;
	int rc;

	if (!w)
		return shb_fail(SHB_ENOMEM, "out of memory");
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work_cv, NULL);
	pthread_cond_init(&w->done_cv, NULL);
	w->fd = fd;
	w->opts = *opts;
	w->idx.version = SHB_INDEX_VERSION;
	w->idx.block_size = SHB_BLOCK_SIZE;
	w->name = strdup(name);
	w->chunk = malloc(SHB_BLOCK_SIZE);
	w->ar = archive_write_new();
	if (!w->name || !w->chunk || !w->ar) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = start_pool(w)))
		goto fail;
	/* The pax writer picks its name conversions here: UTF-8 (layout.h). */
	loc = shb_utf8_names_begin();
	if (archive_write_set_format_pax_restricted(w->ar) != ARCHIVE_OK
	    || archive_write_add_filter_none(w->ar) != ARCHIVE_OK
	    || archive_write_set_bytes_per_block(w->ar, 0) != ARCHIVE_OK
	    || archive_write_open(w->ar, w, NULL, on_write, NULL) != ARCHIVE_OK) {
		rc = shb_fail(SHB_EARCHIVE, "cannot start archive '%s': %s", name,
			      archive_error_string(w->ar));
		shb_utf8_names_end(loc);
		goto fail;
	}
	shb_utf8_names_end(loc);
	*out = w;
	return SHB_OK;
fail:
	shb_archive_free(w);
	return rc;
}

int shb_archive_finish(struct shb_archive_writer *w)
{
	struct shb_buf trailer = SHB_BUF_INIT;
	unsigned char *blob = NULL;
	size_t len;
	int rc;

	if (w->rc)
		return w->rc;
	if (archive_write_close(w->ar) != ARCHIVE_OK)
		return w->rc ? w->rc : (w->rc = shb_fail(SHB_EARCHIVE, "cannot finish '%s': %s",
							 w->name, archive_error_string(w->ar)));
	if ((rc = cut_member(w)) || (rc = drain(w, 0)))
		return rc;
	rc = shb_index_encode(&w->idx, &blob, &len);
	if (!rc)
		rc = shb_index_write_trailer(&trailer, blob, len, w->file_off);
	if (!rc)
		rc = emit(w, trailer.data, trailer.len);
	if (!rc)
		w->file_off += trailer.len;
	free(blob);
	shb_buf_free(&trailer);
	return w->rc = rc;
}

uint64_t shb_archive_size(const struct shb_archive_writer *w)
{
	return w->file_off;
}

void shb_archive_free(struct shb_archive_writer *w)
{
	if (!w)
		return;
	/*
	 * Freeing an unclosed archive makes libarchive write the tar end through
	 * on_write; a set rc turns that into a no-op before the pool stops.
	 */
	if (!w->rc)
		w->rc = SHB_EINVAL;
	if (w->ar)
		archive_write_free(w->ar);
	stop_pool(w);
	while (w->head) {
		struct job *j = w->head;

		w->head = j->next;
		free_job(j);
	}
	for (size_t i = 0; i < w->idx.nentries; i++)
		free(w->idx.entries[i].path);
	free(w->idx.entries);
	free(w->idx.members);
	free(w->threads);
	free(w->chunk);
	free(w->name);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->work_cv);
	pthread_cond_destroy(&w->done_cv);
	free(w);
}
