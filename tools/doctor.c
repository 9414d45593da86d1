/* hsctl doctor: checks what makes hsbroker work or not on this machine,
 * one line per check: a verdict (ok, info, warn, FAIL), what was found
 * and what to do. The exit code is 1 when a check failed. Needs no GPU:
 * the CUDA checks read the driver's files, not the CUDA runtime. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hs-config.h"
#include "hsctl.h"

enum verdict { V_OK, V_INFO, V_WARN, V_FAIL };
static const char *const verdicts[] = { "ok", "info", "warn", "FAIL" };

struct doctor {
	bool json;
	json_t *checks;
	int failed;
};

/* One check's line: "VERDICT  CHECK: found" and, when there is one, the
 * advice after " — ". */
static void report(struct doctor *d, enum verdict v, const char *check, const char *todo,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void report(struct doctor *d, enum verdict v, const char *check, const char *todo,
		   const char *fmt, ...)
{
	char found[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(found, sizeof(found), fmt, ap);
	va_end(ap);
	if (v == V_FAIL)
		d->failed++;
	if (d->json) {
		json_array_append_new(d->checks,
				      json_pack("{s:s, s:s, s:s, s:s*}", "check", check, "verdict",
						verdicts[v], "found", found, "todo", todo));
		return;
	}
	printf("%-4s  %s: %s%s%s\n", verdicts[v], check, found, todo ? " — " : "",
	       todo ? todo : "");
}

/* A user's or a group's name, else its number. */
static const char *id_name(bool group, unsigned id, char *buf, size_t size)
{
	const char *name = NULL;
	if (group) {
		struct group *gr = getgrgid((gid_t)id);
		name = gr ? gr->gr_name : NULL;
	} else {
		struct passwd *pw = getpwuid((uid_t)id);
		name = pw ? pw->pw_name : NULL;
	}
	if (name)
		snprintf(buf, size, "%s", name);
	else
		snprintf(buf, size, "%u", id);
	return buf;
}

/* The socket file and its folder against the caller's uid and groups. */
static void check_socket(struct doctor *d, const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno == EACCES)
			report(d, V_FAIL, "socket", "ask for search (x) permission on its folders, "
			       "or run as a user the broker serves",
			       "%s: a folder on the way is closed to uid %u", path,
			       (unsigned)geteuid());
		else
			report(d, V_FAIL, "socket", "start it (systemctl start hsbrokerd.socket, or "
			       "hsbrokerd), or name the right socket with --socket / HSBROKER_SOCKET",
			       "%s: %s: no hsbrokerd listens there", path, strerror(errno));
		return;
	}
	if (!S_ISSOCK(st.st_mode)) {
		report(d, V_FAIL, "socket", "point --socket / HSBROKER_SOCKET at hsbrokerd's socket",
		       "%s exists but is not a socket", path);
		return;
	}
	char owner[64], group[64];
	id_name(false, st.st_uid, owner, sizeof(owner));
	id_name(true, st.st_gid, group, sizeof(group));
	/* connect(2) needs write permission on the socket file. */
	if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) < 0) {
		char todo[256];
		snprintf(todo, sizeof(todo),
			 "join group %s (usermod -aG %s USER, then log in again), or widen "
			 "[access] socket_mode in hsbrokerd.conf", group, group);
		report(d, V_FAIL, "socket", todo, "%s (mode %04o, %s:%s) is not writable by uid %u",
		       path, (unsigned)(st.st_mode & 07777), owner, group, (unsigned)geteuid());
		return;
	}
	report(d, V_OK, "socket", NULL, "%s (mode %04o, %s:%s): uid %u may connect", path,
	       (unsigned)(st.st_mode & 07777), owner, group, (unsigned)geteuid());
}

/* The kernel module's version from /proc/driver/nvidia/version, or
 * false when no NVIDIA driver is loaded. */
static bool nvidia_driver(char *version, size_t size)
{
	FILE *f = fopen("/proc/driver/nvidia/version", "r");
	if (!f)
		return false;
	char line[512] = "";
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	/* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159  ..." */
	const char *m = strstr(line, "Module");
	const char *v = m ? m + 6 : line;
	while (*v == ' ')
		v++;
	size_t n = strcspn(v, " \n");
	snprintf(version, size, "%.*s", (int)(n < size ? n : size - 1), v);
	if (!version[0])
		snprintf(version, size, "unknown version");
	return true;
}

