/*
 * kv_blocks: the KV block pool with reference counts and prefix caching, as vLLM V1's
 * BlockPool / KVCacheManager (notes/serving-anchors.md §6).
 *
 * The backend's KV pool holds n_blocks blocks of block_size positions. This module only does
 * the bookkeeping: which block holds what, who uses it, which may be reused.
 *
 *   block ─ ref_cnt ─ hash (set once the block is full and cached) ─ prev/next (free queue)
 *
 *   free queue (LRU, intrusive doubly linked, O(1) removal from the middle):
 *       head = evicted first ◄── … ◄── tail = freed last
 *   hash map: block hash ─► block (only full blocks of cached prefixes)
 *
 * Prefix caching: each full block of a sequence gets a chain hash
 *     h_i = sha256(h_{i-1} ‖ its block_size token ids ‖ the hashes of the images whose
 *                  placeholder range overlaps the block, with the offset of the overlap)
 * truncated to 128 bits; h_{-1} is a fixed root. Image pad tokens are all the same id, so the
 * image hash in the key is what tells two prompts with different pictures apart.
 *
 * A sequence's life:
 *   kv_blocks_match      longest chain of cached full blocks for its prompt (hits are touched:
 *                        ref_cnt++, out of the free queue); counted in the query/hit stats
 *   kv_blocks_allocate   more blocks for positions it is about to compute; 0 or "does not fit"
 *   kv_blocks_commit     after a step: newly full blocks get their hash and enter the map
 *   kv_blocks_release    ref_cnt-- of each of its blocks, last block first, so that a freed
 *                        request's tail (the longest, least shareable prefix) is evicted first;
 *                        blocks that reach 0 go to the free queue's tail keeping their hash
 * Allocation pops the free queue's head; a block that still has a hash is evicted then (its map
 * entry removed). The block table is append-only: a block that becomes full with the same hash
 * as a block already in the map stays private to its sequence (no duplicate entry).
 *
 * Threads: the engine thread only.
 */
#ifndef QVL_KV_BLOCKS_H
#define QVL_KV_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kv_hash {
	uint64_t lo, hi;
} kv_hash;

/* An image inside a token sequence: its placeholder run [start, start + n_tokens) and the
 * content hash of its processed pixels (img_patches.hash). */
typedef struct kv_image {
	int64_t start;
	int64_t n_tokens;
	uint8_t hash[32];
} kv_image;

/* A sequence's token stream as the block hashes see it (borrowed by every call). */
typedef struct kv_tokens {
	const int32_t *ids;
	int64_t n;                     /* tokens known so far (prompt + output) */
	const kv_image *images;        /* sorted by start; may be NULL when n_images is 0 */
	int n_images;
} kv_tokens;

/* A sequence's blocks (owned by the sequence, grown by kv_blocks_allocate). */
typedef struct kv_seq_blocks {
	int32_t *ids;                  /* owned: block table */
	int n, cap;
	int n_hashed;                  /* leading blocks whose hash is known (hashes[0..n_hashed)) */
	kv_hash *hashes;               /* owned: chain hashes of the full blocks */
	int hashes_cap;
} kv_seq_blocks;

typedef struct kv_blocks_stats {
	int n_blocks, n_free;          /* n_free: ref_cnt 0 (cached or empty) */
	int n_cached;                  /* blocks with a hash in the map */
	uint64_t queries, hits;        /* prefix-cache lookups and hits, in tokens */
	uint64_t evictions;            /* cached blocks evicted for reuse */
} kv_blocks_stats;

typedef struct kv_blocks kv_blocks;

/* caching: prefix caching on (--enable-prefix-caching, the default) or off. Returns NULL when
 * n_blocks or block_size is below 1. */
kv_blocks *kv_blocks_new(int n_blocks, int block_size, bool caching);
void kv_blocks_free(kv_blocks *kb);

int kv_blocks_block_size(const kv_blocks *kb);

/* Find the longest run of cached full blocks that starts the sequence, among its first
 * max_tokens tokens (the caller passes prompt length - 1 so that at least one position is
 * computed and yields logits). The hits are appended to sb (which must be empty) and touched.
 * Returns the number of tokens covered (a multiple of block_size). Counts max_tokens as queried
 * and the result as hit. With caching off, returns 0 and counts nothing. */
int64_t kv_blocks_match(kv_blocks *kb, const kv_tokens *t, int64_t max_tokens, kv_seq_blocks *sb);

/* Make sb hold blocks for positions 0 .. n_positions-1. Returns 0, or 1 when the free queue
 * has too few blocks (nothing is allocated then). */
int kv_blocks_allocate(kv_blocks *kb, kv_seq_blocks *sb, int64_t n_positions);

/* Number of blocks kv_blocks_allocate(sb, n_positions) would take from the free queue. */
int kv_blocks_needed(const kv_blocks *kb, const kv_seq_blocks *sb, int64_t n_positions);

/* The sequence's KV now holds n_computed positions of t: hash its newly full blocks and enter
 * them into the map (no-op with caching off). */
void kv_blocks_commit(kv_blocks *kb, kv_seq_blocks *sb, const kv_tokens *t, int64_t n_computed);

/* Give back every block of sb (last first) and empty it (its arrays are kept for reuse). */
void kv_blocks_release(kv_blocks *kb, kv_seq_blocks *sb);

/* Free sb's arrays (after kv_blocks_release). */
void kv_seq_blocks_deinit(kv_seq_blocks *sb);

/* Drop every cached hash (blocks in use keep their contents; nothing will match them). */
void kv_blocks_reset_cache(kv_blocks *kb);

void kv_blocks_get_stats(const kv_blocks *kb, kv_blocks_stats *out);

/* The chain hash of one full block (exposed for tests). parent is NULL for the first block. */
kv_hash kv_blocks_hash(const kv_hash *parent, const kv_tokens *t, int64_t block_start,
		       int block_size);

/* For tests: block id's reference count (into *ref_cnt when not NULL); returns whether the block
 * holds a hash in the map (then *hash gets it when not NULL). */
bool kv_blocks_block_info(const kv_blocks *kb, int32_t id, int *ref_cnt, kv_hash *hash);

/* For tests: walk every internal structure (free queue links and count against the reference
 * counts, map entries against block hashes). Returns NULL when every invariant holds, else a
 * static string naming the first violation. O(n_blocks). */
const char *kv_blocks_check(const kv_blocks *kb);

#endif
