/* GPU tests: device tensors between processes through hsbrokerd.
 *
 *   hs-gpu-test CASE [--count N]
 *   hs-gpu-test role-consumer|role-producer --topic T [--count N]
 *
 * CASE: pipeline, mapcache, fanout, forward (through a process that
 * writes into each tensor and re-emits it), cross-gpu (tensors of one GPU
 * read on another; needs two), kill-consumer, kill-producer, reuse,
 * reuse-unsafe (a control that shows the reuse test can see an
 * overwrite: HS_STREAM_DONE while the reads still run), idiom-c-default
 * (the reuse test read on the legacy default stream, released with
 * NULL), idiom-c-dlpack (read through hs_tensor_to_dlpack_stream, the
 * DLManagedTensor freed while the reads run), nogpu (runs where no GPU
 * is: a device alloc fails with a clear code and host tensors still
 * work).
 *
 * The daemon: $HSBROKER_SOCKET if set (tests/gpu/run.sh starts one),
 * else $HSBROKERD is started on a private socket. Exit 0 passed, 1
 * failed, 77 skipped (meson's code): every GPU case skips where no GPU
 * is found, so CI compiles these and reports them skipped.
 *
 * Export modes (docs/gpu.md): every case runs against a daemon of either
 * mode (tests/gpu/run.sh passes --cuda-export through HS_TEST_DAEMON_ARGS
 * or its own daemon). daemon-killed (hsbrokerd SIGKILLed while a consumer
 * holds device tensors: they still read right in VMM mode, the next
 * broker call says HS_EPIPE, a reconnect to a restarted daemon works),
 * pidns (the daemon and the reader each in a PID namespace of its own:
 * VMM works, legacy IPC works or fails with HS_EIPC, never a hang) and
 * ro-uid (the producer as uid 65533, the reader as uid 65534: VMM maps it
 * read-only; neither can open the daemon's fence events, so the emits
 * synchronise and carry none) are about them; pidns and ro-uid need root.
 *
 * Producers write with cudaMemsetAsync on their own stream and never
 * synchronise on the per-tensor path (once at exit, after their last
 * emit); consumers order themselves after the writes with
 * hs_tensor_wait (the ready fence), copy to pinned host memory on their
 * own stream, release with that stream (the release fence) and
 * synchronise only that stream. Every child process is forked before
 * this process touches CUDA (a child of a process that initialised CUDA
 * cannot use it); the GPU probe itself runs in a child.
 *
 * Each case prints one "RESULT case=... ok=0|1 key=value..." line that
 * run.sh collects into its summary. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hs-config.h"
#include "hsbroker/client.h"
#include "hsbroker/info.h"
#include "harness.h"

#if HS_HAVE_CUDA
#include <dlfcn.h>
#include <limits.h>
#include <sys/stat.h>

#include <cuda_runtime_api.h>

#include "cudrv.h"
#endif

#define SKIP 77
#define MiB (1ull << 20)
#define KiB (1ull << 10)
#define RECV_MS 120000

static struct ht_daemon daemon_;
static bool own_daemon;
static const char *sock_path;

/* ---- the daemon ---- */

static int daemon_up(const char *const *extra)
{
	const char *s = getenv("HSBROKER_SOCKET");
	if (s && *s) {
		sock_path = s;
		return 0;
	}
	if (!getenv("HSBROKERD")) {
		fprintf(stderr, "gpu-test: set HSBROKER_SOCKET or HSBROKERD\n");
		return -1;
	}
	if (ht_daemon_start(&daemon_, extra) < 0)
		return -1;
	own_daemon = true;
	sock_path = daemon_.sock;
	setenv("HSBROKER_SOCKET", sock_path, 1);
	return 0;
}

static int daemon_down(void)
{
	if (!own_daemon)
		return 0;
	int rc = ht_daemon_stop(&daemon_);
	if (rc != 0)
		fprintf(stderr, "gpu-test: hsbrokerd exited with %d\n", rc);
	return rc == 0 ? 0 : -1;
}

static hs_client *connect_or_die(const char *who)
{
	hs_client *c = NULL;
	int err = hs_client_connect(sock_path, who, &c);
	if (err) {
		fprintf(stderr, "%s: connect %s: %s\n", who, sock_path, hs_strerror(err));
		return NULL;
	}
	return c;
}

#if HS_HAVE_CUDA

/* ---- what the k-th tensor of a topic looks like ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct plan {
	uint64_t bytes;
	DLDataType dtype;
	int64_t shape[2];
	uint8_t a, b;        /* fill byte, and the byte of the second write */
	uint64_t off, len;   /* the second write's range */
};

static const DLDataType dtypes[] = {
	{ kDLFloat, 32, 1 }, { kDLFloat, 16, 1 }, { kDLBfloat, 16, 1 }, { kDLInt, 8, 1 },
	{ kDLUInt, 8, 1 },   { kDLInt, 32, 1 },   { kDLInt, 64, 1 },    { kDLFloat, 64, 1 },
};

/* Mixed sizes, 4 KiB .. 256 MiB, mostly small: 90% up to 1 MiB, 9% up
 * to 32 MiB, 1% 64..256 MiB; the first is 256 MiB and the second 4 KiB
 * so both ends are always there. sizes: 0 mixed, else that many bytes. */
static void plan_for(uint64_t k, uint64_t sizes, struct plan *p)
{
	uint64_t r = mix(k * 7919 + 1);
	uint64_t pages;
	if (sizes)
		pages = sizes / (4 * KiB);
	else if (k == 1)
		pages = 256 * MiB / (4 * KiB);
	else if (k == 2)
		pages = 1;
	else if (r % 1000 < 10)
		pages = 16384 + mix(r) % (49152 + 1);           /* 64..256 MiB */
	else if (r % 1000 < 100)
		pages = 256 + mix(r) % (8192 - 256 + 1);        /* 1..32 MiB */
	else
		pages = 1 + mix(r) % 256;                       /* 4 KiB..1 MiB */
	p->bytes = pages * 4 * KiB;
	p->dtype = dtypes[mix(r + 3) % (sizeof(dtypes) / sizeof(dtypes[0]))];
	uint64_t esize = p->dtype.bits / 8;
	p->shape[1] = 64;
	p->shape[0] = (int64_t)(p->bytes / esize / 64);
	p->a = (uint8_t)(k * 131 + 17);
	p->b = (uint8_t)(p->a ^ 0x5a);
	p->off = (p->bytes / 3) & ~(uint64_t)255;
	p->len = p->bytes / 4 + 1;
	if (p->off + p->len > p->bytes)
		p->len = p->bytes - p->off;
}

