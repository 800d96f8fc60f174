/*
 * kv_blocks: the KV block pool's bookkeeping — reference counts, the LRU free queue and the
 * prefix-cache map (see kv_blocks.h for the contract and the life of a sequence).
 *
 *   blocks[n_blocks]   preallocated, id = index: ref_cnt, hash (valid while hashed), prev/next
 *                      links of the free queue (NONE at the ends and while not queued)
 *
 *   free queue         every block with ref_cnt 0, cached or empty; initially 0, 1, …, n-1
 *       head ─► [b] ◄─► [b] ◄─► … ◄─► [b] ◄─ tail
 *       allocate pops the head (evicting its hash, if any); release appends at the tail
 *
 *   map                hash ─► block id: open addressing with linear probing over slots[cap]
 *                      (block ids, NONE when empty), cap a power of two ≥ 2·n_blocks so the load
 *                      stays ≤ ½. The key is the block's own hash, stored in the block; the slot
 *                      index is its low bits (SHA-256 output is uniform). Removal shifts the rest
 *                      of the probe run back instead of leaving a tombstone, so lookups never
 *                      degrade: every operation is O(1) expected.
 *
 * Invariants (kv_blocks_check verifies them):
 *   queued ⇔ ref_cnt == 0;  n_free = length of the free queue
 *   hashed ⇔ the block is in the map under its hash; no two hashed blocks share a hash
 *   with caching off nothing is ever hashed
 *
 * A block's chain hash is SHA-256 truncated to 128 bits (lo = bytes 0..7, hi = bytes 8..15, both
 * little-endian) of
 *   parent hash (lo ‖ hi, 16 bytes LE) — or ROOT for the first block
 *   ‖ the block_size token ids as int32 LE
 *   ‖ for each image whose placeholder run overlaps the block, in order:
 *        its 32-byte content hash ‖ int64 LE offset of the overlap's start within the image
 * Every field has a fixed length for a given block_size, so the encoding is unambiguous.
 *
 * Ownership: the pool owns blocks and slots; a kv_seq_blocks' arrays belong to its sequence and
 * are only grown here. Threads: the engine thread only.
 */
#include "kv_blocks.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "sha256.h"

#define NONE (-1)

static const char ROOT[] = "qvl/kv_blocks/root/v1";

typedef struct kv_block {
	kv_hash hash;                  /* valid while hashed */
	int32_t prev, next;            /* free queue links */
	int32_t ref_cnt;
	bool hashed;                   /* in the map under hash */
	bool queued;                   /* in the free queue */
} kv_block;

struct kv_blocks {
	int n_blocks, block_size;
	bool caching;
	kv_block *blocks;              /* owned: n_blocks */
	int32_t head, tail;            /* free queue ends, NONE when empty */
	int n_free;
	int32_t *slots;                /* owned: the map, mask + 1 slots */
	size_t mask;
	int n_cached;
	uint64_t queries, hits, evictions;
};

/* A broken caller contract (double release, match into a non-empty table): the bookkeeping
 * would silently corrupt the KV of other requests, so stop here. */
static void die(const char *what)
{
	log_msg(LOG_LEVEL_CRIT, "kv_blocks", "contract violation: %s", what);
	abort();
}

/* ---- free queue ---------------------------------------------------------------------------- */

static void fq_remove(kv_blocks *kb, int32_t id)
{
	kv_block *b = &kb->blocks[id];
	if (b->prev != NONE)
		kb->blocks[b->prev].next = b->next;
	else
		kb->head = b->next;
	if (b->next != NONE)
		kb->blocks[b->next].prev = b->prev;
	else
		kb->tail = b->prev;
	b->prev = b->next = NONE;
	b->queued = false;
	kb->n_free--;
}

static void fq_push_tail(kv_blocks *kb, int32_t id)
{
	kv_block *b = &kb->blocks[id];
	b->prev = kb->tail;
	b->next = NONE;
	if (kb->tail != NONE)
		kb->blocks[kb->tail].next = id;
	else
		kb->head = id;
	kb->tail = id;
	b->queued = true;
	kb->n_free++;
}

/* ---- map ----------------------------------------------------------------------------------- */

static size_t home(const kv_blocks *kb, kv_hash h)
{
	return (size_t)h.lo & kb->mask;
}

static bool hash_eq(kv_hash a, kv_hash b)
{
	return a.lo == b.lo && a.hi == b.hi;
}

