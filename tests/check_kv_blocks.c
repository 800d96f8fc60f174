/*
 * Tests of the KV block pool: prefix hits cover only full blocks of the queried tokens; the
 * image hash and its offset are part of a block's key; block hashes chain; the free queue is an
 * LRU that evicts a released request's tail first and loses the blocks a hit touches;
 * allocation is all or nothing; shared blocks return to the free queue only when every user
 * has released them; duplicate full blocks stay private; caching off, reset and the stats.
 * A randomized run against a shadow model checks the invariants and that every full block a
 * sequence uses holds that sequence's own content.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_blocks.h"
#include "testutil.h"

#define PAD 151655                     /* the image pad token id */

static kv_tokens toks(const int32_t *ids, int64_t n, const kv_image *images, int n_images)
{
	return (kv_tokens){ .ids = ids, .n = n, .images = images, .n_images = n_images };
}

static void fill(int32_t *ids, int n, int32_t base)
{
	for (int i = 0; i < n; i++)
		ids[i] = base + i;
}

static void assert_hash_eq(kv_hash a, kv_hash b)
{
	ck_assert_uint_eq(a.lo, b.lo);
	ck_assert_uint_eq(a.hi, b.hi);
}

static void assert_hash_ne(kv_hash a, kv_hash b)
{
	ck_assert_msg(a.lo != b.lo || a.hi != b.hi, "hashes are equal");
}

static void assert_consistent(const kv_blocks *kb)
{
	const char *why = kv_blocks_check(kb);
	ck_assert_msg(why == NULL, "kv_blocks_check: %s", why ? why : "");
}

static int ref_of(const kv_blocks *kb, int32_t id)
{
	int r;
	kv_blocks_block_info(kb, id, &r, NULL);
	return r;
}

static bool is_cached(const kv_blocks *kb, int32_t id)
{
	return kv_blocks_block_info(kb, id, NULL, NULL);
}

static kv_blocks_stats stats_of(const kv_blocks *kb)
{
	kv_blocks_stats st;
	kv_blocks_get_stats(kb, &st);
	return st;
}

/* A sequence computes all of t from scratch: allocate, commit. */
static void assert_compute(kv_blocks *kb, kv_seq_blocks *sb, const kv_tokens *t)
{
	ck_assert_int_eq(kv_blocks_allocate(kb, sb, t->n), 0);
	kv_blocks_commit(kb, sb, t, t->n);
	assert_consistent(kb);
}

/* The id of a block allocated on its own (the free queue's head at the time). */
static int32_t alloc_one(kv_blocks *kb, kv_seq_blocks *sb)
{
	int64_t n_positions = (int64_t)(sb->n + 1) * kv_blocks_block_size(kb);
	ck_assert_int_eq(kv_blocks_allocate(kb, sb, n_positions), 0);
	return sb->ids[sb->n - 1];
}

