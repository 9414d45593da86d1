/* Topics as the bridge sees them: which names a list of globs selects,
 * and the counters kept per topic name (shown by `hsbridge stats`). */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsb.h"

bool hsb_glob_any(char globs[][HS_MAX_TOPIC + 1], uint32_t n, const char *name)
{
	for (uint32_t i = 0; i < n; i++)
		if (fnmatch(globs[i], name, 0) == 0)
			return true;
	return false;
}

struct hsb_topic *hsb_topic_get(struct hsb_topics *ts, const char *name)
{
	for (struct hsb_topic *t = ts->list; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	struct hsb_topic *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->next = ts->list;
	ts->list = t;
	return t;
}

void hsb_topics_free(struct hsb_topics *ts)
{
	while (ts->list) {
		struct hsb_topic *t = ts->list;
		ts->list = t->next;
		free(t);
	}
}
