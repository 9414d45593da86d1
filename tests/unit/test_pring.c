/* Pair rings (proto/pring.c): the daemon's side made with
 * hs__pring_create, the producer's and the subscriber's sides second and
 * third mappings of the same memfd, as three processes would have. Notes
 * in order, the queue's depth, the daemon's settling holding the producer
 * back, drop-oldest by compare-and-swap with the drop ring, the sleep
 * hand-shakes (also across threads, where a lost wake-up would hang), a
 * closed ring, the note checks, and a peer that writes garbage cursors and
 * notes: every reader must refuse it (-EPROTO) or read only notes that
 * check out, never anything else. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pring.h"
#include "chan.h"
#include "unit.h"

static int fd = -1;
static struct hs__pring d, p, s; /* daemon, producer, subscriber */
static int fds_before;

static void setup(void)
{
	fds_before = unit_count_fds();
}

static void open_ring(uint32_t depth, uint32_t policy)
{
	ck_assert_int_eq(hs__pring_create(42, depth, policy, 0, &fd, &d), 0);
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_PRODUCER, &p), 0);
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_SUBSCRIBER, &s), 0);
	ck_assert_ptr_ne(p.hdr, s.hdr);
	ck_assert_ptr_ne(p.hdr, d.hdr);
}

static void teardown(void)
{
	hs__pring_unmap(&s);
	hs__pring_unmap(&p);
	hs__pring_unmap(&d);
	if (fd >= 0)
		close(fd);
	fd = -1;
	ck_assert_int_eq(unit_count_fds(), fds_before);
}

/* A sound note for tensor id: a float32 vector of 4 elements. */
static struct hs__pring_note note(uint64_t id, uint64_t seq)
{
	struct hs__pring_note n;
	memset(&n, 0, sizeof(n));
	n.tensor_id = id;
	n.seq = seq;
	n.slab_id = 3;
	n.offset = 256 * id;
	n.nbytes = 16;
	n.device_type = kDLCPU;
	n.dtype_code = kDLFloat;
	n.dtype_bits = 32;
	n.dtype_lanes = 1;
	n.ndim = 1;
	n.shape[0] = 4;
	return n;
}

static uint64_t rng(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* ---- layout and mapping ---- */

START_TEST(test_layout)
{
	open_ring(8, HS__PRING_BLOCK);
	ck_assert_uint_eq(p.slots, 128); /* 8 + 64, rounded up */
	ck_assert_uint_eq(s.depth, 8);
	ck_assert_uint_eq(s.policy, HS__PRING_BLOCK);
	ck_assert_uint_eq(s.ring_id, 42);
	ck_assert_uint_eq(p.map_size, hs__pring_map_size(8));
	ck_assert_uint_eq(p.map_size, HS__PRING_HDR_SIZE + 128 * 256);
	/* sealed: nobody can grow or shrink it under the others */
	ck_assert_int_lt(ftruncate(fd, 1 << 20), 0);
	ck_assert_int_lt(ftruncate(fd, 4096), 0);
	/* the configuration is copied: changing it later changes nothing */
	d.hdr->depth = 100;
	d.hdr->slots = 7;
	d.hdr->policy = 9;
	ck_assert_uint_eq(p.depth, 8);
	ck_assert_uint_eq(s.slots, 128);
	ck_assert_int_eq(hs__pring_map_size(0), 0);
	ck_assert_int_eq(hs__pring_map_size(HS__PRING_MAX_DEPTH + 1), 0);
	int f2;
	struct hs__pring x;
	ck_assert_int_eq(hs__pring_create(1, 0, 0, 0, &f2, &x), -EINVAL);
	ck_assert_int_eq(hs__pring_create(1, 4, 3, 0, &f2, &x), -EINVAL);
}
END_TEST

START_TEST(test_map_rejects)
{
	open_ring(4, HS__PRING_BLOCK);
	struct hs__pring x;
	/* the header no longer matches its size, or is not a ring at all */
	d.hdr->depth = 1000;
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_SUBSCRIBER, &x), -EPROTO);
	d.hdr->depth = 4;
	d.hdr->note_size = 128;
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_SUBSCRIBER, &x), -EPROTO);
	d.hdr->note_size = 256;
	d.hdr->magic ^= 1;
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_SUBSCRIBER, &x), -EPROTO);
	d.hdr->magic ^= 1;
	/* cursors that cannot be */
	d.hdr->tail = 5;
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_PRODUCER, &x), -EPROTO);
	d.hdr->head = 5 + 1000;
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_PRODUCER, &x), -EPROTO);
	d.hdr->head = 5;
	ck_assert_int_eq(hs__pring_map(fd, HS__PRING_PRODUCER, &x), 0);
	ck_assert_uint_eq(x.pos, 5);
	hs__pring_unmap(&x);
	/* a file of the wrong size, a pipe */
	int f = memfd_create("x", MFD_CLOEXEC);
	ck_assert_int_eq(ftruncate(f, 100), 0);
	ck_assert_int_eq(hs__pring_map(f, HS__PRING_SUBSCRIBER, &x), -EPROTO);
	close(f);
	int pp[2];
	ck_assert_int_eq(pipe(pp), 0);
	ck_assert_int_eq(hs__pring_map(pp[0], HS__PRING_SUBSCRIBER, &x), -EPROTO);
	close(pp[0]);
	close(pp[1]);
}
END_TEST

