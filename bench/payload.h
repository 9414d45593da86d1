/* What every method does with the bytes, so that only the hand-off
 * differs between rows: the producer writes every byte (memset), the
 * consumer reads a fixed sample of cache lines and checks the first byte. */
#ifndef BENCH_PAYLOAD_H
#define BENCH_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Cache lines the consumer reads, spread evenly over the payload. */
#define PAYLOAD_READ_LINES 64

/* The byte iteration i writes everywhere (never 0, so a block that was
 * never written does not pass). */
static inline uint8_t payload_byte(uint64_t i)
{
	return (uint8_t)(1 + i % 251);
}

void payload_write(void *data, size_t n, uint64_t iter);
/* Sums the first 8 bytes of PAYLOAD_READ_LINES lines; returns 0 when
 * byte 0 and the last byte hold payload_byte(iter), -1 otherwise. */
int payload_read(const void *data, size_t n, uint64_t iter, uint64_t *sum);

#endif
