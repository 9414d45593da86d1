/* Per-uid usage counts (usage.h). Entries live while a count is non-zero,
 * so the table holds one entry per uid that has something open. */
#include "usage.h"

#include <stdlib.h>

void hsd_usage_init(struct hsd_usage_table *u)
{
	hsd_idmap_init(&u->map);
}

void hsd_usage_fini(struct hsd_usage_table *u)
{
	for (size_t i = 0; i < u->map.cap; i++)
		if (u->map.keys[i])
			free((void *)(uintptr_t)u->map.vals[i]);
	hsd_idmap_fini(&u->map);
}

struct hsd_uid_usage *hsd_usage_of(struct hsd_usage_table *u, uid_t uid)
{
	uint64_t key = (uint64_t)uid + 1; /* idmap keys are non-zero */
	uint64_t *v = hsd_idmap_get(&u->map, key);
	if (v)
		return (struct hsd_uid_usage *)(uintptr_t)*v;
	struct hsd_uid_usage *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	if (hsd_idmap_put(&u->map, key, (uint64_t)(uintptr_t)e) < 0) {
		free(e);
		return NULL;
	}
	return e;
}

void hsd_usage_tidy(struct hsd_usage_table *u, uid_t uid)
{
	uint64_t key = (uint64_t)uid + 1;
	uint64_t *v = hsd_idmap_get(&u->map, key);
	if (!v)
		return;
	struct hsd_uid_usage *e = (struct hsd_uid_usage *)(uintptr_t)*v;
	if (e->conns || e->refused || e->subs || e->topics)
		return;
	hsd_idmap_del(&u->map, key);
	free(e);
}
