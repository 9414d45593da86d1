/* Pair rings (pring.h). Cursors count notes and only grow; a note's slot
 * is its cursor modulo slots. What keeps a slot still while it is read:
 * the producer writes slot head only while head - tail < depth and
 * head - acct < slots, and depth <= slots - HS__PRING_BATCH, so neither
 * a note not yet taken nor one not yet settled is ever overwritten. */
#include "pring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "chan.h"
#include "wire.h"

_Static_assert(sizeof(struct hs__pring_note) == 256, "a note is 256 bytes");
_Static_assert(sizeof(struct hs__pring_hdr) <= HS__PRING_HDR_SIZE, "header too big");

static uint32_t slots_for(uint32_t depth)
{
	uint32_t need = depth + HS__PRING_BATCH, s = 1;
	while (s < need)
		s <<= 1;
	return s;
}

size_t hs__pring_map_size(uint32_t depth)
{
	if (depth == 0 || depth > HS__PRING_MAX_DEPTH)
		return 0;
	return HS__PRING_HDR_SIZE + (size_t)slots_for(depth) * sizeof(struct hs__pring_note);
}

static void view_init(struct hs__pring *r, void *base, size_t size, enum hs__pring_role role,
		      uint64_t ring_id, uint32_t slots, uint32_t depth, uint32_t policy,
		      uint64_t block_timeout_us)
{
	memset(r, 0, sizeof(*r));
	r->hdr = base;
	r->notes = (struct hs__pring_note *)((uint8_t *)base + HS__PRING_HDR_SIZE);
	r->map_size = size;
	r->role = role;
	r->ring_id = ring_id;
	r->slots = slots;
	r->depth = depth;
	r->policy = policy;
	r->block_timeout_us = block_timeout_us;
}

int hs__pring_create(uint64_t ring_id, uint32_t depth, uint32_t policy,
		     uint64_t block_timeout_us, int *fd, struct hs__pring *r)
{
	size_t size = hs__pring_map_size(depth);
	if (!size || policy > HS__PRING_DROP_NEWEST)
		return -EINVAL;
	void *p;
	int f;
	int err = hs__shm_create("hsbroker-pair-ring", size, &f, &p);
	if (err)
		return err;
	struct hs__pring_hdr *h = p;
	h->ring_id = ring_id;
	h->slots = slots_for(depth);
	h->depth = depth;
	h->policy = policy;
	h->note_size = sizeof(struct hs__pring_note);
	h->block_timeout_us = block_timeout_us;
	__atomic_store_n(&h->magic, HS__PRING_MAGIC, __ATOMIC_RELEASE);
	view_init(r, p, size, HS__PRING_DAEMON, ring_id, h->slots, depth, policy,
		  block_timeout_us);
	*fd = f;
	return 0;
}

int hs__pring_map(int fd, enum hs__pring_role role, struct hs__pring *r)
{
	off_t size = lseek(fd, 0, SEEK_END);
	if (size < (off_t)HS__PRING_HDR_SIZE || size > (off_t)hs__pring_map_size(HS__PRING_MAX_DEPTH))
		return -EPROTO;
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	struct hs__pring_hdr *h = p;
	/* One copy of the configuration, checked, and never read again. */
	uint64_t magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
	uint64_t ring_id = h->ring_id, timeout = h->block_timeout_us;
	uint32_t slots = h->slots, depth = h->depth, policy = h->policy;
	uint32_t note_size = h->note_size;
	if (magic != HS__PRING_MAGIC || note_size != sizeof(struct hs__pring_note) ||
	    policy > HS__PRING_DROP_NEWEST || hs__pring_map_size(depth) != (size_t)size ||
	    slots != slots_for(depth)) {
		munmap(p, (size_t)size);
		return -EPROTO;
	}
	view_init(r, p, (size_t)size, role, ring_id, slots, depth, policy, timeout);
	/* Start where the ring is: the own cursor, and the others' as the
	 * lowest they may be seen at from now on. */
	uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
	uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
	uint64_t acct = __atomic_load_n(&h->acct, __ATOMIC_ACQUIRE);
	if (tail > head || acct > head || head - tail > slots || head - acct > slots) {
		munmap(p, (size_t)size);
		return -EPROTO;
	}
	r->seen_tail = tail;
	r->seen_acct = acct;
	switch (role) {
	case HS__PRING_PRODUCER:
		r->pos = head;
		r->drop_pos = __atomic_load_n(&h->drop_head, __ATOMIC_ACQUIRE);
		break;
	case HS__PRING_SUBSCRIBER:
		r->pos = tail;
		r->drop_pos = __atomic_load_n(&h->drop_tail, __ATOMIC_ACQUIRE);
		/* Drops count from the ring's start: the producer may have
		 * written (and dropped) before the subscriber mapped it. */
		r->seen_dropped = 0;
		break;
	case HS__PRING_DAEMON:
		r->pos = acct;
		r->drop_pos = __atomic_load_n(&h->drop_tail, __ATOMIC_ACQUIRE);
		break;
	}
	return 0;
}

