/* Threads sharing clients: N producer and N consumer threads in one
 * process, on one client or spread over several, beside an event-loop
 * thread that polls hs_client_get_fd and calls hs_client_dispatch, and a
 * thread that pings and lists. The client promises that every call may
 * come from any thread (include/hsbroker/client.h); this is that promise
 * under load.
 *
 *   hs-stress-threads [-n THREADS] [-c COUNT] [-k CLIENTS] [-d cpu|cuda]
 *                     [-s SOCKET] [-t DEADLINE_S]
 *
 * Without -s it starts its own hsbrokerd (tests/integration's harness).
 *
 * Producer i emits COUNT tensors on its own topic: even producers post
 * every emit, odd ones wait for every third (seq_out checked: the k-th
 * emit is seq k); it
 * alternates two shapes so that spares of both are asked for and taken.
 * Consumer i subscribes to topic i with policy i % 3 (block, drop-oldest,
 * drop-newest). Every element of every received tensor is checked against
 * the pattern of its seq; a block consumer must see 1..COUNT with no gap,
 * a drop consumer strictly increasing seqs, never more than COUNT received
 * and dropped, and under drop-oldest the last seq at the end. The
 * event-loop thread has its own drop-oldest subscription of topic 0 and
 * drains it only when the fd said so (receive with timeout 0 after each
 * dispatch), so a delivery that another thread read must still wake the
 * fd. Clients: producer t uses client t % CLIENTS, consumers the other way
 * round.
 *
 * A run that does not finish within its deadline is a hang: the program
 * prints which threads had not finished and fails. No timing is asserted;
 * the tensors a second are printed. With -d cuda (built with CUDA), the
 * tensors live on GPU 0: producers write them with cudaMemcpyAsync on
 * their own stream and emit with it, consumers wait on the ready fence,
 * copy back and release with their stream, so the release notes leave
 * from CUDA's host-function thread. */

#include <errno.h>
#include <execinfo.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hsbroker/hsbroker.h>

#ifdef HS_THREADS_CUDA
#include <cuda_runtime_api.h>
#endif

#include "harness.h"
#include "roles.h"

#define MAX_THREADS 64
#define MAX_CLIENTS 8
#define ELEMS_A 256
#define ELEMS_B 96
#define DEPTH 8

struct run {
	const char *sock;
	int threads;
	uint64_t count;
	int nclients;
	int deadline_s;
	bool cuda;
	hs_client *clients[MAX_CLIENTS];
	atomic_int producers_left;
	atomic_int failures;
	atomic_uint_fast64_t received, dropped;
	pthread_barrier_t subscribed;
};

struct worker {
	struct run *run;
	int index;
	atomic_bool finished;
	char what[48];
};

static uint32_t elems_of(uint64_t k)
{
	return k % 2 ? ELEMS_A : ELEMS_B;
}

/* Topics are new in every run (seqs start at 1), also on a daemon that
 * -s points at. */
static void topic_of(int i, char *buf, size_t size)
{
	snprintf(buf, size, "threads/%d/%d", (int)getpid(), i);
}

/* Reports a failure (any thread); the run goes on so that every thread
 * ends and the process can say what broke. */
