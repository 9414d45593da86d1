/* Integration test harness: starts the real hsbrokerd on a private socket
 * in a temporary directory, forks client processes, runs hsctl and parses
 * its JSON. Paths of the built programs come from the environment (set by
 * tests/integration/meson.build): HSBROKERD, HSCTL, HS_EXAMPLE_PRODUCER,
 * HS_EXAMPLE_CONSUMER. HS_TEST_DAEMON_WRAPPER (e.g. "valgrind -q
 * --error-exitcode=99") is put in front of the daemon's command line.
 *
 * Rules that keep the tests honest:
 *  - fork every client process before the test process connects anything
 *    (a forked copy of a connected hs_client would share its socket);
 *  - children report by exit code (ht_child_* helpers print why on stderr)
 *    and never call ck_assert, which belongs to the test process;
 *  - no timed assertions: every wait has a deadline only so that a broken
 *    build fails instead of hanging. */
#ifndef HS_TEST_HARNESS_H
#define HS_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* Generous deadlines: CI runs on 2 slow cores, maybe under valgrind. */
#define HT_DEADLINE_MS 30000
#define HT_LONG_DEADLINE_MS 240000

struct ht_daemon {
	pid_t pid;
	char dir[256];  /* the temporary directory, removed at exit */
	char sock[300]; /* dir/hsbroker.sock */
};

/* Once per test (calls it itself if needed): ignores SIGPIPE, remembers the
 * test process so only it cleans up at exit. */
void ht_init(void);

/* The runner's side of a case (Check unchecked fixtures): a base folder
 * for the case's temporary directories, removed when the case ends even
 * if it failed. */
void ht_run_setup(void);
void ht_run_teardown(void);

/* Makes a fresh temporary directory (removed when the test process exits,
 * and with the case's base folder). */
void ht_tmpdir(char *out, size_t size);

/* Starts hsbrokerd --socket DIR/hsbroker.sock plus extra args (NULL-ended,
 * may be NULL) in a new temporary directory and waits until the socket
 * accepts. Returns 0 or -1 (with a message on stderr). */
int ht_daemon_start(struct ht_daemon *d, const char *const *extra);
/* The same on a given socket path (a restart on the old path). */
int ht_daemon_start_at(struct ht_daemon *d, const char *sock,
		       const char *const *extra);
/* Writes text to a config file in a fresh temporary folder (its path in
 * path). 0 or -1. */
int ht_write_config(char *path, size_t size, const char *text);
/* Starts hsbrokerd --config (a file holding config_text) --log-level
 * info, its stderr going to a file whose path goes to log, and opens the
 * socket's folders to other uids (mkdtemp makes them 0700), so processes
 * of another uid reach the socket. 0 or -1. */
int ht_daemon_start_config(struct ht_daemon *d, const char *config_text, char *log,
			   size_t size);
/* SIGTERM, waits for the exit: returns the exit code (0 is a clean
 * shutdown), -2 if it died by a signal, -1 on timeout (then SIGKILLed). */
int ht_daemon_stop(struct ht_daemon *d);
/* True while the daemon process exists and has not exited. */
bool ht_daemon_alive(struct ht_daemon *d);

/* Waits until a SOCK_SEQPACKET connect to path succeeds, or until pid (if
 * > 0) exits, or the deadline. Returns 0 or -1. */
int ht_wait_socket(const char *path, pid_t pid, int deadline_ms);

/* Forks a child that runs fn(arg) and _exits with its return value. The
 * child dies with the test process (PR_SET_PDEATHSIG). */
pid_t ht_fork(int (*fn)(void *arg), void *arg);
/* Forks and execs argv (argv[0] a path); stdout_fd/stderr_fd (if >= 0) are
 * dup'ed onto 1/2. extra_env: NULL-ended "K=V" strings added. */
pid_t ht_spawn(char *const argv[], const char *const *extra_env,
	       int stdout_fd, int stderr_fd);
/* Waits for pid: returns its exit code, 128 + signal if killed by one, or
 * -1 on timeout (the child is then SIGKILLed and reaped). */
int ht_wait(pid_t pid, int deadline_ms);

/* A one-way pipe used to step processes through a scenario. */
struct ht_chan {
	int rd, wr;
};
void ht_chan_open(struct ht_chan *c);
void ht_chan_close(struct ht_chan *c);
/* Sends one byte; returns 0 or -1. */
int ht_chan_send(struct ht_chan *c, char byte);
/* Waits for one byte: returns it (0..255), or -1 on EOF/timeout. */
int ht_chan_recv(struct ht_chan *c, int deadline_ms);

/* Runs `hsctl --socket SOCK ARGS... --json` (args NULL-ended) and parses
 * its output; NULL on failure. Caller json_decref()s. */
json_t *ht_hsctl_json(const char *sock, const char *const *args);
/* Runs hsctl with args; captures stdout and stderr (each NUL-terminated,
 * may be NULL) and returns the exit code or -1. */
int ht_hsctl(const char *sock_or_null, const char *const *args,
	     char *out, size_t out_size, char *err, size_t err_size);

/* Polls `hsctl ls --json` until the broker holds no tensors, every pool's
 * free == total, and no client other than hsctl itself is connected.
 * Returns 0, or -1 at the deadline (printing the last JSON). */
int ht_wait_idle(const char *sock, int deadline_ms);

/* Whether a line of the file log holds a (and b, when not NULL). */
bool ht_log_has(const char *log, const char *a, const char *b);

/* Count of open fds of this process (from /proc/self/fd). */
int ht_count_fds(void);

/* The path of a built program from the environment variable var. */
const char *ht_prog(const char *var);

/* Monotonic milliseconds. */
int64_t ht_now_ms(void);
/* Sleeps ms milliseconds (small back-offs only). */
void ht_sleep_ms(int ms);

/* Test pattern: element i of the tensor emitted k-th (k from 1). */
static inline uint32_t ht_pattern(uint64_t k, uint64_t i)
{
	return (uint32_t)(k * 2654435761u) ^ (uint32_t)(i * 40503u + 7u);
}

/* Children print "who: message" on stderr and return 1 through these. */
int ht_child_fail(const char *who, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
