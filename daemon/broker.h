/* The whole broker state, with no I/O loop in it: pools, the tensor table,
 * topics, sessions, the epoch, configuration and limits. The I/O layer
 * (server.c) feeds datagrams to hsd_request_input() and learns through hooks
 * when a session wants to wait for writability or must be closed; unit
 * tests and the fuzzer drive the same core over a socketpair. */
#ifndef HS_DAEMON_BROKER_H
#define HS_DAEMON_BROKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "acl.h"
#include "cuda.h"
#include "event.h"
#include "list.h"
#include "pool.h"
#include "tensor.h"
#include "topic.h"
#include "usage.h"

struct hsd_broker;
struct hsd_session;

#define BROKER_MAX_ALLOW 64
#define BROKER_DEFAULT_OTHER_UID_BLOCK_TIMEOUT_MS 5000u

struct hsd_broker_config {
	uint64_t cpu_slab_size;      /* default 64 MiB */
	uint64_t cpu_cap;            /* bytes, 0 = none (hsbrokerd's default: half of RAM) */
	uint32_t idle_release_ms;    /* host slabs nothing uses or maps are freed
				      * after this long; 0 = kept (as before) */
	uint64_t cuda_slab_size;     /* default 64 MiB */
	uint64_t cuda_cap;           /* bytes per device, 0 = none */
	bool cuda_vmm;               /* [pool.cuda] export = vmm: device slabs are
				      * VMM allocations passed as fds (slab_vmm.c);
				      * false (default): legacy IPC handles */
	uint32_t max_subscriptions;  /* per session, default 256 -> HS_ELIMIT */
	uint32_t max_tensors;        /* held per session, default 65536 -> HS_ELIMIT */
	uint64_t quota_bytes;        /* held per session, 0 = none -> HS_EDQUOT */
	uint32_t quota_tensors;      /* held per session, 0 = none -> HS_EDQUOT */
	uint32_t max_topics;         /* default 65536 -> HS_ELIMIT */
	uint32_t max_pending_emits;  /* held back per topic, default 4096 -> HS_EBUSY */
	uint32_t block_timeout_ms;   /* [subscribe]: default and maximum, 0 = none (default) */
	uint32_t block_timeout_other_uid_ms; /* [subscribe]: bound for a subscriber of
					      * another uid than the emitter, 0 = none */
	bool direct_rings;           /* [subscribe]: pair rings between sessions of one
				      * uid that ask (pair.h); on by default */
	uint32_t outbox_max_msgs;    /* a peer that does not read is dropped */
	uint64_t outbox_max_bytes;
	uint32_t allow_uids[BROKER_MAX_ALLOW];
	uint32_t n_allow_uids;       /* 0: every uid that can open the socket */
	uint32_t allow_gids[BROKER_MAX_ALLOW];
	uint32_t n_allow_gids;
	struct hsd_acl acl;          /* [acl]: per-topic allow lists */

	/* Against hostile local clients (issue 11; [limits] in the config,
	 * docs/daemon.md). Per-uid caps count every session of the uid. */
	uint32_t hello_max_bytes;    /* largest datagram before hello, default 4096 */
	uint32_t uid_max_connections;   /* default 256 -> refused at connect (HS_ELIMIT) */
	uint32_t uid_max_subscriptions; /* default 16384 -> HS_ELIMIT */
	uint32_t uid_max_topics;     /* topics a uid made that exist, default 4096 -> HS_ELIMIT */
	uint64_t outbox_total_bytes; /* all outboxes together, default 256 MiB: past
				      * it the largest outbox's session is dropped */
	uint32_t exempt_uids[BROKER_MAX_ALLOW]; /* not held to the per-uid caps */
	uint32_t n_exempt_uids;
	bool exempt_set;             /* false: root and the daemon's own uid */
};

void hsd_broker_config_defaults(struct hsd_broker_config *cfg);

/* Whether the per-uid caps hold uid (exempt_uids, by default root and the
 * daemon's own uid: they can stop the daemon anyway). */
bool hsd_broker_uid_capped(const struct hsd_broker *b, uid_t uid);

struct hsd_broker_hooks {
	/* The session's outbox became non-empty (on) or empty (off). */
	void (*want_write)(void *data, struct hsd_session *s, bool on);
	/* The session must be closed (its peer is gone or does not read).
	 * Called once; the I/O layer closes it later, outside the core. */
	void (*dead)(void *data, struct hsd_session *s);
	/* The session's channel is set up: watch efd (readable when the
	 * client kicks) and run hsd_broker_chan_pass. 0 or a negative code. */
	int (*chan_open)(void *data, struct hsd_session *s, int efd);
	void *data;
};