__attribute__((format(printf, 2, 3))) static void fail(struct run *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("threads: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	atomic_fetch_add(&r->failures, 1);
}

static void pattern_fill(uint32_t *buf, uint64_t k, uint32_t n, int topic)
{
	for (uint32_t i = 0; i < n; i++)
		buf[i] = ht_pattern(k, i) ^ (uint32_t)topic;
}

/* Writes the k-th tensor's content; stream for device tensors. */
static int tensor_write(struct run *r, hs_tensor *t, uint64_t k, int topic, void *stream,
			uint32_t *scratch)
{
	uint32_t n = elems_of(k);
	if (!r->cuda) {
		pattern_fill(hs_tensor_data(t), k, n, topic);
		return 0;
	}
#ifdef HS_THREADS_CUDA
	pattern_fill(scratch, k, n, topic);
	/* Pageable source: cudaMemcpyAsync stages it before returning. */
	return cudaMemcpyAsync(hs_tensor_data(t), scratch, n * sizeof(uint32_t),
			       cudaMemcpyHostToDevice, (cudaStream_t)stream) == cudaSuccess
		       ? 0
		       : -1;
#else
	(void)stream;
	(void)scratch;
	return -1;
#endif
}

/* Elements of t that are not the k-th pattern (a wrong shape: all). */
static uint32_t tensor_check(struct run *r, hs_tensor *t, uint64_t k, int topic, void *stream,
			     uint32_t *scratch)
{
	uint32_t n = elems_of(k);
	const DLTensor *dl = hs_tensor_dltensor(t);
	if (dl->ndim != 1 || dl->shape[0] != n || dl->dtype.code != kDLUInt || dl->dtype.bits != 32)
		return n;
	const uint32_t *data = hs_tensor_data(t);
#ifdef HS_THREADS_CUDA
	if (r->cuda) {
		if (hs_tensor_wait(t, stream) != 0 ||
		    cudaMemcpyAsync(scratch, data, n * sizeof(uint32_t), cudaMemcpyDeviceToHost,
				    (cudaStream_t)stream) != cudaSuccess ||
		    cudaStreamSynchronize((cudaStream_t)stream) != cudaSuccess)
			return n;
		data = scratch;
	}
#else
	(void)r;
	(void)stream;
	(void)scratch;
#endif
	uint32_t bad = 0;
	for (uint32_t i = 0; i < n; i++)
		bad += data[i] != (ht_pattern(k, i) ^ (uint32_t)topic);
	return bad;
}

static void *stream_new(struct run *r)
{
#ifdef HS_THREADS_CUDA
	cudaStream_t s = NULL;
	if (r->cuda && cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess)
		fail(r, "cudaStreamCreate failed");
	return s;
#else
	(void)r;
	return NULL;
#endif
}

static void stream_free(struct run *r, void *s)
{
#ifdef HS_THREADS_CUDA
	if (r->cuda && s) {
		cudaStreamSynchronize((cudaStream_t)s);
		cudaStreamDestroy((cudaStream_t)s);
	}
#else
	(void)r;
	(void)s;
#endif
}

static void *producer(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	hs_client *c = r->clients[w->index % r->nclients];
	char topic[32];
	topic_of(w->index, topic, sizeof(topic));
	void *stream = stream_new(r);
	uint32_t scratch[ELEMS_A];
	DLDevice dev = { r->cuda ? kDLCUDA : kDLCPU, 0 };
	DLDataType u32 = { kDLUInt, 32, 1 };
	pthread_barrier_wait(&r->subscribed);
	for (uint64_t k = 1; k <= r->count; k++) {
		snprintf(w->what, sizeof(w->what), "producer %d at %" PRIu64, w->index, k);
		int64_t shape[1] = { elems_of(k) };
		hs_tensor *t;
		int err = hs_tensor_alloc(c, dev, u32, 1, shape, NULL, &t);
		if (err) {
			fail(r, "producer %d: alloc %" PRIu64 ": %s", w->index, k, hs_strerror(err));
			break;
		}
		if (tensor_write(r, t, k, w->index, stream, scratch) != 0) {
			fail(r, "producer %d: write %" PRIu64 " failed", w->index, k);
			hs_tensor_release(t, stream);
			break;
		}
		uint64_t seq = 0;
		bool waited = w->index % 2 == 1 && k % 3 == 0;
		err = hs_tensor_emit(t, topic, stream, waited ? &seq : NULL);
		if (err) {
			fail(r, "producer %d: emit %" PRIu64 ": %s", w->index, k, hs_strerror(err));
			break;
		}
		if (waited && seq != k) {
			fail(r, "producer %d: emit %" PRIu64 " got seq %" PRIu64, w->index, k, seq);
			break;
		}
	}
	/* Posted emits are answered by now or soon; a refusal would show. */
	hs_client_stats st;
	if (hs_client_get_stats(c, &st) == 0 && st.emits_refused)
		fail(r, "producer %d: %" PRIu64 " emits refused (last: %s)", w->index,
		     st.emits_refused, hs_strerror(st.emit_last_error));
	stream_free(r, stream);
	atomic_fetch_sub(&r->producers_left, 1);
	atomic_store(&w->finished, true);
	return NULL;
}

/* Checks one received tensor against what its subscription promised;
 * *last is the previous seq. */
static void take(struct run *r, const char *who, int topic, hs_tensor *t, uint64_t *last,
		 bool gapless, void *stream, uint32_t *scratch)
{
	uint64_t seq = hs_tensor_seq(t);
	if (seq <= *last || seq > r->count || (gapless && seq != *last + 1))
		fail(r, "%s: seq %" PRIu64 " after %" PRIu64, who, seq, *last);
	uint32_t bad = tensor_check(r, t, seq, topic, stream, scratch);
	if (bad)
		fail(r, "%s: seq %" PRIu64 ": %u elements wrong", who, seq, bad);
	*last = seq;
	atomic_fetch_add(&r->received, 1);
	hs_tensor_release(t, stream);
}

/* Receives until the last seq came or, under drop-newest (which may drop
 * the last one), until the producers are done and the queue stays empty. */
static void drain(struct run *r, struct worker *w, hs_subscription *sub, int topic,
		  enum hs_policy policy)
{
	bool gapless = policy == HS_POLICY_BLOCK;
	void *stream = stream_new(r);
	uint32_t scratch[ELEMS_A];
	uint64_t last = 0, got = 0;
	while (last < r->count) {
		hs_tensor *t;
		int err = hs_subscription_receive(sub, 200, &t);
		if (err == HS_ETIMEDOUT) {
			/* Drop-newest may lose the last one; and after a failure
			 * (reported already) what is missing never comes. */
			if (atomic_load(&r->producers_left) == 0 &&
			    (policy == HS_POLICY_DROP_NEWEST || atomic_load(&r->failures)))
				break;
			continue;
		}
		if (err) {
			fail(r, "%s: receive: %s", w->what, hs_strerror(err));
			break;
		}
		take(r, w->what, topic, t, &last, gapless, stream, scratch);
		got++;
		snprintf(w->what, sizeof(w->what), "consumer %d at %" PRIu64, w->index, last);
	}
	/* Whatever drop policy: nothing lost without being counted. */
	uint64_t dropped = hs_subscription_dropped(sub);
	if ((gapless && (got != r->count || dropped)) || got + dropped > r->count)
		fail(r, "consumer %d: %" PRIu64 " received, %" PRIu64 " dropped of %" PRIu64,
		     w->index, got, dropped, r->count);
	atomic_fetch_add(&r->dropped, dropped);
	stream_free(r, stream);
}

static const enum hs_policy policies[3] = { HS_POLICY_BLOCK, HS_POLICY_DROP_OLDEST,
					    HS_POLICY_DROP_NEWEST };

static void *consumer(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	/* Consumers take the clients the other way round, so that with
	 * several clients each holds producers and consumers. */
	hs_client *c = r->clients[(r->nclients - 1 - w->index % r->nclients)];
	char topic[32];
	topic_of(w->index, topic, sizeof(topic));
	enum hs_policy policy = policies[w->index % 3];
	hs_subscription *sub = NULL;
	int err = hs_subscribe(c, topic, &(hs_subscribe_opts){ .depth = DEPTH, .policy = policy },
			       &sub);
	if (err)
		fail(r, "consumer %d: subscribe: %s", w->index, hs_strerror(err));
	snprintf(w->what, sizeof(w->what), "consumer %d at 0", w->index);
	pthread_barrier_wait(&r->subscribed);
	if (sub) {
		drain(r, w, sub, w->index, policy);
		hs_subscription_close(sub);
	}
	atomic_store(&w->finished, true);
	return NULL;
}

/* An application's event loop: poll the client's fd, dispatch, then
 * drain its subscription without blocking. */
static void *event_loop(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	hs_client *c = r->clients[0];
	char topic[32];
	topic_of(0, topic, sizeof(topic));
	hs_subscription *sub = NULL;
	int err = hs_subscribe(c, topic,
			       &(hs_subscribe_opts){ .depth = DEPTH, .policy = HS_POLICY_DROP_OLDEST },
			       &sub);
	if (err)
		fail(r, "event loop: subscribe: %s", hs_strerror(err));
	snprintf(w->what, sizeof(w->what), "event loop");
	pthread_barrier_wait(&r->subscribed);
	/* Asked for while the other threads already run, as an application
	 * that starts its loop late does (the reader may be asleep then). */
	int fd = hs_client_get_fd(c);
	if (fd < 0)
		fail(r, "event loop: hs_client_get_fd: %s", hs_strerror(fd));
	void *stream = stream_new(r);
	uint32_t scratch[ELEMS_A];
	uint64_t last = 0;
	while (sub && fd >= 0 && last < r->count) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, 200);
		if (n < 0 && errno != EINTR) {
			fail(r, "event loop: poll: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			if (atomic_load(&r->producers_left) == 0 && atomic_load(&r->failures))
				break; /* reported: what is missing never comes */
			continue;
		}
		int d = hs_client_dispatch(c);
		if (d < 0) {
			fail(r, "event loop: dispatch: %s", hs_strerror(d));
			break;
		}
		hs_tensor *t;
		while (hs_subscription_receive(sub, 0, &t) == 0)
			take(r, "event loop", 0, t, &last, false, stream, scratch);
		snprintf(w->what, sizeof(w->what), "event loop at %" PRIu64, last);
	}
	if (sub) {
		atomic_fetch_add(&r->dropped, hs_subscription_dropped(sub));
		hs_subscription_close(sub);
	}
	stream_free(r, stream);
	atomic_store(&w->finished, true);
	return NULL;
}

