/* hs-bench-handoff: the round trip of one tensor through hsbroker, C to
 * C, in two processes (forked before either connects):
 *
 *   producer: alloc -> write every byte -> emit            -> wait for ack
 *   consumer:            receive -> read a sample -> release -> ack
 *
 * Host (default): the write is a memset, the read PAYLOAD_READ_LINES
 * cache lines. --device cuda: cudaMemsetAsync on the producer's stream,
 * emit with that stream (the ready fence), hs_tensor_wait on the
 * consumer's stream, a 64-byte read back to pinned memory on that stream,
 * synchronise, hs_tensor_release with the stream.
 *
 * The ack is a SOCK_SEQPACKET datagram on a side socketpair (the same as
 * the floor's echo) and carries the consumer's read time, so the broker's
 * own share, rt - write - read, is printed beside the round trip ("bk").
 *
 *   hs-bench-handoff --size BYTES [--device cpu|cuda] [--gpus P,Q]
 *                    [--iters N] [--warmup N] [--socket PATH]
 * --gpus P,Q: the producer writes on GPU P, the consumer waits and reads
 * on a stream of GPU Q (peer access where the pair has it, else the
 * driver stages the copy through the host).
 * Prints one JSON line (sample.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hsbroker/hsbroker.h>

#include "gpu.h"
#include "options.h"
#include "payload.h"
#include "peer.h"
#include "sample.h"

typedef struct handoff_run {
	bench_options o;
	char topic[64];
} handoff_run;

typedef struct handoff_ack {
	uint64_t read_ns;
	uint64_t seq;
	int32_t ok;
	int32_t pad; /* no uninitialised bytes on the wire */
} handoff_ack;

static int fail(const char *what, int err)
{
	fprintf(stderr, "hs-bench-handoff[%d]: %s: %s\n", (int)getpid(), what, hs_strerror(err));
	return 1;
}

static const DLDataType u8 = { kDLUInt, 8, 1 };

#ifdef HS_HAVE_CUDA
typedef struct gpu_side {
	cudaStream_t stream;
	uint8_t *host; /* 128 pinned bytes: the first and last 64 of a tensor */
} gpu_side;

static int gpu_side_init(gpu_side *g, int device)
{
	GPU_TRY(cudaSetDevice(device), HS_ECUDA);
	GPU_TRY(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), HS_ECUDA);
	GPU_TRY(cudaMallocHost((void **)&g->host, 128), HS_ECUDA);
	return 0;
}

/* The consumer's read: the first and the last 64 bytes, on its stream. */
static int gpu_read(gpu_side *g, const uint8_t *dev, uint64_t n, uint64_t iter, int *ok)
{
	size_t k = n < 64 ? (size_t)n : 64;
	GPU_TRY(cudaMemcpyAsync(g->host, dev, k, cudaMemcpyDeviceToHost, g->stream), HS_ECUDA);
	GPU_TRY(cudaMemcpyAsync(g->host + 64, dev + n - k, k, cudaMemcpyDeviceToHost, g->stream),
		HS_ECUDA);
	GPU_TRY(cudaStreamSynchronize(g->stream), HS_ECUDA);
	*ok = g->host[0] == payload_byte(iter) && g->host[64 + k - 1] == payload_byte(iter);
	return 0;
}
#endif

static int consumer_main(int fd, void *arg)
{
	handoff_run *r = arg;
	hs_client *c;
	hs_subscription *sub;
	int err = hs_client_connect(r->o.socket, "bench-consumer", &c);
	if (err)
		return fail("connect", err);
	hs_subscribe_opts so = { .depth = 8, .policy = HS_POLICY_BLOCK };
	if ((err = hs_subscribe(c, r->topic, &so, &sub)))
		return fail("subscribe", err);
	void *stream = NULL;
#ifdef HS_HAVE_CUDA
	gpu_side g = { 0 };
	if (r->o.cuda) {
		if ((err = gpu_side_init(&g, r->o.consumer_gpu)))
			return fail("CUDA setup", err);
		stream = g.stream;
	}
#endif
	char ready = 1;
	if (peer_send(fd, &ready, 1))
		return 1;
	long total = (r->o.warmup + r->o.iters) * (r->o.control ? 2 : 1);
	for (long i = 0; i < total; i++) {
		hs_tensor *t;
		if ((err = hs_subscription_receive(sub, 30000, &t)))
			return fail("receive", err);
		handoff_ack ack = { .seq = hs_tensor_seq(t) };
		uint64_t t0 = bench_now_ns();
		/* The producer's iteration i is the topic's seq i + 1. */
		uint64_t iter = ack.seq - 1, sum = 0;
		/* The block may be rounded up; --control tensors are smaller. */
		uint64_t n = hs_tensor_nbytes(t) < r->o.size ? hs_tensor_nbytes(t) : r->o.size;
		if (!r->o.cuda) {
			ack.ok = payload_read(hs_tensor_data(t), n, iter, &sum) == 0;
		} else {
#if defined(HS_HAVE_CUDA) && defined(HSB_HAVE_TENSOR_WAIT)
			if ((err = hs_tensor_wait(t, stream)))
				return fail("hs_tensor_wait", err);
			if ((err = gpu_read(&g, hs_tensor_data(t), n, iter, &ack.ok)))
				return fail("read", err);
#else
			return fail("CUDA tensors", HS_ENOCUDA);
#endif
		}
		ack.read_ns = bench_now_ns() - t0;
		if (!r->o.late_release)
			hs_tensor_release(t, stream);
		if (peer_send(fd, &ack, sizeof(ack)))
			return 1;
		if (r->o.late_release)
			hs_tensor_release(t, stream);
	}
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return 0;
}

