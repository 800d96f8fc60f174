/*
 * bpe: merge-rank BPE of one word, and the word cache (see bpe.h for the contract).
 *
 * Merge table: open addressing with linear probing, at most half full, one 16-byte slot per
 * merge (one cache line per probe):
 *
 *   slot = { key = a << 32 | b, rank, merged }          key UINT64_MAX = empty
 *
 * Merging follows tokenizers' Word::merge_all: always merge the pair of lowest rank, the leftmost
 * of equal ranks. Two implementations of that one rule:
 *   - words of at most SMALL_WORD symbols (nearly all): arrays on the stack, a linear scan for the
 *     best pair, O(n²) but tiny;
 *   - longer words (a 4 MB run of letters is one word): a linked list of symbols and a binary
 *     min-heap of (rank, position) with lazy deletion, O(n log n), heap memory only.
 * A heap entry is stale when the pair now at its position has another rank: symbols only grow
 * rightwards, so the same rank means the same pair (ranks are unique per pair).
 *
 * Word cache: CACHE_SETS sets of CACHE_WAYS entries, an entry = the word's bytes and its ids in one
 * owned allocation; a set is guarded by one of CACHE_STRIPES mutexes (set index mod stripes);
 * replacement is round-robin within the set. Words longer than CACHE_MAX_WORD bytes are not
 * cached (they are rare, and a long word rarely repeats). The lock is never held while merging.
 */
#include "bpe.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

#define SMALL_WORD 64
#define CACHE_SETS 8192
#define CACHE_WAYS 4
#define CACHE_STRIPES 64
#define CACHE_MAX_WORD 64
#define EMPTY_KEY UINT64_MAX
#define NO_RANK UINT32_MAX
#define NO_POS UINT32_MAX
#define REMOVED INT32_MIN   /* a symbol merged into its left neighbour; ids are never negative */

struct merge_slot {
	uint64_t key;
	uint32_t rank;
	int32_t merged;
};

struct cache_entry {
	uint64_t hash;
	uint8_t *data;     /* owned: klen word bytes, then nids int32 ids (unaligned) */
	uint16_t klen, nids;
};

struct cache_set {
	struct cache_entry e[CACHE_WAYS];
	unsigned victim;
};

struct word_cache {
	pthread_mutex_t lock[CACHE_STRIPES];
	struct cache_set *sets;   /* owned; CACHE_SETS */
};

struct bpe {
	int32_t byte_ids[256];
	int32_t unk_id;
	bool fuse_unk;
	struct merge_slot *slots;   /* owned; mask + 1 */
	size_t mask, count;
	struct word_cache *cache;   /* owned; mutable behind a const bpe */
};

/* The home slot of a pair key (murmur3's 64-bit finaliser). */
static inline size_t slot_of(uint64_t key, size_t mask)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return (size_t)key & mask;
}

/* The key of the pair (a, b); never EMPTY_KEY, since ids are below 2^31. */
static inline uint64_t pair_key(int32_t a, int32_t b)
{
	return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* An empty merge table of nslots (a power of two) slots. */
static void table_alloc(bpe *m, size_t nslots)
{
	m->slots = xmalloc(nslots * sizeof(*m->slots));
	for (size_t i = 0; i < nslots; i++)
		m->slots[i].key = EMPTY_KEY;
	m->mask = nslots - 1;
	m->count = 0;
}

bpe *bpe_new(const int32_t byte_ids[256], int32_t unk_id, bool fuse_unk, size_t merges_hint)
{
	bpe *m = xcalloc(1, sizeof(*m));
	memcpy(m->byte_ids, byte_ids, sizeof(m->byte_ids));
	m->unk_id = unk_id;
	m->fuse_unk = fuse_unk;
	size_t n = 1024;
	while (n < 2 * merges_hint && n < ((size_t)1 << 40))
		n *= 2;
	table_alloc(m, n);
	m->cache = xcalloc(1, sizeof(*m->cache));
	m->cache->sets = xcalloc(CACHE_SETS, sizeof(struct cache_set));
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&m->cache->lock[i], NULL);
	return m;
}

void bpe_free(bpe *m)
{
	if (!m)
		return;
	for (size_t s = 0; s < CACHE_SETS; s++)
		for (int w = 0; w < CACHE_WAYS; w++)
			free(m->cache->sets[s].e[w].data);
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_destroy(&m->cache->lock[i]);
	free(m->cache->sets);
	free(m->cache);
	free(m->slots);
	free(m);
}

/* Insert or replace key (the table has room). */
static void table_put(bpe *m, uint64_t key, uint32_t rank, int32_t merged)
{
	size_t i = slot_of(key, m->mask);
	while (m->slots[i].key != EMPTY_KEY && m->slots[i].key != key)
		i = (i + 1) & m->mask;
	if (m->slots[i].key == EMPTY_KEY)
		m->count++;
	m->slots[i] = (struct merge_slot){ key, rank, merged };
}

