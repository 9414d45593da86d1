/* The second process of a two-process benchmark and the control channel
 * (a socketpair) between the two: "ready", per-iteration notes and acks.
 * The peer is forked before either side connects to the broker or
 * touches CUDA (a forked child of a CUDA process cannot use CUDA). */
#ifndef BENCH_PEER_H
#define BENCH_PEER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct peer {
	pid_t pid;
	int fd; /* the parent's end of the control socketpair */
} peer;

typedef int (*peer_fn)(int fd, void *arg);

/* socketpair(AF_UNIX, type) and fork; the child runs fn(its end, arg) and
 * exits with its return value. 0 or -errno. */
int peer_start(peer *p, int type, peer_fn fn, void *arg);
/* Closes the parent's end and reaps the child: its exit status, or -1
 * when it died of a signal. */
int peer_wait(peer *p);

/* One datagram (SOCK_SEQPACKET) of exactly len bytes; 0 or -errno
 * (-EPIPE when the peer is gone, -EPROTO on a short datagram). */
int peer_send(int fd, const void *buf, size_t len);
int peer_recv(int fd, void *buf, size_t len);

/* A byte stream (SOCK_STREAM): all len bytes, looping; 0 or -errno. */
int peer_write_all(int fd, const void *buf, size_t len);
int peer_read_all(int fd, void *buf, size_t len);

#endif
