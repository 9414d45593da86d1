/* hs-bench-copy: what people do without a broker. The producer writes
 * the payload in its own memory and sends the bytes through a
 * SOCK_STREAM socketpair (one SOCK_SEQPACKET datagram cannot hold 256
 * MiB); the consumer reads them into its own memory, reads the same
 * sample as every other method and acks on the same socket.
 *
 * --device cuda: cudaMemsetAsync on the producer's device buffer, D2H to
 * pinned memory, socket, H2D into the consumer's device buffer, the
 * 64-byte read back on the consumer's stream, synchronise, ack.
 *
 *   hs-bench-copy --size BYTES [--device cpu|cuda] [--iters N] [--warmup N]
 * Prints one JSON line (sample.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gpu.h"
#include "options.h"
#include "payload.h"
#include "peer.h"
#include "sample.h"

typedef struct copy_run {
	bench_options o;
} copy_run;

typedef struct copy_ack {
	uint64_t read_ns;
	int32_t ok;
	int32_t pad;
} copy_ack;

static void *host_buffer(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0, n); /* faulted in before timing */
	return p;
}

static void big_buffers(int fd)
{
	/* As large as the kernel allows without privileges; fewer, larger
	 * writes. Failure only costs speed. */
	int sz = 4 << 20;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

#ifdef HS_HAVE_CUDA
static int gpu_consumer(int fd, copy_run *r)
{
	size_t n = r->o.size;
	uint8_t *pinned, *dev, *small;
	cudaStream_t stream;
	GPU_TRY(cudaSetDevice(0), 1);
	GPU_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), 1);
	GPU_TRY(cudaMallocHost((void **)&pinned, n), 1);
	GPU_TRY(cudaMallocHost((void **)&small, 128), 1);
	GPU_TRY(cudaMalloc((void **)&dev, n), 1);
	char ready = 1;
	if (peer_write_all(fd, &ready, 1))
		return 1;
	size_t k = n < 64 ? n : 64;
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		if (peer_read_all(fd, pinned, n))
			return 1;
		/* The H2D is part of this method's hand-off, not of the read:
		 * read_ns stays 0 on the GPU. */
		GPU_TRY(cudaMemcpyAsync(dev, pinned, n, cudaMemcpyHostToDevice, stream), 1);
		GPU_TRY(cudaMemcpyAsync(small, dev, k, cudaMemcpyDeviceToHost, stream), 1);
		GPU_TRY(cudaMemcpyAsync(small + 64, dev + n - k, k, cudaMemcpyDeviceToHost, stream), 1);
		GPU_TRY(cudaStreamSynchronize(stream), 1);
		copy_ack ack = { .read_ns = 0 };
		ack.ok = small[0] == payload_byte((uint64_t)i) &&
			 small[64 + k - 1] == payload_byte((uint64_t)i);
		if (peer_write_all(fd, &ack, sizeof(ack)))
			return 1;
	}
	return 0;
}
#endif

