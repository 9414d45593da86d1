/* hs-bench-design: floors of candidate designs, with no broker code at
 * all, so that bench/NOTES.md can tell the cost of a message pattern from
 * the cost of an implementation. Every mode is a round trip of one 64-byte
 * note from a producer process P to a consumer process C and back.
 *
 *   --mode relay   P -> D -> C, C -> P: the fewest messages any design with
 *                  the daemon D on the per-tensor path can send (a one-way
 *                  emit that D forwards; C acks P directly).
 *   --mode lean    proposal 3 of bench/NOTES.md: a one-way emit D forwards,
 *                  one release note (credit folded in) C -> D, the ack
 *                  C -> P: 4 datagrams, no alloc round trip.
 *   --mode rpc     hsbroker's per-tensor pattern today, as bare datagrams
 *                  through a relay process D (poll loop, non-blocking
 *                  drain like hsbrokerd): P->D alloc, D->P reply; P->D emit,
 *                  D->C deliver, D->P emit reply; C->D credit, C->D release,
 *                  C->P ack. No protobuf, no libuv, no locks.
 *   --mode futex   no socket: the note and the ack are words in shared
 *                  memory; a waiter spins up to --spin-us, then sleeps in
 *                  futex(FUTEX_WAIT), and the writer wakes it (FUTEX_WAKE)
 *                  when it may be asleep (DESIGN.md's per-tensor ring).
 *   --mode spin    shared memory words, busy spinning only (the lower
 *                  bound; it burns a core per waiter).
 *
 *   hs-bench-design --mode M [--iters N] [--warmup N] [--spin-us N]
 * Prints one JSON line (sample.h). */
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "options.h"
#include "peer.h"
#include "sample.h"

#define NOTE 64

enum mode { MODE_RELAY, MODE_LEAN, MODE_RPC, MODE_FUTEX, MODE_SPIN };

/* ---- sockets: P, D, C with three socketpairs ---- */

typedef struct trio {
	int pd[2]; /* P <-> D */
	int dc[2]; /* D <-> C */
	int cp[2]; /* C <-> P */
} trio;

static int note_send(int fd, char kind)
{
	char b[NOTE];
	memset(b, 0, sizeof(b));
	b[0] = kind;
	return peer_send(fd, b, sizeof(b));
}

static int note_recv(int fd, char want)
{
	char b[NOTE];
	int err = peer_recv(fd, b, sizeof(b));
	if (err)
		return err;
	return b[0] == want ? 0 : -EPROTO;
}

/* D: poll both sockets, drain each without blocking, as hsbrokerd does. */
static int relay_main(trio *t, enum mode m, long total)
{
	int p = t->pd[1], c = t->dc[0];
	long delivered = 0, released = 0;
	struct pollfd pf[2] = { { .fd = p, .events = POLLIN }, { .fd = c, .events = POLLIN } };
	while (m == MODE_RELAY ? delivered < total : released < total) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int k = 0; k < 2; k++) {
			if (!(pf[k].revents & (POLLIN | POLLHUP)))
				continue;
			for (;;) {
				char b[NOTE];
				ssize_t n = recv(pf[k].fd, b, sizeof(b), MSG_DONTWAIT);
				if (n < 0 && (errno == EAGAIN || errno == EINTR))
					break;
				if (n <= 0)
					return 1;
				if (k == 0 && b[0] == 'A') {
					if (note_send(p, 'a'))
						return 1;
				} else if (k == 0 && b[0] == 'E') {
					if (note_send(c, 'D') || (m == MODE_RPC && note_send(p, 'e')))
						return 1;
					delivered++;
				} else if (k == 1 && b[0] == 'R') {
					released++;
				} else if (!(k == 1 && b[0] == 'C')) {
					return 1;
				}
			}
		}
	}
	return 0;
}

static int consumer_sock(trio *t, enum mode m, long total)
{
	for (long i = 0; i < total; i++) {
		if (note_recv(t->dc[1], 'D'))
			return 1;
		if (m == MODE_RPC && (note_send(t->dc[1], 'C') || note_send(t->dc[1], 'R')))
			return 1;
		if (m == MODE_LEAN && note_send(t->dc[1], 'R'))
			return 1;
		if (note_send(t->cp[0], 'K'))
			return 1;
	}
	return 0;
}

static pid_t fork_role(int (*fn)(trio *, enum mode, long), trio *t, enum mode m, long total)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn(t, m, total));
	return pid;
}