START_TEST(test_kv_blocks_new_rejects_bad_sizes)
{
	ck_assert_ptr_null(kv_blocks_new(0, 16, true));
	ck_assert_ptr_null(kv_blocks_new(4, 0, true));
	kv_blocks_free(NULL);
	kv_blocks *kb = kv_blocks_new(1, 1, true);
	ck_assert_ptr_nonnull(kb);
	ck_assert_int_eq(kv_blocks_block_size(kb), 1);
	kv_blocks_stats st = stats_of(kb);
	ck_assert_int_eq(st.n_blocks, 1);
	ck_assert_int_eq(st.n_free, 1);
	ck_assert_int_eq(st.n_cached, 0);
	assert_consistent(kb);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_prefix_hits_cover_only_full_blocks)
{
	kv_blocks *kb = kv_blocks_new(16, 4, true);
	int32_t a[10], b[12];
	fill(a, 10, 100);
	fill(b, 12, 100);
	b[10] = 7;                         /* b shares a's 10 tokens, then differs */
	kv_tokens ta = toks(a, 10, NULL, 0), tb = toks(b, 12, NULL, 0);
	kv_seq_blocks sa = { 0 }, sb = { 0 };

	ck_assert_int_eq(kv_blocks_match(kb, &ta, 9, &sa), 0);
	assert_compute(kb, &sa, &ta);
	ck_assert_int_eq(sa.n, 3);
	ck_assert_int_eq(sa.n_hashed, 2);          /* the third block holds 2 of 4 tokens */
	ck_assert_int_eq(stats_of(kb).n_cached, 2);
	ck_assert(is_cached(kb, sa.ids[0]) && is_cached(kb, sa.ids[1]));
	ck_assert(!is_cached(kb, sa.ids[2]));

	/* 11 tokens queried, the 2 full cached blocks hit; the partial third never does */
	ck_assert_int_eq(kv_blocks_match(kb, &tb, 11, &sb), 8);
	ck_assert_int_eq(sb.n, 2);
	ck_assert_int_eq(sb.n_hashed, 2);
	ck_assert_int_eq(sb.ids[0], sa.ids[0]);
	ck_assert_int_eq(sb.ids[1], sa.ids[1]);
	assert_hash_eq(sb.hashes[1], sa.hashes[1]);
	kv_blocks_release(kb, &sb);

	/* max_tokens is respected: 7 tokens hold one full block */
	ck_assert_int_eq(kv_blocks_match(kb, &tb, 7, &sb), 4);
	ck_assert_int_eq(sb.n, 1);
	kv_blocks_release(kb, &sb);
	ck_assert_int_eq(kv_blocks_match(kb, &tb, 3, &sb), 0);
	ck_assert_int_eq(sb.n, 0);

	/* a difference inside block 1 keeps block 0's hit only; one in block 0 hits nothing */
	b[5] = 9999;
	ck_assert_int_eq(kv_blocks_match(kb, &tb, 11, &sb), 4);
	kv_blocks_release(kb, &sb);
	b[0] = 9999;
	ck_assert_int_eq(kv_blocks_match(kb, &tb, 11, &sb), 0);
	assert_consistent(kb);

	kv_blocks_release(kb, &sa);
	kv_seq_blocks_deinit(&sa);
	kv_seq_blocks_deinit(&sb);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_image_hash_is_part_of_the_key)
{
	kv_blocks *kb = kv_blocks_new(16, 4, true);
	int32_t ids[16];
	fill(ids, 16, 10);
	for (int i = 4; i < 12; i++)
		ids[i] = PAD;              /* the same pad ids, whatever the picture */
	kv_image cat = { .start = 4, .n_tokens = 8 }, dog = cat;
	memset(cat.hash, 0xca, 32);
	memset(dog.hash, 0xd0, 32);
	kv_tokens tc = toks(ids, 16, &cat, 1), td = toks(ids, 16, &dog, 1);
	kv_seq_blocks s1 = { 0 }, s2 = { 0 };

	assert_compute(kb, &s1, &tc);
	ck_assert_int_eq(stats_of(kb).n_cached, 4);
	/* another picture: block 0 (text before it) hits, the image blocks do not */
	ck_assert_int_eq(kv_blocks_match(kb, &td, 15, &s2), 4);
	kv_blocks_release(kb, &s2);
	/* the same picture hits every full block among the 15 tokens */
	ck_assert_int_eq(kv_blocks_match(kb, &tc, 15, &s2), 12);
	kv_blocks_release(kb, &s2);
	/* and with the image hash ignored (no images) the pads would be all that is compared */
	kv_tokens tn = toks(ids, 16, NULL, 0);
	ck_assert_int_eq(kv_blocks_match(kb, &tn, 15, &s2), 4);
	kv_blocks_release(kb, &s2);

	kv_blocks_release(kb, &s1);
	assert_consistent(kb);
	kv_seq_blocks_deinit(&s1);
	kv_seq_blocks_deinit(&s2);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_image_offset_is_part_of_the_key)
{
	int32_t ids[16];
	for (int i = 0; i < 16; i++)
		ids[i] = PAD;
	kv_image a = { .start = 0, .n_tokens = 16 }, b = { .start = 2, .n_tokens = 14 };
	memset(a.hash, 0x5a, 32);
	memcpy(b.hash, a.hash, 32);
	kv_tokens ta = toks(ids, 16, &a, 1), tb = toks(ids, 16, &b, 1);
	kv_hash parent = { 1, 2 };
	/* the block at 4 is the image's rows 4.. in one stream and 2.. in the other */
	assert_hash_ne(kv_blocks_hash(&parent, &ta, 4, 4), kv_blocks_hash(&parent, &tb, 4, 4));
	/* the same overlap is the same key */
	assert_hash_eq(kv_blocks_hash(&parent, &ta, 4, 4), kv_blocks_hash(&parent, &ta, 4, 4));
	kv_image a2 = a;
	a2.n_tokens = 12;                  /* the run's length beyond the block does not matter */
	kv_tokens ta2 = toks(ids, 16, &a2, 1);
	assert_hash_eq(kv_blocks_hash(&parent, &ta, 4, 4), kv_blocks_hash(&parent, &ta2, 4, 4));
	/* an image that only touches the block's last token still counts */
	kv_image late = { .start = 7, .n_tokens = 1 };
	memcpy(late.hash, a.hash, 32);
	kv_tokens tl = toks(ids, 16, &late, 1), tnone = toks(ids, 16, NULL, 0);
	assert_hash_ne(kv_blocks_hash(&parent, &tl, 4, 4), kv_blocks_hash(&parent, &tnone, 4, 4));
	/* and one ending just before it does not */
	kv_image early = { .start = 0, .n_tokens = 4 };
	memcpy(early.hash, a.hash, 32);
	kv_tokens te = toks(ids, 16, &early, 1);
	assert_hash_eq(kv_blocks_hash(&parent, &te, 4, 4), kv_blocks_hash(&parent, &tnone, 4, 4));
}
END_TEST

