/* Pair rings: one producer session's tensor notes for one subscription,
 * in shared memory, without the daemon relaying them (docs/design.md,
 * "Tensor notes from producer to subscriber: pair rings").
 *
 * One sealed memfd per pair, made by the daemon: a header, then `slots`
 * fixed-size notes, each a binary TensorRef. Three parties each own one
 * cursor, each on its own cache line: the producer writes notes and
 * publishes `head`, the subscriber takes them and publishes `tail`, the
 * daemon settles them (turns each into a reference in its books) and
 * publishes `acct`. Each party keeps its cursor privately and only
 * publishes it; everything it reads from the others is checked (within
 * `slots` of its own, never moving back), and a note is copied out before
 * it is checked, so a peer that scribbles on the memory meanwhile can make
 * a read fail (-EPROTO) but not go wrong. The sizes and the policy are
 * copied out of the header once, at map time.
 *
 * Drop-oldest: the producer moves `tail` on by a compare-and-swap, as the
 * subscriber does when it takes a note, so each note goes to exactly one
 * of them; the producer then puts the dropped id on a small ring of its
 * own (drops) for the daemon to release on the subscriber's behalf (a
 * subscriber that does not read must not stop the drops).
 *
 * Wake-ups as in proto/chan.h: a sleeper arms its flag, fences, looks
 * again, then sleeps on its eventfd; the other side kicks only when it
 * swaps the flag from 1 to 0. `armed`: the subscriber waits for notes.
 * `want_space`: the producer waits for room (the subscriber or, when the
 * daemon's settling is what is missing, the daemon kicks it). No locks,
 * no waits on a word alone. */
#ifndef HS_PROTO_PRING_H
#define HS_PROTO_PRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#define HS__PRING_MAGIC 0x31766e7272737368ULL /* "hssrrnv1" */
/* Dimensions a note carries; a tensor with more takes the relay. */
#define HS__PRING_MAX_NDIM 12
/* Notes the producer may write past what the daemon settled, beyond the
 * queue's depth: the daemon is woken for settling once per this many. */
#define HS__PRING_BATCH 64u
/* Dropped ids the producer can leave for the subscriber. */
#define HS__PRING_DROP_SLOTS 64u
/* Notes a producer may queue past depth (hs__pring_put's over): what
 * the daemon would hold back of a producer's posted emits. */
#define HS__PRING_MAX_OVER 8u
/* The largest depth a pair ring takes (SUB_MAX_DEPTH). */
#define HS__PRING_MAX_DEPTH 65536u
#define HS__PRING_HDR_SIZE 4096u

/* One tensor as the subscriber receives it: what a Deliver's TensorRef
 * says. 256 bytes. */
struct hs__pring_note {
	uint64_t tensor_id;
	uint64_t seq;
	uint64_t slab_id;
	uint64_t offset;       /* of the block in its slab */
	uint64_t nbytes;       /* the block's length */
	uint64_t fence_event;  /* device tensors: the ready fence; 0 host */
	int32_t device_type;
	int32_t device_id;
	uint8_t dtype_code;
	uint8_t dtype_bits;
	uint16_t dtype_lanes;
	uint8_t ndim;
	uint8_t has_strides;
	uint16_t flags;        /* HS__PRING_NOTE_* */
	int64_t shape[HS__PRING_MAX_NDIM];
	int64_t strides[HS__PRING_MAX_NDIM];
};

/* The producer's own reference goes with this note: the daemon drops it
 * once it settled every ring of the producer (the emit's last note). */
#define HS__PRING_NOTE_LAST 1u

/* Queue policies, as Hs__Policy numbers them. */
enum {
	HS__PRING_BLOCK = 0,
	HS__PRING_DROP_OLDEST = 1,
	HS__PRING_DROP_NEWEST = 2,
};

