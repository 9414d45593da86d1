/* The bridge's wire: four messages, each a fixed little-endian layout
 * written and read field by field (never a struct cast), so a header from
 * the network is bounds-checked before any field is trusted. The tensor's
 * bytes are not here: they travel as the active message's data, which UCX
 * sends eagerly or by rendezvous. */
#include <string.h>

#include "hsb.h"

struct cur {
	uint8_t *p;
	size_t len, at;
	bool bad;
};

static void put(struct cur *c, uint64_t v, int n)
{
	if (c->at + (size_t)n > c->len) {
		c->bad = true;
		return;
	}
	for (int i = 0; i < n; i++)
		c->p[c->at++] = (uint8_t)(v >> (8 * i));
}

static void put_bytes(struct cur *c, const void *b, size_t n)
{
	if (c->at + n > c->len) {
		c->bad = true;
		return;
	}
	memcpy(c->p + c->at, b, n);
	c->at += n;
}

static uint64_t get(struct cur *c, int n)
{
	uint64_t v = 0;
	if (c->at + (size_t)n > c->len) {
		c->bad = true;
		return 0;
	}
	for (int i = 0; i < n; i++)
		v |= (uint64_t)c->p[c->at++] << (8 * i);
	return v;
}

/* A topic (or a glob, with its three wildcards) as the broker accepts it. */
static bool name_ok(const char *s, size_t n, bool glob)
{
	if (n == 0 || n > HS_MAX_TOPIC)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
			  ch == '/' || ch == ':' || ch == '-';
		if (!ok && !(glob && (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '!')))
			return false;
	}
	return true;
}

static bool get_name(struct cur *c, char *out, bool glob)
{
	size_t n = (size_t)get(c, 1);
	if (c->bad || c->at + n > c->len || !name_ok((const char *)c->p + c->at, n, glob))
		return false;
	memcpy(out, c->p + c->at, n);
	out[n] = '\0';
	c->at += n;
	return true;
}

static void put_head(struct cur *c)
{
	put(c, HSB_WIRE_MAGIC, 4);
	put(c, HSB_WIRE_VERSION, 2);
	put(c, 0, 2); /* flags: none defined */
}

static const char *get_head(struct cur *c)
{
	if (get(c, 4) != HSB_WIRE_MAGIC || c->bad)
		return "bad magic";
	if (get(c, 2) != HSB_WIRE_VERSION)
		return "unknown version";
	if (get(c, 2) != 0)
		return "unknown flags";
	return NULL;
}

static int finish(struct cur *c)
{
	return c->bad ? HS_EMSGSIZE : (int)c->at;
}

int hsb_wire_put_meta(const struct hsb_meta *m, uint8_t *buf, size_t cap)
{
	struct cur c = { buf, cap, 0, false };
	size_t tl = strlen(m->topic);
	if (m->ndim < 0 || m->ndim > HS_MAX_NDIM || !name_ok(m->topic, tl, false))
		return HS_EINVAL;
	put_head(&c);
	put(&c, m->seq, 8);
	put(&c, m->nbytes, 8);
	put(&c, m->byte_offset, 8);
	put(&c, m->dtype.code, 1);
	put(&c, m->dtype.bits, 1);
	put(&c, m->dtype.lanes, 2);
	put(&c, (uint32_t)m->device.device_type, 4);
	put(&c, (uint32_t)m->device.device_id, 4);
	put(&c, (uint32_t)m->ndim, 1);
	put(&c, m->has_strides ? 1 : 0, 1);
	for (int i = 0; i < m->ndim; i++)
		put(&c, (uint64_t)m->shape[i], 8);
	for (int i = 0; m->has_strides && i < m->ndim; i++)
		put(&c, (uint64_t)m->strides[i], 8);
	put(&c, tl, 1);
	put_bytes(&c, m->topic, tl);
	return finish(&c);
}

