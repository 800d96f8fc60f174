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
#include "rmsnorm.cuh"


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
	rmsnorm_row_reg<NV, F16>(out + (long)blockIdx.x * nv, x + (long)blockIdx.x * nv, wv, nv, eps);
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
	if (vec && nv <= RMSNORM_REG_SHORT * RMSNORM_THREADS)
		kn_launch(rmsnorm_reg_kernel<RMSNORM_REG_SHORT, F16>, rows, RMSNORM_THREADS, 0, stream,
			  (uint2 *)out, (const float4 *)x, (const uint2 *)w, nv, eps);
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
