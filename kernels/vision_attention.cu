/*
 * vision_attention CUDA kernel: flash attention with bf16 tensor cores (mma.sync m16n8k16 → fp32)
 * (formula, shapes and precision in vision_attention.h; reference kn_vision_attention_ref).
 *
 * Launch: grid (⌈L/BM⌉, H, n_seg), NG key groups of 4 warps (128·NG threads). A CTA owns BM =
 * 64·RW query rows of one head of one segment; each warp owns 16·RW of them (RW = 1 or 2 blocks
 * of 16 rows), the same rows in every group. Group z walks key tiles (BN = 64 keys) ⌊z·n_kv/NG⌋
 * .. ⌊(z+1)·n_kv/NG⌋ − 1 of the segment:
 *
 *   registers  Q fragments (16·RW × hd per warp, loaded once), O accumulators (16·RW × hd fp32),
 *              the running max m and partial row sum l of the thread's rows
 *   smem       per group, two buffers of  K (BN, hd+8) | V (BN, hd+8)  bf16, row-major as in
 *              qkv; the 16-byte row pad makes every ldmatrix (8 rows of 16 bytes) conflict-free
 *   per tile   tile j+1 is copied with cp.async (16 bytes, zero-filled past L) into the other
 *              buffer while tile j is computed; one __syncthreads per tile step (the groups
 *              step together);
 *              S = Q·Kᵀ, K fragments by ldmatrix (row-major K rows are the col-major B operand;
 *              with RW 2 each fragment feeds two MMAs); keys ≥ L → −∞ (last tile only);
 *              online softmax in the log2 domain (quad shuffles for the max, p = 2^(s·scale·log2e
 *              − m): one FFMA and one MUFU.EX2), O ·= 2^(m_old − m_new);
 *              P = bf16(p) straight from the S accumulators (the m16n8 C layout of two adjacent
 *              8-key chunks is the m16k16 A layout) · V, fragments by ldmatrix.trans → O
 *   NG 2       group 1 leaves its O, m, l in a shared region of its own (fragment order:
 *              lane-contiguous, conflict-free); after one __syncthreads group 0 merges them with
 *              weights 2^(m_z − max m) in fp32. No workspace, no second launch.
 *   end        O / l → bf16 (the single rounding) for the rows < L.
 *
 * Fragment layouts (g = lane/4, t = lane%4): A {row g, k 2t..2t+1}, {row g+8, k 2t..}, {row g,
 * k 2t+8..}, {row g+8, k 2t+8..}; B {k 2t..2t+1, n g}, {k 2t+8.., n g}; C {row g, n 2t, 2t+1},
 * {row g+8, n 2t, 2t+1}. The four threads of a quad hold a row together.
 *
 * Configurations (vatt_choose; QVL_VISION_ATTN_BM=64|128 and QVL_VISION_ATTN_SPLIT=1|2 override
 * it, for tests and tuning): RW 2 (BM 128, hd ≤ 64) halves the shared-memory reads per MMA (one
 * ldmatrix.x4 feeds four MMAs) and the L2 → SM traffic of K/V; ~234 registers, two CTAs per SM.
 * RW 1 (BM 64) makes twice the CTAs for small problems. NG 2 halves a CTA's serial key walk
 * when the grid is at most one CTA per SM. Shared memory: NG·512·(hd+8) bytes of K/V (hd 64:
 * 36 KB per group), plus 512·RW·(hd/2+4) for the NG 2 hand-over.
 *
 * Measured (H100 80GB HBM3, CUDA events; tests/check_vision_cuda.c, timing), H 16, hd 64; one
 * launch (median of 11) / back to back (mean of 20; 5 at L 16384); old and new in one session:
 *              before (BM 64, 4 warps, V transposed    this kernel
 *              by scalar smem stores)
 *   L   784    39.4 / 35.5 µs (64 / 71 TFLOP/s)    23.4–24.4 / 18.5 µs (~105 / 136)   BM 128, NG 2
 *   L  4096    621 µs (111)                        225 µs (305)                       BM 128, NG 1
 *   L 16384    9.46 ms (116)                       3.35 ms (328)                      BM 128, NG 1
 * The 2B tower on a 448x448 image (bench_2b, 24 blocks): stream time 4.69 → 4.38 ms.
 * The steady state (L ≥ 4096) is about FlashAttention-2's rate for hd 64 on this card; more
 * needs wgmma (sm_90a) and producer/consumer warps. At L 784 the grid is the limit: 7 query
 * tiles × 16 heads = 112 CTAs (96 of 128 rows, 16 of 16) on 132 SMs, so the busiest SMs carry
 * 128 × 784 (rows × keys; the even share is ~95 × 784). Splits inside a CTA (NG) or smaller
 * query tiles do not lower that maximum; spreading each tile's keys over 4 CTAs would (3 of
 * them per SM: ~0.75 of it), but needs a cross-CTA merge (a workspace or a cluster). The time
 * is the steady rate on that plus ramp-up and launch; every configuration measured 23–25 µs
 * one launch, 18–20 µs back to back (NG 2 gains ~0.5 µs back to back).
 */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "mma.cuh"
