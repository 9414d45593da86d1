/* libhsclient's own tests (Check, one process per test).
 *
 * - "hostile": a peer in this process plays a daemon that breaks the
 *   protocol (bad slabs, blocks outside them, too many dimensions, a wrong
 *   version, a shutdown); every call must come back with an error code,
 *   never crash or hang.
 * - "daemon": against the real hsbrokerd ($HSBROKERD) on a private socket:
 *   values, the mapping cache, one client shared by several threads, the
 *   pollable fd, DLPack, and a daemon that goes away. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hsbroker/hsbroker.h"
#include "pring.h"
#include "wire.h"

static char tmpdir[64];
static char sock_path[128];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hs-client-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/hs.sock", tmpdir);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000 };
	nanosleep(&ts, NULL);
}

/* ---------------- no daemon ---------------- */

START_TEST(t_default_path)
{
	char buf[256];
	setenv("HSBROKER_SOCKET", "/x/y.sock", 1);
	ck_assert_int_eq(hs_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/x/y.sock");
	unsetenv("HSBROKER_SOCKET");
	setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
	ck_assert_int_eq(hs_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/user/7/hsbroker/hsbroker.sock");
	setenv("HSBROKER_SOCKET", "", 1); /* empty counts as unset */
	ck_assert_int_eq(hs_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/user/7/hsbroker/hsbroker.sock");
	unsetenv("XDG_RUNTIME_DIR");
	ck_assert_int_eq(hs_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/hsbroker/hsbroker.sock");
	ck_assert_int_eq(hs_default_socket_path(buf, 8), HS_ENAMETOOLONG);
}
END_TEST

START_TEST(t_errors)
{
	ck_assert_str_eq(hs_err_name(HS_ENOBROKER), "HS_ENOBROKER");
	ck_assert_str_eq(hs_err_name(0), "HS_OK");
	ck_assert_ptr_nonnull(strstr(hs_strerror(HS_ENOSPC), "pool"));
	ck_assert_str_eq(hs_strerror(-123456), "unknown error");
}
END_TEST

START_TEST(t_connect_errors)
{
	make_tmpdir();
	hs_client *c = NULL;
	ck_assert_int_eq(hs_client_connect(sock_path, NULL, &c), HS_ENOBROKER);

	/* A socket file nobody listens on: a daemon that died. */
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock_path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(hs_client_connect(sock_path, NULL, &c), HS_ECONNREFUSED);
	unlink(sock_path);

	char longp[300];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	ck_assert_int_eq(hs_client_connect(longp, NULL, &c), HS_ENAMETOOLONG);
	ck_assert_ptr_null(c);
	rmdir(tmpdir);
}
END_TEST

/* ---------------- a hostile peer ---------------- */

struct peer {
	int listen_fd;
	int scenario;
	pthread_t thread;
};

static int peer_recv(int fd, Hs__Message **out)
{
	static uint8_t buf[HS__WIRE_MAX_MSG];
	int fds[HS__WIRE_MAX_FDS], nfds;
	int n = hs__wire_recv(fd, buf, fds, &nfds);
	while (n == -EAGAIN) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		poll(&p, 1, 5000);
		n = hs__wire_recv(fd, buf, fds, &nfds);
	}
	if (n < 0)
		return n;
	hs__wire_close_fds(fds, nfds);
	return hs__wire_decode(buf, (size_t)n, out);
}

static void peer_send(int fd, Hs__Message *m, const int *fds, int nfds)
{
	hs__wire_send(fd, m, fds, nfds);
}

/* A memfd of size bytes, sealed as the daemon seals its slabs (or not). */
static int make_memfd(size_t size, bool seal)
{
	int fd = memfd_create("peer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return -1;
	if (seal)
		fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	return fd;
}

static void send_slab(int fd, uint64_t id, uint64_t size, bool seal, uint64_t file_size)
{
	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = kDLCPU;
	Hs__SlabAnnounce a = HS__SLAB_ANNOUNCE__INIT;
	a.slab_id = id;
	a.kind = HS__SLAB_KIND__SLAB_HOST_MEMFD;
	a.device = &dev;
	a.size = size;
	a.fd_index = 0;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SLAB;
	m.slab = &a;
	int mfd = make_memfd(file_size, seal);
	peer_send(fd, &m, &mfd, 1);
	close(mfd);
}

static void send_deliver(int fd, uint64_t slab, uint64_t off, uint64_t len, size_t ndim)
{
	int64_t shape[40];
	for (size_t i = 0; i < 40; i++)
		shape[i] = 1;
	shape[0] = 16;
	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = kDLCPU;
	Hs__DType dt = HS__DTYPE__INIT;
	dt.code = kDLFloat;
	dt.bits = 32;
	dt.lanes = 1;
	Hs__Meta meta = HS__META__INIT;
	meta.device = &dev;
	meta.dtype = &dt;
	meta.n_shape = ndim;
	meta.shape = shape;
	Hs__Block b = HS__BLOCK__INIT;
	b.slab_id = slab;
	b.offset = off;
	b.length = len;
	Hs__TensorRef ref = HS__TENSOR_REF__INIT;
	ref.id = 7;
	ref.meta = &meta;
	ref.block = &b;
	ref.seq = 1;
	ref.topic = "t";
	ref.subscription = 1;
	Hs__Deliver d = HS__DELIVER__INIT;
	d.tensor = &ref;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_DELIVER;
	m.deliver = &d;
	peer_send(fd, &m, NULL, 0);
}

enum {
	SC_CLOSE,        /* closes right after accept */
	SC_VERSION,      /* answers Hello with another version */
	SC_UNSEALED,     /* a slab whose memfd could shrink under us */
	SC_SHORT_FILE,   /* a slab larger than its memfd */
	SC_OUTSIDE,      /* a block reaching past its slab */
	SC_NDIM,         /* 40 dimensions */
	SC_NO_SLAB,      /* a block in a slab never announced */
	SC_TOO_SMALL,    /* a block shorter than its shape needs */
	SC_GOOD,         /* a well-formed delivery (the control case) */
	SC_SHUTDOWN,     /* a ShutdownNotice */
	SC_FLOOD,        /* deliveries past the credits we gave */
	SC_COUNT
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (p->scenario == SC_CLOSE) {
		close(fd);
		return NULL;
	}
	Hs__Message *hello = NULL;
	if (peer_recv(fd, &hello) != 0) {
		close(fd);
		return NULL;
	}
	Hs__HelloReply hr = HS__HELLO_REPLY__INIT;
	hr.protocol_version = p->scenario == SC_VERSION ? 99 : HS_PROTOCOL_VERSION;
	hr.epoch = 42;
	hr.session_id = 1;
	hr.daemon_version = "peer";
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = hello->seq;
	m.body_case = HS__MESSAGE__BODY_HELLO_REPLY;
	m.hello_reply = &hr;
	peer_send(fd, &m, NULL, 0);
	hs__wire_free(hello);

	/* Expect a SubscribeReq and accept it, then misbehave. */
	Hs__Message *req = NULL;
	if (peer_recv(fd, &req) == 0 && req->body_case == HS__MESSAGE__BODY_SUBSCRIBE) {
		Hs__SubscribeReply sr = HS__SUBSCRIBE_REPLY__INIT;
		sr.subscription = 1;
		Hs__Message r = HS__MESSAGE__INIT;
		r.seq = req->seq;
		r.body_case = HS__MESSAGE__BODY_SUBSCRIBE_REPLY;
		r.subscribe_reply = &sr;
		peer_send(fd, &r, NULL, 0);

		switch (p->scenario) {
		case SC_UNSEALED:
			send_slab(fd, 1, 4096, false, 4096);
			send_deliver(fd, 1, 0, 64, 1);
			break;
		case SC_SHORT_FILE:
			send_slab(fd, 1, 1 << 20, true, 4096);
			send_deliver(fd, 1, 0, 64, 1);
			break;
		case SC_OUTSIDE:
			send_slab(fd, 1, 4096, true, 4096);
			send_deliver(fd, 1, 4032, 128, 1);
			break;
		case SC_NDIM:
			send_slab(fd, 1, 4096, true, 4096);
			send_deliver(fd, 1, 0, 64, 40);
			break;
		case SC_NO_SLAB:
			send_deliver(fd, 9, 0, 64, 1);
			break;
		case SC_TOO_SMALL:
			send_slab(fd, 1, 4096, true, 4096);
			send_deliver(fd, 1, 0, 32, 1); /* 16 floats need 64 */
			break;
		case SC_GOOD:
			send_slab(fd, 1, 4096, true, 4096);
			send_deliver(fd, 1, 256, 64, 1);
			break;
		case SC_FLOOD:
			send_slab(fd, 1, 4096, true, 4096);
			for (int i = 0; i < 3; i++)
				send_deliver(fd, 1, 256, 64, 1);
			break;
		case SC_SHUTDOWN: {
			Hs__ShutdownNotice sn = HS__SHUTDOWN_NOTICE__INIT;
			sn.reason = "test";
			Hs__Message s = HS__MESSAGE__INIT;
			s.body_case = HS__MESSAGE__BODY_SHUTDOWN;
			s.shutdown = &sn;
			peer_send(fd, &s, NULL, 0);
			break;
		}
		}
	}
	hs__wire_free(req);
	/* Keep the connection until the client closes it, so what the client
	 * reports comes from the messages, not from a hang-up. */
	Hs__Message *more;
	while (peer_recv(fd, &more) == 0) {
		if (more->body_case == HS__MESSAGE__BODY_UNSUBSCRIBE ||
		    more->body_case == HS__MESSAGE__BODY_PING) {
			Hs__OkReply ok = HS__OK_REPLY__INIT;
			Hs__Message r = HS__MESSAGE__INIT;
			r.seq = more->seq;
			r.body_case = HS__MESSAGE__BODY_OK;
			r.ok = &ok;
			peer_send(fd, &r, NULL, 0);
		}
		hs__wire_free(more);
	}
	close(fd);
	return NULL;
}

static void peer_start(struct peer *p, int scenario)
{
	make_tmpdir();
	p->scenario = scenario;
	p->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock_path);
	ck_assert_int_eq(bind(p->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(p->listen_fd, 4), 0);
	ck_assert_int_eq(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_stop(struct peer *p)
{
	pthread_join(p->thread, NULL);
	close(p->listen_fd);
	unlink(sock_path);
	rmdir(tmpdir);
}

START_TEST(t_hostile)
{
	int sc = _i;
	struct peer p;
	peer_start(&p, sc);
	hs_client *c = NULL;
	int err = hs_client_connect(sock_path, "victim", &c);
	if (sc == SC_CLOSE) {
		ck_assert_int_eq(err, HS_EPIPE);
		peer_stop(&p);
		return;
	}
	if (sc == SC_VERSION) {
		ck_assert_int_eq(err, HS_EVERSION);
		peer_stop(&p);
		return;
	}
	ck_assert_int_eq(err, 0);
	hs_subscription *sub;
	ck_assert_int_eq(hs_subscribe(c, "t", NULL, &sub), 0);
	hs_tensor *t = NULL;
	sleep_ms(100); /* let every message arrive, to be read in one batch */
	err = hs_subscription_receive(sub, 5000, &t);
	switch (sc) {
	case SC_GOOD:
		ck_assert_int_eq(err, 0);
		ck_assert_int_eq(hs_tensor_dltensor(t)->shape[0], 16);
		ck_assert_int_eq(hs_tensor_nbytes(t), 64);
		ck_assert_int_eq(hs_tensor_seq(t), 1);
		((float *)hs_tensor_data(t))[15] = 1.0f; /* mapped and writable */
		hs_tensor_release(t, NULL);
		hs_client_stats st;
		hs_client_get_stats(c, &st);
		ck_assert_int_eq(st.slab_opens, 1);
		ck_assert_int_eq(st.epoch, 42);
		break;
	case SC_FLOOD:
		/* The first delivery was fine and is handed out; the one past
		 * our single credit ends the connection. */
		ck_assert_int_eq(err, 0);
		hs_tensor_release(t, NULL);
		ck_assert_int_eq(hs_subscription_receive(sub, 5000, &t), HS_EPROTO);
		break;
	case SC_SHUTDOWN:
		ck_assert_int_eq(err, HS_ESHUTDOWN);
		ck_assert_int_eq(hs_client_ping(c), HS_ESHUTDOWN);
		break;
	default:
		ck_assert_msg(err == HS_EPROTO, "scenario %d: %s", sc, hs_err_name(err));
		ck_assert_int_eq(hs_client_ping(c), HS_EPROTO);
	}
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	peer_stop(&p);
}
END_TEST

/* ---------------- the real daemon ---------------- */

static pid_t daemon_pid;

/* Starts $HSBROKERD on a private socket; false when there is none. */
static bool daemon_start(void)
{
	const char *exe = getenv("HSBROKERD");
	if (!exe || access(exe, X_OK) != 0)
		return false;
	make_tmpdir();
	daemon_pid = fork();
	ck_assert_int_ge(daemon_pid, 0);
	if (daemon_pid == 0) {
		execl(exe, exe, "--socket", sock_path, "--log-level", "warning", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		hs_client *c;
		if (hs_client_connect(sock_path, "probe", &c) == 0) {
			hs_client_disconnect(c);
			return true;
		}
		sleep_ms(10);
	}
	ck_abort_msg("hsbrokerd did not come up on %s", sock_path);
	return false;
}

static void daemon_stop(void)
{
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
		daemon_pid = 0;
	}
	unlink(sock_path);
	rmdir(tmpdir);
}

#define NEED_DAEMON()                                                        \
	do {                                                                 \
		if (!daemon_start()) {                                       \
			fprintf(stderr, "skipped: no hsbrokerd ($HSBROKERD)\n"); \
			return;                                              \
		}                                                            \
	} while (0)

static const DLDevice cpu = { kDLCPU, 0 };
static const DLDataType f32 = { kDLFloat, 32, 1 };

static hs_tensor *make(hs_client *c, uint64_t index)
{
	const int64_t shape[2] = { 4, 64 };
	hs_tensor *t;
	int err = hs_tensor_alloc(c, cpu, f32, 2, shape, NULL, &t);
	ck_assert_msg(err == 0, "alloc: %s", hs_strerror(err));
	float *v = hs_tensor_data(t);
	for (int e = 0; e < 256; e++)
		v[e] = (float)(index * 1000 + (uint64_t)e);
	return t;
}

static bool good(const hs_tensor *t, uint64_t index)
{
	const float *v = hs_tensor_data(t);
	for (int e = 0; e < 256; e++)
		if (v[e] != (float)(index * 1000 + (uint64_t)e))
			return false;
	return true;
}

START_TEST(t_roundtrip)
{
	NEED_DAEMON();
	hs_client *prod, *cons;
	ck_assert_int_eq(hs_client_connect(sock_path, "prod", &prod), 0);
	ck_assert_int_eq(hs_client_connect(sock_path, "cons", &cons), 0);
	hs_subscription *sub;
	hs_subscribe_opts o = { .depth = 4, .policy = HS_POLICY_BLOCK };
	ck_assert_int_eq(hs_subscribe(cons, "rt/a", &o, &sub), 0);
	hs_tensor *t;
	ck_assert_int_eq(hs_subscription_receive(sub, 0, &t), HS_ETIMEDOUT);

	void *first_base = NULL;
	for (uint64_t i = 0; i < 200; i++) {
		uint64_t seq;
		ck_assert_int_eq(hs_tensor_emit(make(prod, i), "rt/a", NULL, &seq), 0);
		ck_assert_int_eq(seq, i + 1);
		ck_assert_int_eq(hs_subscription_receive(sub, 5000, &t), 0);
		ck_assert_int_eq(hs_tensor_seq(t), i + 1);
		ck_assert_str_eq(hs_tensor_topic(t), "rt/a");
		const DLTensor *dl = hs_tensor_dltensor(t);
		ck_assert_int_eq(dl->ndim, 2);
		ck_assert_int_eq(dl->shape[1], 64);
		ck_assert_int_eq(dl->strides[0], 64);
		ck_assert(good(t, i));
		/* The slab's mapping holds the whole block, and it is the one
		 * mapping every tensor of this client lies in. */
		void *base;
		uint64_t size;
		ck_assert_int_eq(hs_tensor_slab_mapping(t, &base, &size), 0);
		uintptr_t data = (uintptr_t)hs_tensor_data(t);
		ck_assert(data >= (uintptr_t)base &&
			  data + hs_tensor_nbytes(t) <= (uintptr_t)base + size);
		if (!first_base)
			first_base = base;
		ck_assert_ptr_eq(base, first_base); /* one slab here (slab_opens below) */
		ck_assert_int_eq(hs_tensor_slab_mapping(t, NULL, &size), HS_EINVAL);
		hs_tensor_release(t, NULL);
	}
	ck_assert_int_eq(hs_tensor_slab_mapping(NULL, NULL, NULL), HS_EINVAL);
	/* Slabs are mapped once, never per tensor. */
	hs_client_stats st;
	ck_assert_int_eq(hs_client_get_stats(cons, &st), 0);
	ck_assert_int_eq(st.slab_opens, 1);
	ck_assert_int_eq(st.tensors_held, 0);
	ck_assert_int_eq(hs_client_get_stats(prod, &st), 0);
	ck_assert_int_eq(st.slab_opens, 1);

	/* Errors a caller can act on. */
	const int64_t neg[1] = { -1 };
	ck_assert_int_eq(hs_tensor_alloc(prod, cpu, f32, 1, neg, NULL, &t), HS_ESHAPE);
	ck_assert_int_eq(hs_tensor_emit(make(prod, 0), "bad topic!", NULL, NULL), HS_ETOPIC);
	ck_assert_int_eq(hs_client_ping(prod), 0);

	hs_subscription_close(sub);
	hs_client_disconnect(cons);
	hs_client_disconnect(prod);
	daemon_stop();
}
END_TEST

/* The header of the first pair ring mapped in this process. */
static struct hs__pring_hdr *first_ring(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	ck_assert_ptr_nonnull(f);
	char line[512];
	unsigned long lo = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "hsbroker-pair-ring") && sscanf(line, "%lx-", &lo) == 1)
			break;
	fclose(f);
	ck_assert_msg(lo != 0, "no pair ring mapped");
	return (struct hs__pring_hdr *)lo;
}

/* A producer of the reader's own uid writes a note that checks out but
 * names a slab nobody announced (0): the reader looks in its channel
 * once for the announcement, then refuses the note (HS_EPROTO); it never
 * waits for the announcement forever. */
START_TEST(t_ring_unannounced_slab)
{
	setenv("HSBROKER_RINGS", "1", 1); /* the daemon and the clients */
	NEED_DAEMON();
	hs_client *prod, *cons;
	ck_assert_int_eq(hs_client_connect(sock_path, "prod", &prod), 0);
	ck_assert_int_eq(hs_client_connect(sock_path, "cons", &cons), 0);
	hs_subscription *sub;
	hs_subscribe_opts o = { .depth = 4, .policy = HS_POLICY_BLOCK };
	ck_assert_int_eq(hs_subscribe(cons, "lie/a", &o, &sub), 0);
	hs_tensor *t;
	ck_assert_int_eq(hs_tensor_emit(make(prod, 1), "lie/a", NULL, NULL), 0);
	ck_assert_int_eq(hs_subscription_receive(sub, 5000, &t), 0);
	ck_assert(good(t, 1));
	hs_tensor_release(t, NULL);

	struct hs__pring_hdr *h = first_ring();
	ck_assert_uint_eq(h->magic, HS__PRING_MAGIC);
	struct hs__pring_note *notes =
		(struct hs__pring_note *)((uint8_t *)h + HS__PRING_HDR_SIZE);
	uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
	struct hs__pring_note n = {
		.tensor_id = 1, .seq = 2, .slab_id = 0, .offset = 0, .nbytes = 64,
		.device_type = kDLCPU, .dtype_code = kDLFloat, .dtype_bits = 32,
		.dtype_lanes = 1, .ndim = 1, .shape = { 16 },
	};
	ck_assert_int_eq(hs__pring_note_check(&n), 0);
	notes[head & (h->slots - 1)] = n;
	__atomic_store_n(&h->head, head + 1, __ATOMIC_RELEASE);

	ck_assert_int_eq(hs_subscription_receive(sub, 5000, &t), HS_EPROTO);
	hs_subscription_close(sub);
	hs_client_disconnect(cons);
	hs_client_disconnect(prod);
	daemon_stop();
}
END_TEST

/* Bit i set: the daemon lists ids[i] as held. */
static unsigned held_mask(hs_client *c, const uint64_t *ids, int n)
{
	hs_info *info;
	ck_assert_int_eq(hs_client_get_info(c, HS_INFO_TENSORS, &info), 0);
	unsigned mask = 0;
	for (size_t j = 0; j < info->n_tensors; j++)
		for (int i = 0; i < n; i++)
			if (info->tensors[j].id == ids[i])
				mask |= 1u << i;
	hs_info_free(info);
	return mask;
}

START_TEST(t_info)
{
	NEED_DAEMON();
	hs_client *c;
	ck_assert_int_eq(hs_client_connect(sock_path, "info-test", &c), 0);
	const int64_t shape[2] = { 3, 5 }, strides[2] = { 1, 3 };
	const DLDataType u8 = { kDLUInt, 8, 1 };
	hs_tensor *t;
	ck_assert_int_eq(hs_tensor_alloc(c, cpu, u8, 2, shape, strides, &t), 0);
	hs_info *info;
	ck_assert_int_eq(hs_client_get_info(c, HS_INFO_ALL, &info), 0);
	ck_assert_int_eq(info->n_tensors, 1);
	ck_assert_int_eq(info->tensors[0].id, hs_tensor_id(t));
	ck_assert_int_eq(info->tensors[0].ndim, 2);
	ck_assert_int_eq(info->tensors[0].shape[1], 5);
	ck_assert_int_eq(info->tensors[0].nstrides, 2);
	ck_assert_int_eq(info->tensors[0].strides[1], 3);
	ck_assert_str_eq(info->tensors[0].owner_name, "info-test");
	ck_assert_int_ge(info->n_pools, 1);
	ck_assert_int_ge(info->n_clients, 1);
	hs_info_free(info);

	ck_assert_int_eq(hs_client_get_info(c, HS_INFO_POOLS, &info), 0);
	ck_assert_int_eq(info->n_tensors, 0);
	ck_assert_int_ge(info->n_pools, 1);
	hs_info_free(info);

	/* DLPack: the deleter gives the reference back. */
	DLManagedTensor *m;
	ck_assert_int_eq(hs_tensor_to_dlpack(t, &m), 0);
	ck_assert_int_eq(m->dl_tensor.shape[0], 3);
	m->deleter(m);
	ck_assert_int_eq(hs_client_ping(c), 0); /* the release note went first */
	ck_assert_int_eq(hs_client_get_info(c, HS_INFO_TENSORS, &info), 0);
	ck_assert_int_eq(info->n_tensors, 0);
	hs_info_free(info);

	/* Host tensors ignore streams: a handle that is no stream at all is
	 * never touched (no CUDA call), and HS_STREAM_DONE is accepted. */
	void *not_a_stream = (void *)(uintptr_t)0x5eed;
	int64_t one[1] = { 16 };
	hs_tensor *h[3];
	uint64_t hid[3];
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(hs_tensor_alloc(c, (DLDevice){ kDLCPU, 0 },
						 (DLDataType){ kDLUInt, 8, 1 }, 1, one, NULL, &h[i]),
				 0);
		hid[i] = hs_tensor_id(h[i]);
	}
	ck_assert_int_eq(hs_tensor_wait(h[0], not_a_stream), 0);
	ck_assert_int_eq(hs_tensor_wait(h[0], HS_STREAM_DONE), 0);
	DLManagedTensor *m0, *m1;
	ck_assert_int_eq(hs_tensor_to_dlpack_stream(h[0], not_a_stream, &m0), 0);
	ck_assert_int_eq(hs_tensor_to_dlpack(h[1], &m1), 0);
	ck_assert_int_eq(hs_tensor_to_dlpack(h[1], &m1), HS_EINVAL); /* exported already */
	m1->deleter(m1);
	hs_tensor_release(h[2], HS_STREAM_DONE);
	/* Only h[0] is held (its DLManagedTensor lives); a spare asked for
	 * ahead may be held too, so look for the ids. */
	ck_assert_int_eq(hs_client_ping(c), 0);
	ck_assert_int_eq(held_mask(c, hid, 3), 1);
	m0->deleter(m0);
	ck_assert_int_eq(hs_client_ping(c), 0);
	ck_assert_int_eq(held_mask(c, hid, 3), 0);
	hs_client_disconnect(c);
	daemon_stop();
}
END_TEST

/* Closing a subscription gives back what it buffered and what was on its
 * way: the broker ends up holding nothing. */
START_TEST(t_close_releases)
{
	NEED_DAEMON();
	hs_client *prod, *cons;
	ck_assert_int_eq(hs_client_connect(sock_path, "prod", &prod), 0);
	ck_assert_int_eq(hs_client_connect(sock_path, "cons", &cons), 0);
	hs_subscription *sub;
	hs_subscribe_opts o = { .depth = 8, .policy = HS_POLICY_DROP_OLDEST };
	ck_assert_int_eq(hs_subscribe(cons, "close/a", &o, &sub), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(hs_tensor_emit(make(prod, (uint64_t)i), "close/a", NULL, NULL), 0);
	/* Let the first delivery reach the local buffer, then walk away. */
	hs_tensor *t;
	ck_assert_int_eq(hs_subscription_receive(sub, 5000, &t), 0);
	hs_tensor_release(t, NULL);
	sleep_ms(50);
	ck_assert_int_eq(hs_client_dispatch(cons) >= 0, 1);
	hs_subscription_close(sub);
	/* The producer goes too: it holds the spare of its next tensor. */
	hs_client_disconnect(prod);
	ck_assert_int_eq(hs_client_ping(cons), 0);
	hs_info *info;
	ck_assert_int_eq(hs_client_get_info(cons, HS_INFO_ALL, &info), 0);
	ck_assert_int_eq(info->n_tensors, 0);
	ck_assert_int_eq(info->pools[0].used, 0);
	hs_info_free(info);
	hs_client_stats st;
	hs_client_get_stats(cons, &st);
	ck_assert_int_eq(st.tensors_held, 0);
	hs_client_disconnect(cons);
	daemon_stop();
}
END_TEST

/* A producer that emits without waiting and disconnects at once: its
 * emits held back by a full BLOCK subscriber still arrive, in order. */
static void *post_and_leave(void *arg)
{
	hs_client *c = arg;
	int err = 0;
	for (int i = 0; i < 40 && !err; i++)
		err = hs_tensor_emit(make(c, (uint64_t)i), "leave/a", NULL, NULL);
	hs_client_disconnect(c);
	return (void *)(intptr_t)err;
}

START_TEST(t_disconnect_flushes_emits)
{
	NEED_DAEMON();
	hs_client *prod, *cons;
	ck_assert_int_eq(hs_client_connect(sock_path, "prod", &prod), 0);
	ck_assert_int_eq(hs_client_connect(sock_path, "cons", &cons), 0);
	hs_subscription *sub;
	hs_subscribe_opts o = { .depth = 2, .policy = HS_POLICY_BLOCK };
	ck_assert_int_eq(hs_subscribe(cons, "leave/a", &o, &sub), 0);
	pthread_t th;
	pthread_create(&th, NULL, post_and_leave, prod);
	for (int i = 0; i < 40; i++) {
		hs_tensor *t;
		ck_assert_int_eq(hs_subscription_receive(sub, 10000, &t), 0);
		ck_assert_int_eq(hs_tensor_seq(t), (uint64_t)i + 1);
		ck_assert(good(t, (uint64_t)i));
		hs_tensor_release(t, NULL);
		if (i % 8 == 0)
			sleep_ms(5); /* let the producer run into the full queue */
	}
	void *r;
	pthread_join(th, &r);
	ck_assert_int_eq((int)(intptr_t)r, 0);
	hs_client_stats st;
	ck_assert_int_eq(hs_client_get_stats(cons, &st), 0);
	ck_assert_int_eq(st.shared_channel, 1);
	hs_client_disconnect(cons);
	daemon_stop();
}
END_TEST

/* One client, several threads: producers and consumers share it. */
struct worker {
	hs_client *c;
	hs_subscription *sub;
	const char *topic;
	int n;
	int bad;
};

static void *producer_thread(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < w->n; i++) {
		uint64_t seq;
		if (hs_tensor_emit(make(w->c, (uint64_t)i), w->topic, NULL, &seq) || seq != (uint64_t)i + 1)
			w->bad++;
		if (i % 50 == 0 && hs_client_ping(w->c))
			w->bad++;
	}
	return NULL;
}

static void *consumer_thread(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < w->n; i++) {
		hs_tensor *t;
		if (hs_subscription_receive(w->sub, 10000, &t)) {
			w->bad += w->n - i;
			break;
		}
		if (hs_tensor_seq(t) != (uint64_t)i + 1 || !good(t, (uint64_t)i))
			w->bad++;
		hs_tensor_release(t, NULL);
	}
	return NULL;
}

START_TEST(t_threads)
{
	NEED_DAEMON();
	hs_client *c;
	ck_assert_int_eq(hs_client_connect(sock_path, "threads", &c), 0);
	enum { PAIRS = 3, N = 300 };
	struct worker w[2 * PAIRS];
	pthread_t th[2 * PAIRS];
	static const char *topics[PAIRS] = { "th/0", "th/1", "th/2" };
	hs_subscribe_opts o = { .depth = 4, .policy = HS_POLICY_BLOCK };
	for (int k = 0; k < PAIRS; k++) {
		w[2 * k] = (struct worker){ .c = c, .topic = topics[k], .n = N };
		w[2 * k + 1] = (struct worker){ .c = c, .topic = topics[k], .n = N };
		ck_assert_int_eq(hs_subscribe(c, topics[k], &o, &w[2 * k + 1].sub), 0);
	}
	for (int k = 0; k < PAIRS; k++) {
		pthread_create(&th[2 * k + 1], NULL, consumer_thread, &w[2 * k + 1]);
		pthread_create(&th[2 * k], NULL, producer_thread, &w[2 * k]);
	}
	for (int k = 0; k < 2 * PAIRS; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < 2 * PAIRS; k++)
		ck_assert_msg(w[k].bad == 0, "worker %d: %d bad", k, w[k].bad);
	for (int k = 0; k < PAIRS; k++)
		hs_subscription_close(w[2 * k + 1].sub);
	hs_client_stats st;
	hs_client_get_stats(c, &st);
	ck_assert_int_eq(st.tensors_held, 0);
	hs_client_disconnect(c);
	daemon_stop();
}
END_TEST

/* The pollable fd: an application's own loop drives the client. */
START_TEST(t_pollable_fd)
{
	NEED_DAEMON();
	hs_client *prod, *cons;
	ck_assert_int_eq(hs_client_connect(sock_path, NULL, &prod), 0);
	ck_assert_int_eq(hs_client_connect(sock_path, NULL, &cons), 0);
	hs_subscription *sub;
	ck_assert_int_eq(hs_subscribe(cons, "poll/a", NULL, &sub), 0);
	int fd = hs_client_get_fd(cons);
	ck_assert_int_ge(fd, 0);
	int got = 0;
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(hs_tensor_emit(make(prod, (uint64_t)i), "poll/a", NULL, NULL), 0);
		hs_tensor *t = NULL;
		while (hs_subscription_receive(sub, 0, &t) == HS_ETIMEDOUT) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			ck_assert_int_eq(poll(&p, 1, 5000), 1);
			ck_assert_int_ge(hs_client_dispatch(cons), 0);
		}
		ck_assert(good(t, (uint64_t)i));
		hs_tensor_release(t, NULL);
		got++;
	}
	ck_assert_int_eq(got, 20);
	hs_subscription_close(sub);
	hs_client_disconnect(cons);
	hs_client_disconnect(prod);
	daemon_stop();
}
END_TEST

