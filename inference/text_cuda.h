/*
 * text_cuda: the Qwen3-VL text decoder (and dense Qwen3) on one GPU — bf16 weights (held as fp16
 * for q/k/v and gate/up), 16-bit operands, an fp32 residual stream (text_cuda.c says where each
 * rounding sits and when fp16 applies) — backend_step of
 * the CUDA backend (backend_cuda.c), checked against text_cpu (the fp32 reference) and
 * transformers.
 *
 * One text_cuda holds the weights on the device as bf16 values (one allocation; f32/f16 files are
 * rounded to bf16 on the host while uploading; q/k/v and gate/up stored as fp16 holding those
 * values when text_cuda.c's f16_refusal allows), the paged KV pool (per layer a K and a V array of
 * (n_blocks, block_size, KV, hd), kernels/paged_attention.h; bf16, or fp8 E4M3 with kv_fp8), the activation buffers for the
 * largest step (max_tokens new positions of max_seqs sequences, contexts up to max_ctx), pinned
 * host staging for a step's inputs and logits, and CUDA graphs of decode steps.
 *
 * Life: text_cuda_new (weights) → text_cuda_plan_bytes (what the rest will take, for memory
 * planning) → text_cuda_alloc (activations, staging, KV pool; then graphs are captured) →
 * text_cuda_step … → text_cuda_free. No device allocation happens after text_cuda_alloc.
 *
 * Threads: one thread drives a text_cuda (the GPU worker); all work goes to its stream.
 */
#ifndef QVL_TEXT_CUDA_H
#define QVL_TEXT_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "backend.h"
#include "gemm.h"
#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"

typedef struct text_cuda text_cuda;

typedef struct text_cuda_limits {
	int max_tokens;      /* new positions in one step (max_num_batched_tokens) */
	int max_seqs;        /* sequences in one step (max_num_seqs) */
	int max_ctx;         /* positions of one sequence (max_model_len) */
	int block_size;
} text_cuda_limits;

/* Upload the text weights of w (bound for mc; borrowed during the call only). gemm (borrowed,
 * used from this thread only) and stream are the GPU worker's. kv_fp8: the KV pool holds fp8
 * E4M3 (kernels/fp8.h, scale 1) instead of bf16. QERR_INVALID for a tensor whose size or dtype
 * does not fit the config. */
int text_cuda_new(const model_config *mc, const model_weights *w, kn_gemm_ctx *gemm,
		  cudaStream_t stream, bool kv_fp8, text_cuda **out, qerr *e);
void text_cuda_free(text_cuda *t);

/* Device bytes of the weights (already allocated). */
size_t text_cuda_weight_bytes(const text_cuda *t);
/* Device bytes text_cuda_alloc will take for these limits besides the KV pool (activations,
 * attention workspace, step inputs). */
size_t text_cuda_act_bytes(const text_cuda *t, const text_cuda_limits *lim);
/* Device bytes of one KV block (every layer's K and V of block_size positions). */
size_t text_cuda_block_bytes(const text_cuda *t, int block_size);

/* Allocate the activation buffers for lim and a KV pool of n_blocks blocks, then (unless
 * eager) capture the decode graphs for batch sizes 1, 2, 4, 8, 16, 24, 32, …, max_seqs
 * (vLLM's ladder). QERR_LIMIT when the device has not enough memory. */
int text_cuda_alloc(text_cuda *t, const text_cuda_limits *lim, int n_blocks, bool eager,
		    qerr *e);

/* backend_step (backend.h): every input checked first (the same errors as text_cpu_step plus
 * the limits of text_cuda_alloc), then one forward; logits (Σ n_logits, vocab) fp32 on the host
 * are the bf16 logits widened. */
int text_cuda_step(text_cuda *t, const backend_seq *seqs, int n_seqs, float *logits, qerr *e);

/* text_cuda_step without logits, in two halves (backend_step_sample_launch / _wait, backend.h):
 * the launch checks the step, stages it and queues it with the choice of each logit row's
 * next token on the device (kernels/sampling.h, sampler_sample's semantics); the wait returns
 * the oldest launch's ids and logprobs. At most two launches are in flight; a launch may chain
 * ids from the one before it (token ids BACKEND_CHAINED_ID(r), filled in on the device by
 * kernels/token_chain.h). text_cuda_step in between ends the chain. */
int text_cuda_launch_sample(text_cuda *t, const backend_seq *seqs, int n_seqs,
			    const backend_sample_row *rows, qerr *e);
int text_cuda_wait_sample(text_cuda *t, int32_t *ids, sampler_logprobs *lps, qerr *e);

/* Where a vision row (backend_seq.vis[i], host fp32) already lives on the device as bf16, the
 * same values rounded: the device row of its plane 0 (the main merger's), *plane_stride elements
 * before the next plane (deepstack 0, 1, …); NULL when it does not. The backend keeps recent
 * encodes on the device (backend_cuda.c), so a prefill copies their rows device to device
 * instead of narrowing and uploading them. */
typedef const uint16_t *(*text_cuda_vis_find_fn)(void *ctx, const float *row,
						 size_t *plane_stride);
void text_cuda_set_vis_find(text_cuda *t, text_cuda_vis_find_fn find, void *ctx);

/* Decode graphs captured (0 when eager). */
int text_cuda_n_graphs(const text_cuda *t);

#endif
