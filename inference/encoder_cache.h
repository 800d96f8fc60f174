/*
 * encoder_cache: vision-encoder outputs kept across steps and requests, keyed by the image's
 * content hash (img_patches.hash), as vLLM V1's EncoderCacheManager
 * (notes/serving-anchors.md §6, "Encoder budget for multimodal").
 *
 * A chunked prefill may need an image's embeddings in several steps, and two requests with the
 * same picture need them once: the encoder runs once per distinct image while its output is
 * resident. Residency is bounded by a budget in floats (rows × hidden of the merged output).
 *
 *   hash map: image hash ─► entry { rows (owned), n_floats, ref_cnt }
 *   LRU list of unreferenced entries:
 *       head = released longest ago, evicted first ◄── … ◄── tail = released last
 *
 * A request that schedules an image acquires it (a hit: ref_cnt++) or, on a miss, inserts it
 * (ref_cnt 1) and fills the returned buffer with the encoder's output; it releases the image
 * once its placeholder tokens are all computed. An entry whose ref_cnt drops to 0 stays cached
 * and evictable; insert evicts such entries, least recently released first, only as far as it
 * must and only when the new entry then fits — "does not fit" is a normal NULL return, and the
 * caller (the scheduler) cuts the request's chunk before that image.
 *
 * used = the sizes of every entry, referenced or not; used ≤ budget always.
 *
 * Threads: the engine thread only.
 */
#ifndef QVL_ENCODER_CACHE_H
#define QVL_ENCODER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct encoder_cache encoder_cache;

typedef struct encoder_cache_stats {
	size_t used, budget;           /* floats resident (every entry) and the limit */
	int n_entries, n_referenced;   /* entries, and those with ref_cnt > 0 */
	uint64_t queries, hits;        /* encoder_cache_acquire calls and hits */
	uint64_t evictions;            /* entries evicted to make room */
} encoder_cache_stats;

encoder_cache *encoder_cache_new(size_t budget_floats);
/* Frees every entry and its rows, referenced or not; NULL is a no-op. */
void encoder_cache_free(encoder_cache *c);

/* Look up hash: on a hit ref_cnt++ and return its rows (*n_floats set), NULL on a miss (then
 * *n_floats is 0); counts one query (and a hit). The rows stay valid until the matching
 * release. */
const float *encoder_cache_acquire(encoder_cache *c, const uint8_t hash[32], size_t *n_floats);

/* Whether an entry of n_floats fits now, counting unreferenced entries as evictable. */
bool encoder_cache_can_insert(const encoder_cache *c, size_t n_floats);

/* Insert a new entry (hash must be absent) with ref_cnt 1, evicting unreferenced entries least
 * recently released first until it fits; returns the (uninitialised) buffer of n_floats to fill,
 * or NULL when it cannot fit (nothing is evicted then) or the hash is already present (nothing
 * changes then). */
float *encoder_cache_insert(encoder_cache *c, const uint8_t hash[32], size_t n_floats);

/* ref_cnt--; at 0 the entry stays cached (evictable, LRU by release time). Unknown hash or an
 * entry already at 0: no-op. */
void encoder_cache_release(encoder_cache *c, const uint8_t hash[32]);

/* Drop the entry now, referenced or not (its rows were never filled: the encoder failed).
 * Later releases of the hash are no-ops. Unknown hash or NULL c: no-op. */
void encoder_cache_discard(encoder_cache *c, const uint8_t hash[32]);

void encoder_cache_get_stats(const encoder_cache *c, encoder_cache_stats *out);

/* fn(ctx, rows) is called just before an entry's rows are freed (evicted, discarded, or the
 * cache freed): whoever still holds a copy of them (the CUDA backend's device rows) lets go. */
typedef void (*encoder_cache_drop_fn)(void *ctx, const float *rows);
void encoder_cache_set_drop(encoder_cache *c, encoder_cache_drop_fn fn, void *ctx);

#endif
