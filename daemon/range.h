/* A sub-allocator over the byte range [0, size) of one slab: best-fit
 * free list kept sorted by offset, neighbours coalesced on release, every
 * block 256-byte aligned (DLPack and CUDA kernels expect that alignment).
 * Pure bookkeeping: it never touches the memory it describes. */
#ifndef HS_DAEMON_RANGE_H
#define HS_DAEMON_RANGE_H

#include <stdint.h>

#define RANGE_ALIGN 256u

struct hsd_range;

/* size must be a non-zero multiple of RANGE_ALIGN: 0 or HS_EINVAL, HS_ENOMEM. */
int hsd_range_new(uint64_t size, struct hsd_range **out);
void hsd_range_free(struct hsd_range *r);

/* The length a request of len bytes really takes (len 0 takes one
 * RANGE_ALIGN unit so every block has its own offset); 0 on overflow. */
uint64_t hsd_range_round(uint64_t len);

/* Best fit: 0 with *off set, HS_ENOSPC when no free block is large
 * enough (the range is unchanged), HS_ENOMEM. */
int hsd_range_alloc(struct hsd_range *r, uint64_t len, uint64_t *off);

/* Gives back a block from hsd_range_alloc with the same len. A block that is
 * not wholly allocated (double release, wrong offset) is HS_EINVAL and
 * changes nothing. */
int hsd_range_release(struct hsd_range *r, uint64_t off, uint64_t len);

/* Length of the smallest free block that holds len bytes, 0 if none. */
uint64_t hsd_range_best_fit(const struct hsd_range *r, uint64_t len);

uint64_t hsd_range_size(const struct hsd_range *r);
uint64_t hsd_range_used(const struct hsd_range *r);
uint64_t hsd_range_free_bytes(const struct hsd_range *r);
uint64_t hsd_range_largest_free(const struct hsd_range *r);
/* Number of free blocks (1 when empty: fragmentation shows as more). */
uint32_t hsd_range_free_blocks(const struct hsd_range *r);

#endif
