/*
 * encoder_cache: reference-counted vision-encoder outputs within a float budget (see
 * encoder_cache.h for the contract).
 *
 *   buckets[mask+1] ─► entry ─► entry ─► …      chained hash map, bucket = low bits of the
 *                                               image hash (SHA-256: uniform); doubled when the
 *                                               entries outnumber the buckets, so O(1) expected
 *   lru_head ◄─► entry ◄─► … ◄─► lru_tail       unreferenced entries in release order; the head
 *                                               is evicted first
 *
 * Invariants:
 *   an entry is in the LRU list ⇔ its ref_cnt is 0
 *   used = Σ n_floats over every entry ≤ budget;  evictable = Σ n_floats over the LRU list
 *   so an entry of n floats fits after evictions ⇔ n ≤ budget − used + evictable
 *
 * Ownership: the cache owns its entries and their rows; acquire and insert lend the rows to the
 * caller until it releases the entry. Threads: the engine thread only.
 */
#include "encoder_cache.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

typedef struct ec_entry {
	uint8_t hash[32];
	float *rows;                   /* owned: n_floats */
	size_t n_floats;
	int ref_cnt;
	struct ec_entry *chain;        /* borrowed: next in the bucket */
	struct ec_entry *prev, *next;  /* borrowed: LRU links, NULL when referenced */
} ec_entry;

struct encoder_cache {
	size_t budget, used, evictable;
	ec_entry **buckets;            /* owned: mask + 1 chains of owned entries */
	size_t mask;
	int n_entries, n_referenced;
	ec_entry *lru_head, *lru_tail; /* borrowed (the entries belong to the buckets) */
	uint64_t queries, hits, evictions;
	encoder_cache_drop_fn drop;    /* told before rows are freed */
	void *drop_ctx;
};

static size_t bucket_of(const encoder_cache *c, const uint8_t hash[32])
{
	uint64_t v;
	memcpy(&v, hash, sizeof(v));
	return (size_t)v & c->mask;
}

static ec_entry *find(const encoder_cache *c, const uint8_t hash[32])
{
	for (ec_entry *e = c->buckets[bucket_of(c, hash)]; e; e = e->chain)
		if (!memcmp(e->hash, hash, 32))
			return e;
	return NULL;
}

static void lru_remove(encoder_cache *c, ec_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
	c->evictable -= e->n_floats;
}

static void lru_push_tail(encoder_cache *c, ec_entry *e)
{
	e->prev = c->lru_tail;
	e->next = NULL;
	if (c->lru_tail)
		c->lru_tail->next = e;
	else
		c->lru_head = e;
	c->lru_tail = e;
	c->evictable += e->n_floats;
}

/* Double the bucket array and redistribute the chains. */
static void grow(encoder_cache *c)
{
	size_t old_n = c->mask + 1, n = 2 * old_n;
	ec_entry **old = c->buckets;
	c->buckets = xcalloc(n, sizeof(*c->buckets));
	c->mask = n - 1;
	for (size_t i = 0; i < old_n; i++) {
		for (ec_entry *e = old[i], *next; e; e = next) {
			next = e->chain;
			size_t b = bucket_of(c, e->hash);
			e->chain = c->buckets[b];
			c->buckets[b] = e;
		}
	}
	free(old);
}

/* Unlink an unreferenced entry from its bucket and the LRU list, and free it. */
static void evict(encoder_cache *c, ec_entry *e)
{
	lru_remove(c, e);
	ec_entry **pp = &c->buckets[bucket_of(c, e->hash)];
	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	c->used -= e->n_floats;
	c->n_entries--;
	c->evictions++;
	if (c->drop)
		c->drop(c->drop_ctx, e->rows);
	free(e->rows);
	free(e);
}

encoder_cache *encoder_cache_new(size_t budget_floats)
{
	encoder_cache *c = xcalloc(1, sizeof(*c));
	c->budget = budget_floats;
	c->mask = 15;
	c->buckets = xcalloc(c->mask + 1, sizeof(*c->buckets));
	return c;
}

void encoder_cache_set_drop(encoder_cache *c, encoder_cache_drop_fn fn, void *ctx)
{
	c->drop = fn;
	c->drop_ctx = ctx;
}

void encoder_cache_free(encoder_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i <= c->mask; i++) {
		for (ec_entry *e = c->buckets[i], *next; e; e = next) {
			next = e->chain;
			if (c->drop)
				c->drop(c->drop_ctx, e->rows);
			free(e->rows);
			free(e);
		}
	}
	free(c->buckets);
	free(c);
}

const float *encoder_cache_acquire(encoder_cache *c, const uint8_t hash[32], size_t *n_floats)
{
	c->queries++;
	ec_entry *e = find(c, hash);
	if (!e) {
		*n_floats = 0;
		return NULL;
	}
	c->hits++;
	if (e->ref_cnt++ == 0) {
		lru_remove(c, e);
		c->n_referenced++;
	}
	*n_floats = e->n_floats;
	return e->rows;
}

bool encoder_cache_can_insert(const encoder_cache *c, size_t n_floats)
{
	/* used ≤ budget and evictable ≤ used, so neither side overflows */
	return n_floats <= c->budget - c->used + c->evictable;
}

/* Evicts only after the fit is known, so a NULL return leaves the cache as it was. */
float *encoder_cache_insert(encoder_cache *c, const uint8_t hash[32], size_t n_floats)
{
	if (!encoder_cache_can_insert(c, n_floats) || find(c, hash))
		return NULL;
	while (c->budget - c->used < n_floats)
		evict(c, c->lru_head);     /* non-NULL: can_insert holds */
	size_t bytes;
	if (!size_mul(n_floats, sizeof(float), &bytes))
		bytes = SIZE_MAX;          /* xmalloc aborts on an impossible size */
	ec_entry *e = xcalloc(1, sizeof(*e));
	memcpy(e->hash, hash, 32);
	e->rows = xmalloc(bytes);
	e->n_floats = n_floats;
	e->ref_cnt = 1;
	if ((size_t)c->n_entries >= c->mask + 1)
		grow(c);
	size_t b = bucket_of(c, hash);
	e->chain = c->buckets[b];
	c->buckets[b] = e;
	c->used += n_floats;
	c->n_entries++;
	c->n_referenced++;
	return e->rows;
}

void encoder_cache_release(encoder_cache *c, const uint8_t hash[32])
{
	ec_entry *e = find(c, hash);
	if (!e || e->ref_cnt == 0)
		return;
	if (--e->ref_cnt == 0) {
		lru_push_tail(c, e);
		c->n_referenced--;
	}
}

void encoder_cache_discard(encoder_cache *c, const uint8_t hash[32])
{
	ec_entry *e = c ? find(c, hash) : NULL;
	if (!e)
		return;
	if (e->ref_cnt) {
		e->ref_cnt = 0;
		c->n_referenced--;
		lru_push_tail(c, e);
	}
	evict(c, e);
}

void encoder_cache_get_stats(const encoder_cache *c, encoder_cache_stats *out)
{
	*out = (encoder_cache_stats){
		.used = c->used,
		.budget = c->budget,
		.n_entries = c->n_entries,
		.n_referenced = c->n_referenced,
		.queries = c->queries,
		.hits = c->hits,
		.evictions = c->evictions,
	};
}
