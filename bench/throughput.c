/* hs-bench-throughput: tensors a second from one producer to N
 * subscribers (separate processes), each subscription HS_POLICY_BLOCK
 * with --depth queue slots, so the producer goes as fast as the slowest
 * subscriber and nothing is dropped. Each tensor is written in full by
 * the producer and sampled by every subscriber (payload.h), as in the
 * hand-off benchmark. With --daemon-pid, the daemon's CPU time (utime +
 * stime from /proc) over the run is divided by the tensors emitted.
 *
 * --device cuda: device tensors, cudaMemsetAsync and emit on the
 * producer's stream; each subscriber hs_tensor_wait on its stream, reads
 * 64 bytes back, synchronises and releases with its stream.
 *
 *   hs-bench-throughput [--size BYTES] [--subscribers N] [--depth N]
 *                       [--iters N] [--warmup N] [--socket PATH]
 *                       [--daemon-pid PID] [--device cpu|cuda]
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

#define MAX_SUBSCRIBERS 64

typedef struct tp_run {
	bench_options o;
	char topic[64];
} tp_run;

typedef struct tp_result {
	double rate;          /* measured tensors a second */
	uint64_t received;
	uint64_t bad;
} tp_result;

static int fail(const char *what, int err)
{
	fprintf(stderr, "hs-bench-throughput[%d]: %s: %s\n", (int)getpid(), what,
		hs_strerror(err));
	return 1;
}

static const DLDataType u8 = { kDLUInt, 8, 1 };

static int subscriber_main(int fd, void *arg)
{
	tp_run *r = arg;
	hs_client *c;
	hs_subscription *sub;
	int err = hs_client_connect(r->o.socket, "bench-subscriber", &c);
	if (err)
		return fail("connect", err);
	hs_subscribe_opts so = { .depth = (uint32_t)r->o.depth, .policy = HS_POLICY_BLOCK };
	if ((err = hs_subscribe(c, r->topic, &so, &sub)))
		return fail("subscribe", err);
	void *stream = NULL;
#ifdef HS_HAVE_CUDA
	uint8_t *host = NULL;
	if (r->o.cuda) {
		cudaStream_t s;
		GPU_TRY(cudaSetDevice(0), 1);
		GPU_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), 1);
		GPU_TRY(cudaMallocHost((void **)&host, 64), 1);
		stream = s;
	}
#endif
	char ready = 1;
	if (peer_send(fd, &ready, 1))
		return 1;
	tp_result res = { 0 };
	uint64_t t_start = bench_now_ns();
	long total = r->o.warmup + r->o.iters;
	for (long i = 0; i < total; i++) {
		hs_tensor *t;
		if ((err = hs_subscription_receive(sub, 30000, &t)))
			return fail("receive", err);
		if (i == r->o.warmup)
			t_start = bench_now_ns();
		uint64_t iter = hs_tensor_seq(t) - 1, sum = 0;
		if (!r->o.cuda) {
			res.bad += payload_read(hs_tensor_data(t), r->o.size, iter, &sum) != 0;
		} else {
#if defined(HS_HAVE_CUDA) && defined(HSB_HAVE_TENSOR_WAIT)
			if ((err = hs_tensor_wait(t, stream)))
				return fail("hs_tensor_wait", err);
			size_t k = r->o.size < 64 ? (size_t)r->o.size : 64;
			GPU_TRY(cudaMemcpyAsync(host, hs_tensor_data(t), k, cudaMemcpyDeviceToHost,
						(cudaStream_t)stream), 1);
			GPU_TRY(cudaStreamSynchronize((cudaStream_t)stream), 1);
			res.bad += host[0] != payload_byte(iter);
#else
			return fail("CUDA tensors", HS_ENOCUDA);
#endif
		}
		hs_tensor_release(t, stream);
		res.received++;
	}
	uint64_t dt = bench_now_ns() - t_start;
	/* From the warmup-th tensor to the last: iters intervals. */
	res.rate = dt ? (double)r->o.iters * 1e9 / (double)dt : 0;
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	if (peer_send(fd, &res, sizeof(res)))
		return 1;
	return 0;
}

static int producer(tp_run *r)
{
	long n = r->o.subscribers;
	peer p[MAX_SUBSCRIBERS];
	for (long k = 0; k < n; k++) {
		int err = peer_start(&p[k], SOCK_SEQPACKET, subscriber_main, r);
		if (err) {
			fprintf(stderr, "hs-bench-throughput: fork: %s\n", strerror(-err));
			return 1;
		}
	}
	hs_client *c;
	int err = hs_client_connect(r->o.socket, "bench-producer", &c);
	if (err)
		return fail("connect", err);
	void *stream = NULL;
	DLDevice dev = { kDLCPU, 0 };
#ifdef HS_HAVE_CUDA
	if (r->o.cuda) {
		cudaStream_t s;
		GPU_TRY(cudaSetDevice(0), 1);
		GPU_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), 1);
		stream = s;
		dev = (DLDevice){ kDLCUDA, 0 };
	}