/* Returns the number of GPUs the driver shows (device nodes). */
static int check_cuda(struct doctor *d, const hs_info *info)
{
	char version[64];
	if (!nvidia_driver(version, sizeof(version))) {
		report(d, V_INFO, "cuda", "install the NVIDIA driver for GPU tensors",
		       "no NVIDIA driver loaded (no /proc/driver/nvidia/version): host tensors only");
		return 0;
	}
	glob_t g;
	int n = 0, closed = 0;
	if (glob("/dev/nvidia[0-9]*", 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++) {
			n++;
			if (faccessat(AT_FDCWD, g.gl_pathv[i], R_OK | W_OK, AT_EACCESS) < 0)
				closed++;
		}
		globfree(&g);
	}
	int pools = 0;
	for (size_t i = 0; info && i < info->n_pools; i++)
		pools += info->pools[i].device.device_type == kDLCUDA;
	if (n == 0) {
		report(d, V_WARN, "cuda", "load the driver's devices (nvidia-modprobe, or run any "
		       "CUDA program once as root)",
		       "driver %s loaded but no /dev/nvidiaN device node", version);
	} else if (closed || faccessat(AT_FDCWD, "/dev/nvidiactl", R_OK | W_OK, AT_EACCESS) < 0) {
		report(d, V_WARN, "cuda", "join the group that owns /dev/nvidia* (often video or "
		       "render), then log in again",
		       "driver %s, %d GPU%s, but uid %u cannot open %s", version, n,
		       n == 1 ? "" : "s", (unsigned)geteuid(),
		       closed ? "every /dev/nvidiaN" : "/dev/nvidiactl");
	} else {
		report(d, V_OK, "cuda", NULL, "driver %s, %d GPU%s; the daemon has %d GPU pool%s "
		       "(made at a GPU's first device tensor)", version, n, n == 1 ? "" : "s",
		       pools, pools == 1 ? "" : "s");
	}
	return n;
}

/* An MPS control daemon, found by its process name: its pid or 0. */
static pid_t mps_control(void)
{
	DIR *dir = opendir("/proc");
	if (!dir)
		return 0;
	pid_t found = 0;
	struct dirent *e;
	while (!found && (e = readdir(dir))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strncmp(comm, "nvidia-cuda-mps", 15))
			found = (pid_t)atoi(e->d_name);
		fclose(f);
	}
	closedir(dir);
	return found;
}

static void check_mps(struct doctor *d, int gpus)
{
	pid_t pid = mps_control();
	const char *pipe = getenv("CUDA_MPS_PIPE_DIRECTORY");
	if (!pipe || !*pipe)
		pipe = "/tmp/nvidia-mps";
	if (pid) {
		report(d, V_OK, "mps", "every process of the pipeline, hsbrokerd too, must see the "
		       "same CUDA_MPS_PIPE_DIRECTORY (hsbrokerd.service has PrivateTmp=: see docs/gpu.md)",
		       "running (pid %d; this shell's pipe directory %s): cross-process GPU "
		       "hand-offs share one context", (int)pid, pipe);
	} else if (gpus > 0) {
		report(d, V_WARN, "mps", "for multi-process GPU pipelines start it before hsbrokerd "
		       "and the pipeline: nvidia-cuda-mps-control -d (docs/gpu.md)",
		       "not running: every cross-process GPU hand-off waits for a context switch "
		       "(round trip ~300 us without MPS, ~30 us with it on an H100)");
	} else {
		report(d, V_INFO, "mps", NULL, "not running; nothing to gain without a GPU");
	}
}

