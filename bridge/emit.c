/* The receiving side's emitter: a thread that emits each tensor received
 * from a peer on its topic in the local broker, then hands a credit back
 * to the loop (an eventfd wakes it). Emits are posted (no seq_out), so
 * one waits only once 8 are unanswered, which is when a local
 * HS_POLICY_BLOCK subscriber is full; waiting here keeps the UCX loop
 * turning (heartbeats, other receives), and the credit that comes back
 * only after the emit returned is what slows the sender. The loop cannot
 * emit itself: the public API does not say when a posted emit would wait.
 * One thread for every topic: a blocked topic holds the others back on
 * this bridge. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hsb.h"

struct item {
	struct item *next;
	hs_tensor *t;
	uint64_t gen;
	int status;
	char topic[HS_MAX_TOPIC + 1];
};

struct list {
	struct item *head, *tail;
};

struct hsb_emitq {
	hs_client *client;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct list todo, done;
	bool stop;
	int fd;
};

static void append(struct list *l, struct item *it)
{
	it->next = NULL;
	if (l->tail)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
}

static void *run(void *arg)
{
	struct hsb_emitq *q = arg;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->todo.head && !q->stop)
			pthread_cond_wait(&q->cond, &q->lock);
		struct item *it = q->todo.head;
		if (!it)
			break;
		q->todo.head = it->next;
		if (!q->todo.head)
			q->todo.tail = NULL;
		pthread_mutex_unlock(&q->lock);
		/* Posted (no seq_out): returns once sent unless 8 are
		 * unanswered, which is when a BLOCK subscriber is full. */
		it->status = hs_tensor_emit(it->t, it->topic, NULL, NULL);
		it->t = NULL;
		pthread_mutex_lock(&q->lock);
		append(&q->done, it);
		uint64_t one = 1;
		(void)!write(q->fd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int hsb_emitq_start(hs_client *client, struct hsb_emitq **out)
{
	struct hsb_emitq *q = calloc(1, sizeof(*q));
	if (!q)
		return HS_ENOMEM;
	q->client = client;
	q->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->fd < 0) {
		free(q);
		return HS_EIO;
	}
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	if (pthread_create(&q->thread, NULL, run, q) != 0) {
		close(q->fd);
		free(q);
		return HS_ENOMEM;
	}
	*out = q;
	return 0;
}

int hsb_emitq_fd(struct hsb_emitq *q)
{
	return q->fd;
}

void hsb_emitq_push(struct hsb_emitq *q, hs_tensor *t, const char *topic, uint64_t gen)
{
	struct item *it = calloc(1, sizeof(*it));
	if (!it) { /* nothing to emit with: the tensor goes, its credit stays */
		hs_tensor_release(t, NULL);
		return;
	}
	it->t = t;
	it->gen = gen;
	strcpy(it->topic, topic); /* topic was checked by hsb_wire_get_meta */
	pthread_mutex_lock(&q->lock);
	append(&q->todo, it);
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

void hsb_emitq_take_credits(struct hsb_emitq *q,
			    void (*fn)(void *arg, const char *topic, uint64_t gen, int status),
			    void *arg)
{
	uint64_t v;
	(void)!read(q->fd, &v, sizeof(v));
	pthread_mutex_lock(&q->lock);
	struct item *it = q->done.head;
	q->done.head = q->done.tail = NULL;
	pthread_mutex_unlock(&q->lock);
	while (it) {
		struct item *next = it->next;
		fn(arg, it->topic, it->gen, it->status);
		free(it);
		it = next;
	}
}

void hsb_emitq_stop(struct hsb_emitq *q)
{
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
	struct item *it = q->done.head;
	while (it) {
		struct item *next = it->next;
		free(it);
		it = next;
	}
	close(q->fd);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
	free(q);
}
