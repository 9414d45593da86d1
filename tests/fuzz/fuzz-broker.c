/* libFuzzer target over the broker core: decoding plus the session state
 * machine, with three sessions of one broker so that hello / alloc / emit /
 * subscribe / credit / release / list sequences and references across
 * sessions are explored. A fresh broker per input, so every input (and
 * every crash) reproduces on its own.
 *
 * Input (docs/reliability.md describes it too):
 *   byte 0: setup. bits 0-2: session k starts without the automatic
 *           Hello; bits 3-5: session k's peer is uid 65534 (not allowed);
 *           bit 6: quota_bytes 8 KiB; bit 7: quota_tensors 4.
 *   then records: [ctl u8][len u16 le][len bytes], the bytes one datagram.
 *     ctl bits 0-1: session (mod 3); bit 2: "fix up ids": the datagram is
 *     decoded and every tensor id / subscription below 256 in it is
 *     replaced by one the peers were really given (by any session; 0 is
 *     the newest, 1 the one before...);
 *     bit 3: toggle whether the session's peer reads its socket (a peer
 *     that does not read fills its outbox); bit 4: attach an fd;
 *     bit 5: the peer disconnects after this datagram (a fresh session,
 *     with Hello, takes its place); bit 6: the daemon shuts down after
 *     this datagram (ShutdownNotice to all, then hsd_broker_free with the
 *     sessions and all they hold still there; the input ends); bit 7:
 *     for a session on a shared-memory channel, the bytes go through its
 *     ring instead: an even length as one well-framed record, an odd
 *     length written raw at the head, which then moves by the first four
 *     bytes (corrupt headers and indices).
 *   Slot 2's automatic Hello asks for the shared-memory channel, so its
 *   replies and pushes come through the ring (the peer reads it too).
 *
 * Invariants, checked after every datagram: each live tensor's reference
 * count equals what sessions hold plus what subscription queues and
 * held-back emits hold; each session's counters match its maps and lists;
 * the pool's used bytes match the live tensors. After the input, closing
 * every session leaves no tensor, no held-back emit, no subscription, every
 * slab wholly free, and no fd open. A broken invariant aborts. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hs-config.h"
#include "hsbroker/client.h"
#include "hsbroker/error.h"
#include "broker.h"
#include "channel.h"
#include "log.h"
#include "range.h"
#include "request.h"
#include "session.h"

#define FZ_SESSIONS 3
#define FZ_KNOWN 32

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_peer {
	struct hsd_session *s;
	int *sp;        /* [0] the session's end, [1] the peer's */
	bool reading;
	unsigned unread; /* datagrams sent to the peer and not read yet */
	uid_t uid;
	int opened;     /* sessions this slot has had */
};

struct fz {
	struct hsd_broker *b;
	struct fz_peer peer[FZ_SESSIONS];
	uint64_t tensors[FZ_KNOWN];   /* ids the peers were given, a ring */
	unsigned ntensors;
	uint64_t subs[FZ_KNOWN];
	unsigned nsubs;
	bool auto_hello[FZ_SESSIONS];
};

static uint8_t fz_buf[HS__WIRE_MAX_MSG];
static int fz_devnull = -1;
/* One socket pair per slot for the whole process (drained between
 * sessions): syscalls are most of the cost of an input. */
static int fz_pairs[FZ_SESSIONS][2];
static struct fz *fz_current;

/* Linked with -Wl,--wrap=hs__wire_send: counts what each peer has to
 * read, so draining never ends on an empty recvmsg (a syscall). */
int __real_hs__wire_send(int sock, const Hs__Message *msg, const int *fds, int nfds);
int __wrap_hs__wire_send(int sock, const Hs__Message *msg, const int *fds, int nfds);
int __wrap_hs__wire_send(int sock, const Hs__Message *msg, const int *fds, int nfds)
{
	int r = __real_hs__wire_send(sock, msg, fds, nfds);
	if (fz_current && r == 0)
		for (int k = 0; k < FZ_SESSIONS; k++)
			if (fz_pairs[k][0] == sock)
				fz_current->peer[k].unread++;
	return r;
}

