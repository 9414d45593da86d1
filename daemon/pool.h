/* A pool per device (cpu now, cuda:N later): slabs of slab_size bytes, a
 * new one made when no slab has a free block that fits, a dedicated slab
 * (rounded up to 2 MiB) for a tensor larger than slab_size, and an
 * optional cap on the bytes of all its slabs. Slabs are partitioned by
 * uid: a block is carved only from a slab of the asking session's uid, so
 * no block ever holds bytes another uid wrote (docs/security.md). */
#ifndef HS_DAEMON_POOL_H
#define HS_DAEMON_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "list.h"
#include "slab.h"

#define POOL_DEFAULT_SLAB_SIZE (64ull << 20)
#define POOL_DEDICATED_ROUND (2ull << 20)
#define POOL_MIN_SLAB_SIZE (64ull << 10)

struct hsd_pool_block {
	struct hsd_slab *slab;
	uint64_t offset;
	uint64_t length; /* as asked; the range rounds it the same way on release */
};

struct hsd_pool {
	DLDevice device;
	const struct hsd_slab_ops *ops;
	uint64_t slab_size;
	uint64_t cap;           /* 0: none */
	uint64_t total;         /* bytes of all slabs */
	uint64_t used;          /* bytes of allocated blocks (rounded) */
	uint32_t nslabs;
	uint32_t blocks;
	uint64_t *next_slab_id; /* shared by all pools: ids are unique per epoch */
	bool retain_slabs;      /* never retire idle dedicated slabs (device pools) */
	uint64_t idle_release_us; /* hsd_pool_trim frees slabs idle this long; 0: never */
	struct hsd_list slabs;
};

/* slab_size is rounded up to 4 KiB and at least POOL_MIN_SLAB_SIZE. */
void hsd_pool_init(struct hsd_pool *p, DLDevice device, const struct hsd_slab_ops *ops,
		   uint64_t slab_size, uint64_t cap, uint64_t *next_slab_id);
/* Frees every slab, whatever it holds: only at daemon exit. */
void hsd_pool_fini(struct hsd_pool *p);

/* A block for uid, from that uid's slabs: 0 with *out, HS_ENOSPC (cap
 * reached or size too large), HS_ENOMEM, or the slab's create error. At
 * the cap, slabs no session maps and no block uses (of any uid) are freed
 * first. */
int hsd_pool_alloc(struct hsd_pool *p, uint64_t len, uint32_t uid, struct hsd_pool_block *out);
void hsd_pool_release(struct hsd_pool *p, const struct hsd_pool_block *b);

/* A session that had s announced is gone: the slab may be retired. */
void hsd_pool_slab_unannounce(struct hsd_pool *p, struct hsd_slab *s);

uint64_t hsd_pool_largest_free(const struct hsd_pool *p);

/* Gives idle slabs back to the system: a slab no block uses and no
 * session has announced since idle_release_us before now_us is freed (its
 * memfd closed, so the kernel drops its pages). Nothing happens with
 * idle_release_us 0 or retain_slabs. Returns the bytes freed. */
uint64_t hsd_pool_trim(struct hsd_pool *p, uint64_t now_us);

#endif
