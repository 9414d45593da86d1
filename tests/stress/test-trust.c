/* The trust model (docs/security.md) with clients of two uids, root and
 * nobody, on the real daemon:
 *  - readonly_fd: a raw client of another uid subscribed to root's topic
 *    gets the slab of the tensor it was given, and only that one, as a
 *    read-only fd: it cannot map it writable, reopen it read-write through
 *    /proc, punch a hole in it, truncate it or change its mode; its
 *    read-only mapping faults on a write; root's copy stays intact;
 *  - libclient_readonly: the same through libhsclient: hs_tensor_writable
 *    is 0 for the received tensor and 1 for the owner's, the reader maps
 *    one slab (the one it was given), forwards the tensor (root gets it
 *    back intact), and its own fresh blocks are all zeros although root
 *    freed blocks full of its bytes just before. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "itest.h"
#include "roles.h"
#include "twouid.h"
#include "wire.h"

#define ELEMS 12288 /* 48 KiB: one tensor a 64 KiB slab */
#define CONFIG "[pool.cpu]\nslab_size = 65536\n"

/* In a child: whether writing one byte at p kills a grandchild with
 * SIGSEGV (the sanitizers' handler is put back to the default first). */
static bool write_faults(volatile uint8_t *p)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no_core);
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		p[0] = 0x5a;
		_exit(0);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return false;
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

/* ---- the owner: root, through libhsclient ---- */

struct owner {
	const char *sock;
	const char *topic;     /* it emits tensor k=2 here */
	const char *back;      /* and subscribes here, or to topic when NULL */
	struct ht_chan ready;  /* the reader is subscribed */
	struct ht_chan done;   /* the reader is done */
};

static int owner_role(void *arg)
{
	struct owner *o = arg;
	hs_client *c;
	if (ht_connect(o->sock, "trust-owner", &c) < 0)
		return 1;
	/* Its own copy comes back on a subscription of its own: the same
	 * uid, so writable. */
	hs_subscription *sub;
	int rc = hs_subscribe(c, o->back ? o->back : o->topic, NULL, &sub);
	if (rc < 0)
		return ht_child_fail("owner", "subscribe: %s", hs_strerror(rc));
	/* Three slabs; blocks 1 and 3 go back to the pool full of bytes. */
	hs_tensor *t[3];
	for (int k = 1; k <= 3; k++) {
		rc = ht_tensor_make(c, (uint64_t)k, ELEMS, &t[k - 1]);
		if (rc < 0)
			return ht_child_fail("owner", "alloc %d: %s", k, hs_strerror(rc));
	}
	hs_tensor_release(t[0], NULL);
	hs_tensor_release(t[2], NULL);
	if ((rc = hs_client_ping(c)) < 0) /* the releases are handled */
		return ht_child_fail("owner", "ping: %s", hs_strerror(rc));
	if (ht_chan_recv(&o->ready, HT_DEADLINE_MS) < 0)
		return ht_child_fail("owner", "the reader never subscribed");
	uint64_t seq;
	if ((rc = hs_tensor_emit(t[1], o->topic, NULL, &seq)) < 0)
		return ht_child_fail("owner", "emit: %s", hs_strerror(rc));
	hs_tensor *mine;
	if ((rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &mine)) < 0)
		return ht_child_fail("owner", "receive: %s", hs_strerror(rc));
	if (!hs_tensor_writable(mine))
		return ht_child_fail("owner", "its own uid's tensor is not writable");
	if (ht_chan_recv(&o->done, HT_DEADLINE_MS) < 0)
		return ht_child_fail("owner", "the reader never finished");
	uint64_t bad = ht_tensor_check(mine, 2, ELEMS);
	if (bad)
		return ht_child_fail("owner", "%" PRIu64 " elements changed by the reader", bad);
	hs_tensor_release(mine, NULL);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return 0;
}

/* ---- a raw client of another uid ---- */

struct raw {
	const char *sock;
	struct owner *o;
	int sk;
	uint8_t buf[HS__WIRE_MAX_MSG];
};

/* The next message, with its fds (*fd: the first, or -1). NULL on error. */
static Hs__Message *raw_recv(struct raw *r, int *fd)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		struct pollfd p = { .fd = r->sk, .events = POLLIN };
		int left = (int)(end - ht_now_ms());
		if (left <= 0 || poll(&p, 1, left) == 0) {
			ht_child_fail("raw", "nothing from the daemon");
			return NULL;
		}
		int fds[HS__WIRE_MAX_FDS], nfds = 0;
		int n = hs__wire_recv(r->sk, r->buf, fds, &nfds);
		if (n == -EAGAIN || n == -EINTR)
			continue;
		if (n < 0) {
			ht_child_fail("raw", "recv: %s", strerror(-n));
			return NULL;
		}
		Hs__Message *m;
		if (hs__wire_decode(r->buf, (size_t)n, &m) < 0) {
			hs__wire_close_fds(fds, nfds);
			ht_child_fail("raw", "undecodable message");
			return NULL;
		}
		*fd = nfds > 0 ? fds[0] : -1;
		for (int i = 1; i < nfds; i++)
			close(fds[i]);
		return m;
	}
}

