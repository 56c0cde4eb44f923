/*
 * The memory cache of inflated pieces and the read-ahead workers
 * (pieces.h).  The cache is a small array of slots searched linearly (a
 * few dozen pieces of a few hundred KiB to a few MiB each); the job queue
 * is a ring, the pieces in flight a small array.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pieces.h"

#define SLOTS 256
#define QUEUE 64
#define INFLIGHT 256
#define THREADS 16

struct slot {
	uint64_t owner;
	size_t i, len;
	uint64_t used;              /* LRU clock value of the last use */
	unsigned char *data;        /* NULL: a free slot */
};

struct job {
	uint64_t owner;
	size_t lo, hi;
	shb_pieces_fill_fn fill;
	void *arg;
};

struct shb_pieces {
	size_t cap;                 /* immutable after new */

	pthread_mutex_t mu;         /* protects every field below except threads */
	pthread_cond_t work;        /* workers: a job is queued, or stop */
	pthread_cond_t done;        /* waiters: pieces landed */
	struct slot slots[SLOTS];
	size_t bytes;               /* sum of the slots' len */
	uint64_t clock;
	struct job q[QUEUE];
	size_t head, count;
	struct { uint64_t owner; size_t i; } flight[INFLIGHT];
	size_t nflight;
	int stop;
	int nthreads;               /* written under mu before any worker can read it */
	pthread_t threads[THREADS]; /* owned by start and free */
};

int shb_pieces_new(size_t mem_cap, struct shb_pieces **out)
{
	struct shb_pieces *p = calloc(1, sizeof(*p));

	if (!p)
		return shb_fail(SHB_ENOMEM, "out of memory");
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->cap = mem_cap;
	*out = p;
	return SHB_OK;
}

/* --- the cache (callers hold mu) ------------------------------------------ */

static struct slot *find_slot(struct shb_pieces *p, uint64_t owner, size_t i)
{
	for (size_t k = 0; k < SLOTS; k++)
		if (p->slots[k].data && p->slots[k].owner == owner && p->slots[k].i == i)
			return &p->slots[k];
	return NULL;
}

static int flying(const struct shb_pieces *p, uint64_t owner, size_t i)
{
	for (size_t k = 0; k < p->nflight; k++)
		if (p->flight[k].owner == owner && p->flight[k].i == i)
			return 1;
	return 0;
}

static void evict(struct shb_pieces *p, struct slot *s)
{
	p->bytes -= s->len;
	free(s->data);
	s->data = NULL;
}

/* The least recently used slot in use, or NULL. */
static struct slot *oldest(struct shb_pieces *p)
{
	struct slot *v = NULL;

	for (size_t k = 0; k < SLOTS; k++)
		if (p->slots[k].data && (!v || p->slots[k].used < v->used))
			v = &p->slots[k];
	return v;
}

/* A free slot, made by evicting the oldest if none is. */
static struct slot *free_slot(struct shb_pieces *p)
{
	struct slot *v;

	for (size_t k = 0; k < SLOTS; k++)
		if (!p->slots[k].data)
			return &p->slots[k];
	v = oldest(p);
	evict(p, v);
	return v;
}

int shb_pieces_read(struct shb_pieces *p, uint64_t owner, size_t i, uint64_t at, size_t len,
		    void *dst)
{
	struct slot *s;
	int rc = -1;

	pthread_mutex_lock(&p->mu);
	if ((s = find_slot(p, owner, i)) && at <= s->len && len <= s->len - at) {
		memcpy(dst, s->data + at, len);
		s->used = ++p->clock;
		rc = 0;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int shb_pieces_has(struct shb_pieces *p, uint64_t owner, size_t i, int fly)
{
	int yes;

	pthread_mutex_lock(&p->mu);
	yes = find_slot(p, owner, i) || (fly && flying(p, owner, i));
	pthread_mutex_unlock(&p->mu);
	return yes;
}

void shb_pieces_put(struct shb_pieces *p, uint64_t owner, size_t i, const void *buf,
		    size_t len)
{
	unsigned char *copy;
	struct slot *s;

	if (len > p->cap || !(copy = malloc(len ? len : 1)))
		return;
	memcpy(copy, buf, len);
	pthread_mutex_lock(&p->mu);
	if (find_slot(p, owner, i)) {
		pthread_mutex_unlock(&p->mu);
		free(copy);
		return;
	}
	while (p->bytes + len > p->cap && (s = oldest(p)))
		evict(p, s);
	s = free_slot(p);
	*s = (struct slot){ owner, i, len, ++p->clock, copy };
	p->bytes += len;
	pthread_mutex_unlock(&p->mu);
}

void shb_pieces_wait(struct shb_pieces *p, uint64_t owner, size_t i)
{
	pthread_mutex_lock(&p->mu);
	while (flying(p, owner, i) && !p->stop)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

/* --- read-ahead ------------------------------------------------------------- */

/* Job j ended: its pieces are no longer in flight.  mu held. */
static void land(struct shb_pieces *p, const struct job *j)
{
	for (size_t k = 0; k < p->nflight;)
		if (p->flight[k].owner == j->owner && p->flight[k].i >= j->lo
		    && p->flight[k].i <= j->hi)
			p->flight[k] = p->flight[--p->nflight];
		else
			k++;
	pthread_cond_broadcast(&p->done);
}

static void *worker(void *arg)
{
	struct shb_pieces *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->count && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->stop)
			break;
		struct job j = p->q[p->head];

		p->head = (p->head + 1) % QUEUE;
		p->count--;
		pthread_mutex_unlock(&p->mu);
		j.fill(j.arg, p, j.lo, j.hi);
		pthread_mutex_lock(&p->mu);
		land(p, &j);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

void shb_pieces_start(struct shb_pieces *p, int nthreads)
{
	if (nthreads < 1)
		nthreads = 1;  /* the number of CPUs unknown */
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i < nthreads && p->nthreads < THREADS; i++)
		if (!pthread_create(&p->threads[p->nthreads], NULL, worker, p))
			p->nthreads++;
	pthread_mutex_unlock(&p->mu);
}

void shb_pieces_free(struct shb_pieces *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->done);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	for (size_t k = 0; k < SLOTS; k++)
		free(p->slots[k].data);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p);
}

/* Whether piece i of owner needs a job: neither cached nor in flight.  mu held. */
static int wanted(struct shb_pieces *p, uint64_t owner, size_t i)
{
	return !flying(p, owner, i) && !find_slot(p, owner, i);
}

void shb_pieces_ahead(struct shb_pieces *p, uint64_t owner, size_t lo, size_t hi, size_t batch,
		      shb_pieces_fill_fn fill, void *arg)
{
	pthread_mutex_lock(&p->mu);
	for (size_t i = lo; i <= hi && p->nthreads && !p->stop && p->count < QUEUE;) {
		size_t end = i;

		if (!wanted(p, owner, i)) {
			i++;
			continue;
		}
		while (end < hi && end + 1 < i + batch && wanted(p, owner, end + 1))
			end++;
		if (p->nflight + (end - i + 1) > INFLIGHT)
			break;
		for (size_t k = i; k <= end; k++) {
			p->flight[p->nflight].owner = owner;
			p->flight[p->nflight++].i = k;
		}
		p->q[(p->head + p->count++) % QUEUE] = (struct job){ owner, i, end, fill, arg };
		i = end + 1;
	}
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
}
