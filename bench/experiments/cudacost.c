/* What the CUDA calls on hsbroker's per-tensor GPU path cost, each timed
 * alone on the host (bench/NOTES.md): recording a plain and an
 * interprocess event, making a stream wait on an event imported from
 * another process, queueing a host function, and the stream query the
 * release fence makes. Run it with and without MPS. One JSON line.
 *
 *   hs-bench-cudacost [--iters N] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../gpu.h"

#ifdef HS_HAVE_CUDA
static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double p50_us(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return (double)v[n / 2] / 1000.0;
}

static void CUDART_CB noop(void *arg)
{
	(void)arg;
}

/* Times call over iters, each followed by a sync so that calls do not
 * pile up; only the call is timed. */
#define TIME(name, call)                                                       \
	do {                                                                   \
		for (int i = 0; i < iters; i++) {                              \
			uint64_t t0 = now_ns();                                \
			cudaError_t e = (call);                                \
			v[i] = now_ns() - t0;                                  \
			if (e != cudaSuccess) {                                \
				fprintf(stderr, "%s: %s\n", name,              \
					cudaGetErrorString(e));                \
				return 1;                                      \
			}                                                      \
			cudaStreamSynchronize(s);                              \
		}                                                              \
		printf("%s\"%s_p50_us\": %.3f", first ? "" : ", ", name, p50_us(v, iters)); \
		first = 0;                                                     \
	} while (0)

static int child(int rfd, int iters)
{
	cudaIpcEventHandle_t h;
	if (read(rfd, &h, sizeof(h)) != (ssize_t)sizeof(h))
		return 1;
	GPU_TRY(cudaSetDevice(0), 1);
	cudaEvent_t ev;
	GPU_TRY(cudaIpcOpenEventHandle(&ev, h), 1);
	cudaStream_t s;
	GPU_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), 1);
	uint64_t *v = calloc((size_t)iters, sizeof(*v));
	int first = 1;
	printf(", ");
	TIME("imported_wait", cudaStreamWaitEvent(s, ev, 0));
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int iters = 2000;
	if (argc == 3 && strcmp(argv[1], "--iters") == 0)
		iters = atoi(argv[2]);
	char why[256];
	if (gpu_probe(why, sizeof(why)) < 0) {
		printf("{\"case\": \"cudacost\", \"skipped\": \"%s\"}\n", why);
		return 0;
	}
	int p[2];
	if (pipe(p) < 0)
		return 1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[1]);
		_exit(child(p[0], iters));
	}
	close(p[0]);
	GPU_TRY(cudaSetDevice(0), 1);
	cudaStream_t s;
	GPU_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), 1);
	cudaEvent_t plain, ipc;
	GPU_TRY(cudaEventCreateWithFlags(&plain, cudaEventDisableTiming), 1);
	GPU_TRY(cudaEventCreateWithFlags(&ipc, cudaEventDisableTiming | cudaEventInterprocess), 1);
	void *buf;
	GPU_TRY(cudaMalloc(&buf, 4096), 1);
	uint64_t *v = calloc((size_t)iters, sizeof(*v));
	int first = 1;
	printf("{\"case\": \"cudacost\", \"iters\": %d, ", iters);
	TIME("memset_4k", cudaMemsetAsync(buf, 1, 4096, s));
	TIME("record_plain", cudaEventRecord(plain, s));
	TIME("record_ipc", cudaEventRecord(ipc, s));
	TIME("wait_plain", cudaStreamWaitEvent(s, plain, 0));
	TIME("host_func", cudaLaunchHostFunc(s, noop, NULL));
	int dev;
	TIME("stream_get_device", cudaStreamGetDevice(s, &dev));
	TIME("sync_idle", cudaStreamSynchronize(s));
	fflush(stdout);
	cudaIpcEventHandle_t h;
	GPU_TRY(cudaEventRecord(ipc, s), 1);
	GPU_TRY(cudaIpcGetEventHandle(&h, ipc), 1);
	if (write(p[1], &h, sizeof(h)) != (ssize_t)sizeof(h))
		return 1;
	int st;
	waitpid(pid, &st, 0);
	printf("}\n");
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
#else
int main(void)
{
	printf("{\"case\": \"cudacost\", \"skipped\": \"built without CUDA\"}\n");
	return 0;
}
#endif
