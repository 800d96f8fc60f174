/*
 * vision_attention: the bidirectional multi-head attention of the Qwen3-VL vision blocks
 * (spec §5.4–5.5), on the fused qkv rows of one item after the rotary step (vision_rope.h).
 *
 *   qkv (N, 3·H·hd) bf16, row n = [ q head 0 … H-1 | k head 0 … H-1 | v head 0 … H-1 ]
 *   out (N, H·hd) bf16, row n = [ o head 0 … H-1 ]          N = n_seg·L
 *
 * Rows [s·L, (s+1)·L) form segment s (a temporal slice of h·w patches) and attend only to each
 * other, in both directions:
 *   out[n, h] = Σ_{j ∈ seg(n)} softmax_j( q[n,h]·k[j,h] · scale ) v[j,h],    scale = 1/√hd
 *
 * Precision, as flash / memory-efficient SDPA in bf16: scores accumulated in fp32 from the bf16
 * q and k, softmax in fp32 (running maximum), the probabilities rounded to bf16 for the product
 * with v (fp32 accumulation), the fp32 result divided by the fp32 row sum and rounded once. The
 * reference does everything in double and rounds only the output, so the two differ by the
 * bf16 rounding of the probabilities (relative L2 a few 1e-3).
 *
 * Requirements (CUDA): hd ∈ {16, 32, 48, 64, 80, 96, 128}, qkv/out 16-byte aligned, H and n_seg
 * ≤ 65535; other shapes abort with a message (a programming error). No workspace. The launch
 * configuration is the kernel's own choice (vision_attention.cu); QVL_VISION_ATTN_BM=64|128 and
 * QVL_VISION_ATTN_SPLIT=1|2 in the environment force one (tests, tuning).
 *
 * kn_vision_attention_ref is the plain-C reference (always built); kn_vision_attention_cuda takes
 * the same arguments in the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_VISION_ATTENTION_H
#define QVL_KERNELS_VISION_ATTENTION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_vision_attention_ref(uint16_t *out, const uint16_t *qkv, int n_seg, int L, int H, int hd);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_vision_attention_cuda(uint16_t *out, const uint16_t *qkv, int n_seg, int L, int H, int hd,
			      cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
