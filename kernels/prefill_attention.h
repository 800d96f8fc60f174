/*
 * prefill_attention: varlen causal attention over a paged KV cache, many new query rows per
 * sequence (prompt prefill, chunked prefill, prefix-cache hits). paged_attention.h is the
 * decode-only special case (one new row per sequence).
 *
 *   q            (T, Hq, hd) bf16       the new rows of all sequences, concatenated (rope applied)
 *   q_start      (n_seqs + 1) int32     sequence s owns rows q_start[s] .. q_start[s+1]-1;
 *                                       q_start[0] = 0, q_start[n_seqs] = T
 *   n_cached     (n_seqs) int32         positions of s already in the cache before this call
 *   k_cache      (n_blocks, block_size, KV, hd) bf16     one layer of the KV pool, holding the
 *   v_cache      (n_blocks, block_size, KV, hd) bf16     K/V of ALL positions (cached and new)
 *   block_table  (n_seqs, max_blocks_per_seq) int32   position p of sequence s lives in pool
 *                                       block block_table[s][p / block_size], row p % block_size
 *   out          (T, Hq, hd) bf16
 *
 *   new row i of sequence s is position P = n_cached[s] + i; query head h reads kv head h / g,
 *   g = Hq / KV (GQA):
 *   sc[p]  = scale · q[row, h, :] · k[p, :]                           0 ≤ p ≤ P  (causal)
 *   out    = bf16( Σ_p softmax(sc)[p] · v[p, :] )                    one rounding, at the end
 *
 * Rows and positions of one sequence (n_cached 5, 3 new rows, block_size 4):
 *
 *   positions   0 1 2 3 | 4 5 6 7 | 8 . . .
 *               c c c c   c n n n              c: cached, n: new (rows 0, 1, 2 = positions 5, 6, 7)
 *   row 0 attends 0..5, row 1 attends 0..6, row 2 attends 0..7
 *
 * Precision: q·k, the softmax (running max, rescaled sums) and P·V accumulate in fp32 on the GPU
 * (P is rounded to bf16 as the tensor-core operand, as FlashAttention does); everything in double
 * in the reference. bf16 output: the two agree to relative L2 ~2e-3.
 *
 * Limits of the CUDA kernel: hd ∈ {32, 64, 128}; Hq a multiple of KV; block_size a power of two;
 * scale > 0; q, k_cache, v_cache, out and the workspace 16-byte aligned. q_start and n_cached are trusted (they come from the
 * scheduler); a negative n_cached counts as 0, and positions past max_blocks_per_seq·block_size
 * are never read (rows that would need them are computed over the positions that exist).
 *
 * kn_prefill_attention_ref is the plain-C reference (always built; hd ≤
 * KN_PREFILL_ATTENTION_MAX_HD); kn_prefill_attention_cuda takes the same arguments in the same
 * order plus a device workspace of kn_prefill_attention_workspace_bytes(...) bytes (the CTA →
 * (sequence, query tile) map, and for small batches the partial results of a split over the
 * keys; allocate it once at start-up for the largest T and n_seqs — the size grows with both)
 * and a stream, with device pointers.
 *
 * fp8 KV cache (`--kv-cache-dtype fp8`, format in fp8.h): kn_prefill_attention_fp8_{ref,cuda}
 * take the same arguments with k_cache and v_cache of one byte per element (E4M3, the same
 * (n_blocks, block_size, KV, hd) layout; cached prefix and new rows alike, as qk_norm_rope
 * wrote them) and the two per-tensor scales after `scale`:
 *
 *   sc[p]  = scale · k_scale · (q[row, h, :] · float(kq[p, :]))
 *   out    = bf16( v_scale · Σ_p softmax(sc)[p] · float(vq[p, :]) )
 *
 * (the cache stores kq = fp8(k / k_scale), so float(kq)·k_scale is the K it stands for). The
 * GPU widens the bytes to bf16 (exact) and runs the bf16 kernel's tensor-core code: the same
 * precision, limits and workspace (kn_prefill_attention_workspace_bytes serves both); k_scale
 * and v_scale must be > 0. The NaN codes (0x7f, 0xff) are not decoded as NaN on the GPU (they
 * read as ±480); the cache writer never stores them for finite input.
 */
#ifndef QVL_KERNELS_PREFILL_ATTENTION_H
#define QVL_KERNELS_PREFILL_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KN_PREFILL_ATTENTION_MAX_HD 256

void kn_prefill_attention_ref(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			      const uint16_t *v_cache, const int32_t *block_table,
			      const int32_t *q_start, const int32_t *n_cached, int n_seqs, int T,
			      int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
			      float scale);

void kn_prefill_attention_fp8_ref(uint16_t *out, const uint16_t *q, const uint8_t *k_cache,
				  const uint8_t *v_cache, const int32_t *block_table,
				  const int32_t *q_start, const int32_t *n_cached, int n_seqs, int T,
				  int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
				  float scale, float k_scale, float v_scale);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
/* Bytes of workspace kn_prefill_attention_cuda needs for a batch of T rows in n_seqs sequences
 * with Hq heads of hd: (n_seqs + 1) int32 (rounded up to 256 bytes) plus, for the split-KV path,
 * min(T·Hq, 16384) · 8 · (hd + 2) fp32 (at most 17 MB at hd 128). max_ctx does not change it. */
size_t kn_prefill_attention_workspace_bytes(int T, int n_seqs, int Hq, int hd, int max_ctx);

/* Returns 0 (also for n_seqs ≤ 0 or T ≤ 0: nothing to do), or -1 (nothing launched) when the
 * shape is outside the limits above or workspace_bytes is less than
 * kn_prefill_attention_workspace_bytes(T, n_seqs, Hq, hd, ·).
 * QVL_PREFILL_ATTN_BM=64|128 and QVL_PREFILL_ATTN_SPLIT=1..8 in the environment force the query
 * tile height and the number of key splits (tests, benchmarks). */
int kn_prefill_attention_cuda(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			      const uint16_t *v_cache, const int32_t *block_table,
			      const int32_t *q_start, const int32_t *n_cached, int n_seqs, int T,
			      int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
			      float scale, void *workspace, size_t workspace_bytes,
			      cudaStream_t stream);

/* The fp8 cache: as kn_prefill_attention_cuda (same returns, same workspace size; also -1 when
 * k_scale or v_scale is not > 0). */
int kn_prefill_attention_fp8_cuda(uint16_t *out, const uint16_t *q, const uint8_t *k_cache,
				  const uint8_t *v_cache, const int32_t *block_table,
				  const int32_t *q_start, const int32_t *n_cached, int n_seqs, int T,
				  int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
				  float scale, float k_scale, float v_scale, void *workspace,
				  size_t workspace_bytes, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