#define CK(call)                                                                     \
	do {                                                                         \
		cudaError_t e_ = (call);                                             \
		if (e_ != cudaSuccess)                                               \
			return ht_child_fail(who, "%s: %s", #call, cudaGetErrorString(e_)); \
	} while (0)

/* Bytes [from, to) of h all equal v? *bad_at: the first that is not. */
static bool span_ok(const uint8_t *h, uint64_t from, uint64_t to, uint8_t v, uint64_t *bad_at)
{
	uint64_t i = from;
	while (i < to && (i & 7))
		if (h[i++] != v)
			goto bad;
	uint64_t w = 0x0101010101010101ull * v;
	for (; i + 8 <= to; i += 8) {
		uint64_t x;
		memcpy(&x, h + i, 8);
		if (x != w)
			break;
	}
	for (; i < to; i++)
		if (h[i] != v)
			goto bad;
	return true;
bad:
	for (i = from; i < to && h[i] == v; i++)
		;
	*bad_at = i;
	return false;
}

/* A forwarder overwrites the first FWD_BYTES with ~a before re-emitting. */
#define FWD_BYTES 256

static bool check_bytes(const uint8_t *h, const struct plan *p, bool forwarded,
			uint64_t *bad_at)
{
	if (forwarded)
		return span_ok(h, 0, FWD_BYTES, (uint8_t)~p->a, bad_at) &&
		       span_ok(h, FWD_BYTES, p->off, p->a, bad_at) &&
		       span_ok(h, p->off, p->off + p->len, p->b, bad_at) &&
		       span_ok(h, p->off + p->len, p->bytes, p->a, bad_at);
	return span_ok(h, 0, p->off, p->a, bad_at) &&
	       span_ok(h, p->off, p->off + p->len, p->b, bad_at) &&
	       span_ok(h, p->off + p->len, p->bytes, p->a, bad_at);
}

/* ---- producer ---- */

struct producer_args {
	const char *topic;
	uint64_t count;     /* UINT64_MAX: until killed */
	uint64_t sizes;     /* 0: mixed */
	struct ht_chan *go; /* waits for one byte before the first emit */
	int device;         /* the GPU its tensors live on */
};

static int producer(void *arg)
{
	const struct producer_args *pa = arg;
	const char *who = "producer";
	if (pa->go && ht_chan_recv(pa->go, HT_LONG_DEADLINE_MS) < 0)
		return ht_child_fail(who, "no go");
	hs_client *c = connect_or_die(who);
	if (!c)
		return 1;
	CK(cudaSetDevice(pa->device));
	cudaStream_t s;
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	for (uint64_t k = 1; k <= pa->count; k++) {
		struct plan p;
		plan_for(k, pa->sizes, &p);
		hs_tensor *t;
		int err;
		/* A full pool (everything held by readers) clears as they
		 * release: back off briefly. */
		for (int tries = 0;; tries++) {
			err = hs_tensor_alloc(c, (DLDevice){ kDLCUDA, pa->device }, p.dtype, 2, p.shape,
					      NULL, &t);
			if (err != HS_ENOSPC || tries > 20000)
				break;
			usleep(1000);
		}
		if (err)
			return ht_child_fail(who, "alloc %" PRIu64 " (%" PRIu64 " bytes): %s", k,
					     p.bytes, hs_strerror(err));
		uint8_t *d = hs_tensor_data(t);
		CK(cudaMemsetAsync(d, p.a, p.bytes, s));
		CK(cudaMemsetAsync(d + p.off, p.b, p.len, s));
		uint64_t seq = 0;
		/* No synchronisation: the ready fence orders the readers. */
		err = hs_tensor_emit(t, pa->topic, s, &seq);
		if (err)
			return ht_child_fail(who, "emit %" PRIu64 ": %s", k, hs_strerror(err));
		if (seq != k)
			return ht_child_fail(who, "emit %" PRIu64 " got seq %" PRIu64, k, seq);
	}
	/* Once, at the end: this process's writes must be done before its
	 * context goes away with it. */
	CK(cudaStreamSynchronize(s));
	cudaStreamDestroy(s);
	hs_client_disconnect(c);
	return 0;
}

/* ---- consumer ---- */

struct consumer_args {
	const char *name;
	const char *topic;
	uint64_t count;       /* tensors to check */
	uint64_t sizes;
	uint32_t depth;
	enum hs_policy policy;
	bool hold;            /* keep every tensor until the end */
	struct ht_chan *ready; /* one byte once subscribed */
	struct ht_chan *signal; /* one byte after `count` tensors (hold mode) */
	struct ht_chan *resume; /* then waits for one byte here (NULL: none) */
	bool stay;            /* after `signal`, sleep until killed */
	bool drain;           /* after resume: check what is still queued */
	bool mapcache;        /* check opens == distinct slabs */
	bool quiet;
	int device;           /* the consumer's GPU (its stream, its buffer) */
	bool forwarded;       /* the tensors passed through forwarder() */
	bool via_local;       /* copy into a buffer on our GPU first (peer read) */
};

/* What check_tensor needs besides the tensor. */
struct reader {
	cudaStream_t cs;
	uint8_t *host;
	void *local;          /* via_local: a buffer on the consumer's GPU */
	bool forwarded;
};

/* Checks t against the plan of its seq: metadata, then the bytes on the
 * consumer's own stream after waiting on the ready fence. */
static int check_tensor(const char *who, hs_tensor *t, uint64_t sizes, const struct reader *rd)
{
	struct plan p;
	uint64_t k = hs_tensor_seq(t);
	plan_for(k, sizes, &p);
	const DLTensor *dl = hs_tensor_dltensor(t);
	if (dl->device.device_type != kDLCUDA || dl->ndim != 2 || dl->shape[0] != p.shape[0] ||
	    dl->shape[1] != p.shape[1] || dl->dtype.code != p.dtype.code ||
	    dl->dtype.bits != p.dtype.bits || hs_tensor_nbytes(t) < p.bytes)
		return ht_child_fail(who, "tensor %" PRIu64 ": metadata does not match", k);
	if (((uintptr_t)hs_tensor_data(t)) % 256)
		return ht_child_fail(who, "tensor %" PRIu64 ": not 256-byte aligned", k);
	cudaStream_t cs = rd->cs;
	int err = hs_tensor_wait(t, cs);
	if (err)
		return ht_child_fail(who, "wait %" PRIu64 ": %s", k, hs_strerror(err));
	const void *src = hs_tensor_data(t);
	if (rd->local) {
		/* Another GPU's memory read by our GPU's stream. */
		static bool told;
		if (!told) {
			struct cudaPointerAttributes pa;
			cudaError_t pe = cudaPointerGetAttributes(&pa, src);
			printf("%s: a tensor of cuda:%d seen from our GPU: %s, type %d, device %d\n",
			       who, dl->device.device_id, cudaGetErrorString(pe), (int)pa.type,
			       pa.device);
			fflush(stdout);
			told = true;
		}
		CK(cudaMemcpyAsync(rd->local, src, p.bytes, cudaMemcpyDeviceToDevice, cs));
		src = rd->local;
	}
	CK(cudaMemcpyAsync(rd->host, src, p.bytes, cudaMemcpyDeviceToHost, cs));
	CK(cudaStreamSynchronize(cs));
	uint64_t bad;
	if (!check_bytes(rd->host, &p, rd->forwarded, &bad))
		return ht_child_fail(who, "tensor %" PRIu64 " (%" PRIu64 " bytes): byte %" PRIu64
				     " is 0x%02x (a 0x%02x, b 0x%02x)", k, p.bytes, bad,
				     rd->host[bad], p.a, p.b);
	return 0;
}

static uint64_t distinct(uint64_t *v, size_t n)
{
	uint64_t d = 0;
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = v[j] == v[i];
		d += !seen;
	}
	return d;
}

/* opens == the distinct slabs of the tensors held, from the daemon's
 * tensor list. */
static int check_mapcache(const char *who, hs_client *c, hs_tensor **held, size_t n)
{
	hs_info *info;
	int err = hs_client_get_info(c, HS_INFO_TENSORS, &info);
	if (err)
		return ht_child_fail(who, "get_info: %s", hs_strerror(err));
	uint64_t *slabs = calloc(n + 1, sizeof(*slabs));
	size_t ns = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < info->n_tensors; j++)
			if (info->tensors[j].id == hs_tensor_id(held[i])) {
				slabs[ns++] = info->tensors[j].slab_id;
				break;
			}
	hs_info_free(info);
	uint64_t s = distinct(slabs, ns);
	free(slabs);
	hs_client_stats st;
	hs_client_get_stats(c, &st);
	printf("RESULT case=mapcache ok=%d tensors=%zu listed=%zu slabs=%" PRIu64
	       " slab_opens=%" PRIu64 " slabs_mapped=%" PRIu64 " event_opens=%" PRIu64 "\n",
	       ns == n && st.slab_opens == s && st.slabs_mapped == s, n, ns, s, st.slab_opens,
	       st.slabs_mapped, st.event_opens);
	fflush(stdout);
	if (ns != n)
		return ht_child_fail(who, "%zu of %zu held tensors listed", ns, n);
	if (st.slab_opens != s)
		return ht_child_fail(who, "opens %" PRIu64 " != slabs %" PRIu64, st.slab_opens, s);
	return 0;
}

/* Connects as who and subscribes to topic: the subscription, or NULL
 * (said on stderr; *c is NULL when the connect failed). */
static hs_subscription *subscriber(const char *who, const char *topic, uint32_t depth,
				   enum hs_policy policy, hs_client **c)
{
	*c = connect_or_die(who);
	if (!*c)
		return NULL;
	hs_subscribe_opts o = { .depth = depth, .policy = policy };
	hs_subscription *sub;
	int err = hs_subscribe(*c, topic, &o, &sub);
	if (err) {
		ht_child_fail(who, "subscribe: %s", hs_strerror(err));
		return NULL;
	}
	return sub;
}