/* One GPU's pool of slabs and its ready-fence events, made at the first
 * device tensor asked for on it. */
struct hsd_cuda_device {
	struct hsd_pool pool;
	struct hsd_event_pool events;
};

struct hsd_broker {
	struct hsd_broker_config cfg;
	struct hsd_broker_hooks hooks;
	uint64_t epoch;
	uint64_t start_us;
	uint64_t next_session_id;
	uint64_t next_slab_id;
	uint64_t next_event_id;
	uint64_t next_pair_id;
	struct hsd_pool cpu;
	struct hsd_cuda_device *cuda[HS_CUDA_MAX_DEVICES];
	struct hsd_tensor_table tensors;
	struct hsd_topics topics;
	struct hsd_list sessions;
	uint32_t nsessions;
	struct hsd_list chan_active; /* struct hsd_chan_state.active_link (channel.h) */
	struct hsd_usage_table usage; /* per uid */
	uint64_t out_bytes;          /* all sessions' outboxes */
	uint8_t *chan_buf;           /* one channel record, copied out */
	bool chan_nested;            /* inside a pass started by a handler */
	uint64_t topics_accepted;    /* held-back emits accepted, ever */
};

/* 0 with *out or a negative hs code. hooks may be NULL. */
int hsd_broker_new(const struct hsd_broker_config *cfg, const struct hsd_broker_hooks *hooks,
		   struct hsd_broker **out);
/* Closes every session (releasing what it held) and frees everything. */
void hsd_broker_free(struct hsd_broker *b);

/* A new session on the connected socket fd (not owned: the I/O layer
 * closes it after hsd_broker_session_close). When uid has uid_max_connections
 * open already the session is made to refuse: its first datagram is
 * answered ErrorReply{seq 0, HS_ELIMIT} unread and it is closed (so the
 * peer reads why rather than a reset); past BROKER_MAX_REFUSING of those
 * per uid, HS_ELIMIT (logged: the I/O layer tells the peer with
 * hsd_outbox_refuse and hangs up at once). */
#define BROKER_MAX_REFUSING 16
int hsd_broker_session_open(struct hsd_broker *b, int fd, pid_t pid, uid_t uid, gid_t gid,
			    struct hsd_session **out);
/* Releases every reference, held-back emit and subscription of s, logs
 * what was released, frees s. */
void hsd_broker_session_close(struct hsd_broker *b, struct hsd_session *s);

/* Pushes ShutdownNotice{reason} to every session (best effort). */
void hsd_broker_shutdown_notice(struct hsd_broker *b, const char *reason);

/* The pool serving device: 0, HS_ENOCUDA (no CUDA pool in this build),
 * HS_ENODEV (no such device, or no GPU/driver here). A GPU's pool is
 * made the first time it is asked for. */
int hsd_broker_pool_for(struct hsd_broker *b, DLDevice device, struct hsd_pool **out);
/* A free ready-fence event of a GPU whose pool exists: 0, or
 * hsd_event_pool_get's error. */
int hsd_broker_fence_for(struct hsd_broker *b, DLDevice device, struct hsd_fence_event **out);
/* Runs the block timeouts that are due (hsd_topics_expire). Returns the
 * milliseconds until it must run again, 0 when it let emits through (so
 * that what they sent goes out before the loop sleeps), -1 when no
 * timeout is pending. */
int64_t hsd_broker_expire(struct hsd_broker *b);

/* Applies a re-read configuration (SIGHUP) to a running broker: limits,
 * quotas, caps, timeouts, access lists and ACLs take effect for what comes
 * next (nothing held is taken back; existing subscriptions keep their
 * block timeout). Slab sizes cannot change live: they are kept, logged,
 * and counted in the return value (the number of keys that need a
 * restart). */
int hsd_broker_reload(struct hsd_broker *b, const struct hsd_broker_config *cfg);
/* Frees host slabs idle past idle_release_ms (hsd_pool_trim): returns the
 * bytes given back. */
uint64_t hsd_broker_trim(struct hsd_broker *b);

/* The pools there are, cpu first then GPUs by ordinal: at most max. */
size_t hsd_broker_pools(struct hsd_broker *b, struct hsd_pool **out, size_t max);

#endif
