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
 *   hs-bench-handoff --size BYTES [--device cpu|cuda] [--iters N]
 *                    [--warmup N] [--socket PATH]
 * Prints one JSON line (sample.h). */
#include <errno.h>
#include <inttypes.h>
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

static int gpu_side_init(gpu_side *g)
{
	GPU_TRY(cudaSetDevice(0), HS_ECUDA);
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
		if ((err = gpu_side_init(&g)))
			return fail("CUDA setup", err);
		stream = g.stream;
	}
#endif
	char ready = 1;
	if (peer_send(fd, &ready, 1))
		return 1;
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		hs_tensor *t;
		if ((err = hs_subscription_receive(sub, 30000, &t)))
			return fail("receive", err);
		handoff_ack ack = { .seq = hs_tensor_seq(t) };
		uint64_t t0 = bench_now_ns();
		/* The producer's iteration i is the topic's seq i + 1. */
		uint64_t iter = ack.seq - 1, sum = 0;
		if (!r->o.cuda) {
			ack.ok = payload_read(hs_tensor_data(t), hs_tensor_nbytes(t) < r->o.size
					      ? hs_tensor_nbytes(t) : r->o.size, iter, &sum) == 0;
		} else {
#if defined(HS_HAVE_CUDA) && defined(HSB_HAVE_TENSOR_WAIT)
			if ((err = hs_tensor_wait(t, stream)))
				return fail("hs_tensor_wait", err);
			if ((err = gpu_read(&g, hs_tensor_data(t), r->o.size, iter, &ack.ok)))
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
		if ((err = gpu_side_init(&g)))
			return fail("CUDA setup", err);
		stream = g.stream;
		dev = (DLDevice){ kDLCUDA, 0 };
	}
#endif
	char ready;
	if (peer_recv(p.fd, &ready, 1)) {
		fprintf(stderr, "hs-bench-handoff: consumer did not start\n");
		return 1;
	}
	enum { RT, ALLOC, WRITE, EMIT, READ, BK, LOCAL, N_SETS };
	static const char *names[N_SETS] = { "rt", "alloc", "write", "emit", "read", "bk",
					     "local" };
	sample_set s[N_SETS];
	for (int k = 0; k < N_SETS; k++)
		if (sample_init(&s[k], names[k], (size_t)r->o.iters))
			return 1;
	const int64_t shape[1] = { (int64_t)r->o.size };
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
	long bad = 0;
	uint64_t seq0 = 0;
	hs_tensor *next = NULL;
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		hs_tensor *t;
		uint64_t t0 = bench_now_ns();
		if (next) {
			t = next;
			next = NULL;
		} else if ((err = hs_tensor_alloc(c, dev, u8, 1, shape, NULL, &t))) {
			return fail("alloc", err);
		}
		uint64_t t1 = bench_now_ns();
		uint64_t seq;
		if (!r->o.cuda) {
			payload_write(hs_tensor_data(t), r->o.size, (uint64_t)i);
		} else {
#ifdef HS_HAVE_CUDA
			GPU_TRY(cudaMemsetAsync(hs_tensor_data(t), payload_byte((uint64_t)i),
						r->o.size, g.stream), 1);
#endif
		}
		if (scratch)
			payload_write(scratch, r->o.scratch, (uint64_t)i);
		if (r->o.spin_us)
			while (bench_now_ns() - t1 < (uint64_t)r->o.spin_us * 1000)
				;
		uint64_t t2 = bench_now_ns();
		if ((err = hs_tensor_emit(t, r->topic, stream, &seq)))
			return fail("emit", err);
		uint64_t t3 = bench_now_ns();
		if (i == 0)
			seq0 = seq;
		if (seq != seq0 + (uint64_t)i)
			return fail("emit: sequence numbers out of order", HS_EPROTO);
		if (r->o.alloc_ahead && i + 1 < r->o.warmup + r->o.iters &&
		    (err = hs_tensor_alloc(c, dev, u8, 1, shape, NULL, &next)))
			return fail("alloc", err);
		handoff_ack ack;
		if ((err = peer_recv(p.fd, &ack, sizeof(ack)))) {
			fprintf(stderr, "hs-bench-handoff: no ack: %s\n", strerror(-err));
			return 1;
		}
		uint64_t t4 = bench_now_ns();
		bad += !ack.ok;
		if (i < r->o.warmup)
			continue;
		uint64_t rt = t4 - t0, w = t2 - t1;
		sample_add(&s[RT], rt);
		sample_add(&s[ALLOC], t1 - t0);
		sample_add(&s[WRITE], w);
		sample_add(&s[EMIT], t3 - t2);
		sample_add(&s[READ], ack.read_ns);
		sample_add(&s[BK], rt > w + ack.read_ns ? rt - w - ack.read_ns : 0);
	}
	hs_client_disconnect(c);
	free(scratch);
	int rc = peer_wait(&p);
	if (rc != 0) {
		fprintf(stderr, "hs-bench-handoff: consumer failed (%d)\n", rc);
		return 1;
	}
	char extra[64];
	snprintf(extra, sizeof(extra), ", \"bad\": %ld", bad);
	sample_print_json(stdout, r->o.cuda ? "hsbroker-c-cuda" : "hsbroker-c", r->o.size,
			  s, r->o.cuda ? N_SETS : N_SETS - 1, extra);
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
