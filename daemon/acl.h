/* Per-topic allow lists ([acl] in the config, docs/security.md): rules of
 * a topic glob and the uids and gids let through, one list for publishing
 * (emit) and one for subscribing. The first rule of an action whose glob
 * matches the topic decides; a topic no rule matches is open. Fixed-size,
 * so the broker's config stays a plain value to copy. */
#ifndef HS_DAEMON_ACL_H
#define HS_DAEMON_ACL_H

#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

#define ACL_MAX_RULES 64
#define ACL_MAX_IDS 32

enum hsd_acl_action {
	ACL_PUBLISH = 0,
	ACL_SUBSCRIBE = 1,
};

struct hsd_acl_rule {
	enum hsd_acl_action action;
	char glob[HS__MAX_TOPIC + 1];
	uint32_t uids[ACL_MAX_IDS];
	uint32_t n_uids;
	uint32_t gids[ACL_MAX_IDS];
	uint32_t n_gids;
};

struct hsd_acl {
	struct hsd_acl_rule rules[ACL_MAX_RULES];
	uint32_t n;
};

/* Appends a rule (ids already resolved): 0, or -1 when the list is full
 * or glob is empty or too long. */
int hsd_acl_add(struct hsd_acl *a, enum hsd_acl_action action, const char *glob, const uint32_t *uids,
		uint32_t n_uids, const uint32_t *gids, uint32_t n_gids);

/* Whether uid/gid may do action on topic. */
bool hsd_acl_allows(const struct hsd_acl *a, enum hsd_acl_action action, const char *topic, uint32_t uid,
		    uint32_t gid);

const char *hsd_acl_action_name(enum hsd_acl_action action);

#endif