static void *ping_forever(void *arg)
{
	hs_client *c = arg;
	int err;
	while ((err = hs_client_ping(c)) == 0)
		;
	return (void *)(intptr_t)err;
}

/* Emits into a blocking subscriber that never reads: the third waits. */
static void *blocked_emitter(void *arg)
{
	hs_client *c = arg;
	int err = 0;
	/* Emits without seq_out return at once until too many are
	 * unanswered; then one waits like an emit with seq_out. */
	for (int i = 0; i < 1000 && !err; i++)
		err = hs_tensor_emit(make(c, (uint64_t)i), "gone/b", NULL, NULL);
	return (void *)(intptr_t)err;
}

/* A daemon killed outright: pending and later calls fail, none hangs. */
START_TEST(t_daemon_killed)
{
	NEED_DAEMON();
	hs_client *c;
	ck_assert_int_eq(hs_client_connect(sock_path, NULL, &c), 0);
	hs_subscription *sub;
	ck_assert_int_eq(hs_subscribe(c, "gone/a", NULL, &sub), 0);
	hs_tensor *held = make(c, 1);
	hs_client *slow;
	hs_subscription *slow_sub;
	hs_subscribe_opts one = { .depth = 1, .policy = HS_POLICY_BLOCK };
	ck_assert_int_eq(hs_client_connect(sock_path, "slow", &slow), 0);
	ck_assert_int_eq(hs_subscribe(slow, "gone/b", &one, &slow_sub), 0);
	pthread_t th, emitter;
	pthread_create(&th, NULL, ping_forever, c);
	pthread_create(&emitter, NULL, blocked_emitter, c);
	sleep_ms(100);
	kill(daemon_pid, SIGKILL);
	waitpid(daemon_pid, NULL, 0);
	daemon_pid = 0;
	hs_tensor *t;
	ck_assert_int_eq(hs_subscription_receive(sub, -1, &t), HS_EPIPE);
	void *r;
	pthread_join(th, &r);
	ck_assert_int_eq((int)(intptr_t)r, HS_EPIPE);
	pthread_join(emitter, &r); /* was held back by the full subscriber */
	ck_assert_int_eq((int)(intptr_t)r, HS_EPIPE);
	hs_subscription_close(slow_sub);
	hs_client_disconnect(slow);
	ck_assert_int_eq(hs_tensor_emit(held, "gone/a", NULL, NULL), HS_EPIPE);
	ck_assert_int_eq(hs_tensor_alloc(c, cpu, f32, 0, NULL, NULL, &t), HS_EPIPE);
	hs_client_stats before;
	hs_client_get_stats(c, &before);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	daemon_stop();

	/* A new daemon: connect again and carry on, in a new epoch. */
	ck_assert(daemon_start());
	ck_assert_int_eq(hs_client_connect(sock_path, NULL, &c), 0);
	hs_client_stats after;
	hs_client_get_stats(c, &after);
	ck_assert(after.epoch != before.epoch);
	ck_assert_int_eq(hs_tensor_emit(make(c, 1), "gone/a", NULL, NULL), 0);
	hs_client_disconnect(c);
	daemon_stop();
}
END_TEST

