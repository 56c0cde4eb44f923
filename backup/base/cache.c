/*
 * The disk cache (cache.h).  The LRU order lives in memory (a list plus a
 * hash table of file names), rebuilt from file times at open; each file is
 * charged its size rounded up to 4 KiB plus an inode's share, so the cap
 * holds for what du measures.  Files are opened relative to the cache
 * directory's fd with O_NOFOLLOW, so a link planted in the directory is
 * never followed.
 *
 * Ranges of a source ("pieces") are files named m-<id>-<off>-<len> (id: 32
 * hex digits of the source identity, off and len in hex) holding the bytes
 * then their CRC32 (native byte order: the cache is local), so a damaged or short file is a miss, never wrong
 * bytes.  A hash table by id finds a source's pieces without a directory
 * walk.  Named blobs are files holding the blob's bytes as they are.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "cache.h"
#include "cache_pieces.h"
#include "error.h"
#include "util.h"

#define BUCKETS 4096
/* Kept free under the cap for the directory's own blocks, which du counts. */
#define DIR_RESERVE (64u * 1024u)
#define NAME_MAX_LEN 128

struct node {
	char name[NAME_MAX_LEN];
	uint64_t charge;
	struct node *prev, *next;   /* LRU list, most recent first */
	struct node *hnext;         /* hash chain by name */
	/* A piece (is_piece): which source and range it holds. */
	int is_piece;
	char id[SHB_CACHE_ID_LEN + 1];
	uint64_t off;
	uint64_t len;
	struct node *pnext;         /* hash chain by id */
};

struct shb_cache {
	char *dir;                  /* immutable after open; NULL: disabled */
	int dirfd;                  /* immutable after open */
	int private_dir;            /* remove dir at close */
	uint64_t cap;               /* immutable after open */

	pthread_mutex_t mu;         /* protects every field below */
	uint64_t usage;
	struct node *head, *tail;
	struct node *table[BUCKETS];
	struct node *pieces[BUCKETS];
};

static uint64_t charge_of(uint64_t len)
{
	return (len + 4095) / 4096 * 4096 + 4096;  /* data blocks, plus the inode's share */
}

static size_t hash(const char *s)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h % BUCKETS;
}

/*
 * The chain of the pieces of source id that start in region off >> REGION:
 * a read looks at the few regions its range (widened by the longest piece)
 * covers, not at every piece of a big archive.
 */
#define REGION 22
static size_t piece_bucket(const char *id, uint64_t off)
{
	return (hash(id) + (size_t)(off >> REGION) * 2654435761u) % BUCKETS;
}

/*
 * A name the cache makes and so may read, charge and evict: a lower-case
 * word, then '-' and groups of hex digits separated by '-' ("m-<id>-<off>-
 * <len>", "zidx-<id>").  Anything else in the directory (a backup, a file
 * of the user's, since a cache dir may be pointed anywhere) is never
 * touched, not even counted.
 */
static int name_ok(const char *name)
{
	size_t n = strlen(name), word = strspn(name, "abcdefghijklmnopqrstuvwxyz");
	const char *p = name + word;

	if (!word || word > 8 || n >= NAME_MAX_LEN - 24 || *p != '-')
		return 0;
	for (; *p; p += 1 + strspn(p + 1, "0123456789abcdef"))
		if (*p != '-' || !strchr("0123456789abcdef", p[1]) || !p[1])
			return 0;
	return 1;
}

/* A temporary write_file() left: "<name>.<hex>.tmp" with name_ok(name). */
static int temporary_ok(const char *name)
{
	char base[NAME_MAX_LEN];
	const char *dot = strchr(name, '.');
	size_t n = dot ? (size_t)(dot - name) : 0, hex;

	if (!dot || n >= sizeof(base))
		return 0;
	hex = strspn(dot + 1, "0123456789abcdef");
	memcpy(base, name, n);
	base[n] = '\0';
	return name_ok(base) && hex && !strcmp(dot + 1 + hex, ".tmp");
}

/* --- the LRU (callers hold mu) ------------------------------------------- */