void bpe_add_merge(bpe *m, int32_t a, int32_t b, int32_t merged, uint32_t rank)
{
	if (2 * (m->count + 1) > m->mask + 1) {
		struct merge_slot *old = m->slots;
		size_t oldn = m->mask + 1;
		table_alloc(m, 2 * oldn);
		for (size_t i = 0; i < oldn; i++)
			if (old[i].key != EMPTY_KEY)
				table_put(m, old[i].key, old[i].rank, old[i].merged);
		free(old);
	}
	table_put(m, pair_key(a, b), rank, merged);
}

/* The rank of the merge (a, b), NO_RANK if none; *merged gets the merged id. */
static inline uint32_t merge_rank(const bpe *m, int32_t a, int32_t b, int32_t *merged)
{
	uint64_t key = pair_key(a, b);
	for (size_t i = slot_of(key, m->mask);; i = (i + 1) & m->mask) {
		const struct merge_slot *s = &m->slots[i];
		if (s->key == key) {
			*merged = s->merged;
			return s->rank;
		}
		if (s->key == EMPTY_KEY)
			return NO_RANK;
	}
}

bool bpe_merge_of(const bpe *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged)
{
	int32_t mg = -1;
	uint32_t r = merge_rank(m, a, b, &mg);
	if (r == NO_RANK)
		return false;
	*rank = r;
	*merged = mg;
	return true;
}

/* The initial symbols of a word: one per byte, unknown bytes as tokenizers treats characters
 * missing from the vocabulary. Returns the count (≤ n). */
static size_t initial_symbols(const bpe *m, const uint8_t *w, size_t n, int32_t *ids)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t id = m->byte_ids[w[i]];
		if (id < 0) {
			if (m->unk_id < 0)
				continue;
			if (m->fuse_unk && k > 0 && ids[k - 1] == m->unk_id)
				continue;
			id = m->unk_id;
		}
		ids[k++] = id;
	}
	return k;
}

/* Merge ids[0..n), n ≤ SMALL_WORD, in place; returns the new count. */
static size_t merge_small(const bpe *m, int32_t *ids, size_t n)
{
	uint32_t rank[SMALL_WORD];
	int32_t merged[SMALL_WORD];
	for (size_t i = 0; i + 1 < n; i++)
		rank[i] = merge_rank(m, ids[i], ids[i + 1], &merged[i]);
	while (n > 1) {
		size_t best = 0;
		for (size_t i = 1; i + 1 < n; i++)
			if (rank[i] < rank[best])
				best = i;
		if (rank[best] == NO_RANK)
			break;
		ids[best] = merged[best];
		/* drop symbol best+1 and the pair (best+1, best+2); pairs right of it move left */
		memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof(*ids));
		if (n >= best + 3) {
			memmove(rank + best + 1, rank + best + 2, (n - best - 3) * sizeof(*rank));
			memmove(merged + best + 1, merged + best + 2, (n - best - 3) * sizeof(*merged));
		}
		n--;
		if (best + 1 < n)
			rank[best] = merge_rank(m, ids[best], ids[best + 1], &merged[best]);
		if (best > 0)
			rank[best - 1] = merge_rank(m, ids[best - 1], ids[best], &merged[best - 1]);
	}
	return n;
}

/* ---- long words: linked symbols and a (rank, position) min-heap ---- */

struct heap {
	uint64_t *v;   /* owned; rank << 32 | position */
	size_t n, cap;
};

/* Push (rank, pos); the heap orders by rank, then position. */
static void heap_push(struct heap *h, uint32_t rank, uint32_t pos)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 64;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
	uint64_t x = ((uint64_t)rank << 32) | pos;
	size_t i = h->n++;
	while (i > 0 && h->v[(i - 1) / 2] > x) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = x;
}

/* Pop the smallest entry (the heap is not empty). */
static uint64_t heap_pop(struct heap *h)
{
	uint64_t top = h->v[0], x = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1] < h->v[c])
			c++;
		if (h->v[c] >= x)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0)
		h->v[i] = x;
	return top;
}