START_TEST(test_kv_blocks_hash_chains_through_the_parent)
{
	int32_t x[8], y[8];
	fill(x, 8, 1);
	fill(y, 8, 1);
	y[0] = 42;                         /* block 1 is the same, block 0 differs */
	kv_tokens tx = toks(x, 8, NULL, 0), ty = toks(y, 8, NULL, 0);
	kv_hash hx0 = kv_blocks_hash(NULL, &tx, 0, 4), hy0 = kv_blocks_hash(NULL, &ty, 0, 4);
	assert_hash_ne(hx0, hy0);
	assert_hash_ne(kv_blocks_hash(&hx0, &tx, 4, 4), kv_blocks_hash(&hy0, &ty, 4, 4));
	assert_hash_eq(kv_blocks_hash(&hx0, &tx, 4, 4), kv_blocks_hash(&hx0, &ty, 4, 4));
	/* the root is not the all-zero parent */
	kv_hash zero = { 0, 0 };
	assert_hash_ne(kv_blocks_hash(NULL, &tx, 0, 4), kv_blocks_hash(&zero, &tx, 0, 4));

	/* in the pool: y's block 1 does not hit x's although its tokens are the same */
	kv_blocks *kb = kv_blocks_new(8, 4, true);
	kv_seq_blocks sx = { 0 }, sy = { 0 };
	assert_compute(kb, &sx, &tx);
	assert_hash_eq(sx.hashes[0], hx0);
	ck_assert_int_eq(kv_blocks_match(kb, &ty, 8, &sy), 0);
	kv_blocks_release(kb, &sx);
	kv_seq_blocks_deinit(&sx);
	kv_seq_blocks_deinit(&sy);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_eviction_is_lru_tail_first)
{
	kv_blocks *kb = kv_blocks_new(6, 2, true);
	int32_t a[6], b[6];
	fill(a, 6, 100);
	fill(b, 6, 200);
	kv_tokens ta = toks(a, 6, NULL, 0), tb = toks(b, 6, NULL, 0);
	kv_seq_blocks sa = { 0 }, sb = { 0 }, s = { 0 };

	/* initially the free queue is in id order */
	assert_compute(kb, &sa, &ta);
	ck_assert_int_eq(sa.ids[0], 0);
	ck_assert_int_eq(sa.ids[1], 1);
	ck_assert_int_eq(sa.ids[2], 2);
	assert_compute(kb, &sb, &tb);
	ck_assert_int_eq(stats_of(kb).n_free, 0);
	ck_assert_int_eq(stats_of(kb).n_cached, 6);

	/* a released first, b second: queue = a2 a1 a0 b2 b1 b0 */
	kv_blocks_release(kb, &sa);
	kv_blocks_release(kb, &sb);
	ck_assert_int_eq(stats_of(kb).n_free, 6);
	ck_assert_int_eq(stats_of(kb).n_cached, 6);

	/* a hit on b's first two blocks takes them out of the queue */
	ck_assert_int_eq(kv_blocks_match(kb, &tb, 5, &sb), 4);
	ck_assert_int_eq(sb.ids[0], 3);
	ck_assert_int_eq(sb.ids[1], 4);
	ck_assert_int_eq(stats_of(kb).n_free, 4);

	/* evictions: a's tail first, then b's unused third block */
	int32_t want[] = { 2, 1, 0, 5 };
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(alloc_one(kb, &s), want[i]);
		ck_assert_uint_eq(stats_of(kb).evictions, (uint64_t)i + 1);
		ck_assert(!is_cached(kb, want[i]));
	}
	ck_assert_int_eq(stats_of(kb).n_cached, 2);
	assert_consistent(kb);
	/* nothing left: b's hit blocks are in use */
	ck_assert_int_eq(kv_blocks_allocate(kb, &s, 5 * 2), 1);

	/* s released after b: b's blocks (hit, still cached) come back first, tail first */
	kv_blocks_release(kb, &sb);
	kv_blocks_release(kb, &s);
	ck_assert_int_eq(alloc_one(kb, &s), 4);
	ck_assert_int_eq(alloc_one(kb, &s), 3);
	ck_assert_uint_eq(stats_of(kb).evictions, 6);
	/* then s's (empty) blocks, last first; taking those evicts nothing */
	ck_assert_int_eq(alloc_one(kb, &s), 5);
	ck_assert_uint_eq(stats_of(kb).evictions, 6);
	assert_consistent(kb);

	kv_blocks_release(kb, &s);
	kv_seq_blocks_deinit(&sa);
	kv_seq_blocks_deinit(&sb);
	kv_seq_blocks_deinit(&s);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_allocate_is_all_or_nothing)
{
	kv_blocks *kb = kv_blocks_new(4, 4, true);
	kv_seq_blocks s1 = { 0 }, s2 = { 0 };
	ck_assert_int_eq(kv_blocks_needed(kb, &s1, 0), 0);
	ck_assert_int_eq(kv_blocks_needed(kb, &s1, 1), 1);
	ck_assert_int_eq(kv_blocks_needed(kb, &s1, 12), 3);
	ck_assert_int_eq(kv_blocks_needed(kb, &s1, 13), 4);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s1, 0), 0);
	ck_assert_int_eq(s1.n, 0);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s1, 12), 0);
	ck_assert_int_eq(s1.n, 3);
	ck_assert_int_eq(kv_blocks_needed(kb, &s1, 12), 0);
	ck_assert_int_eq(kv_blocks_needed(kb, &s1, 13), 1);

	/* two blocks wanted, one free: nothing changes */
	ck_assert_int_eq(kv_blocks_needed(kb, &s2, 8), 2);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s2, 8), 1);
	ck_assert_int_eq(s2.n, 0);
	ck_assert_int_eq(stats_of(kb).n_free, 1);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s2, 4), 0);
	ck_assert_int_eq(s2.n, 1);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s1, 13), 1);
	ck_assert_int_eq(s1.n, 3);
	ck_assert_int_eq(stats_of(kb).n_free, 0);
	assert_consistent(kb);

	/* growing in place keeps the table and appends */
	kv_blocks_release(kb, &s2);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s1, 16), 0);
	ck_assert_int_eq(s1.n, 4);
	ck_assert_int_eq(s1.ids[3], 3);
	kv_blocks_release(kb, &s1);
	ck_assert_int_eq(s1.n, 0);
	ck_assert_int_eq(stats_of(kb).n_free, 4);
	kv_seq_blocks_deinit(&s1);
	kv_seq_blocks_deinit(&s2);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_shared_blocks_free_only_when_both_release)
{
	kv_blocks *kb = kv_blocks_new(8, 4, true);
	int32_t a[12], b[12];
	fill(a, 12, 1);
	fill(b, 12, 1);
	b[9] = 77;
	kv_tokens ta = toks(a, 12, NULL, 0), tb = toks(b, 12, NULL, 0);
	kv_seq_blocks sa = { 0 }, sb = { 0 };
	assert_compute(kb, &sa, &ta);
	ck_assert_int_eq(stats_of(kb).n_free, 5);

	ck_assert_int_eq(kv_blocks_match(kb, &tb, 11, &sb), 8);
	ck_assert_int_eq(kv_blocks_allocate(kb, &sb, 12), 0);
	kv_blocks_commit(kb, &sb, &tb, 12);
	ck_assert_int_eq(sb.n, 3);
	ck_assert_int_eq(sb.n_hashed, 3);
	ck_assert_int_ne(sb.ids[2], sa.ids[2]);
	ck_assert_int_eq(ref_of(kb, sa.ids[0]), 2);
	ck_assert_int_eq(ref_of(kb, sa.ids[1]), 2);
	ck_assert_int_eq(ref_of(kb, sa.ids[2]), 1);
	ck_assert_int_eq(ref_of(kb, sb.ids[2]), 1);
	ck_assert_int_eq(stats_of(kb).n_free, 4);
	ck_assert_int_eq(stats_of(kb).n_cached, 4);

	int32_t shared0 = sa.ids[0], shared1 = sa.ids[1], own_a = sa.ids[2];
	kv_blocks_release(kb, &sa);
	ck_assert_int_eq(ref_of(kb, shared0), 1);
	ck_assert_int_eq(ref_of(kb, shared1), 1);
	ck_assert_int_eq(ref_of(kb, own_a), 0);
	ck_assert_int_eq(stats_of(kb).n_free, 5);
	assert_consistent(kb);
	kv_blocks_release(kb, &sb);
	ck_assert_int_eq(ref_of(kb, shared0), 0);
	ck_assert_int_eq(stats_of(kb).n_free, 8);
	ck_assert_int_eq(stats_of(kb).n_cached, 4);   /* freed blocks keep their hashes */

	/* recompute after release (preemption) hits again */
	ck_assert_int_eq(kv_blocks_match(kb, &ta, 12, &sa), 12);
	ck_assert_int_eq(sa.ids[2], own_a);
	kv_blocks_release(kb, &sa);
	assert_consistent(kb);
	kv_seq_blocks_deinit(&sa);
	kv_seq_blocks_deinit(&sb);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_duplicate_full_blocks_stay_private)
{
	kv_blocks *kb = kv_blocks_new(8, 4, true);
	int32_t a[8];
	fill(a, 8, 5);
	kv_tokens t = toks(a, 8, NULL, 0);
	kv_seq_blocks s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
	/* both admitted before either computed: both miss and compute the same blocks */
	ck_assert_int_eq(kv_blocks_match(kb, &t, 7, &s1), 0);
	ck_assert_int_eq(kv_blocks_match(kb, &t, 7, &s2), 0);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s1, 8), 0);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s2, 8), 0);
	kv_blocks_commit(kb, &s1, &t, 8);
	kv_blocks_commit(kb, &s2, &t, 8);
	ck_assert_int_eq(s2.n_hashed, 2);
	assert_hash_eq(s2.hashes[1], s1.hashes[1]);
	ck_assert(is_cached(kb, s1.ids[0]) && is_cached(kb, s1.ids[1]));
	ck_assert(!is_cached(kb, s2.ids[0]) && !is_cached(kb, s2.ids[1]));
	ck_assert_int_eq(stats_of(kb).n_cached, 2);
	assert_consistent(kb);

	/* a third request hits the first one's blocks */
	ck_assert_int_eq(kv_blocks_match(kb, &t, 8, &s3), 8);
	ck_assert_int_eq(s3.ids[0], s1.ids[0]);
	ck_assert_int_eq(s3.ids[1], s1.ids[1]);
	kv_blocks_release(kb, &s3);

	/* the private copies go back unhashed; the cached ones survive them */
	int32_t priv = s2.ids[0];
	kv_blocks_release(kb, &s1);
	kv_blocks_release(kb, &s2);
	ck_assert(!is_cached(kb, priv));
	ck_assert_int_eq(stats_of(kb).n_cached, 2);
	ck_assert_int_eq(kv_blocks_match(kb, &t, 8, &s3), 8);
	kv_blocks_release(kb, &s3);
	assert_consistent(kb);
	kv_seq_blocks_deinit(&s1);
	kv_seq_blocks_deinit(&s2);
	kv_seq_blocks_deinit(&s3);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_commit_hashes_only_computed_full_blocks)
{
	kv_blocks *kb = kv_blocks_new(8, 4, true);
	int32_t a[12];
	fill(a, 12, 1);
	kv_tokens t = toks(a, 12, NULL, 0);
	kv_seq_blocks s = { 0 };
	ck_assert_int_eq(kv_blocks_allocate(kb, &s, 12), 0);
	kv_blocks_commit(kb, &s, &t, 3);
	ck_assert_int_eq(s.n_hashed, 0);
	ck_assert_int_eq(stats_of(kb).n_cached, 0);
	kv_blocks_commit(kb, &s, &t, 7);
	ck_assert_int_eq(s.n_hashed, 1);
	/* tokens not yet known (t.n = 6) cannot complete block 1 however far computing went */
	kv_tokens shorter = toks(a, 6, NULL, 0);
	kv_blocks_commit(kb, &s, &shorter, 12);
	ck_assert_int_eq(s.n_hashed, 1);
	kv_blocks_commit(kb, &s, &t, 12);
	ck_assert_int_eq(s.n_hashed, 3);
	ck_assert_int_eq(stats_of(kb).n_cached, 3);
	/* the chain is the same as hashing from scratch */
	kv_hash h = kv_blocks_hash(NULL, &t, 0, 4);
	h = kv_blocks_hash(&h, &t, 4, 4);
	h = kv_blocks_hash(&h, &t, 8, 4);
	assert_hash_eq(s.hashes[2], h);
	kv_hash got;
	ck_assert(kv_blocks_block_info(kb, s.ids[2], NULL, &got));
	assert_hash_eq(got, h);
	kv_blocks_release(kb, &s);
	kv_seq_blocks_deinit(&s);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_caching_off_never_hits)
{
	kv_blocks *kb = kv_blocks_new(4, 4, false);
	int32_t a[8];
	fill(a, 8, 1);
	kv_tokens t = toks(a, 8, NULL, 0);
	kv_seq_blocks s = { 0 };
	ck_assert_int_eq(kv_blocks_match(kb, &t, 7, &s), 0);
	assert_compute(kb, &s, &t);
	ck_assert(!is_cached(kb, s.ids[0]));
	kv_blocks_release(kb, &s);
	ck_assert_int_eq(kv_blocks_match(kb, &t, 8, &s), 0);
	ck_assert_int_eq(s.n, 0);
	ck_assert_int_eq(kv_blocks_allocate(kb, &s, 16), 0);
	kv_blocks_stats st = stats_of(kb);
	ck_assert_int_eq(st.n_cached, 0);
	ck_assert_uint_eq(st.queries, 0);
	ck_assert_uint_eq(st.hits, 0);
	ck_assert_uint_eq(st.evictions, 0);
	ck_assert_int_eq(st.n_free, 0);
	assert_consistent(kb);
	kv_blocks_release(kb, &s);
	kv_seq_blocks_deinit(&s);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_reset_cache_drops_every_hash)
{
	kv_blocks *kb = kv_blocks_new(8, 4, true);
	int32_t a[8], b[8];
	fill(a, 8, 1);
	fill(b, 8, 50);
	kv_tokens ta = toks(a, 8, NULL, 0), tb = toks(b, 8, NULL, 0);
	kv_seq_blocks sa = { 0 }, sb = { 0 };
	assert_compute(kb, &sa, &ta);
	assert_compute(kb, &sb, &tb);
	kv_blocks_release(kb, &sa);
	ck_assert_int_eq(stats_of(kb).n_cached, 4);

	kv_blocks_reset_cache(kb);
	kv_blocks_stats st = stats_of(kb);
	ck_assert_int_eq(st.n_cached, 0);
	ck_assert_int_eq(st.n_free, 6);            /* b's blocks stay in use */
	ck_assert_int_eq(ref_of(kb, sb.ids[0]), 1);
	assert_consistent(kb);
	ck_assert_int_eq(kv_blocks_match(kb, &ta, 8, &sa), 0);
	/* reused blocks are not counted as evictions: they no longer hold a hash */
	ck_assert_int_eq(kv_blocks_allocate(kb, &sa, 24), 0);
	ck_assert_uint_eq(stats_of(kb).evictions, 0);
	kv_blocks_release(kb, &sa);
	kv_blocks_release(kb, &sb);
	ck_assert_int_eq(kv_blocks_match(kb, &tb, 8, &sb), 0);
	assert_consistent(kb);
	kv_seq_blocks_deinit(&sa);
	kv_seq_blocks_deinit(&sb);
	kv_blocks_free(kb);
}
END_TEST