#define FZ_CHECK(cond)                                                              \
	do {                                                                        \
		if (!(cond)) {                                                      \
			fprintf(stderr, "fuzz-broker: invariant broken at %s:%d: %s\n", \
				__FILE__, __LINE__, #cond);                         \
			abort();                                                    \
		}                                                                   \
	} while (0)

static void fz_hook_dead(void *data, struct hsd_session *s)
{
	/* Closed after the current datagram, as server.c's reaper does. */
	(void)data;
	(void)s;
}

static void fz_note(uint64_t *ring, unsigned *n, uint64_t id)
{
	ring[*n % FZ_KNOWN] = id;
	(*n)++;
}

/* One message the daemon sent a peer: notes the ids it gives. */
static void fz_seen(struct fz *f, const uint8_t *buf, size_t n)
{
	Hs__Message *m;
	if (hs__wire_decode(buf, n, &m) < 0)
		FZ_CHECK(!"the daemon sent an undecodable message");
	if (m->body_case == HS__MESSAGE__BODY_ALLOC_REPLY && m->alloc_reply->tensor)
		fz_note(f->tensors, &f->ntensors, m->alloc_reply->tensor->id);
	else if (m->body_case == HS__MESSAGE__BODY_DELIVER && m->deliver->tensor)
		fz_note(f->tensors, &f->ntensors, m->deliver->tensor->id);
	else if (m->body_case == HS__MESSAGE__BODY_SUBSCRIBE_REPLY)
		fz_note(f->subs, &f->nsubs, m->subscribe_reply->subscription);
	hs__wire_free(m);
}

/* The peer's end of one ring of its session's channel: the same memory
 * the daemon maps, with the peer's index read from it. */
static struct hs__chan_end fz_peer_end(struct hsd_chan_state *c, bool c2d)
{
	struct hs__chan_hdr *h = c->ch.hdr;
	if (c2d)
		return (struct hs__chan_end){ &h->c2d, c->ch.rx.data, c->ch.rx.size,
					      __atomic_load_n(&h->c2d.head, __ATOMIC_RELAXED) };
	return (struct hs__chan_end){ &h->d2c, c->ch.tx.data, c->ch.tx.size,
				      __atomic_load_n(&h->d2c.tail, __ATOMIC_RELAXED) };
}

/* Reads the records the daemon wrote to the peer's ring (a SOCKET record's
 * datagram is counted in unread and read from the socket). */
static void fz_drain_ring(struct fz *f, struct fz_peer *p)
{
	if (!p->s || !p->s->chan)
		return;
	struct hs__chan_end e = fz_peer_end(p->s->chan, false);
	uint32_t kind;
	int n;
	while ((n = hs__chan_get(&e, fz_buf, &kind)) >= 0)
		if (kind == HS__CHAN_MSG)
			fz_seen(f, fz_buf, (size_t)n);
	FZ_CHECK(n == -EAGAIN); /* the daemon's ring is never corrupt */
}

/* Reads everything the session sent its peer (noting the ids it was
 * given) and lets the session flush its outbox, until both are empty. */
static void fz_drain(struct fz *f, struct fz_peer *p)
{
	for (int round = 0; round < 64; round++) {
		fz_drain_ring(f, p);
		int fds[HS__WIRE_MAX_FDS], nfds = 0, n;
		for (; p->unread; p->unread--) {
			n = hs__wire_recv(p->sp[1], fz_buf, fds, &nfds);
			FZ_CHECK(n > 0);
			hs__wire_close_fds(fds, nfds);
			fz_seen(f, fz_buf, (size_t)n);
		}
		if (!p->s || p->s->dead || !hsd_outbox_first(p->s))
			break;
		hsd_outbox_flush(p->s);
	}
}

/* ctl bit 7: the datagram through the session's channel (see the top). */
static void fz_ring_input(struct fz_peer *p, const uint8_t *msg, size_t len)
{
	struct hs__chan_end e = fz_peer_end(p->s->chan, true);
	uint32_t at = (uint32_t)(e.pos & (e.size - 1));
	uint32_t to_end = e.size - at;
	if (len & 1) {
		memcpy(e.data + at, msg, len < to_end ? len : to_end);
		uint32_t step = 0;
		memcpy(&step, msg, len < sizeof(step) ? len : sizeof(step));
		__atomic_store_n(&e.r->head, e.pos + step, __ATOMIC_RELEASE);
	} else if (len <= HS__CHAN_MAX_RECORD) {
		uint32_t hdr[2] = { (uint32_t)len, HS__CHAN_MSG };
		uint32_t need = (uint32_t)(sizeof(hdr) + ((len + 7) & ~(size_t)7));
		uint64_t used = e.pos - __atomic_load_n(&e.r->tail, __ATOMIC_ACQUIRE);
		uint32_t pad = need > to_end ? to_end : 0;
		if (used > e.size || used + pad + need > e.size)
			return; /* no room: the daemon has not read; drop it */
		if (pad) {
			uint32_t ph[2] = { to_end - (uint32_t)sizeof(ph), HS__CHAN_PAD };
			memcpy(e.data + at, ph, sizeof(ph));
			at = 0;
		}
		memcpy(e.data + at, hdr, sizeof(hdr));
		memcpy(e.data + at + sizeof(hdr), msg, len);
		__atomic_store_n(&e.r->head, e.pos + pad + need, __ATOMIC_RELEASE);
	}
	if (hsd_chan_drain(p->s, 64) < 0)
		hsd_session_kill(p->s, NULL);
}

static void fz_open(struct fz *f, int k)
{
	struct fz_peer *p = &f->peer[k];
	p->reading = true;
	p->unread = 0;
	p->sp = fz_pairs[k];
	FZ_CHECK(hsd_broker_session_open(f->b, p->sp[0], 1000 + k, p->uid, p->uid, &p->s) == 0);
	/* A small send buffer (after the broker's own setting), so that a
	 * peer that does not read fills it within a few dozen messages and
	 * the outbox and its limits come into play. */
	int sndbuf = 16 << 10;
	FZ_CHECK(setsockopt(p->sp[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0);
	if (f->auto_hello[k] || p->opened > 0) {
		Hs__Hello h = HS__HELLO__INIT;
		h.protocol_version = HS_PROTOCOL_VERSION;
		h.client_name = (char *)"fuzz";
		h.want_channel = k == 2;
		Hs__Message m = HS__MESSAGE__INIT;
		m.seq = 1;
		m.body_case = HS__MESSAGE__BODY_HELLO;
		m.hello = &h;
		size_t len = hs__message__pack(&m, fz_buf);
		if (hsd_request_input(p->s, fz_buf, len, NULL, 0) < 0)
			hsd_session_kill(p->s, "hello refused");
	}
	p->opened++;
	fz_drain(f, p);
}

/* Drops what the peer did not read, so the pair is clean for the next
 * session. */
static void fz_discard(struct fz_peer *p)
{
	int fds[HS__WIRE_MAX_FDS], nfds = 0;
	for (; p->unread; p->unread--) {
		FZ_CHECK(hs__wire_recv(p->sp[1], fz_buf, fds, &nfds) > 0);
		hs__wire_close_fds(fds, nfds);
	}
}

static void fz_close(struct fz *f, int k)
{
	struct fz_peer *p = &f->peer[k];
	if (!p->s)
		return;
	if (!p->s->dead)
		hsd_outbox_flush(p->s);
	hsd_broker_session_close(f->b, p->s);
	p->s = NULL;
	fz_discard(p);
}

/* The i-th newest id of a ring that was given n ids (n > 0). */
static uint64_t fz_known(const uint64_t *ring, unsigned n, uint64_t i)
{
	unsigned m = n < FZ_KNOWN ? n : FZ_KNOWN;
	return ring[(n - 1 - (unsigned)(i % m)) % FZ_KNOWN];
}

/* Replaces small ids by ones the peers were given. Returns the length of
 * the re-packed datagram in out, or 0 to send the bytes as they are. */
static size_t fz_fixup(struct fz *f, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	Hs__Message *m;
	if (hs__wire_decode(in, len, &m) < 0)
		return 0;
	bool changed = false;
#define FZ_TENSOR(v)                                                    \
	do {                                                            \
		if ((v) < 256 && f->ntensors) {                         \
			(v) = fz_known(f->tensors, f->ntensors, (v));   \
			changed = true;                                 \
		}                                                       \
	} while (0)
#define FZ_SUB(v)                                                       \
	do {                                                            \
		if ((v) < 256 && f->nsubs) {                            \
			(v) = fz_known(f->subs, f->nsubs, (v));         \
			changed = true;                                 \
		}                                                       \
	} while (0)
	switch (m->body_case) {
	case HS__MESSAGE__BODY_EMIT:
		FZ_TENSOR(m->emit->tensor_id);
		break;
	case HS__MESSAGE__BODY_RELEASE:
		for (size_t i = 0; i < m->release->n_tensor_ids; i++)
			FZ_TENSOR(m->release->tensor_ids[i]);
		break;
	case HS__MESSAGE__BODY_CREDIT:
		FZ_SUB(m->credit->subscription);
		break;
	case HS__MESSAGE__BODY_UNSUBSCRIBE:
		FZ_SUB(m->unsubscribe->subscription);
		break;
	default:
		break;
	}
#undef FZ_TENSOR
#undef FZ_SUB
	size_t n = 0;
	if (changed && hs__message__get_packed_size(m) <= cap)
		n = hs__message__pack(m, out);
	hs__wire_free(m);
	return n;
}

/* Every element of t lies inside its block, computed here apart from
 * proto/meta.c in 128 bits with every quantity bounded first, so a wrap
 * in the daemon's extent cannot hide (issue 11 row 2). */
static bool fz_within(const struct hsd_tensor *t)
{
	typedef unsigned __int128 u128;
	const u128 limit = (u128)1 << 64;
	u128 count = 1;
	for (int32_t i = 0; i < t->ndim; i++) {
		if (t->shape[i] == 0)
			return t->byte_offset <= t->block.length;
		count *= (uint64_t)t->shape[i];
		if (count > limit)
			return false;
	}
	u128 hi = 0, lo = 0;
	if (!t->has_strides)
		hi = count - 1;
	for (int32_t i = 0; t->has_strides && i < t->ndim; i++) {
		int64_t st = t->strides[i];
		u128 mag = st < 0 ? (u128)(-(__int128)st) : (u128)st;
		u128 span = (u128)((uint64_t)t->shape[i] - 1) * mag;
		if (span > limit)
			return false;
		if (st < 0)
			lo += span;
		else
			hi += span;
	}
	/* hi and lo are at most 32 * 2^64 here, elements at most 2^10 bytes */
	u128 esize = hs__dtype_size(t->dtype);
	return lo * esize <= t->byte_offset &&
	       t->byte_offset + (hi + 1) * esize <= (u128)t->block.length;
}

/* The reference counts, counters and pool bookkeeping agree; every
 * tensor fits its block. */
static void fz_check(struct fz *f)
{
	struct hsd_broker *b = f->b;
	struct hsd_tensor_table *tt = &b->tensors;
	uint32_t *expect = tt->n ? calloc(tt->n, sizeof(*expect)) : NULL;
	FZ_CHECK(!tt->n || expect);
	struct hsd_session *s;
	list_for_each(s, &b->sessions, link) {
		uint64_t refs = 0, bytes = 0;
		for (size_t i = 0; i < s->held.cap; i++) {
			if (!s->held.keys[i])
				continue;
			struct hsd_tensor *t;
			FZ_CHECK(hsd_tensor_lookup(tt, s->held.keys[i], &t) == 0);
			FZ_CHECK(s->held.vals[i] > 0);
			refs += s->held.vals[i];
			bytes += hsd_range_round(t->block.length);
			expect[(uint32_t)t->id] += (uint32_t)s->held.vals[i];
		}
		FZ_CHECK(refs == s->refs_held);
		FZ_CHECK(bytes == s->bytes_held);
		uint32_t nsubs = 0, npending = 0;
		struct hsd_sub *sub;
		list_for_each(sub, &s->subs, owner_link) {
			nsubs++;
			FZ_CHECK(sub->owner == s);
			FZ_CHECK(sub->count <= sub->qcap && sub->qcap <= sub->depth);
			for (uint32_t q = 0; q < sub->count; q++) {
				struct hsd_tensor *t = sub->q[(sub->head + q) % sub->qcap].t;
				FZ_CHECK(tt->slots[(uint32_t)t->id] == t);
				expect[(uint32_t)t->id]++;
			}
		}
		struct hsd_pending_emit *pe;
		uint64_t pbytes = 0;
		list_for_each(pe, &s->pending, owner_link) {
			npending++;
			FZ_CHECK(tt->slots[(uint32_t)pe->t->id] == pe->t);
			expect[(uint32_t)pe->t->id]++;
			pbytes += hsd_range_round(pe->bytes);
		}
		FZ_CHECK(nsubs == s->nsubs);
		FZ_CHECK(npending == s->npending);
		FZ_CHECK(pbytes == s->pending_bytes);
	}
	uint32_t live = 0;
	uint64_t used = 0;
	for (uint32_t i = 0; i < tt->n; i++) {
		struct hsd_tensor *t = tt->slots[i];
		if (!t)
			continue;
		live++;
		FZ_CHECK(t->refs > 0);
		FZ_CHECK(fz_within(t));
		FZ_CHECK(t->refs == expect[i]);
		if (t->pool == &b->cpu)
			used += hsd_range_round(t->block.length);
	}
	FZ_CHECK(live == tt->live);
	FZ_CHECK(used == b->cpu.used);
	FZ_CHECK(b->cpu.used <= b->cpu.total);
	free(expect);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* HS_FUZZ_LOG=debug shows what an input does (replay one file). */
	const char *lvl = getenv("HS_FUZZ_LOG");
	int level = lvl ? hsd_log_level_parse(lvl) : -1;
	hsd_log_set_level(level >= 0 ? (enum hsd_log_level)level : LOG_LEVEL_ERROR);
	if (fz_devnull < 0)
		fz_devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	FZ_CHECK(fz_devnull >= 0);
	for (int k = 0; k < FZ_SESSIONS; k++)
		FZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
				    fz_pairs[k]) == 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fz_devnull < 0)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size < 1)
		return 0;
	/* The lowest free fd: any fd left open after the input shows up as a
	 * different number here next time. */
	int probe = dup(fz_devnull);
	FZ_CHECK(probe >= 0);
	close(probe);

	struct fz f = { 0 };
	uint8_t setup = data[0];
	struct hsd_broker_config cfg;
	hsd_broker_config_defaults(&cfg);
	cfg.cpu_slab_size = 64 << 10;
	cfg.cpu_cap = 4 << 20;
	cfg.max_subscriptions = 4;
	cfg.max_tensors = 16;
	cfg.max_topics = 4;
	cfg.max_pending_emits = 4;
	cfg.outbox_max_msgs = 24;
	cfg.outbox_max_bytes = 1 << 20;
	cfg.quota_bytes = setup & 0x40 ? 8 << 10 : 0;
	cfg.quota_tensors = setup & 0x80 ? 4 : 0;
	cfg.allow_uids[cfg.n_allow_uids++] = 0;
	cfg.allow_uids[cfg.n_allow_uids++] = 1000;
	struct hsd_broker_hooks hooks = { .dead = fz_hook_dead, .data = &f };
	FZ_CHECK(hsd_broker_new(&cfg, &hooks, &f.b) == 0);
	fz_current = &f;
	for (int k = 0; k < FZ_SESSIONS; k++) {
		f.auto_hello[k] = !(setup & (1u << k));
		f.peer[k].uid = setup & (8u << k) ? 65534 : 0;
		fz_open(&f, k);
	}
	fz_check(&f);

	static uint8_t fixed[HS__WIRE_MAX_MSG + 64];
	bool shutdown = false;
	size_t off = 1;
	while (off + 3 <= size) {
		uint8_t ctl = data[off];
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
		off += 3;
		if (len > size - off)
			len = size - off;
		const uint8_t *msg = data + off;
		off += len;
		int k = (ctl & 3) % FZ_SESSIONS;
		struct fz_peer *p = &f.peer[k];
		if (ctl & 0x08)
			p->reading = !p->reading;
		if (ctl & 0x04) {
			size_t n = fz_fixup(&f, msg, len, fixed, sizeof(fixed));
			if (n) {
				msg = fixed;
				len = n;
			}
		}
		if (!p->s->dead) {
			int fds[1] = { -1 };
			int nfds = 0;
			if (ctl & 0x10) {
				fds[0] = dup(fz_devnull);
				FZ_CHECK(fds[0] >= 0);
				nfds = 1;
			}
			if ((ctl & 0x80) && p->s->chan) {
				hs__wire_close_fds(fds, nfds);
				fz_ring_input(p, msg, len);
			} else if (hsd_request_input(p->s, msg, len, fds, nfds) < 0) {
				hsd_session_kill(p->s, "hsd_request_input refused the peer");
			}
		}
		for (int j = 0; j < FZ_SESSIONS; j++)
			if (f.peer[j].reading)
				fz_drain(&f, &f.peer[j]);
		fz_check(&f);
		if (ctl & 0x40) {
			hsd_broker_shutdown_notice(f.b, "fuzz");
			shutdown = true;
			break;
		}
		/* Dead sessions are closed (as server.c's reaper does) and the
		 * slot gets a fresh one; so does a peer that hangs up. */
		for (int j = 0; j < FZ_SESSIONS; j++) {
			if (f.peer[j].s->dead || (j == k && (ctl & 0x20))) {
				fz_close(&f, j);
				fz_open(&f, j);
				fz_check(&f);
			}
		}
	}

	struct hsd_broker *b = f.b;
	if (shutdown) {
		/* As main.c does: the broker closes what is left (leaks show
		 * under LeakSanitizer); nothing more to compare. */
		hsd_broker_free(b);
		fz_current = NULL;
		for (int k = 0; k < FZ_SESSIONS; k++)
			fz_discard(&f.peer[k]);
		int after = dup(fz_devnull);
		FZ_CHECK(after >= 0);
		close(after);
		FZ_CHECK(after == probe);
		return 0;
	}
	for (int k = 0; k < FZ_SESSIONS; k++)
		fz_close(&f, k);
	FZ_CHECK(b->nsessions == 0);
	FZ_CHECK(b->tensors.live == 0);
	FZ_CHECK(b->cpu.used == 0 && b->cpu.blocks == 0);
	struct hsd_slab *slab;
	list_for_each(slab, &b->cpu.slabs, link) {
		FZ_CHECK(slab->blocks == 0 && slab->announced == 0);
		FZ_CHECK(hsd_range_largest_free(slab->range) == slab->size);
	}
	struct hsd_topic *tp;
	list_for_each(tp, &b->topics.all, link)
		FZ_CHECK(tp->nsubs == 0 && tp->npending == 0);
	hsd_broker_free(b);
	fz_current = NULL;

	int after = dup(fz_devnull);
	FZ_CHECK(after >= 0);
	close(after);
	FZ_CHECK(after == probe);
	return 0;
}