/* The block cached under h, or NONE. */
static int32_t map_find(const kv_blocks *kb, kv_hash h)
{
	for (size_t i = home(kb, h);; i = (i + 1) & kb->mask) {
		int32_t id = kb->slots[i];
		if (id == NONE)
			return NONE;
		if (hash_eq(kb->blocks[id].hash, h))
			return id;
	}
}

/* Enter block id under its hash (which must be absent from the map). */
static void map_insert(kv_blocks *kb, int32_t id)
{
	size_t i = home(kb, kb->blocks[id].hash);
	while (kb->slots[i] != NONE)
		i = (i + 1) & kb->mask;
	kb->slots[i] = id;
	kb->blocks[id].hashed = true;
	kb->n_cached++;
}

/* Take block id out of the map and clear its hash. Backward-shift deletion: walk the probe run
 * after the hole and move back every entry whose home slot does not lie cyclically in
 * (hole, j], so that no lookup meets an empty slot before its key. */
static void map_remove(kv_blocks *kb, int32_t id)
{
	size_t i = home(kb, kb->blocks[id].hash);
	while (kb->slots[i] != id)
		i = (i + 1) & kb->mask;
	for (size_t j = i;;) {
		j = (j + 1) & kb->mask;
		int32_t other = kb->slots[j];
		if (other == NONE)
			break;
		size_t k = home(kb, kb->blocks[other].hash);
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			kb->slots[i] = other;
			i = j;
		}
	}
	kb->slots[i] = NONE;
	kb->blocks[id].hashed = false;
	kb->blocks[id].hash = (kv_hash){ 0, 0 };
	kb->n_cached--;
}

/* ---- sequence tables ----------------------------------------------------------------------- */

static void sb_push(kv_seq_blocks *sb, int32_t id)
{
	if (sb->n == sb->cap) {
		sb->cap = sb->cap ? 2 * sb->cap : 16;
		sb->ids = xrealloc(sb->ids, (size_t)sb->cap * sizeof(*sb->ids));
	}
	sb->ids[sb->n++] = id;
}

static void sb_set_hash(kv_seq_blocks *sb, int i, kv_hash h)
{
	if (i >= sb->hashes_cap) {
		int cap = sb->hashes_cap ? 2 * sb->hashes_cap : 16;
		while (cap <= i)
			cap *= 2;
		sb->hashes = xrealloc(sb->hashes, (size_t)cap * sizeof(*sb->hashes));
		sb->hashes_cap = cap;
	}
	sb->hashes[i] = h;
}

/* ---- public API ---------------------------------------------------------------------------- */

/* Returns NULL when n_blocks or block_size is below 1 (or the map would not fit an int32 id
 * space). Every block starts empty and free, queued in id order. */
kv_blocks *kv_blocks_new(int n_blocks, int block_size, bool caching)
{
	if (n_blocks < 1 || block_size < 1 || n_blocks > (1 << 29))
		return NULL;
	kv_blocks *kb = xcalloc(1, sizeof(*kb));
	kb->n_blocks = n_blocks;
	kb->block_size = block_size;
	kb->caching = caching;
	kb->blocks = xcalloc((size_t)n_blocks, sizeof(*kb->blocks));
	kb->head = kb->tail = NONE;
	for (int32_t i = 0; i < n_blocks; i++) {
		kb->blocks[i].prev = kb->blocks[i].next = NONE;
		fq_push_tail(kb, i);
	}
	size_t cap = 16;
	while (cap < 2 * (size_t)n_blocks)
		cap *= 2;
	kb->mask = cap - 1;
	kb->slots = xmalloc(cap * sizeof(*kb->slots));
	for (size_t i = 0; i < cap; i++)
		kb->slots[i] = NONE;
	return kb;
}

void kv_blocks_free(kv_blocks *kb)
{
	if (!kb)
		return;
	free(kb->blocks);
	free(kb->slots);
	free(kb);
}

