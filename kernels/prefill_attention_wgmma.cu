/*
 * prefill_attention_wgmma: the prefill attention of head dim 128 on Hopper's wgmma (contract in
 * prefill_attention.h, launch interface in prefill_attention_wgmma.h; the mma.sync kernel of
 * prefill_attention.cu is the fallback and serves the other head dims and devices).
 *
 * Why: on mma.sync the kernel keeps the tensor pipe ~30% busy (ncu, H100, 8 × 512 causal fp8:
 * 2 warps a scheduler at 255 registers, stalls on the dependent MMA chains and on the softmax
 * between them), ~105 TFLOP/s for 512-token prompts and ~275 at 8192. wgmma runs
 * asynchronously from shared-memory operands: a warpgroup issues a whole 64 × 64 × 128 score
 * product in eight instructions, and its registers hold only accumulators.
 *
 * One CTA = two warpgroups (256 threads) = one query tile of BM = 128 rows of one (sequence,
 * query head); warpgroup w owns rows 64w .. 64w+63. The grid and the CTA → (sequence, tile)
 * map are prefill_attention.cu's (heaviest tile first, head fastest, split z of nsplit over
 * the key tiles). The CTA walks its key tiles of BN = 64 positions:
 *
 *   smem (1024-byte aligned)   Q: 2 panels (hd 0-63 | 64-127) × 128 rows × 128 B, K-major
 *                              a ring of 4 stages, each K: 2 panels × 64 rows × 128 B
 *                                                  (K-major, B of S = Q·Kᵀ)
 *                                                V: 2 panels × 64 rows × 128 B (rows =
 *                                                  positions: MN-major, the B of P·V read
 *                                                  with imm-trans-b)
 *                              fp8 only: two staging buffers of the E4M3 rows, 64 × 128 B of
 *                              K and of V each
 *   every tile is 128-byte swizzled (chunk c of row r at c ^ (r mod 8), wgmma.cuh): 161 KB
 *   (bf16) or 193 KB (fp8), one CTA a multiprocessor, 154-158 registers.
 *
 *   copies: each thread owns fixed rows and one 16-byte chunk of every tile (their pool
 *   blocks read from the block table a tile before they are needed), cp.async, one commit
 *   group a tile, two tiles ahead: bf16 straight into the ring stage; fp8 into a staging
 *   buffer, which the same thread widens (pfa_fp8x4_to_bf16x4's exact bit arithmetic) into
 *   the stage one tile ahead of its use — so no thread reads another's staged bytes, and the
 *   widening runs under the tensor work of the tile before.
 *
 *   per tile j (FlashAttention-3's intra-warpgroup overlap; nothing in flight across an
 *   iteration's end):
 *     fence.proxy.async + CTA barrier (tile j is in its stage for all; both warpgroups are
 *       past tile j − 1, so stage j − 2 may be refilled);
 *     S_j = Q·K_jᵀ: eight m64n64k16 from shared memory, issued;
 *     O ·= alpha_{j−1}, then O += P_{j−1}·V_{j−1}: four m64n128k16 with P as the register A
 *       operand (the C layout of the score tile is the A layout) and V MN-major, issued;
 *     refill: tile j + 2's copies (fp8: tile j + 1 widened, tile j + 3 copied);
 *     wait for S_j; causal mask, online softmax in the log2 domain (as prefill_attention.cu:
 *       quad shuffles for a row's max, p = 2^(s·scale_log2 − m), alpha = 2^(m_old − m_new)),
 *       under the P·V still running; wait for it; P_j packed to bf16.
 *   After the last tile its P·V; then O / l → bf16 (one rounding), written through the
 *   warpgroup's own rows of the Q tile (free by then) and stored as whole 16-byte chunks of
 *   each row (ncu, 16 × 512 fp8: stored straight from the registers, a quad's 16 contiguous
 *   bytes used half of every 32-byte sector); or the split partials and (m, l) in fp32.
 *
 * H100 (tests/check_attention_cuda.c timing, TFLOP/s bf16 / fp8 cache, against the mma.sync
 * kernel's 128-row tiles in the same run): 1 × 8192 new 379 / 311 (277 / 276), 1 × 4096 335 /
 * 266 (252 / 251), 8 × 512 138 / 124 (104 / 105); with the output stored as whole chunks
 * (session 14, same call against the build before): 1 × 8192 388 / 322 (375 / 316), 1 × 4096
 * 346 / 287 (333 / 278), 8 × 512 156 / 141 (138 / 124). Short sequences stay below: ncu at 16
 * × 512 (fp8) finds the kernel latency-bound on its two warps a scheduler (issue slots 36%
 * busy), with the ALU, not the tensor pipe, the busiest (the widening's bit arithmetic). Two
 * one-warpgroup CTAs a multiprocessor did not help (branch wip/pfa-wg1, tests/bench/PERF.md
 * session 12), nor did a persistent CTA that copies its next work item's Q and first tiles
 * under the current one's epilogue (wip/pfa-persistent, session 14: more registers, slower).
 * fp8 trails bf16 by the widening.
 *
 * sm_90a only (Makefile.am builds this file for that target alone; elsewhere
 * kn_pfa_wgmma_available is false).
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "mma.cuh"
#include "prefill_attention.cuh"
#include "prefill_attention_wgmma.h"
#include "wgmma.cuh"

#define PW_BM KN_PFA_WGMMA_BM
#define PW_BN 64
#define PW_HD KN_PFA_WGMMA_HD
#define PW_THREADS 256

/* byte offsets from the aligned base */
#define PW_Q 0                       /* Q, 2 panels of 128 rows */
#define PW_QPANEL (PW_BM * 128)
#define PW_STAGE0 (2 * PW_QPANEL)    /* stage s at PW_STAGE0 + s · PW_STAGE */
#define PW_KPANEL (PW_BN * 128)      /* a K or V panel of 64 rows */
#define PW_V (2 * PW_KPANEL)         /* V within a stage */
#define PW_STAGE (4 * PW_KPANEL)
#define PW_NST 4                     /* stages in the ring */
#define PW_STG (PW_STAGE0 + PW_NST * PW_STAGE)   /* fp8 staging, two buffers: K8 | V8 */
#define PW_STG8 (PW_BN * PW_HD)
#define PW_SMEM_BF16 (PW_STG + 1024)
#define PW_SMEM_FP8 (PW_STG + 4 * PW_STG8 + 1024)

