/*
 * Tests of the encoder-output cache: queries and hits are counted; a referenced entry is never
 * evicted; unreferenced entries go least recently released first; can_insert and insert agree,
 * and a failed insert evicts nothing; an entry exactly the budget fits; the drop callback hears
 * of every entry's rows before they are freed (eviction, discard, the cache freed), once. A randomized run
 * against a shadow model checks residency, eviction order, the stats and the stored rows.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_cache.h"
#include "testutil.h"

static void key(uint8_t hash[32], int k)
{
	memset(hash, 0, 32);
	hash[0] = (uint8_t)k;              /* low bytes pick the bucket: spread the keys */
	hash[1] = (uint8_t)(k >> 8);
	hash[31] = 0x5e;
}

static encoder_cache_stats stats_of(const encoder_cache *c)
{
	encoder_cache_stats st;
	encoder_cache_get_stats(c, &st);
	return st;
}

/* Insert entry k of n floats filled with k, and check it went in. */
static void assert_insert(encoder_cache *c, int k, size_t n)
{
	uint8_t h[32];
	key(h, k);
	float *rows = encoder_cache_insert(c, h, n);
	ck_assert_msg(rows != NULL, "insert of entry %d (%zu floats) failed", k, n);
	for (size_t i = 0; i < n; i++)
		rows[i] = (float)k;
}

static bool present(encoder_cache *c, int k)
{
	uint8_t h[32];
	size_t n;
	key(h, k);
	const float *rows = encoder_cache_acquire(c, h, &n);
	if (rows)
		encoder_cache_release(c, h);
	return rows != NULL;
}

static void release(encoder_cache *c, int k)
{
	uint8_t h[32];
	key(h, k);
	encoder_cache_release(c, h);
}

START_TEST(test_encoder_cache_counts_hits_and_misses)
{
	encoder_cache *c = encoder_cache_new(100);
	uint8_t h[32];
	key(h, 1);
	size_t n = 123;
	ck_assert_ptr_null(encoder_cache_acquire(c, h, &n));
	ck_assert_uint_eq(n, 0);
	encoder_cache_stats st = stats_of(c);
	ck_assert_uint_eq(st.queries, 1);
	ck_assert_uint_eq(st.hits, 0);

	float *rows = encoder_cache_insert(c, h, 40);
	ck_assert_ptr_nonnull(rows);
	for (int i = 0; i < 40; i++)
		rows[i] = 0.5f * (float)i;
	st = stats_of(c);
	ck_assert_uint_eq(st.queries, 1);          /* insert is not a query */
	ck_assert_uint_eq(st.used, 40);
	ck_assert_uint_eq(st.budget, 100);
	ck_assert_int_eq(st.n_entries, 1);
	ck_assert_int_eq(st.n_referenced, 1);

	const float *got = encoder_cache_acquire(c, h, &n);
	ck_assert_ptr_eq(got, rows);
	ck_assert_uint_eq(n, 40);
	ck_assert_float_eq(got[39], 19.5f);
	st = stats_of(c);
	ck_assert_uint_eq(st.queries, 2);
	ck_assert_uint_eq(st.hits, 1);
	ck_assert_int_eq(st.n_referenced, 1);

	/* two references: two releases before it is unreferenced */
	encoder_cache_release(c, h);
	ck_assert_int_eq(stats_of(c).n_referenced, 1);
	encoder_cache_release(c, h);
	st = stats_of(c);
	ck_assert_int_eq(st.n_referenced, 0);
	ck_assert_int_eq(st.n_entries, 1);         /* still cached */
	ck_assert_uint_eq(st.used, 40);
	ck_assert_ptr_eq(encoder_cache_acquire(c, h, &n), rows);
	encoder_cache_release(c, h);
	ck_assert_uint_eq(stats_of(c).hits, 2);
	encoder_cache_free(c);
	encoder_cache_free(NULL);
}
END_TEST

START_TEST(test_encoder_cache_reference_prevents_eviction)
{
	encoder_cache *c = encoder_cache_new(100);
	assert_insert(c, 1, 60);
	uint8_t h2[32];
	key(h2, 2);
	ck_assert(!encoder_cache_can_insert(c, 50));
	ck_assert_ptr_null(encoder_cache_insert(c, h2, 50));
	encoder_cache_stats st = stats_of(c);
	ck_assert_int_eq(st.n_entries, 1);
	ck_assert_uint_eq(st.used, 60);
	ck_assert_uint_eq(st.evictions, 0);

	release(c, 1);
	ck_assert(encoder_cache_can_insert(c, 50));
	ck_assert_ptr_nonnull(encoder_cache_insert(c, h2, 50));
	st = stats_of(c);
	ck_assert_uint_eq(st.evictions, 1);
	ck_assert_int_eq(st.n_entries, 1);
	ck_assert_uint_eq(st.used, 50);
	ck_assert(!present(c, 1));
	encoder_cache_free(c);
}
END_TEST

