/* hsb-devprobe: producer and consumer of tests/bridge/gpu.sh, for host or
 * device (CUDA) tensors, with a check of every byte and the consumer's
 * rate. Tensor i (from 1) is BYTES uint8: its first 8 bytes hold i, byte
 * j >= 8 holds pattern(i % 4, j), so the producer copies one of four
 * prepared blocks per tensor (a device tensor is written with one
 * host-to-device copy, as a camera's frame would be) and the consumer
 * compares against the same four.
 *   hsb-devprobe produce SOCKET TOPIC FIRST LAST BYTES cpu|cuda
 *   hsb-devprobe consume SOCKET TOPIC LAST SKIP IDLE_S cpu|cuda
 * consume prints "subscribed", then, once tensor LAST arrived or nothing
 * came for IDLE_S, one JSON line: counts, gaps, bad tensors, and
 * tensors/s and GB/s over the tensors after the first SKIP it received
 * (first to last). It exits 0 when every byte was right, nothing was
 * missing and the last was LAST. A device tensor is read the way a CUDA
 * consumer reads one: hs_tensor_wait on a stream, a copy to pinned host
 * memory, a synchronisation. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hs-config.h"
#include "hsbroker/client.h"

#if HS_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define VARIANTS 4

static uint8_t pattern(uint64_t k, uint64_t j)
{
	return (uint8_t)((k * 131 + j * 7 + (j >> 8) * 13) & 0xff);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "hsb-devprobe: %s: %s\n", what, hs_strerror(err));
	return 1;
}

#if HS_HAVE_CUDA
static int cuda_fail(const char *what, cudaError_t e)
{
	fprintf(stderr, "hsb-devprobe: %s: %s\n", what, cudaGetErrorString(e));
	return 1;
}
#endif

/* Host blocks (pinned where CUDA copies from or into them). */
static void *host_alloc(size_t n, bool cuda)
{
#if HS_HAVE_CUDA
	if (cuda) {
		void *p = NULL;
		return cudaHostAlloc(&p, n, cudaHostAllocDefault) == cudaSuccess ? p : NULL;
	}
#endif
	(void)cuda;
	return malloc(n);
}

/* A stream of our own for a CUDA run (NULL otherwise). */
static int stream_new(void **out)
{
#if HS_HAVE_CUDA
	cudaStream_t s;
	cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
	if (e != cudaSuccess)
		return cuda_fail("cudaStreamCreate", e);
	*out = s;
	return 0;
#else
	*out = NULL;
	return fail("cuda", HS_ENOCUDA);
#endif
}

static uint8_t *variants[VARIANTS];
static int64_t variant_bytes;

static int prepare(int64_t bytes, bool cuda)
{
	variant_bytes = bytes;
	for (int k = 0; k < VARIANTS; k++) {
		if (!(variants[k] = host_alloc((size_t)bytes, cuda)))
			return fail("pinned host memory", HS_ENOMEM);
		for (int64_t j = 0; j < bytes; j++)
			variants[k][j] = pattern((uint64_t)k, (uint64_t)j);
	}
	return 0;
}

static int produce(hs_client *c, const char *topic, uint64_t first, uint64_t last,
		   int64_t bytes, bool cuda)
{
	if (bytes < 8)
		return fail("BYTES", HS_EINVAL);
	int err = prepare(bytes, cuda);
	if (err)
		return err;
	DLDataType u8 = { kDLUInt, 8, 1 };
	DLDevice dev = { cuda ? kDLCUDA : kDLCPU, 0 };
	void *stream = NULL;
	if (cuda && stream_new(&stream) != 0)
		return 1;
	for (uint64_t i = first; i <= last; i++) {
		hs_tensor *t;
		if ((err = hs_tensor_alloc(c, dev, u8, 1, &bytes, NULL, &t)) < 0)
			return fail("alloc", err);
		uint8_t *p = hs_tensor_data(t);
		const uint8_t *src = variants[i % VARIANTS];
		if (!cuda) {
			memcpy(p, src, (size_t)bytes);
			memcpy(p, &i, 8);
		}
#if HS_HAVE_CUDA
		else {
			/* the block, then i over its first 8 bytes: from pageable
			 * memory, so copied out before the call returns */
			cudaError_t e = cudaMemcpyAsync(p, src, (size_t)bytes, cudaMemcpyHostToDevice, stream);
			if (e == cudaSuccess)
				e = cudaMemcpyAsync(p, &i, 8, cudaMemcpyHostToDevice, stream);
			if (e != cudaSuccess)
				return cuda_fail("cudaMemcpyAsync", e);
		}
#endif
		/* the ready fence is recorded on the stream the copies are on */
		if ((err = hs_tensor_emit(t, topic, stream, NULL)) < 0)
			return fail("emit", err);
	}
	printf("produced %" PRIu64 "\n", last - first + 1);
	return 0;
}

