/*
 * vision_rope: the 2-D rotary embedding of the Qwen3-VL vision tower (spec §5.3), applied in
 * place to the q and k parts of the fused qkv rows of one item.
 *
 *   qkv (N, 3·H·hd) bf16, row n = [ q head 0 … H-1 | k head 0 … H-1 | v head 0 … H-1 ]
 *   N = grid_t·grid_h·grid_w patches in merge-window order (img_preprocess.c has the diagram):
 *   row n of slice t = n / (h·w) lies at window (bh, bw), offset (ih, iw) inside the window,
 *       r = n mod (h·w),  win = r / m²,  bh = win / (w/m),  bw = win mod (w/m),
 *       ih = (r mod m²) / m,  iw = r mod m,  row = bh·m + ih,  col = bw·m + iw
 *
 * Angles, as transformers' Qwen3VLVisionModel.rot_pos_emb (and vision_cpu_rope_tables):
 *   f_k  = 1 / powf(10000, (2k) / (hd/2))                    fp32, k < hd/4 (computed on the host)
 *   θ_i  = row·f_i (i < hd/4),  col·f_(i−hd/4) (hd/4 ≤ i < hd/2)     one fp32 multiply
 *   c_i, s_i = cos θ_i, sin θ_i in fp32 (taken in double and rounded, as the CPU tables)
 * Rotation, as apply_rotary_pos_emb_vision (q, k upcast to fp32, result cast back):
 *   out[i]        = bf16( fp32(x[i]·c_i) − fp32(x[i+hd/2]·s_i) )
 *   out[i+hd/2]   = bf16( fp32(x[i+hd/2]·c_i) + fp32(x[i]·s_i) )      i < hd/2
 * every product and the sum rounded in fp32 (no FMA contraction: torch runs them as separate
 * elementwise kernels). v is left untouched.
 *
 * Requirements: hd a multiple of 4, hd ≤ 512; grid_h, grid_w multiples of merge; N a multiple of
 * grid_h·grid_w. The angles come from (merge, grid_h, grid_w) directly: no table in memory.
 *
 * kn_vision_rope_ref is the plain-C reference (always built); kn_vision_rope_cuda takes the
 * same arguments in the same order plus a stream, with a device pointer for qkv.
 */
#ifndef QVL_KERNELS_VISION_ROPE_H
#define QVL_KERNELS_VISION_ROPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_vision_rope_ref(uint16_t *qkv, int N, int H, int hd, int merge, int grid_h, int grid_w);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_vision_rope_cuda(uint16_t *qkv, int N, int H, int hd, int merge, int grid_h, int grid_w,
			 cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
