/*
 * The disk and memory caches (cache.h).  The disk cache keeps its LRU order
 * in memory (a list plus a hash table of names), rebuilt from file times
 * when a mount starts, and charges each file its size rounded up to 4 KiB
 * so the cap holds for what du measures.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "error.h"
#include "util.h"

#define BUCKETS 4096
/* Kept free under the cap for the directory's own blocks, which du counts. */
#define DIR_RESERVE (64u * 1024u)
#define NAME_MAX_LEN 128

struct node {
	char name[NAME_MAX_LEN];
	uint64_t charge;
	uint64_t stamp;
	struct node *prev, *next;   /* LRU list, most recent first */
	struct node *hnext;         /* hash chain */
};

struct slot {
	char key[NAME_MAX_LEN];
	size_t i, len;
	uint64_t used;
	unsigned char *data;
};

struct shbfs_cache {
	char *dir;
	uint64_t cap, usage;
	pthread_mutex_t mu;
	struct node *head, *tail;
	struct node *table[BUCKETS];
	uint64_t seq;

	struct slot *slots;
	size_t nslots;
	uint64_t clock;
	pthread_mutex_t mmu;
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

/* --- the LRU (callers hold mu) ------------------------------------------- */

static struct node *find(struct shbfs_cache *c, const char *name)
{
	for (struct node *n = c->table[hash(name)]; n; n = n->hnext)
		if (!strcmp(n->name, name))
			return n;
	return NULL;
}

static void unlink_lru(struct shbfs_cache *c, struct node *n)
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

static void push_front(struct shbfs_cache *c, struct node *n)
{
	n->next = c->head;
	n->prev = NULL;
	if (c->head)
		c->head->prev = n;
	c->head = n;
	if (!c->tail)
		c->tail = n;
}

static void forget(struct shbfs_cache *c, struct node *n)
{
	struct node **pp = &c->table[hash(n->name)];

	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	unlink_lru(c, n);
	c->usage -= n->charge;
	free(n);
}

static int path_of(const struct shbfs_cache *c, const char *name, char *out, size_t len)
{
	return (size_t)snprintf(out, len, "%s/%s", c->dir, name) < len ? 0 : -1;
}

/* Evicts least recently used files until extra more bytes fit under the cap. */
static void make_room(struct shbfs_cache *c, uint64_t extra)
{
	char path[4096];

	uint64_t cap = c->cap > DIR_RESERVE ? c->cap - DIR_RESERVE : 0;

	while (c->tail && c->usage + extra > cap) {
		struct node *n = c->tail;

		if (!path_of(c, n->name, path, sizeof(path)))
			unlink(path);
		forget(c, n);
	}
}

static struct node *add_node(struct shbfs_cache *c, const char *name, uint64_t charge)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->charge = charge;
	n->stamp = ++c->seq;
	n->hnext = c->table[hash(name)];
	c->table[hash(name)] = n;
	push_front(c, n);
	c->usage += charge;
	return n;
}

/* --- start-up -------------------------------------------------------------- */

struct found {
	char name[NAME_MAX_LEN];
	time_t atime;
	uint64_t size;
};

static int oldest_first(const void *a, const void *b)
{
	const struct found *x = a, *y = b;

	return (x->atime > y->atime) - (x->atime < y->atime);
}

/* Loads what earlier mounts cached; removes half-written temporaries. */
static void scan(struct shbfs_cache *c)
{
	DIR *d = opendir(c->dir);
	struct found *v = NULL, *grown;
	struct dirent *de;
	size_t n = 0;
	char path[4096];

	while (d && (de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.' || path_of(c, de->d_name, path, sizeof(path))
		    || lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (strstr(de->d_name, ".tmp") || strlen(de->d_name) >= NAME_MAX_LEN) {
			unlink(path);
			continue;
		}
		if (!(grown = realloc(v, (n + 1) * sizeof(*v))))
			break;
		v = grown;
		snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
		v[n].atime = st.st_mtime;
		v[n].size = (uint64_t)st.st_size;
		n++;
	}
	if (d)
		closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), oldest_first);
	for (size_t i = 0; i < n; i++)
		add_node(c, v[i].name, charge_of(v[i].size));
	free(v);
	make_room(c, 0);
}

int shbfs_cache_new(const char *dir, uint64_t disk_cap, size_t mem_members,
		    struct shbfs_cache **out)
{
	struct shbfs_cache *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return shb_fail(SHB_ENOMEM, "out of memory");
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->mmu, NULL);
	c->cap = disk_cap;
	c->nslots = mem_members;
	c->slots = calloc(mem_members + 1, sizeof(*c->slots));
	if (!c->slots) {
		shbfs_cache_free(c);
		return shb_fail(SHB_ENOMEM, "out of memory");
	}
	if (dir && disk_cap) {
		c->dir = strdup(dir);
		rc = c->dir ? shb_mkdir_p(dir) : shb_fail(SHB_ENOMEM, "out of memory");
		if (!rc && chmod(dir, 0700) < 0)
			rc = shb_fail_errno(SHB_EIO, "cannot use cache dir '%s'", dir);
		if (rc) {
			shbfs_cache_free(c);
			return rc;
		}
		scan(c);
	}
	*out = c;
	return SHB_OK;
}