/* Merge ids[0..n) in place, 2 ≤ n < NO_POS; returns the new count. */
static size_t merge_large(const bpe *m, int32_t *ids, size_t n)
{
	uint32_t *prev = xmalloc(n * sizeof(*prev)), *next = xmalloc(n * sizeof(*next));
	struct heap h = { 0 };
	for (size_t i = 0; i < n; i++) {
		prev[i] = i > 0 ? (uint32_t)i - 1 : NO_POS;
		next[i] = i + 1 < n ? (uint32_t)i + 1 : NO_POS;
	}
	int32_t mg = -1;
	for (size_t i = 0; i + 1 < n; i++) {
		uint32_t r = merge_rank(m, ids[i], ids[i + 1], &mg);
		if (r != NO_RANK)
			heap_push(&h, r, (uint32_t)i);
	}
	while (h.n > 0) {
		uint64_t top = heap_pop(&h);
		uint32_t rank = (uint32_t)(top >> 32), pos = (uint32_t)top;
		uint32_t nx = next[pos];
		if (ids[pos] == REMOVED || nx == NO_POS || merge_rank(m, ids[pos], ids[nx], &mg) != rank)
			continue;   /* stale */
		ids[pos] = mg;
		ids[nx] = REMOVED;
		next[pos] = next[nx];
		if (next[nx] != NO_POS)
			prev[next[nx]] = pos;
		uint32_t r;
		if (prev[pos] != NO_POS && (r = merge_rank(m, ids[prev[pos]], ids[pos], &mg)) != NO_RANK)
			heap_push(&h, r, prev[pos]);
		if (next[pos] != NO_POS && (r = merge_rank(m, ids[pos], ids[next[pos]], &mg)) != NO_RANK)
			heap_push(&h, r, pos);
	}
	/* symbol 0 is never removed: merges remove the right symbol */
	size_t k = 0;
	for (uint32_t i = 0; i != NO_POS; i = next[i])
		ids[k++] = ids[i];
	free(h.v);
	free(prev);
	free(next);
	return k;
}

/* ---- the word cache ---- */

/* A 64-bit hash of a word (eight bytes per step, splitmix-style mixing). */
static uint64_t hash_word(const uint8_t *s, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
		h ^= h >> 31;
		s += 8;
		n -= 8;
	}
	uint64_t w = 0;
	memcpy(&w, s, n);
	h = (h ^ w) * 0x94d049bb133111ebull;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 32);
}

/* Copy the cached ids of word w into ids; returns their count, or -1 when not cached. */
static int cache_get(struct word_cache *c, uint64_t h, const uint8_t *w, size_t n, int32_t *ids)
{
	size_t s = h & (CACHE_SETS - 1);
	int found = -1;
	pthread_mutex_lock(&c->lock[s % CACHE_STRIPES]);
	struct cache_set *set = &c->sets[s];
	for (int k = 0; k < CACHE_WAYS; k++) {
		struct cache_entry *e = &set->e[k];
		if (e->data && e->hash == h && e->klen == n && memcmp(e->data, w, n) == 0) {
			memcpy(ids, e->data + n, e->nids * sizeof(int32_t));
			found = e->nids;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock[s % CACHE_STRIPES]);
	return found;
}

/* Cache the ids of word w (copied); keeps the entry of a thread that was first. */
static void cache_put(struct word_cache *c, uint64_t h, const uint8_t *w, size_t n,
		      const int32_t *ids, size_t nids)
{
	uint8_t *data = xmalloc(n + nids * sizeof(int32_t));
	memcpy(data, w, n);
	memcpy(data + n, ids, nids * sizeof(int32_t));
	size_t s = h & (CACHE_SETS - 1);
	pthread_mutex_lock(&c->lock[s % CACHE_STRIPES]);
	struct cache_set *set = &c->sets[s];
	for (int k = 0; k < CACHE_WAYS; k++) {
		struct cache_entry *e = &set->e[k];
		if (e->data && e->hash == h && e->klen == n && memcmp(e->data, w, n) == 0) {
			/* another thread was first */
			pthread_mutex_unlock(&c->lock[s % CACHE_STRIPES]);
			free(data);
			return;
		}
	}
	struct cache_entry *e = &set->e[set->victim];
	set->victim = (set->victim + 1) % CACHE_WAYS;
	uint8_t *old = e->data;
	*e = (struct cache_entry){ h, data, (uint16_t)n, (uint16_t)nids };
	pthread_mutex_unlock(&c->lock[s % CACHE_STRIPES]);
	free(old);
}

void bpe_encode(const bpe *m, const uint8_t *word, size_t n, tok_ids *out)
{
	if (n == 0)
		return;
	if (n <= CACHE_MAX_WORD) {
		int32_t ids[CACHE_MAX_WORD];
		uint64_t h = hash_word(word, n);
		int k = cache_get(m->cache, h, word, n, ids);
		if (k < 0) {
			size_t cnt = initial_symbols(m, word, n, ids);
			cnt = merge_small(m, ids, cnt);
			cache_put(m->cache, h, word, n, ids, cnt);
			k = (int)cnt;
		}
		for (int i = 0; i < k; i++)
			tok_ids_push(out, ids[i]);
		return;
	}
	/* Positions are 32-bit: a single word of 4 GiB would need ~50 GiB here anyway. */
	if (n >= NO_POS) {
		log_msg(LOG_LEVEL_CRIT, "bpe", "a pre-token of %zu bytes is too long", n);
		abort();
	}
	int32_t *ids = xmalloc(n * sizeof(*ids));
	size_t cnt = initial_symbols(m, word, n, ids);
	cnt = cnt <= SMALL_WORD ? merge_small(m, ids, cnt) : merge_large(m, ids, cnt);
	for (size_t i = 0; i < cnt; i++)
		tok_ids_push(out, ids[i]);
	free(ids);
}
