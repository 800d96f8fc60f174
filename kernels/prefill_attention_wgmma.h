/*
 * prefill_attention_wgmma: prefill_attention.cu's Hopper kernel for head dim 128, on wgmma
 * (design in prefill_attention_wgmma.cu). Internal to prefill_attention.cu, which owns the
 * contract (prefill_attention.h), the CTA → (sequence, query tile) map, the split choice, the
 * workspace and the split merge; this file holds only the attention kernel itself, built for
 * sm_90a alone (Makefile.am).
 *
 * kn_pfa_wgmma_available: whether the current device runs the kernel (sm_90a image present;
 * asked once per device, which also sets the kernel's shared-memory opt-in there).
 * kn_pfa_wgmma_launch: launches it on grid (Hq, max_tiles, nsplit) with query tiles of
 * KN_PFA_WGMMA_BM rows; tile_prefix is pfa_tiles_kernel's map for that tile height; ws_o and
 * ws_ml (float pairs) receive the split partials when nsplit > 1 (the layout of
 * prefill_attention.cu's workspace). fp8: k_cache / v_cache hold E4M3 bytes (scale_log2 has
 * k_scale folded in; v_scale multiplies the output), else bf16 (v_scale ignored).
 */
#ifndef QVL_KERNELS_PREFILL_ATTENTION_WGMMA_H
#define QVL_KERNELS_PREFILL_ATTENTION_WGMMA_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KN_PFA_WGMMA_BM 128
#define KN_PFA_WGMMA_HD 128

bool kn_pfa_wgmma_available(void);

void kn_pfa_wgmma_launch(uint16_t *out, const uint16_t *q, const void *k_cache,
			 const void *v_cache, bool fp8, const int32_t *block_table,
			 const int32_t *q_start, const int32_t *n_cached,
			 const int32_t *tile_prefix, int n_seqs, int T, int Hq, int KV,
			 int log2_bs, int max_blocks_per_seq, float scale_log2, float v_scale,
			 float *ws_o, float *ws_ml, int max_tiles, int nsplit,
			 cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