#include "vision_attention.h"

#define VATT_BN 64      /* keys per tile */
#define VATT_GROUP 128  /* threads of one key group: 4 warps */


/* ---- kernel ----------------------------------------------------------------------------- */

/* CTAs per SM the register budget aims at (the caps that keep ptxas from spilling): RW 2
 * ~230 registers (hd 64); RW 1 128 (hd ≤ 48, or hd 64 with 256 threads), 168 (hd 64, 128
 * threads) or up to 255 (hd > 64) */
static constexpr __host__ __device__ int vatt_min_blocks(int hd, int rw, int ng)
{
	return rw == 2 ? (ng == 1 ? 2 : 1)
	       : ng == 1 ? (hd <= 48 ? 4 : hd <= 64 ? 3 : 2)
			 : (hd <= 64 ? 2 : 1);
}

/* values one lane of a warp hands over in the NG merge: O, then m, then l */
template <int HD, int RW>
static constexpr __host__ __device__ int vatt_merge_vals(void)
{
	return RW * (HD / 8) * 4 + RW * 4;
}

template <int HD, int RW, int NG>
static constexpr size_t vatt_smem_bytes(void)
{
	size_t kv = (size_t)NG * 2 * 2 * VATT_BN * (HD + 8) * sizeof(uint16_t);
	size_t merge = (size_t)(NG - 1) * 4 * 32 * vatt_merge_vals<HD, RW>() * sizeof(float);
	return kv + merge;
}

