/* hs-bench-floor: the floor under every hand-off. Two processes and a
 * SOCK_SEQPACKET socketpair, no broker: a 64-byte note and its echo.
 *
 * --device cuda adds the GPU ordering a hand-off needs, with everything
 * set up once (IPC memory and event handles opened before timing): the
 * producer writes --size bytes (default 64) on its stream
 * (cudaMemsetAsync), records an interprocess event and sends the note;
 * the consumer makes its stream wait on the event, reads the first and
 * the last 64 bytes back (cudaMemcpyAsync to pinned memory), synchronises
 * and acks: hs-bench-handoff's work, without the broker. A large write
 * is still running when the consumer starts waiting, which a 64-byte one
 * never is: the wait on it is part of the floor at that size.
 *
 *   hs-bench-floor [--device cpu|cuda] [--size BYTES] [--iters N] [--warmup N]
 * Prints one JSON line (sample.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "gpu.h"
#include "options.h"
#include "payload.h"
#include "peer.h"
#include "sample.h"

#define NOTE_SIZE 64

typedef struct floor_run {
	bench_options o;
} floor_run;

static int echo_main(int fd, void *arg)
{
	floor_run *r = arg;
	char note[NOTE_SIZE];
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		if (peer_recv(fd, note, sizeof(note)) || peer_send(fd, note, sizeof(note)))
			return 1;
	}
	return 0;
}

static int floor_host(floor_run *r)
{
	peer p;
	int err = peer_start(&p, SOCK_SEQPACKET, echo_main, r);
	if (err) {
		fprintf(stderr, "hs-bench-floor: fork: %s\n", strerror(-err));
		return 1;
	}
	sample_set rt;
	if (sample_init(&rt, "rt", (size_t)r->o.iters))
		return 1;
	char note[NOTE_SIZE], back[NOTE_SIZE];
	memset(note, 0x5a, sizeof(note));
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		/* --spin-us: the echo side idles that long before each note, as
		 * a consumer does while the producer writes a large tensor. */
		for (uint64_t s0 = bench_now_ns(); bench_now_ns() - s0 < (uint64_t)r->o.spin_us * 1000;)
			;
		uint64_t t0 = bench_now_ns();
		if ((err = peer_send(p.fd, note, sizeof(note))) ||
		    (err = peer_recv(p.fd, back, sizeof(back)))) {
			fprintf(stderr, "hs-bench-floor: %s\n", strerror(-err));
			return 1;
		}
		uint64_t t1 = bench_now_ns();
		if (i >= r->o.warmup)
			sample_add(&rt, t1 - t0);
	}
	int rc = peer_wait(&p);
	if (rc != 0) {
		fprintf(stderr, "hs-bench-floor: echo process failed (%d)\n", rc);
		return 1;
	}
	sample_print_json(stdout, "floor", NOTE_SIZE, &rt, 1, NULL);
	sample_free(&rt);
	return 0;
}

#ifdef HS_HAVE_CUDA
typedef struct gpu_setup {
	cudaIpcMemHandle_t mem;
	cudaIpcEventHandle_t event;
} gpu_setup;

typedef struct gpu_note {
	uint64_t iter;
} gpu_note;

/* The consumer's read: the first and the last 64 bytes of n. */
static int gpu_read_ends(cudaStream_t stream, uint8_t *host, const uint8_t *dev, uint64_t n,
			 uint64_t iter, long *bad)
{
	size_t k = n < NOTE_SIZE ? (size_t)n : NOTE_SIZE;
	GPU_TRY(cudaMemcpyAsync(host, dev, k, cudaMemcpyDeviceToHost, stream), 1);
	GPU_TRY(cudaMemcpyAsync(host + NOTE_SIZE, dev + n - k, k, cudaMemcpyDeviceToHost, stream),
		1);
	GPU_TRY(cudaStreamSynchronize(stream), 1);
	*bad += host[0] != payload_byte(iter) || host[NOTE_SIZE + k - 1] != payload_byte(iter);
	return 0;
}