struct hs__pring_hdr {
	/* Written by the daemon before it hands the ring out; copied once
	 * by each end at map time. */
	uint64_t magic;
	uint64_t ring_id;
	uint32_t slots;        /* a power of two, >= depth + HS__PRING_BATCH */
	uint32_t depth;        /* notes the producer may have queued */
	uint32_t policy;
	uint32_t note_size;
	uint64_t block_timeout_us;
	/* The producer's: notes written, notes dropped (drop-newest, full
	 * drop ring, stalled block), dropped ids written. */
	_Alignas(64) uint64_t head;
	uint64_t dropped;
	uint64_t drop_head;
	/* The subscriber's (the producer moves it too, by CAS, to drop the
	 * oldest): notes taken. */
	_Alignas(64) uint64_t tail;
	/* The daemon's: dropped ids taken. */
	_Alignas(64) uint64_t drop_tail;
	/* The daemon's: notes settled. */
	_Alignas(64) uint64_t acct;
	/* The daemon's: 1 once the pair is gone (unsubscribed, or an end
	 * died): the producer stops writing. */
	uint32_t closed;
	/* Sleep flags (see the top of this file). */
	_Alignas(64) uint32_t armed;
	_Alignas(64) uint32_t want_space;
	_Alignas(64) uint64_t drops[HS__PRING_DROP_SLOTS];
};

/* Who maps a ring: what a party may write, and which cursor is its own. */
enum hs__pring_role {
	HS__PRING_DAEMON,
	HS__PRING_PRODUCER,
	HS__PRING_SUBSCRIBER,
};

/* One party's view of a mapped ring. */
struct hs__pring {
	struct hs__pring_hdr *hdr;
	struct hs__pring_note *notes;
	size_t map_size;
	enum hs__pring_role role;
	uint64_t ring_id;
	uint32_t slots, depth, policy;
	uint64_t block_timeout_us;
	uint64_t pos;          /* this party's cursor: head, tail or acct */
	uint64_t drop_pos;     /* drop_head (producer) or drop_tail (daemon) */
	uint64_t seen_tail;    /* the highest tail read (producer, daemon) */
	uint64_t seen_acct;    /* the highest acct read (producer) */
	uint64_t seen_dropped; /* the subscriber: dropped already counted */
};

/* The map size of a ring for depth: 0 for a depth out of range. */
size_t hs__pring_map_size(uint32_t depth);

/* Daemon: makes, sizes and seals a ring's memfd and maps it: 0 with *fd,
 * or a negative errno (-EINVAL: depth 0 or past HS__PRING_MAX_DEPTH, or
 * an unknown policy). */
int hs__pring_create(uint64_t ring_id, uint32_t depth, uint32_t policy,
		     uint64_t block_timeout_us, int *fd, struct hs__pring *r);
/* Maps a ring received from the daemon and checks its header: 0, -EPROTO
 * for one that is not a sound ring, or a negative errno. The cursors
 * start where they are now. */
int hs__pring_map(int fd, enum hs__pring_role role, struct hs__pring *r);
void hs__pring_unmap(struct hs__pring *r);

/* Checks a note's contents, copied out: a tensor id, a known device, a
 * dtype, ndim within HS__PRING_MAX_NDIM, and a shape and strides that
 * stay within nbytes. 0 or -EPROTO. (Whether the slab is one the reader
 * knows, and whether nbytes fits in it, is the reader's to check.) */
int hs__pring_note_check(const struct hs__pring_note *n);

/* Producer: writes one note and publishes it. 0; -EAGAIN when the queue
 * holds depth + over notes (over: at most HS__PRING_MAX_OVER; the policy
 * decides); -ENOBUFS when the daemon has
 * not settled enough (kick it, then wait for space); -EPIPE when the
 * daemon closed the ring; -EPROTO when a cursor read back is corrupt. */
int hs__pring_put(struct hs__pring *r, const struct hs__pring_note *n, uint32_t over);
/* Producer, drop-oldest on a full queue: takes the oldest note back from
 * the subscriber and leaves its id on the drop ring. 1 with *id when it
 * dropped one, 0 when the subscriber took it first (try the put again),
 * -ENOSPC when the drop ring is full (kick the daemon, wait for space),
 * -EPROTO. */
