/*
 * prefill_attention CUDA kernels (shapes, pool layout, formula and limits in prefill_attention.h;
 * reference kn_prefill_attention_ref).
 *
 * FlashAttention-2 on tensor cores (mma.sync m16n8k16 bf16 → fp32, sm_80+), in two launches
 * (three with split-KV). Head dim 128 on an sm_90 device runs prefill_attention_wgmma.cu's
 * kernel in launch 2 instead (wgmma, the same 128-row tiles, map, splits and workspace;
 * QVL_PREFILL_ATTN_WG=0 or an explicit QVL_PREFILL_ATTN_BM keeps this file's):
 *
 *   1. pfa_tiles_kernel, one CTA of 1024 threads: tile_prefix[s] = Σ_{s'<s} ceil(len_s' / BM),
 *      the number of query tiles before sequence s (a block-wide scan), into the workspace.
 *   2. pfa_kernel<HD, RW>, grid (Hq, min(ceil(T / BM) + n_seqs, T), nsplit), 4 warps, each
 *      owning RW blocks of 16 query rows (BM = 64·RW). CTA (h, t, ·) finds its sequence s by
 *      binary search over tile_prefix (CTAs past the last tile return) and takes query tile
 *      mt of s counted from the LAST tile, so that the tiles with the most keys start first;
 *      head is the fast grid index so the heads sharing a tile's K/V run side by side (L2
 *      reuse across the GQA group). The CTA walks the key positions 0 .. (its last row's
 *      position) in tiles of BN = 64:
 *
 *        smem  K0 (BN, hd+8) | V0 (BN, hd+8) | K1 | V1 [| Q (128, hd+8) for RW 2]
 *              bf16 rows padded by 16 bytes, so ldmatrix reads 8 rows conflict-free. For RW 1
 *              Q (64 rows) is staged in K1 and moved to registers before tile 1 lands there;
 *              for RW 2 it stays in shared memory and is re-read per 32-dim slice.
 *        tile j+1's K and V rows are gathered through the block table with cp.async (16 bytes,
 *        zero-filled past the sequence's positions) into the other buffer while tile j is
 *        computed; one __syncthreads per tile.
 *        S = Q·Kᵀ (16·RW × 64 per warp, fp32; with RW 2 every K fragment feeds two MMAs);
 *        positions past a row's own are set to -inf (only tiles that reach past the warp's
 *        first row do this); online softmax per row in the log2 domain (quad shuffles for the
 *        max; p = 2^(s·scale·log2 e − m), one FFMA and one MUFU.EX2), O ·= 2^(m_old − m_new);
 *        P (bf16, straight from the S accumulators: the C layout of m16n8 is the A layout of
 *        m16k16) · V with ldmatrix.trans → O (16·RW × hd fp32 in registers).
 *      Position 0 is attended by every row, so l > 0 at the end and no row divides by zero.
 *      At the end O / l → bf16, the single rounding, stored for the rows the sequence has.
 *   3. Split-KV, for batches too small to fill the GPU (chunked prefill after a long cache, a
 *      few decode-like rows): split z of nsplit takes a contiguous share of the CTA's key tiles
 *      and writes unnormalised O and (m, l) in fp32 to the workspace (a row that saw only
 *      masked keys writes l = 0); pfa_combine_kernel, one CTA per (row, head), merges them
 *      with weights 2^(m_z − M) and rounds once.
 *
 * Workspace: tile_prefix (n_seqs + 1) int32, padded to 256 bytes | split O (nsplit, T, Hq, hd)
 * fp32 | split (m, l) (nsplit, T, Hq) float2, sized for PFA_MAX_SPLIT splits of at most
 * PFA_SPLIT_MAX_RH (row, head) pairs.
 *
 * Cost: 4·hd·Hq FLOPs per (row, attended position). mma.sync needs one ldmatrix.x4 (512 bytes
 * of shared memory) per two MMAs at RW 1, which makes shared-memory bandwidth the limit;
 * RW 2 halves the K/V reads per MMA. Shared memory per CTA: (4·BN + (RW−1)·128)·(hd + 8)·2
 * bytes (hd 128: 68 KB at RW 1, 102 KB at RW 2); registers: 168 (RW 1, three CTAs per SM),
 * ~255 (RW 2, two CTAs per SM).
 * BM is 128 (RW 2) when the batch has at least a full wave of 128-row CTAs, else 64;
 * QVL_PREFILL_ATTN_BM=64|128 overrides it. H100 numbers: tests/check_attention_cuda.c, timing.
 *
 * fp8 cache (kn_prefill_attention_fp8_cuda): the same kernel, pfa_kernel<HD, RW, uint8_t>. The
 * math after the K/V tile is in shared memory is the bf16 code unchanged: every E4M3 value is
 * a bf16, so the tile is widened exactly and k_scale is folded into the score scale (scale_log2
 * = scale · k_scale · log2 e) and v_scale into the final 1 / l (or into the split partials).
 * Only the tile pipeline differs, one bf16 buffer and an fp8 staging area:
 *
 *   smem  K (BN, hd+8) | V (BN, hd+8) bf16 [| Q (128, hd+8) for RW 2] | K8 (BN, hd) | V8 (BN, hd)
 *         (RW 1 stages Q in the bf16 buffer; hd 128: 50 KB at RW 1, 84 KB at RW 2, so the
 *         occupancy stays three and two CTAs per SM, which two bf16 buffers plus staging
 *         would not allow at RW 1)
 *   per tile j: wait for tile j's bytes; sync (every warp is done with tile j-1's buffer);
 *         each thread widens the 16-byte chunks of K8/V8 that it copied itself (so no barrier
 *         is needed between the copy and the widening, nor before re-filling them) into the
 *         bf16 buffer and issues tile j+1's cp.async into those chunks; sync; compute tile j.
 *   The widening is bit arithmetic (pfa_fp8x4_to_bf16x4: four E4M3 bytes, two PRMT, shifts and
 *   masks, one bf16x2 multiply by 2^120 per pair), equal to fp8x2_to_bf162 (fp8.cuh) on all
 *   codes but the two NaNs, at a fraction of the cost of the cvt path through half and float
 *   (tests/check_attention_cuda.c reads every code back against fp8e4m3_to_f32).
 */
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "mma.cuh"
#include "prefill_attention.cuh"
#include "prefill_attention.h"
#include "prefill_attention_wgmma.h"