static int consumer(void *arg)
{
	const struct consumer_args *ca = arg;
	const char *who = ca->name;
	hs_client *c;
	hs_subscription *sub =
		subscriber(who, ca->topic, ca->depth ? ca->depth : 8, ca->policy, &c);
	if (!sub)
		return 1;
	int err = 0;
	if (ca->ready && ht_chan_send(ca->ready, 'r') < 0)
		return ht_child_fail(who, "ready");
	CK(cudaSetDevice(ca->device));
	cudaStream_t cs;
	CK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
	uint64_t maxb = ca->sizes ? ca->sizes : 256 * MiB;
	uint8_t *host;
	CK(cudaMallocHost((void **)&host, maxb));
	struct reader rd = { .cs = cs, .host = host, .forwarded = ca->forwarded };
	if (ca->via_local)
		CK(cudaMalloc(&rd.local, maxb));
	hs_tensor **held = ca->hold ? calloc(ca->count + 1024, sizeof(*held)) : NULL;
	size_t nheld = 0;
	uint64_t bytes = 0;

	for (uint64_t i = 0; i < ca->count; i++) {
		hs_tensor *t;
		err = hs_subscription_receive(sub, RECV_MS, &t);
		if (err)
			return ht_child_fail(who, "receive %" PRIu64 ": %s", i + 1, hs_strerror(err));
		if (check_tensor(who, t, ca->sizes, &rd))
			return 1;
		bytes += hs_tensor_nbytes(t);
		if (held)
			held[nheld++] = t;
		else
			hs_tensor_release(t, cs); /* the release fence: after our copy */
	}
	if (ca->mapcache && check_mapcache(who, c, held, nheld))
		return 1;
	if (ca->signal)
		ht_chan_send(ca->signal, 's');
	if (ca->stay)
		for (;;)
			pause(); /* holds its tensors until SIGKILL */
	if (ca->resume) {
		if (ht_chan_recv(ca->resume, HT_LONG_DEADLINE_MS) < 0)
			return ht_child_fail(who, "no resume");
		/* The producer is gone: what we hold is still there and right. */
		for (size_t i = 0; i < nheld; i++)
			if (check_tensor(who, held[i], ca->sizes, &rd))
				return 1;
		uint64_t more = 0;
		while (ca->drain) {
			hs_tensor *t;
			err = hs_subscription_receive(sub, 2000, &t);
			if (err == HS_ETIMEDOUT)
				break;
			if (err)
				return ht_child_fail(who, "receive after the producer died: %s",
						     hs_strerror(err));
			if (check_tensor(who, t, ca->sizes, &rd))
				return 1;
			hs_tensor_release(t, cs);
			more++;
		}
		if (!ca->quiet)
			printf("%s: %zu held tensors re-read correctly after the producer was killed, "
			       "%" PRIu64 " more drained\n", who, nheld, more);
	}
	for (size_t i = 0; i < nheld; i++)
		hs_tensor_release(held[i], cs);
	free(held);
	hs_client_stats st;
	hs_client_get_stats(c, &st);
	if (!ca->quiet)
		printf("%s: %" PRIu64 " tensors, %.1f MiB checked; slab_opens=%" PRIu64
		       " event_opens=%" PRIu64 "\n", who, ca->count, (double)bytes / MiB,
		       st.slab_opens, st.event_opens);
	fflush(stdout);
	hs_subscription_close(sub);
	hs_client_disconnect(c); /* waits for the releases queued on cs */
	cudaFreeHost(host);
	if (rd.local)
		cudaFree(rd.local);
	cudaStreamDestroy(cs);
	return 0;
}

/* ---- forwarder: receives, writes into the tensor, re-emits it ---- */

struct forwarder_args {
	const char *in, *out;
	uint64_t count;
	struct ht_chan *ready;
};

static int forwarder(void *arg)
{
	const struct forwarder_args *fa = arg;
	const char *who = "forwarder";
	hs_client *c;
	hs_subscription *sub = subscriber(who, fa->in, 16, HS_POLICY_BLOCK, &c);
	if (!sub)
		return 1;
	int err = 0;
	ht_chan_send(fa->ready, 'r');
	CK(cudaSetDevice(0));
	cudaStream_t fs;
	CK(cudaStreamCreateWithFlags(&fs, cudaStreamNonBlocking));
	for (uint64_t i = 0; i < fa->count; i++) {
		hs_tensor *t;
		err = hs_subscription_receive(sub, RECV_MS, &t);
		if (err)
			return ht_child_fail(who, "receive: %s", hs_strerror(err));
		struct plan p;
		plan_for(hs_tensor_seq(t), 0, &p);
		/* After the producer's writes, on our stream; then forward
		 * with that stream: the fence now covers our write too. */
		if ((err = hs_tensor_wait(t, fs)))
			return ht_child_fail(who, "wait: %s", hs_strerror(err));
		CK(cudaMemsetAsync(hs_tensor_data(t), (uint8_t)~p.a, FWD_BYTES, fs));
		if ((err = hs_tensor_emit(t, fa->out, fs, NULL)))
			return ht_child_fail(who, "emit: %s", hs_strerror(err));
	}
	CK(cudaStreamSynchronize(fs));
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return 0;
}

/* ---- the cases ---- */

/* The GPU probe, in a child: this process must stay CUDA-free to fork. */
static int probe(void *arg)
{
	(void)arg;
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || n <= 0) {
		printf("SKIP: no GPU found (cudaGetDeviceCount: %s, error %d)\n",
		       cudaGetErrorString(e), (int)e);
		return SKIP;
	}
	struct cudaDeviceProp prop;
	if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
		printf("gpu: %d device(s), cuda:0 is %s\n", n, prop.name);
	return 0;
}

static bool have_gpu(void)
{
	pid_t pid = ht_fork(probe, NULL);
	return ht_wait(pid, HT_DEADLINE_MS) == 0;
}

/* 1 when a second GPU is there and the first can read it as a peer (or
 * through the host: cudaMemcpy handles both), else 0. */
static int probe_two(void *arg)
{
	(void)arg;
	int n = 0, peer = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n < 2)
		return 0;
	cudaDeviceCanAccessPeer(&peer, 0, 1);
	printf("gpu: %d devices; cuda:0 %s peer access to cuda:1\n", n, peer ? "has" : "has no");
	return 1;
}

static bool have_two_gpus(void)
{
	pid_t pid = ht_fork(probe_two, NULL);
	return ht_wait(pid, HT_DEADLINE_MS) == 1;
}

/* The device pool's use, from the daemon; -1 when there is none. */
static int64_t cuda_used(hs_client *c, uint64_t *slabs, uint64_t *total)
{
	hs_info *info;
	if (hs_client_get_info(c, HS_INFO_POOLS, &info))
		return -1;
	int64_t used = -1;
	/* Every GPU's pool together. */
	if (slabs)
		*slabs = 0;
	if (total)
		*total = 0;
	for (size_t i = 0; i < info->n_pools; i++)
		if (info->pools[i].device.device_type == kDLCUDA) {
			used = (used < 0 ? 0 : used) + (int64_t)info->pools[i].used;
			if (slabs)
				*slabs += info->pools[i].slabs;
			if (total)
				*total += info->pools[i].total;
		}
	hs_info_free(info);
	return used;
}

/* Waits until the device pool holds no tensor (every block back). */
static int wait_pool_full(const char *what, uint64_t *slabs)
{
	hs_client *c = connect_or_die("gpu-test");
	if (!c)
		return -1;
	int64_t used = -1;
	uint64_t total = 0;
	int64_t end = ht_now_ms() + 20000;
	while (ht_now_ms() < end) {
		used = cuda_used(c, slabs, &total);
		if (used == 0)
			break;
		ht_sleep_ms(50);
	}
	hs_client_disconnect(c);
	printf("%s: device pool used=%" PRId64 " of %" PRIu64 " bytes after the test\n", what, used,
	       total);
	return used == 0 ? 0 : -1;
}

static int wait_all(pid_t *pids, int n, const char *const *names)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		int rc = ht_wait(pids[i], 30 * 60 * 1000);
		if (rc != 0) {
			fprintf(stderr, "%s exited with %d\n", names[i], rc);
			bad++;
		}
	}
	return bad;
}

/* One producer, nc consumers checking every tensor. forward: through a
 * forwarder process; pdev/cdev: the producer's and consumers' GPUs. */
static int run_pipeline_ex(const char *cname, uint64_t count, int nc, uint64_t sizes,
			   bool forward, int pdev, int cdev)
{
	char topic[64];
	snprintf(topic, sizeof(topic), "gpu/%s/%d", cname, (int)getpid());
	struct ht_chan ready, go;
	ht_chan_open(&ready);
	ht_chan_open(&go);
	struct consumer_args ca[3];
	pid_t pids[4];
	const char *names[4] = { "consumer-1", "consumer-2", "consumer-3", "producer" };
	char topic2[80];
	snprintf(topic2, sizeof(topic2), "%s/fwd", topic);
	for (int i = 0; i < nc; i++) {
		ca[i] = (struct consumer_args){ .name = names[i], .topic = forward ? topic2 : topic,
						.count = count, .sizes = sizes, .depth = 16,
						.ready = &ready, .device = cdev, .forwarded = forward,
						.via_local = pdev != cdev };
		pids[i] = ht_fork(consumer, &ca[i]);
	}
	struct forwarder_args fa = { .in = topic, .out = topic2, .count = count, .ready = &ready };
	pid_t fwd = forward ? ht_fork(forwarder, &fa) : -1;
	struct producer_args pa = { .topic = topic, .count = count, .sizes = sizes, .go = &go,
				    .device = pdev };
	pids[nc] = ht_fork(producer, &pa);
	names[nc] = "producer";
	for (int i = 0; i < nc + forward; i++)
		if (ht_chan_recv(&ready, HT_LONG_DEADLINE_MS) < 0)
			return 1;
	int64_t t0 = ht_now_ms();
	ht_chan_send(&go, 'g');
	int bad = wait_all(pids, nc + 1, names);
	if (forward && ht_wait(fwd, 30 * 60 * 1000) != 0) {
		fprintf(stderr, "forwarder failed\n");
		bad++;
	}
	int64_t ms = ht_now_ms() - t0;
	uint64_t slabs = 0;
	int full = wait_pool_full(cname, &slabs);
	printf("RESULT case=%s ok=%d tensors=%" PRIu64 " consumers=%d%s producer_gpu=%d "
	       "consumer_gpu=%d ms=%" PRId64 " pool_slabs=%" PRIu64 " pool_back_to_full=%d\n",
	       cname, !bad && !full, count, nc, forward ? " forwarded=1" : "", pdev, cdev, ms,
	       slabs, !full);
	return bad || full;
}

