/*
 * rmsnorm: RMS normalisation of rows of the decoder's fp32 residual stream into a bf16 GEMM input.
 *
 *   x   (rows, cols) fp32        w (cols) bf16        out (rows, cols) bf16
 *   r        = 1 / sqrt(mean_c(x[c]²) + eps)           fp32 on the GPU (double in the ref)
 *   out[c]   = bf16( w[c] · (x[c]·r) )                 the products in fp32 (double in the ref),
 *                                                      ONE rounding, to bf16
 *
 * transformers in bf16 rounds twice (the normalised row back to bf16, then the product) and
 * keeps x itself in bf16; the decoder here keeps x in fp32 (text_cuda.c), which against an fp32
 * reference halves the error of the logits, so it rounds only where a bf16 GEMM input needs it.
 *
 * Used for input_layernorm, post_attention_layernorm and the final norm (cols = D = 2048,
 * eps = 1e-6). out must not overlap x (different types: there is no in-place form). q_norm and
 * k_norm are applied per head inside qk_norm_rope (qk_norm_rope.h), not here.
 *
 * PDL (pdl.cuh): kn_rmsnorm_cuda may start while the previous kernel of the stream still runs,
 * and for rows of up to 4096 columns it reads w before waiting for it (x only after). So w must
 * not be written by the kernel just before the call on the same stream; the model's norm
 * weights, written once at start-up, never are.
 *
 * kn_rmsnorm_ref is the plain-C reference (always built); kn_rmsnorm_cuda takes the same
 * arguments in the same order plus a stream, with device pointers.
 *
 * kn_rmsnorm_f16_{ref,cuda}: the same with out in IEEE fp16 (binary16), the one rounding to
 * nearest even into its 11-bit significand: the decoder's input to the qkv and gate/up
 * projections when their weights are held in fp16 (text_cuda.c says when). The caller keeps
 * the outputs in range: |x[c]·r| ≤ sqrt(cols) for any row, so max|w| · sqrt(cols) ≤ 65504
 * suffices (past it the GPU writes ±inf, as fp16 does).
 */
#ifndef QVL_KERNELS_RMSNORM_H
#define QVL_KERNELS_RMSNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_rmsnorm_ref(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
		    float eps);
void kn_rmsnorm_f16_ref(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
			float eps);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_rmsnorm_cuda(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
		     float eps, cudaStream_t stream);
void kn_rmsnorm_f16_cuda(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
			 float eps, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
