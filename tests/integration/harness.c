/* Integration test harness: the daemon, child processes, hsctl. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HT_MAX_TRACKED 64

/* What the test process must clean up if it ends early (a failed
 * ck_assert exits it): processes to kill, directories to remove. */
static pid_t owner_pid;
static pid_t tracked_pids[HT_MAX_TRACKED];
static char tracked_dirs[8][256];
static int n_tracked_dirs;
static pid_t last_hsctl_pid;

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(path);
	return 0;
}

static void cleanup_at_exit(void)
{
	if (getpid() != owner_pid)
		return;
	for (int i = 0; i < HT_MAX_TRACKED; i++) {
		if (tracked_pids[i] > 0) {
			kill(tracked_pids[i], SIGKILL);
			waitpid(tracked_pids[i], NULL, 0);
			tracked_pids[i] = 0;
		}
	}
	for (int i = 0; i < n_tracked_dirs; i++)
		nftw(tracked_dirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	n_tracked_dirs = 0;
}

void ht_init(void)
{
	if (owner_pid == getpid())
		return;
	owner_pid = getpid();
	memset(tracked_pids, 0, sizeof(tracked_pids));
	n_tracked_dirs = 0;
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup_at_exit);
}

static void track_pid(pid_t pid)
{
	for (int i = 0; i < HT_MAX_TRACKED; i++) {
		if (tracked_pids[i] == 0) {
			tracked_pids[i] = pid;
			return;
		}
	}
}

static void untrack_pid(pid_t pid)
{
	for (int i = 0; i < HT_MAX_TRACKED; i++)
		if (tracked_pids[i] == pid)
			tracked_pids[i] = 0;
}

int64_t ht_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ht_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int ht_child_fail(const char *who, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "[%s pid %d] ", who, (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

const char *ht_prog(const char *var)
{
	const char *p = getenv(var);
	if (!p || !*p) {
		fprintf(stderr, "harness: %s is not set (run the tests with meson test)\n", var);
		return NULL;
	}
	return p;
}

/* Made by the runner before a case forks and removed after it ends, pass
 * or fail: a failed ck_assert leaves the case with _exit, skipping atexit. */
static char run_base[128];

static const char *tmp_base(void)
{
	const char *base = getenv("TMPDIR");
	if (!base || !*base || strlen(base) > 60)
		base = "/tmp";
	return base;
}

void ht_run_setup(void)
{
	snprintf(run_base, sizeof(run_base), "%s/hs-it.XXXXXX", tmp_base());
	if (!mkdtemp(run_base)) {
		perror("mkdtemp");
		run_base[0] = '\0';
	}
}

void ht_run_teardown(void)
{
	if (run_base[0])
		nftw(run_base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	run_base[0] = '\0';
}

void ht_tmpdir(char *out, size_t size)
{
	ht_init();
	if (run_base[0])
		snprintf(out, size, "%s/t.XXXXXX", run_base);
	else
		snprintf(out, size, "%s/hs-it.XXXXXX", tmp_base());
	if (!mkdtemp(out)) {
		perror("mkdtemp");
		out[0] = '\0';
		return;
	}
	if (n_tracked_dirs < 8)
		snprintf(tracked_dirs[n_tracked_dirs++], sizeof(tracked_dirs[0]), "%s", out);
}

int ht_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* ---- processes ---- */

static void child_setup(pid_t parent)
{
	/* A child outlives a failed test otherwise, holding the socket. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	signal(SIGPIPE, SIG_DFL);
}

pid_t ht_fork(int (*fn)(void *arg), void *arg)
{
	ht_init();
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return -1;
	}
	if (pid == 0) {
		child_setup(parent);
		/* Clients ignore SIGPIPE as libraries expect of their hosts. */
		signal(SIGPIPE, SIG_IGN);
		int rc = fn(arg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	track_pid(pid);
	return pid;
}

pid_t ht_spawn(char *const argv[], const char *const *extra_env,
	       int stdout_fd, int stderr_fd)
{
	ht_init();
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return -1;
	}
	if (pid == 0) {
		child_setup(parent);
		if (stdout_fd >= 0 && dup2(stdout_fd, 1) < 0)
			_exit(127);
		if (stderr_fd >= 0 && dup2(stderr_fd, 2) < 0)
			_exit(127);
		for (const char *const *e = extra_env; e && *e; e++)
			putenv((char *)*e);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	track_pid(pid);
	return pid;
}

int ht_wait(pid_t pid, int deadline_ms)
{
	int64_t end = ht_now_ms() + deadline_ms;
	int backoff = 1;
	for (;;) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			untrack_pid(pid);
			if (WIFEXITED(status))
				return WEXITSTATUS(status);
			if (WIFSIGNALED(status))
				return 128 + WTERMSIG(status);
			return -1;
		}
		if (r < 0 && errno != EINTR) {
			perror("waitpid");
			return -1;
		}
		if (ht_now_ms() >= end) {
			fprintf(stderr, "harness: pid %d still running at the deadline; killing it\n", (int)pid);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			untrack_pid(pid);
			return -1;
		}
		ht_sleep_ms(backoff);
		if (backoff < 20)
			backoff *= 2;
	}
}

/* ---- the daemon ---- */

static bool pid_exited(pid_t pid)
{
	siginfo_t info;
	memset(&info, 0, sizeof(info));
	/* WNOWAIT: peek, so ht_wait can still collect the status. */
	if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
		return errno == ECHILD;
	return info.si_pid == pid;
}

bool ht_daemon_alive(struct ht_daemon *d)
{
	return d->pid > 0 && !pid_exited(d->pid) && kill(d->pid, 0) == 0;
}

int ht_wait_socket(const char *path, pid_t pid, int deadline_ms)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return -1;
	strcpy(addr.sun_path, path);
	int64_t end = ht_now_ms() + deadline_ms;
	int backoff = 1;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
		close(fd);
		if (r == 0)
			return 0;
		if (pid > 0 && pid_exited(pid)) {
			fprintf(stderr, "harness: pid %d exited before %s accepted\n", (int)pid, path);
			return -1;
		}
		if (ht_now_ms() >= end) {
			fprintf(stderr, "harness: %s never accepted: %s\n", path, strerror(errno));
			return -1;
		}
		ht_sleep_ms(backoff);
		if (backoff < 50)
			backoff *= 2;
	}
}

