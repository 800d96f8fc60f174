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
 * Threads: one thread drives a text_cpu; OpenBLAS uses n_threads inside (see text_cpu_new).
 */
#ifndef QVL_TEXT_CPU_H
#define QVL_TEXT_CPU_H

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