static int run_pipeline(const char *cname, uint64_t count, int nc, uint64_t sizes)
{
	return run_pipeline_ex(cname, count, nc, sizes, false, 0, 0);
}

static int case_mapcache(uint64_t count)
{
	char topic[64];
	snprintf(topic, sizeof(topic), "gpu/mapcache/%d", (int)getpid());
	struct ht_chan ready, go;
	ht_chan_open(&ready);
	ht_chan_open(&go);
	/* Sizes 4 KiB .. 1 MiB, all held at once: N tensors from S slabs. */
	struct consumer_args ca = { .name = "consumer", .topic = topic, .count = count,
				    .depth = 64, .hold = true, .ready = &ready, .mapcache = true };
	struct producer_args pa = { .topic = topic, .count = count, .sizes = 1 * MiB, .go = &go };
	ca.sizes = pa.sizes;
	pid_t pids[2] = { ht_fork(consumer, &ca), ht_fork(producer, &pa) };
	const char *names[2] = { "consumer", "producer" };
	if (ht_chan_recv(&ready, HT_LONG_DEADLINE_MS) < 0)
		return 1;
	ht_chan_send(&go, 'g');
	int bad = wait_all(pids, 2, names);
	return bad || wait_pool_full("mapcache", NULL);
}

static int case_kill_consumer(uint64_t count)
{
	char topic[64];
	snprintf(topic, sizeof(topic), "gpu/killc/%d", (int)getpid());
	struct ht_chan ready, go, sig;
	ht_chan_open(&ready);
	ht_chan_open(&go);
	ht_chan_open(&sig);
	/* Two consumers check everything; the third holds what it got (drop
	 * oldest, so it never blocks the producer) and is killed. */
	struct consumer_args ca[3];
	const char *names[3] = { "consumer-1", "consumer-2", "producer" };
	for (int i = 0; i < 2; i++)
		ca[i] = (struct consumer_args){ .name = names[i], .topic = topic, .count = count,
						.depth = 16, .ready = &ready, .quiet = true };
	ca[2] = (struct consumer_args){ .name = "victim", .topic = topic, .count = 40,
					.depth = 4, .policy = HS_POLICY_DROP_OLDEST, .hold = true,
					.ready = &ready, .signal = &sig, .stay = true };
	pid_t victim = ht_fork(consumer, &ca[2]);
	pid_t pids[3];
	pids[0] = ht_fork(consumer, &ca[0]);
	pids[1] = ht_fork(consumer, &ca[1]);
	struct producer_args pa = { .topic = topic, .count = count, .go = &go };
	pids[2] = ht_fork(producer, &pa);
	for (int i = 0; i < 3; i++)
		if (ht_chan_recv(&ready, HT_LONG_DEADLINE_MS) < 0)
			return 1;
	ht_chan_send(&go, 'g');
	if (ht_chan_recv(&sig, HT_LONG_DEADLINE_MS) < 0) {
		fprintf(stderr, "victim never got its tensors\n");
		return 1;
	}
	hs_client *c = connect_or_die("gpu-test");
	int64_t held = c ? cuda_used(c, NULL, NULL) : -1;
	if (c)
		hs_client_disconnect(c);
	kill(victim, SIGKILL);
	int vrc = ht_wait(victim, HT_DEADLINE_MS);
	int bad = wait_all(pids, 3, names);
	int full = wait_pool_full("kill-consumer", NULL);
	printf("RESULT case=kill-consumer ok=%d victim_exit=%d used_while_held=%" PRId64
	       " pool_back_to_full=%d\n", !bad && !full && vrc == 128 + SIGKILL, vrc, held, !full);
	return bad || full || vrc != 128 + SIGKILL;
}

static int case_kill_producer(void)
{
	char topic[64];
	snprintf(topic, sizeof(topic), "gpu/killp/%d", (int)getpid());
	struct ht_chan ready, go, sig, resume;
	ht_chan_open(&ready);
	ht_chan_open(&go);
	ht_chan_open(&sig);
	ht_chan_open(&resume);
	struct consumer_args ca[2];
	const char *names[2] = { "consumer-1", "consumer-2" };
	for (int i = 0; i < 2; i++)
		ca[i] = (struct consumer_args){ .name = names[i], .topic = topic, .count = 60,
						.depth = 4, .hold = true, .ready = &ready,
						.signal = &sig, .resume = &resume, .drain = true };
	pid_t pids[2] = { ht_fork(consumer, &ca[0]), ht_fork(consumer, &ca[1]) };
	struct producer_args pa = { .topic = topic, .count = UINT64_MAX, .go = &go };
	pid_t prod = ht_fork(producer, &pa);
	for (int i = 0; i < 2; i++)
		if (ht_chan_recv(&ready, HT_LONG_DEADLINE_MS) < 0)
			return 1;
	ht_chan_send(&go, 'g');
	for (int i = 0; i < 2; i++)
		if (ht_chan_recv(&sig, HT_LONG_DEADLINE_MS) < 0)
			return 1;
	/* Mid-stream: the producer is blocked on the consumers' full queues
	 * with more to send. (The pause lets the writes of the tensors
	 * already queued for the consumers finish: a killed process's
	 * queued GPU work may be dropped with its context.) */
	ht_sleep_ms(500);
	kill(prod, SIGKILL);
	int prc = ht_wait(prod, HT_DEADLINE_MS);
	ht_chan_send(&resume, 'g');
	ht_chan_send(&resume, 'g');
	int bad = wait_all(pids, 2, names);
	int full = wait_pool_full("kill-producer", NULL);
	printf("RESULT case=kill-producer ok=%d producer_exit=%d pool_back_to_full=%d\n",
	       !bad && !full && prc == 128 + SIGKILL, prc, !full);
	return bad || full || prc != 128 + SIGKILL;
}

/* ---- one role per process, for tools that follow processes (memcheck):
 * hs-gpu-test role-consumer --topic T --count N, and role-producer with
 * the same arguments, started in any order ---- */

/* Waits until topic has a subscriber. */
static int wait_subscriber(const char *topic)
{
	hs_client *c = connect_or_die("gpu-test");
	if (!c)
		return -1;
	int64_t end = ht_now_ms() + 60000;
	bool found = false;
	while (!found && ht_now_ms() < end) {
		hs_info *info;
		if (hs_client_get_info(c, HS_INFO_TOPICS, &info) == 0) {
			for (size_t i = 0; i < info->n_topics; i++)
				if (!strcmp(info->topics[i].name, topic) &&
				    info->topics[i].n_subscribers > 0)
					found = true;
			hs_info_free(info);
		}
		if (!found)
			ht_sleep_ms(20);
	}
	hs_client_disconnect(c);
	return found ? 0 : -1;
}

static int run_role(const char *role, const char *topic, uint64_t count)
{
	if (!strcmp(role, "role-producer")) {
		if (wait_subscriber(topic) < 0) {
			fprintf(stderr, "producer: nobody subscribed to %s\n", topic);
			return 1;
		}
		struct producer_args pa = { .topic = topic, .count = count };
		return producer(&pa);
	}
	struct consumer_args ca = { .name = "consumer", .topic = topic, .count = count,
				    .depth = 16 };
	return consumer(&ca);
}

/* ---- reuse safety ---- */

#define REUSE_BYTES (64 * MiB)
#define REUSE_COPIES 400

/* How the reader reads and lets go (the C idioms of docs/gpu.md, "What
 * is safe"). */
enum reuse_mode {
	REUSE_STREAM,  /* its own stream, hs_tensor_release(t, stream) */
	REUSE_DONE,    /* the control: HS_STREAM_DONE while the reads run */
	REUSE_LEGACY,  /* the legacy default stream, hs_tensor_release(t, NULL) */
	REUSE_DLPACK,  /* a DLManagedTensor for its stream, freed while the reads run */
};

static const char *const reuse_case_name[] = {
	[REUSE_STREAM] = "reuse",
	[REUSE_DONE] = "reuse-unsafe",
	[REUSE_LEGACY] = "idiom-c-default",
	[REUSE_DLPACK] = "idiom-c-dlpack",
};

struct reuse_args {
	const char *topic;
	int rounds;
	enum reuse_mode mode;
	struct ht_chan *ready, *go, *released;
	int *corrupt_out;
};

