/* Daemon logging: levels on stderr; when stderr is the journal's stream
 * ($JOURNAL_STREAM names its device and inode) each line starts with a <N>
 * syslog priority so the journal keeps the level, else with an ISO 8601
 * timestamp and zone. */
#ifndef HS_DAEMON_LOG_H
#define HS_DAEMON_LOG_H

enum hsd_log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void hsd_log_set_level(enum hsd_log_level level);
enum hsd_log_level hsd_log_get_level(void);
const char *hsd_log_level_name(enum hsd_log_level level);
/* "error", "warn", "info", "debug" (also "warning"); -1 when unknown. */
int hsd_log_level_parse(const char *name);

void hsd_log_msg(enum hsd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) hsd_log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) hsd_log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) hsd_log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                       \
	do {                                                 \
		if (hsd_log_get_level() >= LOG_LEVEL_DEBUG)      \
			hsd_log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
