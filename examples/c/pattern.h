/* The values the example producer writes and the consumer checks: element
 * e of tensor number `index` (the topic's seq - 1) holds index * 1000 + e.
 * Both sides compute it the same way, so float rounding agrees. */
#ifndef HS_EXAMPLE_PATTERN_H
#define HS_EXAMPLE_PATTERN_H

#include <stdint.h>

#define EXAMPLE_ROWS 4
#define EXAMPLE_COLS 256

static inline float example_value(uint64_t index, uint64_t element)
{
	return (float)((double)index * 1000.0 + (double)element);
}

#endif
