/* A slab: one large region a pool carves tensors out of, announced to each
 * session once and referred to by id afterwards. The kind of memory (a host
 * memfd; CUDA IPC in slab_cuda.c; CUDA VMM exported as an fd in
 * slab_vmm.c) sits behind an ops table, so pools,
 * tensors and sessions never care which it is. Slab ids are unique within
 * one daemon epoch and never reused.
 *
 * A slab belongs to one uid (docs/security.md): only that uid's sessions
 * allocate from it, so a block never passes from one uid to another, and
 * sessions of other uids are given a read-only view of it where the kind
 * of memory allows (host memfds get a read-only fd; VMM slabs are
 * announced read-only and mapped so by the client library; a CUDA IPC
 * handle cannot be narrowed). */
#ifndef HS_DAEMON_SLAB_H
#define HS_DAEMON_SLAB_H

#include <stdbool.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "list.h"
#include "wire.h"

struct hsd_range;
struct hsd_slab;

struct hsd_slab_ops {
	Hs__SlabKind kind;
	const char *name;
	/* Optional: rounds *size up to what the memory is made in (a VMM
	 * allocation is a multiple of the device's granularity), before the
	 * slab is made: 0 or a negative hs code. */
	int (*round_size)(DLDevice device, uint64_t *size);
	/* Creates the memory for s->size bytes on s->device: 0 or a
	 * negative hs code. */
	int (*create)(struct hsd_slab *s);
	/* Frees it. Called only when no session has the slab announced
	 * (freeing CUDA memory another process still maps is undefined). */
	void (*destroy)(struct hsd_slab *s);
	/* Fills the kind-specific fields of a SlabAnnounce (kind,
	 * ipc_handle, fd_index, readonly) and sets *fd to the fd to pass with it, or -1: a
	 * read-write one when writable (the session is of the slab's uid),
	 * else one that only reads where the kind has such a thing. The fd
	 * stays owned by the slab; ann's pointers stay valid while s lives.
	 * Never log what it fills in: an IPC handle is a capability. */
	int (*export_announce)(struct hsd_slab *s, Hs__SlabAnnounce *ann, bool writable, int *fd);
};

struct hsd_slab {
	uint64_t id;
	const struct hsd_slab_ops *ops;
	DLDevice device;
	uint64_t size;
	struct hsd_range *range;
	uint32_t blocks;     /* blocks allocated from it */
	uint32_t announced;  /* sessions it was announced to */
	bool dedicated;      /* made for one large tensor; retired when idle */
	uint64_t idle_since_us; /* hsd_pool_trim: first seen unused, 0 while in use */
	uint32_t uid;        /* the only uid whose sessions allocate here */
	int fd;              /* host memfd or VMM allocation's fd, else -1 */
	int ro_fd;           /* the same memfd opened read-only, else -1 */
	void *priv;          /* for the ops */
	struct hsd_list link; /* in pool->slabs */
};

extern const struct hsd_slab_ops hsd_slab_host_ops;

/* 0 with *out, or a negative hs code (HS_ENOMEM, the ops' create error).
 * The slab's size may be larger than asked (ops->round_size). */
int hsd_slab_new(const struct hsd_slab_ops *ops, uint64_t id, DLDevice device,
		 uint64_t size, bool dedicated, uint32_t uid, struct hsd_slab **out);
void hsd_slab_free(struct hsd_slab *s);

#endif