#define PFA_BN 64
#define PFA_THREADS 128
#define PFA_SCAN_THREADS 1024


/* ---- 1. tile map ------------------------------------------------------------------------ */

/* prefix[0] = 0, prefix[s+1] = prefix[s] + ceil(len_s / bm); one CTA of PFA_SCAN_THREADS. */
static __global__ void __launch_bounds__(PFA_SCAN_THREADS)
pfa_tiles_kernel(int32_t *prefix, const int32_t *q_start, int n_seqs, int bm)
{
	__shared__ int warp_sum[PFA_SCAN_THREADS / 32];
	__shared__ int carry;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	if (tid == 0) {
		carry = 0;
		prefix[0] = 0;
	}
	__syncthreads();
	for (int base = 0; base < n_seqs; base += PFA_SCAN_THREADS) {
		const int s = base + tid;
		int v = 0;
		if (s < n_seqs) {
			int len = q_start[s + 1] - q_start[s];
			v = len > 0 ? (len + bm - 1) / bm : 0;
		}
		for (int o = 1; o < 32; o <<= 1) {
			int u = __shfl_up_sync(0xffffffffu, v, o);
			if (lane >= o)
				v += u;
		}
		if (lane == 31)
			warp_sum[warp] = v;
		__syncthreads();
		if (warp == 0) {
			int w = warp_sum[lane];
			for (int o = 1; o < 32; o <<= 1) {
				int u = __shfl_up_sync(0xffffffffu, w, o);
				if (lane >= o)
					w += u;
			}
			warp_sum[lane] = w;  /* inclusive */
		}
		__syncthreads();
		v += carry + (warp > 0 ? warp_sum[warp - 1] : 0);
		if (s < n_seqs)
			prefix[s + 1] = v;
		__syncthreads();   /* every thread has read carry */
		if (tid == PFA_SCAN_THREADS - 1)
			carry = v;
		__syncthreads();
	}
}

/* ---- 2. attention ----------------------------------------------------------------------- */

/*
 * HD: head dim; RW: 16-row blocks per warp (4 warps, BM = 64·RW query rows); KVT: the cache
 * element, uint16_t (bf16) or uint8_t (fp8 E4M3, widened to bf16 in shared memory).
 *   RW 1: the warp's Q fragments live in registers (staged in buffer 1, read once);
 *         168 registers, three CTAs per SM.
 *   RW 2: each K/V fragment read from shared memory feeds two MMAs (half the shared-memory
 *         traffic per FLOP); Q has its own region and its fragments are re-read per 32-dim
 *         slice; ~255 registers, two CTAs per SM.
 * Dynamic shared memory: pfa_smem_bytes<HD, RW, KVT>().
 * scale_log2 = scale · k_scale · log2 e; v_scale multiplies the output (fp8 only; the bf16
 * instantiation ignores it and its code is the bf16-only kernel's).
 */