template <int HD, int RW, int NG>
static __global__ void __launch_bounds__(VATT_GROUP * NG, vatt_min_blocks(HD, RW, NG))
vatt_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *qkv, int L, int H, float scale_log2)
{
	constexpr int BM = 64 * RW, BN = VATT_BN, LD = HD + 8, CPR = HD / 8;
	constexpr int TILE = 2 * BN * LD;   /* one K and one V tile, bf16 elements */
	constexpr int PER = BN * CPR / VATT_GROUP;   /* 16-byte copies per thread per K (or V) tile */
	static_assert(HD % 16 == 0 && (BN * CPR) % VATT_GROUP == 0, "hd must be a multiple of 16");
	static_assert(NG == 1 || NG == 2, "one or two key groups");
	extern __shared__ uint4 vatt_smem[];

	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int z = warp >> 2, wq = warp & 3;   /* key group; the warp's rows within the CTA */
	const int gtid = tid & (VATT_GROUP - 1);
	const int g = lane >> 2, tq = lane & 3;
	const int h = blockIdx.y;
	const long Dv = (long)H * HD, ld = 3 * Dv;
	const long seg0 = (long)blockIdx.z * L;
	const int row0 = blockIdx.x * BM + wq * 16 * RW;   /* the warp's first query row */
	const bool active = row0 < L;                      /* warp-uniform */
	const int n_kv = (L + BN - 1) / BN;
	/* the floor split gives the partial last tile to the group with more tiles, and group 0
	 * at least tile 0 (the host takes NG 2 only with ≥ 2 tiles); NG 1 spelled out, so that
	 * the compiler sees every step has a tile */
	const int j0 = NG == 1 ? 0 : z * n_kv / NG, j1 = NG == 1 ? n_kv : (z + 1) * n_kv / NG;
	const int n_step = NG == 1 ? n_kv : (n_kv + NG - 1) / NG;   /* the most tiles a group has */
	__nv_bfloat16 *sbuf = (__nv_bfloat16 *)vatt_smem + z * 2 * TILE;
	const __nv_bfloat16 *kbase = qkv + seg0 * ld + Dv + (long)h * HD;   /* key 0, this head */

	/* K/V tile j into buffer b (keys ≥ L zero-filled: V must be 0, not NaN, under p = 0) */
	auto load_kv = [&](int j, int b) {
		__nv_bfloat16 *dk = sbuf + b * TILE, *dv = dk + BN * LD;
#pragma unroll
		for (int i = 0; i < PER; i++) {
			const int c = gtid + i * VATT_GROUP, r = c / CPR, cc = c % CPR;
			const int key = j * BN + r;
			const bool ok = key < L;
			const __nv_bfloat16 *src = ok ? kbase + (long)key * ld + cc * 8 : qkv;
			cp_async16(dk + r * LD + cc * 8, src, ok);
			cp_async16(dv + r * LD + cc * 8, ok ? src + Dv : qkv, ok);
		}
	};
	if (j0 < j1)
		load_kv(j0, 0);
	cp_async_commit();

	/* Q fragments of the warp's rows (rows ≥ L read as zero) */
	uint32_t qf[RW][HD / 16][4];
#pragma unroll
	for (int rb = 0; rb < RW; rb++) {
		const int r0 = row0 + rb * 16 + g, r1 = r0 + 8;
		const __nv_bfloat16 *p0 = qkv + (seg0 + min(r0, L - 1)) * ld + (long)h * HD + 2 * tq;
		const __nv_bfloat16 *p1 = qkv + (seg0 + min(r1, L - 1)) * ld + (long)h * HD + 2 * tq;
#pragma unroll
		for (int kk = 0; kk < HD / 16; kk++) {
			qf[rb][kk][0] = r0 < L ? *(const uint32_t *)(p0 + kk * 16) : 0u;
			qf[rb][kk][1] = r1 < L ? *(const uint32_t *)(p1 + kk * 16) : 0u;
			qf[rb][kk][2] = r0 < L ? *(const uint32_t *)(p0 + kk * 16 + 8) : 0u;
			qf[rb][kk][3] = r1 < L ? *(const uint32_t *)(p1 + kk * 16 + 8) : 0u;
		}
	}

	float o[RW][HD / 8][4];
	float m_r[RW][2], l_r[RW][2];
#pragma unroll
	for (int rb = 0; rb < RW; rb++) {
#pragma unroll
		for (int i = 0; i < HD / 8; i++)
			o[rb][i][0] = o[rb][i][1] = o[rb][i][2] = o[rb][i][3] = 0.f;
		m_r[rb][0] = m_r[rb][1] = -INFINITY;
		l_r[rb][0] = l_r[rb][1] = 0.f;
	}

	/* the groups step together (one __syncthreads per step; named per-group barriers would
	 * let them drift apart, but compute-sanitizer's racecheck then loses track of the
	 * block-wide barrier after them); a group with fewer tiles idles on the last step */
	for (int step = 0; step < n_step; step++) {
		const int j = j0 + step, buf = step & 1;
		cp_async_wait_all();
		__syncthreads();   /* tile j visible; every warp is done with tile j-1 (buffer buf^1) */
		if (j + 1 < j1)
			load_kv(j + 1, buf ^ 1);
		cp_async_commit();
		if (!active || (NG > 1 && j >= j1))
			continue;   /* a warp past L (last CTA of a segment) only helps copy */

		const __nv_bfloat16 *tk = sbuf + buf * TILE, *tv = tk + BN * LD;
		float sc[RW][BN / 8][4];
#pragma unroll
		for (int rb = 0; rb < RW; rb++)
#pragma unroll
			for (int nt = 0; nt < BN / 8; nt++)
				sc[rb][nt][0] = sc[rb][nt][1] = sc[rb][nt][2] = sc[rb][nt][3] = 0.f;
		/* S = Q·Kᵀ; one x4 = B fragments of 8-key chunks nt, nt+1 for dims kk·16 .. +16 */
#pragma unroll
		for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
			for (int nt = 0; nt < BN / 8; nt += 2) {
				uint32_t b[4];
				ldsm_x4(b, tk + ((nt + (lane >> 4)) * 8 + (lane & 7)) * LD + kk * 16 +
						   8 * ((lane >> 3) & 1));
#pragma unroll
				for (int rb = 0; rb < RW; rb++) {
					mma_bf16(sc[rb][nt], qf[rb][kk], b[0], b[1]);
					mma_bf16(sc[rb][nt + 1], qf[rb][kk], b[2], b[3]);
				}
			}
		/* keys ≥ L (the last tile only; it still has key j·BN < L, so every row max is
		 * finite) */
		if (j * BN + BN > L) {
#pragma unroll
			for (int rb = 0; rb < RW; rb++)
#pragma unroll
				for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++)
						if (j * BN + nt * 8 + 2 * tq + (e & 1) >= L)
							sc[rb][nt][e] = -INFINITY;
		}
		/* online softmax, rows row0 + rb·16 + g (e 0,1) and + 8 (e 2,3) */
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
				/* scores stay unscaled: scale_log2 > 0 commutes with the max; alpha
				 * is 0 on the first tile (m -inf) */
				const float m_new = fmaxf(m_r[rb][r], mx * scale_log2);
				const float alpha = fast_exp2(m_r[rb][r] - m_new);
				m_r[rb][r] = m_new;
				float sum = 0.f;
#pragma unroll
				for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
					for (int e = 2 * r; e < 2 * r + 2; e++) {
						float *s_e = &sc[rb][nt][e];
						*s_e = fast_exp2(fmaf(*s_e, scale_log2, -m_new));
						sum += *s_e;
					}
				l_r[rb][r] = l_r[rb][r] * alpha + sum;   /* this thread's part */
#pragma unroll
				for (int i = 0; i < HD / 8; i++) {
					o[rb][i][2 * r] *= alpha;
					o[rb][i][2 * r + 1] *= alpha;
				}
			}
		/* O += P·V, 16 keys per step; one x4.trans = B fragments of dims dn·16 .. +16 */
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
	cp_async_wait_all();   /* nothing may still land in shared memory past this point */

	if (NG > 1) {
		/* groups 1.. hand O, m, l to group 0 through their own region past the K/V buffers
		 * (not over them: nothing written here was read before the barrier) */
		constexpr int NX = vatt_merge_vals<HD, RW>();
		constexpr int XM = RW * (HD / 8) * 4, XL = XM + RW * 2;   /* m, l after O */
		float *xs = (float *)((__nv_bfloat16 *)vatt_smem + NG * 2 * TILE);
		if (z > 0) {
			float *x = xs + ((z - 1) * 4 + wq) * NX * 32 + lane;
#pragma unroll
			for (int rb = 0; rb < RW; rb++) {
#pragma unroll
				for (int i = 0; i < HD / 8; i++)
#pragma unroll
					for (int e = 0; e < 4; e++)
						x[((rb * (HD / 8) + i) * 4 + e) * 32] = o[rb][i][e];
#pragma unroll
				for (int r = 0; r < 2; r++) {
					x[(XM + rb * 2 + r) * 32] = m_r[rb][r];
					x[(XL + rb * 2 + r) * 32] = l_r[rb][r];
				}
			}
		}
		__syncthreads();   /* every group's O, m, l are in place */
		if (z > 0 || !active)
			return;
		for (int zz = 1; zz < NG; zz++) {
			const float *x = xs + ((zz - 1) * 4 + wq) * NX * 32 + lane;
#pragma unroll
			for (int rb = 0; rb < RW; rb++)
#pragma unroll
				for (int r = 0; r < 2; r++) {
					/* group 0's m is finite (it has key 0); an empty group
					 * would have m -inf, l 0, O 0 and weight 0 */
					const float mz = x[(XM + rb * 2 + r) * 32];
					const float lz = x[(XL + rb * 2 + r) * 32];
					const float mm = fmaxf(m_r[rb][r], mz);
					const float a0 = fast_exp2(m_r[rb][r] - mm);
					const float a1 = fast_exp2(mz - mm);
					m_r[rb][r] = mm;
					l_r[rb][r] = l_r[rb][r] * a0 + lz * a1;
#pragma unroll
					for (int i = 0; i < HD / 8; i++)
#pragma unroll
						for (int e = 2 * r; e < 2 * r + 2; e++) {
							const float oz =
								x[((rb * (HD / 8) + i) * 4 + e) * 32];
							o[rb][i][e] = o[rb][i][e] * a0 + oz * a1;
						}
				}
		}
	}
	if (!active)
		return;