static int run_sockets(bench_options *o, enum mode m, sample_set *rt)
{
	trio t;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, t.pd) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, t.dc) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, t.cp))
		return 1;
	long total = o->warmup + o->iters;
	pid_t d = fork_role(relay_main, &t, m, total);
	pid_t c = fork_role(consumer_sock, &t, m, total);
	if (d < 0 || c < 0)
		return 1;
	int p = t.pd[0];
	for (long i = 0; i < total; i++) {
		uint64_t t0 = bench_now_ns();
		if (m == MODE_RPC && (note_send(p, 'A') || note_recv(p, 'a')))
			return 1;
		if (note_send(p, 'E'))
			return 1;
		if (m == MODE_RPC && note_recv(p, 'e'))
			return 1;
		if (note_recv(t.cp[1], 'K'))
			return 1;
		if (i >= o->warmup)
			sample_add(rt, bench_now_ns() - t0);
	}
	int st1, st2;
	waitpid(d, &st1, 0);
	waitpid(c, &st2, 0);
	return !(WIFEXITED(st1) && !WEXITSTATUS(st1) && WIFEXITED(st2) && !WEXITSTATUS(st2));
}

/* ---- shared memory ---- */

typedef struct shm_pair {
	_Atomic uint32_t note, ack;
	_Atomic uint32_t note_sleeping, ack_sleeping;
} shm_pair;

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Waits until *w != old: spin for spin_ns, then sleep (futex) unless
 * spin-only. */
static void shm_wait(_Atomic uint32_t *w, _Atomic uint32_t *sleeping, uint32_t old,
		     uint64_t spin_ns, int futex)
{
	uint64_t t0 = bench_now_ns();
	while (atomic_load_explicit(w, memory_order_acquire) == old) {
		if (!futex || bench_now_ns() - t0 < spin_ns)
			continue;
		atomic_store(sleeping, 1);
		if (atomic_load(w) == old)
			futex_wait(w, old);
		atomic_store(sleeping, 0);
	}
}

static void shm_post(_Atomic uint32_t *w, _Atomic uint32_t *sleeping, uint32_t val, int futex)
{
	atomic_store_explicit(w, val, memory_order_release);
	if (futex && atomic_load(sleeping))
		futex_wake(w);
}

static int run_shm(bench_options *o, enum mode m, sample_set *rt)
{
	shm_pair *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return 1;
	memset(s, 0, sizeof(*s));
	int futex = m == MODE_FUTEX;
	uint64_t spin_ns = (uint64_t)o->spin_us * 1000;
	long total = o->warmup + o->iters;
	fflush(NULL);
	pid_t c = fork();
	if (c < 0)
		return 1;
	if (c == 0) {
		for (long i = 1; i <= total; i++) {
			shm_wait(&s->note, &s->note_sleeping, (uint32_t)(i - 1), spin_ns, futex);
			shm_post(&s->ack, &s->ack_sleeping, (uint32_t)i, futex);
		}
		_exit(0);
	}
	for (long i = 1; i <= total; i++) {
		uint64_t t0 = bench_now_ns();
		shm_post(&s->note, &s->note_sleeping, (uint32_t)i, futex);
		shm_wait(&s->ack, &s->ack_sleeping, (uint32_t)(i - 1), spin_ns, futex);
		if (i > o->warmup)
			sample_add(rt, bench_now_ns() - t0);
	}
	int st;
	waitpid(c, &st, 0);
	munmap(s, sizeof(*s));
	return !(WIFEXITED(st) && !WEXITSTATUS(st));
}

int main(int argc, char **argv)
{
	bench_options o = { .iters = 20000, .warmup = 2000 };
	const char *mode = "relay";
	/* --mode is ours; the rest is options.h's. */
	char *rest[64];
	int nrest = 0;
	for (int i = 0; i < argc && nrest < 64; i++) {
		if (i > 0 && !strcmp(argv[i], "--mode") && i + 1 < argc)
			mode = argv[++i];
		else
			rest[nrest++] = argv[i];
	}
	if (options_parse(&o, nrest, rest))
		return 2;
	enum mode m;
	if (!strcmp(mode, "relay"))
		m = MODE_RELAY;
	else if (!strcmp(mode, "lean"))
		m = MODE_LEAN;
	else if (!strcmp(mode, "rpc"))
		m = MODE_RPC;
	else if (!strcmp(mode, "futex"))
		m = MODE_FUTEX;
	else if (!strcmp(mode, "spin"))
		m = MODE_SPIN;
	else {
		fprintf(stderr, "hs-bench-design: --mode relay|lean|rpc|futex|spin\n");
		return 2;
	}
	sample_set rt;
	if (sample_init(&rt, "rt", (size_t)o.iters))
		return 1;
	int rc = m == MODE_RELAY || m == MODE_LEAN || m == MODE_RPC ? run_sockets(&o, m, &rt)
									 : run_shm(&o, m, &rt);
	if (rc) {
		fprintf(stderr, "hs-bench-design: %s failed\n", mode);
		return 1;
	}
	char name[32], extra[64];
	snprintf(name, sizeof(name), "design-%s", mode);
	snprintf(extra, sizeof(extra), ", \"spin_us\": %ld", o.spin_us);
	sample_print_json(stdout, name, NOTE, &rt, 1, extra);
	sample_free(&rt);
	return 0;
}
