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
 * Backends: cpu (backend_cpu.c: fp32 reference, OpenBLAS) and cuda (backend_cuda.c: bf16 on one
 * GPU, cuBLASLt and the kernels of kernels/). Each fills the ops table of backend_impl.h.
 *
 * Threads: a backend is driven by one thread (the engine loop); it may use more inside.
 */
#ifndef QVL_BACKEND_H
#define QVL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"
#include "sampler.h"

typedef struct backend backend;

typedef struct backend_opts {
	int block_size;        /* positions per KV block (16) */
	int n_blocks;          /* KV pool size in blocks */
	int n_threads;         /* CPU threads (0: one per core) */
	bool batch_invariant;  /* each position's results bit-identical whatever else shares its
				* step and however its prompt was chunked (slower prefill) */
	/* cuda only */
	int device;                    /* CUDA device ordinal */
	double gpu_memory_utilization; /* (0, 1]: share of the card's memory this process may use;
					* n_blocks == 0 plans the KV pool from it */
	int64_t kv_cache_memory_bytes; /* > 0: the KV pool's size instead (n_blocks == 0) */
	bool kv_cache_fp8;             /* the KV pool in fp8 E4M3 (scale 1) instead of bf16 */
	int max_num_batched_tokens;    /* most new positions in one step (activation buffers) */
	int max_num_seqs;              /* most sequences in one step */
	int max_model_len;             /* longest sequence (attention workspace) */
	int max_image_patches;         /* largest vision item in patches (encoder scratch) */
	bool enforce_eager;            /* no CUDA graphs */
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
/* The CUDA backend on o->device (backend_cuda.c); QERR_UNSUPPORTED in a build without CUDA or
 * when no GPU is visible. With o->n_blocks == 0 the KV pool takes what o->gpu_memory_utilization
 * (or o->kv_cache_memory_bytes) leaves after the weights and the activation buffers; the plan is
 * logged (weights, activations, KV blocks, the most tokens in flight). */
int backend_cuda_new(const model_config *mc, const model_weights *w, const backend_opts *o,
		     backend **out, qerr *e);
void backend_free(backend *b);
/* A CUDA build with at least one GPU visible. */
bool backend_cuda_available(void);

/* "cpu" or "cuda". */
const char *backend_name(const backend *b);
/* Blocks in the KV pool (what the engine's block manager must use). */
int backend_n_blocks(const backend *b);

/* pixel_values (rows, 3·Tp·P²) of one image with grid (t, h, w) → out (n_tokens, 1+n_ds, D),
 * n_tokens = t·h·w / merge². */
int backend_encode(backend *b, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		   float *out, qerr *e);
/* The same, except that out may not be written yet when it returns: steps may read it as
 * vision rows at once (the cuda backend keeps the rows on the device and serves them from
 * there), and its host copy is written only when the backend is about to drop its own (its
 * ring of encoder rows is full) or by backend_sync. Before out is freed, backend_forget_rows
 * must say so (it is then never written). */
int backend_encode_async(backend *b, const float *pixel_values, int grid_t, int grid_h,
			 int grid_w, float *out, qerr *e);
/* Write every out of backend_encode_async not yet written (and not forgotten). */
void backend_sync(backend *b);
/* rows (an out of backend_encode_async) is about to be freed: the backend forgets it. */
void backend_forget_rows(backend *b, const float *rows);

/* logits: (Σ n_logits, vocab) fp32, in sequence order. */
int backend_step(backend *b, const backend_seq *seqs, int n_seqs, float *logits, qerr *e);

/* One logit row's sampling: its parameters and its sequence's state (whose generator the
 * backend advances: one draw per non-greedy row, as sampler_sample). */
typedef struct backend_sample_row {
	const sampling_params *sp;
	sampler_state *ss;
} backend_sample_row;

/* backend_step, then the next token of each logit row chosen with sampler_sample's semantics
 * (on the device for cuda: kernels/sampling.h): ids (Σ n_logits), and lps[r] for rows whose
 * sp->logprobs ≥ 0 (lps may be NULL when none asks). Guided rows must not come here (their
 * masks are the host's). QERR_LIMIT before anything runs when the rows exceed what the backend
 * samples at once (then backend_step and sampler_sample do it); the caller records the ids
 * with sampler_state_accept as usual. Nothing may be in flight (below). */
int backend_step_sample(backend *b, const backend_seq *seqs, int n_seqs,
			const backend_sample_row *rows, int32_t *ids, sampler_logprobs *lps,
			qerr *e);

/* The same in two halves, so that the host can plan the next step while this one runs (async
 * scheduling): launch checks and queues the step and returns; wait returns the answers of the
 * oldest launched step. At most BACKEND_MAX_IN_FLIGHT steps are launched and not waited for.
 *
 * Chained ids: in a launch, a sequence of one new position may give as its token id
 * BACKEND_CHAINED_ID(r): the token the previous launch sampled for its logit row r, which the
 * host need not have seen yet (on the GPU it never leaves the device before it is used).
 *
 * A launch that fails leaves nothing in flight; after a wait that fails, the backend is not to
 * be trusted (the engine stops). Launched steps run in order. The draws of seeded rows happen
 * at launch, in launch order — the same as one backend_step_sample after another. */
#define BACKEND_MAX_IN_FLIGHT 2
#define BACKEND_CHAINED_ID(r) ((int32_t)(-1 - (r)))
int backend_step_sample_launch(backend *b, const backend_seq *seqs, int n_seqs,
			       const backend_sample_row *rows, qerr *e);
int backend_step_sample_wait(backend *b, int32_t *ids, sampler_logprobs *lps, qerr *e);
/* Launched steps not yet waited for. */
int backend_in_flight(const backend *b);

#endif