START_TEST(test_kv_blocks_stats_count_tokens_and_evictions)
{
	kv_blocks *kb = kv_blocks_new(4, 4, true);
	int32_t a[16];
	fill(a, 16, 1);
	kv_tokens t = toks(a, 16, NULL, 0);
	kv_seq_blocks s = { 0 };
	ck_assert_int_eq(kv_blocks_match(kb, &t, 15, &s), 0);
	assert_compute(kb, &s, &t);
	kv_blocks_release(kb, &s);
	kv_blocks_stats st = stats_of(kb);
	ck_assert_uint_eq(st.queries, 15);
	ck_assert_uint_eq(st.hits, 0);
	ck_assert_int_eq(st.n_cached, 4);

	ck_assert_int_eq(kv_blocks_match(kb, &t, 15, &s), 12);
	kv_blocks_release(kb, &s);
	ck_assert_int_eq(kv_blocks_match(kb, &t, 0, &s), 0);
	ck_assert_int_eq(kv_blocks_match(kb, &t, -3, &s), 0);
	/* max_tokens beyond what is known: counted as queried, hits limited by t->n */
	ck_assert_int_eq(kv_blocks_match(kb, &t, 100, &s), 16);
	kv_blocks_release(kb, &s);
	st = stats_of(kb);
	ck_assert_uint_eq(st.queries, 15 + 15 + 100);
	ck_assert_uint_eq(st.hits, 12 + 16);
	ck_assert_uint_eq(st.evictions, 0);

	/* a different sequence takes 3 cached blocks: 3 evictions, one block still cached */
	int32_t b[12];
	fill(b, 12, 900);
	kv_tokens tb = toks(b, 12, NULL, 0);
	assert_compute(kb, &s, &tb);
	st = stats_of(kb);
	ck_assert_uint_eq(st.evictions, 3);
	ck_assert_int_eq(st.n_cached, 4);          /* 1 of a's + 3 of b's */
	ck_assert_int_eq(st.n_free, 1);
	kv_blocks_release(kb, &s);
	kv_seq_blocks_deinit(&s);
	kv_blocks_free(kb);
}
END_TEST