static int raw_connect(struct raw *r)
{
	r->sk = tu_raw_open(r->sock, true, HT_DEADLINE_MS);
	return r->sk < 0 ? ht_child_fail("raw", "connect and hello failed") : 0;
}

/* Every way the read-only fd of a slab could be turned into a write. */
static int attack_fd(int fd, uint64_t size, const Hs__Block *blk)
{
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		return ht_child_fail("raw", "another uid's slab came with a writable fd");
	void *w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (w != MAP_FAILED)
		return ht_child_fail("raw", "mapped another uid's slab writable");
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size) == 0)
		return ht_child_fail("raw", "punched a hole in another uid's slab");
	if (ftruncate(fd, 0) == 0)
		return ht_child_fail("raw", "truncated another uid's slab");
	if (fchmod(fd, 0666) == 0)
		return ht_child_fail("raw", "changed the mode of another uid's slab");
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rw = open(path, O_RDWR | O_CLOEXEC);
	if (rw >= 0) {
		close(rw);
		return ht_child_fail("raw", "reopened another uid's slab read-write via %s", path);
	}
	uint8_t *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return ht_child_fail("raw", "cannot map the slab it was given for reading: %s",
				     strerror(errno));
	int ret = 0;
	if (blk->offset > size || blk->length > size - blk->offset ||
	    blk->length < (uint64_t)ELEMS * 4) {
		ret = ht_child_fail("raw", "the block lies outside its slab");
		goto out;
	}
	const uint32_t *data = (const uint32_t *)(p + blk->offset);
	for (uint32_t i = 0; i < ELEMS; i++) {
		if (data[i] != ht_pattern(2, i)) {
			ret = ht_child_fail("raw", "element %u differs from what root wrote", i);
			goto out;
		}
	}
	if (mprotect(p, size, PROT_READ | PROT_WRITE) == 0)
		ret = ht_child_fail("raw", "made the read-only mapping writable");
	else if (madvise(p, size, MADV_REMOVE) == 0)
		ret = ht_child_fail("raw", "freed another uid's pages with MADV_REMOVE");
	else if (!write_faults(p + blk->offset))
		ret = ht_child_fail("raw", "a write into the read-only mapping did not fault");
out:
	munmap(p, size);
	return ret;
}

static int raw_reader(void *arg)
{
	struct raw *r = arg;
	if (tu_become(TU_OTHER_UID, TU_OTHER_GID) < 0 || raw_connect(r))
		return 1;
	int rc = tu_raw_subscribe(r->sk, 2, "trust/ro", 1, HS__POLICY__POLICY_DROP_NEWEST, 1);
	if (rc < 0)
		return ht_child_fail("raw", "subscribe: %s", strerror(-rc));
	/* Collect announcements until the delivery. */
	uint64_t slab_id = 0, slab_size = 0;
	int slab_fd = -1, nslabs = 0, ret = 0;
	bool told = false;
	for (;;) {
		int fd;
		Hs__Message *in = raw_recv(r, &fd);
		if (!in)
			return 1;
		if (in->body_case == HS__MESSAGE__BODY_SUBSCRIBE_REPLY && !told) {
			ht_chan_send(&r->o->ready, 'S');
			told = true;
		} else if (in->body_case == HS__MESSAGE__BODY_SLAB) {
			nslabs++;
			if (slab_fd >= 0)
				close(slab_fd);
			slab_fd = fd;
			fd = -1;
			slab_id = in->slab->slab_id;
			slab_size = in->slab->size;
		} else if (in->body_case == HS__MESSAGE__BODY_DELIVER) {
			const Hs__TensorRef *ref = in->deliver->tensor;
			if (nslabs != 1 || !ref || !ref->block || ref->block->slab_id != slab_id ||
			    slab_fd < 0)
				ret = ht_child_fail("raw", "%d slabs announced, not just the one given",
						    nslabs);
			else
				ret = attack_fd(slab_fd, slab_size, ref->block);
			hs__wire_free(in);
			break;
		}
		if (fd >= 0)
			close(fd);
		hs__wire_free(in);
	}
	if (slab_fd >= 0)
		close(slab_fd);
	close(r->sk); /* the daemon releases what it delivered */
	ht_chan_send(&r->o->done, 'D');
	return ret;
}