#pragma unroll
	for (int rb = 0; rb < RW; rb++) {
#pragma unroll
		for (int r = 0; r < 2; r++) {
			l_r[rb][r] += __shfl_xor_sync(0xffffffffu, l_r[rb][r], 1);
			l_r[rb][r] += __shfl_xor_sync(0xffffffffu, l_r[rb][r], 2);
		}
		const float inv0 = 1.f / l_r[rb][0], inv1 = 1.f / l_r[rb][1];
		const int r_lo = row0 + rb * 16 + g, r_hi = r_lo + 8;
		__nv_bfloat16 *o_lo = out + (seg0 + r_lo) * Dv + (long)h * HD + 2 * tq;
		__nv_bfloat16 *o_hi = o_lo + 8 * Dv;
#pragma unroll
		for (int i = 0; i < HD / 8; i++) {
			if (r_lo < L)
				*(uint32_t *)(o_lo + i * 8) =
					pack_bf16x2(o[rb][i][0] * inv0, o[rb][i][1] * inv0);
			if (r_hi < L)
				*(uint32_t *)(o_hi + i * 8) =
					pack_bf16x2(o[rb][i][2] * inv1, o[rb][i][3] * inv1);
		}
	}
}

/* ---- host ------------------------------------------------------------------------------- */