static int reuse_producer(void *arg)
{
	const struct reuse_args *ra = arg;
	const char *who = "reuse-producer";
	if (ht_chan_recv(ra->go, HT_LONG_DEADLINE_MS) < 0)
		return ht_child_fail(who, "no go");
	hs_client *c = connect_or_die(who);
	if (!c)
		return 1;
	CK(cudaSetDevice(0));
	cudaStream_t s;
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	int64_t shape[1] = { (int64_t)REUSE_BYTES };
	DLDataType u8 = { kDLUInt, 8, 1 };
	for (int r = 1; r <= ra->rounds; r++) {
		hs_tensor *t;
		int err;
		for (int tries = 0;; tries++) {
			err = hs_tensor_alloc(c, (DLDevice){ kDLCUDA, 0 }, u8, 1, shape, NULL, &t);
			if (err != HS_ENOSPC || tries > 20000)
				break;
			usleep(500);
		}
		if (err)
			return ht_child_fail(who, "alloc round %d: %s", r, hs_strerror(err));
		CK(cudaMemsetAsync(hs_tensor_data(t), (uint8_t)(0x10 + r), REUSE_BYTES, s));
		err = hs_tensor_emit(t, ra->topic, s, NULL);
		if (err)
			return ht_child_fail(who, "emit: %s", hs_strerror(err));
		/* The reader says it released; at once take every block we
		 * can get and overwrite it, as a hurried writer would. */
		if (ht_chan_recv(ra->released, HT_LONG_DEADLINE_MS) < 0)
			return ht_child_fail(who, "no release");
		hs_tensor *w[2];
		int nw = 0;
		for (int i = 0; i < 2; i++) {
			if (hs_tensor_alloc(c, (DLDevice){ kDLCUDA, 0 }, u8, 1, shape, NULL, &w[nw]))
				break;
			CK(cudaMemsetAsync(hs_tensor_data(w[nw]), 0xEE, REUSE_BYTES, s));
			nw++;
		}
		CK(cudaStreamSynchronize(s));
		for (int i = 0; i < nw; i++)
			hs_tensor_release(w[i], HS_STREAM_DONE); /* synchronised above */
	}
	CK(cudaStreamSynchronize(s));
	hs_client_disconnect(c);
	return 0;
}

static int reuse_consumer(void *arg)
{
	const struct reuse_args *ra = arg;
	const char *who = "reuse-consumer";
	hs_client *c;
	hs_subscription *sub = subscriber(who, ra->topic, 2, HS_POLICY_BLOCK, &c);
	if (!sub)
		return 1;
	int err = 0;
	ht_chan_send(ra->ready, 'r');
	CK(cudaSetDevice(0));
	cudaStream_t cs;
	CK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
	void *scratch;
	uint8_t *host;
	CK(cudaMalloc(&scratch, REUSE_BYTES));
	CK(cudaMallocHost((void **)&host, REUSE_BYTES));
	int corrupt = 0;
	for (int r = 1; r <= ra->rounds; r++) {
		hs_tensor *t;
		err = hs_subscription_receive(sub, RECV_MS, &t);
		if (err)
			return ht_child_fail(who, "receive: %s", hs_strerror(err));
		/* The legacy default stream is NULL, as in CUDA. */
		cudaStream_t rs = ra->mode == REUSE_LEGACY ? NULL : cs;
		DLManagedTensor *m = NULL;
		const uint8_t *data = hs_tensor_data(t);
		if (ra->mode == REUSE_DLPACK) {
			/* As a DLPack consumer gets it: for its stream. */
			if ((err = hs_tensor_to_dlpack_stream(t, rs, &m)))
				return ht_child_fail(who, "to_dlpack: %s", hs_strerror(err));
			data = (const uint8_t *)m->dl_tensor.data + m->dl_tensor.byte_offset;
		} else if ((err = hs_tensor_wait(t, rs))) {
			return ht_child_fail(who, "wait: %s", hs_strerror(err));
		}
		/* A slow reader: many large copies out of the tensor, then the
		 * copy we check, all still queued when we release. */
		for (int i = 0; i < REUSE_COPIES; i++)
			CK(cudaMemcpyAsync(scratch, data, REUSE_BYTES, cudaMemcpyDeviceToDevice, rs));
		CK(cudaMemcpyAsync(host, data, REUSE_BYTES, cudaMemcpyDeviceToHost, rs));
		bool still_running = cudaStreamQuery(rs) == cudaErrorNotReady;
		if (m)
			m->deleter(m); /* the consumer's view dies; its reads are queued */
		else
			hs_tensor_release(t, ra->mode == REUSE_DONE ? HS_STREAM_DONE : rs);
		ht_chan_send(ra->released, 'x');
		CK(cudaStreamSynchronize(rs));
		uint8_t want = (uint8_t)(0x10 + r);
		uint64_t bad = 0;
		for (uint64_t i = 0; i < REUSE_BYTES; i++)
			if (host[i] != want)
				bad++;
		if (bad)
			corrupt++;
		printf("%s: round %d: reader %s when released; %" PRIu64 " bytes overwritten\n", who, r,
		       still_running ? "still running" : "already done", bad);
	}
	fflush(stdout);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	cudaFree(scratch);
	cudaFreeHost(host);
	return corrupt > 100 ? 100 : corrupt; /* the parent reads the count */
}

static int case_reuse(enum reuse_mode mode, int rounds)
{
	bool unsafe = mode == REUSE_DONE;
	const char *name = reuse_case_name[mode];
	char topic[64];
	snprintf(topic, sizeof(topic), "gpu/reuse/%d", (int)getpid());
	struct ht_chan ready, go, released;
	ht_chan_open(&ready);
	ht_chan_open(&go);
	ht_chan_open(&released);
	struct reuse_args ra = { .topic = topic, .rounds = rounds, .mode = mode,
				 .ready = &ready, .go = &go, .released = &released };
	pid_t cons = ht_fork(reuse_consumer, &ra);
	pid_t prod = ht_fork(reuse_producer, &ra);
	if (ht_chan_recv(&ready, HT_LONG_DEADLINE_MS) < 0)
		return 1;
	ht_chan_send(&go, 'g');
	int crc = ht_wait(cons, 30 * 60 * 1000);
	int prc = ht_wait(prod, 30 * 60 * 1000);
	int full = wait_pool_full(name, NULL);
	if (unsafe) {
		/* The control: an immediate release lets the writer in while
		 * the reader still reads. Seeing it proves the test can see
		 * it; not seeing it (a fast GPU) fails nothing. */
		printf("RESULT case=reuse-unsafe ok=1 rounds=%d corrupted_rounds=%d (control: "
		       "release with HS_STREAM_DONE while the reads run)\n", rounds, crc);
		return prc != 0;
	}
	printf("RESULT case=%s ok=%d rounds=%d corrupted_rounds=%d producer_exit=%d\n", name,
	       crc == 0 && prc == 0 && !full, rounds, crc, prc);
	return crc != 0 || prc != 0 || full;
}


/* ---- export modes (issue 16): a killed daemon, PID namespaces, a
 * reader of another uid ---- */

/* The device pools' slab kind, from the daemon ("cuda-ipc", "cuda-vmm";
 * "" when no device pool exists yet). */
static void slab_kind(hs_client *c, char *out, size_t len)
{
	snprintf(out, len, "%s", "");
	hs_info *info;
	if (hs_client_get_info(c, HS_INFO_POOLS, &info))
		return;
	for (size_t i = 0; i < info->n_pools; i++)
		if (info->pools[i].device.device_type == kDLCUDA)
			snprintf(out, len, "%s", info->pools[i].slab_kind);
	hs_info_free(info);
}

/* Copies count bytes of device memory to h on stream s and checks them
 * against the plan of tensor k; the CUDA error, if any, in *cerr. */
static bool reread(const void *d, uint8_t *h, cudaStream_t s, uint64_t k, uint64_t sizes,
		   cudaError_t *cerr)
{
	struct plan p;
	plan_for(k, sizes, &p);
	cudaError_t e = cudaMemcpyAsync(h, d, p.bytes, cudaMemcpyDeviceToHost, s);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(s);
	if (e != cudaSuccess) {
		*cerr = e;
		return false;
	}
	uint64_t bad;
	return check_bytes(h, &p, false, &bad);
}

#define KILLED_COUNT 24
#define KILLED_SIZE (1 * MiB)

struct killed_args {
	const char *topic;
	struct ht_chan *ready, *held, *resume, *closed, *restarted;
};

/* Holds KILLED_COUNT device tensors while the daemon is SIGKILLed: re-reads
 * them, then expects HS_EPIPE from the broker, then reconnects to the
 * restarted daemon and makes one device round trip through it. */
