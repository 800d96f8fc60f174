/*
 * rmsnorm CUDA kernel (formula, shapes and rounding in rmsnorm.h; reference kn_rmsnorm_ref).
 *
 * Launch: one block of 256 threads per row. Each thread accumulates the squares of a strided
 * slice of the row in fp32; a warp shuffle reduction and a 8-slot shared-memory pass give the
 * row's sum; every thread then writes its slice. The row is read twice (sum, then write): rows
 * are at most a few KB, so the second read hits L1/L2. Memory-bound: 2 bytes read + 2 written
 * per element, plus the weight vector (cached).
 */
#include <cuda_bf16.h>

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

static __global__ void rmsnorm_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *x,
				      const __nv_bfloat16 *w, int cols, float eps)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	__shared__ float partial[RMSNORM_THREADS / 32];
	__shared__ float inv_rms;
	const __nv_bfloat16 *xr = x + (long)blockIdx.x * cols;
	__nv_bfloat16 *yr = out + (long)blockIdx.x * cols;

	float ss = 0.f;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		float v = __bfloat162float(xr[c]);
		ss += v * v;
	}
	ss = warp_sum(ss);
	if ((threadIdx.x & 31) == 0)
		partial[threadIdx.x >> 5] = ss;
	__syncthreads();
	if (threadIdx.x < 32) {
		float s = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.f;
		s = warp_sum(s);
		if (threadIdx.x == 0)
			inv_rms = rsqrtf(s / (float)cols + eps);
	}
	__syncthreads();
	float r = inv_rms;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		/* round the normalised value to bf16 before the weight multiply, as transformers does */
		float normed = __bfloat162float(__float2bfloat16(__bfloat162float(xr[c]) * r));
		yr[c] = __float2bfloat16(__bfloat162float(w[c]) * normed);
	}
}

extern "C" void kn_rmsnorm_cuda(uint16_t *out, const uint16_t *x, const uint16_t *w, int rows,
				int cols, float eps, cudaStream_t stream)
{
	if (rows <= 0 || cols <= 0)
		return;
	kn_launch(rmsnorm_kernel, rows, RMSNORM_THREADS, 0, stream, (__nv_bfloat16 *)out,
							     (const __nv_bfloat16 *)x,
							     (const __nv_bfloat16 *)w, cols, eps);
	KN_CHECK_LAUNCH();
}
