/*
 * qk_norm_rope CUDA kernel (formulas, shapes, layouts and rounding in qk_norm_rope.h; reference
 * kn_qk_norm_rope_ref).
 *
 * Launch: one block of 256 threads per token. The block first takes the token's hd/2 cos and
 * sin into shared memory (one pair per thread; sincos in double, rounded to fp32 and then to
 * bf16, so that they match the reference bit for bit where transformers' fp32 cos/sin would be
 * within an ulp anyway). Then the block walks the token's Hq + 2·KV heads in groups of G
 * threads, G the power of two ≥ hd/16 (hd 128: G = 8, 32 groups, one pass for 16 + 8 + 8 heads):
 *
 *   head of hd bf16:   [ first half: hd/16 vectors of 8 | second half: hd/16 vectors of 8 ]
 *   thread g of group:   vector g of each half = the 8 rope pairs (8g+k, 8g+k + hd/2), k < 8
 *
 * so a thread holds both members of its pairs in registers and no shared-memory exchange is
 * needed. The group's sum of squares is a shuffle butterfly of width G; every thread of the
 * block runs the same number of loop iterations (groups without a head contribute zero) so the
 * full-warp shuffles are always convergent. V heads are copied as they are; k and v heads of a
 * token whose slot is -1 are skipped.
 *
 * inv_freq (fp32, computed on the host exactly as the reference does) travels as a by-value
 * __grid_constant__ parameter, so the launch needs no device buffer and no copy.
 *
 * Memory-bound: per token 2·(Hq + 2·KV)·hd bytes read and as many written (q_out, k, v), plus
 * the two weight vectors and pos/slot (cached).
 */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "qk_norm_rope.h"

#define QKNR_THREADS 256
#define QKNR_MAX_HALF 256   /* hd ≤ 512, so that G ≤ 32 */

struct qknr_rope {
	float inv_freq[QKNR_MAX_HALF];
	int sec_h, sec_w;   /* mrope_section[1], [2] */
};

static __device__ __forceinline__ float bf16r(float v)
{
	return __bfloat162float(__float2bfloat16(v));
}

static __device__ __forceinline__ float sumsq8(uint4 v)
{
	const __nv_bfloat16 *e = (const __nv_bfloat16 *)&v;
	float s = 0.f;
#pragma unroll
	for (int k = 0; k < 8; k++) {
		float f = __bfloat162float(e[k]);
		s += f * f;
	}
	return s;
}