START_TEST(test_readonly_fd)
{
	TU_NEED_ROOT();
	struct ht_daemon d;
	char log[300];
	TU_BEGIN(&d, CONFIG, log);
	struct owner o = { .sock = d.sock, .topic = "trust/ro" };
	ht_chan_open(&o.ready);
	ht_chan_open(&o.done);
	struct raw *r = calloc(1, sizeof(*r));
	ck_assert_ptr_nonnull(r);
	r->sock = d.sock;
	r->o = &o;
	pid_t reader = ht_fork(raw_reader, r);
	pid_t owner = ht_fork(owner_role, &o);
	ck_assert_int_eq(ht_wait(reader, HT_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(owner, HT_DEADLINE_MS), 0);
	free(r);
	ht_chan_close(&o.ready);
	ht_chan_close(&o.done);
	HT_END(&d);
}
END_TEST

/* ---- the same through libhsclient ---- */

static int lib_reader(void *arg)
{
	struct owner *o = arg;
	if (tu_become(TU_OTHER_UID, TU_OTHER_GID) < 0)
		return 1;
	hs_client *c;
	if (ht_connect(o->sock, "trust-reader", &c) < 0)
		return 1;
	hs_subscription *sub;
	int rc = hs_subscribe(c, o->topic, NULL, &sub);
	if (rc < 0)
		return ht_child_fail("reader", "subscribe: %s", hs_strerror(rc));
	ht_chan_send(&o->ready, 'S');
	hs_tensor *t;
	if ((rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &t)) < 0)
		return ht_child_fail("reader", "receive: %s", hs_strerror(rc));
	hs_client_stats st;
	hs_client_get_stats(c, &st);
	if (st.slabs_mapped != 1)
		return ht_child_fail("reader", "%" PRIu64 " slabs mapped; it was given one",
				     st.slabs_mapped);
	if (hs_tensor_writable(t))
		return ht_child_fail("reader", "another uid's host tensor is writable");
	if (ht_tensor_check(t, 2, ELEMS))
		return ht_child_fail("reader", "the received tensor differs from what root wrote");
	if (!write_faults(hs_tensor_data(t)))
		return ht_child_fail("reader", "a write into the received tensor did not fault");
	/* Forwarding a read-only tensor is fine. */
	uint64_t seq;
	if ((rc = hs_tensor_emit(t, o->back, NULL, &seq)) < 0)
		return ht_child_fail("reader", "forward: %s", hs_strerror(rc));
	/* Fresh blocks of its own: writable, and nothing of root's in them. */
	hs_tensor *own[3];
	for (int i = 0; i < 3; i++) {
		DLDevice cpu = { kDLCPU, 0 };
		DLDataType u32 = { kDLUInt, 32, 1 };
		int64_t shape[1] = { ELEMS };
		if ((rc = hs_tensor_alloc(c, cpu, u32, 1, shape, NULL, &own[i])) < 0)
			return ht_child_fail("reader", "alloc: %s", hs_strerror(rc));
		if (!hs_tensor_writable(own[i]))
			return ht_child_fail("reader", "its own tensor is not writable");
		const uint8_t *p = hs_tensor_data(own[i]);
		for (uint32_t b = 0; b < ELEMS * 4; b++)
			if (p[b])
				return ht_child_fail("reader", "a fresh block holds byte %u = %#x",
						     b, p[b]);
		memset(hs_tensor_data(own[i]), 0xee, ELEMS * 4);
	}
	for (int i = 0; i < 3; i++)
		hs_tensor_release(own[i], NULL);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	ht_chan_send(&o->done, 'D');
	return 0;
}

START_TEST(test_libclient_readonly)
{
	TU_NEED_ROOT();
	struct ht_daemon d;
	char log[300];
	TU_BEGIN(&d, CONFIG, log);
	struct owner o = { .sock = d.sock, .topic = "trust/lib", .back = "trust/fwd" };
	ht_chan_open(&o.ready);
	ht_chan_open(&o.done);
	pid_t reader = ht_fork(lib_reader, &o);
	pid_t owner = ht_fork(owner_role, &o);
	ck_assert_int_eq(ht_wait(reader, HT_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(owner, HT_DEADLINE_MS), 0);
	ht_chan_close(&o.ready);
	ht_chan_close(&o.done);
	HT_END(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("trust");
	ht_case(s, "readonly_fd", test_readonly_fd);
	ht_case(s, "libclient_readonly", test_libclient_readonly);
	return ht_main(s);
}
