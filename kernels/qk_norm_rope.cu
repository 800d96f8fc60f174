/*
 * qk_norm_rope CUDA kernel (formulas, shapes, layouts and rounding in qk_norm_rope.h; reference
 * kn_qk_norm_rope_ref).
 *
 * Launch: one block of 256 threads per token. The block first takes the token's hd/2 cos and
 * sin into shared memory (one pair per thread; sincos in double, rounded to fp32, as the
 * reference has them). Then the block walks the token's Hq + 2·KV heads in groups of G threads,
 * G the power of two ≥ hd/16 (hd 128: G = 8, 32 groups, one pass for 16 + 8 + 8 heads):
 *
 *   head of hd fp32:   [ first half: hd/16 vectors of 8 | second half: hd/16 vectors of 8 ]
 *   thread g of group:   vector g of each half = the 8 rope pairs (8g+k, 8g+k + hd/2), k < 8
 *
 * so a thread holds both members of its pairs in registers (two float4 a half) and no
 * shared-memory exchange is needed. The group's sum of squares is a shuffle butterfly of width
 * G; every thread of the block runs the same number of loop iterations (groups without a head
 * contribute zero) so the full-warp shuffles are always convergent. Norm and rope in fp32, one
 * rounding to bf16 at the end; V heads are rounded to bf16 as they are; k and v heads of a
 * token whose slot is -1 are skipped.
 *
 * inv_freq (fp32, computed on the host exactly as the reference does) travels as a by-value
 * __grid_constant__ parameter, so the launch needs no device buffer and no copy.
 *
 * Memory-bound: per token 4·(Hq + 2·KV)·hd bytes read and half as many written (q_out, k, v),
 * plus the two weight vectors and pos/slot (cached).
 *
 * kn_rope_table_cuda: the same cos and sin (qknr_angle), one thread a (token, pair), into a
 * (T, hd/2) table for gemm_qkv_tma's epilogue.
 *
 * fp8 cache (kn_qk_norm_rope_fp8_cuda): the same kernel with FP8 = true; only the two cache
 * stores differ. A thread's 8 bf16 k or v values (the same bits the bf16 kernel stores) are
 * multiplied by inv = 1/scale (fp32, from the host) and encoded with fp8_encode (fp8.cuh), 8
 * bytes stored as one uint2 at byte (slot·KV + h)·hd + 8·gl.
 */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_check.h"
#include "fp8.cuh"
#include "pdl.cuh"
#include "qk_norm_rope.h"

#define QKNR_THREADS 256
#define QKNR_MAX_HALF 256   /* hd ≤ 512, so that G ≤ 32 */

struct qknr_rope {
	float inv_freq[QKNR_MAX_HALF];
	int sec_h, sec_w;   /* mrope_section[1], [2] */
};

/* cos and sin of pair j of token t: θ = pos·inv_freq[j] (one fp32 product) on the pair's axis
 * (interleaved MRoPE), sincos in double, rounded to fp32, as the reference has them. */
static __device__ __forceinline__ void qknr_angle(float *c, float *s, const qknr_rope &rope,
						  const int32_t *pos, int T, int t, int j)
{
	int a = 0;
	if (j % 3 == 1 && j < 3 * rope.sec_h)
		a = 1;
	else if (j % 3 == 2 && j < 3 * rope.sec_w)
		a = 2;
	float th = __fmul_rn((float)pos[(long)a * T + t], rope.inv_freq[j]);
	double sd, cd;
	sincos((double)th, &sd, &cd);
	*c = (float)cd;
	*s = (float)sd;
}

/* 8 fp32 values (two float4 at p) into f. */
static __device__ __forceinline__ void load8(float f[8], const float4 *p)
{
	float4 u = p[0], v = p[1];
	f[0] = u.x, f[1] = u.y, f[2] = u.z, f[3] = u.w;
	f[4] = v.x, f[5] = v.y, f[6] = v.z, f[7] = v.w;
}

static __device__ __forceinline__ float sumsq8(const float f[8])
{
	float s = 0.f;
#pragma unroll
	for (int k = 0; k < 8; k++)
		s = fmaf(f[k], f[k], s);
	return s;
}

/* 8 fp32 values to 8 bf16 (one rounding each) in a uint4. */
static __device__ __forceinline__ uint4 bf16x8(const float f[8])
{
	uint4 o;
	__nv_bfloat16 *o8 = (__nv_bfloat16 *)&o;
#pragma unroll
	for (int k = 0; k < 8; k++)
		o8[k] = __float2bfloat16(f[k]);
	return o;
}

