/*
 * gemm_qkv_tma: the q/k/v projection of a prompt step with qk_norm_rope in its epilogue
 * (interface and formulas in gemm_qkv_tma.h; the step apart: kn_gemm_f32_f16, then
 * kn_qk_norm_rope(_fp8)_cuda).
 *
 * Why: apart, the product writes its (M, (Hq + 2·KV)·hd) fp32 output and qk_norm_rope reads it
 * back, ~200 MB a layer at 8,192 rows (0.176 ms for the product, ~0.074 for qk_norm_rope, H100).
 * A head is 128 columns, so a 256-column tile holds two whole heads of every row: the sums a
 * head's norm needs are in one warpgroup's registers, and the rope's pairs (j, j + 64) in one
 * thread's (register groups j and j + 8, wgmma.cuh's C layout).
 *
 * The product is gemm_tma.cuh's prompt shape (128 × 256 tiles, m64n256, pairs of row blocks
 * sharing a W tile by multicast, a 4-stage TMA ring, persistent clusters; its design there),
 * output block f0 (BF = 128 "outputs") being W rows 2·f0 .. 2·f0 + 255, heads f0/64 and
 * f0/64 + 1; rank 0 copies the first head's rows, rank 1 the second's.
 *
 * The epilogue (qkv_epi::store), per row of the thread (r and r + 8) and head of the tile:
 *   v head:   bf16(v) (fp8: the bytes of bf16(v)·inv_v) at the row's slot, unless it is −1;
 *   q, k head: the head's sum of squares (the thread's 32 values, then the quad's shuffles),
 *             r = 1/sqrt(ss/hd + eps), n = w·(x·r), the rope with the row's cos and sin read
 *             from the step's table (kn_rope_table_cuda: positions are the same in every layer,
 *             so the double sincos runs once a step, not once a layer), one rounding to bf16:
 *             q to q_out, k (fp8: ·inv_k, encoded) to the cache at the slot.
 *   Each thread stores 2 adjacent columns (4 bytes of bf16, 2 of fp8) of 8-column blocks: a
 *   quad writes 16 (8) contiguous bytes.
 * The expressions are qk_norm_rope.cu's, so a value differs from the kernels apart only where
 * the sums' fp32 order moves it across a rounding boundary.
 *
 * sm_90a only (Makefile.am builds this file's device code for that target alone).
 */
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fp8.cuh"
#include "gemm_qkv_tma.h"
#include "gemm_tma.cuh"

#define QT_HD 128   /* head dim: a 256-column tile is two heads */

struct kn_qkv_tma {
	PFN_cuTensorMapEncodeTiled_v12000 encode;
	int max_ctas[2];   /* the most CTAs resident at once: bf16, fp8 cache */
};

/* Two bf16 values of a cache row, or their two E4M3 bytes (·inv first). */
template <bool FP8>
static __device__ __forceinline__ void qt_store2(void *cache, long i, __nv_bfloat162 v, float inv)
{
	if constexpr (FP8) {
		const uint16_t b = (uint16_t)fp8_encode(__fmul_rn(__low2float(v), inv)) |
				   (uint16_t)fp8_encode(__fmul_rn(__high2float(v), inv)) << 8;
		*(uint16_t *)((uint8_t *)cache + i) = b;
	} else {
		*(__nv_bfloat162 *)((uint16_t *)cache + i) = v;
	}
}

