/* What legacy CUDA IPC allows on this machine, GPU by GPU: an exporter
 * process allocates on GPU e and fills the memory; an importer process
 * opens the handle with GPU i current (cudaIpcMemLazyEnablePeerAccess),
 * says what cudaPointerGetAttributes sees, and reads the memory back with
 * a device-to-device copy on a GPU-i stream (explicit kind), then with
 * cudaMemcpyDefault; another importer opens an interprocess event of GPU
 * e and waits on it / records it from a GPU-i stream. Each importer is its own process, forked before this
 * one touches CUDA, so a crash names its combination.
 *
 *   hs-ipc-probe          (exit 0 when every combination read right,
 *                          77 with no GPU) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#define BYTES (4u << 20)

static int count_gpus(void)
{
	int fd[2];
	if (pipe(fd) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		int n = 0;
		if (cudaGetDeviceCount(&n) != cudaSuccess)
			n = 0;
		if (write(fd[1], &n, sizeof(n)) != sizeof(n))
			_exit(1);
		_exit(0);
	}
	close(fd[1]);
	int n = 0;
	if (read(fd[0], &n, sizeof(n)) != sizeof(n))
		n = 0;
	close(fd[0]);
	waitpid(pid, NULL, 0);
	return n;
}

/* Exporter: allocates on dev, fills with 0x5a, makes an interprocess
 * event there, sends both handles, waits. */
static void exporter(int dev, int out, int out2, int hold)
{
	void *p;
	cudaIpcMemHandle_t h;
	cudaEvent_t ev;
	cudaIpcEventHandle_t eh;
	if (cudaSetDevice(dev) || cudaMalloc(&p, BYTES) || cudaMemset(p, 0x5a, BYTES) ||
	    cudaDeviceSynchronize() || cudaIpcGetMemHandle(&h, p) ||
	    cudaEventCreateWithFlags(&ev, cudaEventInterprocess | cudaEventDisableTiming) ||
	    cudaEventRecord(ev, 0) || cudaIpcGetEventHandle(&eh, ev))
		_exit(1);
	if (write(out, &h, sizeof(h)) != sizeof(h) || write(out2, &eh, sizeof(eh)) != sizeof(eh))
		_exit(1);
	char c;
	if (read(hold, &c, 1) < 0)
		_exit(1);
	_exit(0);
}

static const char *mtype(enum cudaMemoryType t)
{
	switch (t) {
	case cudaMemoryTypeDevice: return "device";
	case cudaMemoryTypeHost: return "host";
	case cudaMemoryTypeManaged: return "managed";
	default: return "unregistered";
	}
}

/* Importer: opens with imp current; copy, check. Exit 0 right. */
static void importer(int exp, int imp, int in)
{
	cudaIpcMemHandle_t h;
	if (read(in, &h, sizeof(h)) != sizeof(h))
		_exit(2);
	if (cudaSetDevice(imp))
		_exit(2);
	void *p = NULL;
	cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
	printf("  export cuda:%d, import with cuda:%d current: open %s", exp, imp,
	       cudaGetErrorString(e));
	if (e) {
		printf("\n");
		fflush(stdout);
		_exit(3);
	}
	struct cudaPointerAttributes a;
	e = cudaPointerGetAttributes(&a, p);
	printf("; attributes %s (type %s, device %d)", cudaGetErrorString(e), mtype(a.type),
	       a.device);
	fflush(stdout);
	cudaStream_t s;
	void *local;
	uint8_t *host;
	if (cudaStreamCreate(&s) || cudaMalloc(&local, BYTES) ||
	    cudaMallocHost((void **)&host, BYTES))
		_exit(4);
	memset(host, 0, BYTES);
	e = cudaMemcpyAsync(local, p, BYTES, cudaMemcpyDeviceToDevice, s);
	if (!e)
		e = cudaMemcpyAsync(host, local, BYTES, cudaMemcpyDeviceToHost, s);
	if (!e)
		e = cudaStreamSynchronize(s);
	int ok = !e && host[0] == 0x5a && host[BYTES - 1] == 0x5a;
	printf("; D2D on cuda:%d stream: %s %s", imp, cudaGetErrorString(e), ok ? "right" : "WRONG");
	fflush(stdout);
	memset(host, 0, BYTES);
	e = cudaMemcpyAsync(host, p, BYTES, cudaMemcpyDefault, s);
	if (!e)
		e = cudaStreamSynchronize(s);
	int ok2 = !e && host[0] == 0x5a && host[BYTES - 1] == 0x5a;
	printf("; cudaMemcpyDefault to host: %s %s\n", cudaGetErrorString(e),
	       ok2 ? "right" : "WRONG");
	fflush(stdout);
	cudaIpcCloseMemHandle(p);
	_exit(ok && ok2 ? 0 : 5);
}