START_TEST(test_encoder_cache_evicts_least_recently_released_first)
{
	encoder_cache *c = encoder_cache_new(30);
	assert_insert(c, 1, 10);
	assert_insert(c, 2, 10);
	assert_insert(c, 3, 10);
	release(c, 2);
	release(c, 1);
	release(c, 3);
	/* LRU: 2 1 3 */
	assert_insert(c, 4, 10);
	ck_assert_uint_eq(stats_of(c).evictions, 1);
	ck_assert(!present(c, 2));
	/* a hit and release moves 1 behind 3: LRU 3 1 */
	ck_assert(present(c, 1));
	assert_insert(c, 5, 10);
	ck_assert(!present(c, 3));
	ck_assert(present(c, 1));
	/* 5 stays referenced; with 4 released the LRU is 1 4, and 20 floats take both */
	release(c, 4);
	assert_insert(c, 6, 20);
	encoder_cache_stats st = stats_of(c);
	ck_assert_uint_eq(st.evictions, 4);
	ck_assert_int_eq(st.n_entries, 2);
	ck_assert_uint_eq(st.used, 30);
	ck_assert(!present(c, 1));
	ck_assert(!present(c, 4));
	encoder_cache_free(c);
}
END_TEST

START_TEST(test_encoder_cache_evicts_only_what_it_needs)
{
	encoder_cache *c = encoder_cache_new(40);
	for (int k = 1; k <= 4; k++) {
		assert_insert(c, k, 10);
		release(c, k);
	}
	assert_insert(c, 5, 15);                   /* needs 15: evicts 1 and 2 */
	ck_assert_uint_eq(stats_of(c).evictions, 2);
	ck_assert(!present(c, 1));
	ck_assert(!present(c, 2));
	ck_assert(present(c, 3));
	ck_assert(present(c, 4));
	ck_assert_uint_eq(stats_of(c).used, 35);
	encoder_cache_free(c);
}
END_TEST

START_TEST(test_encoder_cache_can_insert_counts_evictable_entries)
{
	encoder_cache *c = encoder_cache_new(100);
	ck_assert(encoder_cache_can_insert(c, 0));
	ck_assert(encoder_cache_can_insert(c, 100));
	ck_assert(!encoder_cache_can_insert(c, 101));
	assert_insert(c, 1, 40);
	ck_assert(encoder_cache_can_insert(c, 60));
	ck_assert(!encoder_cache_can_insert(c, 61));
	release(c, 1);
	ck_assert(encoder_cache_can_insert(c, 100));
	ck_assert(!encoder_cache_can_insert(c, 101));
	/* checking evicts nothing */
	ck_assert_int_eq(stats_of(c).n_entries, 1);
	ck_assert(present(c, 1));
	encoder_cache_free(c);
}
END_TEST

START_TEST(test_encoder_cache_insert_fails_when_everything_is_referenced)
{
	encoder_cache *c = encoder_cache_new(20);
	assert_insert(c, 1, 10);
	assert_insert(c, 2, 10);
	uint8_t h[32];
	key(h, 3);
	ck_assert_ptr_null(encoder_cache_insert(c, h, 1));
	encoder_cache_stats st = stats_of(c);
	ck_assert_int_eq(st.n_entries, 2);
	ck_assert_uint_eq(st.evictions, 0);
	ck_assert_int_eq(st.n_referenced, 2);

	/* some room by eviction, but not enough: still nothing evicted */
	release(c, 1);
	ck_assert(!encoder_cache_can_insert(c, 15));
	ck_assert_ptr_null(encoder_cache_insert(c, h, 15));
	st = stats_of(c);
	ck_assert_int_eq(st.n_entries, 2);
	ck_assert_uint_eq(st.evictions, 0);
	ck_assert(present(c, 1));
	encoder_cache_free(c);
}
END_TEST

START_TEST(test_encoder_cache_entry_exactly_the_budget)
{
	encoder_cache *c = encoder_cache_new(64);
	assert_insert(c, 1, 64);
	encoder_cache_stats st = stats_of(c);
	ck_assert_uint_eq(st.used, st.budget);
	ck_assert(!encoder_cache_can_insert(c, 1));
	ck_assert(encoder_cache_can_insert(c, 0));
	release(c, 1);
	assert_insert(c, 2, 64);
	ck_assert_uint_eq(stats_of(c).evictions, 1);
	release(c, 2);
	uint8_t h[32];
	key(h, 3);
	ck_assert_ptr_null(encoder_cache_insert(c, h, 65));
	ck_assert(present(c, 2));
	encoder_cache_free(c);
}
END_TEST