static struct node *find(struct shb_cache *c, const char *name)
{
	for (struct node *n = c->table[hash(name)]; n; n = n->hnext)
		if (!strcmp(n->name, name))
			return n;
	return NULL;
}

static void unlink_lru(struct shb_cache *c, struct node *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		c->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		c->tail = n->prev;
	n->prev = n->next = NULL;
}

static void push_front(struct shb_cache *c, struct node *n)
{
	n->next = c->head;
	n->prev = NULL;
	if (c->head)
		c->head->prev = n;
	c->head = n;
	if (!c->tail)
		c->tail = n;
}

/* Unchains n from the hash chain at *pp: by name (hnext) or, by_id, by source (pnext). */
static void unchain(struct node **pp, struct node *n, int by_id)
{
	while (*pp && *pp != n)
		pp = by_id ? &(*pp)->pnext : &(*pp)->hnext;
	if (*pp)
		*pp = by_id ? n->pnext : n->hnext;
}

static void forget(struct shb_cache *c, struct node *n)
{
	unchain(&c->table[hash(n->name)], n, 0);
	if (n->is_piece)
		unchain(&c->pieces[piece_bucket(n->id, n->off)], n, 1);
	unlink_lru(c, n);
	c->usage -= n->charge;
	free(n);
}

/* Evicts least recently used files until extra more bytes fit under the cap. */
static void make_room(struct shb_cache *c, uint64_t extra)
{
	uint64_t cap = c->cap > DIR_RESERVE ? c->cap - DIR_RESERVE : 0;

	while (c->tail && c->usage + extra > cap) {
		struct node *n = c->tail;

		unlinkat(c->dirfd, n->name, 0);
		forget(c, n);
	}
}

/* Parses a piece's name m-<id>-<off>-<len> into n. */
static void parse_piece(struct node *n)
{
	unsigned long long off, len;
	int used = 0;

	if (strncmp(n->name, "m-", 2) || strlen(n->name) < 2 + SHB_CACHE_ID_LEN + 4
	    || n->name[2 + SHB_CACHE_ID_LEN] != '-')
		return;
	if (sscanf(n->name + 3 + SHB_CACHE_ID_LEN, "%llx-%llx%n", &off, &len, &used) != 2
	    || n->name[3 + SHB_CACHE_ID_LEN + used] || !len || len > SHB_CACHE_PIECE_MAX)
		return;
	memcpy(n->id, n->name + 2, SHB_CACHE_ID_LEN);
	n->id[SHB_CACHE_ID_LEN] = '\0';
	n->off = off;
	n->len = len;
	n->is_piece = 1;
}

static struct node *add_node(struct shb_cache *c, const char *name, uint64_t charge)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->charge = charge;
	n->hnext = c->table[hash(name)];
	c->table[hash(name)] = n;
	parse_piece(n);
	if (n->is_piece) {
		n->pnext = c->pieces[piece_bucket(n->id, n->off)];
		c->pieces[piece_bucket(n->id, n->off)] = n;
	}
	push_front(c, n);
	c->usage += charge;
	return n;
}

/* --- open and close -------------------------------------------------------- */

struct found {
	char name[NAME_MAX_LEN];
	time_t mtime;
	uint64_t size;
};

