/* The receiving side's emits: each tensor received from a peer is emitted
 * on its topic in the local broker, and its credit goes back to the loop.
 *
 * Lanes. Each topic has a lane: its own connection to the broker (the
 * tensor is allocated and emitted on it) and its own thread. A posted
 * emit (no seq_out) waits once 8 of its client's emits are unanswered,
 * which is when a local HS_POLICY_BLOCK subscriber of that topic is full
 * (hs_tensor_emit, include/hsbroker/client.h); with one client per topic
 * that wait holds back only that topic, never the others nor the loop.
 * Past HSB_MAX_LANES topics, the rest share one lane (and hold each other
 * back).
 *
 * From the loop, while it cannot wait. The loop emits a tensor itself
 * (no hand-off to a thread: no wake-up on the way to the subscriber) when
 * the lane's thread has nothing queued and fewer than 8 of the lane's
 * emits may be unanswered, so the emit cannot wait. Otherwise the tensor
 * goes to the lane's thread, which emits what it was given in order, the
 * last of each batch with seq_out: that one returns once the daemon took
 * it, and since the daemon takes a topic's emits in order and answers in
 * order (docs/api.md, "Threads"), every earlier emit of the lane was
 * answered by then. The loop then counts from 0 again. So the loop emits
 * while the topic flows, and the thread takes over (waiting where it
 * must) once the topic's subscribers hold it back.
 *
 * A credit goes back once the emit returned (from the loop at once, from
 * a thread through the done list and an eventfd); that is what slows the
 * sender when a subscriber here is full. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hsb.h"

/* hs_tensor_emit without seq_out: "at most 8 such emits may be unanswered
 * before the next one waits". */
#define POSTED_EMITS 8

struct item {
	struct item *next;
	struct hsb_lane *lane;
	hs_tensor *t;
	uint64_t gen;
	int status;
	bool synced; /* emitted with seq_out and taken: the lane is answered */
	char topic[HS_MAX_TOPIC + 1];
};

struct list {
	struct item *head, *tail;
};

struct hsb_lane {
	struct hsb_lane *next;
	struct hsb_emitter *e;
	hs_client *client;
	bool shared;        /* the lane of the topics past HSB_MAX_LANES */
	char topic[HS_MAX_TOPIC + 1];
	pthread_t thread;
	pthread_mutex_t lock; /* todo, stop */
	pthread_cond_t cond;
	struct list todo;
	bool stop;
	/* the loop's own */
	uint32_t queued;    /* given to the thread, not yet done */
	uint32_t direct;    /* emitted by the loop since the lane was last answered */
};

