/*
 * qk_norm_rope: the per-head step between the fused q,k,v projection and attention, for the T
 * new tokens of a ragged batch: q_norm/k_norm (per-head RMSNorm), interleaved MRoPE on q and k,
 * q to its own buffer, k and v into one layer of the paged KV cache.
 *
 *   qkv      (T, (Hq + 2·KV)·hd) bf16   row t = [ q head 0 … Hq-1 | k head 0 … KV-1 | v head 0 … KV-1 ]
 *   q_norm_w, k_norm_w (hd) bf16        pos (3, T) int32: rows T, H, W (all equal for dense Qwen3)
 *   slot_mapping (T) int32              slot = block·block_size + offset; -1: no cache write
 *   q_out    (T, Hq, hd) bf16           always written
 *   k_cache, v_cache (n_blocks, block_size, KV, hd) bf16: element (slot, h, i) at (slot·KV + h)·hd + i
 *
 * Per head x (hd values), exactly as transformers computes it in bf16:
 *   n[i]   = bf16( w[i] · bf16(x[i]·r) ),  r = rsqrt(mean_i(x[i]²) + eps)      (rmsnorm.h)
 *   rope, pair j = (j, j + hd/2), j < hd/2 (rotate_half pairing):
 *     inv_freq[j] = 1 / theta^(2j/hd)               fp32: 1.0f / powf(theta, (float)(2j) / hd)
 *     axis(j)     = H if j%3 == 1 and j < 3·mrope_section[1]
 *                   W if j%3 == 2 and j < 3·mrope_section[2]
 *                   T otherwise                     (interleaved MRoPE, spec §7.2)
 *     θ           = float(pos[axis(j)][t]) · inv_freq[j]                        one fp32 multiply
 *     c, s        = bf16(float(cos θ)), bf16(float(sin θ))    cos/sin in fp32, returned in the
 *                                                             activation dtype (bf16)
 *     out[j]      = bf16( bf16(n[j]·c)      + bf16(−n[j+hd/2]·s) )     q·cos + rotate_half(q)·sin
 *     out[j+hd/2] = bf16( bf16(n[j+hd/2]·c) + bf16( n[j]·s) )          with bf16 tensors: each
 *                                                                      product and the fp32 sum
 *                                                                      rounded to bf16
 *   q_out[t, h] = out(q head h)      k_cache[slot, h] = out(k head h)      v_cache[slot, h] = v
 *
 * Dense Qwen3 passes three equal position rows (or mrope_section {hd/2, 0, 0}): every pair then
 * reads the same position and this is ordinary rope. mrope_section is a host array in both
 * functions. Slots must be distinct (two tokens writing one slot race on the GPU) and inside the
 * cache; cache slots not named by slot_mapping are left untouched.
 *
 * Requirements: hd even, 2 ≤ hd ≤ 512. The CUDA kernel additionally requires hd % 16 == 0 and
 * 16-byte aligned pointers (true for cudaMalloc'd buffers and Qwen3's hd = 128) and aborts with a
 * message otherwise (a programming error, like a failed CUDA call).
 *
 * kn_qk_norm_rope_ref is the plain-C reference (always built); kn_qk_norm_rope_cuda takes the
 * same arguments in the same order plus a stream, with device pointers (mrope_section excepted).
 */
#ifndef QVL_KERNELS_QK_NORM_ROPE_H
#define QVL_KERNELS_QK_NORM_ROPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_qk_norm_rope_ref(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
			 const uint16_t *qkv, const uint16_t *q_norm_w, const uint16_t *k_norm_w,
			 const int32_t *pos, const int32_t *slot_mapping, int T, int Hq, int KV,
			 int hd, const int mrope_section[3], float rope_theta, float eps);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_qk_norm_rope_cuda(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
			  const uint16_t *qkv, const uint16_t *q_norm_w, const uint16_t *k_norm_w,
			  const int32_t *pos, const int32_t *slot_mapping, int T, int Hq, int KV,
			  int hd, const int mrope_section[3], float rope_theta, float eps,
			  cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
