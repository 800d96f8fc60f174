/*
 * vision_rope CUDA kernel (formulas, layout and rounding in vision_rope.h; reference
 * kn_vision_rope_ref).
 *
 * Launch: one block of 128 threads per patch row. The block first computes the row's hd/2
 * (cos, sin) pairs into shared memory (row and column from the merge-window index arithmetic,
 * θ as one fp32 multiply by f_k, sincos in double and rounded to fp32, so they match the
 * reference bit for bit); then each thread takes rope pairs (i, i + hd/2) of the 2·H q and k
 * heads, strided. The products and sums use __fmul_rn / __fadd_rn so that nvcc cannot contract
 * them into FMAs (torch rounds each elementwise op in fp32).
 *
 * f_k (fp32, computed on the host exactly as the reference does) travels as a by-value
 * __grid_constant__ parameter: no device table, no copy. Memory-bound: 4·H·hd bytes read and
 * written per row (q and k), v untouched.
 */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "vision_rope.h"

#define VROPE_THREADS 128
#define VROPE_MAX_Q 128   /* hd ≤ 512 */

struct vrope_freq {
	float f[VROPE_MAX_Q];
};

static __global__ void __launch_bounds__(VROPE_THREADS)
vision_rope_kernel(__nv_bfloat16 *qkv, int H, int hd, int merge, int grid_h, int grid_w,
		   const __grid_constant__ vrope_freq fr)
{
	__shared__ float cs[2 * VROPE_MAX_Q], sn[2 * VROPE_MAX_Q];
	int n = blockIdx.x, half = hd / 2, q = hd / 4, L = grid_h * grid_w;
	int r = n % L, win = r / (merge * merge), in = r % (merge * merge);
	float row = (float)((win / (grid_w / merge)) * merge + in / merge);
	float col = (float)((win % (grid_w / merge)) * merge + in % merge);
	for (int i = threadIdx.x; i < half; i += blockDim.x) {
		float th = i < q ? __fmul_rn(row, fr.f[i]) : __fmul_rn(col, fr.f[i - q]);
		double s, c;
		sincos((double)th, &s, &c);
		cs[i] = (float)c;
		sn[i] = (float)s;
	}
	__syncthreads();
	long Dv = (long)H * hd;
	__nv_bfloat16 *base = qkv + (long)n * 3 * Dv;
	int pairs = 2 * H * half;   /* q and k heads */
	for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
		int h = j / half, i = j % half;   /* h < 2H: q heads then k heads (contiguous) */
		__nv_bfloat16 *p = base + (long)h * hd;
		float a = __bfloat162float(p[i]), b = __bfloat162float(p[i + half]);
		float c = cs[i], s = sn[i];
		p[i] = __float2bfloat16(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
		p[i + half] = __float2bfloat16(__fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));
	}
}

extern "C" void kn_vision_rope_cuda(uint16_t *qkv, int N, int H, int hd, int merge, int grid_h,
				    int grid_w, cudaStream_t stream)
{
	if (N <= 0)
		return;
	if (hd % 4 || hd > 4 * VROPE_MAX_Q || merge <= 0 || grid_h % merge || grid_w % merge) {
		fprintf(stderr, "<2>[cuda] vision_rope: unsupported hd %d / merge %d / grid %dx%d\n",
			hd, merge, grid_h, grid_w);
		abort();
	}
	vrope_freq fr;
	int half = hd / 2;
	for (int k = 0; k < hd / 4; k++)
		fr.f[k] = 1.0f / powf(10000.0f, (float)(2 * k) / (float)half);
	vision_rope_kernel<<<N, VROPE_THREADS, 0, stream>>>((__nv_bfloat16 *)qkv, H, hd, merge,
							    grid_h, grid_w, fr);
	KN_CHECK_LAUNCH();
}
