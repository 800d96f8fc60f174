/*
 * vision_attention CUDA kernel: flash attention with bf16 tensor cores (mma.sync m16n8k16)
 * (formula, shapes and precision in vision_attention.h; reference kn_vision_attention_ref).
 *
 * Launch: grid (⌈L/64⌉, H, n_seg), 128 threads = 4 warps. A block owns 64 query rows of one
 * head of one segment, each warp 16 of them; the block walks the segment's keys in tiles of 64:
 *
 *   registers   Q fragments (16 × hd per warp, loaded once)       O accum (16 × hd, fp32)
 *   shared      Ks[64][hd+8]   key tile, row-major                (pad: conflict-free 32-bit
 *               Vt[hd][64+8]   value tile, transposed                fragment loads)
 *   per tile    S = Q·Ksᵀ (fp32) → ×scale·log2e, keys ≥ L masked to −∞ → running max m and
 *               partial row sum l (exp2), O *= 2^(m_old − m_new), P = bf16(2^(S − m)) reused
 *               in registers as the A operand of O += P·V (the m16n8 accumulator layout of two
 *               adjacent 8-key chunks is exactly the m16k16 A layout)
 *
 * Fragment layouts (g = lane/4, t = lane%4): A regs {row g, k 2t..2t+1}, {row g+8, k 2t},
 * {row g, k 2t+8}, {row g+8, k 2t+8}; B regs {k 2t, n g}, {k 2t+8, n g}; C {row g, n 2t, 2t+1},
 * {row g+8, n 2t, 2t+1}. Each thread keeps m and a partial l for its rows g and g+8; the four
 * threads of a quad hold a row together and agree on m through two xor-shuffles; l is summed
 * over the quad at the end.
 *
 * Query rows ≥ L are computed on zeros and not written. Loads are 16-byte vectors (hd a multiple
 * of 16 keeps every q/k/v head 16-byte aligned within a row); the next K/V tile is loaded into
 * registers while the current one is multiplied (one smem buffer, register double-buffering).
 *
 * Measured (H100 80GB HBM3, CUDA events, median of 11; tests/check_vision_cuda.c), H 16, hd 64:
 * L 784 (a 448x448 image) 40 µs (62 TFLOP/s), L 4096 620 µs (110), L 16384 9.5 ms (116). At
 * L 784 the 208 blocks are one partial wave: the time is latency, not throughput; splitting the
 * keys of a block over more warps is the next step if it matters.
 */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "vision_attention.h"

#define VATT_BQ 64
#define VATT_BK 64
#define VATT_THREADS 128

static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
						uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);   /* .x = lo (lower address) */
	return *(uint32_t *)&v;
}

