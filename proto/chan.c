/* Rings of framed records in shared memory. A record is an 8-byte header
 * (payload length, kind) and the payload padded to 8 bytes; it never
 * wraps: a PAD record fills the ring's end instead. Indices count bytes
 * and only grow, so head - tail is what is in the ring. */
#include "chan.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

struct rec_hdr {
	uint32_t len;
	uint32_t kind;
};

static uint32_t rec_size(size_t len)
{
	return (uint32_t)(sizeof(struct rec_hdr) + ((len + 7u) & ~(size_t)7u));
}

static void ends_init(struct hs__chan *ch, uint8_t *base, bool daemon)
{
	struct hs__chan_hdr *h = (struct hs__chan_hdr *)base;
	struct hs__chan_end c2d = { &h->c2d, base + HS__CHAN_HDR_SIZE, h->ring_size, 0 };
	struct hs__chan_end d2c = { &h->d2c, base + HS__CHAN_HDR_SIZE + h->ring_size,
				    h->ring_size, 0 };
	ch->hdr = h;
	ch->tx = daemon ? d2c : c2d;
	ch->rx = daemon ? c2d : d2c;
}

int hs__shm_create(const char *name, size_t size, int *fd, void **map)
{
	int f = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (f < 0)
		return -errno;
	int err = 0;
	if (ftruncate(f, (off_t)size) < 0 ||
	    fcntl(f, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		err = -errno;
	void *p = MAP_FAILED;
	if (!err) {
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
		if (p == MAP_FAILED)
			err = -errno;
	}
	if (err) {
		close(f);
		return err;
	}
	*fd = f;
	*map = p;
	return 0;
}

int hs__chan_create(int *fd, struct hs__chan *ch)
{
	_Static_assert(sizeof(struct hs__chan_hdr) <= HS__CHAN_HDR_SIZE, "header too big");
	void *p;
	int f;
	int err = hs__shm_create("hsbroker-channel", HS__CHAN_MAP_SIZE, &f, &p);
	if (err)
		return err;
	struct hs__chan_hdr *h = p;
	h->magic = HS__CHAN_MAGIC;
	h->ring_size = HS__CHAN_RING_SIZE;
	ends_init(ch, p, true);
	*fd = f;
	return 0;
}

int hs__chan_map(int fd, struct hs__chan *ch)
{
	off_t size = lseek(fd, 0, SEEK_END);
	if (size != (off_t)HS__CHAN_MAP_SIZE)
		return -EPROTO;
	void *p = mmap(NULL, HS__CHAN_MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	struct hs__chan_hdr *h = p;
	if (h->magic != HS__CHAN_MAGIC || h->ring_size != HS__CHAN_RING_SIZE) {
		munmap(p, HS__CHAN_MAP_SIZE);
		return -EPROTO;
	}
	ends_init(ch, p, false);
	/* Start where the daemon is (it may have written already). */
	ch->tx.pos = __atomic_load_n(&h->c2d.head, __ATOMIC_ACQUIRE);
	ch->rx.pos = __atomic_load_n(&h->d2c.tail, __ATOMIC_ACQUIRE);
	return 0;
}

void hs__chan_unmap(struct hs__chan *ch)
{
	if (ch->hdr)
		munmap(ch->hdr, HS__CHAN_MAP_SIZE);
	memset(ch, 0, sizeof(*ch));
}

/* Bytes in use as the writer sees them, or -1 when the reader's index is
 * impossible. */
static int64_t used_by_writer(const struct hs__chan_end *e)
{
	uint64_t tail = __atomic_load_n(&e->r->tail, __ATOMIC_ACQUIRE);
	uint64_t used = e->pos - tail;
	if (used > e->size || (tail & 7u))
		return -1;
	return (int64_t)used;
}

/* Bytes a record of len takes at the writer's position, PAD included. */
static uint64_t room_needed(const struct hs__chan_end *e, size_t len)
{
	uint32_t need = rec_size(len);
	uint32_t at = (uint32_t)(e->pos & (e->size - 1));
	return need <= e->size - at ? need : (uint64_t)(e->size - at) + need;
}

/* Room for a record of len payload bytes at the head (a PAD written first
 * when it would cross the end): its payload's address, or NULL with *err.
 * Nothing is published until commit(). */
static uint8_t *reserve(struct hs__chan_end *e, uint32_t kind, size_t len, int *err)
{
	if (len > HS__CHAN_MAX_RECORD) {
		*err = -EMSGSIZE;
		return NULL;
	}
	int64_t used = used_by_writer(e);
	if (used < 0 || (uint64_t)used + room_needed(e, len) > e->size) {
		*err = used < 0 ? -EPROTO : -EAGAIN;
		return NULL;
	}
	uint32_t at = (uint32_t)(e->pos & (e->size - 1));
	if (rec_size(len) > e->size - at) {
		struct rec_hdr pad = { e->size - at - (uint32_t)sizeof(pad), HS__CHAN_PAD };
		memcpy(e->data + at, &pad, sizeof(pad));
		e->pos += e->size - at;
		at = 0;
	}
	struct rec_hdr h = { (uint32_t)len, kind };
	memcpy(e->data + at, &h, sizeof(h));
	return e->data + at + sizeof(h);
}

static void commit(struct hs__chan_end *e, size_t len)
{
	e->pos += rec_size(len);
	__atomic_store_n(&e->r->head, e->pos, __ATOMIC_RELEASE);
}

int hs__chan_put(struct hs__chan_end *e, uint32_t kind, const Hs__Message *msg,
		 size_t packed_len)
{
	size_t len = msg ? packed_len : 0;
	int err;
	uint8_t *p = reserve(e, kind, len, &err);
	if (!p)
		return err;
	if (msg)
		hs__message__pack(msg, p);
	commit(e, len);
	return 0;
}

int hs__chan_put_bytes(struct hs__chan_end *e, uint32_t kind, const uint8_t *bytes, size_t len)
{
	int err;
	uint8_t *p = reserve(e, kind, len, &err);
	if (!p)
		return err;
	memcpy(p, bytes, len);
	commit(e, len);
	return 0;
}

int hs__chan_get(struct hs__chan_end *e, uint8_t *out, uint32_t *kind)
{
	for (;;) {
		uint64_t head = __atomic_load_n(&e->r->head, __ATOMIC_ACQUIRE);
		uint64_t avail = head - e->pos;
		if (avail == 0)
			return -EAGAIN;
		if (avail > e->size || (avail & 7u))
			return -EPROTO;
		uint32_t at = (uint32_t)(e->pos & (e->size - 1));
		uint32_t to_end = e->size - at;
		struct rec_hdr h;
		/* One copy of the header: the writer may change the memory
		 * under us, so what is checked is what is used. */
		memcpy(&h, e->data + at, sizeof(h));
		if (h.kind == HS__CHAN_PAD) {
			if (to_end > avail)
				return -EPROTO;
			e->pos += to_end;
			__atomic_store_n(&e->r->tail, e->pos, __ATOMIC_RELEASE);
			continue;
		}
		if ((h.kind != HS__CHAN_MSG && h.kind != HS__CHAN_SOCKET) ||
		    h.len > HS__CHAN_MAX_RECORD)
			return -EPROTO;
		uint32_t need = rec_size(h.len);
		if (need > avail || need > to_end)
			return -EPROTO;
		memcpy(out, e->data + at + sizeof(h), h.len);
		e->pos += need;
		__atomic_store_n(&e->r->tail, e->pos, __ATOMIC_RELEASE);
		*kind = h.kind;
		return (int)h.len;
	}
}

#if defined(__SANITIZE_THREAD__)
int hs__chan_fence_word;
#endif

bool hs__chan_pending(const struct hs__chan_end *e)
{
	return __atomic_load_n(&e->r->head, __ATOMIC_ACQUIRE) != e->pos;
}

bool hs__chan_flag_take(uint32_t *flag)
{
	/* Pairs with the fence of the side that set it: either it sees what
	 * we published, or we see its flag. */
	hs__chan_fence();
	if (!__atomic_load_n(flag, __ATOMIC_RELAXED))
		return false;
	return __atomic_exchange_n(flag, 0, __ATOMIC_ACQ_REL) != 0;
}

bool hs__chan_should_kick(struct hs__chan_end *e)
{
	return hs__chan_flag_take(&e->r->armed);
}

bool hs__chan_arm(struct hs__chan_end *e)
{
	__atomic_store_n(&e->r->armed, 1, __ATOMIC_RELAXED);
	hs__chan_fence();
	if (!hs__chan_pending(e))
		return true;
	__atomic_store_n(&e->r->armed, 0, __ATOMIC_RELAXED);
	return false;
}

bool hs__chan_want_space(struct hs__chan_end *e, size_t packed_len)
{
	__atomic_store_n(&e->r->want_space, 1, __ATOMIC_RELAXED);
	hs__chan_fence();
	int64_t used = used_by_writer(e);
	if (used >= 0 && (uint64_t)used + room_needed(e, packed_len) > e->size)
		return true;
	__atomic_store_n(&e->r->want_space, 0, __ATOMIC_RELAXED);
	return false;
}

bool hs__chan_space_kick(struct hs__chan_end *e)
{
	return hs__chan_flag_take(&e->r->want_space);
}

void hs__chan_kick(int efd)
{
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(efd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	/* EAGAIN: the counter is saturated, the reader is awake anyway. */
}

void hs__chan_clear(int efd)
{
	uint64_t v;
	ssize_t n;
	do
		n = read(efd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
}
