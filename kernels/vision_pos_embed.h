/*
 * vision_pos_embed: the learned position embedding of the Qwen3-VL vision tower (spec §5.2),
 * resampled to the item's patch grid and added to the patch embeddings in place.
 *
 *   table (side·side, dv) bf16, row = th·side + tw      x (N, dv) bf16, N = grid_t·grid_h·grid_w
 *   rows of x in merge-window order (row r of a slice is patch (row, col) as in vision_rope.h)
 *
 * As transformers' Qwen3VLVisionModel.fast_pos_embed_interpolate in a bf16 model:
 *   hi = linspace_f32(0, side−1, grid_h), wi = linspace_f32(0, side−1, grid_w)   (torch CPU form:
 *        step = (b−a)/(n−1); i < n/2: a + step·i, else b − step·(n−1−i); n = 1: [a])
 *   h0 = trunc(hi), h1 = min(h0+1, side−1), dh = hi − h0   (same for w)         fp32
 *   w00 = bf16((1−dh)(1−dw)), w01 = bf16((1−dh)·dw), w10 = bf16(dh·(1−dw)), w11 = bf16(dh·dw)
 *                                          weights formed in fp32, cast to the weight dtype
 *   t_ij = bf16(table[h_i·side + w_j][d] · w_ij)                 each bf16 product rounded
 *   e    = bf16(bf16(bf16(t00 + t01) + t10) + t11)               bf16 tensor adds, in this order
 *   x[n][d] = bf16(x[n][d] + e)                                  hidden_states + pos_embeds
 * The same grid is used for every temporal slice.
 *
 * kn_vision_pos_embed_ref is the plain-C reference (always built); kn_vision_pos_embed_cuda takes
 * the same arguments in the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_VISION_POS_EMBED_H
#define QVL_KERNELS_VISION_POS_EMBED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_vision_pos_embed_ref(uint16_t *x, const uint16_t *table, int side, int dv, int merge,
			     int grid_t, int grid_h, int grid_w);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_vision_pos_embed_cuda(uint16_t *x, const uint16_t *table, int side, int dv, int merge,
			      int grid_t, int grid_h, int grid_w, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
