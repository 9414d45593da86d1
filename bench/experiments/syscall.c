/* What a syscall costs on this machine (bench/NOTES.md, attempt 3).
 *   cc -O2 -o /tmp/syscall bench/experiments/syscall.c && /tmp/syscall */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void)
{
	const int n = 200000;
	double t0 = now_ns();
	for (int i = 0; i < n; i++)
		syscall(SYS_getppid);
	printf("getppid %.0f ns\n", (now_ns() - t0) / n);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return 1;
	char b[64] = { 0 };
	struct iovec io = { b, sizeof(b) };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1 };
	t0 = now_ns();
	for (int i = 0; i < n; i++)
		(void)recvmsg(sv[0], &m, MSG_DONTWAIT);
	printf("recvmsg EAGAIN %.0f ns\n", (now_ns() - t0) / n);
	t0 = now_ns();
	for (int i = 0; i < n; i++) {
		if (send(sv[0], b, sizeof(b), 0) < 0 || recv(sv[1], b, sizeof(b), 0) < 0)
			return 1;
	}
	printf("send+recv, one thread %.0f ns\n", (now_ns() - t0) / n);
	return 0;
}
