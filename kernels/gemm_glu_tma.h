/*
 * gemm_glu_tma: the gate/up projection with SwiGLU in its epilogue, on Hopper's TMA and
 * wgmma, in a decode shape (up to 128 rows) and a prompt shape (above); gemm_glu_tma.cu has the
 * design. Internal to gemm.cu, which routes kn_gemm_glu_cuda here (KN_GEMM_GLU_TMA) where the
 * shape fits and the start-up tuning (kn_gemm_glu_tune) timed it faster than the other forms;
 * the formulas are kn_gemm_glu's (gemm.h).
 */
#ifndef QVL_KERNELS_GEMM_GLU_TMA_H
#define QVL_KERNELS_GEMM_GLU_TMA_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kn_glu_tma kn_glu_tma;

/* NULL (nothing allocated) unless the device is sm_90 with this build's sm_90a kernel, the
 * driver gives cuTensorMapEncodeTiled, and QVL_GLU_TMA is not 0 in the environment. */
kn_glu_tma *kn_glu_tma_new(void);
void kn_glu_tma_free(kn_glu_tma *g);

/* Whether kn_glu_tma_run takes this call: M > 0, F a multiple of 96 up to 128 rows and of 128
 * above, K % 64 == 0, act, x and W 16-byte aligned. */
bool kn_glu_tma_fits(const kn_glu_tma *g, const uint16_t *act, const uint16_t *x,
		     const uint16_t *W, int M, int F, int K);

/* act (M, F) bf16 = silu(x·Wgᵀ)·(x·Wuᵀ) from the fp32 sums (silu with __expf and a fast divide,
 * ~1e-6 relative; one rounding): x (M, K) fp16, W (2F, K) fp16, the F gate rows then the F up rows. Launched with
 * PDL (everything after the wait). The call must fit. */
void kn_glu_tma_run(kn_glu_tma *g, uint16_t *act, const uint16_t *x, const uint16_t *W, int M,
		    int F, int K, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