int ht_daemon_start_at(struct ht_daemon *d, const char *sock,
		       const char *const *extra)
{
	ht_init();
	const char *daemon = ht_prog("HSBROKERD");
	if (!daemon)
		return -1;
	if (sock != d->sock)
		snprintf(d->sock, sizeof(d->sock), "%s", sock);

	char *argv[64];
	int n = 0;
	/* HS_TEST_DAEMON_WRAPPER: "valgrind --error-exitcode=99 ..." */
	static char wrapper[1024];
	const char *w = getenv("HS_TEST_DAEMON_WRAPPER");
	if (w && *w) {
		snprintf(wrapper, sizeof(wrapper), "%s", w);
		for (char *save = NULL, *tok = strtok_r(wrapper, " ", &save);
		     tok && n < 40; tok = strtok_r(NULL, " ", &save))
			argv[n++] = tok;
	}
	argv[n++] = (char *)daemon;
	argv[n++] = (char *)"--socket";
	argv[n++] = d->sock;
	for (const char *const *e = extra; e && *e && n < 62; e++)
		argv[n++] = (char *)*e;
	/* HS_TEST_DAEMON_ARGS: options every daemon of the run gets, e.g.
	 * "--spin-us 50" to run a suite against a spinning daemon. */
	static char more[256];
	const char *a = getenv("HS_TEST_DAEMON_ARGS");
	if (a && *a) {
		snprintf(more, sizeof(more), "%s", a);
		for (char *save = NULL, *tok = strtok_r(more, " ", &save); tok && n < 62;
		     tok = strtok_r(NULL, " ", &save))
			argv[n++] = tok;
	}
	argv[n] = NULL;
	if (n > 0 && argv[0][0] != '/') {
		/* a wrapper named without a path: resolve like the shell */
		static char resolved[PATH_MAX];
		const char *path = getenv("PATH");
		char buf[4096];
		snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/bin:/bin");
		for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir;
		     dir = strtok_r(NULL, ":", &save)) {
			snprintf(resolved, sizeof(resolved), "%s/%s", dir, argv[0]);
			if (access(resolved, X_OK) == 0) {
				argv[0] = resolved;
				break;
			}
		}
	}

	d->pid = ht_spawn(argv, NULL, -1, -1);
	if (d->pid < 0)
		return -1;
	int deadline = (w && *w) ? HT_LONG_DEADLINE_MS : HT_DEADLINE_MS;
	if (ht_wait_socket(d->sock, d->pid, deadline) < 0) {
		kill(d->pid, SIGKILL);
		ht_wait(d->pid, HT_DEADLINE_MS);
		d->pid = -1;
		return -1;
	}
	return 0;
}

