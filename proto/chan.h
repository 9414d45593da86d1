/* The shared-memory channel: what a session's messages travel through once
 * the handshake is done, instead of one datagram each. One sealed memfd
 * holds a header and two byte rings (client -> daemon, daemon -> client)
 * of framed records; each side wakes the other through an eventfd only
 * when the other said it is going to sleep ("armed"), so a busy stream
 * costs no syscall per message. The socket stays for what needs it: fds,
 * messages too large for a record, and hang-up.
 *
 * The daemon maps the memory of a peer it does not trust: every index and
 * length it reads there is checked, and a record is copied out before it
 * is decoded. See docs/protocol.md. */
#ifndef HS_PROTO_CHAN_H
#define HS_PROTO_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hsbroker.pb-c.h"

#define HS__CHAN_MAGIC 0x31766863737368ULL /* "hsschv1" */
/* Bytes of each ring; a power of two. */
#define HS__CHAN_RING_SIZE (256u * 1024u)
/* Largest record payload; larger messages go through the socket. */
#define HS__CHAN_MAX_RECORD (32u * 1024u)

/* Record kinds. */
enum {
	HS__CHAN_MSG = 1,    /* a packed Message */
	HS__CHAN_SOCKET = 2, /* the next Message is on the socket (fds, size) */
	HS__CHAN_PAD = 3,    /* nothing: the reader skips to the ring's start */
};

/* One direction. The writer owns head, the reader owns tail (both count
 * bytes ever written / consumed); each on its own cache line. */
struct hs__chan_ring {
	_Alignas(64) uint64_t head;
	_Alignas(64) uint64_t tail;
	/* The reader is about to sleep: the writer kicks its eventfd once
	 * (whoever swaps it back to 0 kicks). */
	_Alignas(64) uint32_t armed;
	/* The writer waits for room: the reader kicks after consuming. */
	uint32_t want_space;
};

struct hs__chan_hdr {
	uint64_t magic;
	uint32_t ring_size;
	uint32_t pad0;
	/* Daemon -> client: 1 while the daemon needs the client's one-way
	 * notes (release, credit) promptly, i.e. something waits on them;
	 * otherwise notes wait in the ring for the daemon's next wake-up. */
	_Alignas(64) uint32_t notes_wake;
	struct hs__chan_ring c2d;
	struct hs__chan_ring d2c;
};

#define HS__CHAN_HDR_SIZE 4096u
#define HS__CHAN_MAP_SIZE (HS__CHAN_HDR_SIZE + 2u * HS__CHAN_RING_SIZE)

/* One side's end of one ring: the shared ring, its data, and this side's
 * own index (head for the writer, tail for the reader), kept here and only
 * published to the shared memory, so the peer cannot move it. */
struct hs__chan_end {
	struct hs__chan_ring *r;
	uint8_t *data;
	uint32_t size;
	uint64_t pos;
};

/* One side's view of a mapped channel. */
struct hs__chan {
	struct hs__chan_hdr *hdr;
	struct hs__chan_end tx;  /* the ring this side writes */
	struct hs__chan_end rx;  /* the ring this side reads */
};

/* A memfd of size bytes named name, sealed against growing and
 * shrinking (so no process sharing it can make another fault), mapped
 * read-write: 0 with *fd and *map, or a negative errno. The channel, pair
 * rings and topic pages (pring.h) are made with it. */
int hs__shm_create(const char *name, size_t size, int *fd, void **map);

/* Creates, sizes and seals the memfd and maps it as the daemon's side: 0
 * with *fd and *ch set, or a negative errno. */
int hs__chan_create(int *fd, struct hs__chan *ch);
/* Maps a channel received from the daemon, as the client's side, and
 * checks its header: 0, -EPROTO for one that is not a channel, or a
 * negative errno. */
int hs__chan_map(int fd, struct hs__chan *ch);
void hs__chan_unmap(struct hs__chan *ch);

/* Writes one record of kind with msg packed into it (msg NULL: no
 * payload; packed_len is msg's packed size). -EAGAIN when the ring has no
 * room now, -EMSGSIZE when msg exceeds HS__CHAN_MAX_RECORD, -EPROTO when
 * the reader's index is corrupt. */
int hs__chan_put(struct hs__chan_end *e, uint32_t kind, const Hs__Message *msg,
		 size_t packed_len);

/* The same with a message already packed (len bytes, 0 for none). */
int hs__chan_put_bytes(struct hs__chan_end *e, uint32_t kind, const uint8_t *bytes, size_t len);

/* Copies the next record's payload into out (HS__CHAN_MAX_RECORD bytes)
 * and consumes it. Returns its length (>= 0) with *kind, -EAGAIN when the
 * ring is empty, or -EPROTO when the indices or the record are corrupt.
 * Safe against a writer that scribbles on the memory meanwhile. */
int hs__chan_get(struct hs__chan_end *e, uint8_t *out, uint32_t *kind);

/* Reader: true when the writer published something not yet consumed. */
bool hs__chan_pending(const struct hs__chan_end *e);

/* Writer, after publishing: true when the reader was armed and the caller
 * must kick it (the flag is cleared by whoever kicks). */
bool hs__chan_should_kick(struct hs__chan_end *e);

/* Reader, before sleeping: arms, then returns false when a record arrived
 * meanwhile (do not sleep). */
bool hs__chan_arm(struct hs__chan_end *e);

/* Writer that found no room: asks the reader to kick once it consumed.
 * Returns false when room appeared meanwhile (retry at once). */
bool hs__chan_want_space(struct hs__chan_end *e, size_t packed_len);
/* Reader, after consuming: true when the writer waits for room and the
 * caller must kick it. */
bool hs__chan_space_kick(struct hs__chan_end *e);

/* After publishing: true when the other side had set flag (it sleeps, or
 * waits for room) and the caller must kick it; whoever swaps it back to
 * 0 kicks. The channel's and the pair rings' (pring.h) hand-shakes. */
bool hs__chan_flag_take(uint32_t *flag);

/* Writes 1 to an eventfd (wakes its poller) / empties one (non-blocking). */
void hs__chan_kick(int efd);

/* The full barrier of the sleep/wake handshakes: a side stores its flag
 * (or record), then loads the other's. ThreadSanitizer does not model
 * fences (gcc refuses to build one with -fsanitize=thread), so there a
 * sequentially consistent read-modify-write of one word stands in: those
 * are totally ordered and synchronise with each other, which TSan sees
 * within a process, and on x86 (where the TSan build runs) a locked
 * instruction is a full barrier between processes too. */
#if defined(__SANITIZE_THREAD__)
extern int hs__chan_fence_word;
#define hs__chan_fence() ((void)__atomic_fetch_add(&hs__chan_fence_word, 0, __ATOMIC_SEQ_CST))
#else
#define hs__chan_fence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
void hs__chan_clear(int efd);

#endif
