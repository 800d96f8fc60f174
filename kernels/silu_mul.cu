/*
 * silu_mul CUDA kernel (formula, layout and rounding in silu_mul.h; reference kn_silu_mul_ref).
 *
 * Launch: a grid-stride loop over the (T, F) output, 256 threads a block, at most 32 blocks per
 * multiprocessor. When F is a multiple of 4, gu is 16-byte aligned and out 8-byte aligned (then
 * every gate, up and out row is too) a thread handles 4 outputs with one 16-byte load of gate,
 * one of up and one 8-byte store; else one element at a time. silu uses the accurate expf and
 * IEEE division (no fast-math): g / (1 + expf(−g)), times u, all fp32, one rounding to bf16.
 * Memory-bound: 8 bytes read and 2 written per output. With fp16 input (kn_silu_mul_f16) the same
 * kernels (templates on the input piece) read 8-byte pieces of 4 halves instead, 4 bytes an
 * output, and widen them exactly.
 */
#include <stdint.h>

#include <cuda_fp16.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "silu_mul.h"
#include "silu_mul.cuh"

#define SILU_MUL_THREADS 256

/* 4 consecutive inputs as fp32: a float4 of fp32, or a uint2 of 4 fp16 (exactly). */
static __device__ __forceinline__ float4 widen4(float4 v)
{
	return v;
}
static __device__ __forceinline__ float4 widen4(uint2 v)
{
	float2 a = __half22float2(*(const __half2 *)&v.x), b = __half22float2(*(const __half2 *)&v.y);
	return make_float4(a.x, a.y, b.x, b.y);
}
static __device__ __forceinline__ float widen1(float v)
{
	return v;
}
static __device__ __forceinline__ float widen1(__half v)
{
	return __half2float(v);
}

/* fv = F/4 vectors per output row; n_vec = T·fv; V4 is 4 inputs (float4: fp32, uint2: fp16). */
template <typename V4>
static __global__ void silu_mul_vec_kernel(uint2 *out, const V4 *gu, long n_vec, int fv)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_vec;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / fv;
		int c = (int)(i - t * fv);
		const V4 *row = gu + t * 2 * fv;
		float4 g = widen4(__ldg(&row[c])), u = widen4(__ldg(&row[fv + c]));
		uint2 o;
		o.x = kn_silu_mul_bits(g.x, u.x) | kn_silu_mul_bits(g.y, u.y) << 16;
		o.y = kn_silu_mul_bits(g.z, u.z) | kn_silu_mul_bits(g.w, u.w) << 16;
		out[i] = o;
	}
}

/* One element at a time; E is the input element (float or __half). */
template <typename E>
static __global__ void silu_mul_kernel(uint16_t *out, const E *gu, long n, int F)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / F;
		int c = (int)(i - t * F);
		const E *row = gu + t * 2 * F;
		out[i] = (uint16_t)kn_silu_mul_bits(widen1(row[c]), widen1(row[F + c]));
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

/* Both entry points: E the input element (float or __half), V4 four of them in one load. */
template <typename E, typename V4>
static void silu_mul_run(uint16_t *out, const E *gu, int T, int F, cudaStream_t stream)
{
	if (T <= 0 || F <= 0)
		return;
	long n = (long)T * F;
	if (F % 4 == 0 && (uintptr_t)gu % sizeof(V4) == 0 && (uintptr_t)out % 8 == 0) {
		long n_vec = n / 4;
		kn_launch(silu_mul_vec_kernel<V4>, grid_for(n_vec), SILU_MUL_THREADS, 0, stream,
			  (uint2 *)out, (const V4 *)gu, n_vec, F / 4);
	} else {
		kn_launch(silu_mul_kernel<E>, grid_for(n), SILU_MUL_THREADS, 0, stream, out, gu, n, F);
	}
	KN_CHECK_LAUNCH();
}

extern "C" void kn_silu_mul_cuda(uint16_t *out, const float *gu, int T, int F,
				 cudaStream_t stream)
{
	silu_mul_run<float, float4>(out, gu, T, F, stream);
}

extern "C" void kn_silu_mul_f16_cuda(uint16_t *out, const uint16_t *gu, int T, int F,
				     cudaStream_t stream)
{
	silu_mul_run<__half, uint2>(out, (const __half *)gu, T, F, stream);
}
