/*
 * gemm_wgmma: the decode steps' projections on Hopper tensor cores, with PDL (gemm_wgmma.cu has
 * the design). Internal to gemm.cu, which routes kn_gemm_f32(_f16)_cuda and kn_gemm_f16_cuda
 * here for 5 ≤ M ≤ 128 rows when the shape fits (kn_gemm_wgmma_fits) and the start-up tuning
 * timed it faster than cuBLASLt for that key, and kn_gemm_glu_cuda to its GLU form where
 * kn_gemm_glu_tune timed that faster; the formulas, aliasing and PDL contract are gemm.h's.
 */
#ifndef QVL_KERNELS_GEMM_WGMMA_H
#define QVL_KERNELS_GEMM_WGMMA_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KN_GEMM_WGMMA_MIN_M 5     /* below: gemm.cu's GEMV */
#define KN_GEMM_WGMMA_MAX_M 128

typedef struct kn_gemm_wgmma kn_gemm_wgmma;

/* NULL (and nothing allocated) unless the device is sm_90 with this build's sm_90a kernels and
 * QVL_GEMM_WGMMA is not 0 in the environment. Holds the split-K partials and the per-tile
 * counters (~9 MB), allocated here, once.
 * One context's calls must go to one stream (as gemm.h's), and the device should not be shared
 * with another process's kernels at the same moment (MPS): a split without a residual in place
 * has its CTAs wait for each other, which needs the whole grid resident (gemm_wgmma.cu). */
kn_gemm_wgmma *kn_gemm_wgmma_new(void);
void kn_gemm_wgmma_free(kn_gemm_wgmma *g);
/* At most s K splits from now on (rounded down to a power of two ≤ 8; the default is 8):
 * bench_gemm_cuda's sweep. */
void kn_gemm_wgmma_set_max_splits(kn_gemm_wgmma *g, int s);

/* Whether kn_gemm_wgmma_run takes this call: KN_GEMM_WGMMA_MIN_M ≤ M ≤ KN_GEMM_WGMMA_MAX_M,
 * N % 128 == 0, K % 64 == 0, x, W, y and residual 16-byte aligned, residual only with fp32
 * output. */
bool kn_gemm_wgmma_fits(const kn_gemm_wgmma *g, const void *y, const uint16_t *x,
			const uint16_t *W, const float *residual, int M, int N, int K,
			bool out_f16);

/* y (M, N) = x (M, K) · Wᵀ (+ residual), fp32 accumulation; y fp32 (out_f16 false: residual
 * allowed, y may alias it) or fp16 (out_f16 true); x and W fp16 when f16, else bf16. Launched
 * with PDL: W's first stages are read before the wait. The call must fit. */
void kn_gemm_wgmma_run(kn_gemm_wgmma *g, void *y, const uint16_t *x, const uint16_t *W,
		       const float *residual, int M, int N, int K, bool f16, bool out_f16,
		       cudaStream_t stream);

/* Whether kn_gemm_wgmma_glu_run takes this call: KN_GEMM_WGMMA_MIN_M ≤ M ≤
 * KN_GEMM_WGMMA_MAX_M, F % 64 == 0, K % 64 == 0, act, x and W 16-byte aligned. */
bool kn_gemm_wgmma_glu_fits(const kn_gemm_wgmma *g, const uint16_t *act, const uint16_t *x,
			    const uint16_t *W, int M, int F, int K);

/* The gate/up projection and SwiGLU in one launch (kn_gemm_glu, gemm.h): W (2F, K) fp16 holds
 * the gate rows then the up rows, x (M, K) fp16; act (M, F) bf16 = silu(x·Wgᵀ)·(x·Wuᵀ) from the
 * fp32 sums (silu_mul.cuh's arithmetic, one rounding). A CTA owns 64 gate rows and the 64 up
 * rows of the same outputs (its two warpgroups), with K unsplit. PDL as kn_gemm_wgmma_run. The
 * call must fit. */
void kn_gemm_wgmma_glu_run(kn_gemm_wgmma *g, uint16_t *act, const uint16_t *x, const uint16_t *W,
			   int M, int F, int K, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