static __global__ void __launch_bounds__(QKNR_THREADS)
qk_norm_rope_kernel(uint4 *q_out, uint4 *k_cache, uint4 *v_cache, const uint4 *qkv,
		    const uint4 *q_norm_w, const uint4 *k_norm_w, const int32_t *pos,
		    const int32_t *slot_mapping, int T, int Hq, int KV, int hd, int g_log2,
		    float eps, const __grid_constant__ qknr_rope rope)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	__shared__ __align__(16) float cs[QKNR_MAX_HALF], sn[QKNR_MAX_HALF];
	const int t = blockIdx.x, half = hd / 2, nvh = half / 8, hv = hd / 8;

	for (int j = threadIdx.x; j < half; j += blockDim.x) {
		int a = 0;
		if (j % 3 == 1 && j < 3 * rope.sec_h)
			a = 1;
		else if (j % 3 == 2 && j < 3 * rope.sec_w)
			a = 2;
		float th = __fmul_rn((float)pos[(long)a * T + t], rope.inv_freq[j]);
		double s, c;
		sincos((double)th, &s, &c);
		cs[j] = bf16r((float)c);
		sn[j] = bf16r((float)s);
	}
	__syncthreads();

	const int slot = slot_mapping[t];
	const int nheads = Hq + 2 * KV, g = 1 << g_log2;
	const int grp = threadIdx.x >> g_log2, gl = threadIdx.x & (g - 1);
	const int ngroups = blockDim.x >> g_log2;
	const uint4 *row = qkv + (long)t * nheads * hv;

	for (int base = 0; base < nheads; base += ngroups) {
		const int h = base + grp;
		const bool is_v = h >= Hq + KV, is_k = h >= Hq && !is_v;
		bool on = h < nheads && gl < nvh && (h < Hq || slot >= 0);
		uint4 a = make_uint4(0, 0, 0, 0), b = a;
		float ss = 0.f;
		if (on) {
			a = row[(long)h * hv + gl];
			b = row[(long)h * hv + nvh + gl];
			if (!is_v)
				ss = sumsq8(a) + sumsq8(b);
		}
		/* butterfly within the group of g lanes; all 32 lanes take part */
		for (int o = g >> 1; o > 0; o >>= 1)
			ss += __shfl_xor_sync(0xffffffffu, ss, o);
		if (!on)
			continue;
		if (is_v) {
			uint4 *dst = v_cache + ((long)slot * KV + (h - Hq - KV)) * hv;
			dst[gl] = a;
			dst[nvh + gl] = b;
			continue;
		}
		const float r = rsqrtf(ss / (float)hd + eps);
		const uint4 *w = is_k ? k_norm_w : q_norm_w;
		uint4 wa = __ldg(&w[gl]), wb = __ldg(&w[nvh + gl]), oa, ob;
		const __nv_bfloat16 *a8 = (const __nv_bfloat16 *)&a, *b8 = (const __nv_bfloat16 *)&b;
		const __nv_bfloat16 *wa8 = (const __nv_bfloat16 *)&wa, *wb8 = (const __nv_bfloat16 *)&wb;
		__nv_bfloat16 *oa8 = (__nv_bfloat16 *)&oa, *ob8 = (__nv_bfloat16 *)&ob;
		const float4 *c4 = (const float4 *)cs + 2 * gl, *s4 = (const float4 *)sn + 2 * gl;
		float c8[8], s8[8];
		*(float4 *)&c8[0] = c4[0];
		*(float4 *)&c8[4] = c4[1];
		*(float4 *)&s8[0] = s4[0];
		*(float4 *)&s8[4] = s4[1];
#pragma unroll
		for (int k = 0; k < 8; k++) {
			/* rmsnorm's two roundings, then rope with bf16 operands: each product
			 * and the fp32 sum rounded to bf16 (no FMA contraction) */
			float na = bf16r(__fmul_rn(__bfloat162float(wa8[k]),
						   bf16r(__fmul_rn(__bfloat162float(a8[k]), r))));
			float nb = bf16r(__fmul_rn(__bfloat162float(wb8[k]),
						   bf16r(__fmul_rn(__bfloat162float(b8[k]), r))));
			float lo = __fadd_rn(bf16r(__fmul_rn(na, c8[k])), bf16r(__fmul_rn(-nb, s8[k])));
			float hi = __fadd_rn(bf16r(__fmul_rn(nb, c8[k])), bf16r(__fmul_rn(na, s8[k])));
			oa8[k] = __float2bfloat16(lo);
			ob8[k] = __float2bfloat16(hi);
		}
		uint4 *dst = is_k ? k_cache + ((long)slot * KV + (h - Hq)) * hv
				  : q_out + ((long)t * Hq + h) * hv;
		dst[gl] = oa;
		dst[nvh + gl] = ob;
	}
}

extern "C" void kn_qk_norm_rope_cuda(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
				     const uint16_t *qkv, const uint16_t *q_norm_w,
				     const uint16_t *k_norm_w, const int32_t *pos,
				     const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
				     const int mrope_section[3], float rope_theta, float eps,
				     cudaStream_t stream)
{
	if (T <= 0)
		return;
	uintptr_t align = (uintptr_t)q_out | (uintptr_t)k_cache | (uintptr_t)v_cache |
			  (uintptr_t)qkv | (uintptr_t)q_norm_w | (uintptr_t)k_norm_w;
	if (hd < 16 || hd % 16 || hd / 2 > QKNR_MAX_HALF || align % 16 || Hq < 0 || KV < 0) {
		fprintf(stderr, "<2>[kernels] qk_norm_rope: unsupported hd %d (needs 16..512, a "
				"multiple of 16), heads %d/%d or pointer alignment\n", hd, Hq, KV);
		abort();
	}
	qknr_rope rope;
	for (int j = 0; j < hd / 2; j++)
		/* the same fp32 expression as the reference (and transformers) */
		rope.inv_freq[j] = 1.0f / powf(rope_theta, (float)(2 * j) / (float)hd);
	rope.sec_h = mrope_section[1];
	rope.sec_w = mrope_section[2];
	int g_log2 = 0;
	while ((1 << g_log2) < hd / 16)
		g_log2++;
	kn_launch(qk_norm_rope_kernel, T, QKNR_THREADS, 0, stream,
		(uint4 *)q_out, (uint4 *)k_cache, (uint4 *)v_cache, (const uint4 *)qkv,
		(const uint4 *)q_norm_w, (const uint4 *)k_norm_w, pos, slot_mapping, T, Hq, KV, hd,
		g_log2, eps, rope);
	KN_CHECK_LAUNCH();
}
