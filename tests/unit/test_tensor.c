/* The tensor table over a real host pool: ids, generations, stale ids,
 * reference counting back to the pool, and the pool's slabs, partitioned
 * by uid, with their read-only fds. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "pool.h"
#include "range.h"
#include "tensor.h"
#include "unit.h"

static uint64_t next_slab;
static struct hsd_pool pool;
static struct hsd_tensor_table tt;
static Hs__Device dev;
static Hs__DType dt;
static Hs__Meta meta;
static int64_t shape[2];

static void setup(void)
{
	next_slab = 0;
	hsd_pool_init(&pool, (DLDevice){ kDLCPU, 0 }, &hsd_slab_host_ops, 1 << 20, 0, &next_slab);
	hsd_tensor_table_init(&tt, 0);
	hs__device__init(&dev);
	dev.type = kDLCPU;
	hs__dtype__init(&dt);
	dt.code = kDLFloat;
	dt.bits = 32;
	dt.lanes = 1;
	hs__meta__init(&meta);
	meta.device = &dev;
	meta.dtype = &dt;
	shape[0] = 16;
	shape[1] = 16;
	meta.n_shape = 2;
	meta.shape = shape;
}

static void teardown(void)
{
	hsd_tensor_table_fini(&tt);
	hsd_pool_fini(&pool);
}

START_TEST(test_create_lookup)
{
	struct hsd_tensor *t, *u;
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), 0);
	ck_assert_uint_eq(t->refs, 1);
	ck_assert_uint_eq(t->nbytes, 16 * 16 * 4);
	ck_assert_uint_eq(t->id >> 32, 1);  /* first generation */
	ck_assert_uint_ne(t->id, 0);
	ck_assert_uint_eq(t->block.offset % 256, 0);
	ck_assert_int_eq(hsd_tensor_lookup(&tt, t->id, &u), 0);
	ck_assert_ptr_eq(t, u);
	ck_assert_uint_eq(pool.nslabs, 1);
	ck_assert_uint_eq(pool.total, 1 << 20);
	ck_assert_uint_eq(pool.used, 1024);
	ck_assert_int_eq(tt.live, 1);

	/* the slab is a sealed memfd of the pool's slab size */
	int fd = t->block.slab->fd;
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_END), 1 << 20);
	int seals = fcntl(fd, F_GET_SEALS);
	ck_assert(seals & F_SEAL_SHRINK);
	ck_assert(seals & F_SEAL_GROW);
	ck_assert(seals & F_SEAL_SEAL);
	ck_assert_int_lt(ftruncate(fd, 0), 0);

	/* unknown ids */
	ck_assert_int_eq(hsd_tensor_lookup(&tt, 0, &u), HS_ENOENT);
	ck_assert_int_eq(hsd_tensor_lookup(&tt, (1ull << 32) | 999, &u), HS_ENOENT);
	ck_assert_int_eq(hsd_tensor_lookup(&tt, (7ull << 32) | (uint32_t)t->id, &u), HS_ENOENT);
	hsd_tensor_unref(&tt, t);
}
END_TEST

START_TEST(test_generations_stale)
{
	struct hsd_tensor *t, *u;
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), 0);
	uint64_t old = t->id;
	hsd_tensor_unref(&tt, t);
	ck_assert_int_eq(hsd_tensor_lookup(&tt, old, &u), HS_ESTALE);
	ck_assert_int_eq(tt.live, 0);

	/* The slot comes back with the next generation: the old id stays stale. */
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), 0);
	ck_assert_uint_eq((uint32_t)t->id, (uint32_t)old);
	ck_assert_uint_eq(t->id >> 32, (old >> 32) + 1);
	ck_assert_int_eq(hsd_tensor_lookup(&tt, old, &u), HS_ESTALE);
	ck_assert_int_eq(hsd_tensor_lookup(&tt, t->id, &u), 0);
	hsd_tensor_unref(&tt, t);
}
END_TEST

START_TEST(test_refcount_to_pool)
{
	struct hsd_tensor *t;
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), 0);
	hsd_tensor_ref(t);
	hsd_tensor_ref(t);
	ck_assert_uint_eq(t->refs, 3);
	hsd_tensor_unref(&tt, t);
	hsd_tensor_unref(&tt, t);
	ck_assert_uint_eq(pool.used, 1024);
	ck_assert_uint_eq(pool.blocks, 1);
	hsd_tensor_unref(&tt, t);
	ck_assert_uint_eq(pool.used, 0);
	ck_assert_uint_eq(pool.blocks, 0);
	ck_assert_uint_eq(hsd_pool_largest_free(&pool), 1 << 20);
}
END_TEST

START_TEST(test_many_and_back)
{
	enum { N = 1000 };
	struct hsd_tensor *ts[N];
	shape[0] = 1;
	shape[1] = 100; /* 400 bytes -> 512 */
	bool unique = true; /* one assertion: each costs a pipe write under CK_FORK */
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &ts[i]), 0);
		for (int j = 0; j < i; j++)
			unique &= ts[i]->id != ts[j]->id;
	}
	ck_assert(unique);
	ck_assert_uint_eq(pool.used, N * 512ull);
	for (int i = 0; i < N; i += 2)
		hsd_tensor_unref(&tt, ts[i]);
	for (int i = 1; i < N; i += 2)
		hsd_tensor_unref(&tt, ts[i]);
	ck_assert_uint_eq(pool.used, 0);
	ck_assert_int_eq(tt.live, 0);
	struct hsd_slab *s;
	list_for_each(s, &pool.slabs, link)
		ck_assert_uint_eq(hsd_range_free_blocks(s->range), 1);
}
END_TEST

