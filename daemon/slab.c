#include "slab.h"

#include <stdlib.h>

#include "hsbroker/error.h"
#include "range.h"

int slab_new(const struct slab_ops *ops, uint64_t id, DLDevice device,
	     uint64_t size, bool dedicated, uint32_t uid, struct slab **out)
{
	struct slab *s = calloc(1, sizeof(*s));
	if (!s)
		return HS_ENOMEM;
	s->id = id;
	s->ops = ops;
	s->device = device;
	s->size = size;
	s->dedicated = dedicated;
	if (ops->round_size) {
		int r = ops->round_size(device, &size);
		if (r < 0) {
			free(s);
			return r;
		}
		s->size = size;
	}
	s->uid = uid;
	s->fd = -1;
	s->ro_fd = -1;
	list_init(&s->link);
	int r = range_new(size, &s->range);
	if (r < 0) {
		free(s);
		return r;
	}
	r = ops->create(s);
	if (r < 0) {
		range_free(s->range);
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

void slab_free(struct slab *s)
{
	if (!s)
		return;
	s->ops->destroy(s);
	range_free(s->range);
	free(s);
}