static int vatt_num_sms(void)
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

static int vatt_env(const char *name)
{
	const char *e = getenv(name);
	return e && *e ? atoi(e) : 0;
}

/*
 * The query tile (BM 64 or 128) and the key groups (NG 1 or 2) of a launch.
 *   BM 128 (hd ≤ 64) once its CTAs cover ~3/4 of the SMs: fewer shared-memory reads per MMA
 *   (L 4096: 225 µs against 300 at BM 64).
 *   NG 2 when the CTAs are at most one per SM (RW 2: ~234 registers × 256 threads leave no
 *   room for a second CTA; RW 1 at hd ≤ 64: two per SM) and there are ≥ 2 key tiles; with
 *   more CTAs it only adds the merge (L 4096: 270 µs against 225).
 */
static void vatt_choose(int n_seg, int L, int H, int hd, int *bm, int *ng)
{
	const long sms = vatt_num_sms(), n_kv = (L + VATT_BN - 1) / VATT_BN;
	const long ctas128 = (long)((L + 127) / 128) * H * n_seg;
	const long ctas64 = (long)((L + 63) / 64) * H * n_seg;
	int b = hd <= 64 && 4 * ctas128 >= 3 * sms ? 128 : 64;
	const int eb = vatt_env("QVL_VISION_ATTN_BM");
	if (eb == 64 || eb == 128)
		b = eb;
	if (hd > 64)
		b = 64;
	const long ctas = b == 128 ? ctas128 : ctas64;
	int n = ctas <= (b == 64 && hd <= 64 ? 2 : 1) * sms ? 2 : 1;
	const int en = vatt_env("QVL_VISION_ATTN_SPLIT");
	if (en == 1 || en == 2)
		n = en;
	if (n_kv < 2)
		n = 1;
	*bm = b;
	*ng = n;
}