/* 16-byte chunk c (0-15: 8 elements of 16 bits) of row r in a two-panel swizzled tile */
static __device__ __forceinline__ uint32_t pw_off(int r, int c, int panel_bytes)
{
	return (uint32_t)((c >> 3) * panel_bytes + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

template <typename KVT>
static __global__ void __launch_bounds__(PW_THREADS, 1)
pw_kernel(__nv_bfloat16 *out, const uint16_t *q, const KVT *k_cache, const KVT *v_cache,
	  const int32_t *block_table, const int32_t *q_start, const int32_t *n_cached,
	  const int32_t *tile_prefix, int n_seqs, int T, int Hq, int KV, int log2_bs,
	  int max_blocks_per_seq, float scale_log2, float v_scale, float *ws_o, float2 *ws_ml)
{
	constexpr bool FP8 = sizeof(KVT) == 1;
	extern __shared__ uint8_t pw_raw[];
	const uint32_t raw = (uint32_t)__cvta_generic_to_shared(pw_raw);
	const uint32_t base = (raw + 1023) & ~1023u;
	uint8_t *gen = pw_raw + (base - raw);   /* the same bytes, generic address */

	const int h = blockIdx.x, nsplit = gridDim.z, z = blockIdx.z;
	pfa_work w;
	if (!pfa_locate(w, tile_prefix, q_start, n_cached, n_seqs, blockIdx.y, z, nsplit, PW_BM,
			PW_BN, max_blocks_per_seq << log2_bs))
		return;
	const int s = w.s, row0 = w.row0, m0 = w.m0, nc = w.nc, kv_len = w.kv_len, rows = w.rows;
	const int j0 = w.j0, j1 = w.j1;
	const int kvh = h / (Hq / KV);
	const int bs_mask = (1 << log2_bs) - 1;
	const int32_t *bt = block_table + (long)s * max_blocks_per_seq;
	const int tid = threadIdx.x;

	/* Q tile, rows past the sequence zero-filled */
	for (int i = tid; i < PW_BM * 16; i += PW_THREADS) {
		const int r = i >> 4, c = i & 15;
		const bool ok = r < rows;
		const uint16_t *src = ok ? q + ((long)(row0 + m0 + r) * Hq + h) * PW_HD + c * 8 : q;
		cp_async16_shared(base + PW_Q + pw_off(r, c, PW_QPANEL), src, ok);
	}
	/* The K/V rows this thread copies: bf16 rows kr + 16n (n < 4), 16-byte chunk kc of 16; fp8
	 * rows kr + 32n (n < 2), chunk kc of 8 (thread i of a tile: row i / chunks, chunk i mod
	 * chunks). Their pool blocks are read from the block table a tile ahead (blk). */
	constexpr int NR = FP8 ? 2 : 4, RSTEP = FP8 ? 32 : 16;
	const int kr = FP8 ? tid >> 3 : tid >> 4, kc = FP8 ? tid & 7 : tid & 15;
	auto fetch_blocks = [&](int j, int32_t (&blk)[NR]) {
#pragma unroll
		for (int n = 0; n < NR; n++) {
			const int p = j * PW_BN + kr + RSTEP * n;
			blk[n] = j < j1 && p < kv_len ? bt[p >> log2_bs] : 0;
		}
	};
	/* tile j's rows: bf16 into stage st, fp8 into staging buffer st (chunk i at 16·i) */
	auto load_kv = [&](int j, int st, const int32_t (&blk)[NR]) {
#pragma unroll
		for (int n = 0; n < NR; n++) {
			const int r = kr + RSTEP * n, p = j * PW_BN + r;
			const bool ok = j < j1 && p < kv_len;
			const long slot = ((long)blk[n] << log2_bs) + (p & bs_mask);
			const long off = ok ? (slot * KV + kvh) * PW_HD + kc * (16 / (int)sizeof(KVT)) : 0;
			if constexpr (FP8) {
				const uint32_t d = base + PW_STG + st * 2 * PW_STG8 + (r * 8 + kc) * 16;
				cp_async16_shared(d, k_cache + off, ok);
				cp_async16_shared(d + PW_STG8, v_cache + off, ok);
			} else {
				const uint32_t d = base + PW_STAGE0 + st * PW_STAGE + pw_off(r, kc, PW_KPANEL);
				cp_async16_shared(d, k_cache + off, ok);
				cp_async16_shared(d + PW_V, v_cache + off, ok);
			}
		}
	};
	const int wg = tid >> 7, lane = tid & 31, g = lane >> 2, tq = lane & 3;
	const int r_lo = wg * 64 + ((tid >> 5) & 3) * 16 + g;   /* this thread's rows: r_lo, +8 */
	const int lim0 = min(nc + m0 + r_lo, kv_len - 1), lim1 = min(nc + m0 + r_lo + 8, kv_len - 1);
	auto stage = [&](int j) { return base + PW_STAGE0 + ((j - j0) & (PW_NST - 1)) * PW_STAGE; };

	/* the current tile's bytes into its stage for all threads. bf16: this thread's copies of
	 * tiles j and j + 1 are its last two commit groups; fp8: tile j was widened into its stage
	 * during tile j − 1 (refill), so only the barrier remains */
	auto prep = [&]() {
		if constexpr (!FP8)
			cp_async_wait<1>();
		fence_proxy_async_smem();
		__syncthreads();
	};
	/* fp8: this thread's staged chunks of tile t (its older of two commit groups, in staging
	 * buffer t mod 2) → bf16 in stage(t). Chunk (row r, bytes 16·kc ..) is bf16 chunks 2·kc and
	 * 2·kc + 1; lanes with kc ≥ 4 store their odd chunk first, so that the 8 lanes of a row hit
	 * 8 different swizzled 16-byte slots each store. */
	auto widen = [&](int t) {
		cp_async_wait<1>();
		const uint8_t *sg = gen + PW_STG + ((t - j0) & 1) * 2 * PW_STG8;
		uint8_t *sb = gen + PW_STAGE0 + ((t - j0) & (PW_NST - 1)) * PW_STAGE;
#pragma unroll
		for (int n = 0; n < NR; n++) {
			const int r = kr + RSTEP * n;
#pragma unroll
			for (int kv = 0; kv < 2; kv++) {
				const uint4 x = *(const uint4 *)(sg + kv * PW_STG8 + (r * 8 + kc) * 16);
				uint4 a, b;
				pfa_fp8x4_to_bf16x4(x.x, a.x, a.y);
				pfa_fp8x4_to_bf16x4(x.y, a.z, a.w);
				pfa_fp8x4_to_bf16x4(x.z, b.x, b.y);
				pfa_fp8x4_to_bf16x4(x.w, b.z, b.w);
				uint8_t *d = sb + kv * PW_V;
				const int ca = 2 * kc, cb = 2 * kc + 1;
				if (kc & 4) {
					*(uint4 *)(d + pw_off(r, cb, PW_KPANEL)) = b;
					*(uint4 *)(d + pw_off(r, ca, PW_KPANEL)) = a;
				} else {
					*(uint4 *)(d + pw_off(r, ca, PW_KPANEL)) = a;
					*(uint4 *)(d + pw_off(r, cb, PW_KPANEL)) = b;
				}
			}
		}
		/* the widening's shared loads stay before later copies into the same chunks */
		asm volatile("" ::: "memory");
	};
	/* After tile j's products are issued. bf16: tile j + 2's copies into stage(j + 2), last
	 * read by tile j − 2, whose P·V every warpgroup waited for before this tile's barrier (prep).
	 * fp8: tile j + 1 widened into stage(j + 1) (last read by tile j − 3), then tile j + 3's
	 * copies into the staging buffer just widened (each thread refills only its own chunks).
	 * One commit group a tile, empty past the end; blk holds the next copy's blocks and is
	 * refilled with the one after. */
	auto refill = [&](int j, int32_t (&blk)[NR]) {
		const int t = FP8 ? j + 3 : j + 2;
		if constexpr (FP8)
			if (j + 1 < j1)
				widen(j + 1);
		if (t < j1)
			load_kv(t, FP8 ? (t - j0) & 1 : (t - j0) & (PW_NST - 1), blk);
		cp_async_commit();
		fetch_blocks(t + 1, blk);
	};
	/* S = Q·K_jᵀ, asynchronously (one commit group) */
	float sc[32];
	auto issue_s = [&](int j) {
		const uint32_t sb = stage(j);
		wgmma_fence();
#pragma unroll
		for (int kk = 0; kk < PW_HD / 16; kk++)
			wgmma_m64n64k16_bf16(sc,
					     wgmma_desc_sw128(base + PW_Q + (kk >> 2) * PW_QPANEL +
							      wg * 64 * 128 + (kk & 3) * 32),
					     wgmma_desc_sw128(sb + (kk >> 2) * PW_KPANEL + (kk & 3) * 32),
					     kk > 0);
		wgmma_commit();
	};

	float o[64];
#pragma unroll
	for (int i = 0; i < 64; i++)
		o[i] = 0.f;
#pragma unroll
	for (int i = 0; i < 32; i++)
		sc[i] = 0.f;
	float m_r[2] = { -INFINITY, -INFINITY }, l_r[2] = { 0.f, 0.f }, alpha[2] = { 1.f, 1.f };
	uint32_t pa[PW_BN / 16][4];   /* P of the last tile, the A operand of its P·V */

	/* mask, running max and sum of tile j's scores; sc becomes P (fp32), alpha the factor
	 * O must take before P·V is added */
	auto softmax = [&](int j) {
		const int kb = j * PW_BN;
		if (kb + PW_BN - 1 > lim0) {   /* the tile reaches past the thread's first row */
#pragma unroll
			for (int jb = 0; jb < PW_BN / 8; jb++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					const int key = kb + jb * 8 + 2 * tq + (e & 1);
					if (key > (e < 2 ? lim0 : lim1))
						sc[4 * jb + e] = -INFINITY;
				}
		}
#pragma unroll
		for (int r = 0; r < 2; r++) {
			float mx = -INFINITY;
#pragma unroll
			for (int jb = 0; jb < PW_BN / 8; jb++)
				mx = fmaxf(mx, fmaxf(sc[4 * jb + 2 * r], sc[4 * jb + 2 * r + 1]));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
			const float m_new = fmaxf(m_r[r], mx * scale_log2);
			alpha[r] = m_r[r] == -INFINITY ? 0.f : fast_exp2(m_r[r] - m_new);
			m_r[r] = m_new;
			/* a split without position 0 may see only masked keys so far: every p is 0 */
			const float mz = m_new == -INFINITY ? 0.f : m_new;
			float sum = 0.f;
#pragma unroll
			for (int jb = 0; jb < PW_BN / 8; jb++) {
				const float p0 = fast_exp2(fmaf(sc[4 * jb + 2 * r], scale_log2, -mz));
				const float p1 = fast_exp2(fmaf(sc[4 * jb + 2 * r + 1], scale_log2, -mz));
				sc[4 * jb + 2 * r] = p0;
				sc[4 * jb + 2 * r + 1] = p1;
				sum += p0 + p1;
			}
			l_r[r] = l_r[r] * alpha[r] + sum;   /* this thread's part; the quad sums at the end */
		}
	};
	/* O ·= alpha, then O += P·V of tile j (asynchronously, one commit group) */
	auto issue_pv = [&](int j) {
#pragma unroll
		for (int jb = 0; jb < PW_HD / 8; jb++) {
			o[4 * jb] *= alpha[0];
			o[4 * jb + 1] *= alpha[0];
			o[4 * jb + 2] *= alpha[1];
			o[4 * jb + 3] *= alpha[1];
		}
		const uint32_t sv = stage(j) + PW_V;
		wgmma_fence();
#pragma unroll
		for (int ks = 0; ks < PW_BN / 16; ks++)
			wgmma_m64n128k16_bf16_rs_tb(o, pa[ks],
						    wgmma_desc_sw128_mn(sv + ks * 16 * 128, PW_KPANEL));
		wgmma_commit();
	};
	/* sc (P, fp32) → pa: the C layout of the score tile is the A layout of m64nNk16 */
	auto pack = [&]() {
#pragma unroll
		for (int ks = 0; ks < PW_BN / 16; ks++)
#pragma unroll
			for (int i = 0; i < 4; i++)
				pa[ks][i] = pack_bf16x2(sc[8 * ks + 2 * i], sc[8 * ks + 2 * i + 1]);
	};

	/* The pipeline, FlashAttention-3's intra-warpgroup overlap: with S_j in flight O takes
	 * tile j − 1's factor and its P·V is issued; the softmax of S_j then runs under that
	 * P·V. Nothing is in flight across an iteration's end. */
	int32_t blk[NR];
	fetch_blocks(j0, blk);
	load_kv(j0, 0, blk);   /* with the Q copies: group 0 */
	cp_async_commit();
	fetch_blocks(j0 + 1, blk);
	load_kv(j0 + 1, 1, blk);
	cp_async_commit();
	fetch_blocks(j0 + 2, blk);
	if constexpr (FP8) {   /* tile j0 widened and tile j0 + 2 copied ahead of the loop */
		if (j0 < j1)
			widen(j0);
		if (j0 + 2 < j1)
			load_kv(j0 + 2, 0, blk);
		cp_async_commit();
		fetch_blocks(j0 + 3, blk);
	}
	if (j0 < j1) {
		prep();
		issue_s(j0);
		refill(j0, blk);
		wgmma_wait<0>();
		wgmma_pin(sc);
		softmax(j0);
		pack();
	}
	for (int j = j0 + 1; j < j1; j++) {
		prep();
		issue_s(j);
		issue_pv(j - 1);
		refill(j, blk);
		wgmma_wait<1>();   /* S_j */
		wgmma_pin(sc);
		softmax(j);
		wgmma_wait<0>();   /* P·V of tile j − 1: pa and O are free */
		wgmma_pin(o);
		pack();
	}
	if (j0 < j1)
		issue_pv(j1 - 1);
	wgmma_wait<0>();
	wgmma_pin(o);
	cp_async_wait<0>();   /* an empty split still has its Q copy in flight */

#pragma unroll
	for (int r = 0; r < 2; r++) {
		l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
		l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
	}
	const int r_hi = r_lo + 8;
	if (nsplit > 1) {
		const float vs = FP8 ? v_scale : 1.f;
		const long o_lo = ((long)z * T + row0 + m0 + r_lo) * Hq + h;
		const long o_hi = o_lo + 8L * Hq;
		if (tq == 0 && r_lo < rows)
			ws_ml[o_lo] = make_float2(m_r[0], l_r[0]);
		if (tq == 0 && r_hi < rows)
			ws_ml[o_hi] = make_float2(m_r[1], l_r[1]);
#pragma unroll
		for (int jb = 0; jb < PW_HD / 8; jb++) {
			const int d = jb * 8 + 2 * tq;
			if (r_lo < rows)
				*(float2 *)(ws_o + o_lo * PW_HD + d) =
					make_float2(o[4 * jb] * vs, o[4 * jb + 1] * vs);
			if (r_hi < rows)
				*(float2 *)(ws_o + o_hi * PW_HD + d) =
					make_float2(o[4 * jb + 2] * vs, o[4 * jb + 3] * vs);
		}
		return;
	}
	/* O / l → bf16 through this warpgroup's own rows of the Q tile (its products are done and
	 * the other warpgroup reads only its own rows; the swizzle keeps the 4-byte writes free
	 * of bank conflicts), then out as whole 16-byte chunks: a quad's registers hold 16
	 * contiguous bytes of a row, which written directly use half of each 32-byte sector */
	const float inv0 = (FP8 ? v_scale : 1.f) / l_r[0], inv1 = (FP8 ? v_scale : 1.f) / l_r[1];
#pragma unroll
	for (int jb = 0; jb < PW_HD / 8; jb++) {
		const __nv_bfloat162 lo = __floats2bfloat162_rn(o[4 * jb] * inv0, o[4 * jb + 1] * inv0);
		const __nv_bfloat162 hi =
			__floats2bfloat162_rn(o[4 * jb + 2] * inv1, o[4 * jb + 3] * inv1);
		*(__nv_bfloat162 *)(gen + PW_Q + pw_off(r_lo, jb, PW_QPANEL) + tq * 4) = lo;
		*(__nv_bfloat162 *)(gen + PW_Q + pw_off(r_hi, jb, PW_QPANEL) + tq * 4) = hi;
	}
	if (wg == 0)   /* this warpgroup's rows: named barriers 1 and 2, constant ids */
		asm volatile("bar.sync 1, 128;" ::: "memory");
	else
		asm volatile("bar.sync 2, 128;" ::: "memory");
	for (int i = tid & 127; i < 64 * 16; i += 128) {
		const int r = wg * 64 + (i >> 4), c = i & 15;
		if (r < rows)
			*(uint4 *)(out + ((long)(row0 + m0 + r) * Hq + h) * PW_HD + c * 8) =
				*(const uint4 *)(gen + PW_Q + pw_off(r, c, PW_QPANEL));
	}
}

/* Per device (a host may mix GPUs): 0 not asked yet, 1 no image, 2 ready (the shared-memory
 * opt-in set). Threads may race on the first call; both write the same answer. */
extern "C" bool kn_pfa_wgmma_available(void)
{
	static signed char state[64];
	int dev = 0;
	CUDA_CHECK(cudaGetDevice(&dev));
	if (dev < 0 || dev >= 64)
		return false;
	if (state[dev] == 0) {
		cudaFuncAttributes fa;
		if (cudaFuncGetAttributes(&fa, pw_kernel<uint16_t>) != cudaSuccess) {
			(void)cudaGetLastError();
			state[dev] = 1;
		} else {
			CUDA_CHECK(cudaFuncSetAttribute(pw_kernel<uint16_t>,
							cudaFuncAttributeMaxDynamicSharedMemorySize,
							PW_SMEM_BF16));
			CUDA_CHECK(cudaFuncSetAttribute(pw_kernel<uint8_t>,
							cudaFuncAttributeMaxDynamicSharedMemorySize,
							PW_SMEM_FP8));
			state[dev] = 2;
		}
	}
	return state[dev] == 2;
}

template <typename KVT>
static void pw_launch(uint16_t *out, const uint16_t *q, const void *k_cache, const void *v_cache,
		      const int32_t *block_table, const int32_t *q_start, const int32_t *n_cached,
		      const int32_t *tile_prefix, int n_seqs, int T, int Hq, int KV, int log2_bs,
		      int max_blocks_per_seq, float scale_log2, float v_scale, float *ws_o,
		      float *ws_ml, int max_tiles, int nsplit, cudaStream_t stream)
{
	pw_kernel<KVT><<<dim3(Hq, max_tiles, nsplit), PW_THREADS,
			 sizeof(KVT) == 1 ? PW_SMEM_FP8 : PW_SMEM_BF16, stream>>>(
		(__nv_bfloat16 *)out, q, (const KVT *)k_cache, (const KVT *)v_cache, block_table,
		q_start, n_cached, tile_prefix, n_seqs, T, Hq, KV, log2_bs, max_blocks_per_seq,
		scale_log2, v_scale, ws_o, (float2 *)ws_ml);
	KN_CHECK_LAUNCH();
}

extern "C" void kn_pfa_wgmma_launch(uint16_t *out, const uint16_t *q, const void *k_cache,
				    const void *v_cache, bool fp8, const int32_t *block_table,
				    const int32_t *q_start, const int32_t *n_cached,
				    const int32_t *tile_prefix, int n_seqs, int T, int Hq, int KV,
				    int log2_bs, int max_blocks_per_seq, float scale_log2,
				    float v_scale, float *ws_o, float *ws_ml, int max_tiles,
				    int nsplit, cudaStream_t stream)
{
	(fp8 ? pw_launch<uint8_t> : pw_launch<uint16_t>)(
		out, q, k_cache, v_cache, block_table, q_start, n_cached, tile_prefix, n_seqs, T, Hq,
		KV, log2_bs, max_blocks_per_seq, scale_log2, v_scale, ws_o, ws_ml, max_tiles, nsplit,
		stream);
}
