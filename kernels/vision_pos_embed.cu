/*
 * vision_pos_embed CUDA kernel (formulas, layout and rounding in vision_pos_embed.h; reference
 * kn_vision_pos_embed_ref).
 *
 * Launch: one block of 128 threads per patch row. Every thread recomputes the row's four corner
 * indices and bf16 weights (a handful of fp32 operations, with __fmul_rn / __fsub_rn so that no
 * FMA contraction changes a rounding; fp32 division is IEEE-exact by default), then the block
 * walks the dv features, reading the four table rows (L2-resident: the table is 4.5 MiB for the
 * 2B model) and updating x in place. Memory-bound: 2 bytes read and written per element of x.
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "vision_pos_embed.h"

#define VPOS_THREADS 128

static __device__ __forceinline__ float bf16r(float v)
{
	return __bfloat162float(__float2bfloat16(v));
}

static __device__ __forceinline__ float linspace_at(float b, int n, int i)
{
	if (n == 1)
		return 0.0f;
	float step = __fdiv_rn(b, (float)(n - 1));
	return i < n / 2 ? __fadd_rn(0.0f, __fmul_rn(step, (float)i))
			 : __fsub_rn(b, __fmul_rn(step, (float)(n - 1 - i)));
}

static __global__ void __launch_bounds__(VPOS_THREADS)
vision_pos_embed_kernel(__nv_bfloat16 *x, const __nv_bfloat16 *table, int side, int dv,
			int merge, int grid_h, int grid_w)
{
	int n = blockIdx.x, L = grid_h * grid_w;
	int r = n % L, win = r / (merge * merge), in = r % (merge * merge);
	int row = (win / (grid_w / merge)) * merge + in / merge;
	int col = (win % (grid_w / merge)) * merge + in % merge;
	float hi = linspace_at((float)(side - 1), grid_h, row);
	float wi = linspace_at((float)(side - 1), grid_w, col);
	int h0 = (int)hi, w0 = (int)wi;
	int h1 = min(h0 + 1, side - 1), w1 = min(w0 + 1, side - 1);
	float dh = __fsub_rn(hi, (float)h0), dw = __fsub_rn(wi, (float)w0);
	float odh = __fsub_rn(1.0f, dh), odw = __fsub_rn(1.0f, dw);
	float w00 = bf16r(__fmul_rn(odh, odw)), w01 = bf16r(__fmul_rn(odh, dw));
	float w10 = bf16r(__fmul_rn(dh, odw)), w11 = bf16r(__fmul_rn(dh, dw));
	const __nv_bfloat16 *p00 = table + ((long)h0 * side + w0) * dv;
	const __nv_bfloat16 *p01 = table + ((long)h0 * side + w1) * dv;
	const __nv_bfloat16 *p10 = table + ((long)h1 * side + w0) * dv;
	const __nv_bfloat16 *p11 = table + ((long)h1 * side + w1) * dv;
	__nv_bfloat16 *o = x + (long)n * dv;
	for (int d = threadIdx.x; d < dv; d += blockDim.x) {
		float t0 = bf16r(__fmul_rn(__bfloat162float(p00[d]), w00));
		float t1 = bf16r(__fmul_rn(__bfloat162float(p01[d]), w01));
		float t2 = bf16r(__fmul_rn(__bfloat162float(p10[d]), w10));
		float t3 = bf16r(__fmul_rn(__bfloat162float(p11[d]), w11));
		float e = bf16r(__fadd_rn(bf16r(__fadd_rn(bf16r(__fadd_rn(t0, t1)), t2)), t3));
		o[d] = __float2bfloat16(__fadd_rn(__bfloat162float(o[d]), e));
	}
}

extern "C" void kn_vision_pos_embed_cuda(uint16_t *x, const uint16_t *table, int side, int dv,
					 int merge, int grid_t, int grid_h, int grid_w,
					 cudaStream_t stream)
{
	long N = (long)grid_t * grid_h * grid_w;
	if (N <= 0 || dv <= 0)
		return;
	vision_pos_embed_kernel<<<(unsigned)N, VPOS_THREADS, 0, stream>>>(
		(__nv_bfloat16 *)x, (const __nv_bfloat16 *)table, side, dv, merge, grid_h, grid_w);
	KN_CHECK_LAUNCH();
}
