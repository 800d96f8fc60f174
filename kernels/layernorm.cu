/*
 * layernorm CUDA kernel (formula, shapes, rounding and aliasing in layernorm.h; reference
 * kn_layernorm_ref).
 *
 * Launch: one block of 256 threads per row, three passes over a strided slice of the row per
 * thread. Pass 1 sums x (fp32) for the mean; pass 2 re-reads x and sums (x − mean)² for the
 * variance (two-pass rather than E[x²] − mean², so no cancellation); pass 3 re-reads x and writes
 * out. Each reduction is a warp shuffle and an 8-slot shared-memory pass. The re-reads hit
 * L1/L2 (a 4096-wide row is 8 KB). When cols is a multiple of 8 and all four pointers are 16-byte
 * aligned, a slice element is a 16-byte vector of 8 bf16 (Dv = 1024: half the threads take one
 * vector; Dm = 4096: two per thread), else a single bf16.
 *
 * Memory-bound: 2 bytes read and 2 written per element, plus w and b (cached across rows).
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "layernorm.h"

#define LAYERNORM_THREADS 256

static __device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* The block's sum of v, returned to every thread. blockDim.x == LAYERNORM_THREADS. Safe to call
 * twice in a row: every thread has passed the first call's last __syncthreads (so warp 0 has
 * read partial and every thread has read total) before anyone writes them again. */
static __device__ float block_sum(float v)
{
	__shared__ float partial[LAYERNORM_THREADS / 32];
	__shared__ float total;
	v = warp_sum(v);
	if ((threadIdx.x & 31) == 0)
		partial[threadIdx.x >> 5] = v;
	__syncthreads();
	if (threadIdx.x < 32) {
		float s = threadIdx.x < LAYERNORM_THREADS / 32 ? partial[threadIdx.x] : 0.f;
		s = warp_sum(s);
		if (threadIdx.x == 0)
			total = s;
	}
	__syncthreads();
	return total;
}

/* bf16( (x − mean)·rstd·w + b ) in fp32, one rounding, as torch's layer_norm for bf16. */
static __device__ __forceinline__ __nv_bfloat16 ln1(__nv_bfloat16 x, __nv_bfloat16 w,
						     __nv_bfloat16 b, float mean, float rstd)
{
	return __float2bfloat16(__bfloat162float(w) * ((__bfloat162float(x) - mean) * rstd) +
				__bfloat162float(b));
}

/* One row per block, in 16-byte vectors; cols = 8·nv. */
static __global__ void __launch_bounds__(LAYERNORM_THREADS)
layernorm_vec_kernel(uint4 *out, const uint4 *x, const uint4 *w, const uint4 *b, int nv,
		     float eps)
{
	long base = (long)blockIdx.x * nv;
	float s = 0.f;
	for (int i = threadIdx.x; i < nv; i += blockDim.x) {
		uint4 xv = x[base + i];
		const __nv_bfloat16 *x8 = (const __nv_bfloat16 *)&xv;
#pragma unroll
		for (int k = 0; k < 8; k++)
			s += __bfloat162float(x8[k]);
	}
	float mean = block_sum(s) / (float)(8 * nv);
	float ss = 0.f;
	for (int i = threadIdx.x; i < nv; i += blockDim.x) {
		uint4 xv = x[base + i];
		const __nv_bfloat16 *x8 = (const __nv_bfloat16 *)&xv;
#pragma unroll
		for (int k = 0; k < 8; k++) {
			float d = __bfloat162float(x8[k]) - mean;
			ss += d * d;
		}
	}
	float rstd = rsqrtf(block_sum(ss) / (float)(8 * nv) + eps);
	for (int i = threadIdx.x; i < nv; i += blockDim.x) {
		uint4 xv = x[base + i], wv = __ldg(&w[i]), bv = __ldg(&b[i]), ov;
		const __nv_bfloat16 *x8 = (const __nv_bfloat16 *)&xv,
				    *w8 = (const __nv_bfloat16 *)&wv, *b8 = (const __nv_bfloat16 *)&bv;
		__nv_bfloat16 *o8 = (__nv_bfloat16 *)&ov;
#pragma unroll
		for (int k = 0; k < 8; k++)
			o8[k] = ln1(x8[k], w8[k], b8[k], mean, rstd);
		out[base + i] = ov;
	}
}

/* One row per block, element by element (any cols, any alignment). */
static __global__ void __launch_bounds__(LAYERNORM_THREADS)
layernorm_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *x, const __nv_bfloat16 *w,
		 const __nv_bfloat16 *b, int cols, float eps)
{
	long base = (long)blockIdx.x * cols;
	float s = 0.f;
	for (int c = threadIdx.x; c < cols; c += blockDim.x)
		s += __bfloat162float(x[base + c]);
	float mean = block_sum(s) / (float)cols;
	float ss = 0.f;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		float d = __bfloat162float(x[base + c]) - mean;
		ss += d * d;
	}
	float rstd = rsqrtf(block_sum(ss) / (float)cols + eps);
	for (int c = threadIdx.x; c < cols; c += blockDim.x)
		out[base + c] = ln1(x[base + c], w[c], b[c], mean, rstd);
}

extern "C" void kn_layernorm_cuda(uint16_t *out, const uint16_t *x, const uint16_t *w,
				  const uint16_t *b, int rows, int cols, float eps,
				  cudaStream_t stream)
{
	if (rows <= 0 || cols <= 0)
		return;
	uintptr_t align = (uintptr_t)out | (uintptr_t)x | (uintptr_t)w | (uintptr_t)b;
	if (cols % 8 == 0 && align % 16 == 0)
		layernorm_vec_kernel<<<rows, LAYERNORM_THREADS, 0, stream>>>(
			(uint4 *)out, (const uint4 *)x, (const uint4 *)w, (const uint4 *)b,
			cols / 8, eps);
	else
		layernorm_kernel<<<rows, LAYERNORM_THREADS, 0, stream>>>(
			(__nv_bfloat16 *)out, (const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w,
			(const __nv_bfloat16 *)b, cols, eps);
	KN_CHECK_LAUNCH();
}