START_TEST(test_encoder_cache_misuse_is_harmless)
{
	encoder_cache *c = encoder_cache_new(50);
	uint8_t h[32];
	key(h, 9);
	encoder_cache_release(c, h);               /* unknown hash */
	assert_insert(c, 9, 10);
	ck_assert_ptr_null(encoder_cache_insert(c, h, 10));   /* already present */
	encoder_cache_stats st = stats_of(c);
	ck_assert_int_eq(st.n_entries, 1);
	ck_assert_uint_eq(st.used, 10);
	release(c, 9);
	release(c, 9);                             /* already unreferenced */
	st = stats_of(c);
	ck_assert_int_eq(st.n_referenced, 0);
	ck_assert(encoder_cache_can_insert(c, 50));
	ck_assert(!encoder_cache_can_insert(c, 51));
	encoder_cache_free(c);
}
END_TEST

START_TEST(test_encoder_cache_discard_drops_referenced_entry)
{
	encoder_cache *c = encoder_cache_new(100);
	uint8_t a[32], b[32];
	key(a, 1);
	key(b, 2);
	ck_assert_ptr_nonnull(encoder_cache_insert(c, a, 60));   /* referenced, never filled */
	encoder_cache_discard(c, a);
	encoder_cache_stats st;
	encoder_cache_get_stats(c, &st);
	ck_assert_uint_eq(st.used, 0);
	ck_assert_int_eq(st.n_entries, 0);
	ck_assert_int_eq(st.n_referenced, 0);
	size_t n = 1;
	ck_assert_ptr_null(encoder_cache_acquire(c, a, &n));
	encoder_cache_release(c, a);                             /* a no-op now */
	ck_assert_ptr_nonnull(encoder_cache_insert(c, b, 100));  /* the room is back */
	encoder_cache_discard(c, a);                             /* unknown: no-op */
	encoder_cache_discard(NULL, a);
	encoder_cache_get_stats(c, &st);
	ck_assert_int_eq(st.n_entries, 1);
	encoder_cache_free(c);
}
END_TEST

typedef struct drops {
	const float *rows[8];
	int n;
} drops;

static void on_drop(void *ctx, const float *rows)
{
	drops *d = ctx;
	ck_assert_int_lt(d->n, 8);
	d->rows[d->n++] = rows;
}

START_TEST(test_encoder_cache_drop_callback)
{
	encoder_cache *c = encoder_cache_new(100);
	drops d = { .n = 0 };
	encoder_cache_set_drop(c, on_drop, &d);
	uint8_t a[32], b[32], x[32];
	key(a, 1);
	key(b, 2);
	key(x, 3);
	float *ra = encoder_cache_insert(c, a, 60);
	encoder_cache_release(c, a);
	float *rb = encoder_cache_insert(c, b, 60);              /* evicts a */
	ck_assert_int_eq(d.n, 1);
	ck_assert_ptr_eq(d.rows[0], ra);
	encoder_cache_discard(c, b);                             /* referenced, dropped anyway */
	ck_assert_int_eq(d.n, 2);
	ck_assert_ptr_eq(d.rows[1], rb);
	float *rx = encoder_cache_insert(c, x, 10);
	encoder_cache_free(c);                                   /* the last one goes too */
	ck_assert_int_eq(d.n, 3);
	ck_assert_ptr_eq(d.rows[2], rx);
}
END_TEST

START_TEST(test_encoder_cache_many_entries)
{
	/* enough entries to grow the map several times; every one keeps its rows */
	encoder_cache *c = encoder_cache_new(3000);
	for (int k = 0; k < 1000; k++)
		assert_insert(c, k, 3);
	ck_assert_int_eq(stats_of(c).n_entries, 1000);
	for (int k = 0; k < 1000; k++) {
		uint8_t h[32];
		size_t n;
		key(h, k);
		const float *rows = encoder_cache_acquire(c, h, &n);
		ck_assert_ptr_nonnull(rows);
		ck_assert_uint_eq(n, 3);
		ck_assert_float_eq(rows[2], (float)k);
		encoder_cache_release(c, h);
		encoder_cache_release(c, h);
	}
	encoder_cache_stats st = stats_of(c);
	ck_assert_int_eq(st.n_referenced, 0);
	ck_assert_uint_eq(st.hits, 1000);
	/* all unreferenced, released in key order: a big insert takes the oldest ones */
	assert_insert(c, 5000, 30);
	ck_assert(!present(c, 9));
	ck_assert(present(c, 10));
	encoder_cache_free(c);
}
END_TEST

/* ---- randomized run against a shadow model ------------------------------------------------- */

#define R_KEYS 40
#define R_BUDGET 200
#define R_STEPS 20000

