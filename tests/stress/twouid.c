/* Two-uid test helpers (twouid.h). */
#include "twouid.h"

#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

int tu_daemon_start(struct ht_daemon *d, const char *text, char *log, size_t log_size)
{
	char dir[256], conf[300];
	ht_tmpdir(dir, sizeof(dir));
	if (!dir[0])
		return -1;
	snprintf(conf, sizeof(conf), "%s/hsbrokerd.conf", dir);
	snprintf(log, log_size, "%s/hsbrokerd.log", dir);
	if (text) {
		FILE *f = fopen(conf, "w");
		if (!f || fputs(text, f) < 0 || fclose(f) != 0)
			return -1;
	}
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	/* The daemon inherits stderr: point it at the log for the start. */
	int saved = dup(2);
	dup2(fd, 2);
	const char *with[] = { "--config", conf, "--log-level", "info", NULL };
	const char *without[] = { "--log-level", "info", NULL };
	int rc = ht_daemon_start(d, text ? with : without);
	dup2(saved, 2);
	close(saved);
	close(fd);
	if (rc < 0)
		return -1;
	/* mkdtemp makes folders 0700: others could not reach the socket */
	char path[300];
	snprintf(path, sizeof(path), "%s", d->dir);
	if (chmod(path, 0755) < 0 || chmod(dirname(path), 0755) < 0)
		return -1;
	return 0;
}

bool tu_log_has(const char *log, const char *a, const char *b)
{
	FILE *f = fopen(log, "r");
	if (!f)
		return false;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, a) && (!b || strstr(line, b));
	fclose(f);
	return found;
}

int tu_become(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		return ht_child_fail("become", "cannot become uid %u gid %u", (unsigned)uid,
				     (unsigned)gid);
	return 0;
}
