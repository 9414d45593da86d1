/* Helpers shared by the stress programs. */
#include "stress.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

void st_rng_seed(struct st_rng *r, uint64_t seed)
{
	r->s = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t st_rng_next(struct st_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ull;
}

uint32_t st_rng_below(struct st_rng *r, uint32_t n)
{
	return (uint32_t)((st_rng_next(r) >> 32) % n);
}

uint64_t st_seed(const char *arg)
{
	const char *s = arg && *arg ? arg : getenv("HS_STRESS_SEED");
	if (s && *s)
		return strtoull(s, NULL, 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
	       ((uint64_t)getpid() << 32);
}

int st_put_u64(int fd, uint64_t v)
{
	ssize_t n;
	do
		n = write(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(v) ? 0 : -1;
}

int st_get_u64(int fd, uint64_t *v, int deadline_ms)
{
	uint8_t buf[sizeof(*v)];
	size_t got = 0;
	int64_t end = ht_now_ms() + deadline_ms;
	while (got < sizeof(buf)) {
		int64_t left = end - ht_now_ms();
		if (left < 0)
			left = 0;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	memcpy(v, buf, sizeof(*v));
	return 0;
}

int st_usage(hs_client *c, struct st_usage *u)
{
	hs_info *info;
	int rc = hs_client_get_info(c, HS_INFO_ALL, &info);
	if (rc < 0)
		return rc;
	*u = (struct st_usage){ 0 };
	u->tensors = info->n_tensors;
	u->clients = info->n_clients;
	u->topics = info->n_topics;
	for (size_t i = 0; i < info->n_pools; i++) {
		u->pool_used += info->pools[i].used;
		u->pool_total += info->pools[i].total;
		u->pool_free += info->pools[i].free;
		u->slabs += info->pools[i].slabs;
	}
	pid_t me = getpid();
	for (size_t i = 0; i < info->n_clients; i++)
		if (info->clients[i].pid != me)
			u->tensors_held_by_others += info->clients[i].tensors_held;
	hs_info_free(info);
	return 0;
}

int st_wait_idle(const char *sock, int deadline_ms, struct st_usage *u)
{
	hs_client *c;
	int rc = hs_client_connect(sock, "stress-check", &c);
	if (rc < 0) {
		fprintf(stderr, "idle check: connect: %s\n", hs_strerror(rc));
		return -1;
	}
	int64_t end = ht_now_ms() + deadline_ms;
	int ret = -1;
	for (;;) {
		rc = st_usage(c, u);
		if (rc < 0) {
			fprintf(stderr, "idle check: hs_client_get_info: %s\n", hs_strerror(rc));
			break;
		}
		if (u->tensors == 0 && u->clients == 1 && u->pool_used == 0 &&
		    u->pool_free == u->pool_total) {
			ret = 0;
			break;
		}
		if (ht_now_ms() >= end) {
			fprintf(stderr,
				"idle check: still %zu tensors, %zu clients, pool used %" PRIu64
				" free %" PRIu64 " of %" PRIu64 "\n",
				u->tensors, u->clients, u->pool_used, u->pool_free, u->pool_total);
			break;
		}
		ht_sleep_ms(20);
	}
	hs_client_disconnect(c);
	return ret;
}

long st_rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long kib = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}
