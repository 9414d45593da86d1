/* hs_client_ping and a lone alloc + release against a running daemon:
 * the client <-> daemon round trip (bench/NOTES.md, attempt 6).
 *   cc -O2 -Iinclude -o /tmp/hsping bench/experiments/ping.c \
 *      -Lbuild-bench/client -lhsclient -Wl,-rpath,$PWD/build-bench/client
 *   /tmp/hsping /tmp/hsp.sock */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <hsbroker/hsbroker.h>

static unsigned long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000ull + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	hs_client *c;
	int err = hs_client_connect(argc > 1 ? argv[1] : NULL, "ping", &c);
	if (err) {
		fprintf(stderr, "connect: %s\n", hs_strerror(err));
		return 1;
	}
	enum { N = 5000, WARM = 500 };
	static unsigned long long ping[N], alloc[N], rel[N];
	const int64_t shape[1] = { 4096 };
	for (int i = 0; i < N + WARM; i++) {
		unsigned long long t0 = now_ns();
		if ((err = hs_client_ping(c)))
			return 1;
		if (i >= WARM)
			ping[i - WARM] = now_ns() - t0;
	}
	for (int i = 0; i < N + WARM; i++) {
		hs_tensor *t;
		unsigned long long t0 = now_ns();
		if ((err = hs_tensor_alloc(c, (DLDevice){ kDLCPU, 0 }, (DLDataType){ kDLUInt, 8, 1 },
					   1, shape, NULL, &t)))
			return 1;
		unsigned long long t1 = now_ns();
		hs_tensor_release(t, NULL);
		if (i >= WARM) {
			alloc[i - WARM] = t1 - t0;
			rel[i - WARM] = now_ns() - t1;
		}
	}
	qsort(ping, N, sizeof(ping[0]), cmp);
	qsort(alloc, N, sizeof(alloc[0]), cmp);
	qsort(rel, N, sizeof(rel[0]), cmp);
	printf("ping p50 %.1f us (min %.1f) | alloc p50 %.1f (min %.1f) | release p50 %.1f\n",
	       ping[N / 2] / 1e3, ping[0] / 1e3, alloc[N / 2] / 1e3, alloc[0] / 1e3, rel[N / 2] / 1e3);
	hs_client_disconnect(c);
	return 0;
}