/* A daemon told to stop says so: HS_ESHUTDOWN, not a lost connection. */
START_TEST(t_daemon_shutdown)
{
	NEED_DAEMON();
	hs_client *c;
	ck_assert_int_eq(hs_client_connect(sock_path, NULL, &c), 0);
	hs_subscription *sub;
	ck_assert_int_eq(hs_subscribe(c, "bye/a", NULL, &sub), 0);
	kill(daemon_pid, SIGTERM);
	hs_tensor *t;
	ck_assert_int_eq(hs_subscription_receive(sub, 5000, &t), HS_ESHUTDOWN);
	ck_assert_int_eq(hs_client_ping(c), HS_ESHUTDOWN);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	daemon_stop();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("local");
	tcase_add_test(tc, t_default_path);
	tcase_add_test(tc, t_errors);
	tcase_add_test(tc, t_connect_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("hostile");
	tcase_set_timeout(tc, 20);
	tcase_add_loop_test(tc, t_hostile, 0, SC_COUNT);
	suite_add_tcase(s, tc);

	tc = tcase_create("daemon");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_roundtrip);
	tcase_add_test(tc, t_ring_unannounced_slab);
	tcase_add_test(tc, t_info);
	tcase_add_test(tc, t_threads);
	tcase_add_test(tc, t_close_releases);
	tcase_add_test(tc, t_disconnect_flushes_emits);
	tcase_add_test(tc, t_pollable_fd);
	tcase_add_test(tc, t_daemon_killed);
	tcase_add_test(tc, t_daemon_shutdown);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