int ht_daemon_start(struct ht_daemon *d, const char *const *extra)
{
	ht_tmpdir(d->dir, sizeof(d->dir));
	if (!d->dir[0])
		return -1;
	snprintf(d->sock, sizeof(d->sock), "%s/hsbroker.sock", d->dir);
	return ht_daemon_start_at(d, d->sock, extra);
}

int ht_write_config(char *path, size_t size, const char *text)
{
	char dir[256];
	ht_tmpdir(dir, sizeof(dir));
	if (!dir[0])
		return -1;
	snprintf(path, size, "%s/hsbrokerd.conf", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

int ht_daemon_start_config(struct ht_daemon *d, const char *config_text, char *log,
			   size_t size)
{
	char config[300], dir[256];
	if (ht_write_config(config, sizeof(config), config_text) < 0)
		return -1;
	ht_tmpdir(dir, sizeof(dir));
	snprintf(log, size, "%s/hsbrokerd.log", dir);
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	int saved = dup(2);
	if (saved < 0 || dup2(fd, 2) < 0) {
		close(fd);
		return -1;
	}
	const char *extra[] = { "--config", config, "--log-level", "info", NULL };
	int rc = ht_daemon_start(d, extra);
	dup2(saved, 2);
	close(saved);
	close(fd);
	if (rc < 0)
		return -1;
	char path[300];
	snprintf(path, sizeof(path), "%s", d->dir);
	char *slash = strrchr(path, '/');
	if (chmod(path, 0755) < 0)
		return -1;
	if (slash && slash != path) {
		*slash = '\0';
		if (chmod(path, 0755) < 0)
			return -1;
	}
	return 0;
}

int ht_daemon_stop(struct ht_daemon *d)
{
	if (d->pid <= 0)
		return -1;
	if (kill(d->pid, SIGTERM) < 0) {
		perror("kill hsbrokerd");
		return -1;
	}
	const char *w = getenv("HS_TEST_DAEMON_WRAPPER");
	int rc = ht_wait(d->pid, (w && *w) ? HT_LONG_DEADLINE_MS : HT_DEADLINE_MS);
	d->pid = -1;
	if (rc >= 128)
		return -2;
	return rc;
}

/* ---- pipes between processes ---- */

void ht_chan_open(struct ht_chan *c)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		perror("pipe2");
		c->rd = c->wr = -1;
		return;
	}
	c->rd = fds[0];
	c->wr = fds[1];
}

void ht_chan_close(struct ht_chan *c)
{
	if (c->rd >= 0)
		close(c->rd);
	if (c->wr >= 0)
		close(c->wr);
	c->rd = c->wr = -1;
}

int ht_chan_send(struct ht_chan *c, char byte)
{
	for (;;) {
		ssize_t n = write(c->wr, &byte, 1);
		if (n == 1)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return -1;
	}
}

int ht_chan_recv(struct ht_chan *c, int deadline_ms)
{
	int64_t end = ht_now_ms() + deadline_ms;
	for (;;) {
		int left = (int)(end - ht_now_ms());
		if (left < 0)
			left = 0;
		struct pollfd p = { .fd = c->rd, .events = POLLIN };
		int r = poll(&p, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		unsigned char b;
		ssize_t n = read(c->rd, &b, 1);
		if (n == 1)
			return b;
		if (n < 0 && errno == EINTR)
			continue;
		return -1;
	}
}

/* ---- hsctl ---- */

/* Reads fd until EOF into buf (NUL-terminated, excess dropped). */
static void drain_two(int fd1, char *b1, size_t s1, int fd2, char *b2,
		      size_t s2, int deadline_ms)
{
	size_t l1 = 0, l2 = 0;
	int64_t end = ht_now_ms() + deadline_ms;
	struct pollfd p[2] = { { .fd = fd1, .events = POLLIN }, { .fd = fd2, .events = POLLIN } };
	while (p[0].fd >= 0 || p[1].fd >= 0) {
		int left = (int)(end - ht_now_ms());
		if (left <= 0)
			break;
		int r = poll(p, 2, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			char tmp[4096];
			ssize_t n = read(p[i].fd, tmp, sizeof(tmp));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				p[i].fd = -1;
				continue;
			}
			char *b = i ? b2 : b1;
			size_t s = i ? s2 : s1;
			size_t *l = i ? &l2 : &l1;
			if (b && *l + 1 < s) {
				size_t take = (size_t)n;
				if (take > s - 1 - *l)
					take = s - 1 - *l;
				memcpy(b + *l, tmp, take);
				*l += take;
			}
		}
	}
	if (b1 && s1)
		b1[l1] = '\0';
	if (b2 && s2)
		b2[l2] = '\0';
}

