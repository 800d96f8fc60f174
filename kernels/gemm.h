/*
 * gemm: the projections of the model, y = x · Wᵀ (+ residual), bf16 in and out, fp32 accumulation.
 *
 *   x (M, K) bf16 row-major    W (N, K) bf16 row-major, as the checkpoint stores a Linear weight
 *   residual (M, N) bf16 or NULL                         y (M, N) bf16 row-major
 *
 *   y[m][n] = bf16( Σ_k x[m][k]·W[n][k]  +  residual[m][n] )    one rounding; the sum in fp32 on
 *                                                               the GPU (double in the ref), the
 *                                                               residual added before rounding
 *
 * The residual is cuBLASLt's C matrix with beta = 1 (beta = 0 and C unused when NULL). y may
 * alias residual (in place: y += x·Wᵀ); y must not alias x or W.
 *
 * kn_gemm_cuda goes through cuBLASLt with CUBLAS_COMPUTE_32F. A kn_gemm_ctx holds the cuBLASLt
 * handle, one workspace allocated at creation, and a small table of the algorithms chosen by
 * cublasLtMatmulAlgoGetHeuristic per (M, N, K, residual?, pointer alignment), so a repeated shape
 * does not query again. A ctx is not thread-safe: one per thread (or per stream owner). The
 * workspace is shared by every call on the ctx, so calls on one ctx must go to one stream (or be
 * ordered between streams by the caller).
 *
 * For M ≤ 4 kn_gemm_cuda runs its own GEMV (gemm.cu), launched with PDL (pdl.cuh): it starts
 * while the previous kernel of the stream still runs and reads its first rows of W before
 * waiting for it (x and residual only after). So W must not be written by the kernel just
 * before the call on the same stream; the model's weights, written once at start-up, never are.
 * (A copy, an event wait or a kernel launched without PDL in between makes it safe again.)
 *
 * kn_gemm_ref is the plain-C reference (always built); kn_gemm_cuda takes the same arguments in
 * the same order after the ctx, plus a stream, with device pointers.
 *
 * kn_gemm_silu: the MLP's down projection with its SwiGLU producer fused in (silu_mul.h):
 *
 *   gu (M, 2F) bf16 = [ gate | up ]   W (N, F)   residual (M, N) or NULL   y (M, N)
 *   act = silu_mul(gu) (M, F), rounded exactly as kn_silu_mul_* round it
 *   y   = gemm(act, W, residual), as kn_gemm_*
 *
 * scratch (M, F) bf16 is the caller's (device memory for the CUDA form, host for the ref): the
 * ref writes act there; the CUDA form writes it only when it cannot fuse (M > 4, F % 8 ≠ 0,
 * F > 8192, a pointer not 16-byte aligned), running kn_silu_mul_cuda into it and then
 * kn_gemm_cuda. Its contents afterwards are unspecified. For M ≤ 4 the fused kernel computes act
 * itself (each lane its own pieces, in registers) and sums in the same order as kn_gemm_cuda's
 * GEMV, so its y is bit for bit that of kn_silu_mul_cuda followed by kn_gemm_cuda (and so the
 * two are interchangeable). y must not alias gu, W or scratch.
 *
 * Speed (H100, B = 1, F = 6144, N = 2048): 11.09 µs fused against 1.48 + 9.05 µs for
 * kn_silu_mul_cuda + kn_gemm_cuda, because every CTA of the fused kernel recomputes all of act
 * (gemm.cu). bench_decode_cuda times both forms and counts the faster one in a step.
 */
#ifndef QVL_KERNELS_GEMM_H
#define QVL_KERNELS_GEMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_gemm_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *residual,
		 int M, int N, int K);

/* The same with a bias (the vision tower's Linear layers), still one rounding:
 *   y[m][n] = bf16( Σ_k x[m][k]·W[n][k] + bias[n] + residual[m][n] )      bias (N) bf16
 * as torch's bf16 Linear with bias (cuBLASLt's bias epilogue). With a residual, transformers
 * would round the Linear output first and then the sum (two roundings); the fused form differs
 * from it by at most a bf16 ulp of the sum, and is the more accurate of the two. On the GPU the
 * bias goes through CUBLASLT_EPILOGUE_BIAS (bias pointer 16-byte aligned is best). */
void kn_gemm_bias_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *bias,
		      const uint16_t *residual, int M, int N, int K);

void kn_gemm_silu_ref(uint16_t *y, const uint16_t *gu, const uint16_t *W, const uint16_t *residual,
		      uint16_t *scratch, int M, int N, int F);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>

typedef struct kn_gemm_ctx kn_gemm_ctx;

/* workspace_bytes: cuBLASLt scratch (32 MiB is ample on Hopper; 0 allowed). Aborts on failure. */
kn_gemm_ctx *kn_gemm_ctx_new(size_t workspace_bytes);
void kn_gemm_ctx_free(kn_gemm_ctx *ctx);   /* NULL is a no-op; synchronises the device first */

void kn_gemm_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *W,
		  const uint16_t *residual, int M, int N, int K, cudaStream_t stream);

void kn_gemm_bias_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *W,
		       const uint16_t *bias, const uint16_t *residual, int M, int N, int K,
		       cudaStream_t stream);

void kn_gemm_silu_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *gu, const uint16_t *W,
		       const uint16_t *residual, uint16_t *scratch, int M, int N, int F,
		       cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
