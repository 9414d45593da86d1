/* Raw-socket helpers (raw.c): a client on a bare SOCK_SEQPACKET socket,
 * for tests of what the daemon does with misbehaving peers. Functions
 * that check something assert with Check: call them from the test
 * process only. */
#ifndef HS_TEST_RAW_H
#define HS_TEST_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* A connected socket (blocking), asserted. */
int rw_connect(const char *path);
/* Sends raw bytes with nfds copies of fd (may be 0) in one datagram:
 * 0 or -errno. */
int rw_send(int sock, const void *buf, size_t len, int fd, int nfds);
/* Packs m into buf (asserting it fits): its length. */
size_t rw_pack(const Hs__Message *m, uint8_t *buf, size_t size);
/* Packs and sends m: 0 or -errno. */
int rw_send_msg(int sock, Hs__Message *m, int fd, int nfds);
int rw_hello(int sock, uint32_t version);
int rw_ping(int sock, uint64_t seq, int fd, int nfds);
/* The next message that is not a push (SlabAnnounce, Deliver), or NULL
 * with *err: -EPIPE when the daemon closed the connection, -ETIMEDOUT at
 * the deadline (HT_DEADLINE_MS). */
Hs__Message *rw_recv(int sock, int *err);
void rw_expect_hello_reply(int sock);
/* True when code is in the 0-ended list allowed. */
bool rw_code_in(int code, const int *allowed);
/* The daemon must end this connection: any ErrorReply on the way must
 * carry one of the allowed codes; require_error demands one. Closes sock. */
void rw_expect_disconnect(int sock, const int *allowed, bool require_error);
/* The reply to seq must be an ErrorReply with an allowed code (the
 * session goes on). */
void rw_expect_error(int sock, uint64_t seq, const int *allowed);
/* The reply to seq must be an OkReply. */
void rw_expect_ok(int sock, uint64_t seq);

#endif
