/* Shared by the stress programs (faults.c, load.c): a seeded RNG, 64-bit
 * numbers over a pipe, the daemon's idle check through
 * hs_client_get_info, and its resident memory. */
#ifndef HS_TEST_STRESS_H
#define HS_TEST_STRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hsbroker/hsbroker.h>

/* xorshift64*: reproducible from the printed seed. */
struct st_rng {
	uint64_t s;
};
void st_rng_seed(struct st_rng *r, uint64_t seed);
uint64_t st_rng_next(struct st_rng *r);
/* Uniform in [0, n) (n > 0). */
uint32_t st_rng_below(struct st_rng *r, uint32_t n);

/* The seed: argument (decimal or 0x hex) if given, else HS_STRESS_SEED,
 * else from the clock. */
uint64_t st_seed(const char *arg);

/* A number over a pipe: 0 / -1 (EOF, error or deadline). */
int st_put_u64(int fd, uint64_t v);
int st_get_u64(int fd, uint64_t *v, int deadline_ms);

/* What the daemon holds, as hs_client_get_info tells it. */
struct st_usage {
	size_t tensors;
	size_t clients;     /* sessions, the asking one included */
	size_t topics;
	uint64_t pool_used; /* all pools */
	uint64_t pool_total;
	uint64_t pool_free;
	uint32_t slabs;
	uint64_t tensors_held_by_others; /* sum over clients but the asking one */
};
int st_usage(hs_client *c, struct st_usage *u);

/* Polls (connecting as name) until the daemon holds no tensor, every pool
 * has free == total and used == 0, and this is the only client. Returns 0
 * with the last usage in *u, -1 at the deadline (printing what is left). */
int st_wait_idle(const char *sock, int deadline_ms, struct st_usage *u);

/* VmRSS of pid in KiB, or -1. */
long st_rss_kib(pid_t pid);

/* Under ASan (its quarantine holds freed memory on purpose) or a
 * wrapper such as valgrind, the daemon's RSS says nothing about leaks:
 * it is shown, not compared. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_COMPARABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_COMPARABLE 0
#endif
#endif
#ifndef RSS_COMPARABLE
#define RSS_COMPARABLE 1
#endif

#endif
