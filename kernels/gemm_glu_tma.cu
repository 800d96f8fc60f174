/*
 * gemm_glu_tma: the gate/up projection with SwiGLU in its epilogue, on Hopper's TMA and wgmma,
 * in two shapes: one for prompt steps (hundreds to thousands of rows, compute-bound) and one
 * for decode steps (up to 128 rows, bound by streaming W). Interface in gemm_glu_tma.h;
 * formulas and reference in gemm.h's kn_gemm_glu, whose tuning keeps this kernel for a key
 * only where it times faster than the other forms.
 *
 * Why: cuBLASLt's fp16 gate/up product writes its (M, 2F) fp16 output and silu_mul reads it
 * back and writes act (at 8,192 rows ~0.14 ms of ~0.64 ms a layer on an H100), which no
 * cuBLASLt epilogue can absorb. Here the product's fp32 sums of an output's gate and up rows
 * meet in one thread's registers and leave as bf16(silu(g)·u).
 *
 * The work: a tile is 128 rows of x × BF outputs, i.e. BF gate rows and the BF up rows (F rows
 * further on) of W: act tile = x tile · [Wg | Wu] tileᵀ, N = 2·BF, of which columns c and
 * c + BF are the gate and up sums of output c. The TMA ring, the clusters, the producer and the
 * consumers are gemm_tma.cuh's (its design there); this file is the epilogue (glu_epi) and the
 * two shapes' use of them. Clusters of two CTAs share one operand by TMA multicast:
 *
 *   prompt (BF 128, m64n256): the two CTAs take two row blocks of one output block and share
 *     its W tile, each copying half (rank 0 the gate rows, rank 1 the up rows) into both: a
 *     stage's L2 traffic a CTA is 32 KB instead of 48. 4 stages of 48 KB.
 *   decode (BF 48, m64n96): the two take two output blocks of one row block and share its x
 *     tile, each copying 64 of its rows into both; F = 6144 makes 128 CTAs, one wave, each
 *     streaming 384 KB of W. 8 stages of 28 KB. Its x boxes are M rounded up to 8 rows tall
 *     (TMA's zero fill of rows past M is slow), so a tile's rows past them hold stale bytes,
 *     which reach only the product's rows past M; up to 64 rows rank 1 copies nothing.
 *
 * The epilogue: the C layout puts output c's gate in register group j and its up in j + BF/8
 *   of the same thread, so each thread turns its pairs into bf16 act with bf16x2 stores.
 *
 * The epilogue's silu uses __expf and a fast divide (gt_silu_mul2): the exact expf and IEEE
 * divide with their slow-path branches cost ~25% of the kernel.
 *
 * Rows of x past M are not stored. PDL: every thread waits before the first copy; nothing is
 * read before.
 *
 * sm_90a only (Makefile.am builds this file's device code for that target alone; elsewhere
 * kn_glu_tma_new returns NULL).
 *
 * Measured (H100, tests/bench/bench_gemm_cuda --glu, weights cold, F 6144, K 2048), µs, against
 * cuBLASLt's product alone / with silu_mul / gemm_wgmma's GLU epilogue: 8,192 rows 558-609
 * against 503-516 / 640-658; 2,048 rows 144-182 against 135-143 / 171-189; 128 rows 23.1
 * against 22.7 / 27.5 / 28.8; 64 rows 22.2 against 22.3 / 25.1 / 22.1.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm_glu_tma.h"
#include "gemm_tma.cuh"

struct kn_glu_tma {
	PFN_cuTensorMapEncodeTiled_v12000 encode;
	int max_prompt, max_decode;      /* the most CTAs of each shape resident at once */
};

/* bf16(silu(g)·u) of two outputs, packed: __expf and a fast divide (~1e-6 relative, far under
 * bf16's rounding; g below ~−87 gives 0, silu's limit), one round-to-nearest-even each. */
static __device__ __forceinline__ uint32_t gt_silu_mul2(float g0, float u0, float g1, float u1)
{
	const __nv_bfloat162 v = __floats2bfloat162_rn(__fdividef(g0, 1.0f + __expf(-g0)) * u0,
						       __fdividef(g1, 1.0f + __expf(-g1)) * u1);
	return *(const uint32_t *)&v;
}

/* The SwiGLU epilogue (gemm_tma.cuh's E): act (M, F) bf16. */
template <int BF> struct glu_epi {
	uint16_t *act;

	/* rank 0 copies the gate rows of output block f0, rank 1 its up rows */
	static __device__ __forceinline__ int w_row(unsigned rank, int f0, int F)
	{
		return (int)rank * F + f0;
	}

	/* register group j holds columns 8j + 2(l mod 4) and + 1 of rows r and r + 8; gate
	 * column c's up column is c + BF (j + BF / 8) */
	__device__ __forceinline__ void store(const float (&acc)[BF], int r, int f0, int M, int F,
					      int l) const
	{
#pragma unroll
		for (int j = 0; j < BF / 8; j++) {
			const int col = f0 + 8 * j + 2 * (l & 3);
			const float *g = acc + 4 * j, *v = acc + 4 * (j + BF / 8);
			if (r < M)
				*(uint32_t *)(act + (size_t)r * F + col) =
					gt_silu_mul2(g[0], v[0], g[1], v[1]);
			if (r + 8 < M)
				*(uint32_t *)(act + (size_t)(r + 8) * F + col) =
					gt_silu_mul2(g[2], v[2], g[3], v[3]);
		}
	}
};
typedef glu_epi<gt_prompt::BF> glu_prompt_epi;
typedef glu_epi<gt_decode::BF> glu_decode_epi;

extern "C" kn_glu_tma *kn_glu_tma_new(void)
{
	PFN_cuTensorMapEncodeTiled_v12000 encode;
	int sms;
	if (!gt_available<gt_prompt, glu_prompt_epi>("QVL_GLU_TMA", &encode, &sms))
		return NULL;
	kn_glu_tma *g = (kn_glu_tma *)calloc(1, sizeof(*g));
	if (!g) {
		fprintf(stderr, "<2>[cuda] kn_glu_tma_new: out of memory\n");
		abort();
	}
	g->encode = encode;
	g->max_prompt = gt_prepare<gt_prompt, glu_prompt_epi>(sms);
	g->max_decode = gt_prepare<gt_decode, glu_decode_epi>(sms);
	return g;
}

extern "C" void kn_glu_tma_free(kn_glu_tma *g)
{
	free(g);
}

extern "C" bool kn_glu_tma_fits(const kn_glu_tma *g, const uint16_t *act, const uint16_t *x,
				const uint16_t *W, int M, int F, int K)
{
	const uintptr_t a = (uintptr_t)act | (uintptr_t)x | (uintptr_t)W;
	const int f_step = M <= GT_BM ? gt_decode::BF * gt_decode::CL : gt_prompt::BF;
	return g && M > 0 && F > 0 && F % f_step == 0 && K > 0 && K % GT_BK == 0 && a % 16 == 0;
}

extern "C" void kn_glu_tma_run(kn_glu_tma *g, uint16_t *act, const uint16_t *x, const uint16_t *W,
			       int M, int F, int K, cudaStream_t stream)
{
	if (M <= GT_BM)
		gt_launch<gt_decode>(g->encode, g->max_decode, glu_decode_epi{ act }, x, W, M, F, K,
				     stream);
	else
		gt_launch<gt_prompt>(g->encode, g->max_prompt, glu_prompt_epi{ act }, x, W, M, F, K,
				     stream);
}