void hs__pring_unmap(struct hs__pring *r)
{
	if (r->hdr)
		munmap(r->hdr, r->map_size);
	memset(r, 0, sizeof(*r));
}

int hs__pring_note_check(const struct hs__pring_note *n)
{
	if (n->tensor_id == 0 || n->ndim > HS__PRING_MAX_NDIM || n->has_strides > 1 ||
	    (n->flags & ~HS__PRING_NOTE_LAST) != 0)
		return -EPROTO;
	DLDevice dev = { (DLDeviceType)n->device_type, n->device_id };
	DLDataType dt = { n->dtype_code, n->dtype_bits, n->dtype_lanes };
	uint64_t need;
	if (hs__meta_extent(dev, dt, n->ndim, n->shape, n->has_strides ? n->strides : NULL, 0,
			    &need) != 0 ||
	    need > n->nbytes)
		return -EPROTO;
	return 0;
}

/* A cursor another party publishes, read and checked: it never moves
 * back from *seen, and stays within [lo, hi]. The new value, or -1. */
static int64_t read_cursor(uint64_t *word, uint64_t *seen, uint64_t lo, uint64_t hi)
{
	uint64_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
	if (v < *seen || v < lo || v > hi || v > (uint64_t)INT64_MAX)
		return -1;
	*seen = v;
	return (int64_t)v;
}

bool hs__pring_closed(const struct hs__pring *r)
{
	return __atomic_load_n(&r->hdr->closed, __ATOMIC_ACQUIRE) != 0;
}

/* Producer: 0 when a note fits now, else put's error. */
static int producer_room(struct hs__pring *r, uint32_t over)
{
	if (hs__pring_closed(r))
		return -EPIPE;
	uint64_t lo = r->pos >= r->slots ? r->pos - r->slots : 0;
	int64_t tail = read_cursor(&r->hdr->tail, &r->seen_tail, lo, r->pos);
	int64_t acct = read_cursor(&r->hdr->acct, &r->seen_acct, lo, r->pos);
	if (tail < 0 || acct < 0)
		return -EPROTO;
	if (r->pos - (uint64_t)tail >= (uint64_t)r->depth + over)
		return -EAGAIN;
	if (r->pos - (uint64_t)acct >= r->slots)
		return -ENOBUFS;
	return 0;
}

int hs__pring_put(struct hs__pring *r, const struct hs__pring_note *n, uint32_t over)
{
	if (over > HS__PRING_MAX_OVER)
		over = HS__PRING_MAX_OVER;
	int err = producer_room(r, over);
	if (err)
		return err;
	memcpy(&r->notes[r->pos & (r->slots - 1)], n, sizeof(*n));
	r->pos++;
	__atomic_store_n(&r->hdr->head, r->pos, __ATOMIC_RELEASE);
	return 0;
}

