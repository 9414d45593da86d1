#include "idmap.h"

#include <stdlib.h>

#include "hsbroker/error.h"

static size_t slot_of(const struct hsd_idmap *m, uint64_t key)
{
	/* Fibonacci hashing: tensor ids differ in their low bits only. */
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (m->cap - 1);
}

void hsd_idmap_init(struct hsd_idmap *m)
{
	*m = (struct hsd_idmap){ 0 };
}

void hsd_idmap_fini(struct hsd_idmap *m)
{
	free(m->keys);
	free(m->vals);
	*m = (struct hsd_idmap){ 0 };
}

uint64_t *hsd_idmap_get(const struct hsd_idmap *m, uint64_t key)
{
	if (!m->cap || !key)
		return NULL;
	for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key)
			return &m->vals[i];
		if (!m->keys[i])
			return NULL;
	}
}

static int grow(struct hsd_idmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	uint64_t *keys = calloc(cap, sizeof(*keys));
	uint64_t *vals = calloc(cap, sizeof(*vals));
	if (!keys || !vals) {
		free(keys);
		free(vals);
		return HS_ENOMEM;
	}
	struct hsd_idmap old = *m;
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	for (size_t i = 0; i < old.cap; i++) {
		if (!old.keys[i])
			continue;
		size_t j = slot_of(m, old.keys[i]);
		while (m->keys[j])
			j = (j + 1) & (cap - 1);
		m->keys[j] = old.keys[i];
		m->vals[j] = old.vals[i];
	}
	free(old.keys);
	free(old.vals);
	return 0;
}

int hsd_idmap_put(struct hsd_idmap *m, uint64_t key, uint64_t val)
{
	if (!key)
		return HS_EINVAL;
	uint64_t *v = hsd_idmap_get(m, key);
	if (v) {
		*v = val;
		return 0;
	}
	/* Keep the load factor under 3/4. */
	if ((m->n + 1) * 4 > m->cap * 3) {
		int r = grow(m);
		if (r < 0)
			return r;
	}
	size_t i = slot_of(m, key);
	while (m->keys[i])
		i = (i + 1) & (m->cap - 1);
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return 0;
}

bool hsd_idmap_del(struct hsd_idmap *m, uint64_t key)
{
	if (!m->cap || !key)
		return false;
	size_t mask = m->cap - 1;
	size_t i = slot_of(m, key);
	while (m->keys[i] != key) {
		if (!m->keys[i])
			return false;
		i = (i + 1) & mask;
	}
	/* Backward shift: pull later entries of the probe run into the hole
	 * when their home slot does not lie cyclically in (hole, j]. */
	size_t hole = i;
	for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
		size_t home = slot_of(m, m->keys[j]);
		bool stays = hole <= j ? (home > hole && home <= j)
				       : (home > hole || home <= j);
		if (stays)
			continue;
		m->keys[hole] = m->keys[j];
		m->vals[hole] = m->vals[j];
		hole = j;
	}
	m->keys[hole] = 0;
	m->vals[hole] = 0;
	m->n--;
	return true;
}
