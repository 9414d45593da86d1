/* Host memory registered with UCX once per broker slab (ucp_mem_map), so
 * a tensor is sent from, or received into, broker memory with no
 * registration on the per-tensor path. libhsclient maps each slab once and
 * keeps it mapped until disconnect (client/slab.c), so a registration
 * stays valid for the bridge's whole life.
 *
 * The public API names a tensor's slab (hs_tensor_info.slab_id) but not
 * where the slab is mapped; the mapping holding the tensor is found in
 * /proc/self/maps instead: a slab is one mapping of its own memfd, and the
 * kernel never merges mappings of different files. A tensor whose mapping
 * is not a memfd's gets no handle (UCX registers it by itself). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsb.h"

struct hsb_reg {
	struct hsb_reg *next;
	uintptr_t base, end;
	ucp_mem_h memh;
};

static bool find_mapping(uintptr_t p, uintptr_t *base, uintptr_t *end)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return false;
	char line[512];
	bool found = false;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t lo, hi;
		int path_at = 0;
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %*s %n", &lo, &hi, &path_at) < 2)
			continue;
		if (p < lo || p >= hi)
			continue;
		found = path_at > 0 && strncmp(line + path_at, "/memfd:", 7) == 0;
		*base = lo;
		*end = hi;
		break;
	}
	fclose(f);
	return found;
}

ucp_mem_h hsb_slab_memh(struct hsb_slabs *s, const void *p, uint64_t n)
{
	uintptr_t a = (uintptr_t)p;
	for (struct hsb_reg *r = s->list; r; r = r->next)
		if (a >= r->base && a + n <= r->end)
			return r->memh;
	uintptr_t base, end;
	if (!find_mapping(a, &base, &end) || a + n > end)
		return NULL;
	struct hsb_reg *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	ucp_mem_map_params_t mp = {
		.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
		.address = (void *)base,
		.length = end - base,
	};
	if (ucp_mem_map(s->ucp, &mp, &r->memh) != UCS_OK) {
		free(r);
		return NULL;
	}
	r->base = base;
	r->end = end;
	r->next = s->list;
	s->list = r;
	s->registered++;
	return r->memh;
}

void hsb_slabs_free(struct hsb_slabs *s)
{
	while (s->list) {
		struct hsb_reg *r = s->list;
		s->list = r->next;
		ucp_mem_unmap(s->ucp, r->memh);
		free(r);
	}
}
