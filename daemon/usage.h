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

struct hsd_uid_usage {
	uint32_t conns;    /* sessions open, before hello included */
	uint32_t refused;  /* connections past the cap waiting to be told */
	uint32_t subs;     /* subscriptions over all its sessions */
	uint32_t topics;   /* topics it created that still exist */
	uint64_t evict_after_us; /* no scan for its idle topics before then */
};

struct hsd_usage_table {
	struct hsd_idmap map; /* uid + 1 -> struct hsd_uid_usage * */
};

void hsd_usage_init(struct hsd_usage_table *u);
void hsd_usage_fini(struct hsd_usage_table *u);
/* The uid's entry, made on first use: NULL only when out of memory. */
struct hsd_uid_usage *hsd_usage_of(struct hsd_usage_table *u, uid_t uid);
/* Frees the uid's entry once every count is 0 (call after a decrement). */
void hsd_usage_tidy(struct hsd_usage_table *u, uid_t uid);

#endif