/* ---- notes ---- */

START_TEST(test_in_order)
{
	open_ring(4, HS__PRING_BLOCK);
	struct hs__pring_note n;
	ck_assert_int_eq(hs__pring_get(&s, &n), 0);
	ck_assert(!hs__pring_pending(&s));
	for (uint64_t round = 0; round < 300; round++) {
		/* up to depth in flight, many times round the slots */
		uint64_t k = round % 4 + 1;
		for (uint64_t i = 0; i < k; i++) {
			struct hs__pring_note w = note(round * 10 + i + 1, round * 10 + i);
			ck_assert_int_eq(hs__pring_put(&p, &w, 0), 0);
		}
		ck_assert(hs__pring_pending(&s));
		ck_assert_int_eq(hs__pring_queued(&d), (int64_t)k);
		for (uint64_t i = 0; i < k; i++) {
			ck_assert_int_eq(hs__pring_get(&s, &n), 1);
			ck_assert_uint_eq(n.tensor_id, round * 10 + i + 1);
			ck_assert_uint_eq(n.seq, round * 10 + i);
			ck_assert_uint_eq(n.shape[0], 4);
		}
		ck_assert_int_eq(hs__pring_get(&s, &n), 0);
		/* the daemon settles the same notes, in the same order */
		for (uint64_t i = 0; i < k; i++) {
			ck_assert_int_eq(hs__pring_settle(&d, &n), 1);
			ck_assert_uint_eq(n.tensor_id, round * 10 + i + 1);
		}
		ck_assert_int_eq(hs__pring_settle(&d, &n), 0);
	}
	ck_assert_uint_eq(d.hdr->head, d.hdr->tail);
	ck_assert_uint_eq(d.hdr->head, d.hdr->acct);
}
END_TEST