int ht_hsctl(const char *sock_or_null, const char *const *args, char *out,
	     size_t out_size, char *err, size_t err_size)
{
	const char *hsctl = ht_prog("HSCTL");
	if (!hsctl)
		return -1;
	char *argv[32];
	int n = 0;
	argv[n++] = (char *)hsctl;
	if (sock_or_null) {
		argv[n++] = (char *)"--socket";
		argv[n++] = (char *)sock_or_null;
	}
	for (const char *const *a = args; a && *a && n < 31; a++)
		argv[n++] = (char *)*a;
	argv[n] = NULL;

	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]);
		close(po[1]);
		return -1;
	}
	pid_t pid = ht_spawn(argv, NULL, po[1], pe[1]);
	close(po[1]);
	close(pe[1]);
	if (pid < 0) {
		close(po[0]);
		close(pe[0]);
		return -1;
	}
	last_hsctl_pid = pid;
	drain_two(po[0], out, out_size, pe[0], err, err_size, HT_DEADLINE_MS);
	close(po[0]);
	close(pe[0]);
	return ht_wait(pid, HT_DEADLINE_MS);
}

json_t *ht_hsctl_json(const char *sock, const char *const *args)
{
	const char *argv[16];
	int n = 0;
	for (const char *const *a = args; a && *a && n < 14; a++)
		argv[n++] = *a;
	argv[n++] = "--json";
	argv[n] = NULL;
	/* Listings are complete however large (tens of thousands of
	 * topics in the stress cases): room for all of it. */
	size_t size = 64 << 20;
	char *out = malloc(size);
	char err[4096];
	if (!out)
		return NULL;
	int rc = ht_hsctl(sock, argv, out, size, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "harness: hsctl exited %d: %s\n", rc, err);
		free(out);
		return NULL;
	}
	json_error_t jerr;
	json_t *j = json_loads(out, 0, &jerr);
	if (!j)
		fprintf(stderr, "harness: hsctl printed invalid JSON (%s, line %d): %.400s\n",
			jerr.text, jerr.line, out);
	free(out);
	return j;
}

static bool idle_now(json_t *j, pid_t hsctl_pid)
{
	json_t *tensors = json_object_get(j, "tensors");
	json_t *pools = json_object_get(j, "pools");
	json_t *clients = json_object_get(j, "clients");
	json_t *topics = json_object_get(j, "topics");
	if (!json_is_array(tensors) || !json_is_array(pools) || !json_is_array(clients))
		return false;
	if (json_array_size(tensors) != 0)
		return false;
	size_t i;
	json_t *v;
	json_array_foreach(pools, i, v) {
		json_t *free_ = json_object_get(v, "free");
		json_t *total = json_object_get(v, "total");
		if (!json_is_integer(free_) || !json_is_integer(total) ||
		    json_integer_value(free_) != json_integer_value(total))
			return false;
	}
	json_array_foreach(clients, i, v) {
		json_t *pid = json_object_get(v, "pid");
		if (!json_is_integer(pid) || json_integer_value(pid) != hsctl_pid)
			return false;
	}
	json_array_foreach(topics, i, v) {
		json_t *subs = json_object_get(v, "subscribers");
		if (json_is_array(subs) && json_array_size(subs) != 0)
			return false;
	}
	return true;
}

int ht_wait_idle(const char *sock, int deadline_ms)
{
	int64_t end = ht_now_ms() + deadline_ms;
	int backoff = 5;
	char *last = NULL;
	for (;;) {
		const char *args[] = { "ls", NULL };
		json_t *j = ht_hsctl_json(sock, args);
		if (j) {
			bool idle = idle_now(j, last_hsctl_pid);
			free(last);
			last = json_dumps(j, JSON_INDENT(1));
			json_decref(j);
			if (idle) {
				free(last);
				return 0;
			}
		}
		if (ht_now_ms() >= end) {
			fprintf(stderr, "harness: broker not idle at the deadline; last `hsctl ls --json`:\n%s\n",
				last ? last : "(none)");
			free(last);
			return -1;
		}
		ht_sleep_ms(backoff);
		if (backoff < 200)
			backoff *= 2;
	}
}

bool ht_log_has(const char *log, const char *a, const char *b)
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