START_TEST(test_bad_meta_changes_nothing)
{
	struct hsd_tensor *t;
	shape[1] = -1;
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), HS_ESHAPE);
	shape[1] = 4;
	meta.byte_offset = 256;
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), HS_EINVAL);
	meta.byte_offset = 0;
	dev.type = kDLCUDA;
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), HS_ENODEV);
	ck_assert_int_eq(tt.live, 0);
	ck_assert_uint_eq(pool.nslabs, 0);
}
END_TEST

START_TEST(test_dedicated_and_cap)
{
	/* larger than the slab size: a dedicated slab rounded to 2 MiB,
	 * freed when its tensor goes (no session has it announced). */
	struct hsd_tensor *t;
	shape[0] = 1024;
	shape[1] = 1024; /* 4 MiB + change? exactly 4 MiB */
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), 0);
	ck_assert(t->block.slab->dedicated);
	ck_assert_uint_eq(t->block.slab->size, 4u << 20);
	ck_assert_uint_eq(pool.total, 4u << 20);
	hsd_tensor_unref(&tt, t);
	ck_assert_uint_eq(pool.nslabs, 0);
	ck_assert_uint_eq(pool.total, 0);

	/* capped pool: the cap is reported as HS_ENOSPC, not a crash */
	struct hsd_pool capped;
	hsd_pool_init(&capped, (DLDevice){ kDLCPU, 0 }, &hsd_slab_host_ops, 1 << 20, 2 << 20, &next_slab);
	struct hsd_pool_block b[3];
	ck_assert_int_eq(hsd_pool_alloc(&capped, 1 << 20, 0, &b[0]), 0);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 1 << 20, 0, &b[1]), 0);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 1, 0, &b[2]), HS_ENOSPC);
	ck_assert_uint_ne(b[0].slab->id, b[1].slab->id);
	hsd_pool_release(&capped, &b[0]);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 1, 0, &b[2]), 0);
	hsd_pool_release(&capped, &b[1]);
	hsd_pool_release(&capped, &b[2]);
	ck_assert_uint_eq(capped.used, 0);
	hsd_pool_fini(&capped);
}
END_TEST

START_TEST(test_uid_partition)
{
	/* two uids never share a slab, even with room left in the other's */
	struct hsd_pool_block a, b, c;
	ck_assert_int_eq(hsd_pool_alloc(&pool, 4096, 1000, &a), 0);
	ck_assert_int_eq(hsd_pool_alloc(&pool, 4096, 2000, &b), 0);
	ck_assert_uint_ne(a.slab->id, b.slab->id);
	ck_assert_uint_eq(a.slab->uid, 1000);
	ck_assert_uint_eq(b.slab->uid, 2000);
	uint64_t a_slab = a.slab->id;
	hsd_pool_release(&pool, &a);
	ck_assert_int_eq(hsd_pool_alloc(&pool, 4096, 2000, &c), 0);
	ck_assert_uint_ne(c.slab->id, a_slab); /* a's block is not reused for 2000 */
	hsd_pool_release(&pool, &b);
	hsd_pool_release(&pool, &c);

	/* at the cap, slabs nobody maps or uses make room for another uid */
	struct hsd_pool capped;
	hsd_pool_init(&capped, (DLDevice){ kDLCPU, 0 }, &hsd_slab_host_ops, 1 << 20, 2 << 20, &next_slab);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 4096, 1, &a), 0);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 4096, 2, &b), 0);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 4096, 3, &c), HS_ENOSPC);
	a.slab->announced = 1; /* mapped by a session: not reclaimed */
	hsd_pool_release(&capped, &a);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 4096, 3, &c), HS_ENOSPC);
	hsd_pool_slab_unannounce(&capped, a.slab);
	ck_assert_int_eq(hsd_pool_alloc(&capped, 4096, 3, &c), 0);
	ck_assert_uint_eq(c.slab->uid, 3);
	ck_assert_uint_eq(capped.nslabs, 2);
	hsd_pool_release(&capped, &b);
	hsd_pool_release(&capped, &c);
	hsd_pool_fini(&capped);
}
END_TEST

START_TEST(test_host_slab_fds)
{
	struct hsd_pool_block a;
	ck_assert_int_eq(hsd_pool_alloc(&pool, 4096, 1000, &a), 0);
	struct hsd_slab *s = a.slab;
	struct stat st;
	ck_assert_int_eq(fstat(s->fd, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(fcntl(s->fd, F_GETFL) & O_ACCMODE, O_RDWR);
	ck_assert_int_eq(fcntl(s->ro_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	int seals = fcntl(s->ro_fd, F_GET_SEALS);
	ck_assert_int_eq(seals, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	/* the read-only fd maps only for reading, and punches no hole */
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s->ro_fd, 0);
	ck_assert(p == MAP_FAILED && errno == EACCES);
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, s->ro_fd, 0);
	ck_assert(p != MAP_FAILED);
	ck_assert_int_eq(mprotect(p, 4096, PROT_READ | PROT_WRITE), -1);
	ck_assert_int_eq(errno, EACCES);
	munmap(p, 4096);
	ck_assert_int_eq(fallocate(s->ro_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096),
			 -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(ftruncate(s->ro_fd, 0), -1);
	hsd_pool_release(&pool, &a);
}
END_TEST

static Suite *tensor_suite(void)
{
	Suite *s = suite_create("tensor");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_lookup);
	tcase_add_test(tc, test_generations_stale);
	tcase_add_test(tc, test_refcount_to_pool);
	tcase_add_test(tc, test_many_and_back);
	tcase_add_test(tc, test_bad_meta_changes_nothing);
	tcase_add_test(tc, test_dedicated_and_cap);
	tcase_add_test(tc, test_uid_partition);
	tcase_add_test(tc, test_host_slab_fds);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(tensor_suite)