typedef struct producer_ctx {
	handoff_run *r;
	hs_client *c;
	DLDevice dev;
	void *stream;
	int fd;
	uint8_t *scratch;
#ifdef HS_HAVE_CUDA
	gpu_side *g;
#endif
	hs_tensor *next;  /* --alloc-ahead: the next tensor, allocated */
	uint64_t emits;   /* tensors emitted so far: the next one's seq - 1 */
	long bad;
} producer_ctx;

typedef struct one_result {
	uint64_t rt, alloc, write, emit, read;
} one_result;

/* One hand-off of a size-byte tensor, the producer's side: alloc, write
 * (then --scratch, then spin_ns of idling, all counted as the write),
 * emit, wait for the ack. ahead: another hand-off of this size follows. */
static int one_handoff(producer_ctx *x, uint64_t size, uint64_t spin_ns, bool ahead,
		       one_result *m)
{
	handoff_run *r = x->r;
	const int64_t shape[1] = { (int64_t)size };
	uint64_t iter = x->emits;
	hs_tensor *t;
	int err;
	uint64_t t0 = bench_now_ns();
	if (x->next && hs_tensor_nbytes(x->next) >= size) {
		t = x->next;
		x->next = NULL;
	} else if ((err = hs_tensor_alloc(x->c, x->dev, u8, 1, shape, NULL, &t))) {
		return fail("alloc", err);
	}
	uint64_t t1 = bench_now_ns();
	if (!r->o.cuda) {
		payload_write(hs_tensor_data(t), size, iter);
	} else {
#ifdef HS_HAVE_CUDA
		GPU_TRY(cudaMemsetAsync(hs_tensor_data(t), payload_byte(iter), size,
					x->g->stream), 1);
#endif
	}
	if (x->scratch)
		payload_write(x->scratch, r->o.scratch, iter);
	while (bench_now_ns() - t1 < spin_ns)
		;
	uint64_t t2 = bench_now_ns();
	uint64_t seq;
	if ((err = hs_tensor_emit(t, r->topic, x->stream, &seq)))
		return fail("emit", err);
	uint64_t t3 = bench_now_ns();
	if (seq != ++x->emits)
		return fail("emit: sequence numbers out of order", HS_EPROTO);
	if (r->o.alloc_ahead && ahead &&
	    (err = hs_tensor_alloc(x->c, x->dev, u8, 1, shape, NULL, &x->next)))
		return fail("alloc", err);
	handoff_ack ack;
	if ((err = peer_recv(x->fd, &ack, sizeof(ack)))) {
		fprintf(stderr, "hs-bench-handoff: no ack: %s\n", strerror(-err));
		return 1;
	}
	uint64_t t4 = bench_now_ns();
	x->bad += !ack.ok;
	*m = (one_result){ .rt = t4 - t0, .alloc = t1 - t0, .write = t2 - t1,
			   .emit = t3 - t2, .read = ack.read_ns };
	return 0;
}

