/* Host slabs: a sealed memfd. Sealed against shrinking and growing so no
 * client can truncate it under another one's mapping (SIGBUS), and against
 * new seals. The daemon never maps it: clients do.
 *
 * Two fds per slab: the read-write one goes to sessions of the slab's uid,
 * a read-only one (the memfd opened again through /proc with O_RDONLY) to
 * every other uid, which can then neither map it writable nor punch holes
 * in it (fallocate needs a writable fd). The memfd's mode is 0600, so a
 * reader of another uid cannot open its fd's /proc link read-write either
 * (a memfd is created 0777). See docs/security.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "log.h"
#include "slab.h"

static int host_fail(struct hsd_slab *s, int fd, const char *what)
{
	int e = errno;
	log_error("%s (slab %llu): %s", what, (unsigned long long)s->id, strerror(e));
	close(fd);
	return e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOSPC ? HS_ENOMEM : HS_EIO;
}

static int host_create(struct hsd_slab *s)
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
		log_error("ftruncate memfd to %llu bytes: %s", (unsigned long long)s->size,
			  strerror(errno));
		close(fd);
		return HS_ENOMEM;
	}
	if (fchmod(fd, 0600) < 0)
		return host_fail(s, fd, "fchmod memfd");
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return host_fail(s, fd, "sealing memfd");
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		return host_fail(s, fd, "opening memfd read-only (is /proc mounted?)");
	s->fd = fd;
	s->ro_fd = ro;
	return 0;
}

static void host_destroy(struct hsd_slab *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->ro_fd >= 0)
		close(s->ro_fd);
	s->fd = -1;
	s->ro_fd = -1;
}

static int host_export(struct hsd_slab *s, Hs__SlabAnnounce *ann, bool writable, int *fd)
{
	ann->kind = HS__SLAB_KIND__SLAB_HOST_MEMFD;
	ann->fd_index = 0;
	*fd = writable ? s->fd : s->ro_fd;
	return 0;
}

const struct hsd_slab_ops hsd_slab_host_ops = {
	.kind = HS__SLAB_KIND__SLAB_HOST_MEMFD,
	.name = "host-memfd",
	.create = host_create,
	.destroy = host_destroy,
	.export_announce = host_export,
};