/* ---- randomized run against a shadow model ------------------------------------------------- */

#define R_BLOCKS 24
#define R_BS 4
#define R_SEQS 6
#define R_MAXTOK 96
#define R_STEPS 20000

typedef struct rseq {
	bool live;
	int32_t ids[R_MAXTOK];
	kv_image img;
	kv_tokens t;
	int64_t n_computed;
	kv_seq_blocks sb;
	kv_hash chain[R_MAXTOK / R_BS];    /* the sequence's own chain hashes, computed here */
	int n_chain;
} rseq;

typedef struct rmodel {
	kv_blocks *kb;
	rseq seq[R_SEQS];
	kv_hash content[R_BLOCKS];         /* what a block's KV holds: its tokens' chain hash */
	bool content_valid[R_BLOCKS];      /* the block was completely written */
	uint64_t queries, hits;
	int n_matched_blocks, n_preempted, n_reset;
} rmodel;

/* The shadow checks run some 10^6 times and Check's ck_assert records a mark point at each one
 * (a write to the parent process), so the randomized run tests plainly and fails through
 * ck_abort_msg. */
#define REQUIRE(cond) \
	do { \
		if (!(cond)) \
			ck_abort_msg("failed: %s", #cond); \
	} while (0)
#define REQUIRE_MSG(cond, ...) \
	do { \
		if (!(cond)) \
			ck_abort_msg(__VA_ARGS__); \
	} while (0)

static bool hash_eq(kv_hash a, kv_hash b)
{
	return a.lo == b.lo && a.hi == b.hi;
}

static uint64_t rng_state;
static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

/* The first `full` chain hashes of the sequence (tokens only grow, so earlier ones stay). */
static const kv_hash *chain_of(rseq *q, int full)
{
	for (; q->n_chain < full; q->n_chain++) {
		int i = q->n_chain;
		const kv_hash *parent = i ? &q->chain[i - 1] : NULL;
		q->chain[i] = kv_blocks_hash(parent, &q->t, (int64_t)i * R_BS, R_BS);
	}
	return q->chain;
}

/* A prompt from one of three shared stems (so prefixes repeat) and a tail over a tiny alphabet
 * (so identical blocks recur), sometimes with an image from one of two pictures. */
static void r_new_prompt(rseq *q)
{
	static const int32_t stems[3] = { 1000, 2000, 3000 };
	int len = 1 + (int)rnd(48);
	int stem = (int)rnd(3), shared = (int)rnd((unsigned)len + 1);
	for (int i = 0; i < len; i++)
		q->ids[i] = i < shared ? stems[stem] + i : (int32_t)rnd(3);
	q->t = toks(q->ids, len, NULL, 0);
	if (rnd(2)) {
		q->img.start = rnd((unsigned)len);
		q->img.n_tokens = 1 + rnd(12);
		if (q->img.start + q->img.n_tokens > len)
			q->img.n_tokens = len - q->img.start;
		memset(q->img.hash, rnd(2) ? 0xaa : 0xbb, 32);
		for (int64_t i = q->img.start; i < q->img.start + q->img.n_tokens; i++)
			q->ids[i] = PAD;
		q->t.images = &q->img;
		q->t.n_images = 1;
	}
	q->n_chain = 0;
}

/* Admission (or re-admission after preemption): match and check that every hit holds exactly
 * what this sequence would have computed there. */
static void assert_r_admit(rmodel *m, rseq *q)
{
	int64_t max_tokens = q->t.n - 1;
	int64_t got = kv_blocks_match(m->kb, &q->t, max_tokens, &q->sb);
	m->queries += max_tokens > 0 ? (uint64_t)max_tokens : 0;
	m->hits += (uint64_t)got;
	REQUIRE(got % R_BS == 0);
	REQUIRE(got <= (max_tokens > 0 ? max_tokens : 0));
	REQUIRE(q->sb.n == got / R_BS);
	REQUIRE(q->sb.n_hashed == q->sb.n);
	const kv_hash *ch = chain_of(q, q->sb.n);
	for (int i = 0; i < q->sb.n; i++) {
		int32_t id = q->sb.ids[i];
		REQUIRE_MSG(m->content_valid[id], "hit on block %d, never completely written", id);
		REQUIRE(hash_eq(m->content[id], ch[i]));
		REQUIRE(hash_eq(q->sb.hashes[i], ch[i]));
	}
	m->n_matched_blocks += q->sb.n;
	q->n_computed = got;
	q->live = true;
}

static void r_release(rmodel *m, rseq *q)
{
	kv_blocks_release(m->kb, &q->sb);
	REQUIRE(q->sb.n == 0);
	REQUIRE(q->sb.n_hashed == 0);
}

/* One scheduling step of a running sequence: compute up to 2 blocks' worth of positions,
 * generating a token when the known ones are all computed. Preempted (released and
 * re-admitted) when the blocks do not fit. */
static void assert_r_advance(rmodel *m, rseq *q)
{
	if (q->n_computed == q->t.n) {
		if (q->t.n == R_MAXTOK) {
			r_release(m, q);
			q->live = false;
			return;
		}
		q->ids[q->t.n++] = (int32_t)rnd(3);    /* the sampled token */
	}
	int64_t target = q->n_computed + 1 + rnd(2 * R_BS);
	if (target > q->t.n)
		target = q->t.n;
	int need = kv_blocks_needed(m->kb, &q->sb, target);
	int before = q->sb.n;
	kv_blocks_stats st;
	kv_blocks_get_stats(m->kb, &st);
	if (kv_blocks_allocate(m->kb, &q->sb, target) != 0) {
		REQUIRE(need > st.n_free);
		REQUIRE(q->sb.n == before);
		r_release(m, q);
		m->n_preempted++;
		assert_r_admit(m, q);
		return;
	}
	REQUIRE(need <= st.n_free);
	REQUIRE(q->sb.n == before + need);
	for (int i = before; i < q->sb.n; i++)
		m->content_valid[q->sb.ids[i]] = false;    /* fresh block: contents overwritten */
	/* blocks completed by positions n_computed .. target-1 now hold this sequence's tokens */
	int first = (int)(q->n_computed / R_BS), full = (int)(target / R_BS);
	const kv_hash *ch = chain_of(q, full);
	for (int i = first; i < full; i++) {
		m->content[q->sb.ids[i]] = ch[i];
		m->content_valid[q->sb.ids[i]] = true;
	}
	kv_blocks_commit(m->kb, &q->sb, &q->t, target);
	q->n_computed = target;
	REQUIRE(q->sb.n_hashed == full);
	for (int i = 0; i < full; i++)
		REQUIRE(hash_eq(q->sb.hashes[i], ch[i]));
}

static void assert_r_invariants(rmodel *m)
{
	const char *why = kv_blocks_check(m->kb);
	if (why)
		ck_abort_msg("kv_blocks_check: %s", why);
	int users[R_BLOCKS] = { 0 };
	for (int s = 0; s < R_SEQS; s++) {
		rseq *q = &m->seq[s];
		if (!q->live)
			continue;
		REQUIRE(q->sb.n >= (int)((q->n_computed + R_BS - 1) / R_BS));
		REQUIRE(q->sb.n_hashed <= q->sb.n);
		int full = (int)(q->n_computed / R_BS);
		const kv_hash *ch = chain_of(q, full);
		for (int i = 0; i < q->sb.n; i++) {
			int32_t id = q->sb.ids[i];
			REQUIRE(id >= 0);
			REQUIRE(id < R_BLOCKS);
			users[id]++;
			/* every computed full block still holds this sequence's own tokens */
			if (i < full) {
				REQUIRE_MSG(m->content_valid[id], "block %d overwritten", id);
				REQUIRE(hash_eq(m->content[id], ch[i]));
			}
		}
	}
	int n_zero = 0, n_in_use = 0, n_hashed = 0;
	for (int32_t id = 0; id < R_BLOCKS; id++) {
		int ref;
		kv_hash h;
		bool hashed = kv_blocks_block_info(m->kb, id, &ref, &h);
		REQUIRE(ref >= 0);
		REQUIRE(ref == users[id]);
		if (ref == 0)
			n_zero++;
		else
			n_in_use++;
		/* a block in two sequences got there through a hit: it is cached */
		if (users[id] > 1)
			REQUIRE_MSG(hashed, "block %d shared but not cached", id);
		if (hashed) {
			n_hashed++;
			REQUIRE(m->content_valid[id]);
			REQUIRE(hash_eq(h, m->content[id]));
		}
	}
	kv_blocks_stats st;
	kv_blocks_get_stats(m->kb, &st);
	REQUIRE(st.n_free == n_zero);
	REQUIRE(st.n_free + n_in_use == R_BLOCKS);
	REQUIRE(st.n_cached == n_hashed);
	REQUIRE(st.queries == m->queries);
	REQUIRE(st.hits == m->hits);
}

START_TEST(test_kv_blocks_random_ops_keep_invariants)
{
	static rmodel m;
	memset(&m, 0, sizeof(m));
	rng_state = 0x9e3779b97f4a7c15ull;
	m.kb = kv_blocks_new(R_BLOCKS, R_BS, true);
	for (int step = 0; step < R_STEPS; step++) {
		rseq *q = &m.seq[rnd(R_SEQS)];
		unsigned op = rnd(16);
		if (!q->live) {
			r_new_prompt(q);
			assert_r_admit(&m, q);
		} else if (op < 12) {
			assert_r_advance(&m, q);
		} else if (op < 15) {
			r_release(&m, q);
			q->live = false;
		} else {
			/* now and then everyone else finishes and the cache is reset; q keeps
			 * running on blocks nothing can match any more. Only with one sequence
			 * left, so that "shared ⇒ cached" keeps holding. */
			if (rnd(8) == 0) {
				for (int s = 0; s < R_SEQS; s++) {
					if (&m.seq[s] != q && m.seq[s].live) {
						r_release(&m, &m.seq[s]);
						m.seq[s].live = false;
					}
				}
				kv_blocks_reset_cache(m.kb);
				m.n_reset++;
			}
		}
		assert_r_invariants(&m);
	}
	kv_blocks_stats st;
	kv_blocks_get_stats(m.kb, &st);
	/* the run exercised what it is meant to */
	ck_assert_int_gt(m.n_matched_blocks, 100);
	ck_assert_int_gt(m.n_preempted, 10);
	ck_assert_int_gt(m.n_reset, 0);
	ck_assert_uint_gt(st.evictions, 100);
	for (int s = 0; s < R_SEQS; s++) {
		if (m.seq[s].live)
			r_release(&m, &m.seq[s]);
		kv_seq_blocks_deinit(&m.seq[s].sb);
	}
	kv_blocks_get_stats(m.kb, &st);
	ck_assert_int_eq(st.n_free, R_BLOCKS);
	assert_consistent(m.kb);
	kv_blocks_free(m.kb);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kv_blocks");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_kv_blocks_new_rejects_bad_sizes);
	tcase_add_test(tc, test_kv_blocks_prefix_hits_cover_only_full_blocks);
	tcase_add_test(tc, test_kv_blocks_image_hash_is_part_of_the_key);
	tcase_add_test(tc, test_kv_blocks_image_offset_is_part_of_the_key);
	tcase_add_test(tc, test_kv_blocks_hash_chains_through_the_parent);
	tcase_add_test(tc, test_kv_blocks_eviction_is_lru_tail_first);
	tcase_add_test(tc, test_kv_blocks_allocate_is_all_or_nothing);
	tcase_add_test(tc, test_kv_blocks_shared_blocks_free_only_when_both_release);
	tcase_add_test(tc, test_kv_blocks_duplicate_full_blocks_stay_private);
	tcase_add_test(tc, test_kv_blocks_commit_hashes_only_computed_full_blocks);
	tcase_add_test(tc, test_kv_blocks_caching_off_never_hits);
	tcase_add_test(tc, test_kv_blocks_reset_cache_drops_every_hash);
	tcase_add_test(tc, test_kv_blocks_stats_count_tokens_and_evictions);
	tcase_add_test(tc, test_kv_blocks_random_ops_keep_invariants);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
