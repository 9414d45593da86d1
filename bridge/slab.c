/* Host memory registered with UCX once per broker slab (ucp_mem_map), so
 * a tensor is sent from, or received into, broker memory with no
 * registration on the per-tensor path. libhsclient maps each slab once and
 * keeps it mapped until disconnect (client/slab.c), so a registration
 * stays valid for the bridge's whole life.
 *
 * The slab's mapping comes from hs_tensor_slab_mapping: the whole slab is
 * registered at the first tensor in it, and every later tensor of the slab
 * finds that registration. */
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

ucp_mem_h hsb_slab_memh(struct hsb_slabs *s, const hs_tensor *t, const void *p, uint64_t n)
{
	uintptr_t a = (uintptr_t)p;
	for (struct hsb_reg *r = s->list; r; r = r->next)
		if (a >= r->base && a + n <= r->end)
			return r->memh;
	void *map;
	uint64_t size;
	if (hs_tensor_slab_mapping(t, &map, &size) != 0)
		return NULL;
	uintptr_t base = (uintptr_t)map, end = base + size;
	if (a < base || a + n > end)
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