/* Stores 8 bf16 values x at vector vi (8 elements each) of a cache: as they are (bf16), or as
 * the 8 E4M3 bytes of x·inv (fp8). */
template <bool FP8>
static __device__ __forceinline__ void qknr_store8(void *cache, long vi, uint4 x, float inv)
{
	if constexpr (FP8) {
		const __nv_bfloat16 *e = (const __nv_bfloat16 *)&x;
		uint2 b;
		uint8_t *b8 = (uint8_t *)&b;
#pragma unroll
		for (int k = 0; k < 8; k++)
			b8[k] = fp8_encode(__fmul_rn(__bfloat162float(e[k]), inv));
		((uint2 *)cache)[vi] = b;
	} else {
		((uint4 *)cache)[vi] = x;
	}
}

/* FP8: the caches hold E4M3 bytes, written as x·inv_k and x·inv_v (else bf16, inv unused). */
template <bool FP8>
static __global__ void __launch_bounds__(QKNR_THREADS)
qk_norm_rope_kernel(uint4 *q_out, void *k_cache, void *v_cache, const float4 *qkv,
		    const uint4 *q_norm_w, const uint4 *k_norm_w, const int32_t *pos,
		    const int32_t *slot_mapping, int T, int Hq, int KV, int hd, int g_log2,
		    float eps, float inv_k, float inv_v, const __grid_constant__ qknr_rope rope)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	__shared__ __align__(16) float cs[QKNR_MAX_HALF], sn[QKNR_MAX_HALF];
	const int t = blockIdx.x, half = hd / 2, nvh = half / 8, hv = hd / 8;

	for (int j = threadIdx.x; j < half; j += blockDim.x)
		qknr_angle(&cs[j], &sn[j], rope, pos, T, t, j);
	__syncthreads();

	const int slot = slot_mapping[t];
	const int nheads = Hq + 2 * KV, g = 1 << g_log2;
	const int grp = threadIdx.x >> g_log2, gl = threadIdx.x & (g - 1);
	const int ngroups = blockDim.x >> g_log2;
	const float4 *row = qkv + (long)t * nheads * 2 * hv;   /* 2 float4 a vector of 8 */

	for (int base = 0; base < nheads; base += ngroups) {
		const int h = base + grp;
		const bool is_v = h >= Hq + KV, is_k = h >= Hq && !is_v;
		bool on = h < nheads && gl < nvh && (h < Hq || slot >= 0);
		float a8[8] = { 0.f }, b8[8] = { 0.f };
		float ss = 0.f;
		if (on) {
			load8(a8, row + ((long)h * hv + gl) * 2);
			load8(b8, row + ((long)h * hv + nvh + gl) * 2);
			if (!is_v)
				ss = sumsq8(a8) + sumsq8(b8);
		}
		/* butterfly within the group of g lanes; all 32 lanes take part */
		for (int o = g >> 1; o > 0; o >>= 1)
			ss += __shfl_xor_sync(0xffffffffu, ss, o);
		if (!on)
			continue;
		if (is_v) {
			const long v0 = ((long)slot * KV + (h - Hq - KV)) * hv;
			qknr_store8<FP8>(v_cache, v0 + gl, bf16x8(a8), inv_v);
			qknr_store8<FP8>(v_cache, v0 + nvh + gl, bf16x8(b8), inv_v);
			continue;
		}
		const float r = 1.0f / sqrtf(ss / (float)hd + eps);
		const uint4 *w = is_k ? k_norm_w : q_norm_w;
		uint4 wa = __ldg(&w[gl]), wb = __ldg(&w[nvh + gl]);
		const __nv_bfloat16 *wa8 = (const __nv_bfloat16 *)&wa, *wb8 = (const __nv_bfloat16 *)&wb;
		const float4 *c4 = (const float4 *)cs + 2 * gl, *s4 = (const float4 *)sn + 2 * gl;
		float c8[8], s8[8], lo8[8], hi8[8];
		*(float4 *)&c8[0] = c4[0];
		*(float4 *)&c8[4] = c4[1];
		*(float4 *)&s8[0] = s4[0];
		*(float4 *)&s8[4] = s4[1];
#pragma unroll
		for (int k = 0; k < 8; k++) {
			float na = __bfloat162float(wa8[k]) * (a8[k] * r);
			float nb = __bfloat162float(wb8[k]) * (b8[k] * r);
			lo8[k] = na * c8[k] - nb * s8[k];
			hi8[k] = nb * c8[k] + na * s8[k];
		}
		const uint4 oa = bf16x8(lo8), ob = bf16x8(hi8);
		if (FP8 && is_k) {
			const long k0 = ((long)slot * KV + (h - Hq)) * hv;
			qknr_store8<FP8>(k_cache, k0 + gl, oa, inv_k);
			qknr_store8<FP8>(k_cache, k0 + nvh + gl, ob, inv_k);
			continue;
		}
		/* bf16 k (the same code as q: one pointer select), or q */
		uint4 *dst = is_k ? (uint4 *)k_cache + ((long)slot * KV + (h - Hq)) * hv
				  : q_out + ((long)t * Hq + h) * hv;
		dst[gl] = oa;
		dst[nvh + gl] = ob;
	}
}

