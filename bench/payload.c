#include "payload.h"

#include <string.h>

void payload_write(void *data, size_t n, uint64_t iter)
{
	memset(data, payload_byte(iter), n);
}

int payload_read(const void *data, size_t n, uint64_t iter, uint64_t *sum)
{
	const volatile uint8_t *p = data;
	uint64_t s = 0;
	size_t lines = n / 64 ? n / 64 : 1;
	size_t step = lines > PAYLOAD_READ_LINES ? lines / PAYLOAD_READ_LINES : 1;
	for (size_t l = 0, k = 0; l < lines && k < PAYLOAD_READ_LINES; l += step, k++) {
		uint64_t w;
		size_t off = l * 64;
		size_t len = n - off < sizeof(w) ? n - off : sizeof(w);
		w = 0;
		memcpy(&w, (const void *)(p + off), len);
		s += w;
	}
	*sum = s;
	return p[0] == payload_byte(iter) && p[n - 1] == payload_byte(iter) ? 0 : -1;
}
