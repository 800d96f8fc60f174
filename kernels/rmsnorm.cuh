/*
 * rmsnorm.cuh: the device pieces of kn_rmsnorm(_f16)_cuda that another kernel may run in its own
 * prologue and get the very same bits (gemm.cu's GEMV normalises its input rows with them when
 * it fuses the RMSNorm before a projection): the block reduction of a row's squares over 256
 * threads and the rounding of w · (x·r). rmsnorm.cu says how they are used.
 */
#ifndef QVL_KERNELS_RMSNORM_CUH
#define QVL_KERNELS_RMSNORM_CUH

#include <stdint.h>

#include <cuda_fp16.h>

#define RMSNORM_THREADS 256
/* Rows of up to 4 · RMSNORM_REG_SHORT · 256 columns (2048: the decoder's D) take the register
 * kernel with that many 4-column pieces a thread (rmsnorm.cu); a fused caller that wants its
 * bits uses the same width. */
#define RMSNORM_REG_SHORT 2

static __device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* 1/sqrt(mean + eps) of the row from each thread's partial sum of squares ss. */
static __device__ float block_inv_rms(float ss, int cols, float eps)
{
	__shared__ float partial[RMSNORM_THREADS / 32];
	__shared__ float inv_rms;
	ss = warp_sum(ss);
	if ((threadIdx.x & 31) == 0)
		partial[threadIdx.x >> 5] = ss;
	__syncthreads();
	if (threadIdx.x < 32) {
		float s = threadIdx.x < RMSNORM_THREADS / 32 ? partial[threadIdx.x] : 0.f;
		s = warp_sum(s);
		if (threadIdx.x == 0)
			inv_rms = 1.0f / sqrtf(s / (float)cols + eps);
	}
	__syncthreads();
	return inv_rms;
}

/* The output element of w · (x·r), w the bf16 bits wb: bf16 (round to nearest even; NaN stays
 * NaN) or, F16, IEEE fp16 (round to nearest even; the caller keeps |w · x·r| ≤ 65504). */
template <bool F16>
static __device__ __forceinline__ unsigned norm1(float x, unsigned wb, float r)
{
	float v = __uint_as_float(wb << 16) * (x * r);
	if (F16)
		return __half_as_ushort(__float2half_rn(v));
	unsigned u = __float_as_uint(v);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return ((u >> 16) | 0x40u) & 0xffffu;
	return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* norm1 of 4 columns: x, and w as 4 bf16 in a uint2. */
template <bool F16>
static __device__ __forceinline__ uint2 norm4(float4 v, uint2 w, float r)
{
	uint2 o;
	o.x = norm1<F16>(v.x, w.x & 0xffffu, r) | norm1<F16>(v.y, w.x >> 16, r) << 16;
	o.y = norm1<F16>(v.z, w.y & 0xffffu, r) | norm1<F16>(v.w, w.y >> 16, r) << 16;
	return o;
}

/* One row of 4·nv ≤ 4·NV·256 columns by a block of 256 threads, the row read once into
 * registers: out (global or shared) = the row of x normalised, w already in wv (thread t holds
 * the 4-column pieces t, t + 256, …). Every thread of the block must call it. */
template <int NV, bool F16>
static __device__ __forceinline__ void rmsnorm_row_reg(uint2 *out, const float4 *xr,
						       const uint2 (&wv)[NV], int nv, float eps)
{
	float4 v[NV];
	float ss = 0.f;
#pragma unroll
	for (int k = 0; k < NV; k++) {
		int i = threadIdx.x + k * RMSNORM_THREADS;
		v[k] = i < nv ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
		ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
	}
	const float r = block_inv_rms(ss, 4 * nv, eps);
#pragma unroll
	for (int k = 0; k < NV; k++) {
		int i = threadIdx.x + k * RMSNORM_THREADS;
		if (i < nv)
			out[i] = norm4<F16>(v[k], wv[k], r);
	}
}

#endif
