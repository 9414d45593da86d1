/* A hash map from non-zero 64-bit keys to 64-bit values (open addressing,
 * linear probing, backward-shift deletion: no tombstones to pile up under
 * a client that churns ids). Used for the references a session holds, the
 * slabs it has seen, and the topic index. */
#ifndef HS_DAEMON_IDMAP_H
#define HS_DAEMON_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hsd_idmap {
	uint64_t *keys; /* 0 = empty */
	uint64_t *vals;
	size_t cap;     /* 0 or a power of two */
	size_t n;
};

void hsd_idmap_init(struct hsd_idmap *m);
void hsd_idmap_fini(struct hsd_idmap *m);
/* The value's slot, or NULL when key is absent. key must not be 0. */
uint64_t *hsd_idmap_get(const struct hsd_idmap *m, uint64_t key);
/* Inserts or replaces: 0 or HS_ENOMEM. */
int hsd_idmap_put(struct hsd_idmap *m, uint64_t key, uint64_t val);
bool hsd_idmap_del(struct hsd_idmap *m, uint64_t key);

/* Iterate with: for (size_t i = 0; i < m->cap; i++) if (m->keys[i]) ... */

#endif