static int killed_consumer(void *arg)
{
	const struct killed_args *ka = arg;
	const char *who = "consumer";
	hs_client *c;
	hs_subscription *sub = subscriber(who, ka->topic, KILLED_COUNT, HS_POLICY_BLOCK, &c);
	if (!sub)
		return 1;
	int err = 0;
	ht_chan_send(ka->ready, 'r');
	CK(cudaSetDevice(0));
	cudaStream_t cs;
	CK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
	uint8_t *host;
	CK(cudaMallocHost((void **)&host, KILLED_SIZE));
	struct reader rd = { .cs = cs, .host = host };
	hs_tensor *held[KILLED_COUNT];
	for (int i = 0; i < KILLED_COUNT; i++) {
		err = hs_subscription_receive(sub, RECV_MS, &held[i]);
		if (err)
			return ht_child_fail(who, "receive %d: %s", i + 1, hs_strerror(err));
		if (check_tensor(who, held[i], KILLED_SIZE, &rd))
			return 1;
	}
	char kind[16];
	slab_kind(c, kind, sizeof(kind));
	ht_chan_send(ka->held, 'h');
	if (ht_chan_recv(ka->resume, HT_LONG_DEADLINE_MS) < 0)
		return ht_child_fail(who, "no resume");

	/* The daemon is gone. What this process maps is still its own. */
	int ok_reads = 0;
	cudaError_t cerr = cudaSuccess;
	for (int i = 0; i < KILLED_COUNT; i++)
		ok_reads += reread(hs_tensor_data(held[i]), host, cs, hs_tensor_seq(held[i]),
				   KILLED_SIZE, &cerr);
	/* The next broker calls: a clear "connection lost". */
	int perr = hs_client_ping(c);
	hs_tensor *t = NULL;
	int rerr = hs_subscription_receive(sub, 1000, &t);
	int64_t shape[1] = { 1024 };
	int aerr = hs_tensor_alloc(c, (DLDevice){ kDLCUDA, 0 }, (DLDataType){ kDLUInt, 8, 1 }, 1,
				   shape, NULL, &t);
	for (int i = 0; i < KILLED_COUNT; i++)
		hs_tensor_release(held[i], HS_STREAM_DONE); /* read and synchronised */
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	ht_chan_send(ka->closed, 'x');

	/* A new daemon on the same path: connect again, one tensor through it. */
	int cerr2 = 0, rt = 0;
	if (ht_chan_recv(ka->restarted, HT_LONG_DEADLINE_MS) < 0)
		return ht_child_fail(who, "no restart");
	c = NULL;
	for (int tries = 0; tries < 100 && (cerr2 = hs_client_connect(sock_path, who, &c)); tries++)
		ht_sleep_ms(100);
	if (!cerr2 && cerr == cudaSuccess) {
		/* This process's CUDA context is sound: a device round trip. */
		hs_subscription *s2;
		hs_tensor *w, *r;
		uint64_t seq;
		struct plan p;
		plan_for(1, KILLED_SIZE, &p);
		int64_t sh[2] = { (int64_t)KILLED_SIZE, 1 };
		if (!hs_subscribe(c, "gpu/killed/again", NULL, &s2) &&
		    !hs_tensor_alloc(c, (DLDevice){ kDLCUDA, 0 }, (DLDataType){ kDLUInt, 8, 1 }, 2, sh,
				     NULL, &w)) {
			cudaMemsetAsync(hs_tensor_data(w), p.a, p.bytes, cs);
			cudaMemsetAsync((uint8_t *)hs_tensor_data(w) + p.off, p.b, p.len, cs);
			if (!hs_tensor_emit(w, "gpu/killed/again", cs, &seq) &&
			    !hs_subscription_receive(s2, RECV_MS, &r)) {
				rt = !hs_tensor_wait(r, cs) &&
				     reread(hs_tensor_data(r), host, cs, 1, KILLED_SIZE, &cerr);
				hs_tensor_release(r, cs);
			}
			hs_subscription_close(s2);
		}
	}
	if (!cerr2)
		hs_client_disconnect(c);
	bool vmm = !strcmp(kind, "cuda-vmm");
	/* VMM: the mappings hold the memory, so every held tensor reads
	 * right. Legacy IPC: whatever the driver does, reported. */
	bool ok = (!vmm || ok_reads == KILLED_COUNT) && perr == HS_EPIPE && rerr == HS_EPIPE &&
		  aerr == HS_EPIPE && cerr2 == 0 && (cerr != cudaSuccess || rt);
	printf("RESULT case=daemon-killed ok=%d slab_kind=%s held=%d reread_ok=%d reread_error=%s "
	       "ping=%s receive=%s alloc=%s reconnect=%s roundtrip=%d\n", ok, kind, KILLED_COUNT,
	       ok_reads, cerr == cudaSuccess ? "none" : cudaGetErrorName(cerr), hs_err_name(perr),
	       hs_err_name(rerr), hs_err_name(aerr), hs_err_name(cerr2), rt);
	cudaFreeHost(host);
	return ok ? 0 : 1;
}

static int case_daemon_killed(const char *const *extra)
{
	/* A daemon of its own, whatever HSBROKER_SOCKET says: it is killed. */
	struct ht_daemon d = { 0 };
	if (ht_daemon_start(&d, extra) < 0)
		return 1;
	sock_path = d.sock;
	setenv("HSBROKER_SOCKET", sock_path, 1);
	char topic[64];
	snprintf(topic, sizeof(topic), "gpu/killed/%d", (int)getpid());
	struct ht_chan ready, go, held, resume, closed, restarted;
	ht_chan_open(&ready);
	ht_chan_open(&go);
	ht_chan_open(&held);
	ht_chan_open(&resume);
	ht_chan_open(&closed);
	ht_chan_open(&restarted);
	struct killed_args ka = { .topic = topic, .ready = &ready, .held = &held,
				  .resume = &resume, .closed = &closed, .restarted = &restarted };
	struct producer_args pa = { .topic = topic, .count = KILLED_COUNT, .sizes = KILLED_SIZE,
				    .go = &go };
	pid_t cpid = ht_fork(killed_consumer, &ka);
	pid_t ppid = -1;
	int rc = 1;
	if (ht_chan_recv(&ready, HT_LONG_DEADLINE_MS) < 0)
		goto out;
	ppid = ht_fork(producer, &pa);
	ht_chan_send(&go, 'g');
	if (ht_wait(ppid, HT_LONG_DEADLINE_MS) != 0) {
		fprintf(stderr, "producer failed\n");
		goto out;
	}
	if (ht_chan_recv(&held, HT_LONG_DEADLINE_MS) < 0)
		goto out;
	kill(d.pid, SIGKILL);
	int st;
	waitpid(d.pid, &st, 0);
	d.pid = 0;
	printf("daemon-killed: hsbrokerd SIGKILLed while the consumer holds %d device tensors\n",
	       KILLED_COUNT);
	ht_chan_send(&resume, 'g');
	if (ht_chan_recv(&closed, HT_LONG_DEADLINE_MS) < 0)
		goto out;
	if (ht_daemon_start_at(&d, d.sock, extra) < 0)
		goto out;
	ht_chan_send(&restarted, 'g');
	rc = ht_wait(cpid, HT_LONG_DEADLINE_MS) != 0;
	cpid = -1;
out:
	if (cpid > 0 && ht_wait(cpid, 5000) != 0)
		rc = 1;
	if (d.pid > 0 && ht_daemon_stop(&d) != 0)
		rc = 1;
	return rc;
}

/* The consumer of the pidns case, run in its own PID namespace (and as
 * the reader of another uid by the ro-uid case): no ready fence (its
 * interprocess event cannot be opened from another PID namespace, so
 * the producer synchronises before each emit); reads, checks, releases.
 * Exit 0, 1 (wrong data or a broker failure), 3 (a device tensor could
 * not be had here: the error is printed), 77 (cannot run here). */