/* The rope table (kn_rope_table_cuda): one thread a (token, pair). */
static __global__ void rope_table_kernel(float *cs, float *sn, const int32_t *pos, int T,
					 int half, const __grid_constant__ qknr_rope rope)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (long)T * half)
		return;
	const int t = (int)(i / half), j = (int)(i - (long)t * half);
	qknr_angle(&cs[i], &sn[i], rope, pos, T, t, j);
}

/* inv_freq (the same fp32 expression as the reference, and transformers) and the sections. */
static qknr_rope qknr_rope_of(int hd, const int mrope_section[3], float rope_theta)
{
	qknr_rope rope;
	for (int j = 0; j < hd / 2; j++)
		rope.inv_freq[j] = 1.0f / powf(rope_theta, (float)(2 * j) / (float)hd);
	rope.sec_h = mrope_section[1];
	rope.sec_w = mrope_section[2];
	return rope;
}

extern "C" void kn_rope_table_cuda(float *cs, float *sn, const int32_t *pos, int T, int hd,
				   const int mrope_section[3], float rope_theta,
				   cudaStream_t stream)
{
	if (T <= 0)
		return;
	if (hd < 2 || hd % 2 || hd / 2 > QKNR_MAX_HALF) {
		fprintf(stderr, "<2>[kernels] rope_table: unsupported hd %d (needs 2..512, even)\n",
			hd);
		abort();
	}
	const long n = (long)T * (hd / 2);
	kn_launch(rope_table_kernel, (unsigned)((n + 255) / 256), 256, 0, stream, cs, sn, pos, T,
		  hd / 2, qknr_rope_of(hd, mrope_section, rope_theta));
	KN_CHECK_LAUNCH();
}

/* Checks, the host-side rope table, then the launch of the instance for the cache type. */
template <bool FP8>
static void qknr_run(uint16_t *q_out, void *k_cache, void *v_cache, const float *qkv,
		     const uint16_t *q_norm_w, const uint16_t *k_norm_w, const int32_t *pos,
		     const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
		     const int mrope_section[3], float rope_theta, float eps, float inv_k,
		     float inv_v, cudaStream_t stream)
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
	const qknr_rope rope = qknr_rope_of(hd, mrope_section, rope_theta);
	int g_log2 = 0;
	while ((1 << g_log2) < hd / 16)
		g_log2++;
	kn_launch(qk_norm_rope_kernel<FP8>, T, QKNR_THREADS, 0, stream,
		(uint4 *)q_out, k_cache, v_cache, (const float4 *)qkv,
		(const uint4 *)q_norm_w, (const uint4 *)k_norm_w, pos, slot_mapping, T, Hq, KV, hd,
		g_log2, eps, inv_k, inv_v, rope);
	KN_CHECK_LAUNCH();
}

extern "C" void kn_qk_norm_rope_cuda(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
				     const float *qkv, const uint16_t *q_norm_w,
				     const uint16_t *k_norm_w, const int32_t *pos,
				     const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
				     const int mrope_section[3], float rope_theta, float eps,
				     cudaStream_t stream)
{
	qknr_run<false>(q_out, k_cache, v_cache, qkv, q_norm_w, k_norm_w, pos, slot_mapping, T,
			Hq, KV, hd, mrope_section, rope_theta, eps, 1.0f, 1.0f, stream);
}

/* 1/scale in fp32 here, as the reference computes it. */
extern "C" void kn_qk_norm_rope_fp8_cuda(uint16_t *q_out, uint8_t *k_cache, uint8_t *v_cache,
					 const float *qkv, const uint16_t *q_norm_w,
					 const uint16_t *k_norm_w, const int32_t *pos,
					 const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
					 const int mrope_section[3], float rope_theta, float eps,
					 float k_scale, float v_scale, cudaStream_t stream)
{
	qknr_run<true>(q_out, k_cache, v_cache, qkv, q_norm_w, k_norm_w, pos, slot_mapping, T,
		       Hq, KV, hd, mrope_section, rope_theta, eps, 1.0f / k_scale,
		       1.0f / v_scale, stream);
}