template <int HD, int RW, typename KVT>
static __global__ void __launch_bounds__(PFA_THREADS, RW == 1 ? 3 : 2)
pfa_kernel(__nv_bfloat16 *out, const uint16_t *q, const KVT *k_cache, const KVT *v_cache,
	   const int32_t *block_table, const int32_t *q_start, const int32_t *n_cached,
	   const int32_t *tile_prefix, int n_seqs, int T, int Hq, int KV, int log2_bs,
	   int max_blocks_per_seq, float scale_log2, float v_scale, float *ws_o, float2 *ws_ml)
{
	constexpr bool FP8 = sizeof(KVT) == 1;
	constexpr int NW = PFA_THREADS / 32, BM = 16 * RW * NW, BN = PFA_BN, NT = PFA_THREADS;
	constexpr int LD = HD + 8;             /* smem row stride in bf16 */
	constexpr int CPR = HD / 8;            /* 16-byte chunks per bf16 row */
	constexpr int CPR8 = HD / 16;          /* 16-byte chunks per fp8 row */
	extern __shared__ uint4 pfa_smem[];
	/* bf16: buffer b: K (BN, LD) then V (BN, LD); Q: buffer 1 (RW 1) or after both buffers
	 * (RW 2). fp8: one buffer, Q in it (RW 1) or after it (RW 2), then the fp8 staging
	 * K8 (BN, HD) | V8 (BN, HD) bytes, chunk c of a tile at byte 16·c of each. */
	uint16_t *sbuf = (uint16_t *)pfa_smem;
	uint16_t *sQ = sbuf + (FP8 ? (RW == 1 ? 0 : 2) : (RW == 1 ? 2 : 4)) * BN * LD;
	uint8_t *sK8 = (uint8_t *)(sbuf + (RW == 1 ? 2 : 4) * BN * LD);   /* fp8 only */
	uint8_t *sV8 = sK8 + BN * HD;
	static_assert(RW == 2 || BM <= 2 * BN, "Q must fit in one K+V buffer");
	static_assert(sizeof(KVT) == 1 || sizeof(KVT) == 2, "bf16 or fp8 cache");
	static_assert(BN * CPR8 % NT == 0, "whole fp8 chunks per thread");

	const int h = blockIdx.x, nsplit = gridDim.z, z = blockIdx.z;
	pfa_work w;
	if (!pfa_locate(w, tile_prefix, q_start, n_cached, n_seqs, blockIdx.y, z, nsplit, BM, BN,
			max_blocks_per_seq << log2_bs))
		return;
	const int s = w.s, row0 = w.row0, m0 = w.m0, nc = w.nc, kv_len = w.kv_len, rows = w.rows;
	const int j0 = w.j0, j1 = w.j1;
	const int kvh = h / (Hq / KV);
	const int bs_mask = (1 << log2_bs) - 1;
	const int32_t *bt = block_table + (long)s * max_blocks_per_seq;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

	/* Q tile, rows past the sequence zero-filled */
	for (int c = tid; c < BM * CPR; c += NT) {
		int r = c / CPR, cc = c % CPR;
		bool ok = r < rows;
		const uint16_t *src = ok ? q + ((long)(row0 + m0 + r) * Hq + h) * HD + cc * 8 : q;
		cp_async16(sQ + r * LD + cc * 8, src, ok);
	}
	/* fp8 chunk c of a tile → (row, 16-byte column). At hd 128 a group of 8 threads takes
	 * columns 0-3 or 4-7 of two rows, so that the widened 16-byte stores of the group fall
	 * on 8 distinct bank groups of the padded bf16 rows (row stride 17 groups, column 2). */
	auto chunk8 = [](int c, int &r, int &cc) {
		if (CPR8 == 8) {
			const int g8 = c >> 3, w = c & 7;
			r = ((g8 >> 1) << 1) | (w >> 2);
			cc = ((g8 & 1) << 2) | (w & 3);
		} else {
			r = c / CPR8;
			cc = c % CPR8;
		}
	};
	/* K/V tile j into buffer b (bf16) or into the staging area (fp8, b unused), gathered
	 * through the block table */
	auto load_kv = [&](int j, int b) {
		if constexpr (FP8) {
			/* not unrolled (also below): per-chunk addresses hoisted out of the tile loop
			 * would hold registers through the MMAs and spill at RW 2 */
#pragma unroll 1
			for (int i = 0; i < BN * CPR8 / NT; i++) {
				const int c = tid + i * NT;
				int r, cc;
				chunk8(c, r, cc);
				int p = j * BN + r;
				bool ok = p < kv_len;
				long off = 0;
				if (ok) {
					long slot = ((long)bt[p >> log2_bs] << log2_bs) + (p & bs_mask);
					off = (slot * KV + kvh) * HD + cc * 16;
				}
				cp_async16(sK8 + c * 16, k_cache + off, ok);
				cp_async16(sV8 + c * 16, v_cache + off, ok);
			}
		} else {
			uint16_t *dk = sbuf + b * 2 * BN * LD, *dv = dk + BN * LD;
			for (int c = tid; c < BN * CPR; c += NT) {
				int r = c / CPR, cc = c % CPR;
				int p = j * BN + r;
				bool ok = p < kv_len;
				long off = 0;
				if (ok) {
					long slot = ((long)bt[p >> log2_bs] << log2_bs) + (p & bs_mask);
					off = (slot * KV + kvh) * HD + cc * 8;
				}
				cp_async16(dk + r * LD + cc * 8, k_cache + off, ok);
				cp_async16(dv + r * LD + cc * 8, v_cache + off, ok);
			}
		}
	};
	/* fp8: the staged chunks this thread copied (its own cp.async has completed) → the bf16
	 * buffer; rows past the sequence were zero-filled and stay zero */
	auto widen_kv = [&]() {
#pragma unroll 1
		for (int i = 0; i < BN * CPR8 / NT; i++) {
			const int c = tid + i * NT;
			int r, cc;
			chunk8(c, r, cc);
#pragma unroll
			for (int kv = 0; kv < 2; kv++) {
				const uint4 x = *(const uint4 *)((kv ? sV8 : sK8) + c * 16);
				uint4 a, b;
				pfa_fp8x4_to_bf16x4(x.x, a.x, a.y);
				pfa_fp8x4_to_bf16x4(x.y, a.z, a.w);
				pfa_fp8x4_to_bf16x4(x.z, b.x, b.y);
				pfa_fp8x4_to_bf16x4(x.w, b.z, b.w);
				uint16_t *d = sbuf + kv * BN * LD + r * LD + cc * 16;
				*(uint4 *)d = a;
				*(uint4 *)(d + 8) = b;
			}
		}
	};
	if (j0 < j1)
		load_kv(j0, 0);
	cp_async_commit();

	const int g = lane >> 2, tq = lane & 3;
	const int wrow = warp * 16 * RW;            /* the warp's first row in the tile */
	/* the last position each of this thread's rows (wrow + rb·16 + g, + 8) may attend */
	int lim[RW][2];
#pragma unroll
	for (int rb = 0; rb < RW; rb++) {
		lim[rb][0] = min(nc + m0 + wrow + rb * 16 + g, kv_len - 1);
		lim[rb][1] = min(nc + m0 + wrow + rb * 16 + g + 8, kv_len - 1);
	}
	const int warp_lim = min(nc + m0 + wrow, kv_len - 1);   /* the smallest lim in the warp */
	auto ldsm_q = [&](uint32_t r[4], int rb, int k0) {
		ldsm_x4(r, sQ + (wrow + rb * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LD + k0 +
				   8 * (lane >> 4));
	};
	uint32_t qf[RW == 1 ? HD / 16 : 1][4];   /* RW 1 only */

	float o[RW][HD / 8][4];
#pragma unroll
	for (int rb = 0; rb < RW; rb++)
#pragma unroll
		for (int i = 0; i < HD / 8; i++)
			o[rb][i][0] = o[rb][i][1] = o[rb][i][2] = o[rb][i][3] = 0.f;
	float m_r[RW][2], l_r[RW][2];
#pragma unroll
	for (int rb = 0; rb < RW; rb++) {
		m_r[rb][0] = m_r[rb][1] = -INFINITY;
		l_r[rb][0] = l_r[rb][1] = 0.f;
	}

	for (int j = j0; j < j1; j++) {
		const int buf = (j - j0) & 1;   /* bf16 only */
		cp_async_wait_all();
		__syncthreads();     /* tile j visible to all; everyone is done with tile j-1 */
		if (RW == 1 && j == j0) {
#pragma unroll
			for (int kk = 0; kk < HD / 16; kk++)
				ldsm_q(qf[RW == 1 ? kk : 0], 0, kk * 16);
			__syncthreads();   /* every warp has its Q: its buffer may take a tile */
		}
		const uint16_t *tk;
		if constexpr (FP8) {
			widen_kv();
			/* the compiler must not move the widening's shared loads past the copies
			 * that overwrite the same staging chunks */
			asm volatile("" ::: "memory");
			if (j + 1 < j1)
				load_kv(j + 1, 0);
			cp_async_commit();
			__syncthreads();   /* the widened tile j is visible to every warp */
			tk = sbuf;
		} else {
			if (j + 1 < j1)
				load_kv(j + 1, buf ^ 1);
			cp_async_commit();
			tk = sbuf + buf * 2 * BN * LD;
		}
		const uint16_t *tv = tk + BN * LD;
		float sc[RW][BN / 8][4];
#pragma unroll
		for (int rb = 0; rb < RW; rb++)
#pragma unroll
			for (int nt = 0; nt < BN / 8; nt++)
				sc[rb][nt][0] = sc[rb][nt][1] = sc[rb][nt][2] = sc[rb][nt][3] = 0.f;
#pragma unroll
		for (int kk = 0; kk < HD / 32; kk++) {
			uint32_t qa[RW][2][4];
#pragma unroll
			for (int rb = 0; rb < RW; rb++)
#pragma unroll
				for (int half = 0; half < 2; half++) {
					if (RW == 1) {
#pragma unroll
						for (int i = 0; i < 4; i++)
							qa[rb][half][i] = qf[RW == 1 ? 2 * kk + half : 0][i];
					} else {
						ldsm_q(qa[rb][half], rb, kk * 32 + half * 16);
					}
				}
#pragma unroll
			for (int nt = 0; nt < BN / 8; nt++) {
				uint32_t b[4];
				ldsm_x4(b, tk + (nt * 8 + (lane & 7)) * LD + kk * 32 + 8 * (lane >> 3));
#pragma unroll
				for (int rb = 0; rb < RW; rb++) {
					mma_bf16(sc[rb][nt], qa[rb][0], b[0], b[1]);
					mma_bf16(sc[rb][nt], qa[rb][1], b[2], b[3]);
				}
			}
		}
		/* causal mask, only on tiles that reach past the warp's first row */
		const bool need_mask = j * BN + BN - 1 > warp_lim;
		if (need_mask) {
#pragma unroll
			for (int rb = 0; rb < RW; rb++)
#pragma unroll
				for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++) {
						int key = j * BN + nt * 8 + 2 * tq + (e & 1);
						if (key > lim[rb][e >> 1])
							sc[rb][nt][e] = -INFINITY;
					}
		}
		/* online softmax, rows wrow + rb·16 + g (e 0,1) and + 8 (e 2,3); a row lives in a quad */
#pragma unroll
		for (int rb = 0; rb < RW; rb++)
#pragma unroll
		for (int r = 0; r < 2; r++) {
			float mx = -INFINITY;
#pragma unroll
			for (int nt = 0; nt < BN / 8; nt++)
				mx = fmaxf(mx, fmaxf(sc[rb][nt][2 * r], sc[rb][nt][2 * r + 1]));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
			/* scores stay unscaled: scale_log2 > 0 commutes with the max, and
			 * 2^(s·scale_log2 − m) is one FFMA and one MUFU.EX2 */
			float m_new = fmaxf(m_r[rb][r], mx * scale_log2);
			const float alpha = fast_exp2(m_r[rb][r] - m_new);   /* 0 while m_r is -inf */
			m_r[rb][r] = m_new;
			/* a split without position 0 may see only masked keys so far: every p is 0 */
			if (m_new == -INFINITY)
				m_new = 0.f;
			float sum = 0.f;
#pragma unroll
			for (int nt = 0; nt < BN / 8; nt++) {
				float p0 = fast_exp2(fmaf(sc[rb][nt][2 * r], scale_log2, -m_new));
				float p1 = fast_exp2(fmaf(sc[rb][nt][2 * r + 1], scale_log2, -m_new));
				sc[rb][nt][2 * r] = p0;
				sc[rb][nt][2 * r + 1] = p1;
				sum += p0 + p1;
			}
			l_r[rb][r] = l_r[rb][r] * alpha + sum;   /* this thread's part; the quad sums at the end */
#pragma unroll
			for (int i = 0; i < HD / 8; i++) {
				o[rb][i][2 * r] *= alpha;
				o[rb][i][2 * r + 1] *= alpha;
			}
		}

		/* O += P · V; P straight from the S accumulators (C layout of m16n8 = A layout) */
#pragma unroll
		for (int ks = 0; ks < BN / 16; ks++) {
			uint32_t a[RW][4];
#pragma unroll
			for (int rb = 0; rb < RW; rb++) {
				a[rb][0] = pack_bf16x2(sc[rb][2 * ks][0], sc[rb][2 * ks][1]);
				a[rb][1] = pack_bf16x2(sc[rb][2 * ks][2], sc[rb][2 * ks][3]);
				a[rb][2] = pack_bf16x2(sc[rb][2 * ks + 1][0], sc[rb][2 * ks + 1][1]);
				a[rb][3] = pack_bf16x2(sc[rb][2 * ks + 1][2], sc[rb][2 * ks + 1][3]);
			}
#pragma unroll
			for (int dn = 0; dn < HD / 16; dn++) {
				uint32_t b[4];
				ldsm_x4_trans(b, tv + (ks * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LD +
							 dn * 16 + 8 * (lane >> 4));
#pragma unroll
				for (int rb = 0; rb < RW; rb++) {
					mma_bf16(o[rb][2 * dn], a[rb], b[0], b[1]);
					mma_bf16(o[rb][2 * dn + 1], a[rb], b[2], b[3]);
				}
			}
		}
	}
	cp_async_wait_all();   /* an empty split still has its Q copy in flight */

#pragma unroll
	for (int rb = 0; rb < RW; rb++) {
#pragma unroll
		for (int r = 0; r < 2; r++) {
			l_r[rb][r] += __shfl_xor_sync(0xffffffffu, l_r[rb][r], 1);
			l_r[rb][r] += __shfl_xor_sync(0xffffffffu, l_r[rb][r], 2);
		}
		const int r_lo = wrow + rb * 16 + g, r_hi = r_lo + 8;
		if (nsplit > 1) {
			/* partial result of this split: unnormalised O (times v_scale for fp8), and
			 * (m, l) in the log2 domain */
			const float vs = FP8 ? v_scale : 1.f;
			const long o_lo = ((long)z * T + row0 + m0 + r_lo) * Hq + h;
			const long o_hi = o_lo + 8L * Hq;
			if (tq == 0 && r_lo < rows)
				ws_ml[o_lo] = make_float2(m_r[rb][0], l_r[rb][0]);
			if (tq == 0 && r_hi < rows)
				ws_ml[o_hi] = make_float2(m_r[rb][1], l_r[rb][1]);
#pragma unroll
			for (int i = 0; i < HD / 8; i++) {
				const int d = i * 8 + 2 * tq;
				if (r_lo < rows)
					*(float2 *)(ws_o + o_lo * HD + d) =
						make_float2(o[rb][i][0] * vs, o[rb][i][1] * vs);
				if (r_hi < rows)
					*(float2 *)(ws_o + o_hi * HD + d) =
						make_float2(o[rb][i][2] * vs, o[rb][i][3] * vs);
			}
			continue;
		}
		float inv0, inv1;
		if constexpr (FP8) {
			inv0 = v_scale / l_r[rb][0];
			inv1 = v_scale / l_r[rb][1];
		} else {
			inv0 = 1.f / l_r[rb][0];
			inv1 = 1.f / l_r[rb][1];
		}
#pragma unroll
		for (int i = 0; i < HD / 8; i++) {
			const int d = i * 8 + 2 * tq;
			if (r_lo < rows)
				*(__nv_bfloat162 *)(out + ((long)(row0 + m0 + r_lo) * Hq + h) * HD + d) =
					__floats2bfloat162_rn(o[rb][i][0] * inv0, o[rb][i][1] * inv0);
			if (r_hi < rows)
				*(__nv_bfloat162 *)(out + ((long)(row0 + m0 + r_hi) * Hq + h) * HD + d) =
					__floats2bfloat162_rn(o[rb][i][2] * inv1, o[rb][i][3] * inv1);
		}
	}
}

/* ---- 3. split merge --------------------------------------------------------------------- */

/* One CTA per (row, query head), hd threads: out = Σ_z w_z O_z / Σ_z w_z l_z, w_z = 2^(m_z − M);
 * splits that saw no key of the row (l = 0) are skipped (their O is not meaningful). */
static __global__ void pfa_combine_kernel(__nv_bfloat16 *out, const float *ws_o,
					  const float2 *ws_ml, int T, int Hq, int hd, int nsplit)
{
	const long rh = blockIdx.x, stride = (long)T * Hq;
	float M = -INFINITY;
	for (int z = 0; z < nsplit; z++)
		M = fmaxf(M, ws_ml[z * stride + rh].x);
	const int d = threadIdx.x;
	float L = 0.f, a = 0.f;
	for (int z = 0; z < nsplit; z++) {
		float2 ml = ws_ml[z * stride + rh];
		if (ml.y > 0.f) {
			float w = exp2f(ml.x - M);
			L += w * ml.y;
			a += w * ws_o[(z * stride + rh) * hd + d];
		}
	}
	out[rh * hd + d] = __float2bfloat16(a / L);
}

/* ---- host ------------------------------------------------------------------------------- */

/* Split-KV only for small batches: at most PFA_SPLIT_MAX_RH (row, head) pairs, PFA_MAX_SPLIT
 * splits; the workspace holds their partial results. */
#define PFA_SPLIT_MAX_RH 16384
#define PFA_MAX_SPLIT 8

static size_t pfa_prefix_bytes(int n_seqs)
{
	return (((size_t)n_seqs + 1) * sizeof(int32_t) + 255) / 256 * 256;
}

static long pfa_split_rh(int T, int Hq)
{
	long rh = (long)T * Hq;
	return rh < PFA_SPLIT_MAX_RH ? rh : PFA_SPLIT_MAX_RH;
}

extern "C" size_t kn_prefill_attention_workspace_bytes(int T, int n_seqs, int Hq, int hd,
						       int max_ctx)
{
	(void)max_ctx;
	if (n_seqs <= 0 || T <= 0 || Hq <= 0 || hd <= 0)
		return 0;
	return pfa_prefix_bytes(n_seqs) +
	       (size_t)pfa_split_rh(T, Hq) * PFA_MAX_SPLIT * ((size_t)hd + 2) * sizeof(float);
}

static int pfa_num_sms(void)
{
	static int n_sm = 0;   /* read once; the same value for every thread afterwards */
	if (n_sm == 0) {
		int dev = 0, n = 0;
		CUDA_CHECK(cudaGetDevice(&dev));
		CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
		n_sm = n > 0 ? n : 1;
	}
	return n_sm;
}

/* An upper bound on the query tiles of a batch: each has ≥ 1 row, and each sequence adds at
 * most one partial tile. */
static long pfa_max_tiles(int T, int n_seqs, int bm)
{
	long ub = (long)(T + bm - 1) / bm + n_seqs;
	return ub < T ? ub : T;
}

/* Query tile height: 128 rows (RW 2, two CTAs per SM) when the batch has at least a full wave
 * of them, else 64 (more, smaller CTAs for short prompts and chunks). */
static int pfa_choose_bm(int T, int Hq)
{
	const char *e = getenv("QVL_PREFILL_ATTN_BM");
	if (e && (atoi(e) == 64 || atoi(e) == 128))
		return atoi(e);
	return (long)(T / 128) * Hq >= 2L * pfa_num_sms() ? 128 : 64;
}

/* Key splits: enough CTAs for ~3 per SM when the batch alone gives fewer, ≥ 2 key tiles each;
 * QVL_PREFILL_ATTN_SPLIT=1..8 overrides it (tests). */
static int pfa_choose_split(int T, int n_seqs, int Hq, int bm, int cap)
{
	if ((long)T * Hq > PFA_SPLIT_MAX_RH)
		return 1;
	int n;
	const char *e = getenv("QVL_PREFILL_ATTN_SPLIT");
	if (e && atoi(e) >= 1) {
		n = atoi(e);
	} else {
		long ctas = pfa_max_tiles(T, n_seqs, bm) * Hq, want = 3L * pfa_num_sms();
		n = ctas >= want ? 1 : (int)((want + ctas - 1) / ctas);
		int by_len = (cap + 2 * PFA_BN - 1) / (2 * PFA_BN);
		if (n > by_len)
			n = by_len;
	}
	return n < 1 ? 1 : n > PFA_MAX_SPLIT ? PFA_MAX_SPLIT : n;
}

/* bf16: two K+V buffers (and Q for RW 2); fp8: one K+V buffer (and Q for RW 2) and the fp8
 * staging of one tile. */
template <int HD, int RW, typename KVT>
static constexpr size_t pfa_smem_bytes(void)
{
	return sizeof(KVT) == 1
		       ? (size_t)((RW == 1 ? 2 : 4) * PFA_BN) * (HD + 8) * sizeof(uint16_t) +
				 2 * (size_t)PFA_BN * HD
		       : (size_t)((RW == 1 ? 4 : 6) * PFA_BN) * (HD + 8) * sizeof(uint16_t);
}

/* Whether hd takes prefill_attention_wgmma.cu's kernel: head dim 128 on a device that has it,
 * unless QVL_PREFILL_ATTN_WG=0 or an explicit QVL_PREFILL_ATTN_BM asks for this file's. */
static bool pfa_wgmma_wanted(int hd)
{
	if (hd != KN_PFA_WGMMA_HD)
		return false;
	const char *e = getenv("QVL_PREFILL_ATTN_WG"), *bm = getenv("QVL_PREFILL_ATTN_BM");
	if ((e && *e == '0') || (bm && (atoi(bm) == 64 || atoi(bm) == 128)))
		return false;
	return kn_pfa_wgmma_available();
}

/* wg: prefill_attention_wgmma.cu's kernel instead of pfa_kernel (HD 128, RW 2: the same
 * 128-row query tiles, map, splits and workspace). */
template <int HD, int RW, typename KVT>
static int pfa_launch(uint16_t *out, const uint16_t *q, const KVT *k_cache, const KVT *v_cache,
		      const int32_t *block_table, const int32_t *q_start, const int32_t *n_cached,
		      int n_seqs, int T, int Hq, int KV, int log2_bs, int max_blocks_per_seq,
		      float scale_log2, float v_scale, void *ws, bool wg, cudaStream_t stream)
{
	constexpr int BM = 64 * RW;
	static_assert(HD != KN_PFA_WGMMA_HD || RW != 2 || BM == KN_PFA_WGMMA_BM,
		      "the two kernels share the tile map");
	const long max_tiles = pfa_max_tiles(T, n_seqs, BM);
	if (max_tiles > 65535)
		return -1;
	const int nsplit = pfa_choose_split(T, n_seqs, Hq, BM, max_blocks_per_seq << log2_bs);
	int32_t *tile_prefix = (int32_t *)ws;
	float *ws_o = (float *)((char *)ws + pfa_prefix_bytes(n_seqs));
	float2 *ws_ml = (float2 *)(ws_o + (size_t)pfa_split_rh(T, Hq) * PFA_MAX_SPLIT * HD);
	pfa_tiles_kernel<<<1, PFA_SCAN_THREADS, 0, stream>>>(tile_prefix, q_start, n_seqs, BM);
	KN_CHECK_LAUNCH();
	if (wg && HD == KN_PFA_WGMMA_HD && RW == 2) {
		kn_pfa_wgmma_launch(out, q, k_cache, v_cache, sizeof(KVT) == 1, block_table, q_start,
				    n_cached, tile_prefix, n_seqs, T, Hq, KV, log2_bs,
				    max_blocks_per_seq, scale_log2, v_scale, ws_o, (float *)ws_ml,
				    (int)max_tiles, nsplit, stream);
	} else {
		const size_t shm = pfa_smem_bytes<HD, RW, KVT>();
		static unsigned char optin[KN_MAX_DEVICES];   /* per instantiation */
		kn_smem_optin_once((const void *)pfa_kernel<HD, RW, KVT>, (int)shm, optin);
		pfa_kernel<HD, RW, KVT><<<dim3(Hq, (unsigned)max_tiles, nsplit), PFA_THREADS, shm,
					  stream>>>((__nv_bfloat16 *)out, q, k_cache, v_cache,
						    block_table, q_start, n_cached, tile_prefix,
						    n_seqs, T, Hq, KV, log2_bs, max_blocks_per_seq,
						    scale_log2, v_scale, ws_o, ws_ml);
		KN_CHECK_LAUNCH();
	}
	if (nsplit > 1) {
		pfa_combine_kernel<<<(unsigned)((long)T * Hq), HD, 0, stream>>>(
			(__nv_bfloat16 *)out, ws_o, ws_ml, T, Hq, HD, nsplit);
		KN_CHECK_LAUNCH();
	}
	return 0;
}

/* The shape checks and the dispatch both entry points share: 0 (launched) or -1 (outside the
 * limits, nothing launched). The caller has handled an empty batch and checked the scales. */
template <typename KVT>
static int pfa_dispatch(uint16_t *out, const uint16_t *q, const KVT *k_cache, const KVT *v_cache,
			const int32_t *block_table, const int32_t *q_start,
			const int32_t *n_cached, int n_seqs, int T, int Hq, int KV, int hd,
			int block_size, int max_blocks_per_seq, float scale_log2, float v_scale,
			void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
	if (Hq <= 0 || KV <= 0 || Hq % KV != 0 || max_blocks_per_seq <= 0 || block_size <= 0 ||
	    (block_size & (block_size - 1)) != 0 || Hq > 65535)
		return -1;
	if ((((uintptr_t)q | (uintptr_t)k_cache | (uintptr_t)v_cache | (uintptr_t)out) & 15) != 0)
		return -1;
	int log2_bs = 0;
	while ((1 << log2_bs) < block_size)
		log2_bs++;
	if ((long)max_blocks_per_seq << log2_bs > (1L << 30))
		return -1;
	if (hd != 32 && hd != 64 && hd != 128)
		return -1;
	if (!workspace || ((uintptr_t)workspace & 15) != 0 ||
	    workspace_bytes < kn_prefill_attention_workspace_bytes(T, n_seqs, Hq, hd, 0))
		return -1;
	const bool wg = pfa_wgmma_wanted(hd);
	const int bm = wg ? KN_PFA_WGMMA_BM : pfa_choose_bm(T, Hq);
#define PFA_GO(HD, RW)                                                                         \
	pfa_launch<HD, RW, KVT>(out, q, k_cache, v_cache, block_table, q_start, n_cached, n_seqs, \
				T, Hq, KV, log2_bs, max_blocks_per_seq, scale_log2, v_scale,     \
				workspace, wg, stream)
	switch (hd) {
	case 32:
		return bm == 128 ? PFA_GO(32, 2) : PFA_GO(32, 1);
	case 64:
		return bm == 128 ? PFA_GO(64, 2) : PFA_GO(64, 1);
	default:
		return bm == 128 ? PFA_GO(128, 2) : PFA_GO(128, 1);
	}
#undef PFA_GO
}

extern "C" int kn_prefill_attention_cuda(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
					 const uint16_t *v_cache, const int32_t *block_table,
					 const int32_t *q_start, const int32_t *n_cached, int n_seqs,
					 int T, int Hq, int KV, int hd, int block_size,
					 int max_blocks_per_seq, float scale, void *workspace,
					 size_t workspace_bytes, cudaStream_t stream)
{
	if (n_seqs <= 0 || T <= 0)
		return 0;
	if (!(scale > 0.f))
		return -1;
	return pfa_dispatch<uint16_t>(out, q, k_cache, v_cache, block_table, q_start, n_cached,
				      n_seqs, T, Hq, KV, hd, block_size, max_blocks_per_seq,
				      scale * 1.4426950408889634f, 1.f, workspace, workspace_bytes,
				      stream);
}

extern "C" int kn_prefill_attention_fp8_cuda(uint16_t *out, const uint16_t *q,
					     const uint8_t *k_cache, const uint8_t *v_cache,
					     const int32_t *block_table, const int32_t *q_start,
					     const int32_t *n_cached, int n_seqs, int T, int Hq,
					     int KV, int hd, int block_size, int max_blocks_per_seq,
					     float scale, float k_scale, float v_scale,
					     void *workspace, size_t workspace_bytes,
					     cudaStream_t stream)
{
	if (n_seqs <= 0 || T <= 0)
		return 0;
	/* the score scale must stay a positive finite number (it commutes with the row max) */
	const float scale_log2 = scale * k_scale * 1.4426950408889634f;
	if (!(scale > 0.f) || !(k_scale > 0.f) || !(v_scale > 0.f) || !(scale_log2 > 0.f) ||
	    !(scale_log2 <= 3.4e38f) || !(v_scale <= 3.4e38f))
		return -1;
	return pfa_dispatch<uint8_t>(out, q, k_cache, v_cache, block_table, q_start, n_cached,
				     n_seqs, T, Hq, KV, hd, block_size, max_blocks_per_seq,
				     scale_log2, v_scale, workspace, workspace_bytes, stream);
}