/* Pings and lists on every client while the others work. */
static void *pinger(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	snprintf(w->what, sizeof(w->what), "pinger");
	pthread_barrier_wait(&r->subscribed);
	for (int i = 0; atomic_load(&r->producers_left) > 0; i++) {
		hs_client *c = r->clients[i % r->nclients];
		int err = hs_client_ping(c);
		if (err) {
			fail(r, "pinger: %s", hs_strerror(err));
			break;
		}
		if (i % 16 == 0) {
			hs_info *info;
			err = hs_client_get_info(c, HS_INFO_ALL, &info);
			if (err) {
				fail(r, "pinger: get_info: %s", hs_strerror(err));
				break;
			}
			hs_info_free(info);
		}
		usleep(2000);
	}
	atomic_store(&w->finished, true);
	return NULL;
}

/* On a hang, each stuck thread prints its own stack (addresses resolve
 * with addr2line against the same binaries). */
static void dump_stack(int sig)
{
	(void)sig;
	void *frames[48];
	int n = backtrace(frames, 48);
	backtrace_symbols_fd(frames, n, 2);
}

static int usage(void)
{
	fprintf(stderr, "usage: hs-stress-threads [-n THREADS] [-c COUNT] [-k CLIENTS] "
			"[-d cpu|cuda] [-s SOCKET] [-t DEADLINE_S]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct run r = { .threads = 2, .count = 2000, .nclients = 1, .deadline_s = 240 };
	const char *sock = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "n:c:k:d:s:t:")) != -1) {
		switch (opt) {
		case 'n':
			r.threads = atoi(optarg);
			break;
		case 'c':
			r.count = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			r.nclients = atoi(optarg);
			break;
		case 'd':
			r.cuda = strcmp(optarg, "cuda") == 0;
			if (!r.cuda && strcmp(optarg, "cpu") != 0)
				return usage();
			break;
		case 's':
			sock = optarg;
			break;
		case 't':
			r.deadline_s = atoi(optarg);
			break;
		default:
			return usage();
		}
	}
	if (r.threads < 1 || r.threads > MAX_THREADS || r.count < 1 || r.nclients < 1 ||
	    r.nclients > MAX_CLIENTS || r.deadline_s < 1)
		return usage();