template <int HD>
static __global__ void __launch_bounds__(VATT_THREADS)
vision_attention_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *qkv, int L, int H,
			float scale_log2)
{
	constexpr int KS = HD + 8, VS = VATT_BK + 8;
	__shared__ __align__(16) __nv_bfloat16 Ks[VATT_BK * KS];
	__shared__ __align__(16) __nv_bfloat16 Vt[HD * VS];

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
	const int h = blockIdx.y;
	const long Dv = (long)H * HD, ld = 3 * Dv;
	const long seg0 = (long)blockIdx.z * L;
	const int q0 = blockIdx.x * VATT_BQ + warp * 16;

	/* Q fragments of this warp's 16 rows (rows ≥ L read as zero) */
	uint32_t qf[HD / 16][4];
	{
		const int r0 = q0 + g, r1 = q0 + g + 8;
		const __nv_bfloat16 *p0 = qkv + (seg0 + r0) * ld + (long)h * HD;
		const __nv_bfloat16 *p1 = qkv + (seg0 + r1) * ld + (long)h * HD;
#pragma unroll
		for (int kc = 0; kc < HD / 16; kc++) {
			int c = kc * 16 + 2 * t;
			qf[kc][0] = r0 < L ? *(const uint32_t *)(p0 + c) : 0u;
			qf[kc][1] = r1 < L ? *(const uint32_t *)(p1 + c) : 0u;
			qf[kc][2] = r0 < L ? *(const uint32_t *)(p0 + c + 8) : 0u;
			qf[kc][3] = r1 < L ? *(const uint32_t *)(p1 + c + 8) : 0u;
		}
	}
	float o[HD / 8][4];
#pragma unroll
	for (int dc = 0; dc < HD / 8; dc++)
		o[dc][0] = o[dc][1] = o[dc][2] = o[dc][3] = 0.f;
	float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

	/* K/V tiles are staged through registers: the loads of tile i+1 are issued before the
	 * products of tile i, so their latency hides behind the tensor-core work. Thread i of
	 * the block takes key (i mod 64) of vector column (i / 64) + 2j: consecutive lanes take
	 * consecutive keys, which makes the transposed V stores conflict-free. */
	constexpr int VPR = HD / 8;                                 /* 16-byte vectors per row */
	constexpr int PER = VATT_BK * VPR / VATT_THREADS;           /* vectors per thread: HD/16 */
	const int lkey = threadIdx.x % VATT_BK, lc0 = threadIdx.x / VATT_BK;
	uint4 kreg[PER], vreg[PER];
	auto load_tile = [&](int kt) {
#pragma unroll
		for (int j = 0; j < PER; j++) {
			int c = (lc0 + j * (VATT_THREADS / VATT_BK)) * 8;
			kreg[j] = vreg[j] = make_uint4(0, 0, 0, 0);
			if (kt + lkey < L) {
				const __nv_bfloat16 *row =
					qkv + (seg0 + kt + lkey) * ld + (long)h * HD + c;
				kreg[j] = *(const uint4 *)(row + Dv);
				vreg[j] = *(const uint4 *)(row + 2 * Dv);
			}
		}
	};
	load_tile(0);
	for (int kt = 0; kt < L; kt += VATT_BK) {
		__syncthreads();   /* the previous tile is no longer read */
#pragma unroll
		for (int j = 0; j < PER; j++) {
			int c = (lc0 + j * (VATT_THREADS / VATT_BK)) * 8;
			*(uint4 *)&Ks[lkey * KS + c] = kreg[j];
			const __nv_bfloat16 *v8 = (const __nv_bfloat16 *)&vreg[j];
#pragma unroll
			for (int e = 0; e < 8; e++)
				Vt[(c + e) * VS + lkey] = v8[e];
		}
		__syncthreads();
		if (kt + VATT_BK < L)
			load_tile(kt + VATT_BK);

		/* S = Q Kᵀ for 64 keys: 8 chunks of 8 */
		float s[VATT_BK / 8][4];
#pragma unroll
		for (int nc = 0; nc < VATT_BK / 8; nc++) {
			s[nc][0] = s[nc][1] = s[nc][2] = s[nc][3] = 0.f;
			const __nv_bfloat16 *kr = &Ks[(nc * 8 + g) * KS + 2 * t];
#pragma unroll
			for (int kc = 0; kc < HD / 16; kc++)
				mma_bf16(s[nc], qf[kc], *(const uint32_t *)(kr + kc * 16),
					 *(const uint32_t *)(kr + kc * 16 + 8));
		}
		/* scale, mask, running max */
		float mx0 = m0, mx1 = m1;
#pragma unroll
		for (int nc = 0; nc < VATT_BK / 8; nc++) {
			int key = kt + nc * 8 + 2 * t;
#pragma unroll
			for (int e = 0; e < 4; e++) {
				bool ok = key + (e & 1) < L;
				s[nc][e] = ok ? s[nc][e] * scale_log2 : -INFINITY;
			}
			mx0 = fmaxf(mx0, fmaxf(s[nc][0], s[nc][1]));
			mx1 = fmaxf(mx1, fmaxf(s[nc][2], s[nc][3]));
		}
		mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
		mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
		mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
		mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
		/* every tile has a valid key (kt < L), so mx0, mx1 are finite */
		float al0 = exp2f(m0 - mx0), al1 = exp2f(m1 - mx1);
		m0 = mx0;
		m1 = mx1;
		l0 *= al0;
		l1 *= al1;
#pragma unroll
		for (int dc = 0; dc < HD / 8; dc++) {
			o[dc][0] *= al0;
			o[dc][1] *= al0;
			o[dc][2] *= al1;
			o[dc][3] *= al1;
		}
#pragma unroll
		for (int nc = 0; nc < VATT_BK / 8; nc++) {
			s[nc][0] = exp2f(s[nc][0] - m0);
			s[nc][1] = exp2f(s[nc][1] - m0);
			s[nc][2] = exp2f(s[nc][2] - m1);
			s[nc][3] = exp2f(s[nc][3] - m1);
			l0 += s[nc][0] + s[nc][1];
			l1 += s[nc][2] + s[nc][3];
		}
		/* O += P V, 16 keys per step */
#pragma unroll
		for (int kc = 0; kc < VATT_BK / 16; kc++) {
			uint32_t pa[4];
			pa[0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
			pa[1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
			pa[2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
			pa[3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
			for (int dc = 0; dc < HD / 8; dc++) {
				const __nv_bfloat16 *vr = &Vt[(dc * 8 + g) * VS + kc * 16 + 2 * t];
				mma_bf16(o[dc], pa, *(const uint32_t *)vr, *(const uint32_t *)(vr + 8));
			}
		}
	}
	l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
	l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
	l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
	l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
	const float i0 = 1.f / l0, i1 = 1.f / l1;
	const int r0 = q0 + g, r1 = q0 + g + 8;
#pragma unroll
	for (int dc = 0; dc < HD / 8; dc++) {
		int c = (int)(h * HD) + dc * 8 + 2 * t;
		if (r0 < L)
			*(uint32_t *)(out + (seg0 + r0) * Dv + c) =
				pack_bf16(o[dc][0] * i0, o[dc][1] * i0);
		if (r1 < L)
			*(uint32_t *)(out + (seg0 + r1) * Dv + c) =
				pack_bf16(o[dc][2] * i1, o[dc][3] * i1);
	}
}

template <int HD>
static void launch(uint16_t *out, const uint16_t *qkv, int n_seg, int L, int H,
		   cudaStream_t stream)
{
	dim3 grid((unsigned)((L + VATT_BQ - 1) / VATT_BQ), (unsigned)H, (unsigned)n_seg);
	float scale_log2 = (float)(1.0 / sqrt((double)HD) * 1.4426950408889634);
	vision_attention_kernel<HD><<<grid, VATT_THREADS, 0, stream>>>(
		(__nv_bfloat16 *)out, (const __nv_bfloat16 *)qkv, L, H, scale_log2);
	KN_CHECK_LAUNCH();
}

extern "C" void kn_vision_attention_cuda(uint16_t *out, const uint16_t *qkv, int n_seg, int L,
					 int H, int hd, cudaStream_t stream)
{
	if (n_seg <= 0 || L <= 0 || H <= 0)
		return;
	if (((uintptr_t)out | (uintptr_t)qkv) & 15u) {
		fprintf(stderr, "<2>[cuda] vision_attention: pointers must be 16-byte aligned\n");
		abort();
	}
	switch (hd) {
	case 16: launch<16>(out, qkv, n_seg, L, H, stream); break;
	case 32: launch<32>(out, qkv, n_seg, L, H, stream); break;
	case 48: launch<48>(out, qkv, n_seg, L, H, stream); break;
	case 64: launch<64>(out, qkv, n_seg, L, H, stream); break;
	case 80: launch<80>(out, qkv, n_seg, L, H, stream); break;
	case 96: launch<96>(out, qkv, n_seg, L, H, stream); break;
	case 128: launch<128>(out, qkv, n_seg, L, H, stream); break;
	default:
		fprintf(stderr, "<2>[cuda] vision_attention: head_dim %d is not supported\n", hd);
		abort();
	}
}