static int consume(hs_client *c, const char *topic, uint64_t last_want, uint64_t skip,
		   int idle_s, bool cuda)
{
	hs_subscription *sub;
	hs_subscribe_opts o = { .depth = 8, .policy = HS_POLICY_BLOCK };
	int err = hs_subscribe(c, topic, &o, &sub);
	if (err < 0)
		return fail("subscribe", err);
	printf("subscribed\n");
	fflush(stdout);
#if HS_HAVE_CUDA
	uint8_t *host = NULL; /* pinned, for the copies of device tensors */
	size_t host_size = 0;
#endif
	void *stream = NULL;
	if (cuda && stream_new(&stream) != 0)
		return 1;
	uint64_t n = 0, first = 0, last = 0, gaps = 0, bad = 0, bytes_timed = 0, timed = 0;
	double t0 = 0, t1 = 0;
	while (last < last_want) {
		hs_tensor *t;
		if ((err = hs_subscription_receive(sub, idle_s * 1000, &t)) < 0) {
			fprintf(stderr, "hsb-devprobe: receive: %s\n", hs_strerror(err));
			break;
		}
		const DLTensor *dl = hs_tensor_dltensor(t);
		uint64_t bytes = hs_tensor_nbytes(t);
		bool want_dev = dl->device.device_type == (cuda ? kDLCUDA : kDLCPU);
		const uint8_t *p = hs_tensor_data(t);
		if (cuda && want_dev) {
#if HS_HAVE_CUDA
			if (host_size < bytes) {
				cudaFreeHost(host);
				host = host_alloc(bytes, true);
				host_size = host ? bytes : 0;
			}
			cudaError_t e = host ? cudaSuccess : cudaErrorMemoryAllocation;
			if (e == cudaSuccess && (err = hs_tensor_wait(t, stream)) < 0)
				return fail("hs_tensor_wait", err);
			if (e == cudaSuccess)
				e = cudaMemcpyAsync(host, p, bytes, cudaMemcpyDeviceToHost, stream);
			if (e == cudaSuccess)
				e = cudaStreamSynchronize(stream);
			if (e != cudaSuccess)
				return cuda_fail("copy to the host", e);
			p = host;
#endif
		}
		uint64_t i = 0;
		bool ok = want_dev && bytes >= 8 && strcmp(hs_tensor_topic(t), topic) == 0;
		if (ok)
			memcpy(&i, p, 8);
		ok = ok && i > last;
		if (ok && !variants[0] && prepare((int64_t)bytes, false) != 0)
			return 1;
		ok = ok && (int64_t)bytes == variant_bytes &&
		     memcmp(p + 8, variants[i % VARIANTS] + 8, bytes - 8) == 0;
		/* the copy above was synchronised: the block may go at once */
		hs_tensor_release(t, cuda ? HS_STREAM_DONE : NULL);
		if (!ok) {
			if (bad++ < 5)
				fprintf(stderr, "hsb-devprobe: tensor %" PRIu64 " (after %" PRIu64
					") is wrong (%s)\n", i, last,
					want_dev ? "content or order" : "device type");
			continue;
		}
		if (n && i != last + 1)
			gaps++;
		if (!n)
			first = i;
		last = i;
		n++;
		if (n == skip + 1)
			t0 = now_s();
		else if (n > skip + 1) {
			t1 = now_s();
			timed++;
			bytes_timed += bytes;
		}
	}
	hs_subscription_close(sub);
	double secs = t1 > t0 ? t1 - t0 : 0;
	printf("{\"received\": %" PRIu64 ", \"first\": %" PRIu64 ", \"last\": %" PRIu64
	       ", \"gaps\": %" PRIu64 ", \"bad\": %" PRIu64 ", \"timed\": %" PRIu64
	       ", \"seconds\": %.6f, \"tensors_per_s\": %.1f, \"GB_per_s\": %.4f}\n",
	       n, first, last, gaps, bad, timed, secs, secs > 0 ? (double)timed / secs : 0,
	       secs > 0 ? (double)bytes_timed / secs / 1e9 : 0);
	return bad == 0 && gaps == 0 && last == last_want ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: hsb-devprobe produce SOCKET TOPIC FIRST LAST BYTES cpu|cuda\n"
				"       hsb-devprobe consume SOCKET TOPIC LAST SKIP IDLE_S cpu|cuda\n");
		return 2;
	}
	bool cuda = !strcmp(argv[7], "cuda");
	if (!cuda && strcmp(argv[7], "cpu") != 0)
		return fail(argv[7], HS_EINVAL);
#if !HS_HAVE_CUDA
	if (cuda)
		return fail("cuda", HS_ENOCUDA);
#endif
	hs_client *c;
	int err = hs_client_connect(argv[2], "hsb-devprobe", &c);
	if (err < 0)
		return fail("connect", err);
	int rc;
	if (!strcmp(argv[1], "produce"))
		rc = produce(c, argv[3], strtoull(argv[4], NULL, 10), strtoull(argv[5], NULL, 10),
			     (int64_t)strtoll(argv[6], NULL, 10), cuda);
	else
		rc = consume(c, argv[3], strtoull(argv[4], NULL, 10), strtoull(argv[5], NULL, 10),
			     atoi(argv[6]), cuda);
	hs_client_disconnect(c);
	return rc;
}