int kv_blocks_block_size(const kv_blocks *kb)
{
	return kb->block_size;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The tokens [block_start, block_start + block_size) must lie within t->n (callers check). */
kv_hash kv_blocks_hash(const kv_hash *parent, const kv_tokens *t, int64_t block_start,
		       int block_size)
{
	sha256_ctx c;
	sha256_init(&c);
	uint8_t buf[256];
	if (parent) {
		put_u64(buf, parent->lo);
		put_u64(buf + 8, parent->hi);
		sha256_update(&c, buf, 16);
	} else {
		sha256_update(&c, ROOT, sizeof(ROOT) - 1);
	}
	size_t nb = 0;
	for (int i = 0; i < block_size; i++) {
		put_u32(buf + nb, (uint32_t)t->ids[block_start + i]);
		nb += 4;
		if (nb == sizeof(buf)) {
			sha256_update(&c, buf, nb);
			nb = 0;
		}
	}
	sha256_update(&c, buf, nb);
	int64_t end = block_start + block_size;
	for (int k = 0; k < t->n_images; k++) {
		const kv_image *im = &t->images[k];
		if (im->start >= end)
			break;                 /* sorted by start: no later image overlaps either */
		if (im->start + im->n_tokens <= block_start)
			continue;
		memcpy(buf, im->hash, 32);
		int64_t offset = block_start > im->start ? block_start - im->start : 0;
		put_u64(buf + 32, (uint64_t)offset);
		sha256_update(&c, buf, 40);
	}
	uint8_t d[32];
	sha256_final(&c, d);
	return (kv_hash){ .lo = get_u64(d), .hi = get_u64(d + 8) };
}

/* ref_cnt++ of a cache hit, taking it out of the free queue when it was unreferenced. */
static void touch(kv_blocks *kb, int32_t id)
{
	if (kb->blocks[id].ref_cnt == 0)
		fq_remove(kb, id);
	kb->blocks[id].ref_cnt++;
}

/* sb must be empty (aborts otherwise). The hashes of the hits are kept in sb->hashes so that
 * kv_blocks_commit continues the chain from the last hit without recomputing. */
int64_t kv_blocks_match(kv_blocks *kb, const kv_tokens *t, int64_t max_tokens, kv_seq_blocks *sb)
{
	if (sb->n != 0)
		die("kv_blocks_match into a non-empty block table");
	sb->n_hashed = 0;
	if (!kb->caching || max_tokens <= 0)
		return 0;
	kb->queries += (uint64_t)max_tokens;
	int64_t limit = max_tokens < t->n ? max_tokens : t->n;
	int64_t n_full = limit / kb->block_size;
	/* chain hashes are distinct per position, so a chain never holds more than every block */
	if (n_full > kb->n_blocks)
		n_full = kb->n_blocks;
	for (int i = 0; i < n_full; i++) {
		kv_hash h = kv_blocks_hash(i ? &sb->hashes[i - 1] : NULL, t,
					   (int64_t)i * kb->block_size, kb->block_size);
		int32_t id = map_find(kb, h);
		if (id == NONE)
			break;
		touch(kb, id);
		sb_push(sb, id);
		sb_set_hash(sb, i, h);
		sb->n_hashed = i + 1;
	}
	int64_t matched = (int64_t)sb->n * kb->block_size;
	kb->hits += (uint64_t)matched;
	return matched;
}

int kv_blocks_needed(const kv_blocks *kb, const kv_seq_blocks *sb, int64_t n_positions)
{
	if (n_positions <= 0)
		return 0;
	int64_t want = (n_positions + kb->block_size - 1) / kb->block_size - sb->n;
	if (want <= 0)
		return 0;
	return want > INT_MAX ? INT_MAX : (int)want;
}

/* All or nothing: either sb grows to cover n_positions or nothing changes. Each block comes
 * from the free queue's head; one that still carries a hash is evicted from the map then. */
int kv_blocks_allocate(kv_blocks *kb, kv_seq_blocks *sb, int64_t n_positions)
{
	int need = kv_blocks_needed(kb, sb, n_positions);
	if (need > kb->n_free)
		return 1;
	for (int i = 0; i < need; i++) {
		int32_t id = kb->head;
		fq_remove(kb, id);
		if (kb->blocks[id].hashed) {
			map_remove(kb, id);
			kb->evictions++;
		}
		kb->blocks[id].ref_cnt = 1;
		sb_push(sb, id);
	}
	return 0;
}

/* Blocks n_hashed .. full-1 are hashed in chain order, where full counts the blocks that are
 * complete in both n_computed and t->n and allocated in sb. A block whose hash is already in
 * the map (an identical block computed by another sequence) stays private: the block table is
 * append-only, so it cannot be swapped for the cached one. */
void kv_blocks_commit(kv_blocks *kb, kv_seq_blocks *sb, const kv_tokens *t, int64_t n_computed)
{
	if (!kb->caching)
		return;
	int64_t limit = n_computed < t->n ? n_computed : t->n;
	int64_t full = limit / kb->block_size;
	if (full > sb->n)
		full = sb->n;
	for (int i = sb->n_hashed; i < full; i++) {
		kv_hash h = kv_blocks_hash(i ? &sb->hashes[i - 1] : NULL, t,
					   (int64_t)i * kb->block_size, kb->block_size);
		sb_set_hash(sb, i, h);
		sb->n_hashed = i + 1;
		int32_t id = sb->ids[i];
		if (kb->blocks[id].hashed || map_find(kb, h) != NONE)
			continue;
		kb->blocks[id].hash = h;
		map_insert(kb, id);
	}
}

/* Last block first, so that at equal release time a request's tail — the longest, least
 * shareable prefix — sits nearer the head and is evicted before its first blocks. */
void kv_blocks_release(kv_blocks *kb, kv_seq_blocks *sb)
{
	for (int i = sb->n - 1; i >= 0; i--) {
		int32_t id = sb->ids[i];
		kv_block *b = &kb->blocks[id];
		if (b->ref_cnt <= 0)
			die("kv_blocks_release of an unreferenced block");
		if (--b->ref_cnt == 0)
			fq_push_tail(kb, id);
	}
	sb->n = 0;
	sb->n_hashed = 0;
}

void kv_seq_blocks_deinit(kv_seq_blocks *sb)
{
	free(sb->ids);
	free(sb->hashes);
	*sb = (kv_seq_blocks){ 0 };
}

/* Free queue order and reference counts are untouched; only the map empties. */
void kv_blocks_reset_cache(kv_blocks *kb)
{
	for (size_t i = 0; i <= kb->mask; i++)
		kb->slots[i] = NONE;
	for (int i = 0; i < kb->n_blocks; i++) {
		kb->blocks[i].hashed = false;
		kb->blocks[i].hash = (kv_hash){ 0, 0 };
	}
	kb->n_cached = 0;
}

void kv_blocks_get_stats(const kv_blocks *kb, kv_blocks_stats *out)
{
	*out = (kv_blocks_stats){
		.n_blocks = kb->n_blocks,
		.n_free = kb->n_free,
		.n_cached = kb->n_cached,
		.queries = kb->queries,
		.hits = kb->hits,
		.evictions = kb->evictions,
	};
}

bool kv_blocks_block_info(const kv_blocks *kb, int32_t id, int *ref_cnt, kv_hash *hash)
{
	if (id < 0 || id >= kb->n_blocks) {
		if (ref_cnt)
			*ref_cnt = 0;
		return false;
	}
	const kv_block *b = &kb->blocks[id];
	if (ref_cnt)
		*ref_cnt = b->ref_cnt;
	if (b->hashed && hash)
		*hash = b->hash;
	return b->hashed;
}

const char *kv_blocks_check(const kv_blocks *kb)
{
	/* free queue: links consistent both ways, every member unreferenced and marked queued */
	int n = 0;
	int32_t prev = NONE;
	for (int32_t id = kb->head; id != NONE; id = kb->blocks[id].next) {
		if (id < 0 || id >= kb->n_blocks)
			return "free queue link out of range";
		if (++n > kb->n_blocks)
			return "free queue has a cycle";
		const kv_block *b = &kb->blocks[id];
		if (b->prev != prev)
			return "free queue prev link does not match";
		if (!b->queued)
			return "block in the free queue not marked queued";
		if (b->ref_cnt != 0)
			return "referenced block in the free queue";
		prev = id;
	}
	if (prev != kb->tail)
		return "free queue tail does not match";
	if (n != kb->n_free)
		return "n_free does not match the free queue";
	int n_hashed = 0, n_zero = 0;
	for (int i = 0; i < kb->n_blocks; i++) {
		const kv_block *b = &kb->blocks[i];
		if (b->ref_cnt < 0)
			return "negative reference count";
		if (b->ref_cnt == 0)
			n_zero++;
		if (b->queued != (b->ref_cnt == 0))
			return "queued flag disagrees with the reference count";
		if (b->hashed) {
			n_hashed++;
			if (!kb->caching)
				return "hashed block with caching off";
			if (map_find(kb, b->hash) != i)
				return "hashed block not found in the map under its hash";
		}
	}
	if (n_zero != n)
		return "unreferenced block outside the free queue";
	int n_slots = 0;
	for (size_t i = 0; i <= kb->mask; i++) {
		int32_t id = kb->slots[i];
		if (id == NONE)
			continue;
		if (id < 0 || id >= kb->n_blocks)
			return "map entry out of range";
		if (!kb->blocks[id].hashed)
			return "map entry points to an unhashed block";
		n_slots++;
	}
	if (n_slots != n_hashed || n_hashed != kb->n_cached)
		return "n_cached does not match the map";
	return NULL;
}
