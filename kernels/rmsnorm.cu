/*
 * rmsnorm CUDA kernel (formula, shapes and rounding in rmsnorm.h; reference kn_rmsnorm_ref).
 *
 * Launch: one block of 256 threads per row. Each thread accumulates the squares of a strided
 * slice of the row in fp32; a warp shuffle reduction and an 8-slot shared-memory pass give the
 * row's sum; r = 1/sqrtf(…) (IEEE sqrt and division: no fast-math); every thread then writes
 * its slice as bf16(w · (x·r)), two fp32 products and one rounding. The row is read twice (sum,
 * then write): rows are at most a few KB, so the second read hits L1/L2. When cols is a
 * multiple of 4, x is 16-byte aligned and w and out 8-byte aligned (then so is every row), a
 * slice element is 4 columns (one float4 of x, 4 bf16 of w and of out; D = 2048: 2 a thread),
 * else one column. Memory-bound: 4 bytes read + 2 written per element, plus the weight vector
 * (cached across rows).
 *
 * Rows of at most RMSNORM_REG_VECS · 4 · 256 columns (4096) take the register form of the vector
 * kernel: a thread loads its slice of w before the PDL wait (a weight: no kernel of the step
 * writes it) and its slice of x once, into registers, after it. The decoder runs 57 of these a
 * token at D = 2048, where the second read and the late weight load cost ~0.4 us a launch
 * (H100: 1.99 us in a graph of back-to-back launches before this form).
 *
 * kn_rmsnorm_f16_cuda is the same code with the one rounding to IEEE fp16 (__float2half_rn)
 * instead of bf16: a template flag of each kernel.
 */
#include <stdint.h>

#include <cuda_fp16.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "rmsnorm.h"

#define RMSNORM_THREADS 256

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

/* One row per block, 4 columns a slice element; cols = 4·nv. */
template <bool F16>
static __global__ void __launch_bounds__(RMSNORM_THREADS)
rmsnorm_vec_kernel(uint2 *out, const float4 *x, const uint2 *w, int nv, float eps)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	const float4 *xr = x + (long)blockIdx.x * nv;
	uint2 *yr = out + (long)blockIdx.x * nv;
	float ss = 0.f;
	for (int i = threadIdx.x; i < nv; i += RMSNORM_THREADS) {
		float4 v = xr[i];
		ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
	}
	const float r = block_inv_rms(ss, 4 * nv, eps);
	for (int i = threadIdx.x; i < nv; i += RMSNORM_THREADS)
		yr[i] = norm4<F16>(xr[i], __ldg(&w[i]), r);
}

/* The same with the row held in registers: cols = 4·nv ≤ 4·NV·RMSNORM_THREADS; w read before the
 * PDL wait. */
template <int NV, bool F16>
static __global__ void __launch_bounds__(RMSNORM_THREADS)
rmsnorm_reg_kernel(uint2 *out, const float4 *x, const uint2 *w, int nv, float eps)
{
	uint2 wv[NV];
#pragma unroll
	for (int k = 0; k < NV; k++) {
		int i = threadIdx.x + k * RMSNORM_THREADS;
		wv[k] = i < nv ? __ldg(&w[i]) : make_uint2(0, 0);
	}
	kn_pdl_wait();
	kn_pdl_trigger();
	const float4 *xr = x + (long)blockIdx.x * nv;
	uint2 *yr = out + (long)blockIdx.x * nv;
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
			yr[i] = norm4<F16>(v[k], wv[k], r);
	}
}

#define RMSNORM_REG_VECS 4

/* One row per block, column by column (any cols, any alignment). */
template <bool F16>
static __global__ void __launch_bounds__(RMSNORM_THREADS)
rmsnorm_kernel(uint16_t *out, const float *x, const uint16_t *w, int cols, float eps)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	const float *xr = x + (long)blockIdx.x * cols;
	uint16_t *yr = out + (long)blockIdx.x * cols;
	float ss = 0.f;
	for (int c = threadIdx.x; c < cols; c += RMSNORM_THREADS)
		ss += xr[c] * xr[c];
	const float r = block_inv_rms(ss, cols, eps);
	for (int c = threadIdx.x; c < cols; c += RMSNORM_THREADS)
		yr[c] = (uint16_t)norm1<F16>(xr[c], w[c], r);
}

template <bool F16>
static void rmsnorm_launch(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
			   float eps, cudaStream_t stream)
{
	if (rows <= 0 || cols <= 0)
		return;
	const bool vec = cols % 4 == 0 && (uintptr_t)x % 16 == 0 &&
			 ((uintptr_t)w | (uintptr_t)out) % 8 == 0;
	const int nv = cols / 4;
	if (vec && nv <= 2 * RMSNORM_THREADS)
		kn_launch(rmsnorm_reg_kernel<2, F16>, rows, RMSNORM_THREADS, 0, stream, (uint2 *)out,
			  (const float4 *)x, (const uint2 *)w, nv, eps);
	else if (vec && nv <= RMSNORM_REG_VECS * RMSNORM_THREADS)
		kn_launch(rmsnorm_reg_kernel<RMSNORM_REG_VECS, F16>, rows, RMSNORM_THREADS, 0, stream,
			  (uint2 *)out, (const float4 *)x, (const uint2 *)w, nv, eps);
	else if (vec)
		kn_launch(rmsnorm_vec_kernel<F16>, rows, RMSNORM_THREADS, 0, stream, (uint2 *)out,
			  (const float4 *)x, (const uint2 *)w, cols / 4, eps);
	else
		kn_launch(rmsnorm_kernel<F16>, rows, RMSNORM_THREADS, 0, stream, out, x, w, cols, eps);
	KN_CHECK_LAUNCH();
}

extern "C" void kn_rmsnorm_cuda(uint16_t *out, const float *x, const uint16_t *w, int rows,
				int cols, float eps, cudaStream_t stream)
{
	rmsnorm_launch<false>(out, x, w, rows, cols, eps, stream);
}

extern "C" void kn_rmsnorm_f16_cuda(uint16_t *out, const float *x, const uint16_t *w, int rows,
				    int cols, float eps, cudaStream_t stream)
{
	rmsnorm_launch<true>(out, x, w, rows, cols, eps, stream);
}
