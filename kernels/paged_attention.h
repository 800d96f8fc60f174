/*
 * paged_attention: decode attention over a paged KV cache, one new query position per sequence.
 *
 *   q            (B, Hq, hd) bf16            the new position's queries (rope applied)
 *   k_cache      (n_blocks, block_size, KV, hd) bf16     one layer of the KV pool
 *   v_cache      (n_blocks, block_size, KV, hd) bf16
 *   block_table  (B, max_blocks_per_seq) int32   position p of sequence b lives in pool block
 *                                                block_table[b][p / block_size], row
 *                                                p % block_size
 *   ctx_len      (B) int32                       positions to attend, the new one included (its
 *                                                K/V already written to the cache), ≥ 1
 *   out          (B, Hq, hd) bf16
 *
 *   query head h reads kv head h / g, g = Hq / KV (GQA)
 *   s[p]   = scale · q[b,h,:] · k[p,:]                               p < ctx_len[b]
 *   out    = bf16( Σ_p softmax(s)[p] · v[p,:] )                      one rounding, at the end
 *
 * Pool layout of one sequence (block_size 4, block_table[b] = {7, 2, 5}, ctx_len 10):
 *
 *   positions  0 1 2 3 | 4 5 6 7 | 8 9 . .
 *   pool block    7    |    2    |    5        rows of (KV, hd) each; '.' is never read
 *
 * Precision: scores, softmax (max-subtracted, running max across pieces and the CTAs of a
 * split) and the weighted sum in fp32 on the GPU; everything in double in the reference. bf16
 * output, so the two agree to bf16 rounding (relative L2 ~1e-3). The summation order follows
 * the batch size: the split count, and from B = 8 the pipelined kernel's shorter pieces (32
 * rows, against 64: paged_attention.cu), so the same sequence can differ in its last bits
 * between batch sizes; every order is within the same tolerances.
 *
 * Limits of the CUDA kernel: hd ∈ {32, 64, 128, 256}; 1 ≤ g ≤ 8; B, KV ≤ 65535; block_size a
 * power of two; q, k_cache, v_cache 16-byte aligned. ctx_len values the kernel trusts (they
 * come from the scheduler) but clamps to [0, max_blocks_per_seq·block_size]; a sequence of 0
 * positions gets a zero output.
 *
 * kn_paged_attention_ref is the plain-C reference (always built; hd ≤ KN_PAGED_ATTENTION_MAX_HD);
 * kn_paged_attention_cuda takes the same arguments in the same order plus a device workspace
 * of kn_paged_attention_workspace_bytes(B, Hq, hd, max_ctx) bytes (allocate it once at
 * start-up, for the largest batch and max_ctx ≥ max_blocks_per_seq·block_size) and a stream,
 * with device pointers. The CUDA kernel is one launch (split-KV inside a thread-block cluster,
 * sm_90; paged_attention.cu) and launches with PDL: it may read ctx_len, block_table and the
 * cached positions < ctx_len − 1 before its predecessor in the stream has finished, so none of
 * those may be written by the kernel launched just before it (the new position ctx_len − 1,
 * q and everything else may).
 *
 * fp8 KV cache (`--kv-cache-dtype fp8`, format in fp8.h): kn_paged_attention_fp8_{ref,cuda}
 * take the same arguments with k_cache and v_cache of one byte per element (E4M3, the same
 * (n_blocks, block_size, KV, hd) layout) and the two per-tensor scales after `scale`:
 *
 *   s[p]   = scale · k_scale · (q[b,h,:] · float(kq[p,:]))
 *   out    = bf16( v_scale · Σ_p softmax(s)[p] · float(vq[p,:]) )
 *
 * (the cache stores kq = fp8(k / k_scale), so float(kq)·k_scale is the K it stands for). Same
 * limits, precision, workspace and PDL contract as the bf16 kernel; the K/V bytes read are
 * halved, and from B = 32 the time is 0.63-0.71 of the bf16 kernel's (H200, hd 128, g 2).
 */
#ifndef QVL_KERNELS_PAGED_ATTENTION_H
#define QVL_KERNELS_PAGED_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KN_PAGED_ATTENTION_MAX_HD 256

void kn_paged_attention_ref(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			    const uint16_t *v_cache, const int32_t *block_table,
			    const int32_t *ctx_len, int B, int Hq, int KV, int hd, int block_size,
			    int max_blocks_per_seq, float scale);

void kn_paged_attention_fp8_ref(uint16_t *out, const uint16_t *q, const uint8_t *k_cache,
				const uint8_t *v_cache, const int32_t *block_table,
				const int32_t *ctx_len, int B, int Hq, int KV, int hd,
				int block_size, int max_blocks_per_seq, float scale, float k_scale,
				float v_scale);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
/* Bytes of workspace kn_paged_attention_cuda needs for any batch of up to B sequences: a
 * small constant (the kernel merges its splits in shared memory and uses none); it does not
 * grow with B or max_ctx, which are kept for the callers' sake. 0 for a non-positive argument. */
size_t kn_paged_attention_workspace_bytes(int B, int Hq, int hd, int max_ctx);

/* Returns 0, or -1 (nothing launched) when the shape is outside the limits above or
 * workspace_bytes is less than kn_paged_attention_workspace_bytes(B, Hq, hd,
 * max_blocks_per_seq·block_size). */
int kn_paged_attention_cuda(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			    const uint16_t *v_cache, const int32_t *block_table,
			    const int32_t *ctx_len, int B, int Hq, int KV, int hd, int block_size,
			    int max_blocks_per_seq, float scale, void *workspace,
			    size_t workspace_bytes, cudaStream_t stream);

/* The fp8 cache: as kn_paged_attention_cuda (same workspace size), and -1 also when scale,
 * k_scale or v_scale is not > 0 or scale·k_scale or v_scale is not finite (as
 * kn_prefill_attention_fp8_cuda). */
int kn_paged_attention_fp8_cuda(uint16_t *out, const uint16_t *q, const uint8_t *k_cache,
				const uint8_t *v_cache, const int32_t *block_table,
				const int32_t *ctx_len, int B, int Hq, int KV, int hd,
				int block_size, int max_blocks_per_seq, float scale, float k_scale,
				float v_scale, void *workspace, size_t workspace_bytes,
				cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
