/*
 * silu_mul CUDA kernel (formula, layout and rounding in silu_mul.h; reference kn_silu_mul_ref).
 *
 * Launch: a grid-stride loop over the (T, F) output, 256 threads a block, at most 32 blocks per
 * multiprocessor. When F is a multiple of 8 and both pointers are 16-byte aligned (then every
 * gate, up and out row starts 16-byte aligned) a thread handles 8 outputs with one 16-byte load
 * of gate, one of up and one 16-byte store; else one element at a time. silu uses the accurate
 * expf, as torch does (no fast-math); the kernel is memory-bound anyway: 4 bytes read and 2
 * written per output.
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "silu_mul.h"

#define SILU_MUL_THREADS 256

/* bf16( bf16(silu(g)) · u ), silu in fp32 as torch computes it for bf16 tensors. */
static __device__ __forceinline__ __nv_bfloat16 silu_mul1(__nv_bfloat16 g, __nv_bfloat16 u)
{
	float gf = __bfloat162float(g);
	float s = __bfloat162float(__float2bfloat16(gf / (1.0f + expf(-gf))));
	return __float2bfloat16(s * __bfloat162float(u));
}

/* fv = F/8 vectors per output row; n_vec = T·fv. */
static __global__ void silu_mul_vec_kernel(uint4 *out, const uint4 *gu, long n_vec, int fv)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_vec;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / fv;
		int c = (int)(i - t * fv);
		const uint4 *row = gu + t * 2 * fv;
		uint4 gv = __ldg(&row[c]), uv = __ldg(&row[fv + c]), ov;
		const __nv_bfloat16 *g8 = (const __nv_bfloat16 *)&gv, *u8 = (const __nv_bfloat16 *)&uv;
		__nv_bfloat16 *o8 = (__nv_bfloat16 *)&ov;
#pragma unroll
		for (int k = 0; k < 8; k++)
			o8[k] = silu_mul1(g8[k], u8[k]);
		out[i] = ov;
	}
}

static __global__ void silu_mul_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *gu, long n, int F)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / F;
		int c = (int)(i - t * F);
		const __nv_bfloat16 *row = gu + t * 2 * F;
		out[i] = silu_mul1(row[c], row[F + c]);
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

extern "C" void kn_silu_mul_cuda(uint16_t *out, const uint16_t *gu, int T, int F,
				 cudaStream_t stream)
{
	if (T <= 0 || F <= 0)
		return;
	long n = (long)T * F;
	if (F % 8 == 0 && ((uintptr_t)out | (uintptr_t)gu) % 16 == 0) {
		long n_vec = n / 8;
		kn_launch(silu_mul_vec_kernel, grid_for(n_vec), SILU_MUL_THREADS, 0, stream,
			(uint4 *)out, (const uint4 *)gu, n_vec, F / 8);
	} else {
		kn_launch(silu_mul_kernel, grid_for(n), SILU_MUL_THREADS, 0, stream,
			(__nv_bfloat16 *)out, (const __nv_bfloat16 *)gu, n, F);
	}
	KN_CHECK_LAUNCH();
}