/* The event, in a process of its own: opened with its own GPU current,
 * then waited on and recorded from a stream of GPU imp. Each step is
 * printed before it runs, so a crash names it. Exit 0 when both work. */
static void event_importer(int exp, int imp, int in)
{
	cudaIpcEventHandle_t eh;
	if (read(in, &eh, sizeof(eh)) != sizeof(eh))
		_exit(2);
	cudaStream_t s;
	if (cudaSetDevice(imp) || cudaStreamCreate(&s))
		_exit(4);
	cudaEvent_t ev;
	printf("    event of cuda:%d: open with cuda:%d current ... ", exp, exp);
	fflush(stdout);
	cudaSetDevice(exp);
	cudaError_t e = cudaIpcOpenEventHandle(&ev, eh);
	cudaSetDevice(imp);
	printf("%s; cudaStreamWaitEvent from a cuda:%d stream ... ", cudaGetErrorString(e), imp);
	fflush(stdout);
	cudaError_t e2 = e ? e : cudaStreamWaitEvent(s, ev, 0);
	if (!e2)
		e2 = cudaStreamSynchronize(s);
	printf("%s; cudaEventRecord on a cuda:%d stream ... ", cudaGetErrorString(e2), imp);
	fflush(stdout);
	cudaError_t e3 = e ? e : cudaEventRecord(ev, s);
	cudaGetLastError();
	printf("%s\n", cudaGetErrorString(e3));
	fflush(stdout);
	_exit(!e && !e2 && !e3 ? 0 : 5);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int n = count_gpus();
	if (n <= 0) {
		printf("SKIP: no GPU\n");
		return 77;
	}
	printf("legacy CUDA IPC between processes, %d GPU(s):\n", n);
	int bad = 0, cross_event_bad = 0;
	for (int e = 0; e < n && e < 4; e++)
		for (int i = 0; i < n && i < 4; i++) {
			int hfd[2], efd[2], hold[2];
			if (pipe(hfd) < 0 || pipe(efd) < 0 || pipe(hold) < 0)
				return 1;
			pid_t ex = fork();
			if (ex == 0)
				exporter(e, hfd[1], efd[1], hold[0]);
			pid_t im = fork();
			if (im == 0)
				importer(e, i, hfd[0]);
			int st = 0;
			waitpid(im, &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				bad++;
				if (WIFSIGNALED(st))
					printf("  export cuda:%d, import with cuda:%d current: importer "
					       "killed by signal %d\n", e, i, WTERMSIG(st));
			}
			/* Events: a failure across GPUs is what the client's
			 * bridge (client/fence.c) is for, so it is reported,
			 * not counted; on one GPU it counts. */
			pid_t ei = fork();
			if (ei == 0)
				event_importer(e, i, efd[0]);
			waitpid(ei, &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				if (WIFSIGNALED(st))
					printf("crashed (signal %d)\n", WTERMSIG(st));
				if (e == i)
					bad++;
				else
					cross_event_bad++;
			}
			if (write(hold[1], "x", 1) < 0)
				bad++;
			waitpid(ex, NULL, 0);
			close(hfd[0]);
			close(hfd[1]);
			close(efd[0]);
			close(efd[1]);
			close(hold[0]);
			close(hold[1]);
		}
	printf("RESULT case=ipc-probe ok=%d gpus=%d failed_combinations=%d "
	       "cross_gpu_event_use_failed=%d (avoided by the client's bridge)\n", bad == 0, n, bad,
	       cross_event_bad);
	return bad ? 1 : 0;
}