static int oldest_first(const void *a, const void *b)
{
	const struct found *x = a, *y = b;

	return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

/*
 * Lists the cache's own files in its dir (ours by name and owner); removes
 * the half-written temporaries of killed runs.
 */
static size_t list_files(struct shb_cache *c, struct found **out)
{
	int fd = openat(c->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct found *v = NULL;
	struct dirent *de;
	size_t n = 0, alloc = 0;

	if (!d && fd >= 0)
		close(fd);
	while (d && (de = readdir(d))) {
		struct stat st;

		if (fstatat(c->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0
		    || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
			continue;
		if (temporary_ok(de->d_name)) {
			unlinkat(c->dirfd, de->d_name, 0);  /* a killed run's half-written file */
			continue;
		}
		if (!name_ok(de->d_name))
			continue;
		if (SHB_ALLOC_GROW(v, n + 1, alloc))
			break;
		memcpy(v[n].name, de->d_name, strlen(de->d_name) + 1);  /* name_ok: it fits */
		v[n].mtime = st.st_mtime;
		v[n].size = (uint64_t)st.st_size;
		n++;
	}
	if (d)
		closedir(d);
	*out = v;
	return n;
}

/* Loads what earlier runs cached, oldest first so the newest is most recent. */
static void scan(struct shb_cache *c)
{
	struct found *v = NULL;
	size_t n = list_files(c, &v);

	if (n)
		qsort(v, n, sizeof(*v), oldest_first);
	for (size_t i = 0; i < n; i++)
		add_node(c, v[i].name, charge_of(v[i].size));
	free(v);
	make_room(c, 0);
}

#define PRIVATE_PREFIX "shb-cache-"

/*
 * Removes the private caches of runs that were killed (SIGKILL, or a
 * signal the command does not catch): "shb-cache-<pid>-XXXXXX" dirs in
 * tmp, ours, whose pid is gone.
 */
static void sweep_private(const char *tmp)
{
	int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d && fd >= 0)
		close(fd);
	while (d && (de = readdir(d))) {
		struct stat st;
		char *end;
		long pid;

		if (strncmp(de->d_name, PRIVATE_PREFIX, strlen(PRIVATE_PREFIX)))
			continue;
		/* Exactly as make_dir() names them: digits, '-', mkdtemp's six characters. */
		if (!strchr("123456789", de->d_name[strlen(PRIVATE_PREFIX)]))
			continue;
		pid = strtol(de->d_name + strlen(PRIVATE_PREFIX), &end, 10);
		if (pid <= 0 || *end != '-' || strlen(end + 1) != 6 || pid == (long)getpid()
		    || (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
		    || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0
		    || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
			continue;
		shb_remove_tree_at(dirfd(d), de->d_name);
	}
	if (d)
		closedir(d);
}

/*
 * Opens c->dir as the cache's directory: made 0700 if missing (made, the
 * parents too, by us), else used only if it is a directory of the user
 * running us that no one else may write to.  A dir another user owns or
 * can write could hold bytes of theirs that the cache's CRCs would take
 * for a backup's; and a shared dir (/tmp) is refused, never chmod'ed.
 */
static int open_dir(struct shb_cache *c)
{
	struct stat st;
	int made = mkdir(c->dir, 0700) == 0;

	if (!made && errno == ENOENT) {
		if (shb_mkdir_p(c->dir))
			return SHB_EIO;
		made = 1;
	}
	c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (c->dirfd < 0 || fstat(c->dirfd, &st) < 0)
		return shb_fail_errno(SHB_EIO, "cannot use cache dir '%s'", c->dir);
	if (st.st_uid != geteuid())
		return shb_fail(SHB_EIO, "cannot use cache dir '%s': it belongs to uid %u, not to "
				"the user running this (uid %u)", c->dir, (unsigned)st.st_uid,
				(unsigned)geteuid());
	if (!made && (st.st_mode & 022))
		return shb_fail(SHB_EIO, "cannot use cache dir '%s': other users may write to it "
				"(mode %03o); give it a directory of its own", c->dir,
				(unsigned)(st.st_mode & 07777));
	if (made && fchmod(c->dirfd, 0700) < 0)
		return shb_fail_errno(SHB_EIO, "cannot use cache dir '%s'", c->dir);
	return SHB_OK;
}

/* Opens dir, or creates a private one (dir NULL) under $TMPDIR, as c->dir. */
static int make_dir(struct shb_cache *c, const char *dir)
{
	const char *tmp = getenv("TMPDIR");

	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (dir) {
		if (!(c->dir = strdup(dir)))
			return shb_fail(SHB_ENOMEM, "out of memory");
		return open_dir(c);
	}
	sweep_private(tmp);
	if (!(c->dir = shb_aprintf("%s/" PRIVATE_PREFIX "%ld-XXXXXX", tmp, (long)getpid())))
		return SHB_ENOMEM;
	if (!mkdtemp(c->dir))
		return shb_fail_errno(SHB_EIO, "cannot make a cache dir in '%s'", tmp);
	c->private_dir = 1;
	return open_dir(c);
}

int shb_cache_open(const char *dir, uint64_t cap, struct shb_cache **out)
{
	struct shb_cache *c = calloc(1, sizeof(*c));
	int rc = SHB_OK;

	if (!c)
		return shb_fail(SHB_ENOMEM, "out of memory");
	pthread_mutex_init(&c->mu, NULL);
	c->dirfd = -1;
	c->cap = cap;
	if (cap)
		rc = make_dir(c, dir);
	if (rc) {
		shb_cache_close(c);
		return rc;
	}
	if (c->dirfd >= 0)
		scan(c);
	*out = c;
	return SHB_OK;
}

void shb_cache_close(struct shb_cache *c)
{
	if (!c)
		return;
	while (c->head)
		forget(c, c->head);
	if (c->private_dir) {
		if (c->dirfd >= 0)
			shb_clear_dir(c->dirfd);
		rmdir(c->dir);
	}
	if (c->dirfd >= 0)
		close(c->dirfd);
	free(c->dir);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int shb_cache_enabled(const struct shb_cache *c)
{
	return c && c->dirfd >= 0;
}

/* --- files ------------------------------------------------------------------- */

static void touch(struct shb_cache *c, const char *name)
{
	struct node *n;

	pthread_mutex_lock(&c->mu);
	if ((n = find(c, name))) {
		unlink_lru(c, n);
		push_front(c, n);
	}
	pthread_mutex_unlock(&c->mu);
}

/*
 * Reads (out 0) or writes (out 1, at the file offset) exactly len bytes at
 * off of fd; -1 on any error or a short file.  No message: cache trouble
 * is a miss, not an error, and must not replace the caller's message.
 */
static int io_exact(int fd, void *buf, size_t len, uint64_t off, int out)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = out ? write(fd, (char *)buf + done, len - done)
				: pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/*
 * Reads the whole file name into a new buffer (plus extra bytes of room);
 * -1 on a miss.  want: the size the file must have, or UINT64_MAX for any.
 */
static int read_file(struct shb_cache *c, const char *name, uint64_t want, unsigned char **buf,
		     size_t *len)
{
	struct stat st;
	int fd, ok = 0;

	*buf = NULL;
	if (!shb_cache_enabled(c) || !name_ok(name))
		return -1;
	if ((fd = openat(c->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_uid == geteuid()
	    && (want == UINT64_MAX || (uint64_t)st.st_size == want)
	    && (*buf = malloc((size_t)st.st_size)))
		ok = !io_exact(fd, *buf, (size_t)st.st_size, 0, 0);
	close(fd);
	if (!ok) {
		free(*buf);
		*buf = NULL;
		return -1;
	}
	*len = (size_t)st.st_size;
	touch(c, name);
	return 0;
}

/* Writes a file name of the two parts a and b, under the cap; trouble skips it. */
static void write_file(struct shb_cache *c, const char *name, const void *a, size_t alen,
		       const void *b, size_t blen)
{
	char tmp[NAME_MAX_LEN + 32];
	uint64_t charge = charge_of(alen + blen);
	struct node *n;
	int fd, ok, placed;

	if (!shb_cache_enabled(c) || !name_ok(name) || charge + DIR_RESERVE > c->cap)
		return;
	/* Room first, so the cap holds even while the file is being written. */
	pthread_mutex_lock(&c->mu);
	if (find(c, name)) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	make_room(c, charge);
	ok = add_node(c, name, charge) != NULL;
	pthread_mutex_unlock(&c->mu);
	if (!ok)
		return;
	snprintf(tmp, sizeof(tmp), "%s.%lx.tmp", name, (unsigned long)pthread_self());
	fd = openat(c->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	ok = fd >= 0 && !io_exact(fd, (void *)a, alen, 0, 1) && !io_exact(fd, (void *)b, blen, 0, 1);
	if (fd >= 0)
		close(fd);
	/* Placed under mu: a file evicted while being written is not left untracked. */
	pthread_mutex_lock(&c->mu);
	n = find(c, name);
	placed = ok && n && renameat(c->dirfd, tmp, c->dirfd, name) == 0;
	if (!placed && n)
		forget(c, n);
	pthread_mutex_unlock(&c->mu);
	if (!placed)
		unlinkat(c->dirfd, tmp, 0);
}

/* --- named blobs ------------------------------------------------------------ */

int shb_cache_get_blob(struct shb_cache *c, const char *name, unsigned char **buf,
		       size_t *len)
{
	return read_file(c, name, UINT64_MAX, buf, len);
}

int shb_cache_has_blob(struct shb_cache *c, const char *name)
{
	int yes;

	if (!shb_cache_enabled(c))
		return 0;
	pthread_mutex_lock(&c->mu);
	yes = find(c, name) != NULL;
	pthread_mutex_unlock(&c->mu);
	return yes;
}

void shb_cache_put_blob(struct shb_cache *c, const char *name, const void *buf, size_t len)
{
	shb_cache_drop(c, name);
	write_file(c, name, buf, len, "", 0);
}

void shb_cache_drop(struct shb_cache *c, const char *name)
{
	struct node *n;

	if (!shb_cache_enabled(c) || !name_ok(name))
		return;
	pthread_mutex_lock(&c->mu);
	unlinkat(c->dirfd, name, 0);
	if ((n = find(c, name)))
		forget(c, n);
	pthread_mutex_unlock(&c->mu);
}

/* --- pieces of sources (cache_pieces.h) ------------------------------------- */

static void piece_name(const char *id, uint64_t off, uint64_t len, char *out, size_t size)
{
	snprintf(out, size, "m-%s-%llx-%llx", id, (unsigned long long)off,
		 (unsigned long long)len);
}

/* Appends the pieces of id in bucket b that overlap [off, end) to *v (n of them). */
static size_t collect(struct shb_cache *c, size_t b, const char *id, uint64_t off, uint64_t end,
		      struct shb_piece **v, size_t n, size_t *alloc)
{
	for (struct node *p = c->pieces[b]; p; p = p->pnext) {
		if (strcmp(p->id, id) || p->off >= end || p->off + p->len <= off)
			continue;
		if (SHB_ALLOC_GROW(*v, n + 1, *alloc))
			break;
		(*v)[n].off = p->off;
		(*v)[n++].len = p->len;
	}
	return n;
}

size_t shb_cache_pieces(struct shb_cache *c, const char *id, uint64_t off, uint64_t end,
			struct shb_piece **out)
{
	uint64_t first = off > SHB_CACHE_PIECE_MAX ? off - SHB_CACHE_PIECE_MAX : 0;
	size_t n = 0, alloc = 0;

	*out = NULL;
	if (!shb_cache_enabled(c) || end <= off)
		return 0;
	pthread_mutex_lock(&c->mu);
	/* Regions sharing a bucket list a piece twice: harmless, either copy serves. */
	for (uint64_t r = first >> REGION; r <= (end - 1) >> REGION; r++)
		n = collect(c, piece_bucket(id, r << REGION), id, off, end, out, n, &alloc);
	pthread_mutex_unlock(&c->mu);
	return n;
}

int shb_cache_get_piece(struct shb_cache *c, const char *id, const struct shb_piece *p,
			unsigned char **buf)
{
	char name[NAME_MAX_LEN];
	unsigned char *data;
	size_t len;
	uint32_t crc;

	piece_name(id, p->off, p->len, name, sizeof(name));
	if (read_file(c, name, p->len + 4, &data, &len))
		return -1;
	memcpy(&crc, data + p->len, 4);
	if (crc != (uint32_t)crc32(0, data, (uInt)p->len)) {
		free(data);
		shb_cache_drop(c, name);  /* damaged: the caller fetches it again */
		return -1;
	}
	*buf = data;
	return 0;
}

void shb_cache_put_piece(struct shb_cache *c, const char *id, uint64_t off, const void *buf,
			 size_t len)
{
	char name[NAME_MAX_LEN];
	uint32_t crc = (uint32_t)crc32(0, buf, (uInt)len);

	piece_name(id, off, len, name, sizeof(name));
	write_file(c, name, buf, len, &crc, sizeof(crc));
}