/* The qk_norm_rope epilogue (gemm_tma.cuh's E) of the prompt shape. */
template <bool FP8> struct qkv_epi {
	uint16_t *q;
	void *kc, *vc;
	const uint16_t *qn, *kn;
	const float *cs, *sn;
	const int32_t *slot;
	int Hq, KV;
	float eps, inv_k, inv_v;

	/* output block f0 is W rows 2·f0 .. 2·f0 + 255: rank 0 the first head's, rank 1 the
	 * second's */
	static __device__ __forceinline__ int w_row(unsigned rank, int f0, int F)
	{
		return 2 * f0 + (int)rank * QT_HD;
	}

	/* acc[4j + 2i + b] is column 8j + 2(l mod 4) + b of row r + 8i; head hh of the tile is
	 * register groups 16hh .. 16hh + 15, its rope pair of column c (< 64) group + 8. The
	 * heads' norm weights are loaded once for both rows, and every load of a row (its slot,
	 * cos and sin) is issued before its first store: the compiler may not move a load above a
	 * store that could alias it, and loads interleaved with the stores cost an L2 round trip
	 * each (~8 µs a tile). */
	__device__ __forceinline__ void store(const float (&acc)[128], int r, int f0, int M, int F,
					      int l) const
	{
		const int cq = 2 * (l & 3), h0 = f0 / (QT_HD / 2);
		__nv_bfloat162 wlo[2][8], whi[2][8];   /* columns c, c + 1 and c + 64, c + 65 */
#pragma unroll
		for (int j = 0; j < 8; j++)
#pragma unroll
			for (int hh = 0; hh < 2; hh++) {
				const uint16_t *w = h0 + hh >= Hq ? kn : qn;
				wlo[hh][j] = __ldg((const __nv_bfloat162 *)(w + 8 * j + cq));
				whi[hh][j] = __ldg((const __nv_bfloat162 *)(w + 8 * j + cq + 64));
			}
#pragma unroll
		for (int i = 0; i < 2; i++) {
			const int row = r + 8 * i;
			const bool in = row < M;
			const int sl = in ? __ldg(slot + row) : -1;
			const int rrow = in ? row : 0;   /* rows past M read row 0's table */
			float2 cv[8], sv[8];
#pragma unroll
			for (int j = 0; j < 8; j++) {
				const int c = 8 * j + cq;
				cv[j] = __ldg((const float2 *)(cs + (long)rrow * (QT_HD / 2) + c));
				sv[j] = __ldg((const float2 *)(sn + (long)rrow * (QT_HD / 2) + c));
			}
#pragma unroll
			for (int hh = 0; hh < 2; hh++) {
				const int h = h0 + hh;
				const float *a = acc + 64 * hh + 2 * i;
				if (h >= Hq + KV) {   /* v: rounded as it is */
					if (!in || sl < 0)
						continue;
					const long v0 = ((long)sl * KV + (h - Hq - KV)) * QT_HD + cq;
#pragma unroll
					for (int j = 0; j < 16; j++)
						qt_store2<FP8>(vc, v0 + 8 * j,
							       __floats2bfloat162_rn(a[4 * j],
										     a[4 * j + 1]),
							       inv_v);
					continue;
				}
				float ss = 0.f;
#pragma unroll
				for (int j = 0; j < 16; j++) {
					ss = fmaf(a[4 * j], a[4 * j], ss);
					ss = fmaf(a[4 * j + 1], a[4 * j + 1], ss);
				}
				/* the quad's four threads hold the row's other columns */
				ss += __shfl_xor_sync(0xffffffffu, ss, 1);
				ss += __shfl_xor_sync(0xffffffffu, ss, 2);
				const bool is_k = h >= Hq;
				if (!in || (is_k && sl < 0))
					continue;
				const float rs = 1.0f / sqrtf(ss / (float)QT_HD + eps);
				const long o = is_k ? ((long)sl * KV + (h - Hq)) * QT_HD
						    : ((long)row * Hq + h) * QT_HD;
#pragma unroll
				for (int j = 0; j < 8; j++) {
					const int c = 8 * j + cq;
					float lo[2], hi[2];
#pragma unroll
					for (int b = 0; b < 2; b++) {
						const float ca = b ? cv[j].y : cv[j].x,
							    sa = b ? sv[j].y : sv[j].x;
						const float wa = b ? __high2float(wlo[hh][j])
								   : __low2float(wlo[hh][j]);
						const float wb = b ? __high2float(whi[hh][j])
								   : __low2float(whi[hh][j]);
						const float na = wa * (a[4 * j + b] * rs);
						const float nb = wb * (a[4 * (j + 8) + b] * rs);
						lo[b] = na * ca - nb * sa;
						hi[b] = nb * ca + na * sa;
					}
					const __nv_bfloat162 vlo = __floats2bfloat162_rn(lo[0], lo[1]),
							     vhi = __floats2bfloat162_rn(hi[0], hi[1]);
					if (is_k) {
						qt_store2<FP8>(kc, o + c, vlo, inv_k);
						qt_store2<FP8>(kc, o + c + 64, vhi, inv_k);
					} else {
						*(__nv_bfloat162 *)(q + o + c) = vlo;
						*(__nv_bfloat162 *)(q + o + c + 64) = vhi;
					}
				}
			}
		}
	}
};

extern "C" kn_qkv_tma *kn_qkv_tma_new(void)
{
	PFN_cuTensorMapEncodeTiled_v12000 encode;
	int sms;
	if (!gt_available<gt_prompt, qkv_epi<false>>("QVL_QKV_TMA", &encode, &sms))
		return NULL;
	kn_qkv_tma *g = (kn_qkv_tma *)calloc(1, sizeof(*g));
	if (!g) {
		fprintf(stderr, "<2>[cuda] kn_qkv_tma_new: out of memory\n");
		abort();
	}
	g->encode = encode;
	g->max_ctas[0] = gt_prepare<gt_prompt, qkv_epi<false>>(sms);
	g->max_ctas[1] = gt_prepare<gt_prompt, qkv_epi<true>>(sms);
	return g;
}

extern "C" void kn_qkv_tma_free(kn_qkv_tma *g)
{
	free(g);
}

extern "C" bool kn_qkv_tma_fits(const kn_qkv_tma *g, const uint16_t *x, const uint16_t *W, int M,
				int Hq, int KV, int hd, int K)
{
	const uintptr_t a = (uintptr_t)x | (uintptr_t)W;
	return g && M > 0 && hd == QT_HD && Hq >= 0 && KV >= 0 && Hq + 2 * KV > 0 &&
	       (Hq + 2 * KV) % 2 == 0 && K > 0 && K % GT_BK == 0 && a % 16 == 0;
}

extern "C" void kn_qkv_tma_run(kn_qkv_tma *g, uint16_t *q_out, void *k_cache, void *v_cache,
			       bool fp8, const uint16_t *x, const uint16_t *W,
			       const uint16_t *q_norm_w, const uint16_t *k_norm_w, const float *cs,
			       const float *sn, const int32_t *slot_mapping, int M, int Hq, int KV,
			       int K, float eps, float k_scale, float v_scale, cudaStream_t stream)
{
	/* F: "outputs" of gemm_tma's accounting, BF = 128 a tile of 2·BF W rows */
	const int F = (Hq + 2 * KV) * QT_HD / 2;
	if (fp8) {
		const qkv_epi<true> ep = { q_out, k_cache, v_cache, q_norm_w, k_norm_w, cs, sn,
					   slot_mapping, Hq, KV, eps, 1.0f / k_scale, 1.0f / v_scale };
		gt_launch<gt_prompt>(g->encode, g->max_ctas[1], ep, x, W, M, F, K, stream);
	} else {
		const qkv_epi<false> ep = { q_out, k_cache, v_cache, q_norm_w, k_norm_w, cs, sn,
					    slot_mapping, Hq, KV, eps, 1.0f, 1.0f };
		gt_launch<gt_prompt>(g->encode, g->max_ctas[0], ep, x, W, M, F, K, stream);
	}
}
