/* A SOCK_SEQPACKET ping-pong with each side pinned to a CPU: the floor
 * on one vCPU and across two (bench/NOTES.md, section 2).
 *   cc -O2 -o /tmp/pinned bench/experiments/pinned.c && /tmp/pinned 0 0 && /tmp/pinned 0 1 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof(s), &s))
		perror("sched_setaffinity");
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int a = atoi(argv[1]), b = atoi(argv[2]), sv[2], n = 5000, warm = 500;
	char m[64] = { 0 };
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		pin(b);
		for (int i = 0; i < n + warm; i++)
			if (recv(sv[1], m, sizeof(m), 0) <= 0 || send(sv[1], m, sizeof(m), 0) < 0)
				_exit(1);
		_exit(0);
	}
	pin(a);
	unsigned long long *s = malloc(sizeof(*s) * n);
	for (int i = 0; i < n + warm; i++) {
		unsigned long long t0 = now_ns();
		if (send(sv[0], m, sizeof(m), 0) < 0 || recv(sv[0], m, sizeof(m), 0) <= 0)
			return 1;
		if (i >= warm)
			s[i - warm] = now_ns() - t0;
	}
	waitpid(pid, NULL, 0);
	qsort(s, n, sizeof(*s), cmp);
	printf("cpu%d <-> cpu%d: p50 %.1f us, min %.1f, p99 %.1f\n", a, b, s[n / 2] / 1e3,
	       s[0] / 1e3, s[n * 99 / 100] / 1e3);
	return 0;
}
