/*
 * gemm_qkv_tma: the decoder's q/k/v projection with qk_norm_rope (qk_norm_rope.h) in its
 * epilogue, for prompt steps, on Hopper's TMA and wgmma (gemm_qkv_tma.cu has the design).
 *
 *   x (M, K) fp16 (the input RMSNorm's output)   W (N, K) fp16, N = (Hq + 2·KV)·hd: the q/k/v
 *   rows stacked as the decoder holds them; cs, sn (M, hd/2) fp32: kn_rope_table_cuda's table
 *   of the same positions
 *
 *   q_out, k_cache, v_cache, slots, norms, scales and rounding: kn_qk_norm_rope_cuda (or
 *   kn_qk_norm_rope_fp8_cuda with fp8) applied to qkv = x·Wᵀ in fp32 (kn_gemm_f32_f16), without
 *   the fp32 qkv ever leaving the registers. The sums run in another order than cuBLASLt's and
 *   a head's sum of squares in another order than qk_norm_rope's, so results agree with the
 *   two kernels apart to the last bits of fp32, i.e. the same bf16 (and fp8) values but where a
 *   value lies at a rounding boundary.
 *
 * Launched with PDL (everything after the wait). sm_90a only: kn_qkv_tma_new returns NULL
 * elsewhere, or where the driver lacks cuTensorMapEncodeTiled, or with QVL_QKV_TMA=0 in the
 * environment.
 */
#ifndef QVL_KERNELS_GEMM_QKV_TMA_H
#define QVL_KERNELS_GEMM_QKV_TMA_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kn_qkv_tma kn_qkv_tma;

kn_qkv_tma *kn_qkv_tma_new(void);
void kn_qkv_tma_free(kn_qkv_tma *g);

/* Whether kn_qkv_tma_run takes this shape: g not NULL, M > 0, hd 128, Hq + 2·KV even (a tile is
 * two heads), K > 0 a multiple of 64, x and W 16-byte aligned. */
bool kn_qkv_tma_fits(const kn_qkv_tma *g, const uint16_t *x, const uint16_t *W, int M, int Hq,
		     int KV, int hd, int K);

/* The call must fit. k_cache and v_cache hold bf16, or E4M3 bytes with fp8 (then written as
 * value · (1 / k_scale) and · (1 / v_scale)); slots of −1 write no k or v. */
void kn_qkv_tma_run(kn_qkv_tma *g, uint16_t *q_out, void *k_cache, void *v_cache, bool fp8,
		    const uint16_t *x, const uint16_t *W, const uint16_t *q_norm_w,
		    const uint16_t *k_norm_w, const float *cs, const float *sn,
		    const int32_t *slot_mapping, int M, int Hq, int KV, int K, float eps,
		    float k_scale, float v_scale, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
