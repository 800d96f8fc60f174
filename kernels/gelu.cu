/*
 * gelu CUDA kernel (formulas, modes and rounding in gelu.h; reference kn_gelu_ref).
 *
 * Launch: a grid-stride loop over the n elements, 256 threads a block, at most 32 blocks per
 * multiprocessor; the mode is a template parameter, so the inner loop has no branch. When both
 * pointers are 16-byte aligned a thread handles 8 elements with one 16-byte load and one 16-byte
 * store, and the last n mod 8 elements (fewer than 8) go one per thread to the first threads of
 * the grid; else one element at a time. tanhf and erff are CUDA's accurate ones, as torch uses
 * (torch's CUDA kernels: 0.5f·x·(1 + tanhf(kBeta·(x + kKappa·x³))) and x·0.5f·(1 + erff(x·M_SQRT1_2))
 * in fp32); no fast-math. Memory-bound: 2 bytes read and 2 written per element.
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "gelu.h"

#define GELU_THREADS 256

/* One element: GELU in fp32 from the bf16 input, one rounding. */
template <int MODE>
static __device__ __forceinline__ __nv_bfloat16 gelu1(__nv_bfloat16 v)
{
	float z = __bfloat162float(v);
	if (MODE == KN_GELU_TANH) {
		const float beta = 0.7978845608028654f, kappa = 0.044715f;   /* √(2/π) */
		return __float2bfloat16(0.5f * z * (1.0f + tanhf(beta * (z + kappa * z * z * z))));
	}
	return __float2bfloat16(z * 0.5f * (1.0f + erff(z * 0.7071067811865476f)));
}

/* nv = n/8 vectors, then the n − 8·nv tail elements. */
template <int MODE>
static __global__ void gelu_vec_kernel(uint4 *out, const uint4 *x, long nv, long n)
{
	long stride = (long)gridDim.x * blockDim.x, tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
	for (long i = tid; i < nv; i += stride) {
		uint4 xv = x[i], ov;   /* plain load: out may alias x */
		const __nv_bfloat16 *x8 = (const __nv_bfloat16 *)&xv;
		__nv_bfloat16 *o8 = (__nv_bfloat16 *)&ov;
#pragma unroll
		for (int k = 0; k < 8; k++)
			o8[k] = gelu1<MODE>(x8[k]);
		out[i] = ov;
	}
	long t = 8 * nv + tid;
	if (t < n)
		((__nv_bfloat16 *)out)[t] = gelu1<MODE>(((const __nv_bfloat16 *)x)[t]);
}

template <int MODE>
static __global__ void gelu_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *x, long n)
{
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
	     i += (long)gridDim.x * blockDim.x)
		out[i] = gelu1<MODE>(x[i]);
}

/* Blocks for a grid-stride loop over n items: enough to cover n, at most 32 per multiprocessor
 * (never fewer than one, so the vector kernel's tail threads exist). */
static int grid_for(long n)
{
	int dev, sms;
	CUDA_CHECK(cudaGetDevice(&dev));
	CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	long blocks = (n + GELU_THREADS - 1) / GELU_THREADS;
	long cap = 32L * sms;
	if (blocks < 1)
		blocks = 1;
	return (int)(blocks < cap ? blocks : cap);
}

template <int MODE>
static void launch(uint16_t *out, const uint16_t *x, long n, cudaStream_t stream)
{
	if (((uintptr_t)out | (uintptr_t)x) % 16 == 0) {
		long nv = n / 8;
		gelu_vec_kernel<MODE><<<grid_for(nv), GELU_THREADS, 0, stream>>>(
			(uint4 *)out, (const uint4 *)x, nv, n);
	} else {
		gelu_kernel<MODE><<<grid_for(n), GELU_THREADS, 0, stream>>>(
			(__nv_bfloat16 *)out, (const __nv_bfloat16 *)x, n);
	}
}

extern "C" void kn_gelu_cuda(uint16_t *out, const uint16_t *x, long n, kn_gelu_mode mode,
			     cudaStream_t stream)
{
	if (n <= 0)
		return;
	if (mode == KN_GELU_TANH)
		launch<KN_GELU_TANH>(out, x, n, stream);
	else
		launch<KN_GELU_ERF>(out, x, n, stream);
	KN_CHECK_LAUNCH();
}
