/* Slabs of one device. Best fit across the asking uid's slabs: the slab
 * whose smallest fitting free block is smallest, so large holes stay
 * whole. Regular slabs stay while the daemon runs (clients keep them
 * mapped) unless the cap is reached, when those no session maps and no
 * block uses make room; a dedicated slab is freed once it holds no block
 * and no session has it announced. */
#include "pool.h"

#include "hsbroker/error.h"
#include "log.h"
#include "range.h"

static uint64_t round_up(uint64_t v, uint64_t to)
{
	if (v > UINT64_MAX - (to - 1))
		return 0;
	return (v + to - 1) / to * to;
}

void hsd_pool_init(struct hsd_pool *p, DLDevice device, const struct hsd_slab_ops *ops,
		   uint64_t slab_size, uint64_t cap, uint64_t *next_slab_id)
{
	*p = (struct hsd_pool){ 0 };
	p->device = device;
	p->ops = ops;
	if (slab_size < POOL_MIN_SLAB_SIZE)
		slab_size = POOL_MIN_SLAB_SIZE;
	p->slab_size = round_up(slab_size, 4096);
	if (!p->slab_size)
		p->slab_size = POOL_DEFAULT_SLAB_SIZE;
	p->cap = cap;
	p->next_slab_id = next_slab_id;
	list_init(&p->slabs);
}

static void drop_slab(struct hsd_pool *p, struct hsd_slab *s)
{
	list_remove(&s->link);
	p->total -= s->size;
	p->nslabs--;
	log_debug("pool: slab %llu (%llu bytes) freed", (unsigned long long)s->id,
		  (unsigned long long)s->size);
	hsd_slab_free(s);
}

void hsd_pool_fini(struct hsd_pool *p)
{
	struct hsd_slab *s, *t;
	list_for_each_safe(s, t, &p->slabs, link)
		drop_slab(p, s);
}

static void maybe_retire(struct hsd_pool *p, struct hsd_slab *s)
{
	if (!p->retain_slabs && s->dedicated && s->blocks == 0 && s->announced == 0)
		drop_slab(p, s);
}

/* At the cap: frees the slabs that nothing uses, whoever's they were
 * (device pools keep theirs: see retain_slabs). True if any went. */
static bool reclaim_idle(struct hsd_pool *p)
{
	if (p->retain_slabs)
		return false;
	bool any = false;
	struct hsd_slab *s, *t;
	list_for_each_safe(s, t, &p->slabs, link) {
		if (s->blocks == 0 && s->announced == 0) {
			drop_slab(p, s);
			any = true;
		}
	}
	return any;
}

/* Whether a new slab of size bytes stays within the cap. */
static bool within_cap(const struct hsd_pool *p, uint64_t size)
{
	return !p->cap || (size && size <= p->cap && p->total <= p->cap - size);
}

/* The size a new slab's memory will have (a VMM slab: a multiple of the
 * GPU's granularity), so that the cap counts what is made. */
static int slab_round(const struct hsd_pool *p, uint64_t *size)
{
	return p->ops->round_size ? p->ops->round_size(p->device, size) : 0;
}

int hsd_pool_alloc(struct hsd_pool *p, uint64_t len, uint32_t uid, struct hsd_pool_block *out)
{
	uint64_t need = hsd_range_round(len);
	if (!need)
		return HS_ENOSPC;

	struct hsd_slab *best = NULL, *s;
	uint64_t best_len = 0;
	list_for_each(s, &p->slabs, link) {
		if (s->uid != uid)
			continue;
		uint64_t fit = hsd_range_best_fit(s->range, need);
		if (fit && (!best || fit < best_len)) {
			best = s;
			best_len = fit;
		}
	}

	if (!best) {
		bool dedicated = need > p->slab_size;
		uint64_t size = dedicated ? round_up(need, POOL_DEDICATED_ROUND) : p->slab_size;
		if (!size)
			return HS_ENOSPC;
		int r = slab_round(p, &size);
		if (r < 0)
			return r;
		if (!within_cap(p, size))
			reclaim_idle(p);
		if (!within_cap(p, size)) {
			/* A whole slab would pass the cap: a smaller one that
			 * fits this tensor may still be within it. */
			uint64_t small = round_up(need, POOL_DEDICATED_ROUND);
			if ((r = slab_round(p, &small)) < 0)
				return r;
			if (!within_cap(p, small))
				return HS_ENOSPC;
			size = small;
			dedicated = true;
		}
		uint64_t id = ++*p->next_slab_id;
		r = hsd_slab_new(p->ops, id, p->device, size, dedicated, uid, &best);
		if (r < 0)
			return r;
		list_insert_tail(&p->slabs, &best->link);
		/* best->size: what was made, maybe rounded up (a VMM
		 * slab: to the device's granularity). */
		p->total += best->size;
		p->nslabs++;
		log_debug("pool: slab %llu of %llu bytes for uid %u%s", (unsigned long long)id,
			  (unsigned long long)size, (unsigned)uid, dedicated ? " (dedicated)" : "");
	}

	uint64_t off;
	int r = hsd_range_alloc(best->range, need, &off);
	if (r < 0) {
		maybe_retire(p, best);
		return r;
	}
	best->blocks++;
	p->blocks++;
	p->used += need;
	*out = (struct hsd_pool_block){ .slab = best, .offset = off, .length = len };
	return 0;
}

void hsd_pool_release(struct hsd_pool *p, const struct hsd_pool_block *b)
{
	struct hsd_slab *s = b->slab;
	if (hsd_range_release(s->range, b->offset, b->length) < 0) {
		/* Bookkeeping bug, not a peer's doing: say so, keep going. */
		log_error("pool: bad release of slab %llu offset %llu length %llu",
			  (unsigned long long)s->id, (unsigned long long)b->offset,
			  (unsigned long long)b->length);
		return;
	}
	s->blocks--;
	p->blocks--;
	p->used -= hsd_range_round(b->length);
	maybe_retire(p, s);
}

void hsd_pool_slab_unannounce(struct hsd_pool *p, struct hsd_slab *s)
{
	if (s->announced > 0)
		s->announced--;
	maybe_retire(p, s);
}

uint64_t hsd_pool_largest_free(const struct hsd_pool *p)
{
	uint64_t m = 0;
	struct hsd_slab *s;
	list_for_each(s, &p->slabs, link) {
		uint64_t l = hsd_range_largest_free(s->range);
		if (l > m)
			m = l;
	}
	return m;
}

uint64_t hsd_pool_trim(struct hsd_pool *p, uint64_t now_us)
{
	if (!p->idle_release_us || p->retain_slabs)
		return 0;
	uint64_t freed = 0;
	struct hsd_slab *s, *t;
	list_for_each_safe(s, t, &p->slabs, link) {
		if (s->blocks || s->announced) {
			s->idle_since_us = 0;
			continue;
		}
		/* Idle from the first scan that sees it so: at most one
		 * scan interval later than exact, which is fine for this. */
		if (!s->idle_since_us) {
			s->idle_since_us = now_us;
		} else if (now_us - s->idle_since_us >= p->idle_release_us) {
			freed += s->size;
			drop_slab(p, s);
		}
	}
	return freed;
}