static int ns_consumer(const char *topic, uint64_t count, bool other_uid)
{
	const char *who = other_uid ? "reader-of-another-uid" : "consumer-in-pidns";
	hs_client *c;
	hs_subscription *sub = subscriber(who, topic, 8, HS_POLICY_BLOCK, &c);
	if (!c) {
		printf("SKIP: %s (uid %d) cannot reach %s\n", who, (int)getuid(), sock_path);
		return SKIP;
	}
	if (!sub)
		return 1;
	int err = 0;
	CK(cudaSetDevice(0));
	cudaStream_t cs;
	CK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
	uint8_t *host;
	CK(cudaMallocHost((void **)&host, KILLED_SIZE));
	char kind[16];
	int wait_err = 1, writable = -1, bad = 0;
	unsigned long long access = 0;
	bool write_landed = false;
	uint64_t i;
	for (i = 0; i < count; i++) {
		hs_tensor *t;
		err = hs_subscription_receive(sub, 30000, &t);
		if (err)
			break;
		if (wait_err == 1)
			wait_err = hs_tensor_wait(t, cs); /* what the fence does here */
		if (writable < 0) {
			writable = hs_tensor_writable(t);
			const struct hs__cudrv *d = hs__cudrv_get();
			CUmemLocation loc = { CU_MEM_LOCATION_TYPE_DEVICE, 0 };
			if (d)
				d->mem_get_access(&access, &loc,
						  (CUdeviceptr)(uintptr_t)hs_tensor_data(t));
		}
		cudaError_t ce = cudaSuccess;
		bad += !reread(hs_tensor_data(t), host, cs, hs_tensor_seq(t), KILLED_SIZE, &ce);
		if (ce != cudaSuccess)
			return ht_child_fail(who, "reading tensor %" PRIu64 ": %s", i + 1,
					     cudaGetErrorString(ce));
		/* Another uid's slab: a write must not land. Tried on the
		 * last tensor only: a refused write may end this context. */
		const char *write = "not-tried";
		if (other_uid && i + 1 == count) {
			ce = cudaMemcpy(hs_tensor_data(t), host, 4, cudaMemcpyHostToDevice);
			write_landed = ce == cudaSuccess;
			write = write_landed ? "succeeded" : cudaGetErrorName(ce);
			printf("%s: a write into the last tensor: %s\n", who, write);
		}
		hs_tensor_release(t, HS_STREAM_DONE);
	}
	slab_kind(c, kind, sizeof(kind));
	bool vmm = !strcmp(kind, "cuda-vmm");
	/* Both producers' emits said "done" (HS_STREAM_DONE, or by itself for
	 * a producer that cannot open the event): no fence to wait on. */
	int rc = err ? 3 : bad || wait_err != 0 ? 1 : 0;
	if (other_uid)
		/* VMM: read-only for this uid (where the driver takes
		 * CU_MEM_ACCESS_FLAGS_PROT_READ); legacy IPC cannot say.
		 * The producer, of a third uid, could not open the fence
		 * event: its emits synchronised and carry no fence, so
		 * hs_tensor_wait has nothing to open and answers 0. */
		rc = rc ? rc : vmm && (writable != 0 || access != CU_MEM_ACCESS_FLAGS_PROT_READ ||
				       write_landed);
	printf("RESULT case=%s ok=%d slab_kind=%s pid=%d uid=%d tensors=%" PRIu64 " bad=%d "
	       "receive=%s fence_wait=%s writable=%d vmm_access=0x%llx write_landed=%d\n",
	       other_uid ? "ro-uid" : "pidns", rc == 0, kind, (int)getpid(), (int)getuid(), i,
	       bad, hs_err_name(err), hs_err_name(wait_err), writable, access, write_landed);
	fflush(stdout);
	_exit(rc); /* a refused write may have left CUDA unable to tear down */
}

/* A producer for a reader that cannot open the ready fence's event (in
 * another PID namespace than the daemon's): it synchronises its stream
 * and emits with HS_STREAM_DONE, so readers are given no fence. Exit 3
 * when a device tensor cannot be had here (HS_EIPC: the daemon's memory
 * cannot be imported). */
static int synced_producer(void *arg)
{
	const struct producer_args *pa = arg;
	const char *who = "producer";
	if (wait_subscriber(pa->topic) < 0)
		return ht_child_fail(who, "nobody subscribed to %s", pa->topic);
	hs_client *c = connect_or_die(who);
	if (!c)
		return 1;
	CK(cudaSetDevice(0));
	cudaStream_t s;
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	for (uint64_t k = 1; k <= pa->count; k++) {
		struct plan p;
		plan_for(k, KILLED_SIZE, &p);
		hs_tensor *t;
		int err = hs_tensor_alloc(c, (DLDevice){ kDLCUDA, 0 }, p.dtype, 2, p.shape, NULL, &t);
		if (err == HS_EIPC) {
			printf("producer: alloc: %s (%s)\n", hs_err_name(err), hs_strerror(err));
			return 3;
		}
		if (err)
			return ht_child_fail(who, "alloc: %s", hs_strerror(err));
		CK(cudaMemsetAsync(hs_tensor_data(t), p.a, p.bytes, s));
		CK(cudaMemsetAsync((uint8_t *)hs_tensor_data(t) + p.off, p.b, p.len, s));
		CK(cudaStreamSynchronize(s));
		err = hs_tensor_emit(t, pa->topic, HS_STREAM_DONE, NULL);
		if (err)
			return ht_child_fail(who, "emit: %s", hs_strerror(err));
	}
	hs_client_disconnect(c);
	return 0;
}

/* Copies file from into dir (mode 0755); 0 or -1. */
static int copy_into(const char *from, const char *dir, char *to, size_t len)
{
	const char *base = strrchr(from, '/');
	snprintf(to, len, "%s/%s", dir, base ? base + 1 : from);
	FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
	char buf[65536];
	size_t n;
	int rc = in && out ? 0 : -1;
	while (!rc && (n = fread(buf, 1, sizeof(buf), in)) > 0)
		rc = fwrite(buf, 1, n, out) == n ? 0 : -1;
	if (in)
		fclose(in);
	if (out && fclose(out) != 0)
		rc = -1;
	return rc ? rc : chmod(to, 0755);
}

/* The daemon in a PID namespace of its own: unshare's child. When unshare
 * is killed its child gets SIGTERM (--kill-child) and exits cleanly,
 * removing its socket. */
#define NS_WRAPPER "unshare --pid --fork --mount-proc --kill-child=SIGTERM"

static void ns_daemon_stop(struct ht_daemon *d)
{
	kill(d->pid, SIGKILL);
	ht_wait(d->pid, 5000);
	d->pid = -1;
	for (int i = 0; i < 100 && access(d->sock, F_OK) == 0; i++)
		ht_sleep_ms(50);
}

/* pidns: containers, in effect: the daemon in a PID namespace of its own,
 * the consumer in another (unshare), the producer in this one. ro-uid:
 * the consumer as uid 65534 (setpriv), on the daemon of HSBROKER_SOCKET.
 * Both watched by deadlines: a hang is a failure. */
static int case_isolated(bool other_uid, uint64_t count, const char *const *extra)
{
	const char *cname = other_uid ? "ro-uid" : "pidns";
	if (geteuid() != 0) {
		printf("SKIP: %s needs root (to %s)\n", cname,
		       other_uid ? "switch uid" : "make a PID namespace");
		return SKIP;
	}
	if (other_uid && getenv("CUDA_MPS_PIPE_DIRECTORY")) {
		printf("SKIP: %s under MPS: an MPS server serves one uid at a time\n", cname);
		return SKIP;
	}
	char exe[PATH_MAX], lib[PATH_MAX], dir[] = "/tmp/hs-gpu-uid-XXXXXX";
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 1;
	exe[n] = 0;
	char env_lib[PATH_MAX + 32] = "";
	if (other_uid) {
		/* uid 65534 may not reach the build tree: a copy of this
		 * program and of libhsclient in a directory it can read. */
		Dl_info di;
		char to[PATH_MAX];
		if (!mkdtemp(dir) || chmod(dir, 0755) < 0 ||
		    !dladdr((void *)hs_client_connect, &di) || !di.dli_fname ||
		    copy_into(di.dli_fname, dir, lib, sizeof(lib)) < 0 ||
		    copy_into(exe, dir, to, sizeof(to)) < 0) {
			printf("SKIP: %s: cannot copy the programs into %s\n", cname, dir);
			return SKIP;
		}
		snprintf(exe, sizeof(exe), "%s", to);
		snprintf(env_lib, sizeof(env_lib), "LD_LIBRARY_PATH=%s", dir);
	}
	char topic[64], cnt[32];
	snprintf(topic, sizeof(topic), "gpu/%s/%d", cname, (int)getpid());
	snprintf(cnt, sizeof(cnt), "%" PRIu64, count);
	const char *role = other_uid ? "role-ro-consumer" : "role-ns-consumer";
	char *ns_argv[] = { "unshare", "--pid", "--fork", "--mount-proc", "--kill-child", exe,
			    (char *)role, "--topic", topic, "--count", cnt, NULL };
	char *uid_argv[] = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", exe,
			     (char *)role, "--topic", topic, "--count", cnt, NULL };
	/* The ro-uid producer: a third uid, so the reader's slabs are
	 * another uid's and neither can open the daemon's fence events. */
	char *puid_argv[] = { "setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", exe,
			      "role-uid-producer", "--topic", topic, "--count", cnt, NULL };
	char **argv = other_uid ? uid_argv : ns_argv;
	/* ht_spawn wants a path: where the tool is */
	char tool[PATH_MAX] = "";
	const char *dirs[] = { "/usr/bin", "/bin", "/usr/sbin", "/sbin" };
	for (size_t i = 0; i < 4 && !tool[0]; i++) {
		snprintf(tool, sizeof(tool), "%s/%s", dirs[i], argv[0]);
		if (access(tool, X_OK) != 0)
			tool[0] = 0;
	}
	if (!tool[0]) {
		printf("SKIP: %s: %s not found\n", cname, argv[0]);
		return SKIP;
	}
	argv[0] = tool;
	puid_argv[0] = tool;
	struct ht_daemon nsd = { .pid = -1 };
	if (!other_uid) {
		setenv("HS_TEST_DAEMON_WRAPPER", NS_WRAPPER, 1);
		int r = ht_daemon_start(&nsd, extra);
		unsetenv("HS_TEST_DAEMON_WRAPPER");
		if (r < 0) {
			printf("%s: hsbrokerd did not start under %s\n", cname, NS_WRAPPER);
			return 1;
		}
		sock_path = nsd.sock;
		setenv("HSBROKER_SOCKET", sock_path, 1);
	}
	const char *env[] = { env_lib[0] ? env_lib : NULL, NULL };
	pid_t cpid = ht_spawn(argv, env, -1, -1);
	struct producer_args pa = { .topic = topic, .count = count };
	pid_t ppid = other_uid ? ht_spawn(puid_argv, env, -1, -1) : ht_fork(synced_producer, &pa);
	/* The producer first: when it cannot have a device tensor, the
	 * consumer waits for nothing and is stopped. */
	int prc = ht_wait(ppid, 45000);
	int crc = prc == 0 ? ht_wait(cpid, 45000) : (kill(cpid, SIGKILL), ht_wait(cpid, 5000), -9);
	if (other_uid) {
		char path[PATH_MAX + 8];
		snprintf(path, sizeof(path), "%s", exe);
		unlink(path);
		unlink(lib);
		rmdir(dir);
	}
	/* Which mode ran: VMM must work; legacy IPC must fail clearly
	 * (exit 3 with the error, not a hang) across PID namespaces. */
	hs_client *c = connect_or_die("gpu-test");
	char kind[16] = "";
	if (c) {
		slab_kind(c, kind, sizeof(kind));
		hs_client_disconnect(c);
	}
	if (nsd.pid > 0)
		ns_daemon_stop(&nsd);
	if (crc == SKIP)
		return SKIP;
	bool vmm = !strcmp(kind, "cuda-vmm");
	/* VMM must work. Legacy IPC either works or says why (exit 3:
	 * HS_EIPC from the producer's alloc or the consumer's receive):
	 * never a hang (-1), never wrong data (1). */
	bool ok = (prc == 0 && crc == 0) ||
		  (!vmm && !other_uid && (prc == 3 || (prc == 0 && crc == 3)));
	printf("RESULT case=%s-check ok=%d slab_kind=%s consumer_exit=%d producer_exit=%d%s%s\n",
	       cname, ok, kind, crc, prc, prc == -1 || crc == -1 ? " (a hang: killed)" : "",
	       prc == 3 || crc == 3 ? " (a device tensor could not be had: HS_EIPC)" : "");
	return ok ? 0 : 1;
}

