/*
 * text_cpu: the Qwen3-VL text decoder (and dense Qwen3) on the CPU in fp32 — the reference the
 * CUDA backend is checked against and the engine's fallback when there is no GPU.
 *
 * One text_cpu holds the weights converted to fp32 once at load (bf16/f16/f32 in the file; the
 * safetensors mapping is not used after text_cpu_new), a paged KV pool of n_blocks blocks of
 * block_size positions, and scratch that grows with the largest step seen. text_cpu_step is
 * backend_step (backend.h) for the text half: ragged sequences, block tables, 3-D MRoPE
 * positions, vision rows at image positions (row 0 replaces the token embedding, rows 1..n_ds
 * are added after layers 0..n_ds-1), logits for the rows asked for.
 *
 * Batch-invariant mode (text_cpu_set_batch_invariant, off by default): every result of a
 * position — its K/V in the pool, its hidden state, its logits — is then bit-identical whatever
 * else shares the step and however its sequence's earlier positions were split across steps, so
 * that greedy decoding gives the same tokens alone or in a batch, chunked or not (vLLM's
 * VLLM_BATCH_INVARIANT). It costs speed wherever a step has many rows — prefill and batched
 * decode do one matrix-vector product per row instead of one matrix product per step — while
 * decode of one sequence runs as fast as before.
 *
 * Threads: one thread drives a text_cpu; OpenBLAS uses n_threads inside (see text_cpu_new).
 */
#ifndef QVL_TEXT_CPU_H
#define QVL_TEXT_CPU_H

#include <stdbool.h>

#include "backend.h"
#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"

typedef struct text_cpu text_cpu;

/* Convert the text weights of w (bound for mc; borrowed only during the call) to fp32 and
 * allocate a KV pool of n_blocks × block_size positions (K and V of every layer, fp32).
 * n_threads > 0 sets OpenBLAS's thread count (a process-wide setting); 0 leaves it alone.
 * Fails with QERR_INVALID for a non-positive block_size or n_blocks, a tensor whose element
 * count differs from the config, or a tensor without data; QERR_LIMIT when the pool size
 * overflows. Allocation failure aborts (alloc.h). */
int text_cpu_new(const model_config *mc, const model_weights *w, int block_size, int n_blocks,
		 int n_threads, text_cpu **out, qerr *e);

/* Turn batch-invariant mode on or off (see the top of this file). Set it before the first step:
 * positions already in the pool keep the K/V computed under the old setting. */
void text_cpu_set_batch_invariant(text_cpu *t, bool on);

/* Free everything; NULL is a no-op. */
void text_cpu_free(text_cpu *t);

/* One forward over n_seqs ≥ 1 sequences, exactly backend_step's contract: the K/V of each
 * sequence's new positions are written at positions n_cached.. of its block table, attention
 * covers positions 0..itself of the same sequence, and logits (Σ n_logits, vocab) come back in
 * sequence order. Every input is checked before anything is written: an id outside the
 * vocabulary, a negative position, a block id outside the pool, a logit row outside the new
 * positions, vision rows for a model without vision, a sequence longer than the pool — each
 * fails with QERR_INVALID naming the sequence and the value, and leaves the pool untouched.
 * block_table must hold ⌈(n_cached + n_new) / block_size⌉ entries (the length is not passed, so
 * only the entries used are read and range-checked). */
int text_cpu_step(text_cpu *t, const backend_seq *seqs, int n_seqs, float *logits, qerr *e);

#endif
