/* Best-fit free list over [0, size). The free blocks live in one array
 * sorted by offset: a release finds its neighbours by binary search and
 * merges with them, so free space never stays split at a boundary. */
#include "range.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hsbroker/error.h"

struct seg {
	uint64_t off, len;
};

struct hsd_range {
	uint64_t size;
	uint64_t used;
	struct seg *free;
	uint32_t n, cap;
};

int hsd_range_new(uint64_t size, struct hsd_range **out)
{
	if (size == 0 || size % RANGE_ALIGN)
		return HS_EINVAL;
	struct hsd_range *r = calloc(1, sizeof(*r));
	if (!r)
		return HS_ENOMEM;
	r->cap = 8;
	r->free = malloc(r->cap * sizeof(*r->free));
	if (!r->free) {
		free(r);
		return HS_ENOMEM;
	}
	r->size = size;
	r->free[0] = (struct seg){ 0, size };
	r->n = 1;
	*out = r;
	return 0;
}

void hsd_range_free(struct hsd_range *r)
{
	if (!r)
		return;
	free(r->free);
	free(r);
}

uint64_t hsd_range_round(uint64_t len)
{
	if (len == 0)
		return RANGE_ALIGN;
	if (len > UINT64_MAX - (RANGE_ALIGN - 1))
		return 0;
	return (len + RANGE_ALIGN - 1) & ~(uint64_t)(RANGE_ALIGN - 1);
}

static int64_t best_index(const struct hsd_range *r, uint64_t need)
{
	int64_t best = -1;
	for (uint32_t i = 0; i < r->n; i++) {
		if (r->free[i].len < need)
			continue;
		if (best < 0 || r->free[i].len < r->free[best].len) {
			best = i;
			if (r->free[i].len == need)
				break;
		}
	}
	return best;
}

uint64_t hsd_range_best_fit(const struct hsd_range *r, uint64_t len)
{
	uint64_t need = hsd_range_round(len);
	if (!need)
		return 0;
	int64_t i = best_index(r, need);
	return i < 0 ? 0 : r->free[i].len;
}

int hsd_range_alloc(struct hsd_range *r, uint64_t len, uint64_t *off)
{
	uint64_t need = hsd_range_round(len);
	if (!need)
		return HS_ENOSPC;
	int64_t i = best_index(r, need);
	if (i < 0)
		return HS_ENOSPC;
	struct seg *s = &r->free[i];
	*off = s->off;
	s->off += need;
	s->len -= need;
	if (s->len == 0) {
		memmove(&r->free[i], &r->free[i + 1], (r->n - (uint32_t)i - 1) * sizeof(*s));
		r->n--;
	}
	r->used += need;
	return 0;
}

int hsd_range_release(struct hsd_range *r, uint64_t off, uint64_t len)
{
	uint64_t need = hsd_range_round(len);
	if (!need || off % RANGE_ALIGN || off > r->size || need > r->size - off)
		return HS_EINVAL;
	uint64_t end = off + need;

	/* First free block starting after off. */
	uint32_t lo = 0, hi = r->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (r->free[mid].off <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	struct seg *prev = lo > 0 ? &r->free[lo - 1] : NULL;
	struct seg *next = lo < r->n ? &r->free[lo] : NULL;
	if (prev && prev->off + prev->len > off)
		return HS_EINVAL;
	if (next && end > next->off)
		return HS_EINVAL;

	bool join_prev = prev && prev->off + prev->len == off;
	bool join_next = next && end == next->off;
	if (join_prev && join_next) {
		prev->len += need + next->len;
		memmove(next, next + 1, (r->n - lo - 1) * sizeof(*next));
		r->n--;
	} else if (join_prev) {
		prev->len += need;
	} else if (join_next) {
		next->off = off;
		next->len += need;
	} else {
		if (r->n == r->cap) {
			uint32_t cap = r->cap * 2;
			struct seg *f = realloc(r->free, cap * sizeof(*f));
			if (!f)
				return HS_ENOMEM;
			r->free = f;
			r->cap = cap;
		}
		memmove(&r->free[lo + 1], &r->free[lo], (r->n - lo) * sizeof(*r->free));
		r->free[lo] = (struct seg){ off, need };
		r->n++;
	}
	r->used -= need;
	return 0;
}

uint64_t hsd_range_size(const struct hsd_range *r)
{
	return r->size;
}

uint64_t hsd_range_used(const struct hsd_range *r)
{
	return r->used;
}

uint64_t hsd_range_free_bytes(const struct hsd_range *r)
{
	return r->size - r->used;
}

uint64_t hsd_range_largest_free(const struct hsd_range *r)
{
	uint64_t m = 0;
	for (uint32_t i = 0; i < r->n; i++)
		if (r->free[i].len > m)
			m = r->free[i].len;
	return m;
}

uint32_t hsd_range_free_blocks(const struct hsd_range *r)
{
	return r->n;
}
