/*
 * The FUSE operations (high-level, path-based API) of shbfs, and the
 * filesystem's life cycle.  Paths are resolved against the listing and the
 * opened backup's layout; nothing here touches archive bytes directly.
 * The mount is read-only ("ro"), so the kernel answers every write with
 * EROFS before it reaches us.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <fuse.h>

#include "catalog.h"
#include "error.h"
#include "shbfs.h"

static struct shbfs *fs_of(void)
{
	return fuse_get_context()->private_data;
}

/* --- resolving paths ------------------------------------------------------ */

enum node_type { N_ROOT, N_LATEST, N_BACKUP, N_APPS, N_APPDIR, N_FILE };

struct node {
	enum node_type type;
	struct shbfs_backup *b;
	size_t file;         /* N_FILE */
	const char *app;     /* N_APPDIR */
};

/* SQLite asks for these next to every db; they never exist here. */
static int is_side_file(const char *name)
{
	size_t n = strlen(name);
	static const char *const sfx[] = { "-journal", "-wal", "-shm" };

	for (size_t i = 0; i < 3; i++) {
		size_t k = strlen(sfx[i]);

		if (n > k && !strcmp(name + n - k, sfx[i]))
			return 1;
	}
	return 0;
}

static int find_file(const struct shbfs_backup *b, const char *rel, struct node *nd)
{
	for (size_t i = 0; i < b->layout.n; i++)
		if (!strcmp(b->layout.files[i].rel, rel)) {
			nd->type = N_FILE;
			nd->file = i;
			return 0;
		}
	return -ENOENT;
}

static int resolve_in_backup(struct shbfs *fs, const char *rest, struct node *nd)
{
	const struct shb_layout *l;
	int rc;

	if (is_side_file(rest))
		return -ENOENT;
	if ((rc = shbfs_open_backup(fs, nd->b)))
		return rc;
	l = &nd->b->layout;
	if (!strcmp(rest, "apps")) {
		nd->type = N_APPS;
		return l->napps ? 0 : -ENOENT;
	}
	if (!strncmp(rest, "apps/", 5) && !strchr(rest + 5, '/')) {
		for (size_t i = 0; i < l->n; i++)
			if (l->files[i].app && !strcmp(l->files[i].app, rest + 5)) {
				nd->type = N_APPDIR;
				nd->app = l->files[i].app;
				return 0;
			}
		return -ENOENT;
	}
	return find_file(nd->b, rest, nd);
}

/* The newest backup's stamp into out, or NULL when there is none. */
static const char *newest(struct shbfs *fs, char out[SHB_TS_LEN])
{
	time_t now = time(NULL);
	const char *hit = NULL;
	size_t i = 0;

	pthread_mutex_lock(&fs->mu);
	/* "latest" as every shbackup command reads it: none dated in the future. */
	while (i < fs->n && shb_backup_time_in_future(fs->list[i]->at.time, now))
		i++;
	if (i < fs->n)
		hit = memcpy(out, fs->list[i]->at.ts, SHB_TS_LEN);
	pthread_mutex_unlock(&fs->mu);
	return hit;
}

static int resolve(struct shbfs *fs, const char *path, struct node *nd)
{
	char ts[SHB_TS_LEN];
	const char *slash;

	memset(nd, 0, sizeof(*nd));
	if (!strcmp(path, "/")) {
		nd->type = N_ROOT;
		return 0;
	}
	path++;
	if (!strcmp(path, "latest")) {
		char ts[SHB_TS_LEN];

		nd->type = N_LATEST;
		shbfs_list(fs);
		return newest(fs, ts) ? 0 : -ENOENT;
	}
	slash = strchr(path, '/');
	if ((slash ? (size_t)(slash - path) : strlen(path)) != SHB_TS_LEN - 1)
		return -ENOENT;
	memcpy(ts, path, SHB_TS_LEN - 1);
	ts[SHB_TS_LEN - 1] = '\0';
	if (!(nd->b = shbfs_find(fs, ts)))
		return -ENOENT;
	nd->type = N_BACKUP;
	return slash ? resolve_in_backup(fs, slash + 1, nd) : 0;
}

/* --- operations ------------------------------------------------------------ */

mode_t shbfs_dir_mode(const struct shbfs *fs)
{
	return fs->cfg.umask_set ? 0555 & ~fs->cfg.umask : 0500;
}