#endif
	for (long k = 0; k < n; k++) {
		char ready;
		if (peer_recv(p[k].fd, &ready, 1)) {
			fprintf(stderr, "hs-bench-throughput: subscriber %ld did not start\n", k);
			return 1;
		}
	}
	const int64_t shape[1] = { (int64_t)r->o.size };
	int64_t cpu0 = r->o.daemon_pid ? sample_proc_cpu_ns(r->o.daemon_pid) : -1;
	uint64_t t_start = bench_now_ns();
	long total = r->o.warmup + r->o.iters;
	for (long i = 0; i < total; i++) {
		if (i == r->o.warmup)
			t_start = bench_now_ns();
		hs_tensor *t;
		if ((err = hs_tensor_alloc(c, dev, u8, 1, shape, NULL, &t)))
			return fail("alloc", err);
		if (!r->o.cuda) {
			payload_write(hs_tensor_data(t), r->o.size, (uint64_t)i);
		} else {
#ifdef HS_HAVE_CUDA
			GPU_TRY(cudaMemsetAsync(hs_tensor_data(t), payload_byte((uint64_t)i),
						r->o.size, (cudaStream_t)stream), 1);
#endif
		}
		if ((err = hs_tensor_emit(t, r->topic, stream, NULL)))
			return fail("emit", err);
	}
	uint64_t t_emitted = bench_now_ns();
	tp_result res[MAX_SUBSCRIBERS];
	int failed = 0;
	for (long k = 0; k < n; k++) {
		if (peer_recv(p[k].fd, &res[k], sizeof(res[k]))) {
			fprintf(stderr, "hs-bench-throughput: no result from subscriber %ld\n", k);
			failed = 1;
			res[k] = (tp_result){ 0 };
		}
	}
	int64_t cpu1 = r->o.daemon_pid ? sample_proc_cpu_ns(r->o.daemon_pid) : -1;
	hs_client_disconnect(c);
	for (long k = 0; k < n; k++)
		if (peer_wait(&p[k]) != 0)
			failed = 1;
	if (failed)
		return 1;
	double min = 0, sum = 0;
	uint64_t bad = 0;
	for (long k = 0; k < n; k++) {
		if (k == 0 || res[k].rate < min)
			min = res[k].rate;
		sum += res[k].rate;
		bad += res[k].bad;
	}
	double prod_rate = (double)r->o.iters * 1e9 / (double)(t_emitted - t_start);
	double cpu_per = -1, cpu_per_delivery = -1;
	if (cpu0 >= 0 && cpu1 >= 0) {
		cpu_per = (double)(cpu1 - cpu0) / (double)total;
		cpu_per_delivery = cpu_per / (double)n;
	}
	char extra[512];
	snprintf(extra, sizeof(extra),
		 ", \"subscribers\": %ld, \"depth\": %ld, \"tensors\": %ld, "
		 "\"producer_rate\": %.1f, \"sub_rate_min\": %.1f, \"sub_rate_mean\": %.1f, "
		 "\"daemon_cpu_ns_per_tensor\": %.1f, \"daemon_cpu_ns_per_delivery\": %.1f, "
		 "\"daemon_cpu_ns\": %" PRId64 ", \"bad\": %" PRIu64,
		 n, r->o.depth, total, prod_rate, min, sum / (double)n, cpu_per, cpu_per_delivery,
		 cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : (int64_t)-1, bad);
	sample_print_json(stdout, r->o.cuda ? "throughput-cuda" : "throughput", r->o.size,
			  NULL, 0, extra);
	if (bad)
		fprintf(stderr, "hs-bench-throughput: %" PRIu64 " tensors read wrong\n", bad);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	tp_run r = { .o = { .size = 4096, .iters = 50000, .warmup = 2000,
			    .subscribers = 1, .depth = 64 } };
	if (options_parse(&r.o, argc, argv))
		return 2;
	if (r.o.subscribers > MAX_SUBSCRIBERS) {
		fprintf(stderr, "hs-bench-throughput: at most %d subscribers\n", MAX_SUBSCRIBERS);
		return 2;
	}
	snprintf(r.topic, sizeof(r.topic), "bench/throughput/%d", (int)getpid());
	if (r.o.cuda) {
		char why[256];
		if (gpu_probe(why, sizeof(why)))
			return sample_print_skip("throughput-cuda", r.o.size, why);
#ifndef HSB_HAVE_TENSOR_WAIT
		return sample_print_skip("throughput-cuda", r.o.size,
					 "this libhsclient has no hs_tensor_wait (GPU tensors not landed)");
#endif
	}
	return producer(&r);
}