/* Pools within 10% of their cap; the host pool without one. */
static void check_pools(struct doctor *d, const hs_info *info)
{
	int near = 0;
	for (size_t i = 0; i < info->n_pools; i++) {
		const hs_pool_info *p = &info->pools[i];
		char dev[16], used[32], total[32], cap[32], todo[160];
		fmt_device(p->device, dev, sizeof(dev));
		const char *section = p->device.device_type == kDLCPU ? "pool.cpu" : "pool.cuda";
		if (!p->cap) {
			if (p->device.device_type == kDLCPU) {
				snprintf(todo, sizeof(todo), "set [%s] cap (hsbroker.conf(5)), then "
					 "systemctl reload hsbrokerd", section);
				report(d, V_WARN, "pools", todo, "%s has no cap: a client can make the "
				       "daemon take all memory", dev);
				near++;
			}
			continue;
		}
		fmt_bytes(p->used, used, sizeof(used));
		fmt_bytes(p->total, total, sizeof(total));
		fmt_bytes(p->cap, cap, sizeof(cap));
		/* Near: the tensors use 90% of the cap, or the slabs reach it
		 * with less than a slab's worth free. */
		bool full = p->used >= p->cap / 10 * 9 ||
			    (p->total + p->slab_size > p->cap && p->total - p->used < p->slab_size);
		if (full) {
			snprintf(todo, sizeof(todo), "raise [%s] cap and systemctl reload hsbrokerd, "
				 "or see who holds what: hsctl ls clients", section);
			report(d, V_WARN, "pools", todo, "%s near its cap: tensors %s, slabs %s of %s "
			       "(allocations soon fail with HS_ENOSPC)", dev, used, total, cap);
			near++;
		}
	}
	if (!near)
		report(d, V_OK, "pools", NULL, "%zu pool%s, none near its cap", info->n_pools,
		       info->n_pools == 1 ? "" : "s");
}

/* Subscribers whose full queue holds BLOCK emits back. */
static void check_stalled(struct doctor *d, const hs_info *info)
{
	int stalled = 0;
	for (size_t i = 0; i < info->n_topics; i++) {
		const hs_topic_info *t = &info->topics[i];
		for (uint32_t j = 0; j < t->n_subscribers; j++) {
			const hs_subscriber_info *s = &t->subscribers[j];
			if (s->policy != HS_POLICY_BLOCK || s->queued < s->depth)
				continue;
			stalled++;
			char held[64] = "";
			if (t->blocked_emits)
				snprintf(held, sizeof(held), " and holds %u emit%s back",
					 t->blocked_emits, t->blocked_emits == 1 ? "" : "s");
			report(d, V_WARN, "subscribers", "see why it does not receive (is it alive? "
			       "busy?); the daemon skips it after [subscribe] block_timeout_ms",
			       "%d/%s on %s is full (%u of %u queued, policy block)%s", s->pid,
			       s->name, t->name, s->queued, s->depth, held);
		}
	}
	if (!stalled)
		report(d, V_OK, "subscribers", NULL, "none stalled on a BLOCK queue");
}

int hsctl_doctor(struct hsctl *ctl)
{
	struct doctor d = { .json = ctl->json, .checks = ctl->json ? json_array() : NULL };
	if (ctl->json && !d.checks)
		return hsctl_fail("doctor", HS_ENOMEM);
	check_socket(&d, ctl->socket);

	hs_info *info = NULL;
	int err = hs_client_connect(ctl->socket, "hsctl", &ctl->client);
	if (err) {
		const char *why, *hint;
		hsctl_connect_hint(err, &why, &hint);
		report(&d, V_FAIL, "daemon", hint, "cannot connect to %s: %s", ctl->socket, why);
	} else if ((err = hs_client_get_info(ctl->client, HS_INFO_ALL, &info)) < 0) {
		report(&d, V_FAIL, "daemon", "see hsbrokerd's log (journalctl -u hsbrokerd)",
		       "connected, but the listing failed: %s", hs_strerror(err));
	} else {
		char up[32];
		bool same = !strcmp(info->daemon_version, HS_VERSION);
		report(&d, same ? V_OK : V_WARN, "daemon",
		       same ? NULL : "use the hsctl of the daemon's release",
		       "hsbrokerd %s (pid %d) up %s, %zu client%s%s%s", info->daemon_version,
		       (int)info->daemon_pid, fmt_age(info->uptime_us, up, sizeof(up)),
		       info->n_clients, info->n_clients == 1 ? "" : "s",
		       same ? "" : "; this hsctl is ", same ? "" : HS_VERSION);
	}
	int gpus = check_cuda(&d, info);
	check_mps(&d, gpus);
	if (info) {
		check_pools(&d, info);
		check_stalled(&d, info);
	} else {
		report(&d, V_INFO, "pools", NULL, "not checked: no daemon");
		report(&d, V_INFO, "subscribers", NULL, "not checked: no daemon");
	}
	hs_info_free(info);
	if (ctl->json) {
		json_t *o = json_pack("{s:o, s:b}", "checks", d.checks, "ok", d.failed == 0);
		if (hsctl_json_print(o, JSON_INDENT(2)))
			return 1;
	} else if (fflush(stdout) != 0) {
		return 1;
	}
	return d.failed ? 1 : 0;
}
