/* The mapping cache: each slab the daemon announces is mapped once and
 * kept until disconnect, so no per-tensor path ever maps memory (an mmap
 * or cudaIpcOpenMemHandle costs tens of microseconds). A host slab of
 * another uid comes as a read-only fd and is mapped read-only
 * (docs/security.md). A device slab is opened at the first tensor in it
 * (slab_cuda.c: a legacy IPC handle; slab_vmm.c: a VMM fd, kept until
 * then). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hs-config.h"
#include "internal.h"

/* Largest slab we accept from the daemon: a bound on an untrusted size,
 * far above any pool's slab (a single huge tensor gets its own slab). */
#define SLAB_MAX_SIZE (UINT64_C(1) << 44)

struct hs__slab *hs__slab_find(hs_client *c, uint64_t id)
{
	for (struct hs__slab *s = c->slabs; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

/* A host slab: a memfd sealed against shrinking, so no process sharing it
 * can make our mapping fault by truncating it. The fd's access mode says
 * how to map it: the daemon sends a read-only fd for another uid's slab. */
static int map_memfd(struct hs__slab *s, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return HS_EPROTO;
	if (st.st_size < 0 || (uint64_t)st.st_size < s->size)
		return HS_EPROTO;
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return HS_EPROTO;
	int mode = fcntl(fd, F_GETFL);
	if (mode < 0)
		return HS_EPROTO;
	s->readonly = (mode & O_ACCMODE) == O_RDONLY;
	int prot = s->readonly ? PROT_READ : PROT_READ | PROT_WRITE;
	void *p = mmap(NULL, (size_t)s->size, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return errno == ENOMEM ? HS_ENOMEM : HS_EIO;
	s->base = p;
	return 0;
}

int hs__slab_announce(hs_client *c, const Hs__SlabAnnounce *a, int *fds, int nfds)
{
	if (a->size == 0 || a->size > SLAB_MAX_SIZE || a->size > SIZE_MAX || !a->device)
		return HS_EPROTO;
	/* Ids are never reused within an epoch: a second announcement of one
	 * we know changes nothing (its fd is closed by the caller). */
	if (hs__slab_find(c, a->slab_id))
		return 0;

	struct hs__slab *s = calloc(1, sizeof(*s));
	if (!s)
		return HS_ENOMEM;
	s->id = a->slab_id;
	s->kind = a->kind;
	s->device.device_type = (DLDeviceType)a->device->type;
	s->device.device_id = a->device->id;
	s->size = a->size;
	s->vmm_fd = -1;

	int err = 0;
	switch (a->kind) {
	case HS__SLAB_KIND__SLAB_HOST_MEMFD:
		if (s->device.device_type != kDLCPU || a->fd_index < 0 || a->fd_index >= nfds) {
			err = HS_EPROTO;
			break;
		}
		err = map_memfd(s, fds[a->fd_index]);
		/* The mapping keeps the memory; the fd has no further use. */
		close(fds[a->fd_index]);
		fds[a->fd_index] = -1;
		if (!err)
			c->stats.slab_opens++;
		break;
	case HS__SLAB_KIND__SLAB_CUDA_IPC:
		/* Opened lazily, at the first tensor in it (slab_cuda.c): a
		 * process that never touches a tensor here never pays the
		 * open, and the reader thread dispatching this announcement
		 * makes no CUDA call. */
		if (s->device.device_type != kDLCUDA || s->device.device_id < 0 ||
		    a->ipc_handle.len != sizeof(s->ipc_handle)) {
			err = HS_EPROTO;
			break;
		}
		memcpy(s->ipc_handle, a->ipc_handle.data, sizeof(s->ipc_handle));
		s->map_err = HS_HAVE_CUDA ? 0 : HS_ENOCUDA;
		break;
	case HS__SLAB_KIND__SLAB_CUDA_VMM:
		/* Imported lazily too; the fd is kept until then. */
		if (s->device.device_type != kDLCUDA || s->device.device_id < 0 ||
		    a->fd_index < 0 || a->fd_index >= nfds || fds[a->fd_index] < 0) {
			err = HS_EPROTO;
			break;
		}
		s->vmm_fd = fds[a->fd_index];
		fds[a->fd_index] = -1;
		s->epoch = c->epoch;
		s->readonly = a->readonly;
		s->map_err = HS_HAVE_CUDA ? 0 : HS_ENOCUDA;
		break;
	default:
		err = HS_EPROTO;
	}
	if (err) {
		if (s->vmm_fd >= 0)
			close(s->vmm_fd);
		free(s);
		return err;
	}
	s->next = c->slabs;
	c->slabs = s;
	if (s->base)
		c->stats.slabs_mapped++;
	return 0;
}

HS_EXPORT int hs_tensor_writable(const hs_tensor *tensor)
{
	if (!tensor || !tensor->slab)
		return 0;
	return !tensor->slab->readonly;
}

void hs__slab_unmap_all(hs_client *c)
{
	struct hs__slab *s = c->slabs;
	while (s) {
		struct hs__slab *next = s->next;
		if (s->base && s->kind == HS__SLAB_KIND__SLAB_HOST_MEMFD)
			munmap(s->base, (size_t)s->size);
		else if (s->base && s->device.device_type == kDLCUDA)
			hs__slab_cuda_close(s);
		if (s->vmm_fd >= 0)
			close(s->vmm_fd); /* never opened here */
		free(s);
		s = next;
	}
	c->slabs = NULL;
	c->stats.slabs_mapped = 0;
}
