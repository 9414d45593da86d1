/* Host slabs: a sealed memfd. Sealed against shrinking and growing so no
 * client can truncate it under another one's mapping (SIGBUS), and against
 * new seals. The daemon never maps it: clients do. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "log.h"
#include "slab.h"

static int host_create(struct slab *s)
{
	char name[64];
	snprintf(name, sizeof(name), "hsbroker-slab-%llu", (unsigned long long)s->id);
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		int e = errno;
		log_error("memfd_create: %s", strerror(e));
		return e == EMFILE || e == ENFILE || e == ENOMEM ? HS_ENOMEM : -e;
	}
	if (ftruncate(fd, (off_t)s->size) < 0) {
		int e = errno;
		log_error("ftruncate memfd to %llu bytes: %s",
			  (unsigned long long)s->size, strerror(e));
		close(fd);
		return HS_ENOMEM;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int e = errno;
		log_error("sealing memfd: %s", strerror(e));
		close(fd);
		return -e;
	}
	s->fd = fd;
	return 0;
}

static void host_destroy(struct slab *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static int host_export(struct slab *s, Hs__SlabAnnounce *ann, int *fd)
{
	ann->kind = HS__SLAB_KIND__SLAB_HOST_MEMFD;
	ann->fd_index = 0;
	*fd = s->fd;
	return 0;
}

const struct slab_ops slab_host_ops = {
	.kind = HS__SLAB_KIND__SLAB_HOST_MEMFD,
	.name = "host-memfd",
	.create = host_create,
	.destroy = host_destroy,
	.export_announce = host_export,
};
