/* Per-topic allow lists: matching a topic against the rules in order. */
#include "acl.h"

#include <fnmatch.h>
#include <string.h>

int hsd_acl_add(struct hsd_acl *a, enum hsd_acl_action action, const char *glob, const uint32_t *uids,
		uint32_t n_uids, const uint32_t *gids, uint32_t n_gids)
{
	size_t len = strlen(glob);
	if (a->n >= ACL_MAX_RULES || len == 0 || len > HS__MAX_TOPIC || n_uids > ACL_MAX_IDS ||
	    n_gids > ACL_MAX_IDS)
		return -1;
	struct hsd_acl_rule *r = &a->rules[a->n++];
	memset(r, 0, sizeof(*r));
	r->action = action;
	memcpy(r->glob, glob, len + 1);
	for (uint32_t i = 0; i < n_uids; i++)
		r->uids[i] = uids[i];
	r->n_uids = n_uids;
	for (uint32_t i = 0; i < n_gids; i++)
		r->gids[i] = gids[i];
	r->n_gids = n_gids;
	return 0;
}

static bool listed(const uint32_t *ids, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

bool hsd_acl_allows(const struct hsd_acl *a, enum hsd_acl_action action, const char *topic, uint32_t uid,
		    uint32_t gid)
{
	for (uint32_t i = 0; i < a->n; i++) {
		const struct hsd_acl_rule *r = &a->rules[i];
		if (r->action != action || fnmatch(r->glob, topic, 0) != 0)
			continue;
		return listed(r->uids, r->n_uids, uid) || listed(r->gids, r->n_gids, gid);
	}
	return true;
}

const char *hsd_acl_action_name(enum hsd_acl_action action)
{
	return action == ACL_PUBLISH ? "publish" : "subscribe";
}