START_TEST(test_depth_and_settling)
{
	open_ring(2, HS__PRING_BLOCK);
	struct hs__pring_note n = note(1, 1), got;
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	/* the queue holds depth notes */
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), -EAGAIN);
	ck_assert(hs__pring_want_space(&p, 0));
	ck_assert_int_eq(hs__pring_get(&s, &got), 1);
	ck_assert(hs__pring_space_kick(&s));  /* the producer waits: kick */
	ck_assert(!hs__pring_space_kick(&s)); /* once */
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	/* the subscriber keeps up but the daemon settles nothing: the
	 * producer stops slots notes past what is settled */
	uint32_t written = 3;
	for (;;) {
		ck_assert_int_eq(hs__pring_get(&s, &got), 1);
		int r = hs__pring_put(&p, &n, 0);
		if (r == -ENOBUFS)
			break;
		ck_assert_int_eq(r, 0);
		written++;
	}
	ck_assert_uint_eq(written, p.slots);
	ck_assert(hs__pring_want_space(&p, 0));
	/* one note settled is room for one more, and the daemon kicks */
	ck_assert_int_eq(hs__pring_settle(&d, &got), 1);
	ck_assert(hs__pring_space_kick(&d));
	ck_assert(!hs__pring_want_space(&p, 0)); /* room now: no sleep */
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	ck_assert_int_eq(hs__pring_get(&s, &got), 1); /* the queue has room */
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), -ENOBUFS);
	while (hs__pring_settle(&d, &got) == 1)
		;
	ck_assert_uint_eq(d.hdr->acct, p.pos);
}
END_TEST

START_TEST(test_drop_oldest)
{
	open_ring(3, HS__PRING_DROP_OLDEST);
	struct hs__pring_note got;
	uint64_t id = 0;
	/* nothing to drop in an empty ring */
	ck_assert_int_eq(hs__pring_drop_oldest(&p, &id), 0);
	for (uint64_t i = 1; i <= 3; i++) {
		struct hs__pring_note n = note(i, i);
		ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	}
	ck_assert(hs__pring_arm(&s) == false); /* notes wait: no sleep */
	struct hs__pring_note n4 = note(4, 4);
	ck_assert_int_eq(hs__pring_put(&p, &n4, 0), -EAGAIN);
	ck_assert_int_eq(hs__pring_drop_oldest(&p, &id), 1);
	ck_assert_uint_eq(id, 1);
	hs__pring_count_dropped(&p, 1);
	ck_assert_int_eq(hs__pring_put(&p, &n4, 0), 0);
	ck_assert_uint_eq(hs__pring_new_drops(&s), 1);
	ck_assert_uint_eq(hs__pring_new_drops(&s), 0);
	/* the subscriber gets 2, 3, 4; the daemon releases dropped 1 */
	uint64_t drop;
	ck_assert_int_eq(hs__pring_get_drop(&d, &drop), 1);
	ck_assert_uint_eq(drop, 1);
	ck_assert_int_eq(hs__pring_get_drop(&d, &drop), 0);
	for (uint64_t i = 2; i <= 4; i++) {
		ck_assert_int_eq(hs__pring_get(&s, &got), 1);
		ck_assert_uint_eq(got.tensor_id, i);
	}
	ck_assert_int_eq(hs__pring_get(&s, &got), 0);
	/* the daemon settles all four: each was a reference once */
	for (uint64_t i = 1; i <= 4; i++) {
		ck_assert_int_eq(hs__pring_settle(&d, &got), 1);
		ck_assert_uint_eq(got.tensor_id, i);
	}
	/* a daemon that does not take the drops: the drop ring fills */
	uint64_t next = 10;
	int r;
	while ((r = hs__pring_drop_oldest(&p, &id)) != -ENOSPC) {
		struct hs__pring_note n = note(next, next);
		next++;
		if (r == 0) {
			ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
			while (hs__pring_settle(&d, &got) == 1)
				;
		}
	}
	ck_assert_uint_eq(p.drop_pos - d.drop_pos, HS__PRING_DROP_SLOTS);
	ck_assert(hs__pring_want_space(&p, 0)); /* it waits for the daemon */
}
END_TEST

