/* The shared-memory channel's rings (proto/chan.c): the daemon's side made
 * with hs__chan_create, the client's side a second mapping of the same
 * memfd through hs__chan_map, as two processes would have. Records both
 * ways, wrap-around with PAD records, a full ring and the want_space
 * hand-shake, the armed/kick pairing (also across threads, where a lost
 * wake-up would hang), and a peer that scribbles on indices and record
 * headers: the reader and the writer must refuse it with -EPROTO. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "unit.h"

#define SIZE HS__CHAN_RING_SIZE
#define MAXREC HS__CHAN_MAX_RECORD

/* The record header as chan.c frames it (docs/protocol.md). */
struct rec_hdr {
	uint32_t len;
	uint32_t kind;
};

static uint32_t rec_size(size_t len)
{
	return (uint32_t)(sizeof(struct rec_hdr) + ((len + 7u) & ~(size_t)7u));
}

static int fd = -1;
static struct hs__chan d; /* the daemon's side: writes d2c, reads c2d */
static struct hs__chan c; /* the client's side: writes c2d, reads d2c */
static int fds_before;
static uint8_t out[MAXREC];

static void setup(void)
{
	fds_before = unit_count_fds();
	ck_assert_int_eq(hs__chan_create(&fd, &d), 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(hs__chan_map(fd, &c), 0);
	/* two mappings: the test really goes through shared memory */
	ck_assert_ptr_ne(c.hdr, d.hdr);
}

static void teardown(void)
{
	hs__chan_unmap(&c);
	hs__chan_unmap(&d);
	close(fd);
	fd = -1;
	ck_assert_int_eq(unit_count_fds(), fds_before);
}

/* ---- messages of a chosen packed size and content ---- */

static uint64_t rng(uint64_t *s)
{
	/* xorshift64*: deterministic, so a record can be rebuilt to check */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

struct msg {
	Hs__Message m;
	Hs__SlabAnnounce sa;
	uint8_t bytes[MAXREC + 64];
	size_t len; /* packed size */
};

/* A SlabAnnounce with an opaque payload: its packed size is exactly want
 * where some seq/payload split reaches it (all but a few tiny sizes), else
 * the largest below; the bytes come from seed. */
static void msg_make(struct msg *x, size_t want, uint64_t seed)
{
	static const uint64_t seqs[] = { 0, 1, 300, 70000 };
	memset(x, 0, sizeof(*x));
	x->m = (Hs__Message)HS__MESSAGE__INIT;
	x->len = 0; /* seq 0, no body: an empty message */
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < want && i < sizeof(x->bytes); i++)
		x->bytes[i] = (uint8_t)rng(&s);
	size_t best_len = 0, best_pl = 0;
	uint64_t best_seq = 0;
	bool body = false;
	for (size_t k = 0; k < 4 && best_len != want; k++) {
		for (size_t pl = want > 16 ? want - 16 : 0; pl <= want; pl++) {
			x->sa = (Hs__SlabAnnounce)HS__SLAB_ANNOUNCE__INIT;
			x->sa.ipc_handle.len = pl;
			x->sa.ipc_handle.data = x->bytes;
			x->m.seq = seqs[k];
			x->m.body_case = HS__MESSAGE__BODY_SLAB;
			x->m.slab = &x->sa;
			size_t n = hs__message__get_packed_size(&x->m);
			if (n <= want && n > best_len) {
				best_len = n;
				best_pl = pl;
				best_seq = seqs[k];
				body = true;
			}
		}
	}
	x->sa = (Hs__SlabAnnounce)HS__SLAB_ANNOUNCE__INIT;
	x->m.seq = 0;
	x->m.body_case = HS__MESSAGE__BODY__NOT_SET;
	if (body) {
		x->sa.ipc_handle.len = best_pl;
		x->sa.ipc_handle.data = x->bytes;
		x->m.seq = best_seq;
		x->m.body_case = HS__MESSAGE__BODY_SLAB;
		x->m.slab = &x->sa;
	}
	x->len = hs__message__get_packed_size(&x->m);
	ck_assert_uint_le(x->len, want);
}

static int put(struct hs__chan_end *e, const struct msg *x)
{
	return hs__chan_put(e, HS__CHAN_MSG, &x->m, x->len);
}

/* The next record must be x, byte for byte. */
static void expect(struct hs__chan_end *e, const struct msg *x)
{
	static uint8_t ref[MAXREC + 64];
	uint32_t kind = 0;
	int n = hs__chan_get(e, out, &kind);
	ck_assert_int_eq(n, (int)x->len);
	ck_assert_uint_eq(kind, HS__CHAN_MSG);
	ck_assert_uint_eq(hs__message__pack(&x->m, ref), x->len);
	ck_assert_int_eq(memcmp(out, ref, x->len), 0);
}

/* Moves one ring, empty, to byte count p: both sides' private index and
 * the shared ones (counts only grow; any value is a state a long-lived
 * session reaches). */
static void ring_at(struct hs__chan_end *w, struct hs__chan_end *r, uint64_t p)
{
	ck_assert_ptr_ne(w->r, r->r); /* two mappings of one ring */
	w->pos = r->pos = p;
	__atomic_store_n(&w->r->head, p, __ATOMIC_RELEASE);
	__atomic_store_n(&r->r->tail, p, __ATOMIC_RELEASE);
}

/* ---- the mapping ---- */

START_TEST(test_layout)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, HS__CHAN_MAP_SIZE);
	/* sealed: the client can neither shrink it under the daemon (SIGBUS)
	 * nor unseal it */
	int seals = fcntl(fd, F_GET_SEALS);
	ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	ck_assert_int_lt(ftruncate(fd, 4096), 0);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_lt(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0);

	ck_assert_uint_eq(c.hdr->magic, HS__CHAN_MAGIC);
	ck_assert_uint_eq(c.hdr->ring_size, SIZE);
	/* each side writes the ring the other reads */
	uint8_t *cb = (uint8_t *)c.hdr, *db = (uint8_t *)d.hdr;
	ck_assert_ptr_eq(c.tx.r, &c.hdr->c2d);
	ck_assert_ptr_eq(c.rx.r, &c.hdr->d2c);
	ck_assert_ptr_eq(d.tx.r, &d.hdr->d2c);
	ck_assert_ptr_eq(d.rx.r, &d.hdr->c2d);
	ck_assert_ptr_eq(c.tx.data, cb + HS__CHAN_HDR_SIZE);
	ck_assert_ptr_eq(c.rx.data, cb + HS__CHAN_HDR_SIZE + SIZE);
	ck_assert_ptr_eq(d.rx.data, db + HS__CHAN_HDR_SIZE);
	ck_assert_ptr_eq(d.tx.data, db + HS__CHAN_HDR_SIZE + SIZE);
	ck_assert_uint_eq(c.tx.size, SIZE);
	ck_assert_uint_eq(d.rx.size, SIZE);
	/* indices, flags on their own cache lines */
	ck_assert_uint_eq((uintptr_t)&c.hdr->c2d.head % 64, 0);
	ck_assert_uint_eq((uintptr_t)&c.hdr->c2d.tail % 64, 0);
	ck_assert_uint_eq((uintptr_t)&c.hdr->c2d.armed % 64, 0);
	ck_assert_uint_eq(c.hdr->c2d.head, 0);
	ck_assert_uint_eq(c.hdr->d2c.tail, 0);
	ck_assert_uint_eq(c.hdr->notes_wake, 0);
	ck_assert(!hs__chan_pending(&c.rx));
	ck_assert(!hs__chan_pending(&d.rx));
	ck_assert_int_eq(hs__chan_get(&c.rx, out, &(uint32_t){ 0 }), -EAGAIN);
	ck_assert_int_eq(hs__chan_get(&d.rx, out, &(uint32_t){ 0 }), -EAGAIN);
}
END_TEST

