/*
 * Parallel read-ahead.  A sequential reader's next members are queued here
 * and inflated into the memory cache by worker threads while the reader's
 * own request returns, so a single `cat` uses every core.  A member being
 * prefetched is marked in flight; a read that needs it waits for it rather
 * than inflating it a second time.  Workers start in the FUSE init callback
 * (after daemonizing: threads do not survive a fork) and stop at destroy.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shbfs.h"

#define QUEUE 64
#define INFLIGHT 256

struct pjob {
	struct shbfs_backup *b;
	size_t lo, hi;
};

struct shbfs_prefetch {
	pthread_mutex_t mu;         /* protects every field up to threads */
	pthread_cond_t work, done;
	struct pjob q[QUEUE];
	size_t head, count;
	struct { struct shbfs_backup *b; size_t i; } flight[INFLIGHT];
	size_t nflight;
	int stop;
	pthread_t threads[16];
	int nthreads;
};

static int flying(struct shbfs_prefetch *p, struct shbfs_backup *b, size_t i)
{
	for (size_t k = 0; k < p->nflight; k++)
		if (p->flight[k].b == b && p->flight[k].i == i)
			return 1;
	return 0;
}

static void land(struct shbfs_prefetch *p, struct shbfs_backup *b, size_t lo, size_t hi)
{
	for (size_t k = 0; k < p->nflight;)
		if (p->flight[k].b == b && p->flight[k].i >= lo && p->flight[k].i <= hi)
			p->flight[k] = p->flight[--p->nflight];
		else
			k++;
	pthread_cond_broadcast(&p->done);
}

static void *worker(void *arg)
{
	struct shbfs *fs = arg;
	struct shbfs_prefetch *p = __atomic_load_n(&fs->prefetch, __ATOMIC_ACQUIRE);

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->count && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->stop)
			break;
		struct pjob j = p->q[p->head];

		p->head = (p->head + 1) % QUEUE;
		p->count--;
		pthread_mutex_unlock(&p->mu);
		shbfs_fill(fs, j.b, j.lo, j.hi);
		pthread_mutex_lock(&p->mu);
		land(p, j.b, j.lo, j.hi);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

void shbfs_prefetch_start(struct shbfs *fs)
{
	struct shbfs_prefetch *p = calloc(1, sizeof(*p));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (!p)
		return;  /* no read-ahead threads: reads still work */
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	/* Published before the workers start; FUSE threads read it with acquire. */
	__atomic_store_n(&fs->prefetch, p, __ATOMIC_RELEASE);
	pthread_mutex_lock(&p->mu);
	for (long i = 0; i < (ncpu > 0 ? ncpu : 1) && i < 16; i++)
		if (!pthread_create(&p->threads[p->nthreads], NULL, worker, fs))
			p->nthreads++;
	pthread_mutex_unlock(&p->mu);
}

void shbfs_prefetch_stop(struct shbfs *fs)
{
	struct shbfs_prefetch *p = __atomic_load_n(&fs->prefetch, __ATOMIC_ACQUIRE);

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p);
	__atomic_store_n(&fs->prefetch, NULL, __ATOMIC_RELEASE);
}

void shbfs_prefetch(struct shbfs *fs, struct shbfs_backup *b, size_t lo, size_t hi, size_t per)
{
	struct shbfs_prefetch *p = __atomic_load_n(&fs->prefetch, __ATOMIC_ACQUIRE);

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	if (!p->nthreads) {
		pthread_mutex_unlock(&p->mu);
		return;
	}
	for (size_t i = lo; i <= hi && p->count < QUEUE;) {
		size_t end = i;

		if (flying(p, b, i) || shbfs_cache_has_plain(fs->cache, b->key, i)) {
			i++;
			continue;
		}
		while (end < hi && end + 1 < i + per && !flying(p, b, end + 1)
		       && !shbfs_cache_has_plain(fs->cache, b->key, end + 1))
			end++;
		if (p->nflight + (end - i + 1) > INFLIGHT)
			break;
		for (size_t k = i; k <= end; k++) {
			p->flight[p->nflight].b = b;
			p->flight[p->nflight++].i = k;
		}
		p->q[(p->head + p->count++) % QUEUE] = (struct pjob){ b, i, end };
		i = end + 1;
	}
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
}

void shbfs_prefetch_wait(struct shbfs *fs, struct shbfs_backup *b, size_t i)
{
	struct shbfs_prefetch *p = __atomic_load_n(&fs->prefetch, __ATOMIC_ACQUIRE);

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	while (flying(p, b, i) && !p->stop)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}