START_TEST(test_arm_kick)
{
	open_ring(4, HS__PRING_DROP_NEWEST);
	ck_assert(hs__pring_arm(&s)); /* empty: may sleep */
	struct hs__pring_note n = note(1, 1);
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	ck_assert(hs__pring_should_kick(&p));
	ck_assert(!hs__pring_should_kick(&p)); /* one kick */
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	ck_assert(!hs__pring_should_kick(&p)); /* awake: no kick */
	/* a dropped id alone also wakes */
	struct hs__pring_note got;
	while (hs__pring_get(&s, &got) == 1)
		;
	ck_assert(hs__pring_arm(&s));
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), 0);
	ck_assert(hs__pring_should_kick(&p));
	/* closed: the producer stops, everyone can tell */
	ck_assert(!hs__pring_closed(&p));
	hs__pring_close(&d);
	ck_assert(hs__pring_closed(&s));
	ck_assert_int_eq(hs__pring_put(&p, &n, 0), -EPIPE);
	/* what was written can still be read */
	ck_assert_int_eq(hs__pring_get(&s, &got), 1);
}
END_TEST

START_TEST(test_note_check)
{
	struct hs__pring_note n = note(5, 1);
	ck_assert_int_eq(hs__pring_note_check(&n), 0);
	n.ndim = HS__PRING_MAX_NDIM + 1;
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.tensor_id = 0;
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.nbytes = 15; /* 4 floats do not fit */
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.shape[0] = -1;
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.dtype_bits = 0;
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.device_type = 1000;
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.flags = HS__PRING_NOTE_LAST;
	ck_assert_int_eq(hs__pring_note_check(&n), 0);
	n.flags = 2; /* unknown */
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.has_strides = 2;
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n = note(5, 1);
	n.has_strides = 1;
	n.strides[0] = 2; /* reaches 28 bytes: past 16 */
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n.strides[0] = -1; /* below the block */
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
	n.strides[0] = 1;
	ck_assert_int_eq(hs__pring_note_check(&n), 0);
	n.shape[0] = INT64_MAX; /* the element count overflows */
	n.nbytes = UINT64_MAX;
	ck_assert_int_eq(hs__pring_note_check(&n), -EPROTO);
}
END_TEST

/* ---- garbage ---- */

/* A note whose every field is random (and sometimes sound). */
static void scribble_note(struct hs__pring_note *w, uint64_t *x)
{
	uint64_t *words = (uint64_t *)w;
	for (size_t i = 0; i < sizeof(*w) / 8; i++)
		words[i] = rng(x);
	if (rng(x) % 3 == 0) {
		struct hs__pring_note ok = note(rng(x) | 1, rng(x));
		memcpy(w, &ok, sizeof(ok));
		if (rng(x) % 2)
			w->shape[0] = (int64_t)(rng(x) % 64) - 8;
	}
}

/* A value near v, or anywhere. */
static uint64_t near(uint64_t v, uint64_t *x)
{
	switch (rng(x) % 4) {
	case 0: return rng(x);
	case 1: return v + rng(x) % 300;
	case 2: return v - rng(x) % 300;
	default: return v;
	}
}