/* A client that maps late starts where the daemon is. */
START_TEST(test_map_late)
{
	struct msg x;
	msg_make(&x, 100, 1);
	ck_assert_int_eq(put(&d.tx, &x), 0);
	struct hs__chan late;
	ck_assert_int_eq(hs__chan_map(fd, &late), 0);
	ck_assert_uint_eq(late.rx.pos, 0); /* d2c tail: not consumed yet */
	expect(&late.rx, &x);
	hs__chan_unmap(&late);
	ck_assert_ptr_null(late.hdr);
	ck_assert_uint_eq(c.hdr->d2c.tail, rec_size(x.len));
}
END_TEST

START_TEST(test_map_rejects)
{
	/* wrong size */
	int f = memfd_create("not-a-channel", MFD_CLOEXEC);
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(ftruncate(f, 4096), 0);
	struct hs__chan x;
	memset(&x, 0, sizeof(x));
	ck_assert_int_eq(hs__chan_map(f, &x), -EPROTO);
	ck_assert_int_eq(ftruncate(f, HS__CHAN_MAP_SIZE + 4096), 0);
	ck_assert_int_eq(hs__chan_map(f, &x), -EPROTO);
	/* right size, no magic */
	ck_assert_int_eq(ftruncate(f, HS__CHAN_MAP_SIZE), 0);
	ck_assert_int_eq(hs__chan_map(f, &x), -EPROTO);
	/* magic, but another ring size */
	struct hs__chan_hdr h = { .magic = HS__CHAN_MAGIC, .ring_size = SIZE / 2 };
	ck_assert_int_eq(pwrite(f, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(hs__chan_map(f, &x), -EPROTO);
	/* the same header with the right size is accepted */
	h.ring_size = SIZE;
	ck_assert_int_eq(pwrite(f, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(hs__chan_map(f, &x), 0);
	ck_assert_uint_eq(x.rx.size, SIZE);
	hs__chan_unmap(&x);
	/* a wrong magic next to the right size */
	h.magic ^= 1;
	ck_assert_int_eq(pwrite(f, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(hs__chan_map(f, &x), -EPROTO);
	ck_assert_ptr_null(x.hdr);
	close(f);
	/* not a file at all */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(hs__chan_map(p[0], &x), -EPROTO);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* ---- records ---- */

START_TEST(test_both_ways)
{
	/* client -> daemon: a Ping */
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 7;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &ping;
	size_t len = hs__message__get_packed_size(&m);
	ck_assert_int_eq(hs__chan_put(&c.tx, HS__CHAN_MSG, &m, len), 0);
	ck_assert_uint_eq(c.tx.pos, rec_size(len));
	ck_assert_uint_eq(d.hdr->c2d.head, rec_size(len)); /* published */
	ck_assert(hs__chan_pending(&d.rx));
	uint32_t kind = 0;
	int n = hs__chan_get(&d.rx, out, &kind);
	ck_assert_int_eq(n, (int)len);
	ck_assert_uint_eq(kind, HS__CHAN_MSG);
	ck_assert_uint_eq(c.hdr->c2d.tail, rec_size(len));
	ck_assert(!hs__chan_pending(&d.rx));
	Hs__Message *got = hs__message__unpack(NULL, (size_t)n, out);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(got->seq, 7);
	ck_assert_int_eq(got->body_case, HS__MESSAGE__BODY_PING);
	hs__message__free_unpacked(got, NULL);
	ck_assert_int_eq(hs__chan_get(&d.rx, out, &kind), -EAGAIN);

	/* daemon -> client: the OkReply, then a SOCKET mark (no payload) */
	Hs__OkReply ok = HS__OK_REPLY__INIT;
	m = (Hs__Message)HS__MESSAGE__INIT;
	m.seq = 7;
	m.body_case = HS__MESSAGE__BODY_OK;
	m.ok = &ok;
	len = hs__message__get_packed_size(&m);
	ck_assert_int_eq(hs__chan_put(&d.tx, HS__CHAN_MSG, &m, len), 0);
	ck_assert_int_eq(hs__chan_put(&d.tx, HS__CHAN_SOCKET, NULL, 5000), 0);
	ck_assert_uint_eq(c.hdr->d2c.head, rec_size(len) + 8);
	n = hs__chan_get(&c.rx, out, &kind);
	ck_assert_int_eq(n, (int)len);
	ck_assert_uint_eq(kind, HS__CHAN_MSG);
	got = hs__message__unpack(NULL, (size_t)n, out);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(got->seq, 7);
	ck_assert_int_eq(got->body_case, HS__MESSAGE__BODY_OK);
	hs__message__free_unpacked(got, NULL);
	kind = 0;
	ck_assert_int_eq(hs__chan_get(&c.rx, out, &kind), 0);
	ck_assert_uint_eq(kind, HS__CHAN_SOCKET);
	ck_assert_int_eq(hs__chan_get(&c.rx, out, &kind), -EAGAIN);
	/* the rings are separate: nothing leaked into c2d */
	ck_assert_uint_eq(d.hdr->c2d.head, c.tx.pos);
	ck_assert(!hs__chan_pending(&d.rx));
}
END_TEST

/* Record i's size: random up to the largest record, and every 97th the
 * largest exactly. */
static size_t size_of(uint64_t i)
{
	if (i % 97 == 0)
		return MAXREC;
	uint64_t s = i * 7919 + 17;
	return (size_t)(rng(&s) % (MAXREC + 1));
}

/* Random sizes, the writer running ahead of the reader by a random
 * amount, many times round the ring (from byte count start): every record
 * arrives whole and in order, the ring refuses only what does not fit, and
 * wherever a record would cross the ring's end a PAD record fills it. */
static void wrap_random(struct hs__chan_end *w, struct hs__chan_end *r, uint64_t start)
{
	ring_at(w, r, start);
	static struct msg x;
	uint64_t s = 12345, next_put = 0, next_get = 0, pads = 0, full = 0;
	const uint64_t total = 3000;
	while (next_get < total) {
		/* the writer: a burst, until the ring is full */
		uint64_t burst = rng(&s) % 24;
		for (uint64_t i = 0; i < burst && next_put < total; i++) {
			msg_make(&x, size_of(next_put), next_put);
			uint32_t at = (uint32_t)(w->pos & (SIZE - 1));
			uint64_t before = w->pos;
			int rc = put(w, &x);
			if (rc == -EAGAIN) {
				full++;
				ck_assert_uint_eq(w->pos, before);
				ck_assert_uint_eq(w->r->head, before);
				/* it really did not fit */
				uint64_t used = w->pos - r->r->tail;
				uint64_t need = rec_size(x.len) <= SIZE - at ? rec_size(x.len)
									 : SIZE - at + rec_size(x.len);
				ck_assert_uint_gt(used + need, SIZE);
				break;
			}
			ck_assert_int_eq(rc, 0);
			if (rec_size(x.len) > SIZE - at) {
				struct rec_hdr ph;
				memcpy(&ph, w->data + at, sizeof(ph));
				ck_assert_uint_eq(ph.kind, HS__CHAN_PAD);
				ck_assert_uint_eq(ph.len, SIZE - at - sizeof(ph));
				ck_assert_uint_eq(w->pos - before, SIZE - at + rec_size(x.len));
				pads++;
			} else {
				ck_assert_uint_eq(w->pos - before, rec_size(x.len));
			}
			ck_assert_uint_eq(w->r->head, w->pos);
			next_put++;
		}
		/* the reader: a burst, each record checked byte for byte */
		burst = 1 + rng(&s) % 24;
		for (uint64_t i = 0; i < burst && next_get < next_put; i++, next_get++) {
			msg_make(&x, size_of(next_get), next_get);
			expect(r, &x);
			ck_assert_uint_eq(r->r->tail, r->pos);
		}
		if (next_get == next_put) {
			ck_assert(!hs__chan_pending(r));
			ck_assert_int_eq(hs__chan_get(r, out, &(uint32_t){ 0 }), -EAGAIN);
		}
	}
	ck_assert_uint_eq(r->pos, w->pos);
	/* it went round many times, filled up, and padded */
	ck_assert_uint_gt(w->pos - start, 50ull * SIZE);
	ck_assert_uint_gt(full, 10);
	ck_assert_uint_gt(pads, 10);
}

START_TEST(test_wrap_c2d)
{
	wrap_random(&c.tx, &d.rx, 0);
}
END_TEST

/* The other ring, starting just before the byte counts overflow 64 bits
 * and off the ring's start. */
START_TEST(test_wrap_d2c_overflow)
{
	wrap_random(&d.tx, &c.rx, (uint64_t)0 - 3ull * SIZE - 40);
}
END_TEST

START_TEST(test_msgsize)
{
	static struct msg x;
	msg_make(&x, MAXREC + 1, 1);
	ck_assert_uint_eq(x.len, MAXREC + 1);
	ck_assert_int_eq(put(&c.tx, &x), -EMSGSIZE);
	ck_assert_uint_eq(c.tx.pos, 0);
	ck_assert_uint_eq(d.hdr->c2d.head, 0);
	ck_assert(!hs__chan_pending(&d.rx));
	/* the largest that fits */
	msg_make(&x, MAXREC, 2);
	ck_assert_uint_eq(x.len, MAXREC);
	ck_assert_int_eq(put(&c.tx, &x), 0);
	ck_assert_uint_eq(c.tx.pos, MAXREC + 8);
	/* a SOCKET mark carries nothing, whatever the message's size */
	ck_assert_int_eq(hs__chan_put(&c.tx, HS__CHAN_SOCKET, NULL, 10u << 20), 0);
	ck_assert_uint_eq(c.tx.pos, MAXREC + 16);
	expect(&d.rx, &x);
	uint32_t kind = 0;
	ck_assert_int_eq(hs__chan_get(&d.rx, out, &kind), 0);
	ck_assert_uint_eq(kind, HS__CHAN_SOCKET);
}
END_TEST

static bool readable(int efd)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Daemon -> client filled with 64 records of exactly 4 KiB: the ring is
 * full, the daemon asks for room, the client kicks it once it consumed. */
START_TEST(test_full)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(efd, 0);
	static struct msg x, big;
	msg_make(&big, MAXREC, 99);
	for (uint64_t i = 0; i < SIZE / 4096; i++) {
		msg_make(&x, 4096 - 8, i);
		ck_assert_uint_eq(rec_size(x.len), 4096);
		ck_assert_int_eq(put(&d.tx, &x), 0);
	}
	ck_assert_uint_eq(d.tx.pos, SIZE);
	/* full: even an empty record does not fit */
	ck_assert_int_eq(put(&d.tx, &x), -EAGAIN);
	ck_assert_int_eq(hs__chan_put(&d.tx, HS__CHAN_SOCKET, NULL, 0), -EAGAIN);
	ck_assert_uint_eq(d.tx.pos, SIZE);
	ck_assert_uint_eq(c.hdr->d2c.head, SIZE);

	/* nobody waits for room: consuming kicks nobody */
	msg_make(&x, 4096 - 8, 0);
	expect(&c.rx, &x);
	ck_assert(!hs__chan_space_kick(&c.rx));
	/* room for 4 KiB at the ring's start: a small record fits, so the
	 * writer does not wait for it; a large one does not */
	ck_assert(!hs__chan_want_space(&d.tx, 100));
	ck_assert_uint_eq(c.hdr->d2c.want_space, 0);
	ck_assert_int_eq(put(&d.tx, &big), -EAGAIN);
	ck_assert(hs__chan_want_space(&d.tx, big.len));
	ck_assert_uint_eq(c.hdr->d2c.want_space, 1); /* the reader sees it */

	/* the reader consumes and must kick, once */
	msg_make(&x, 4096 - 8, 1);
	expect(&c.rx, &x);
	ck_assert(hs__chan_space_kick(&c.rx));
	hs__chan_kick(efd);
	ck_assert_uint_eq(c.hdr->d2c.want_space, 0);
	ck_assert(!hs__chan_space_kick(&c.rx));
	ck_assert(readable(efd));
	hs__chan_clear(efd);
	ck_assert(!readable(efd));

	/* 8 KiB at the ring's start now: 4 KiB records fit, at byte 0 with
	 * no PAD; the large one still waits */
	ck_assert_int_eq(put(&d.tx, &big), -EAGAIN);
	msg_make(&x, 4096 - 8, 64);
	ck_assert_int_eq(put(&d.tx, &x), 0);
	ck_assert_uint_eq(d.tx.pos, SIZE + 4096);
	msg_make(&x, 4096 - 8, 65);
	ck_assert_int_eq(put(&d.tx, &x), 0);
	ck_assert_int_eq(hs__chan_put(&d.tx, HS__CHAN_SOCKET, NULL, 0), -EAGAIN);

	/* drain everything: the records come in order, across the wrap */
	for (uint64_t i = 2; i < 66; i++) {
		msg_make(&x, 4096 - 8, i);
		expect(&c.rx, &x);
	}
	ck_assert_int_eq(hs__chan_get(&c.rx, out, &(uint32_t){ 0 }), -EAGAIN);
	/* room again: want_space says retry at once and leaves no flag */
	ck_assert(!hs__chan_want_space(&d.tx, big.len));
	ck_assert_uint_eq(c.hdr->d2c.want_space, 0);
	ck_assert_int_eq(put(&d.tx, &big), 0);
	expect(&c.rx, &big);
	close(efd);
}
END_TEST

/* ---- the armed flag ---- */

static void arm_pair(struct hs__chan_end *w, struct hs__chan_end *r, uint32_t *armed_seen_by_w)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(efd, 0);
	static struct msg x;
	msg_make(&x, 64, 5);
	/* a reader that is not asleep is not kicked */
	ck_assert_int_eq(put(w, &x), 0);
	ck_assert(!hs__chan_should_kick(w));
	/* arming with a record waiting: do not sleep, not armed */
	ck_assert(!hs__chan_arm(r));
	ck_assert_uint_eq(__atomic_load_n(armed_seen_by_w, __ATOMIC_RELAXED), 0);
	ck_assert(!hs__chan_should_kick(w));
	expect(r, &x);

	/* empty: the reader may sleep, armed */
	ck_assert(hs__chan_arm(r));
	ck_assert_uint_eq(__atomic_load_n(armed_seen_by_w, __ATOMIC_RELAXED), 1);
	ck_assert(!readable(efd));
	ck_assert_int_eq(put(w, &x), 0);
	/* the writer kicks once, and clears the flag */
	ck_assert(hs__chan_should_kick(w));
	hs__chan_kick(efd);
	ck_assert_uint_eq(__atomic_load_n(armed_seen_by_w, __ATOMIC_RELAXED), 0);
	ck_assert(!hs__chan_should_kick(w));
	ck_assert(readable(efd));
	hs__chan_clear(efd);
	ck_assert(!readable(efd));
	expect(r, &x);

	/* kicks add up in the eventfd; one clear empties it */
	hs__chan_kick(efd);
	hs__chan_kick(efd);
	uint64_t v = 0;
	ck_assert_int_eq(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	ck_assert_uint_eq(v, 2);
	hs__chan_kick(efd);
	hs__chan_clear(efd);
	ck_assert(!readable(efd));
	close(efd);
}

START_TEST(test_arm_d2c)
{
	arm_pair(&d.tx, &c.rx, &d.hdr->d2c.armed);
}
END_TEST

START_TEST(test_arm_c2d)
{
	arm_pair(&c.tx, &d.rx, &c.hdr->c2d.armed);
}
END_TEST

/* Writer and reader in two threads, each with its own mapping, sleeping
 * on eventfds only as the flags say: a lost wake-up (for data or for
 * room) leaves one of them asleep past the deadline. */
#define STREAM_N 60000
#define SLEEP_MS 20000

struct stream {
	struct hs__chan_end *w;
	int efd_data, efd_space;
	const char *fail;
	uint64_t sleeps;
};

static size_t stream_size(uint64_t i)
{
	uint64_t s = i + 1;
	return i % 501 == 0 ? MAXREC : (size_t)(rng(&s) % 700);
}

static bool sleep_on(int efd)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };
	if (poll(&p, 1, SLEEP_MS) != 1)
		return false;
	hs__chan_clear(efd);
	return true;
}

static void *stream_writer(void *arg)
{
	struct stream *st = arg;
	static struct msg x;
	for (uint64_t i = 0; i < STREAM_N; i++) {
		msg_make(&x, stream_size(i), i);
		for (;;) {
			int rc = put(st->w, &x);
			if (rc == 0)
				break;
			if (rc != -EAGAIN) {
				st->fail = "put failed";
				return NULL;
			}
			if (hs__chan_want_space(st->w, x.len)) {
				st->sleeps++;
				if (!sleep_on(st->efd_space)) {
					st->fail = "writer never woken for room";
					return NULL;
				}
			}
		}
		if (hs__chan_should_kick(st->w))
			hs__chan_kick(st->efd_data);
	}
	return NULL;
}

START_TEST(test_stream_threads)
{
	struct stream st = { .w = &d.tx };
	st.efd_data = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	st.efd_space = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(st.efd_data, 0);
	ck_assert_int_ge(st.efd_space, 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, stream_writer, &st), 0);
	static struct msg x;
	static uint8_t ref[MAXREC + 64];
	uint64_t got = 0, sleeps = 0, bad = 0;
	const char *fail = NULL;
	while (got < STREAM_N && !fail) {
		uint32_t kind = 0;
		int n = hs__chan_get(&c.rx, out, &kind);
		if (n >= 0) {
			msg_make(&x, stream_size(got), got);
			hs__message__pack(&x.m, ref);
			if (kind != HS__CHAN_MSG || (size_t)n != x.len || memcmp(out, ref, x.len))
				bad++;
			got++;
			/* every few records, as a reader drains in batches */
			if ((got % 7 == 0 || !hs__chan_pending(&c.rx)) && hs__chan_space_kick(&c.rx))
				hs__chan_kick(st.efd_space);
			continue;
		}
		if (n != -EAGAIN) {
			fail = "get failed";
			break;
		}
		if (hs__chan_space_kick(&c.rx))
			hs__chan_kick(st.efd_space);
		if (hs__chan_arm(&c.rx)) {
			sleeps++;
			if (!sleep_on(st.efd_data))
				fail = "reader never woken for data";
		}
	}
	if (fail) /* unblock a writer waiting for room, so join returns */
		hs__chan_kick(st.efd_space);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(!fail, "%s after %llu records", fail, (unsigned long long)got);
	ck_assert_msg(!st.fail, "%s", st.fail);
	ck_assert_uint_eq(got, STREAM_N);
	ck_assert_uint_eq(bad, 0);
	ck_assert(!hs__chan_pending(&c.rx));
	fprintf(stderr, "stream: reader slept %llu times, writer %llu\n",
		(unsigned long long)sleeps, (unsigned long long)st.sleeps);
	close(st.efd_data);
	close(st.efd_space);
}
END_TEST

/* ---- a peer that corrupts the ring ---- */

/* The client (hostile) scribbles on c2d; the daemon reads it. */
static void set_head(uint64_t v)
{
	__atomic_store_n(&c.hdr->c2d.head, v, __ATOMIC_RELEASE);
}

static void expect_eproto_get(uint64_t pos)
{
	uint32_t kind = 12345;
	ck_assert_int_eq(hs__chan_get(&d.rx, out, &kind), -EPROTO);
	/* nothing consumed, nothing published */
	ck_assert_uint_eq(d.rx.pos, pos);
	ck_assert_uint_eq(d.hdr->c2d.tail, pos);
	ck_assert_uint_eq(kind, 12345);
}

START_TEST(test_corrupt_head)
{
	/* head beyond tail + ring size */
	set_head(SIZE + 8);
	expect_eproto_get(0);
	set_head(~(uint64_t)7);
	expect_eproto_get(0);
	/* unaligned */
	set_head(4);
	expect_eproto_get(0);
	/* a valid record, then its head nudged off the 8-byte grid: refused
	 * whole, then taken once the head is right again */
	static struct msg x;
	msg_make(&x, 200, 3);
	ck_assert_int_eq(put(&c.tx, &x), 0);
	set_head(c.tx.pos + 3);
	expect_eproto_get(0);
	set_head(c.tx.pos + SIZE);
	expect_eproto_get(0);
	set_head(c.tx.pos);
	expect(&d.rx, &x);
	/* head moved back behind what the daemon consumed */
	uint64_t pos = d.rx.pos;
	set_head(pos - 8);
	expect_eproto_get(pos);
	set_head(0);
	expect_eproto_get(pos);
	/* exactly one full ring ahead is the most a writer can be */
	ring_at(&c.tx, &d.rx, 5 * SIZE);
	for (uint64_t i = 0; i < SIZE / 4096; i++) {
		msg_make(&x, 4096 - 8, i);
		ck_assert_int_eq(put(&c.tx, &x), 0);
	}
	ck_assert_uint_eq(c.hdr->c2d.head, 6 * SIZE);
	set_head(6 * SIZE + 8);
	expect_eproto_get(5 * SIZE);
	set_head(6 * SIZE);
	msg_make(&x, 4096 - 8, 0);
	expect(&d.rx, &x);
}
END_TEST

/* Writes a record header at the reader's position + off in c2d. */
static void scribble_hdr(uint32_t off, uint32_t len, uint32_t kind)
{
	struct rec_hdr h = { len, kind };
	uint32_t at = (uint32_t)((d.rx.pos + off) & (SIZE - 1));
	memcpy(c.tx.data + at, &h, sizeof(h));
}

START_TEST(test_corrupt_record)
{
	static struct msg x;
	msg_make(&x, 200, 4);
	ck_assert_int_eq(put(&c.tx, &x), 0);
	uint64_t head = c.tx.pos;
	/* bad kinds */
	static const uint32_t kinds[] = { 0, 4, 0x80000001u, 0xffffffffu };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		scribble_hdr(0, (uint32_t)x.len, kinds[i]);
		expect_eproto_get(0);
	}
	/* a length past the largest record, with head saying it is all
	 * there */
	scribble_hdr(0, MAXREC + 1, HS__CHAN_MSG);
	set_head(rec_size(MAXREC + 1));
	expect_eproto_get(0);
	scribble_hdr(0, 0xfffffff8u, HS__CHAN_MSG); /* rec_size would wrap */
	set_head(SIZE);
	expect_eproto_get(0);
	/* a length past head */
	set_head(head);
	scribble_hdr(0, (uint32_t)x.len + 8, HS__CHAN_MSG);
	expect_eproto_get(0);
	/* repaired, it is read as written */
	scribble_hdr(0, (uint32_t)x.len, HS__CHAN_MSG);
	expect(&d.rx, &x);

	/* a record crossing the ring's end: 16 bytes before it, 64 claimed,
	 * head covering them */
	ring_at(&c.tx, &d.rx, 2 * SIZE - 16);
	scribble_hdr(0, 64, HS__CHAN_MSG);
	set_head(d.rx.pos + 16 + rec_size(64));
	expect_eproto_get(2 * SIZE - 16);
	scribble_hdr(0, 8, HS__CHAN_SOCKET); /* 16 bytes: it fits exactly */
	uint32_t kind = 0;
	ck_assert_int_eq(hs__chan_get(&d.rx, out, &kind), 8);
	ck_assert_uint_eq(kind, HS__CHAN_SOCKET);
	ck_assert_uint_eq(d.rx.pos, 2 * SIZE);

	/* a PAD that claims the ring's end while head says less is there */
	ring_at(&c.tx, &d.rx, 3 * SIZE - 64);
	scribble_hdr(0, 56, HS__CHAN_PAD);
	set_head(d.rx.pos + 32);
	expect_eproto_get(3 * SIZE - 64);
	/* with head past the end, the PAD is skipped and the next record,
	 * at the ring's start, read */
	struct rec_hdr h = { 0, HS__CHAN_SOCKET };
	memcpy(c.tx.data, &h, sizeof(h));
	set_head(3 * SIZE + 8);
	kind = 0;
	ck_assert_int_eq(hs__chan_get(&d.rx, out, &kind), 0);
	ck_assert_uint_eq(kind, HS__CHAN_SOCKET);
	ck_assert_uint_eq(d.rx.pos, 3 * SIZE + 8);
	ck_assert_uint_eq(d.hdr->c2d.tail, 3 * SIZE + 8);
}
END_TEST

/* The client scribbles on d2c's tail; the daemon writes. */
static void expect_eproto_put(void)
{
	static struct msg x;
	msg_make(&x, 100, 6);
	uint64_t pos = d.tx.pos;
	ck_assert_int_eq(put(&d.tx, &x), -EPROTO);
	ck_assert_int_eq(hs__chan_put(&d.tx, HS__CHAN_SOCKET, NULL, 0), -EPROTO);
	ck_assert_uint_eq(d.tx.pos, pos);
	ck_assert_uint_eq(c.hdr->d2c.head, pos);
	/* a writer that finds no room must not sleep on a corrupt index: it
	 * retries at once and meets -EPROTO */
	ck_assert(!hs__chan_want_space(&d.tx, x.len));
	ck_assert_uint_eq(c.hdr->d2c.want_space, 0);
}

static void set_tail(uint64_t v)
{
	__atomic_store_n(&c.hdr->d2c.tail, v, __ATOMIC_RELEASE);
}

START_TEST(test_corrupt_tail)
{
	static struct msg x;
	msg_make(&x, 300, 7);
	ck_assert_int_eq(put(&d.tx, &x), 0);
	uint64_t head = d.tx.pos;
	/* ahead of what was written */
	set_tail(head + 8);
	expect_eproto_put();
	set_tail(head + SIZE);
	expect_eproto_put();
	/* unaligned */
	set_tail(3);
	expect_eproto_put();
	set_tail(head - 1);
	expect_eproto_put();
	/* repaired: writes go on */
	set_tail(0);
	ck_assert_int_eq(put(&d.tx, &x), 0);
	expect(&c.rx, &x);
	expect(&c.rx, &x);

	/* after going round a few times, the tail moved back by more than a
	 * ring */
	ring_at(&d.tx, &c.rx, 4 * SIZE + 512);
	ck_assert_int_eq(put(&d.tx, &x), 0);
	expect(&c.rx, &x);
	head = d.tx.pos;
	set_tail(0);
	expect_eproto_put();
	set_tail(head - SIZE - 8);
	expect_eproto_put();
	/* back by exactly a ring reads as a full ring: no room, no error */
	set_tail(head - SIZE);
	ck_assert_int_eq(put(&d.tx, &x), -EAGAIN);
	set_tail(head);
	ck_assert_int_eq(put(&d.tx, &x), 0);
	expect(&c.rx, &x);
}
END_TEST

/* A peer that rewrites head and record headers while the daemon reads:
 * every answer is a whole record within bounds, -EAGAIN or -EPROTO, and
 * (under ASan) no read strays outside the mapping or the buffer. */
struct scribbler {
	struct hs__chan *ch; /* the client's mapping */
	volatile int stop;
	uint64_t writes;
};

static void *scribble(void *arg)
{
	struct scribbler *sc = arg;
	uint64_t s = 777;
	while (!sc->stop) {
		/* near where the daemon reads, so records look plausible */
		uint64_t pos = __atomic_load_n(&sc->ch->tx.r->tail, __ATOMIC_ACQUIRE);
		uint64_t v = rng(&s);
		uint32_t at = (uint32_t)((pos + (v >> 40) % 4096 * 8) & (SIZE - 1));
		struct rec_hdr h = { (uint32_t)(rng(&s) % (MAXREC + 64)), 1 + (uint32_t)(v % 4) };
		if (v % 5 == 0)
			h.len = (uint32_t)rng(&s);
		memcpy(sc->ch->tx.data + at, &h, sizeof(h));
		uint64_t head = pos + (rng(&s) % (SIZE / 8 + 4)) * 8;
		if (v % 11 == 0)
			head = rng(&s);
		__atomic_store_n(&sc->ch->tx.r->head, head, __ATOMIC_RELEASE);
		sc->writes++;
	}
	return NULL;
}

START_TEST(test_scribbler_race)
{
	struct scribbler sc = { .ch = &c };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, scribble, &sc), 0);
	uint64_t ok = 0, eproto = 0, eagain = 0, other = 0, pads = 0;
	int64_t end = 0;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	end = ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 700;
	for (uint64_t i = 0;; i++) {
		uint64_t before = d.rx.pos;
		uint32_t kind = 0;
		int n = hs__chan_get(&d.rx, out, &kind);
		if (n >= 0) {
			if (n > (int)MAXREC || (kind != HS__CHAN_MSG && kind != HS__CHAN_SOCKET))
				other++;
			ok++;
		} else if (n == -EPROTO) {
			eproto++;
		} else if (n == -EAGAIN) {
			eagain++;
		} else {
			other++;
		}
		if (d.rx.pos % 8 || d.rx.pos - before > SIZE)
			other++;
		if (d.rx.pos - before > (uint64_t)(n >= 0 ? rec_size((size_t)n) : 0))
			pads++;
		if (i % 1024 == 0) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			if (ts.tv_sec * 1000 + ts.tv_nsec / 1000000 > end)
				break;
		}
	}
	sc.stop = 1;
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	fprintf(stderr, "scribbler: %llu records, %llu -EPROTO, %llu -EAGAIN, %llu pads, %llu writes\n",
		(unsigned long long)ok, (unsigned long long)eproto, (unsigned long long)eagain,
		(unsigned long long)pads, (unsigned long long)sc.writes);
	ck_assert_uint_eq(other, 0);
	/* it exercised both outcomes */
	ck_assert_uint_gt(ok, 0);
	ck_assert_uint_gt(eproto, 0);
}
END_TEST

static Suite *chan_suite(void)
{
	Suite *s = suite_create("chan");
	TCase *tc = tcase_create("chan");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_map_late);
	tcase_add_test(tc, test_map_rejects);
	tcase_add_test(tc, test_both_ways);
	tcase_add_test(tc, test_wrap_c2d);
	tcase_add_test(tc, test_wrap_d2c_overflow);
	tcase_add_test(tc, test_msgsize);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_arm_d2c);
	tcase_add_test(tc, test_arm_c2d);
	tcase_add_test(tc, test_stream_threads);
	tcase_add_test(tc, test_corrupt_head);
	tcase_add_test(tc, test_corrupt_record);
	tcase_add_test(tc, test_corrupt_tail);
	tcase_add_test(tc, test_scribbler_race);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(chan_suite)
