/* Log lines on stderr, one fprintf per line so lines from one process do
 * not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static enum log_level current = LOG_LEVEL_INFO;
static int journal = -1;

void log_set_level(enum log_level level)
{
	current = level;
}

enum log_level log_get_level(void)
{
	return current;
}

int log_level_parse(const char *name)
{
	if (!name)
		return -1;
	if (!strcasecmp(name, "error"))
		return LOG_LEVEL_ERROR;
	if (!strcasecmp(name, "warn") || !strcasecmp(name, "warning"))
		return LOG_LEVEL_WARN;
	if (!strcasecmp(name, "info"))
		return LOG_LEVEL_INFO;
	if (!strcasecmp(name, "debug"))
		return LOG_LEVEL_DEBUG;
	return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	/* syslog priorities: err, warning, info, debug */
	static const int prio[] = { 3, 4, 6, 7 };
	if (level > current)
		return;
	if (journal < 0)
		journal = getenv("JOURNAL_STREAM") != NULL;

	char line[1024];
	int n;
	if (journal) {
		n = snprintf(line, sizeof(line), "<%d>", prio[level]);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld hsbrokerd %s: ",
			     tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			     names[level]);
	}
	if (n < 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	size_t len = strnlen(line, sizeof(line) - 2);
	line[len++] = '\n';
	line[len] = '\0';
	fputs(line, stderr);
}
