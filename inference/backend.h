/*
 * backend: what the engine asks of a compute backend (cpu now, cuda later) — one interface, so
 * the scheduler never knows which runs underneath.
 *
 *   backend_new        load weights for a model directory's config (weights bound by
 *                      model_weights), allocate the KV pool: n_blocks blocks of block_size
 *                      positions, each holding K and V for every layer
 *   backend_encode     the vision tower on one image's pixel_values → per image token a row of
 *                      the merged embedding followed by its deepstack rows: (n_tokens, 1+n_ds, D)
 *   backend_step       one forward over a ragged batch: for each sequence a chunk of new
 *                      positions (token ids; at image positions a pointer to that token's vision
 *                      rows instead), their 3-D MRoPE positions, the number already cached and
 *                      the block table; K/V of the new positions are written into the pool and
 *                      logits come back for the rows asked for
 *
 * Positions in the pool: position p of a sequence lives in block block_table[p / block_size] at
 * slot p % block_size. A step may continue a sequence (chunked prefill, decode): attention of a
 * new position covers all cached positions of its sequence plus the new ones up to itself.
 *
 * Threads: a backend is driven by one thread (the engine loop); it may use more inside.
 */
#ifndef QVL_BACKEND_H
#define QVL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"

typedef struct backend backend;

typedef struct backend_opts {
	int block_size;        /* positions per KV block (16) */
	int n_blocks;          /* KV pool size in blocks */
	int n_threads;         /* CPU threads (0: one per core) */
	bool batch_invariant;  /* each position's results bit-identical whatever else shares its
				* step and however its prompt was chunked (slower prefill) */
} backend_opts;

typedef struct backend_seq {
	int n_new;                     /* new positions in this step (≥ 1) */
	const int32_t *ids;            /* (n_new) token ids */
	const float *const *vis;       /* (n_new) NULL for text; else (1+n_ds, D) vision rows; may be NULL */
	const int32_t *pos;            /* (3, n_new) MRoPE positions T, H, W (rows of n_new) */
	int n_cached;                  /* positions of this sequence already in the pool */
	const int32_t *block_table;    /* blocks for positions 0 .. n_cached+n_new-1 */
	int n_logits;                  /* rows wanted (e.g. 1: the last new position) */
	const int32_t *logit_rows;     /* (n_logits) indexes into the new positions */
} backend_seq;

/* w is borrowed and must outlive b. */
int backend_cpu_new(const model_config *mc, const model_weights *w, const backend_opts *o,
		    backend **out, qerr *e);
void backend_free(backend *b);

/* pixel_values (rows, 3·Tp·P²) of one image with grid (t, h, w) → out (n_tokens, 1+n_ds, D),
 * n_tokens = t·h·w / merge². */
int backend_encode(backend *b, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		   float *out, qerr *e);

/* logits: (Σ n_logits, vocab) fp32, in sequence order. */
int backend_step(backend *b, const backend_seq *seqs, int n_seqs, float *logits, qerr *e);

#endif