int hsb_wire_get_meta(const void *buf, size_t len, struct hsb_meta *m, const char **why)
{
	struct cur c = { (uint8_t *)buf, len, 0, false };
	memset(m, 0, sizeof(*m));
	if ((*why = get_head(&c)))
		return HS_EPROTO;
	m->seq = get(&c, 8);
	m->nbytes = get(&c, 8);
	m->byte_offset = get(&c, 8);
	m->dtype.code = (uint8_t)get(&c, 1);
	m->dtype.bits = (uint8_t)get(&c, 1);
	m->dtype.lanes = (uint16_t)get(&c, 2);
	m->device.device_type = (DLDeviceType)(int32_t)get(&c, 4);
	m->device.device_id = (int32_t)get(&c, 4);
	m->ndim = (int32_t)get(&c, 1);
	uint64_t st = get(&c, 1);
	*why = "truncated header";
	if (c.bad)
		return HS_EPROTO;
	*why = "bad ndim or strides flag";
	if (m->ndim > HS_MAX_NDIM || st > 1)
		return HS_EPROTO;
	m->has_strides = st == 1;
	for (int i = 0; i < m->ndim; i++) {
		m->shape[i] = (int64_t)get(&c, 8);
		if (m->shape[i] < 0) {
			*why = "negative dimension";
			return HS_EPROTO;
		}
	}
	for (int i = 0; m->has_strides && i < m->ndim; i++)
		m->strides[i] = (int64_t)get(&c, 8);
	*why = "bad topic";
	if (!get_name(&c, m->topic, false))
		return HS_EPROTO;
	*why = "bad device";
	if (m->device.device_type != kDLCPU && m->device.device_type != kDLCUDA)
		return HS_EPROTO;
	*why = "bad dtype";
	if (m->dtype.bits == 0 || m->dtype.lanes == 0)
		return HS_EPROTO;
	*why = "trailing bytes";
	if (c.at != len)
		return HS_EPROTO;
	*why = NULL;
	return 0;
}

int hsb_wire_elem_bytes(const struct hsb_meta *m, uint64_t *out)
{
	uint64_t n = ((uint64_t)m->dtype.bits * m->dtype.lanes + 7) / 8;
	for (int i = 0; i < m->ndim; i++)
		if (__builtin_mul_overflow(n, (uint64_t)m->shape[i], &n))
			return HS_EOVERFLOW;
	*out = n;
	return 0;
}

int hsb_wire_put_hello(const struct hsb_hello *h, uint8_t *buf, size_t cap)
{
	struct cur c = { buf, cap, 0, false };
	if (h->nglobs > HSB_MAX_GLOBS)
		return HS_EINVAL;
	put_head(&c);
	put(&c, h->window, 4);
	put(&c, h->nglobs, 1);
	for (uint32_t i = 0; i < h->nglobs; i++) {
		size_t n = strlen(h->globs[i]);
		if (!name_ok(h->globs[i], n, true))
			return HS_EINVAL;
		put(&c, n, 1);
		put_bytes(&c, h->globs[i], n);
	}
	return finish(&c);
}

int hsb_wire_get_hello(const void *buf, size_t len, struct hsb_hello *h, const char **why)
{
	struct cur c = { (uint8_t *)buf, len, 0, false };
	memset(h, 0, sizeof(*h));
	if ((*why = get_head(&c)))
		return HS_EPROTO;
	h->window = (uint32_t)get(&c, 4);
	h->nglobs = (uint32_t)get(&c, 1);
	*why = "bad window or glob count";
	if (c.bad || h->window == 0 || h->window > 4096 || h->nglobs == 0 ||
	    h->nglobs > HSB_MAX_GLOBS)
		return HS_EPROTO;
	*why = "bad glob";
	for (uint32_t i = 0; i < h->nglobs; i++)
		if (!get_name(&c, h->globs[i], true))
			return HS_EPROTO;
	*why = "trailing bytes";
	if (c.at != len)
		return HS_EPROTO;
	*why = NULL;
	return 0;
}

int hsb_wire_put_credit(const char *topic, uint32_t count, uint8_t *buf, size_t cap)
{
	struct cur c = { buf, cap, 0, false };
	size_t n = strlen(topic);
	if (!name_ok(topic, n, false))
		return HS_EINVAL;
	put_head(&c);
	put(&c, count, 4);
	put(&c, n, 1);
	put_bytes(&c, topic, n);
	return finish(&c);
}

int hsb_wire_get_credit(const void *buf, size_t len, char *topic, uint32_t *count,
			const char **why)
{
	struct cur c = { (uint8_t *)buf, len, 0, false };
	if ((*why = get_head(&c)))
		return HS_EPROTO;
	*count = (uint32_t)get(&c, 4);
	*why = "bad topic";
	if (!get_name(&c, topic, false))
		return HS_EPROTO;
	*why = "bad count or trailing bytes";
	if (*count == 0 || c.at != len)
		return HS_EPROTO;
	*why = NULL;
	return 0;
}

int hsb_wire_put_ping(uint8_t *buf, size_t cap)
{
	struct cur c = { buf, cap, 0, false };
	put_head(&c);
	return finish(&c);
}

int hsb_wire_get_ping(const void *buf, size_t len, const char **why)
{
	struct cur c = { (uint8_t *)buf, len, 0, false };
	if ((*why = get_head(&c)))
		return HS_EPROTO;
	*why = "trailing bytes";
	if (c.at != len)
		return HS_EPROTO;
	*why = NULL;
	return 0;
}
