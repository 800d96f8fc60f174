/*
 * qk_norm_rope: the per-head step between the fused q,k,v projection and attention, for the T
 * new tokens of a ragged batch: q_norm/k_norm (per-head RMSNorm), interleaved MRoPE on q and k,
 * q to its own buffer, k and v into one layer of the paged KV cache.
 *
 *   qkv      (T, (Hq + 2·KV)·hd) fp32   row t = [ q head 0 … Hq-1 | k head 0 … KV-1 | v head 0 … KV-1 ]
 *                                       (the fused projection's fp32 output, text_cuda.c)
 *   q_norm_w, k_norm_w (hd) bf16        pos (3, T) int32: rows T, H, W (all equal for dense Qwen3)
 *   slot_mapping (T) int32              slot = block·block_size + offset; -1: no cache write
 *   q_out    (T, Hq, hd) bf16           always written
 *   k_cache, v_cache (n_blocks, block_size, KV, hd) bf16: element (slot, h, i) at (slot·KV + h)·hd + i
 *
 * Per head x (hd fp32 values), computed in fp32 (double in the reference) and rounded to bf16
 * once, where q and k become attention operands — the decoder's precision rule (text_cuda.c),
 * not transformers-in-bf16's roundings after every op:
 *   n[i]   = w[i] · (x[i]·r),  r = 1 / sqrt(mean_i(x[i]²) + eps)
 *   rope, pair j = (j, j + hd/2), j < hd/2 (rotate_half pairing):
 *     inv_freq[j] = 1 / theta^(2j/hd)               fp32: 1.0f / powf(theta, (float)(2j) / hd)
 *     axis(j)     = H if j%3 == 1 and j < 3·mrope_section[1]
 *                   W if j%3 == 2 and j < 3·mrope_section[2]
 *                   T otherwise                     (interleaved MRoPE, spec §7.2)
 *     θ           = float(pos[axis(j)][t]) · inv_freq[j]                        one fp32 multiply
 *     c, s        = float(cos θ), float(sin θ)      (taken in double, rounded to fp32)
 *     out[j]      = bf16( n[j]·c − n[j+hd/2]·s )                           q·cos + rotate_half(q)·sin
 *     out[j+hd/2] = bf16( n[j+hd/2]·c + n[j]·s )                           one rounding each
 *   q_out[t, h] = out(q head h)      k_cache[slot, h] = out(k head h)      v_cache[slot, h] = bf16(v)
 *
 * Dense Qwen3 passes three equal position rows (or mrope_section {hd/2, 0, 0}): every pair then
 * reads the same position and this is ordinary rope. mrope_section is a host array in both
 * functions. Slots must be distinct (two tokens writing one slot race on the GPU) and inside the
 * cache; cache slots not named by slot_mapping are left untouched.
 *
 * The GPU's fp32 sums run in another order than the reference's double ones, so q and k agree
 * to a bf16 ulp (relative L2 ~1e-3), v bit for bit.
 *
 * Requirements: hd even, 2 ≤ hd ≤ 512. The CUDA kernel additionally requires hd % 16 == 0 and
 * 16-byte aligned pointers (true for cudaMalloc'd buffers and Qwen3's hd = 128) and aborts with a
 * message otherwise (a programming error, like a failed CUDA call).
 *
 * kn_qk_norm_rope_ref is the plain-C reference (always built); kn_qk_norm_rope_cuda takes the
 * same arguments in the same order plus a stream, with device pointers (mrope_section excepted).
 *
 * fp8 KV cache (`--kv-cache-dtype fp8`, format in fp8.h): kn_qk_norm_rope_fp8_{ref,cuda} take
 * k_cache and v_cache of one E4M3 byte per element (same (slot, h, i) layout) and the
 * per-tensor scales k_scale, v_scale after eps. q_out is the same; with inv = 1.0f / scale in
 * fp32 and one fp32 product,
 *   k_cache[slot, h, i] = f32_to_fp8e4m3( out(k head h)[i] · inv_k )     (out: the bf16 above)
 *   v_cache[slot, h, i] = f32_to_fp8e4m3( bf16(v[i]) · inv_v )
 * rounding to nearest even and saturating at ±448, so the GPU writes the bytes the reference
 * writes from the same bf16 values.
 *
 * kn_rope_table: the rope's c and s above for T tokens, cs and sn (T, hd/2) fp32, element
 * (t, j) = c, s of pair j of token t: the same fp32 values qk_norm_rope computes for itself
 * (inv_freq, the axis, θ as one fp32 product, cos and sin in double rounded to fp32). A step's
 * positions are the same in every layer, so gemm_qkv_tma's epilogue (the q/k/v projection
 * with this step in it) reads the table computed once a step instead of 28 times. The CUDA
 * version gives the reference's values bit for bit where the device's double cos and sin are
 * correctly rounded to fp32 (every case the tests draw).
 */
#ifndef QVL_KERNELS_QK_NORM_ROPE_H
#define QVL_KERNELS_QK_NORM_ROPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_qk_norm_rope_ref(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
			 const float *qkv, const uint16_t *q_norm_w, const uint16_t *k_norm_w,
			 const int32_t *pos, const int32_t *slot_mapping, int T, int Hq, int KV,
			 int hd, const int mrope_section[3], float rope_theta, float eps);

void kn_qk_norm_rope_fp8_ref(uint16_t *q_out, uint8_t *k_cache, uint8_t *v_cache,
			     const float *qkv, const uint16_t *q_norm_w,
			     const uint16_t *k_norm_w, const int32_t *pos,
			     const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
			     const int mrope_section[3], float rope_theta, float eps,
			     float k_scale, float v_scale);

void kn_rope_table_ref(float *cs, float *sn, const int32_t *pos, int T, int hd,
		       const int mrope_section[3], float rope_theta);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_rope_table_cuda(float *cs, float *sn, const int32_t *pos, int T, int hd,
			const int mrope_section[3], float rope_theta, cudaStream_t stream);
void kn_qk_norm_rope_cuda(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
			  const float *qkv, const uint16_t *q_norm_w, const uint16_t *k_norm_w,
			  const int32_t *pos, const int32_t *slot_mapping, int T, int Hq, int KV,
			  int hd, const int mrope_section[3], float rope_theta, float eps,
			  cudaStream_t stream);
void kn_qk_norm_rope_fp8_cuda(uint16_t *q_out, uint8_t *k_cache, uint8_t *v_cache,
			      const float *qkv, const uint16_t *q_norm_w,
			      const uint16_t *k_norm_w, const int32_t *pos,
			      const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
			      const int mrope_section[3], float rope_theta, float eps,
			      float k_scale, float v_scale, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