/*
 * The archive keeps each file's mode (ours: 0600; a plain archive, its tar
 * header's); the mount drops the write bits, or with umask= shows 0444 less
 * the umask.  Directories are 0500 unless umask= opens them, so with
 * allow_other the kernel (default_permissions) lets in the owner and only
 * whom uid=, gid= and umask= name.  secrets.json is the owner's alone.
 */
mode_t shbfs_file_mode(const struct shbfs *fs, const struct shbfs_backup *b, size_t i)
{
	const struct shb_layout_file *f = &b->layout.files[i];

	if (f->kind == SHB_FILE_SECRETS)
		return 0400;
	if (fs->cfg.umask_set)
		return 0444 & ~fs->cfg.umask;
	return shb_reader_index(b->reader)->entries[f->raw].mode & 0555;
}

static void fill_dir(struct shbfs *fs, struct stat *st, time_t t)
{
	st->st_mode = S_IFDIR | shbfs_dir_mode(fs);
	st->st_nlink = 2;
	st->st_uid = fs->cfg.uid;
	st->st_gid = fs->cfg.gid;
	st->st_mtime = st->st_ctime = st->st_atime = t;
}

static int shbfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct shbfs *fs = fs_of();
	struct node nd;
	int rc = resolve(fs, path, &nd);

	(void)fi;
	if (rc)
		return rc;
	memset(st, 0, sizeof(*st));
	switch (nd.type) {
	case N_ROOT:
		fill_dir(fs, st, fs->mounted_at);
		break;
	case N_LATEST:
		fill_dir(fs, st, fs->mounted_at);
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_size = SHB_TS_LEN - 1;
		break;
	case N_BACKUP: case N_APPS: case N_APPDIR:
		fill_dir(fs, st, nd.b->at.time);
		break;
	case N_FILE: {
		const struct shb_layout_file *f = &nd.b->layout.files[nd.file];

		fill_dir(fs, st, nd.b->at.time);
		st->st_mode = S_IFREG | shbfs_file_mode(fs, nd.b, nd.file);
		st->st_nlink = 1;
		st->st_size = (off_t)f->size;
		st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
		st->st_blksize = 4096;
		break;
	}
	}
	return 0;
}

static int shbfs_readlink(const char *path, char *buf, size_t size)
{
	struct shbfs *fs = fs_of();
	char ts[SHB_TS_LEN];

	if (strcmp(path, "/latest"))
		return -EINVAL;
	shbfs_list(fs);
	if (!newest(fs, ts))
		return -ENOENT;
	snprintf(buf, size, "%s", ts);
	return 0;
}

static int fill_root(struct shbfs *fs, void *buf, fuse_fill_dir_t filler)
{
	shbfs_list(fs);
	pthread_mutex_lock(&fs->mu);
	if (fs->n)
		filler(buf, "latest", NULL, 0, 0);
	for (size_t i = 0; i < fs->n; i++)
		filler(buf, fs->list[i]->at.ts, NULL, 0, 0);
	pthread_mutex_unlock(&fs->mu);
	return 0;
}

static int shbfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
			 struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct shbfs *fs = fs_of();
	const struct shb_layout *l;
	struct node nd;
	int rc = resolve(fs, path, &nd);

	(void)off; (void)fi; (void)flags;
	if (rc)
		return rc;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	if (nd.type == N_ROOT)
		return fill_root(fs, buf, filler);
	if (nd.type == N_BACKUP && (rc = shbfs_open_backup(fs, nd.b)))
		return rc;
	if (nd.type != N_BACKUP && nd.type != N_APPS && nd.type != N_APPDIR)
		return -ENOTDIR;
	l = &nd.b->layout;
	if (nd.type == N_BACKUP && l->napps)
		filler(buf, "apps", NULL, 0, 0);
	for (size_t i = 0; i < l->n; i++) {
		const struct shb_layout_file *f = &l->files[i];

		if (nd.type == N_BACKUP && !f->app)
			filler(buf, f->rel, NULL, 0, 0);
		else if (nd.type == N_APPS && f->app)
			filler(buf, f->app, NULL, 0, 0);
		else if (nd.type == N_APPDIR && f->app && !strcmp(f->app, nd.app))
			filler(buf, "app.db", NULL, 0, 0);
	}
	return 0;
}

/*
 * Whether the kernel may keep the pages it cached of file i of b.  Only
 * once this backup object served that file: a backup replaced under the
 * same name (another size or ETag) is a new object at the same path, and
 * its first open must drop the old object's pages, or a reader would get
 * a mix of both archives.
 */
