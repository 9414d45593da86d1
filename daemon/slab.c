#include "slab.h"

#include <stdlib.h>

#include "hsbroker/error.h"
#include "range.h"

int hsd_slab_new(const struct hsd_slab_ops *ops, uint64_t id, DLDevice device,
		 uint64_t size, bool dedicated, uint32_t uid, struct hsd_slab **out)
{
	struct hsd_slab *s = calloc(1, sizeof(*s));
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
	int r = hsd_range_new(size, &s->range);
	if (r < 0) {
		free(s);
		return r;
	}
	r = ops->create(s);
	if (r < 0) {
		hsd_range_free(s->range);
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

void hsd_slab_free(struct hsd_slab *s)
{
	if (!s)
		return;
	s->ops->destroy(s);
	hsd_range_free(s->range);
	free(s);
}