#endif /* HS_HAVE_CUDA */

/* Where no GPU is (or CUDA is not built in): a device alloc fails with
 * HS_ENODEV (HS_ENOCUDA without CUDA) and host tensors still work. */
static int case_nogpu(void)
{
	hs_client *c = connect_or_die("gpu-test");
	if (!c)
		return 1;
	int64_t shape[1] = { 1024 };
	hs_tensor *t = NULL;
	int want = HS_HAVE_CUDA ? HS_ENODEV : HS_ENOCUDA;
	int err = hs_tensor_alloc(c, (DLDevice){ kDLCUDA, 0 }, (DLDataType){ kDLFloat, 32, 1 }, 1,
				  shape, NULL, &t);
	int err99 = hs_tensor_alloc(c, (DLDevice){ kDLCUDA, 99 }, (DLDataType){ kDLFloat, 32, 1 },
				    1, shape, NULL, &t);
	int herr = hs_tensor_alloc(c, (DLDevice){ kDLCPU, 0 }, (DLDataType){ kDLFloat, 32, 1 }, 1,
				   shape, NULL, &t);
	int werr = herr ? herr : hs_tensor_wait(t, NULL);
	if (!herr)
		hs_tensor_release(t, NULL);
	hs_client_disconnect(c);
	bool ok = err == want && err99 == want && herr == 0 && werr == 0;
	printf("RESULT case=nogpu ok=%d cuda_alloc=%s (%s) cuda99_alloc=%s host_alloc=%s "
	       "host_wait=%d\n", ok, hs_err_name(err), hs_strerror(err), hs_err_name(err99),
	       hs_err_name(herr), werr);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	ht_init();
	if (argc < 2) {
		fprintf(stderr, "usage: hs-gpu-test CASE [--count N]\n");
		return 2;
	}
	const char *cname = argv[1];
	uint64_t count = 0;
	const char *topic = "gpu/role";
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--count"))
			count = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--topic"))
			topic = argv[i + 1];
	}

	if (!strcmp(cname, "nogpu")) {
#if HS_HAVE_CUDA
		if (have_gpu()) {
			printf("SKIP: a GPU is here; this case is for machines without one\n");
			return SKIP;
		}
#endif
		if (daemon_up(NULL) < 0)
			return 1;
		int rc = case_nogpu();
		return daemon_down() < 0 ? 1 : rc;
	}
#if !HS_HAVE_CUDA
	(void)count;
	(void)topic;
	printf("SKIP: built without CUDA (-Dcuda=disabled or no toolkit)\n");
	return SKIP;
#else
	if (!have_gpu())
		return SKIP;
	if (!strncmp(cname, "role-", 5)) {
		/* No daemon of our own: the other role must find the same. */
		const char *sock = getenv("HSBROKER_SOCKET");
		if (!sock || !*sock) {
			fprintf(stderr, "%s needs HSBROKER_SOCKET\n", cname);
			return 2;
		}
		sock_path = sock;
		if (!strcmp(cname, "role-ns-consumer") || !strcmp(cname, "role-ro-consumer"))
			return ns_consumer(topic, count ? count : 50, cname[5] == 'r');
		if (!strcmp(cname, "role-uid-producer")) {
			/* Another uid than the daemon's: it cannot open the
			 * fence events, so its emits synchronise instead. */
			if (wait_subscriber(topic) < 0)
				return 1;
			struct producer_args pa = { .topic = topic, .count = count ? count : 50,
						    .sizes = KILLED_SIZE };
			return producer(&pa);
		}
		return run_role(cname, topic, count ? count : 300);
	}
	static const char *const extra[] = { "--cuda-slab-size", "64M", NULL };
	static const char *const reuse_extra[] = { "--cuda-slab-size", "64M", "--cuda-cap", "128M",
						   NULL };
	if (!strcmp(cname, "daemon-killed"))
		return case_daemon_killed(extra);
	bool reuse = !strncmp(cname, "reuse", 5) || !strncmp(cname, "idiom-c-", 8);
	if (daemon_up(reuse ? reuse_extra : extra) < 0)
		return 1;
	int rc;
	if (!strcmp(cname, "pipeline"))
		rc = run_pipeline(cname, count ? count : 10000, 1, 0);
	else if (!strcmp(cname, "forward"))
		rc = run_pipeline_ex(cname, count ? count : 2000, 1, 0, true, 0, 0);
	else if (!strcmp(cname, "cross-gpu")) {
		if (!have_two_gpus()) {
			printf("SKIP: cross-gpu needs two GPUs\n");
			rc = SKIP;
		} else {
			/* Tensors on cuda:1, read by a consumer on cuda:0, and the
			 * other way round. */
			rc = run_pipeline_ex("cross-gpu-1to0", count ? count : 1000, 1, 0, false, 1, 0) |
			     run_pipeline_ex("cross-gpu-0to1", count ? count : 1000, 1, 0, false, 0, 1);
		}
	} else if (!strcmp(cname, "fanout"))
		rc = run_pipeline(cname, count ? count : 2000, 3, 0);
	else if (!strcmp(cname, "mapcache"))
		rc = case_mapcache(count ? count : 600);
	else if (!strcmp(cname, "kill-consumer"))
		rc = case_kill_consumer(count ? count : 400);
	else if (!strcmp(cname, "kill-producer"))
		rc = case_kill_producer();
	else if (!strcmp(cname, "reuse"))
		rc = case_reuse(REUSE_STREAM, count ? (int)count : 10);
	else if (!strcmp(cname, "reuse-unsafe"))
		rc = case_reuse(REUSE_DONE, count ? (int)count : 10);
	else if (!strcmp(cname, "idiom-c-default"))
		rc = case_reuse(REUSE_LEGACY, count ? (int)count : 10);
	else if (!strcmp(cname, "idiom-c-dlpack"))
		rc = case_reuse(REUSE_DLPACK, count ? (int)count : 10);
	else if (!strcmp(cname, "pidns"))
		rc = case_isolated(false, count ? count : 50, extra);
	else if (!strcmp(cname, "ro-uid"))
		rc = case_isolated(true, count ? count : 50, extra);
	else {
		fprintf(stderr, "unknown case '%s'\n", cname);
		rc = 2;
	}
	if (daemon_down() < 0 && rc == 0)
		rc = 1;
	return rc;
#endif
}
