/* Log lines on stderr, one fputs per line so lines from one process do
 * not interleave. With stderr connected to the journal (systemd sets
 * JOURNAL_STREAM to the "device:inode" of that stream; checked against
 * stderr's own, as systemd.exec(5) asks, because the variable is
 * inherited by processes whose stderr went elsewhere) each line starts
 * with a <N> syslog priority and the journal adds the time; otherwise it
 * starts with an ISO 8601 local time with its zone. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* Whether stderr is the stream JOURNAL_STREAM names. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	char end;
	if (!e || sscanf(e, "%llu:%llu%c", &dev, &ino, &end) != 2)
		return false;
	struct stat st;
	if (fstat(2, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static enum hsd_log_level current = LOG_LEVEL_INFO;
static int journal = -1;

void hsd_log_set_level(enum hsd_log_level level)
{
	current = level;
}

enum hsd_log_level hsd_log_get_level(void)
{
	return current;
}

const char *hsd_log_level_name(enum hsd_log_level level)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	return level <= LOG_LEVEL_DEBUG ? names[level] : "?";
}

int hsd_log_level_parse(const char *name)
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

void hsd_log_msg(enum hsd_log_level level, const char *fmt, ...)
{
	/* syslog priorities: err, warning, info, debug */
	static const int prio[] = { 3, 4, 6, 7 };
	if (level > current)
		return;
	if (journal < 0)
		journal = stderr_is_journal();

	char line[1024];
	int n;
	if (journal) {
		n = snprintf(line, sizeof(line), "<%d>", prio[level]);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		struct tm tm;
		localtime_r(&ts.tv_sec, &tm);
		/* 2026-11-29T17:05:03.123+01:00: strftime's %z has no colon. */
		char when[32], zone[8];
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		strftime(zone, sizeof(zone), "%z", &tm);
		n = snprintf(line, sizeof(line), "%s.%03ld%.3s:%.2s hsbrokerd %s: ", when,
			     ts.tv_nsec / 1000000, zone, zone + 3, hsd_log_level_name(level));
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