void shbfs_cache_free(struct shbfs_cache *c)
{
	if (!c)
		return;
	while (c->head)
		forget(c, c->head);
	for (size_t i = 0; i < c->nslots; i++)
		free(c->slots[i].data);
	free(c->slots);
	free(c->dir);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->mmu);
	free(c);
}

/* --- disk ------------------------------------------------------------------- */

static void touch(struct shbfs_cache *c, const char *name)
{
	struct node *n;

	pthread_mutex_lock(&c->mu);
	if ((n = find(c, name))) {
		unlink_lru(c, n);
		push_front(c, n);
	}
	pthread_mutex_unlock(&c->mu);
}

int shbfs_cache_get_all(struct shbfs_cache *c, const char *name, unsigned char **buf,
			size_t *len)
{
	char path[4096];
	struct stat st;
	int fd, ok = 0;

	*buf = NULL;
	if (!c->dir || path_of(c, name, path, sizeof(path)))
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && (*buf = malloc((size_t)st.st_size)))
		ok = !shb_pread_all(fd, *buf, (size_t)st.st_size, 0, path);
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

int shbfs_cache_get(struct shbfs_cache *c, const char *name, unsigned char *buf, size_t len)
{
	char path[4096];
	struct stat st;
	int fd, ok;

	if (!c->dir || path_of(c, name, path, sizeof(path)))
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	ok = fstat(fd, &st) == 0 && (uint64_t)st.st_size == len
	     && !shb_pread_all(fd, buf, len, 0, path);
	close(fd);
	if (!ok)
		return -1;
	touch(c, name);
	return 0;
}

int shbfs_cache_has(struct shbfs_cache *c, const char *name)
{
	int yes;

	pthread_mutex_lock(&c->mu);
	yes = c->dir && find(c, name) != NULL;
	pthread_mutex_unlock(&c->mu);
	return yes;
}

void shbfs_cache_put(struct shbfs_cache *c, const char *name, const unsigned char *buf,
		     size_t len)
{
	char path[4096], tmp[4200];
	uint64_t charge = charge_of(len);
	int fd, ok;

	if (!c->dir || charge + DIR_RESERVE > c->cap || path_of(c, name, path, sizeof(path)))
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
	snprintf(tmp, sizeof(tmp), "%s.%lu.tmp", path, (unsigned long)pthread_self());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok = fd >= 0 && !shb_write_all(fd, buf, len, tmp);
	if (fd >= 0)
		close(fd);
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		shbfs_cache_drop(c, name);
	}
}

void shbfs_cache_drop(struct shbfs_cache *c, const char *name)
{
	char path[4096];
	struct node *n;

	if (!c->dir || path_of(c, name, path, sizeof(path)))
		return;
	pthread_mutex_lock(&c->mu);
	unlink(path);
	if ((n = find(c, name)))
		forget(c, n);
	pthread_mutex_unlock(&c->mu);
}

uint64_t shbfs_cache_usage(struct shbfs_cache *c)
{
	uint64_t u;

	pthread_mutex_lock(&c->mu);
	u = c->usage;
	pthread_mutex_unlock(&c->mu);
	return u;
}

/* --- memory ----------------------------------------------------------------- */

static struct slot *find_slot(struct shbfs_cache *c, const char *key, size_t i)
{
	for (size_t k = 0; k < c->nslots; k++)
		if (c->slots[k].data && c->slots[k].i == i && !strcmp(c->slots[k].key, key))
			return &c->slots[k];
	return NULL;
}

int shbfs_cache_get_plain(struct shbfs_cache *c, const char *key, size_t i,
			  unsigned char *buf, size_t len)
{
	struct slot *s;
	int rc = -1;

	pthread_mutex_lock(&c->mmu);
	if ((s = find_slot(c, key, i)) && s->len == len) {
		memcpy(buf, s->data, len);
		s->used = ++c->clock;
		rc = 0;
	}
	pthread_mutex_unlock(&c->mmu);
	return rc;
}

int shbfs_cache_has_plain(struct shbfs_cache *c, const char *key, size_t i)
{
	int yes;

	pthread_mutex_lock(&c->mmu);
	yes = find_slot(c, key, i) != NULL;
	pthread_mutex_unlock(&c->mmu);
	return yes;
}

void shbfs_cache_put_plain(struct shbfs_cache *c, const char *key, size_t i,
			   const unsigned char *buf, size_t len)
{
	struct slot *victim = NULL;
	unsigned char *copy;

	if (!c->nslots || strlen(key) >= NAME_MAX_LEN || !(copy = malloc(len)))
		return;
	memcpy(copy, buf, len);
	pthread_mutex_lock(&c->mmu);
	if (find_slot(c, key, i)) {
		pthread_mutex_unlock(&c->mmu);
		free(copy);
		return;
	}
	for (size_t k = 0; k < c->nslots; k++)
		if (!victim || c->slots[k].used < victim->used)
			victim = &c->slots[k];
	free(victim->data);
	snprintf(victim->key, sizeof(victim->key), "%s", key);
	victim->i = i;
	victim->len = len;
	victim->data = copy;
	victim->used = ++c->clock;
	pthread_mutex_unlock(&c->mmu);
}
