/* Percentiles over sorted samples: nearest rank, so p99 of 10,000
 * samples is the 9,900th, as people read it. */
#include "sample.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sample_init(sample_set *s, const char *name, size_t cap)
{
	s->name = name;
	s->n = 0;
	s->cap = cap ? cap : 1;
	s->ns = calloc(s->cap, sizeof(*s->ns));
	return s->ns ? 0 : -1;
}

void sample_add(sample_set *s, uint64_t ns)
{
	if (s->n < s->cap)
		s->ns[s->n++] = ns;
}

void sample_free(sample_set *s)
{
	free(s->ns);
	s->ns = NULL;
	s->n = s->cap = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

double sample_pct_us(sample_set *s, double p)
{
	if (s->n == 0)
		return 0;
	qsort(s->ns, s->n, sizeof(*s->ns), cmp_u64);
	size_t rank = (size_t)(p * (double)s->n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > s->n)
		rank = s->n;
	return (double)s->ns[rank - 1] / 1000.0;
}

static double mean_us(const sample_set *s)
{
	if (s->n == 0)
		return 0;
	long double sum = 0;
	for (size_t i = 0; i < s->n; i++)
		sum += s->ns[i];
	return (double)(sum / s->n / 1000.0L);
}

void sample_print_json(FILE *f, const char *bench_case, uint64_t size,
		       sample_set *sets, size_t n_sets, const char *extra)
{
	fprintf(f, "{\"case\": \"%s\", \"size\": %" PRIu64, bench_case, size);
	for (size_t i = 0; i < n_sets; i++) {
		sample_set *s = &sets[i];
		fprintf(f, ", \"%s_n\": %zu, \"%s_p50_us\": %.3f, \"%s_p90_us\": %.3f, "
			"\"%s_p99_us\": %.3f, \"%s_min_us\": %.3f, \"%s_max_us\": %.3f, "
			"\"%s_mean_us\": %.3f",
			s->name, s->n, s->name, sample_pct_us(s, 0.50),
			s->name, sample_pct_us(s, 0.90), s->name, sample_pct_us(s, 0.99),
			s->name, sample_pct_us(s, 0.0), s->name, sample_pct_us(s, 1.0),
			s->name, mean_us(s));
	}
	fprintf(f, "%s}\n", extra ? extra : "");
	fflush(f);
}

int sample_print_skip(const char *bench_case, uint64_t size, const char *reason)
{
	printf("{\"case\": \"%s\", \"size\": %" PRIu64 ", \"skipped\": \"%s\"}\n",
	       bench_case, size, reason);
	fflush(stdout);
	fprintf(stderr, "%s: skipped: %s\n", bench_case, reason);
	return 0;
}

int64_t sample_proc_cpu_ns(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	/* comm may hold spaces and parentheses: fields start after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long utime = 0, stime = 0;
	/* Fields 3..13 skipped, 14 utime, 15 stime. */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		   &utime, &stime) != 2)
		return -1;
	long tck = sysconf(_SC_CLK_TCK);
	if (tck <= 0)
		return -1;
	return (int64_t)((utime + stime) * (1000000000ull / (unsigned long long)tck));
}