static int gpu_consumer(int fd, void *arg)
{
	floor_run *r = arg;
	gpu_setup s;
	if (peer_recv(fd, &s, sizeof(s)))
		return 1;
	GPU_TRY(cudaSetDevice(0), 1);
	void *dev;
	cudaEvent_t ev;
	cudaStream_t stream;
	uint8_t *host;
	GPU_TRY(cudaIpcOpenMemHandle(&dev, s.mem, cudaIpcMemLazyEnablePeerAccess), 1);
	GPU_TRY(cudaIpcOpenEventHandle(&ev, s.event), 1);
	GPU_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), 1);
	GPU_TRY(cudaMallocHost((void **)&host, 2 * NOTE_SIZE), 1);
	char ready = 1;
	if (peer_send(fd, &ready, 1))
		return 1;
	long bad = 0;
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		gpu_note n;
		if (peer_recv(fd, &n, sizeof(n)))
			return 1;
		GPU_TRY(cudaStreamWaitEvent(stream, ev, 0), 1);
		if (gpu_read_ends(stream, host, dev, r->o.size, n.iter, &bad))
			return 1;
		if (peer_send(fd, &n, sizeof(n)))
			return 1;
	}
	GPU_TRY(cudaEventDestroy(ev), 1);
	GPU_TRY(cudaIpcCloseMemHandle(dev), 1);
	GPU_TRY(cudaFreeHost(host), 1);
	if (bad)
		fprintf(stderr, "hs-bench-floor: consumer read %ld wrong notes\n", bad);
	return bad ? 2 : 0;
}

static int floor_cuda(floor_run *r)
{
	peer p;
	int err = peer_start(&p, SOCK_SEQPACKET, gpu_consumer, r);
	if (err) {
		fprintf(stderr, "hs-bench-floor: fork: %s\n", strerror(-err));
		return 1;
	}
	GPU_TRY(cudaSetDevice(0), 1);
	void *dev;
	cudaEvent_t ev;
	cudaStream_t stream;
	gpu_setup s;
	GPU_TRY(cudaMalloc(&dev, r->o.size), 1);
	GPU_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), 1);
	GPU_TRY(cudaEventCreateWithFlags(&ev, cudaEventInterprocess | cudaEventDisableTiming), 1);
	GPU_TRY(cudaIpcGetMemHandle(&s.mem, dev), 1);
	GPU_TRY(cudaIpcGetEventHandle(&s.event, ev), 1);
	char ready;
	if (peer_send(p.fd, &s, sizeof(s)) || peer_recv(p.fd, &ready, 1)) {
		fprintf(stderr, "hs-bench-floor: consumer did not start\n");
		return 1;
	}
	sample_set ss[2];
	if (sample_init(&ss[0], "rt", (size_t)r->o.iters) ||
	    sample_init(&ss[1], "local", (size_t)r->o.iters))
		return 1;
	/* What the write and the read cost without a second process ("local":
	 * memset, read back, synchronise), as hs-bench-handoff measures it. */
	uint8_t *host;
	GPU_TRY(cudaMallocHost((void **)&host, 2 * NOTE_SIZE), 1);
	long bad = 0;
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		uint64_t t0 = bench_now_ns();
		GPU_TRY(cudaMemsetAsync(dev, payload_byte((uint64_t)i), r->o.size, stream), 1);
		if (gpu_read_ends(stream, host, dev, r->o.size, (uint64_t)i, &bad))
			return 1;
		if (i >= r->o.warmup)
			sample_add(&ss[1], bench_now_ns() - t0);
	}
	GPU_TRY(cudaFreeHost(host), 1);
	if (bad) {
		fprintf(stderr, "hs-bench-floor: %ld local reads were wrong\n", bad);
		return 1;
	}
	sample_set *rt = &ss[0];
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		gpu_note n = { .iter = (uint64_t)i }, back;
		uint64_t t0 = bench_now_ns();
		GPU_TRY(cudaMemsetAsync(dev, payload_byte(n.iter), r->o.size, stream), 1);
		GPU_TRY(cudaEventRecord(ev, stream), 1);
		if (peer_send(p.fd, &n, sizeof(n)) || peer_recv(p.fd, &back, sizeof(back)))
			return 1;
		uint64_t t1 = bench_now_ns();
		if (i >= r->o.warmup)
			sample_add(rt, t1 - t0);
	}
	int rc = peer_wait(&p);
	GPU_TRY(cudaEventDestroy(ev), 1);
	GPU_TRY(cudaFree(dev), 1);
	if (rc != 0) {
		fprintf(stderr, "hs-bench-floor: consumer failed (%d)\n", rc);
		return 1;
	}
	sample_print_json(stdout, "floor-cuda", r->o.size, ss, 2, NULL);
	sample_free(&ss[0]);
	sample_free(&ss[1]);
	return 0;
}
#endif

int main(int argc, char **argv)
{
	floor_run r = { .o = { .iters = 10000, .warmup = 1000 } };
	if (options_parse(&r.o, argc, argv))
		return 2;
	if (!r.o.size)
		r.o.size = NOTE_SIZE; /* the GPU write; the host note is always 64 B */
	if (!r.o.cuda)
		return floor_host(&r);
	char why[256];
	if (gpu_probe(why, sizeof(why)))
		return sample_print_skip("floor-cuda", r.o.size, why);
#ifdef HS_HAVE_CUDA
	return floor_cuda(&r);
#else
	return 1;
#endif
}
