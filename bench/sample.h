/* Latency samples of one benchmark case and the one JSON line each
 * benchmark program prints for the driver (bench/run.py). */
#ifndef BENCH_SAMPLE_H
#define BENCH_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct sample_set {
	const char *name; /* the key prefix in the JSON: "rt", "write", ... */
	uint64_t *ns;
	size_t n, cap;
} sample_set;

int sample_init(sample_set *s, const char *name, size_t cap);
void sample_add(sample_set *s, uint64_t ns);
void sample_free(sample_set *s);
/* Sorts in place; p in [0, 1]. 0 when empty. */
double sample_pct_us(sample_set *s, double p);

/* The JSON line: {"case": ..., "size": ..., then for every set
 * "<name>_p50_us", "_p99_us", "_min_us", "_mean_us", "_max_us"} plus the
 * extra "key": value pairs given as a preformatted string (may be NULL or
 * "", else it starts with ", "). */
void sample_print_json(FILE *f, const char *bench_case, uint64_t size,
		       sample_set *sets, size_t n_sets, const char *extra);

/* A skipped case: {"case": ..., "size": ..., "skipped": reason}; returns
 * 0 so main can return it (a skip is not a failure). */
int sample_print_skip(const char *bench_case, uint64_t size, const char *reason);

/* utime + stime of a process from /proc/PID/stat, in ns (clock-tick
 * resolution); -1 when it cannot be read. */
int64_t sample_proc_cpu_ns(int pid);

#endif