/* Check's ck_assert writes a mark point to the parent at each call; the hot loop tests plainly. */
#define REQUIRE(cond) \
	do { \
		if (!(cond)) \
			ck_abort_msg("failed: %s", #cond); \
	} while (0)

typedef struct rentry {
	bool present;
	size_t n;
	int ref;
	uint64_t released_at;              /* LRU stamp while ref == 0 */
} rentry;

static uint64_t rng_state;
static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static void assert_r_stats(const encoder_cache *c, const rentry *e, uint64_t queries,
			   uint64_t hits, uint64_t evictions)
{
	size_t used = 0;
	int n = 0, nref = 0;
	for (int k = 0; k < R_KEYS; k++) {
		if (!e[k].present)
			continue;
		used += e[k].n;
		n++;
		nref += e[k].ref > 0;
	}
	encoder_cache_stats st;
	encoder_cache_get_stats(c, &st);
	REQUIRE(st.used == used);
	REQUIRE(st.used <= st.budget);
	REQUIRE(st.n_entries == n);
	REQUIRE(st.n_referenced == nref);
	REQUIRE(st.queries == queries);
	REQUIRE(st.hits == hits);
	REQUIRE(st.evictions == evictions);
}

START_TEST(test_encoder_cache_random_ops_match_a_shadow_model)
{
	rentry e[R_KEYS];
	memset(e, 0, sizeof(e));
	uint64_t clock = 0, queries = 0, hits = 0, evictions = 0, n_failed = 0;
	rng_state = 0x243f6a8885a308d3ull;
	encoder_cache *c = encoder_cache_new(R_BUDGET);
	for (int step = 0; step < R_STEPS; step++) {
		int k = (int)rnd(R_KEYS);
		uint8_t h[32];
		key(h, k);
		unsigned op = rnd(3);
		if (op == 0) {
			size_t n;
			const float *rows = encoder_cache_acquire(c, h, &n);
			queries++;
			REQUIRE((rows != NULL) == e[k].present);
			if (rows) {
				hits++;
				REQUIRE(n == e[k].n);
				for (size_t i = 0; i < n; i++)
					REQUIRE(rows[i] == (float)k + (float)i);
				e[k].ref++;
			}
		} else if (op == 1) {
			encoder_cache_release(c, h);
			if (e[k].present && e[k].ref > 0 && --e[k].ref == 0)
				e[k].released_at = ++clock;
		} else if (!e[k].present) {
			size_t n = 1 + rnd(R_BUDGET / 3);
			size_t free_now = R_BUDGET, evictable = 0;
			for (int j = 0; j < R_KEYS; j++) {
				if (e[j].present) {
					free_now -= e[j].n;
					if (e[j].ref == 0)
						evictable += e[j].n;
				}
			}
			bool fits = n <= free_now + evictable;
			REQUIRE(encoder_cache_can_insert(c, n) == fits);
			float *rows = encoder_cache_insert(c, h, n);
			REQUIRE((rows != NULL) == fits);
			if (!rows) {
				n_failed++;
			} else {
				/* the shadow evicts the oldest releases until it fits */
				while (free_now < n) {
					int victim = -1;
					for (int j = 0; j < R_KEYS; j++) {
						if (!e[j].present || e[j].ref != 0)
							continue;
						if (victim < 0 ||
						    e[j].released_at < e[victim].released_at)
							victim = j;
					}
					REQUIRE(victim >= 0);
					e[victim].present = false;
					free_now += e[victim].n;
					evictions++;
				}
				for (size_t i = 0; i < n; i++)
					rows[i] = (float)k + (float)i;
				e[k] = (rentry){ .present = true, .n = n, .ref = 1 };
			}
		}
		/* acquire would reorder the LRU, so between operations only the stats are compared;
		 * residency shows through the next acquire's hit or miss */
		assert_r_stats(c, e, queries, hits, evictions);
	}
	ck_assert_uint_gt(evictions, 100);
	ck_assert_uint_gt(n_failed, 10);
	ck_assert_uint_gt(hits, 1000);
	encoder_cache_free(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("encoder_cache");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_encoder_cache_counts_hits_and_misses);
	tcase_add_test(tc, test_encoder_cache_reference_prevents_eviction);
	tcase_add_test(tc, test_encoder_cache_evicts_least_recently_released_first);
	tcase_add_test(tc, test_encoder_cache_evicts_only_what_it_needs);
	tcase_add_test(tc, test_encoder_cache_can_insert_counts_evictable_entries);
	tcase_add_test(tc, test_encoder_cache_insert_fails_when_everything_is_referenced);
	tcase_add_test(tc, test_encoder_cache_entry_exactly_the_budget);
	tcase_add_test(tc, test_encoder_cache_misuse_is_harmless);
	tcase_add_test(tc, test_encoder_cache_discard_drops_referenced_entry);
	tcase_add_test(tc, test_encoder_cache_many_entries);
	tcase_add_test(tc, test_encoder_cache_drop_callback);
	tcase_add_test(tc, test_encoder_cache_random_ops_match_a_shadow_model);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