START_TEST(test_garbage)
{
	open_ring(16, HS__PRING_DROP_OLDEST);
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	struct hs__pring_hdr *h = d.hdr;
	uint64_t counts[8] = { 0 };
	for (int iter = 0; iter < 200000; iter++) {
		/* a peer of the uid writes anything anywhere it can */
		switch (rng(&x) % 8) {
		case 0: h->head = near(h->head, &x); break;
		case 1: h->tail = near(h->tail, &x); break;
		case 2: h->acct = near(h->acct, &x); break;
		case 3: h->drop_head = near(h->drop_head, &x); break;
		case 4: h->drop_tail = near(h->drop_tail, &x); break;
		case 5: h->dropped = near(h->dropped, &x); break;
		default:
			scribble_note(&d.notes[rng(&x) % d.slots], &x);
		}
		/* ... and each reader either refuses or reads a sound note */
		struct hs__pring_note n;
		uint64_t id;
		int r;
		switch (rng(&x) % 6) {
		case 0:
			r = hs__pring_get(&s, &n);
			ck_assert(r == 1 || r == 0 || r == -EPROTO);
			if (r == 1)
				ck_assert_int_eq(hs__pring_note_check(&n), 0);
			counts[r == 1 ? 0 : r == 0 ? 1 : 2]++;
			break;
		case 1:
			r = hs__pring_settle(&d, &n);
			ck_assert(r == 1 || r == 0 || r == -EPROTO);
			if (r == 1)
				ck_assert_int_eq(hs__pring_note_check(&n), 0);
			counts[r == 1 ? 3 : 4]++;
			break;
		case 2: {
			struct hs__pring_note w = note(7, 7);
			r = hs__pring_put(&p, &w, 0);
			ck_assert(r == 0 || r == -EAGAIN || r == -ENOBUFS || r == -EPROTO);
			counts[r == 0 ? 5 : 6]++;
			break;
		}
		case 3:
			r = hs__pring_drop_oldest(&p, &id);
			ck_assert(r == 1 || r == 0 || r == -ENOSPC || r == -EPROTO);
			break;
		case 4:
			r = hs__pring_get_drop(&d, &id);
			ck_assert(r == 1 || r == 0 || r == -EPROTO);
			break;
		default:
			(void)hs__pring_new_drops(&s);
			int64_t q = hs__pring_queued(&d);
			ck_assert(q == -EPROTO || q == -EAGAIN || (q >= 0 && q <= (int64_t)d.slots));
			counts[7]++;
		}
		/* the private cursors never leave what the ring can hold */
		ck_assert_uint_le(p.pos - p.seen_tail, p.slots);
		if (iter % 1000 == 0) {
			/* start the parties over from a sane state, sometimes */
			h->head = h->tail = h->acct = p.pos = s.pos = d.pos = 0;
			h->drop_head = h->drop_tail = p.drop_pos = d.drop_pos = 0;
			p.seen_tail = p.seen_acct = 0;
		}
	}
	fprintf(stderr, "garbage: get %llu/%llu/%llu settle %llu/%llu put %llu/%llu\n",
		(unsigned long long)counts[0], (unsigned long long)counts[1],
		(unsigned long long)counts[2], (unsigned long long)counts[3],
		(unsigned long long)counts[4], (unsigned long long)counts[5],
		(unsigned long long)counts[6]);
	/* both outcomes happened: it read some, refused some */
	ck_assert_uint_gt(counts[0], 0);
	ck_assert_uint_gt(counts[2], 0);
	ck_assert_uint_gt(counts[5], 0);
}
END_TEST

/* ---- three threads, as three processes ---- */

#define STREAM_N 200000u

struct party {
	struct hs__pring *r;
	int efd_data, efd_space;
	uint64_t got, drops, bad;
	bool done;
};

static void sleep_on(int efd)
{
	struct pollfd pf = { .fd = efd, .events = POLLIN };
	/* a lost wake-up would hang: fail instead */
	ck_assert_int_eq(poll(&pf, 1, 10000), 1);
	hs__chan_clear(efd);
}

static struct party prod_party, sub_party;
static int settler_stop; /* atomic */

static void *producer_main(void *arg)
{
	struct party *me = arg;
	for (uint64_t i = 1; i <= STREAM_N; i++) {
		struct hs__pring_note n = note(i, i);
		for (;;) {
			int r = hs__pring_put(me->r, &n, 0);
			if (r == 0)
				break;
			ck_assert(r == -EAGAIN || r == -ENOBUFS);
			uint64_t id;
			if (r == -EAGAIN && me->r->policy == HS__PRING_DROP_OLDEST) {
				r = hs__pring_drop_oldest(me->r, &id);
				if (r != -ENOSPC) {
					ck_assert_int_ge(r, 0);
					if (r == 1) {
						hs__pring_count_dropped(me->r, 1);
						if (hs__pring_should_kick(me->r))
							hs__chan_kick(me->efd_data);
					}
					continue;
				}
				/* the settler has not taken the drops: wait */
				if (hs__pring_want_space(me->r, 0))
					sleep_on(me->efd_space);
				continue;
			}
			if (hs__pring_want_space(me->r, 0))
				sleep_on(me->efd_space);
		}
		if (hs__pring_should_kick(me->r))
			hs__chan_kick(me->efd_data);
	}
	return NULL;
}