static int consumer_main(int fd, void *arg)
{
	copy_run *r = arg;
	big_buffers(fd);
#ifdef HS_HAVE_CUDA
	if (r->o.cuda)
		return gpu_consumer(fd, r);
#endif
	uint8_t *buf = host_buffer(r->o.size);
	if (!buf)
		return 1;
	char ready = 1;
	if (peer_write_all(fd, &ready, 1))
		return 1;
	for (long i = 0; i < r->o.warmup + r->o.iters; i++) {
		if (peer_read_all(fd, buf, r->o.size))
			return 1;
		uint64_t t0 = bench_now_ns(), sum;
		copy_ack ack = { 0 };
		ack.ok = payload_read(buf, r->o.size, (uint64_t)i, &sum) == 0;
		ack.read_ns = bench_now_ns() - t0;
		if (peer_write_all(fd, &ack, sizeof(ack)))
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	copy_run r = { .o = { .size = 4096, .iters = 2000, .warmup = 200 } };
	if (options_parse(&r.o, argc, argv))
		return 2;
	const char *name = r.o.cuda ? "copy-cuda" : "copy";
	if (r.o.cuda) {
		char why[256];
		if (gpu_probe(why, sizeof(why)))
			return sample_print_skip(name, r.o.size, why);
	}
	peer p;
	int err = peer_start(&p, SOCK_STREAM, consumer_main, &r);
	if (err) {
		fprintf(stderr, "hs-bench-copy: fork: %s\n", strerror(-err));
		return 1;
	}
	big_buffers(p.fd);
	size_t n = r.o.size;
	uint8_t *buf = NULL;
#ifdef HS_HAVE_CUDA
	uint8_t *dev = NULL;
	cudaStream_t stream = NULL;
	if (r.o.cuda) {
		GPU_TRY(cudaSetDevice(0), 1);
		GPU_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), 1);
		GPU_TRY(cudaMallocHost((void **)&buf, n), 1);
		GPU_TRY(cudaMalloc((void **)&dev, n), 1);
	}
#endif
	if (!r.o.cuda && !(buf = host_buffer(n))) {
		fprintf(stderr, "hs-bench-copy: no memory for %zu bytes\n", n);
		return 1;
	}
	char ready;
	if (peer_read_all(p.fd, &ready, 1)) {
		fprintf(stderr, "hs-bench-copy: consumer did not start\n");
		return 1;
	}
	enum { RT, WRITE, READ, BK, N_SETS };
	static const char *names[N_SETS] = { "rt", "write", "read", "bk" };
	sample_set s[N_SETS];
	for (int k = 0; k < N_SETS; k++)
		if (sample_init(&s[k], names[k], (size_t)r.o.iters))
			return 1;
	long bad = 0;
	for (long i = 0; i < r.o.warmup + r.o.iters; i++) {
		uint64_t t0 = bench_now_ns(), t1;
		if (!r.o.cuda) {
			payload_write(buf, n, (uint64_t)i);
			t1 = bench_now_ns();
		} else {
#ifdef HS_HAVE_CUDA
			GPU_TRY(cudaMemsetAsync(dev, payload_byte((uint64_t)i), n, stream), 1);
			t1 = bench_now_ns(); /* the write is queued; the D2H waits for it */
			GPU_TRY(cudaMemcpyAsync(buf, dev, n, cudaMemcpyDeviceToHost, stream), 1);
			GPU_TRY(cudaStreamSynchronize(stream), 1);
#else
			t1 = t0;
#endif
		}
		copy_ack ack;
		if ((err = peer_write_all(p.fd, buf, n)) ||
		    (err = peer_read_all(p.fd, &ack, sizeof(ack)))) {
			fprintf(stderr, "hs-bench-copy: %s\n", strerror(-err));
			return 1;
		}
		uint64_t t2 = bench_now_ns();
		bad += !ack.ok;
		if (i < r.o.warmup)
			continue;
		uint64_t rt = t2 - t0, w = t1 - t0;
		sample_add(&s[RT], rt);
		sample_add(&s[WRITE], w);
		sample_add(&s[READ], ack.read_ns);
		sample_add(&s[BK], rt > w + ack.read_ns ? rt - w - ack.read_ns : 0);
	}
	int rc = peer_wait(&p);
	if (rc != 0) {
		fprintf(stderr, "hs-bench-copy: consumer failed (%d)\n", rc);
		return 1;
	}
	char extra[64];
	snprintf(extra, sizeof(extra), ", \"bad\": %ld", bad);
	sample_print_json(stdout, name, n, s, N_SETS, extra);
	for (int k = 0; k < N_SETS; k++)
		sample_free(&s[k]);
	if (bad)
		fprintf(stderr, "hs-bench-copy: %ld payloads read wrong\n", bad);
	return bad ? 1 : 0;
}