#ifndef HS_THREADS_CUDA
	if (r.cuda) {
		fprintf(stderr, "threads: built without CUDA\n");
		return 2;
	}
#else
	int ngpu = 0;
	if (r.cuda && (cudaGetDeviceCount(&ngpu) != cudaSuccess || ngpu == 0)) {
		printf("SKIP: no GPU\n");
		return 77;
	}
#endif

	ht_init();
	struct ht_daemon d = { 0 };
	if (!sock) {
		if (ht_daemon_start(&d, NULL) < 0)
			return 1;
		sock = d.sock;
	}
	r.sock = sock;
	for (int i = 0; i < r.nclients; i++) {
		char name[32];
		snprintf(name, sizeof(name), "threads-%d", i);
		if (ht_connect(sock, name, &r.clients[i]) != 0)
			return 1;
	}

	int n = 2 * r.threads + 2;
	struct worker *w = calloc((size_t)n, sizeof(*w));
	pthread_t *tid = calloc((size_t)n, sizeof(*tid));
	if (!w || !tid)
		return 1;
	atomic_init(&r.producers_left, r.threads);
	pthread_barrier_init(&r.subscribed, NULL, (unsigned)n);
	int64_t t0 = ht_now_ms();
	for (int i = 0; i < n; i++) {
		w[i].run = &r;
		w[i].index = i < r.threads ? i : i - r.threads;
		void *(*fn)(void *) = i < r.threads		? producer
				      : i < 2 * r.threads	? consumer
				      : i == 2 * r.threads	? event_loop
								: pinger;
		snprintf(w[i].what, sizeof(w[i].what), "thread %d not started", i);
		if (pthread_create(&tid[i], NULL, fn, &w[i]) != 0) {
			fprintf(stderr, "threads: pthread_create failed\n");
			return 1;
		}
	}

	/* A hang is the failure this test exists for: name who is stuck. */
	int64_t deadline = t0 + (int64_t)r.deadline_s * 1000;
	for (;;) {
		int left = 0;
		for (int i = 0; i < n; i++)
			left += !atomic_load(&w[i].finished);
		if (left == 0)
			break;
		if (ht_now_ms() > deadline) {
			fprintf(stderr, "threads: HANG: %d of %d threads still running after %d s:\n",
				left, n, r.deadline_s);
			for (int i = 0; i < n; i++) {
				if (!atomic_load(&w[i].finished))
					fprintf(stderr, "  %s\n", w[i].what);
			}
			signal(SIGUSR2, dump_stack);
			for (int i = 0; i < n; i++) {
				if (atomic_load(&w[i].finished))
					continue;
				fprintf(stderr, "stack of %s:\n", w[i].what);
				pthread_kill(tid[i], SIGUSR2);
				ht_sleep_ms(100);
			}
			_exit(1); /* the stuck threads cannot be joined */
		}
		ht_sleep_ms(20);
	}
	for (int i = 0; i < n; i++)
		pthread_join(tid[i], NULL);
	double s = (double)(ht_now_ms() - t0) / 1000.0;

	for (int i = 0; i < r.nclients; i++)
		hs_client_disconnect(r.clients[i]);
	int idle = d.pid ? ht_wait_idle(sock, HT_DEADLINE_MS) : 0;
	if (idle < 0)
		fail(&r, "the daemon still holds something after every client left");
	if (d.pid && ht_daemon_stop(&d) != 0)
		fail(&r, "hsbrokerd did not exit cleanly");

	uint64_t received = atomic_load(&r.received), dropped = atomic_load(&r.dropped);
	/* RESULT: tests/gpu/run.sh copies the line into its summary. */
	printf("RESULT case=threads ok=%d threads=%d clients=%d device=%s count=%" PRIu64
	       " received=%" PRIu64
	       " dropped=%" PRIu64 " seconds=%.2f tensors_per_s=%.0f failures=%d\n",
	       atomic_load(&r.failures) == 0, r.threads, r.nclients, r.cuda ? "cuda" : "cpu",
	       r.count, received, dropped, s,
	       (double)(r.threads * r.count) / s, atomic_load(&r.failures));
	pthread_barrier_destroy(&r.subscribed);
	free(w);
	free(tid);
	return atomic_load(&r.failures) ? 1 : 0;
}