static int producer(handoff_run *r)
{
	peer p;
	int err = peer_start(&p, SOCK_SEQPACKET, consumer_main, r);
	if (err) {
		fprintf(stderr, "hs-bench-handoff: fork: %s\n", strerror(-err));
		return 1;
	}
	hs_client *c;
	if ((err = hs_client_connect(r->o.socket, "bench-producer", &c)))
		return fail("connect", err);
	void *stream = NULL;
	DLDevice dev = { kDLCPU, 0 };
#ifdef HS_HAVE_CUDA
	gpu_side g = { 0 };
	if (r->o.cuda) {
		if ((err = gpu_side_init(&g, r->o.producer_gpu)))
			return fail("CUDA setup", err);
		stream = g.stream;
		dev = (DLDevice){ kDLCUDA, r->o.producer_gpu };
	}
#endif
	char ready;
	if (peer_recv(p.fd, &ready, 1)) {
		fprintf(stderr, "hs-bench-handoff: consumer did not start\n");
		return 1;
	}
	enum { RT, ALLOC, WRITE, EMIT, READ, BK, CTL, LOCAL, N_SETS };
	static const char *names[N_SETS] = { "rt", "alloc", "write", "emit", "read", "bk",
					     "ctl", "local" };
	sample_set s[N_SETS];
	for (int k = 0; k < N_SETS; k++)
		if (sample_init(&s[k], names[k], (size_t)r->o.iters))
			return 1;
	const int64_t shape[1] = { (int64_t)r->o.size };
	(void)shape;
	uint8_t *scratch = NULL;
	if (r->o.scratch && !(scratch = malloc(r->o.scratch)))
		return fail("scratch buffer", HS_ENOMEM);
#ifdef HS_HAVE_CUDA
	/* On the GPU the write is queued, not done, when emit is called: what
	 * it and the read cost is measured apart, in this one process ("local":
	 * memset, read back, synchronise), so the driver can subtract it. */
	if (r->o.cuda) {
		hs_tensor *t;
		if ((err = hs_tensor_alloc(c, dev, u8, 1, shape, NULL, &t)))
			return fail("alloc", err);
		for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
			int ok;
			uint64_t t0 = bench_now_ns();
			GPU_TRY(cudaMemsetAsync(hs_tensor_data(t), payload_byte((uint64_t)i),
						r->o.size, g.stream), 1);
			if ((err = gpu_read(&g, hs_tensor_data(t), r->o.size, (uint64_t)i, &ok)))
				return fail("read", err);
			if (i >= r->o.warmup)
				sample_add(&s[LOCAL], bench_now_ns() - t0);
		}
		hs_tensor_release(t, stream);
	}
#endif
	producer_ctx x = { .r = r, .c = c, .dev = dev, .stream = stream, .fd = p.fd,
			   .scratch = scratch };
#ifdef HS_HAVE_CUDA
	x.g = r->o.cuda ? &g : NULL;
#endif
	long total = r->o.warmup + r->o.iters;
	for (long i = 0; i < total; i++) {
		one_result m;
		if (one_handoff(&x, r->o.size, (uint64_t)r->o.spin_us * 1000, i + 1 < total, &m))
			return 1;
		/* --control: the same hand-off of a 4 KiB tensor right after,
		 * the producer idle as long as this write took. */
		one_result k;
		if (r->o.control && one_handoff(&x, 4096, m.write, false, &k))
			return 1;
		if (i < r->o.warmup)
			continue;
		sample_add(&s[RT], m.rt);
		sample_add(&s[ALLOC], m.alloc);
		sample_add(&s[WRITE], m.write);
		sample_add(&s[EMIT], m.emit);
		sample_add(&s[READ], m.read);
		sample_add(&s[BK], m.rt > m.write + m.read ? m.rt - m.write - m.read : 0);
		if (r->o.control)
			sample_add(&s[CTL], k.rt > k.write + k.read ? k.rt - k.write - k.read : 0);
	}
	long bad = x.bad;
	if (x.next)
		hs_tensor_release(x.next, stream);
	hs_client_disconnect(c);
	free(scratch);
	int rc = peer_wait(&p);
	if (rc != 0) {
		fprintf(stderr, "hs-bench-handoff: consumer failed (%d)\n", rc);
		return 1;
	}
	char extra[64];
	snprintf(extra, sizeof(extra), ", \"bad\": %ld", bad);
	/* Print the sets this run filled: ctl with --control, local on the GPU. */
	sample_set out[N_SETS];
	size_t n_out = 0;
	for (int k = 0; k < N_SETS; k++)
		if ((k != CTL || r->o.control) && (k != LOCAL || r->o.cuda))
			out[n_out++] = s[k];
	sample_print_json(stdout, r->o.cuda ? "hsbroker-c-cuda" : "hsbroker-c", r->o.size,
			  out, n_out, extra);
	for (int k = 0; k < N_SETS; k++)
		sample_free(&s[k]);
	if (bad)
		fprintf(stderr, "hs-bench-handoff: %ld tensors read wrong\n", bad);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	handoff_run r = { .o = { .size = 4096, .iters = 5000, .warmup = 500 } };
	if (options_parse(&r.o, argc, argv))
		return 2;
	snprintf(r.topic, sizeof(r.topic), "bench/handoff/%d", (int)getpid());
	if (r.o.cuda) {
		char why[256];
		if (gpu_probe(why, sizeof(why)))
			return sample_print_skip("hsbroker-c-cuda", r.o.size, why);
#ifndef HSB_HAVE_TENSOR_WAIT
		return sample_print_skip("hsbroker-c-cuda", r.o.size,
					 "this libhsclient has no hs_tensor_wait (GPU tensors not landed)");
#endif
	}
	return producer(&r);
}