struct hsb_emitter {
	const char *socket;
	struct hsb_lane *lanes, *shared;
	uint32_t nlanes;
	pthread_mutex_t lock; /* done */
	struct list done;
	atomic_bool any_done; /* the loop reads the eventfd only when set */
	int fd;
	uint64_t direct_emits, thread_emits;
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
	struct hsb_lane *l = arg;
	struct hsb_emitter *e = l->e;
	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (!l->todo.head && !l->stop)
			pthread_cond_wait(&l->cond, &l->lock);
		struct item *it = l->todo.head;
		if (!it)
			break;
		if (!(l->todo.head = it->next))
			l->todo.tail = NULL;
		bool last = !l->todo.head;
		pthread_mutex_unlock(&l->lock);
		uint64_t seq;
		it->status = hs_tensor_emit(it->t, it->topic, NULL, last ? &seq : NULL);
		it->synced = last && it->status == 0;
		it->t = NULL;
		pthread_mutex_lock(&e->lock);
		append(&e->done, it);
		atomic_store_explicit(&e->any_done, true, memory_order_release);
		pthread_mutex_unlock(&e->lock);
		uint64_t one = 1;
		(void)!write(e->fd, &one, sizeof(one));
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int hsb_emitter_start(const char *socket, struct hsb_emitter **out)
{
	struct hsb_emitter *e = calloc(1, sizeof(*e));
	if (!e)
		return HS_ENOMEM;
	e->socket = socket;
	if ((e->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		free(e);
		return HS_EIO;
	}
	pthread_mutex_init(&e->lock, NULL);
	*out = e;
	return 0;
}

int hsb_emitter_fd(struct hsb_emitter *e)
{
	return e->fd;
}

static struct hsb_lane *lane_new(struct hsb_emitter *e, const char *topic, bool shared)
{
	struct hsb_lane *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->e = e;
	l->shared = shared;
	snprintf(l->topic, sizeof(l->topic), "%s", topic);
	int err = hs_client_connect(e->socket, "hsbridge-connect", &l->client);
	if (err < 0) {
		hsb_log("topic %s: a connection to the broker for it: %s", topic, hs_strerror(err));
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	if (pthread_create(&l->thread, NULL, run, l) != 0) {
		hs_client_disconnect(l->client);
		free(l);
		return NULL;
	}
	l->next = e->lanes;
	e->lanes = l;
	if (shared) {
		e->shared = l;
		hsb_log("more than %d topics: topic %s and the later ones share a connection to "
			"the broker", HSB_MAX_LANES, topic);
	} else {
		e->nlanes++;
	}
	return l;
}

struct hsb_lane *hsb_emitter_lane(struct hsb_emitter *e, const char *topic)
{
	for (struct hsb_lane *l = e->lanes; l; l = l->next)
		if (!l->shared && strcmp(l->topic, topic) == 0)
			return l;
	if (e->nlanes < HSB_MAX_LANES)
		return lane_new(e, topic, false);
	return e->shared ? e->shared : lane_new(e, topic, true);
}

hs_client *hsb_lane_client(struct hsb_lane *l)
{
	return l->client;
}

int hsb_lane_emit(struct hsb_lane *l, hs_tensor *t, const char *topic, uint64_t gen)
{
	if (!l->shared && l->queued == 0 && l->direct < POSTED_EMITS) {
		l->direct++;
		l->e->direct_emits++;
		return hs_tensor_emit(t, topic, NULL, NULL);
	}
	struct item *it = calloc(1, sizeof(*it));
	if (!it) { /* the tensor goes; the caller returns its credit */
		hs_tensor_release(t, NULL);
		return HS_ENOMEM;
	}
	it->lane = l;
	it->t = t;
	it->gen = gen;
	snprintf(it->topic, sizeof(it->topic), "%s", topic);
	l->queued++;
	l->e->thread_emits++;
	pthread_mutex_lock(&l->lock);
	append(&l->todo, it);
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 1;
}

void hsb_emitter_take_credits(struct hsb_emitter *e,
			      void (*fn)(void *arg, const char *topic, uint64_t gen, int status),
			      void *arg)
{
	if (!atomic_exchange_explicit(&e->any_done, false, memory_order_acquire))
		return;
	uint64_t v;
	(void)!read(e->fd, &v, sizeof(v));
	pthread_mutex_lock(&e->lock);
	struct item *it = e->done.head;
	e->done.head = e->done.tail = NULL;
	pthread_mutex_unlock(&e->lock);
	while (it) {
		struct item *next = it->next;
		struct hsb_lane *l = it->lane;
		if (--l->queued == 0 && it->synced)
			l->direct = 0;
		fn(arg, it->topic, it->gen, it->status);
		free(it);
		it = next;
	}
}

void hsb_emitter_counts(const struct hsb_emitter *e, uint64_t *direct, uint64_t *threaded,
			uint32_t *lanes)
{
	*direct = e->direct_emits;
	*threaded = e->thread_emits;
	*lanes = e->nlanes + (e->shared != NULL);
}

void hsb_emitter_stop(struct hsb_emitter *e)
{
	/* each thread emits what it was given, then ends; a lane's disconnect
	 * waits for the answers to its emits */
	for (struct hsb_lane *l = e->lanes; l; l = l->next) {
		pthread_mutex_lock(&l->lock);
		l->stop = true;
		pthread_cond_signal(&l->cond);
		pthread_mutex_unlock(&l->lock);
	}
	while (e->lanes) {
		struct hsb_lane *l = e->lanes;
		e->lanes = l->next;
		pthread_join(l->thread, NULL);
		hs_client_disconnect(l->client);
		pthread_mutex_destroy(&l->lock);
		pthread_cond_destroy(&l->cond);
		free(l);
	}
	struct item *it = e->done.head;
	while (it) {
		struct item *next = it->next;
		free(it);
		it = next;
	}
	close(e->fd);
	pthread_mutex_destroy(&e->lock);
	free(e);
}