static int keep_pages(struct shbfs_backup *b, size_t i)
{
	int keep = 0;

	pthread_mutex_lock(&b->mu);
	if (!b->served)
		b->served = calloc(b->layout.n ? b->layout.n : 1, 1);
	if (b->served) {
		keep = b->served[i];
		b->served[i] = 1;
	}
	pthread_mutex_unlock(&b->mu);
	return keep;
}

static int shbfs_open(const char *path, struct fuse_file_info *fi)
{
	struct shbfs *fs = fs_of();
	struct shbfs_handle *h;
	struct node nd;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	if ((rc = resolve(fs, path, &nd)))
		return rc;
	if (nd.type != N_FILE)
		return -EISDIR;
	if (!(h = calloc(1, sizeof(*h))))
		return -ENOMEM;
	h->b = nd.b;
	h->file = nd.file;
	pthread_mutex_init(&h->mu, NULL);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->keep_cache = keep_pages(h->b, h->file);
	return 0;
}

static int shbfs_read_op(const char *path, char *buf, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	struct shbfs_handle *h = (struct shbfs_handle *)(uintptr_t)fi->fh;

	(void)path;
	/* The backup was replaced under its name: its pages would mix with the new one's. */
	if (__atomic_load_n(&h->b->replaced, __ATOMIC_ACQUIRE))
		return -EIO;
	return shbfs_read(fs_of(), h, buf, size, (uint64_t)off);
}

static int shbfs_release(const char *path, struct fuse_file_info *fi)
{
	struct shbfs_handle *h = (struct shbfs_handle *)(uintptr_t)fi->fh;

	(void)path;
	pthread_mutex_destroy(&h->mu);
	free(h);
	return 0;
}

static int shbfs_statfs(const char *path, struct statvfs *sv)
{
	struct shbfs *fs = fs_of();
	uint64_t bytes = 0;

	(void)path;
	shbfs_list(fs);
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->n; i++)
		bytes += fs->list[i]->at.local_path ? fs->list[i]->at.local_size : fs->list[i]->at.s3_size;
	pthread_mutex_unlock(&fs->mu);
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 4096;
	sv->f_blocks = bytes / 4096;
	sv->f_namemax = 255;
	sv->f_flag = ST_RDONLY;
	return 0;
}

static void *shbfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct shbfs *fs = fs_of();

	(void)conn;
	/* Backups never change; the root changes on listing refresh only. */
	cfg->entry_timeout = fs->cfg.list_ttl;
	cfg->attr_timeout = fs->cfg.list_ttl;
	cfg->negative_timeout = 0;
	/* Not kernel_cache: shbfs_open says per file whether cached pages are still good. */
	fs->fuse = fuse_get_context()->fuse;
	shb_pieces_start(fs->pieces, (int)sysconf(_SC_NPROCESSORS_ONLN));
	shbfs_lister_start(fs);
	return fs;
}

static void shbfs_destroy(void *data)
{
	shbfs_lister_stop(data);
}

static const struct fuse_operations ops = {
	.init = shbfs_init,
	.destroy = shbfs_destroy,
	.getattr = shbfs_getattr,
	.readlink = shbfs_readlink,
	.readdir = shbfs_readdir,
	.open = shbfs_open,
	.read = shbfs_read_op,
	.release = shbfs_release,
	.statfs = shbfs_statfs,
};

const struct fuse_operations *shbfs_operations(void)
{
	return &ops;
}

/* --- life cycle ---------------------------------------------------------------- */

int shbfs_new(const struct shbfs_config *cfg, struct shbfs **out)
{
	struct shbfs *fs = calloc(1, sizeof(*fs));
	int rc;

	if (!fs)
		return shb_fail(SHB_ENOMEM, "out of memory");
	pthread_mutex_init(&fs->mu, NULL);
	pthread_cond_init(&fs->wake, NULL);
	pthread_cond_init(&fs->listed_cv, NULL);
	fs->cfg = *cfg;
	fs->mounted_at = time(NULL);
	/* Inflated pieces in memory; fetched bytes are the repository's cache. */
	rc = shb_pieces_new(SHBFS_MEM_CACHE, &fs->pieces);
	if (rc) {
		shbfs_free(fs);
		return rc;
	}
	*out = fs;
	return SHB_OK;
}

void shbfs_free(struct shbfs *fs)
{
	if (!fs)
		return;
	shb_pieces_free(fs->pieces);  /* its workers first: they use the readers */
	shbfs_list_free(fs);
	pthread_cond_destroy(&fs->wake);
	pthread_cond_destroy(&fs->listed_cv);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
}
