/*
 * logits_topk: the greedy step and the logprobs report of GPU sampling, over fp32 logits.
 *
 *   logits (B, V) fp32    ->    argmax (B) int32, max_val (B) fp32 (optional), lse (B) fp32,
 *                               top_ids (B, k) int32, top_vals (B, k) fp32
 *
 * Per row, the logits are ordered by value descending, ties lower id first; NaN counts as
 * -INFINITY, and -INFINITY is a masked id. Then
 *   argmax      = the first id of that order (arg max, lowest id on ties; id 0 when every logit
 *                 is -inf), max_val its value (-inf for an all-masked row)
 *   lse         = max + log Σ_v exp(x_v − max)   (fp32 accumulation on the GPU, double in the
 *                 ref; -inf when every logit is -inf)
 *   top_ids/top_vals[0..k) = the first k of that order (so masked ids come last, lowest id
 *                 first); slots past V (k > V) hold id -1 and -INFINITY.
 * The logprob of id v is logits[v] − lse, as sampler_logprobs reports it (inference/sampler.h).
 *
 * 0 ≤ k ≤ KN_LOGITS_TOPK_MAX, V ≥ 1, B ≥ 0. top_ids/top_vals may be NULL when k = 0, max_val
 * may be NULL. No workspace: the CUDA kernel allocates nothing.
 *
 * kn_logits_topk_ref is the plain-C reference (always built); kn_logits_topk_cuda takes the same
 * arguments in the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_LOGITS_TOPK_H
#define QVL_KERNELS_LOGITS_TOPK_H

#include <stdint.h>

#define KN_LOGITS_TOPK_MAX 20

#ifdef __cplusplus
extern "C" {
#endif

void kn_logits_topk_ref(int32_t *argmax, float *max_val, float *lse, int32_t *top_ids,
			float *top_vals, const float *logits, int B, int V, int k);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_logits_topk_cuda(int32_t *argmax, float *max_val, float *lse, int32_t *top_ids,
			 float *top_vals, const float *logits, int B, int V, int k,
			 cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
