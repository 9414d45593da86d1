/* Per-uid usage counts (usage.h). Entries live while a count is non-zero,
 * so the table holds one entry per uid that has something open. */
#include "usage.h"

#include <stdlib.h>

void usage_init(struct usage_table *u)
{
	idmap_init(&u->map);
}

void usage_fini(struct usage_table *u)
{
	for (size_t i = 0; i < u->map.cap; i++)
		if (u->map.keys[i])
			free((void *)(uintptr_t)u->map.vals[i]);
	idmap_fini(&u->map);
}

struct uid_usage *usage_of(struct usage_table *u, uid_t uid)
{
	uint64_t key = (uint64_t)uid + 1; /* idmap keys are non-zero */
	uint64_t *v = idmap_get(&u->map, key);
	if (v)
		return (struct uid_usage *)(uintptr_t)*v;
	struct uid_usage *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	if (idmap_put(&u->map, key, (uint64_t)(uintptr_t)e) < 0) {
		free(e);
		return NULL;
	}
	return e;
}

void usage_tidy(struct usage_table *u, uid_t uid)
{
	uint64_t key = (uint64_t)uid + 1;
	uint64_t *v = idmap_get(&u->map, key);
	if (!v)
		return;
	struct uid_usage *e = (struct uid_usage *)(uintptr_t)*v;
	if (e->conns || e->refused || e->subs || e->topics)
		return;
	idmap_del(&u->map, key);
	free(e);
}
