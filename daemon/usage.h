/* What each uid uses across all its sessions: connections, subscriptions
 * and topics it created, so that the [limits] per-uid caps can hold one
 * uid back without touching the others (issue 11). A uid is the trust
 * boundary (docs/security.md): caps per session alone let one user open
 * more sessions. */
#ifndef HS_DAEMON_USAGE_H
#define HS_DAEMON_USAGE_H

#include <stdint.h>
#include <sys/types.h>

#include "idmap.h"

struct uid_usage {
	uint32_t conns;    /* sessions open, before hello included */
	uint32_t refused;  /* connections past the cap waiting to be told */
	uint32_t subs;     /* subscriptions over all its sessions */
	uint32_t topics;   /* topics it created that still exist */
	uint64_t evict_after_us; /* no scan for its idle topics before then */
};

struct usage_table {
	struct idmap map;  /* uid + 1 -> struct uid_usage * */
};

void usage_init(struct usage_table *u);
void usage_fini(struct usage_table *u);
/* The uid's entry, made on first use: NULL only when out of memory. */
struct uid_usage *usage_of(struct usage_table *u, uid_t uid);
/* Frees the uid's entry once every count is 0 (call after a decrement). */
void usage_tidy(struct usage_table *u, uid_t uid);

#endif