int hs__pring_drop_oldest(struct hs__pring *r, uint64_t *id);
/* Producer: counts n dropped notes (the subscriber reports them; it
 * wakes for them as for a note: kick if hs__pring_should_kick says so). */
void hs__pring_count_dropped(struct hs__pring *r, uint64_t n);
/* Producer, after a put: true when the subscriber sleeps and the caller
 * must kick its data eventfd. */
bool hs__pring_should_kick(struct hs__pring *r);
/* Producer that got -EAGAIN, -ENOBUFS or (drop_oldest) -ENOSPC: asks
 * to be kicked on its space eventfd. false when room appeared meanwhile
 * (retry at once). */
bool hs__pring_want_space(struct hs__pring *r, uint32_t over);

/* Subscriber: copies the next note out, checks it, and takes it. 1 with
 * *n, 0 when there is none, -EPROTO when a cursor or the note is corrupt
 * (the ring is not used again). */
int hs__pring_get(struct hs__pring *r, struct hs__pring_note *n);
/* The same in two steps, to look before choosing: peek copies the next
 * note out (1, 0 when none, -EPROTO; not checked, not taken), take takes
 * it (1) unless the producer dropped it meanwhile (0: peek again). A
 * taken note is the caller's to check (hs__pring_note_check). */
int hs__pring_peek(struct hs__pring *r, struct hs__pring_note *n);
int hs__pring_take(struct hs__pring *r);
/* Daemon: the next id the producer dropped (the daemon releases it for
 * the subscriber). 1 with *id, 0 when none, -EPROTO. */
int hs__pring_get_drop(struct hs__pring *r, uint64_t *id);
/* Subscriber: notes the producer dropped since the last call. */
uint64_t hs__pring_new_drops(struct hs__pring *r);
/* Subscriber: true when a note or a new drop count waits. May run in
 * another thread than the one taking notes (it reads their cursor
 * atomically); only one thread takes at a time. */
bool hs__pring_pending(const struct hs__pring *r);
/* Subscriber, before sleeping: arms; false when something arrived
 * meanwhile (do not sleep). */
bool hs__pring_arm(struct hs__pring *r);
/* Subscriber after taking, daemon after settling: true when the producer
 * waits for room and the caller must kick its space eventfd. */
bool hs__pring_space_kick(struct hs__pring *r);

/* Daemon: the next note not yet settled, copied out and checked, and
 * settled (acct published). 1 with *n, 0 when none, -EPROTO. */
int hs__pring_settle(struct hs__pring *r, struct hs__pring_note *n);
/* Daemon: notes written and not yet taken (hsctl ls), or -EPROTO, or
 * -EAGAIN when the cursors kept moving while it looked. */
int64_t hs__pring_queued(struct hs__pring *r);
/* Daemon: the pair is gone; the producer stops writing. */
void hs__pring_close(struct hs__pring *r);
/* Any party: whether the daemon closed the ring. */
bool hs__pring_closed(const struct hs__pring *r);

/* A topic page: the topic's sequence counter while it has pair rings,
 * shared by the daemon and the topic's ring producers (all take numbers
 * with an atomic add), and the route generation the daemon bumps when the
 * topic's subscriptions change (a producer whose route is older asks the
 * daemon again before it writes). HS__PRING_GEN_GONE: the topic was
 * freed; a producer asks again and gets a new page. */
#define HS__PRING_PAGE_MAGIC 0x31766770737368ULL /* "hsspgv1" */
#define HS__PRING_PAGE_SIZE 4096u
#define HS__PRING_GEN_GONE UINT64_MAX

struct hs__pring_page {
	uint64_t magic;
	_Alignas(64) uint64_t seq;
	_Alignas(64) uint64_t gen;
};

/* Daemon: a sealed page (0 with *fd and *out, or a negative errno). */
int hs__pring_page_create(int *fd, struct hs__pring_page **out);
/* Producer: maps a page received from the daemon (0, -EPROTO, -errno). */
int hs__pring_page_map(int fd, struct hs__pring_page **out);
void hs__pring_page_unmap(struct hs__pring_page *p);

#endif