template <int HD, int RW, int NG>
static void vatt_launch(uint16_t *out, const uint16_t *qkv, int n_seg, int L, int H,
			cudaStream_t stream)
{
	constexpr size_t shm = vatt_smem_bytes<HD, RW, NG>();
	static unsigned char optin[KN_MAX_DEVICES];   /* per instantiation */
	kn_smem_optin_once((const void *)vatt_kernel<HD, RW, NG>, (int)shm, optin);
	dim3 grid((unsigned)((L + 64 * RW - 1) / (64 * RW)), (unsigned)H, (unsigned)n_seg);
	float scale_log2 = (float)(1.0 / sqrt((double)HD) * 1.4426950408889634);
	vatt_kernel<HD, RW, NG><<<grid, VATT_GROUP * NG, shm, stream>>>(
		(__nv_bfloat16 *)out, (const __nv_bfloat16 *)qkv, L, H, scale_log2);
	KN_CHECK_LAUNCH();
}

template <int HD>
static void vatt_go(uint16_t *out, const uint16_t *qkv, int n_seg, int L, int H, int bm, int ng,
		    cudaStream_t stream)
{
	if constexpr (HD <= 64) {
		if (bm == 128) {
			if (ng == 2)
				vatt_launch<HD, 2, 2>(out, qkv, n_seg, L, H, stream);
			else
				vatt_launch<HD, 2, 1>(out, qkv, n_seg, L, H, stream);
			return;
		}
	}
	if (ng == 2)
		vatt_launch<HD, 1, 2>(out, qkv, n_seg, L, H, stream);
	else
		vatt_launch<HD, 1, 1>(out, qkv, n_seg, L, H, stream);
}

extern "C" void kn_vision_attention_cuda(uint16_t *out, const uint16_t *qkv, int n_seg, int L,
					 int H, int hd, cudaStream_t stream)
{
	if (n_seg <= 0 || L <= 0 || H <= 0)
		return;
	if (((uintptr_t)out | (uintptr_t)qkv) & 15u) {
		fprintf(stderr, "<2>[cuda] vision_attention: pointers must be 16-byte aligned\n");
		abort();
	}
	if (H > 65535 || n_seg > 65535) {
		fprintf(stderr, "<2>[cuda] vision_attention: %d heads, %d segments: too many\n", H,
			n_seg);
		abort();
	}
	int bm, ng;
	vatt_choose(n_seg, L, H, hd, &bm, &ng);
	switch (hd) {
	case 16: vatt_go<16>(out, qkv, n_seg, L, H, bm, ng, stream); break;
	case 32: vatt_go<32>(out, qkv, n_seg, L, H, bm, ng, stream); break;
	case 48: vatt_go<48>(out, qkv, n_seg, L, H, bm, ng, stream); break;
	case 64: vatt_go<64>(out, qkv, n_seg, L, H, bm, ng, stream); break;
	case 80: vatt_go<80>(out, qkv, n_seg, L, H, bm, ng, stream); break;
	case 96: vatt_go<96>(out, qkv, n_seg, L, H, bm, ng, stream); break;
	case 128: vatt_go<128>(out, qkv, n_seg, L, H, bm, ng, stream); break;
	default:
		fprintf(stderr, "<2>[cuda] vision_attention: head_dim %d is not supported\n", hd);
		abort();
	}
}
