/*
 * add_rmsnorm CUDA kernel (formula, shapes, rounding and aliasing in add_rmsnorm.h; reference
 * kn_add_rmsnorm_ref).
 *
 * Launch: one block of 256 threads per row. Pass 1: each thread adds x to the residual for a
 * strided slice of the row, rounds the sum to bf16, stores it back and accumulates its square
 * in fp32; a warp shuffle and an 8-slot shared-memory pass give the row's sum of squares.
 * Pass 2: each thread re-reads the residual elements it wrote itself (so no other thread's
 * global stores are involved; the re-read hits L1/L2) and writes out. When cols is a multiple
 * of 8 and all four pointers are 16-byte aligned, a slice element is a 16-byte vector of 8 bf16
 * (D = 2048: one vector per thread), else a single bf16.
 *
 * Memory-bound: 4 bytes read (residual, x) and 4 written (residual, out) per element, plus the
 * weight vector (cached across rows).
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "add_rmsnorm.h"
#include "cuda_check.h"
#include "pdl.cuh"

#define ADD_RMSNORM_THREADS 256

static __device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* bf16(a + b) with the add in fp32, as torch adds two bf16 tensors. */
static __device__ __forceinline__ __nv_bfloat16 add_bf16(__nv_bfloat16 a, __nv_bfloat16 b)
{
	return __float2bfloat16(__bfloat162float(a) + __bfloat162float(b));
}

/* bf16( w · bf16(h·r) ): rmsnorm's two roundings. */
static __device__ __forceinline__ __nv_bfloat16 norm_bf16(__nv_bfloat16 h, __nv_bfloat16 w,
							   float r)
{
	float normed = __bfloat162float(__float2bfloat16(__bfloat162float(h) * r));
	return __float2bfloat16(__bfloat162float(w) * normed);
}

/* The block's sum of v, returned to every thread. blockDim.x == ADD_RMSNORM_THREADS. */
static __device__ float block_sum(float v)
{
	__shared__ float partial[ADD_RMSNORM_THREADS / 32];
	__shared__ float total;
	v = warp_sum(v);
	if ((threadIdx.x & 31) == 0)
		partial[threadIdx.x >> 5] = v;
	__syncthreads();
	if (threadIdx.x < 32) {
		float s = threadIdx.x < ADD_RMSNORM_THREADS / 32 ? partial[threadIdx.x] : 0.f;
		s = warp_sum(s);
		if (threadIdx.x == 0)
			total = s;
	}
	__syncthreads();
	return total;
}

/* One row per block, in 16-byte vectors; cols = 8·nv. */
static __global__ void __launch_bounds__(ADD_RMSNORM_THREADS)
add_rmsnorm_vec_kernel(uint4 *out, uint4 *residual, const uint4 *x, const uint4 *w, int nv,
		       float eps)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	long base = (long)blockIdx.x * nv;
	float ss = 0.f;
	for (int i = threadIdx.x; i < nv; i += blockDim.x) {
		uint4 rv = residual[base + i], xv = x[base + i];
		__nv_bfloat16 *r8 = (__nv_bfloat16 *)&rv;
		const __nv_bfloat16 *x8 = (const __nv_bfloat16 *)&xv;
#pragma unroll
		for (int k = 0; k < 8; k++) {
			r8[k] = add_bf16(r8[k], x8[k]);
			float f = __bfloat162float(r8[k]);
			ss += f * f;
		}
		residual[base + i] = rv;
	}
	float r = rsqrtf(block_sum(ss) / (float)(8 * nv) + eps);
	for (int i = threadIdx.x; i < nv; i += blockDim.x) {
		uint4 hv = residual[base + i], wv = __ldg(&w[i]), ov;
		const __nv_bfloat16 *h8 = (const __nv_bfloat16 *)&hv, *w8 = (const __nv_bfloat16 *)&wv;
		__nv_bfloat16 *o8 = (__nv_bfloat16 *)&ov;
#pragma unroll
		for (int k = 0; k < 8; k++)
			o8[k] = norm_bf16(h8[k], w8[k], r);
		out[base + i] = ov;
	}
}

/* One row per block, element by element (any cols, any alignment). */
static __global__ void __launch_bounds__(ADD_RMSNORM_THREADS)
add_rmsnorm_kernel(__nv_bfloat16 *out, __nv_bfloat16 *residual, const __nv_bfloat16 *x,
		   const __nv_bfloat16 *w, int cols, float eps)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	long base = (long)blockIdx.x * cols;
	float ss = 0.f;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		__nv_bfloat16 h = add_bf16(residual[base + c], x[base + c]);
		residual[base + c] = h;
		float f = __bfloat162float(h);
		ss += f * f;
	}
	float r = rsqrtf(block_sum(ss) / (float)cols + eps);
	for (int c = threadIdx.x; c < cols; c += blockDim.x)
		out[base + c] = norm_bf16(residual[base + c], w[c], r);
}

extern "C" void kn_add_rmsnorm_cuda(uint16_t *out, uint16_t *residual, const uint16_t *x,
				    const uint16_t *w, int rows, int cols, float eps,
				    cudaStream_t stream)
{
	if (rows <= 0 || cols <= 0)
		return;
	uintptr_t align = (uintptr_t)out | (uintptr_t)residual | (uintptr_t)x | (uintptr_t)w;
	if (cols % 8 == 0 && align % 16 == 0)
		kn_launch(add_rmsnorm_vec_kernel, rows, ADD_RMSNORM_THREADS, 0, stream,
			(uint4 *)out, (uint4 *)residual, (const uint4 *)x, (const uint4 *)w,
			cols / 8, eps);
	else
		kn_launch(add_rmsnorm_kernel, rows, ADD_RMSNORM_THREADS, 0, stream,
			(__nv_bfloat16 *)out, (__nv_bfloat16 *)residual, (const __nv_bfloat16 *)x,
			(const __nv_bfloat16 *)w, cols, eps);
	KN_CHECK_LAUNCH();
}