int hs__pring_drop_oldest(struct hs__pring *r, uint64_t *id)
{
	struct hs__pring_hdr *h = r->hdr;
	uint64_t lo = r->pos >= r->slots ? r->pos - r->slots : 0;
	uint64_t seen = r->drop_pos >= HS__PRING_DROP_SLOTS ? r->drop_pos - HS__PRING_DROP_SLOTS : 0;
	int64_t dtail = read_cursor(&h->drop_tail, &seen, 0, r->drop_pos);
	if (dtail < 0)
		return -EPROTO;
	if (r->drop_pos - (uint64_t)dtail >= HS__PRING_DROP_SLOTS)
		return -ENOSPC;
	int64_t tail = read_cursor(&h->tail, &r->seen_tail, lo, r->pos);
	if (tail < 0)
		return -EPROTO;
	if (r->pos == (uint64_t)tail)
		return 0; /* empty: nothing to drop, the put fits */
	/* The producer wrote this slot and nobody else may: its id is
	 * stable until the slot comes round again, long after. */
	uint64_t oldest = __atomic_load_n(&r->notes[(uint64_t)tail & (r->slots - 1)].tensor_id,
					  __ATOMIC_RELAXED);
	uint64_t expect = (uint64_t)tail;
	if (!__atomic_compare_exchange_n(&h->tail, &expect, expect + 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return 0; /* the subscriber took it */
	r->seen_tail = (uint64_t)tail + 1;
	__atomic_store_n(&h->drops[r->drop_pos & (HS__PRING_DROP_SLOTS - 1)], oldest,
			 __ATOMIC_RELAXED);
	r->drop_pos++;
	__atomic_store_n(&h->drop_head, r->drop_pos, __ATOMIC_RELEASE);
	*id = oldest;
	return 1;
}

void hs__pring_count_dropped(struct hs__pring *r, uint64_t n)
{
	/* Only the producer writes it: a plain add, published. */
	uint64_t v = __atomic_load_n(&r->hdr->dropped, __ATOMIC_RELAXED);
	__atomic_store_n(&r->hdr->dropped, v + n, __ATOMIC_RELEASE);
}

bool hs__pring_should_kick(struct hs__pring *r)
{
	/* Pairs with the fence in hs__pring_arm. */
	return hs__chan_flag_take(&r->hdr->armed);
}

bool hs__pring_want_space(struct hs__pring *r, uint32_t over)
{
	if (over > HS__PRING_MAX_OVER)
		over = HS__PRING_MAX_OVER;
	__atomic_store_n(&r->hdr->want_space, 1, __ATOMIC_RELAXED);
	hs__chan_fence();
	int err = producer_room(r, over);
	if (err == -EAGAIN || err == -ENOBUFS)
		return true;
	/* Drop-oldest also waits for the daemon to take dropped ids. */
	uint64_t dtail = __atomic_load_n(&r->hdr->drop_tail, __ATOMIC_ACQUIRE);
	if (r->policy == HS__PRING_DROP_OLDEST && r->drop_pos - dtail >= HS__PRING_DROP_SLOTS &&
	    dtail <= r->drop_pos)
		return true;
	__atomic_store_n(&r->hdr->want_space, 0, __ATOMIC_RELAXED);
	return false;
}

/* head and tail at one moment: tail read before and after head, equal
 * (the producer moves tail too, for drop-oldest, so the two are not
 * read in one go otherwise). 0; -EAGAIN when they kept moving (a peer
 * may move them forever: the caller tries later); -EPROTO when they
 * cannot be. */
static int snapshot(const struct hs__pring *r, uint64_t *head, uint64_t *tail)
{
	for (int i = 0; i < 64; i++) {
		uint64_t t = __atomic_load_n(&r->hdr->tail, __ATOMIC_ACQUIRE);
		uint64_t h = __atomic_load_n(&r->hdr->head, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&r->hdr->tail, __ATOMIC_ACQUIRE) != t)
			continue;
		if (t > h || h - t > r->slots || h > (uint64_t)INT64_MAX)
			return -EPROTO;
		*head = h;
		*tail = t;
		return 0;
	}
	return -EAGAIN;
}

/* Subscriber: the producer's head, with the own tail caught up (the
 * producer may have moved it on: drop-oldest). 0, -EAGAIN, -EPROTO. */
static int subscriber_sync(struct hs__pring *r, uint64_t *head)
{
	uint64_t tail;
	int err = snapshot(r, head, &tail);
	if (err)
		return err;
	if (tail < r->pos)
		return -EPROTO;
	/* Stored atomically: a reader thread of the client may look at it
	 * without the lock the taker holds (hs__pring_pending). */
	__atomic_store_n(&r->pos, tail, __ATOMIC_RELAXED);
	return 0;
}

int hs__pring_peek(struct hs__pring *r, struct hs__pring_note *n)
{
	uint64_t head;
	int err = subscriber_sync(r, &head);
	if (err)
		return err == -EAGAIN ? 0 : err;
	if (head == r->pos)
		return 0;
	memcpy(n, &r->notes[r->pos & (r->slots - 1)], sizeof(*n));
	return 1;
}

int hs__pring_take(struct hs__pring *r)
{
	uint64_t expect = r->pos;
	if (!__atomic_compare_exchange_n(&r->hdr->tail, &expect, expect + 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return 0; /* the producer dropped it */
	__atomic_store_n(&r->pos, r->pos + 1, __ATOMIC_RELAXED);
	return 1;
}

int hs__pring_get(struct hs__pring *r, struct hs__pring_note *n)
{
	for (;;) {
		int got = hs__pring_peek(r, n);
		if (got <= 0)
			return got;
		if (!hs__pring_take(r))
			continue; /* look again */
		/* Taken: it is ours whether or not it checks out, so a bad
		 * one is reported once, after it left the ring. */
		return hs__pring_note_check(n) == 0 ? 1 : -EPROTO;
	}
}

int hs__pring_get_drop(struct hs__pring *r, uint64_t *id)
{
	struct hs__pring_hdr *h = r->hdr;
	uint64_t dhead = __atomic_load_n(&h->drop_head, __ATOMIC_ACQUIRE);
	if (dhead < r->drop_pos || dhead - r->drop_pos > HS__PRING_DROP_SLOTS)
		return -EPROTO;
	if (dhead == r->drop_pos)
		return 0;
	*id = __atomic_load_n(&h->drops[r->drop_pos & (HS__PRING_DROP_SLOTS - 1)],
			      __ATOMIC_RELAXED);
	r->drop_pos++;
	__atomic_store_n(&h->drop_tail, r->drop_pos, __ATOMIC_RELEASE);
	return 1;
}

uint64_t hs__pring_new_drops(struct hs__pring *r)
{
	uint64_t v = __atomic_load_n(&r->hdr->dropped, __ATOMIC_ACQUIRE);
	if (v <= r->seen_dropped)
		return 0; /* never back, and a jump back is ignored */
	uint64_t n = v - r->seen_dropped;
	__atomic_store_n(&r->seen_dropped, v, __ATOMIC_RELAXED);
	return n;
}

bool hs__pring_pending(const struct hs__pring *r)
{
	return __atomic_load_n(&r->hdr->head, __ATOMIC_ACQUIRE) !=
		       __atomic_load_n(&r->pos, __ATOMIC_RELAXED) ||
	       __atomic_load_n(&r->hdr->dropped, __ATOMIC_ACQUIRE) !=
		       __atomic_load_n(&r->seen_dropped, __ATOMIC_RELAXED);
}

bool hs__pring_arm(struct hs__pring *r)
{
	__atomic_store_n(&r->hdr->armed, 1, __ATOMIC_RELAXED);
	hs__chan_fence();
	if (!hs__pring_pending(r))
		return true;
	__atomic_store_n(&r->hdr->armed, 0, __ATOMIC_RELAXED);
	return false;
}

bool hs__pring_space_kick(struct hs__pring *r)
{
	return hs__chan_flag_take(&r->hdr->want_space);
}

int hs__pring_settle(struct hs__pring *r, struct hs__pring_note *n)
{
	uint64_t head = __atomic_load_n(&r->hdr->head, __ATOMIC_ACQUIRE);
	if (head < r->pos || head - r->pos > r->slots)
		return -EPROTO;
	if (head == r->pos)
		return 0;
	memcpy(n, &r->notes[r->pos & (r->slots - 1)], sizeof(*n));
	r->pos++;
	__atomic_store_n(&r->hdr->acct, r->pos, __ATOMIC_RELEASE);
	return hs__pring_note_check(n) == 0 ? 1 : -EPROTO;
}

int64_t hs__pring_queued(struct hs__pring *r)
{
	uint64_t head, tail;
	int err = snapshot(r, &head, &tail);
	return err ? err : (int64_t)(head - tail);
}

void hs__pring_close(struct hs__pring *r)
{
	__atomic_store_n(&r->hdr->closed, 1, __ATOMIC_RELEASE);
}

int hs__pring_page_create(int *fd, struct hs__pring_page **out)
{
	_Static_assert(sizeof(struct hs__pring_page) <= HS__PRING_PAGE_SIZE, "page too big");
	void *p;
	int f;
	int err = hs__shm_create("hsbroker-topic-page", HS__PRING_PAGE_SIZE, &f, &p);
	if (err)
		return err;
	struct hs__pring_page *pg = p;
	__atomic_store_n(&pg->magic, HS__PRING_PAGE_MAGIC, __ATOMIC_RELEASE);
	*fd = f;
	*out = pg;
	return 0;
}

int hs__pring_page_map(int fd, struct hs__pring_page **out)
{
	if (lseek(fd, 0, SEEK_END) != (off_t)HS__PRING_PAGE_SIZE)
		return -EPROTO;
	void *p = mmap(NULL, HS__PRING_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	struct hs__pring_page *pg = p;
	if (__atomic_load_n(&pg->magic, __ATOMIC_ACQUIRE) != HS__PRING_PAGE_MAGIC) {
		munmap(p, HS__PRING_PAGE_SIZE);
		return -EPROTO;
	}
	*out = pg;
	return 0;
}

void hs__pring_page_unmap(struct hs__pring_page *p)
{
	if (p)
		munmap(p, HS__PRING_PAGE_SIZE);
}