static void *settler_main(void *arg)
{
	struct party *prod = arg;
	struct hs__pring_note n;
	while (!__atomic_load_n(&settler_stop, __ATOMIC_ACQUIRE)) {
		int r;
		while ((r = hs__pring_settle(&d, &n)) == 1)
			;
		ck_assert_int_eq(r, 0);
		uint64_t id;
		while ((r = hs__pring_get_drop(&d, &id)) == 1)
			ck_assert_uint_gt(id, 0);
		ck_assert_int_eq(r, 0);
		if (hs__pring_space_kick(&d))
			hs__chan_kick(prod->efd_space);
		usleep(50);
	}
	return NULL;
}

static void stream(uint32_t depth, uint32_t policy)
{
	open_ring(depth, policy);
	prod_party = (struct party){ &p, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
				     eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), 0, 0, 0, false };
	sub_party = prod_party;
	sub_party.r = &s;
	__atomic_store_n(&settler_stop, 0, __ATOMIC_RELEASE);
	pthread_t tp, td;
	ck_assert_int_eq(pthread_create(&tp, NULL, producer_main, &prod_party), 0);
	ck_assert_int_eq(pthread_create(&td, NULL, settler_main, &prod_party), 0);
	uint64_t last = 0, seen = 0, dropped = 0;
	while (seen + dropped < STREAM_N) {
		struct hs__pring_note n;
		uint64_t id;
		int r = hs__pring_get(&s, &n);
		ck_assert_int_ge(r, 0);
		if (r == 1) {
			ck_assert_uint_gt(n.seq, last); /* in order, none twice */
			last = n.seq;
			seen++;
			if (hs__pring_space_kick(&s))
				hs__chan_kick(sub_party.efd_space);
			if (policy == HS__PRING_DROP_OLDEST && seen % 1000 == 0)
				usleep(200); /* a slow reader: the producer drops */
			continue;
		}
		(void)id;
		dropped += hs__pring_new_drops(&s);
		if (seen + dropped < STREAM_N && hs__pring_arm(&s))
			sleep_on(sub_party.efd_data);
	}
	ck_assert_int_eq(pthread_join(tp, NULL), 0);
	__atomic_store_n(&settler_stop, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(td, NULL), 0);
	fprintf(stderr, "stream depth %u policy %u: %llu taken, %llu dropped\n", depth, policy,
		(unsigned long long)seen, (unsigned long long)dropped);
	/* every note went to exactly one of them */
	ck_assert_uint_eq(seen + dropped, STREAM_N);
	if (policy == HS__PRING_BLOCK)
		ck_assert_uint_eq(dropped, 0);
	close(prod_party.efd_data);
	close(prod_party.efd_space);
}

START_TEST(test_stream_block)
{
	stream(1, HS__PRING_BLOCK);
}
END_TEST

START_TEST(test_stream_block_deep)
{
	stream(64, HS__PRING_BLOCK);
}
END_TEST

START_TEST(test_stream_drop_oldest)
{
	stream(4, HS__PRING_DROP_OLDEST);
}
END_TEST

static Suite *pring_suite(void)
{
	Suite *su = suite_create("pring");
	TCase *tc = tcase_create("pring");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_map_rejects);
	tcase_add_test(tc, test_in_order);
	tcase_add_test(tc, test_depth_and_settling);
	tcase_add_test(tc, test_drop_oldest);
	tcase_add_test(tc, test_arm_kick);
	tcase_add_test(tc, test_note_check);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_stream_block);
	tcase_add_test(tc, test_stream_block_deep);
	tcase_add_test(tc, test_stream_drop_oldest);
	suite_add_tcase(su, tc);
	return su;
}

UNIT_MAIN(pring_suite)
