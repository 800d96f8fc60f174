/*
 * silu_mul CUDA kernel (formula, layout and rounding in silu_mul.h; reference kn_silu_mul_ref).
 *
 * Launch: a grid-stride loop over the (T, F) output, 256 threads a block, at most 32 blocks per
 * multiprocessor. When F is a multiple of 4, gu is 16-byte aligned and out 8-byte aligned (then
 * every gate, up and out row is too) a thread handles 4 outputs with one 16-byte load of gate,
 * one of up and one 8-byte store; else one element at a time. silu uses the accurate expf and
 * IEEE division (no fast-math): g / (1 + expf(−g)), times u, all fp32, one rounding to bf16.
 * Memory-bound: 8 bytes read and 2 written per output.
 */
#include <stdint.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "silu_mul.h"

#define SILU_MUL_THREADS 256

/* The bf16 bits (round to nearest even; NaN stays NaN) of silu(g)·u in fp32. */
static __device__ __forceinline__ unsigned silu_mul1(float g, float u)
{
	float v = g / (1.0f + expf(-g)) * u;
	unsigned b = __float_as_uint(v);
	if ((b & 0x7fffffffu) > 0x7f800000u)
		return ((b >> 16) | 0x40u) & 0xffffu;
	return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}

/* fv = F/4 vectors per output row; n_vec = T·fv. */
static __global__ void silu_mul_vec_kernel(uint2 *out, const float4 *gu, long n_vec, int fv)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_vec;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / fv;
		int c = (int)(i - t * fv);
		const float4 *row = gu + t * 2 * fv;
		float4 g = __ldg(&row[c]), u = __ldg(&row[fv + c]);
		uint2 o;
		o.x = silu_mul1(g.x, u.x) | silu_mul1(g.y, u.y) << 16;
		o.y = silu_mul1(g.z, u.z) | silu_mul1(g.w, u.w) << 16;
		out[i] = o;
	}
}

static __global__ void silu_mul_kernel(uint16_t *out, const float *gu, long n, int F)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / F;
		int c = (int)(i - t * F);
		const float *row = gu + t * 2 * F;
		out[i] = (uint16_t)silu_mul1(row[c], row[F + c]);
	}
}

/* Blocks for a grid-stride loop over n items: enough to cover n, at most 32 per multiprocessor. */
static int grid_for(long n)
{
	int dev, sms;
	CUDA_CHECK(cudaGetDevice(&dev));
	CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	long blocks = (n + SILU_MUL_THREADS - 1) / SILU_MUL_THREADS;
	long cap = 32L * sms;
	return (int)(blocks < cap ? blocks : cap);
}

extern "C" void kn_silu_mul_cuda(uint16_t *out, const float *gu, int T, int F,
				 cudaStream_t stream)
{
	if (T <= 0 || F <= 0)
		return;
	long n = (long)T * F;
	if (F % 4 == 0 && (uintptr_t)gu % 16 == 0 && (uintptr_t)out % 8 == 0) {
		long n_vec = n / 4;
		kn_launch(silu_mul_vec_kernel, grid_for(n_vec), SILU_MUL_THREADS, 0, stream,
			  (uint2 *)out, (const float4 *)gu, n_vec, F / 4);
	} else {
		kn_launch(silu_mul_kernel, grid_for(n), SILU_MUL_THREADS, 0, stream, out, gu, n, F);
	}
	KN_CHECK_LAUNCH();
}
