/*
 * paged_attention CUDA kernel (shapes, pool layout, formula and limits in paged_attention.h;
 * reference kn_paged_attention_ref).
 *
 * One launch, split-KV inside a thread-block cluster:
 *
 *   grid (S, KV, B), cluster (S, 1, 1), 128 threads. The S CTAs of one cluster share sequence
 *   b and kv head kvh; the context is cut evenly, CTA x taking positions [x·per, (x+1)·per),
 *   per = ⌈ctx/S⌉, computed in the kernel from ctx_len[b] (so the grid depends on B only and a
 *   CUDA graph captured for a batch size serves every context). Each CTA computes all g query
 *   heads of its kv head, so a K or V row is read from device memory once per group.
 *
 *     sequence b, kv head kvh, S = 4, ctx 10 → per 3:
 *       positions   0 1 2 | 3 4 5 | 6 7 8 | 9
 *       CTA (rank)    0   |   1   |   2   | 3          each: (m, l, acc) per query head
 *                   └────── DSMEM merge: out = bf16(Σ w·acc / Σ w·l) ──────┘
 *
 *   A CTA walks its slice in pieces of PIECE rows (U row groups of RPS rows; 64 rows for hd
 *   128, g ≤ 2, in registers, 32 in the ring, below). Each thread holds U 16-byte vectors of K
 *   and of V of a piece (hd/8 lanes a row), fetched in one of two ways:
 *     registers (bf16, B < PA_PIPE_MIN_B): for a piece every thread first reads the block-table
 *              entries of its rows, then issues all its K and V loads into registers, so a
 *              piece costs one DRAM round trip instead of one per row group, but nothing is
 *              fetched ahead: piece i + 1's round trip starts after piece i's math.
 *     ring (bf16 from B = PA_PIPE_MIN_B, fp8 always; PIPE): the pieces stream through a ring
 *              of NST stages (PA_STAGES, PA_STAGES_FP8) in dynamic shared memory, filled with
 *              cp.async, so pieces i + 1 … i + NST − 1 are in flight while piece i is computed,
 *              and the block-table entries of a piece are read a piece before its copies are
 *              issued.
 *              Stages are lane-major (thread t's vector of row group u at (u·128 + t)·VB bytes,
 *              K then V): a thread copies and later reads only its own vectors, so its
 *              cp.async.wait_group orders copy before use with no barrier (and no bank
 *              conflicts), and the piece loop's last __syncthreads orders every thread's reads
 *              of a stage before its refill. After the last piece the ring holds `red`.
 *   Then, per piece:
 *     scores:  a K row of hd bf16 is hd/8 lanes × one 16-byte load; the dot products with the g
 *              queries (registers, fp32) are reduced across the row's lanes with shuffles and
 *              land in shared memory, s (g, PIECE), already times scale.
 *     softmax: one warp per query head: the piece's max, the running max M, s ← exp(s − M),
 *              running sum l ← l·exp(M_old − M) + Σ s; the factor exp(M_old − M) in alpha.
 *     P·V:     each lane keeps (g, 8) fp32 accumulators across the pieces (rescaled by alpha),
 *              reduced over lane groups (shuffles) and warps (shared memory) once at the end.
 *   Then a cluster barrier and the merge over DSMEM (the cluster's shared memory): the g·HD·S
 *   work items (output element o, CTA x) are dealt out evenly, g·HD to a CTA, the S items of
 *   one o in S adjacent lanes; each thread first loads its acc_x[o] (one DSMEM round trip for
 *   all), lanes j·S + x load (m_x, l_x) of head j and turn them into w_x = exp(m_x − M) / Σ_x
 *   exp(m_x − M)·l_x (M = max_x m_x, shuffles over the S lanes); out[o] = bf16(Σ_x w_x
 *   acc_x[o]) (shuffles again), the single rounding. A second barrier keeps every CTA's shared
 *   memory alive until the others have read it. No workspace and no second kernel: at B = 1
 *   the merge used to be a separate launch and a drain between the two. With S = 1 (B ≥ 64)
 *   the CTA finishes alone after a CTA barrier, with neither cluster barrier
 *   (pa_cluster_merge).
 *
 * PDL (pdl.cuh): before griddepcontrol.wait a CTA reads ctx_len, the block table and the K/V
 *   rows of its first piece (ring: of its first NST − 1 pieces, and the block table of
 *   the next) at positions < ctx − 1, overlapping those DRAM round trips with the predecessor
 *   (qk_norm_rope) instead of following it. That is safe because:
 *     - ctx_len and block_table come from the step's input upload (text_cuda.c stage_upload, a
 *       cudaMemcpyAsync before the step's first kernel; no kernel writes them), and a kernel
 *       cannot start early across a memcpy;
 *     - the only cache slot written in this step for sequence b is its new position ctx − 1
 *       (qk_norm_rope, the predecessor): positions < ctx − 1 were written by earlier steps.
 *   q and the row at ctx − 1 are read after the wait (ring: if it lies in a piece copied before
 *   the wait, whose copy left it out, by a plain load and a store into its place in the stage;
 *   in a later piece, by that piece's copy, issued after the wait anyway). Padded rows of a
 *   graph (ctx 1, block 0) read only position 0 = ctx − 1, so also after the wait.
 *
 * S follows the batch (pa_plan): 16 for B ≤ 2 (B = 1 spreads a sequence over 16·KV CTAs),
 *   8, 4, 2, and 1 from B = 64. Clusters of more than 8 CTAs need the non-portable cluster
 *   size (sm_90 allows 16).
 *
 * Measured (H100 80GB HBM3, hd 128, Hq 16, KV 8, bs 16; graph of 20 launches / 20, K/V copies
 *   rotated past L2), µs per launch, before (chunk + combine kernels) → after:
 *     B = 1, ctx 640: 8.28 → 6.78 (6.39 behind qk_norm_rope, was 8.33); B = 2: 9.4 → 7.8;
 *     B = 8: 17.9 → 17.4; B = 16: 25.8 → 27.1 (slower); B = 32: 42.6 → 35.6; B = 64: 76.2 →
 *     66.2; B = 128, ctx 576: 120.9 → 109.4; B = 256: 250.6 → 243.3.
 *   At B = 1 the time after the PDL wait is a chain of latencies (q from L2, scores, two
 *   barriers, the cluster barrier and DSMEM merge), not bandwidth.
 *
 * Memory-bound for big batches: 2·ctx·KV·hd·2 bytes of K and V per sequence, read once. Shared
 *   memory per CTA: registers: static s (GM, PIECE) + red (4 warps, GM, hd) + 3·GM fp32, at
 *   most 33 KB; ring: NST stages of 2·U·128 vectors (3 × 16 KB for bf16, 2 × 16 KB for fp8
 *   with g ≤ 2), red inside them, plus s and the statistics. Long contexts at small batch walk
 *   ⌈ctx/(S·PIECE)⌉ pieces per CTA.
 *
 * fp8 cache (kn_paged_attention_fp8_cuda): the same kernel, instantiated for one-byte E4M3
 *   elements, always through the ring. The stages hold the raw bytes (half a bf16 row's) and
 *   each thread turns its own vectors into floats while computing, exactly (fp8.cuh: E4M3 →
 *   half2 → float2); the score is d · (scale·k_scale) and the merged output is multiplied by
 *   v_scale before its single rounding; softmax, merge and PDL are shared with bf16. Lanes are
 *   16 bytes of 16 elements (hd/16 lanes a row, fewer shuffles) for g ≤ 2, 8 bytes of 8
 *   above; with no K/V vectors held across a piece the 16-byte lanes take 111 registers.
 *   (Before the ring: register pieces of up to 128 rows and two lane widths, no faster than
 *   bf16 at any batch: nothing fetched ahead, so latency-bound. An integer-op E4M3 decoder
 *   instead of the conversion instructions measured 10-20 % slower still.)
 *
 * Ring shape (measured, H200, hd 128, g 2, table below's method): the CTAs an SM holds matter
 *   more than the prefetch depth, because the per-piece barriers and softmax need other CTAs
 *   to cover them. µs at B = 128, ctx 576, bf16 / fp8: pieces of 8 row groups (64 bf16 rows,
 *   32 KB a stage), 3 stages (2 CTAs an SM): 122.9 / 83.2; 2 stages (3 an SM): 96.7 / 65.5;
 *   4 row groups (16 KB a stage), 4 stages: 112.0 / 71.3; 3 stages (4 an SM): 85.6 / 56.7;
 *   2 stages: 99.8 / 54.6 (bf16 uneven: 53.2 at B = 64 against 42.9 with 3); 2 row groups,
 *   3 or 4 stages: 90.0 / 66.2, 107.3 / 66.6. Hence 4 row groups, 3 stages for bf16 (48 KB)
 *   and 2 for fp8 (32 KB; 4 CTAs an SM either way, fp8 by its registers). Below B = 8 the
 *   bf16 slices are one or two pieces and the ring only adds its detour: B = 1, ctx 640: 6.26
 *   (registers) against 6.9-7.1 (ring); B = 2: 7.55 / 7.7-8.7; B = 8: 15.35 / 13.5, so
 *   PA_PIPE_MIN_B = 8. fp8 takes the ring at every batch (B = 1: 5.8 against 6.8 before).
 *   Summation order: the ring's bf16 pieces are 32 rows, the register kernel's 64, so the
 *   running softmax rescales at other rows and results differ in the last bits between the
 *   two kernels (tests and tolerances unchanged; rel L2 ≤ 3.3e-5 against the reference).
 *
 *   Measured (H200 141 GB, hd 128, Hq 16, KV 8, bs 16; graph of 20 launches / 20, K/V copies
 *   rotated past L2, median of 10; test_kernels_cuda_paged_attention_timing), µs per launch
 *   and GB/s of K+V, before (registers only) → after:
 *        B   ctx |  bf16 before → after (GB/s)  |  fp8 before → after (GB/s)
 *        1   640 |   6.28 →   6.26  (419)       |   6.82 →   5.80  (226)
 *        2   640 |   7.57 →   7.55  (695)       |   8.50 →   7.35  (357)
 *        8   640 |  15.35 →  13.51 (1552)       |  12.36 →  10.82  (969)
 *       32   576 |  27.08 →  24.86 (3037)       |  29.10 →  17.62 (2142)
 *       64   576 |  47.79 →  42.90 (3519)       |  48.81 →  27.96 (2700)
 *      128   576 |  92.48 →  85.43 (3535)       |  97.57 →  54.58 (2766)
 *      256   576 | 181.57 → 168.38 (3587)       | 194.92 → 106.65 (2832)
 *   bf16 now streams at ~3.5-3.6 of the H200's 4.8 TB/s (75 %), fp8 at 0.63-0.71 of bf16's
 *   time from B = 32. What is left is not the DRAM round trip but the CTA's serial per-piece
 *   work (3 barriers, the softmax warps) that 4 CTAs an SM cover only in part.
 */
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "fp8.cuh"
#include "mma.cuh"
#include "paged_attention.h"
#include "pdl.cuh"

namespace cg = cooperative_groups;

#define PA_THREADS 128
#define PA_WARPS (PA_THREADS / 32)
#define PA_MAX_CLUSTER 16   /* CTAs per (sequence, kv head), pa_plan's largest; > 8 is sm_90's
			     * non-portable cluster size */

static __device__ __forceinline__ float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

static __device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

static __device__ __forceinline__ void bf16x8_to_f32(uint4 u, float f[8])
{
	const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		float2 t = __bfloat1622float2(h[i]);
		f[2 * i] = t.x;
		f[2 * i + 1] = t.y;
	}
}

/* 16 E4M3 bytes (or, with N = 8, the first 8) to float, exactly. */
template <int N>
static __device__ __forceinline__ void fp8xN_to_f32(uint4 u, float f[N])
{
	const uint16_t *h = (const uint16_t *)&u;
#pragma unroll
	for (int i = 0; i < N / 2; i++) {
		float2 t = fp8x2_to_float2(h[i]);
		f[2 * i] = t.x;
		f[2 * i + 1] = t.y;
	}
}

/* A lane's EPL cache elements (a 16- or 8-byte vector in u) to float. */
template <bool FP8, int EPL>
static __device__ __forceinline__ void elems_to_f32(uint4 u, float f[EPL])
{
	if constexpr (FP8)
		fp8xN_to_f32<EPL>(u, f);
	else
		bf16x8_to_f32(u, f);
}

/* p's element in the shared memory of cluster CTA `rank` (DSMEM). 32-bit shared::cluster
 * addresses: cluster.map_shared_rank's 64-bit generic pointers cost registers enough to drop
 * a CTA per SM when the merge keeps 3·S loads in flight. */
static __device__ __forceinline__ float dsmem_ld(const float *p, unsigned rank)
{
	unsigned a = (unsigned)__cvta_generic_to_shared(p), r;
	float v;
	asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
	asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(r) : "memory");
	return v;
}

/* A 16-byte read-only load that stays where it is written: an asm volatile, so the compiler
 * neither sinks it below the PDL wait nor to its first use (it did sink the V loads past the
 * scores and softmax, costing a second DRAM round trip per piece). */
static __device__ __forceinline__ uint4 ld_nc(const uint4 *p)
{
	uint4 v;
	asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
		     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
		     : "l"(p));
	return v;
}

/* 8-byte read-only load, for the fp8 shape with 8 elements per lane (into u.x, u.y). */
static __device__ __forceinline__ uint4 ld_nc8(const uint2 *p)
{
	uint4 v = make_uint4(0, 0, 0, 0);
	asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];"
		     : "=r"(v.x), "=r"(v.y)
		     : "l"(p));
	return v;
}

/* Asynchronous copy of VB (16 or 8) bytes of global memory at src into shared memory at dst
 * (cp.async; 16 bytes bypass L1, 8 bytes may not), the K/V ring of the pipelined kernel. */
template <int VB>
static __device__ __forceinline__ void cp_async(void *dst, const void *src)
{
	const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
	if constexpr (VB == 16)
		asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src)
			     : "memory");
	else
		asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(d), "l"(src)
			     : "memory");
}


/* Cache element types of the kernel's instances: bf16 (16-byte lanes, 8 elements); fp8 with
 * 16-byte lanes (16 elements a lane, for g ≤ 2; 8-byte lanes of 8 elements above, where 16
 * queries and accumulators per head would not fit in registers). */
enum { PA_BF16 = 0, PA_FP8 = 1 };

/* The pipelined kernel (PIPE): pieces of PA_PIPE_U row groups, PA_STAGES of them (bf16;
 * PA_STAGES_FP8 for fp8) in a ring in shared memory: the piece being computed and the rest in
 * flight. Overridable for tuning builds only; the values are the measured choice (top of the
 * file). */
#ifndef PA_PIPE_U
#define PA_PIPE_U 4
#endif
#ifndef PA_STAGES
#define PA_STAGES 3
#endif
#ifndef PA_STAGES_FP8
#define PA_STAGES_FP8 2
#endif
/* CTAs per multiprocessor the fp8 instances are compiled for (__launch_bounds__'s minimum;
 * 1: the compiler's choice, 111 registers, which allows 4). Measured (H100, pa_timing, B = 128,
 * ctx 576): 1 → 64.2 us; 5 (96 registers) → 67.8; 6 (80, with spills) → 89.0. Nor did 3 fp8
 * stages (66.0) or pieces of 2 row groups with 3 stages (65.3) beat 2 stages of 4. */
#ifndef PA_FP8_MIN_CTAS
#define PA_FP8_MIN_CTAS 1
#endif
/* Smallest batch that takes the pipelined kernel with a bf16 cache (pa_pipe). */
#ifndef PA_PIPE_MIN_B
#define PA_PIPE_MIN_B 8
#endif

/* How a piece maps onto the CTA. A lane loads VB bytes of a row (EPL elements); row groups per
 * piece U: the K and V vectors a thread holds in registers at once (2·U of them), fewer when
 * the g queries and accumulators (2·EPL·GM registers) already take many. (The fp8 values of
 * U_REG and MAX_PIECE, and ld_nc8, serve a register-form fp8 kernel that the dispatch no longer
 * launches: kn_paged_attention_fp8_cuda always takes the ring. To be removed with it.)
 * PIPE: the pieces come from the shared-memory ring of NST stages, U = PA_PIPE_U row groups
 * (half that for g > 4), a stage of STAGE bytes (K then V, lane-major: the VB bytes of row
 * group u for thread t at (u·PA_THREADS + t)·VB), and the (warps, g, HD) reduction buffer
 * `red` reuses the ring after the last piece: DYN bytes of dynamic shared memory. */
template <int HD, int GM, int KT, bool PIPE = false>
struct pa_shape {
	static constexpr int ESZ = KT != PA_BF16 ? 1 : 2;    /* bytes per element */
	static constexpr int EPL =                           /* elements per lane and row */
		KT == PA_FP8 && GM > 2 ? 8 : 16 / ESZ;
	static constexpr int VB = EPL * ESZ;                 /* bytes per load: 16 or 8 */
	static constexpr int LPK = HD / EPL;             /* lanes per row: one load each */
	static constexpr int RPW = 32 / LPK;             /* rows per warp and row group */
	static constexpr int RPS = RPW * PA_WARPS;       /* rows per CTA and row group */
	static constexpr int U_REG = (GM <= 2 ? 8 : GM <= 4 ? 4 : 2) * (16 / VB);
	static constexpr int MAX_PIECE = KT != PA_BF16 ? 128 : 64;
	static constexpr int U_MAX = MAX_PIECE / RPS > 0 ? MAX_PIECE / RPS : 1;
	static constexpr int U_PIPE = GM <= 4 ? PA_PIPE_U : PA_PIPE_U / 2 > 0 ? PA_PIPE_U / 2 : 1;
	static constexpr int U = PIPE ? U_PIPE : U_REG < U_MAX ? U_REG : U_MAX;
	static constexpr int PIECE = U * RPS;            /* rows per piece */
	static constexpr int STAGE = 2 * U * PA_THREADS * VB;
	static constexpr int NST = KT == PA_BF16 ? PA_STAGES : PA_STAGES_FP8;   /* ring stages */
	static constexpr int RED = PA_WARPS * GM * HD * (int)sizeof(float);
	static constexpr int DYN = !PIPE ? 0 : NST * STAGE > RED ? NST * STAGE : RED;
};

/*
 * The cluster's merge (top of the file): every CTA holds its slice's unnormalised (g, HD) sum
 * in red[0 … g·HD), its running max in run_m and its sum of weights in run_l; the S CTAs each
 * write g·HD / S of the merged outputs, v_scale (fp8) applied before the single rounding.
 * Called by every thread of every CTA of the cluster. With S = 1 (B ≥ 64) the same arithmetic
 * needs no DSMEM and no cluster barrier, only the CTA's: measured (H100, hd 128, g 2, ctx 576)
 * B = 64 / 128 / 256 fp8 32.1 / 63.9 / 123.7 → 30.6 / 60.8 / 116.4 us, bf16 109.8 → 107.4 at
 * 128.
 */
template <int HD, int GM, bool FP8>
static __device__ __forceinline__ void pa_cluster_merge(__nv_bfloat16 *out, float *red,
							float *run_m, float *run_l, float *wn,
							int Hq, int g, int kvh, int b, float v_scale)
{
	cg::cluster_group cluster = cg::this_cluster();
	const int split = blockIdx.x, n_split = gridDim.x;
	if (n_split == 1) {   /* below with S = 1: w = 1 or 0, L = l, out = acc · (1/L) */
		__syncthreads();
		for (int i = threadIdx.x; i < g * HD; i += PA_THREADS) {
			const int j = i / HD;
			const float L = run_m[j] > -INFINITY ? run_l[j] : 0.f;
			float v = red[i] * (L > 0.f ? 1.f / L : 0.f);
			if constexpr (FP8)
				v *= v_scale;
			out[((long)b * Hq + (long)kvh * g + j) * HD + i % HD] = __float2bfloat16(v);
		}
		return;
	}
	/* merge the cluster's partial results (release/acquire: the barrier orders the writes
	 * above before the other CTAs' reads) */
	cluster.sync();
	/* Work item (o, x), o < g·HD an output element, x < S a CTA: items split·g·HD … + g·HD − 1
	 * in order, so the S items of an o sit in S consecutive lanes (S a power of two ≤ 16, g·HD
	 * a multiple of 32). The acc loads go out first (one DSMEM round trip), then the weights. */
	const int S = n_split;
	constexpr int ITEMS = (GM * HD + PA_THREADS - 1) / PA_THREADS;
	float av[ITEMS];
#pragma unroll
	for (int k = 0; k < ITEMS; k++) {
		const int i = k * PA_THREADS + threadIdx.x;
		if (i < g * HD) {
			const int it = split * g * HD + i;
			av[k] = dsmem_ld(red + it / S, it % S);
		}
	}
	/* w (j, x) = exp(m_x − M) / L for query head j: thread t = j·S + x, S-lane groups */
	{
		const int t = threadIdx.x, j = t / S, x = t % S;
		float m = -INFINITY, l = 0.f;
		if (t < g * S) {
			m = dsmem_ld(run_m + j, x);
			l = dsmem_ld(run_l + j, x);
		}
		float M = m;
		for (int o = S / 2; o > 0; o >>= 1)
			M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
		const float w = M > -INFINITY ? __expf(m - M) : 0.f;   /* 0: empty slice, or ctx 0 */
		float L = w * l;
		for (int o = S / 2; o > 0; o >>= 1)
			L += __shfl_xor_sync(0xffffffffu, L, o);
		if (t < g * S)
			wn[t] = L > 0.f ? w / L : 0.f;   /* L ≥ 1 unless ctx is 0 */
	}
	__syncthreads();
#pragma unroll
	for (int k = 0; k < ITEMS; k++) {
		const int i = k * PA_THREADS + threadIdx.x;
		if (i >= g * HD)   /* warp-uniform: g·HD is a multiple of 32 */
			continue;
		const int it = split * g * HD + i, o = it / S, x = it % S, j = o / HD;
		float v = av[k] * wn[j * S + x];
		for (int d = S / 2; d > 0; d >>= 1)
			v += __shfl_xor_sync(0xffffffffu, v, d);
		if constexpr (FP8)
			v *= v_scale;
		if (x == 0)
			out[((long)b * Hq + (long)kvh * g + j) * HD + o % HD] = __float2bfloat16(v);
	}
	cluster.sync();   /* keep this CTA's shared memory until every reader is done */
}

/*
 * HD: head dim; GM: a compile-time bound on g (register arrays are GM long, heads j ≥ g are
 * skipped); KT: the cache type (the lane width follows, pa_shape); PIPE: the K/V rows stream
 * through the shared-memory ring instead of registers. scale_k multiplies the dot
 * products (scale, or scale·k_scale for fp8), v_scale the merged output (fp8 only). Static
 * shared memory, plus pa_shape::DYN bytes of dynamic for PIPE; see the top of the file.
 */
template <int HD, int GM, int KT, bool PIPE>
static __global__ void __launch_bounds__(PA_THREADS, KT == PA_FP8 ? PA_FP8_MIN_CTAS : 1)
pa_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *q, const uint8_t *k_cache,
	  const uint8_t *v_cache, const int32_t *block_table, const int32_t *ctx_len, int Hq, int KV,
	  int g, int log2_bs, int max_blocks_per_seq, float scale_k, float v_scale)
{
	constexpr bool FP8 = KT != PA_BF16;
	typedef pa_shape<HD, GM, KT, PIPE> sh;
	constexpr int LPK = sh::LPK, RPW = sh::RPW, RPS = sh::RPS, U = sh::U, PIECE = sh::PIECE;
	constexpr int EPL = sh::EPL, VB = sh::VB, STAGE = sh::STAGE, NST = sh::NST;
	constexpr int ROW_BYTES = HD * sh::ESZ;
	__shared__ float s[GM * PIECE];                        /* (g, PIECE) scores, then weights */
	/* (warps, g, HD); [0] the result. PIPE: in the dynamic shared memory, over the ring */
	__shared__ __align__(16) float red_s[PIPE ? 4 : PA_WARPS * GM * HD];
	extern __shared__ __align__(16) unsigned char pa_ring[];
	float *const red = PIPE ? (float *)pa_ring : red_s;
	__shared__ float run_m[GM], run_l[GM], alpha[GM];
	__shared__ float wn[GM * PA_MAX_CLUSTER];               /* merge weights (g, S) */

	const int split = blockIdx.x, n_split = gridDim.x, kvh = blockIdx.y, b = blockIdx.z;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int sub = lane % LPK;                       /* which EPL dims of the row this lane holds */
	const int r_lane = warp * RPW + lane / LPK;       /* this lane's row in a row group */
	const int bs_mask = (1 << log2_bs) - 1;

	/* ctx_len and the block table may be read before the wait (top of the file) */
	int ctx = ctx_len[b];
	const int cap = max_blocks_per_seq << log2_bs;
	ctx = ctx < 0 ? 0 : ctx > cap ? cap : ctx;
	const int per = (ctx + n_split - 1) / n_split;
	const int lo = min(ctx, split * per), hi = min(ctx, lo + per);
	const int32_t *bt = block_table + (long)b * max_blocks_per_seq;
	if (threadIdx.x < GM) {
		run_m[threadIdx.x] = -INFINITY;
		run_l[threadIdx.x] = 0.f;
	}
	/* byte offset of this lane's vector of position p in k_cache / v_cache (pool block blk) */
	auto row_off = [&](int blk, int p) -> long {
		return ((((long)blk << log2_bs) + (p & bs_mask)) * KV + kvh) * ROW_BYTES + sub * VB;
	};

	/* K and V of the piece's rows r = u·RPS + r_lane with pmin ≤ start + r < pmax, r < n */
	uint4 kv[U], vv[U];
	auto issue = [&](int start, int n, int pmin, int pmax) {
		/* the block-table reads first, all in flight together, then the rows they name */
		int blk[U];
		bool ok[U];
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int r = u * RPS + r_lane, p = start + r;
			ok[u] = r < n && p >= pmin && p < pmax;
			blk[u] = ok[u] ? bt[p >> log2_bs] : 0;
		}
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int p = start + u * RPS + r_lane;
			if (ok[u]) {
				const long off = row_off(blk[u], p);
				if constexpr (VB == 16) {
					kv[u] = ld_nc((const uint4 *)(k_cache + off));
					vv[u] = ld_nc((const uint4 *)(v_cache + off));
				} else {
					kv[u] = ld_nc8((const uint2 *)(k_cache + off));
					vv[u] = ld_nc8((const uint2 *)(v_cache + off));
				}
			}
		}
	};
	auto clear = [&]() {
#pragma unroll
		for (int u = 0; u < U; u++) {
			kv[u] = make_uint4(0, 0, 0, 0);
			vv[u] = make_uint4(0, 0, 0, 0);
		}
	};

	/* PIPE: piece i (rows lo + i·PIECE …) lives in ring stage i % NST, its K at the stage's
	 * start and its V STAGE/2 on; this thread's vector of row group u at (u·PA_THREADS + t)·VB.
	 * Each thread copies and reads only its own vectors, so cp.async.wait_group alone orders a
	 * stage's copy before its reads, and the piece loop's last barrier orders the reads of
	 * stage i % NST before its refill with piece i + NST (issued in iteration i + 1). */
	unsigned char *const ring = pa_ring + threadIdx.x * VB;
	auto bt_read = [&](int i, int blk[U]) {   /* the pool blocks of piece i's rows */
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int p = lo + i * PIECE + u * RPS + r_lane;
			blk[u] = p < hi ? __ldg(bt + (p >> log2_bs)) : 0;
		}
	};
	auto issue_ring = [&](int i, const int blk[U], int pmax) {   /* rows p < pmax, one group */
		unsigned char *st = ring + (i % NST) * STAGE;
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int p = lo + i * PIECE + u * RPS + r_lane;
			if (p < pmax) {
				const long off = row_off(blk[u], p);
				cp_async<VB>(st + u * PA_THREADS * VB, k_cache + off);
				cp_async<VB>(st + STAGE / 2 + u * PA_THREADS * VB, v_cache + off);
			}
		}
		cp_async_commit();
	};
	int blk_next[U];   /* PIPE: the pool blocks of the next piece to issue, read ahead */

	if constexpr (PIPE) {
		/* the first NST − 1 pieces' cached rows (not written this step), one group each */
		int blk0[NST - 1][U];
#pragma unroll
		for (int i = 0; i < NST - 1; i++)
			bt_read(i, blk0[i]);
#pragma unroll
		for (int i = 0; i < NST - 1; i++)
			issue_ring(i, blk0[i], min(hi, ctx - 1));
		bt_read(NST - 1, blk_next);
	} else {
		clear();
		issue(lo, min(PIECE, hi - lo), 0, ctx - 1);   /* cached rows: not written this step */
	}
	kn_pdl_wait();
	kn_pdl_trigger();

	/* this lane's EPL dims of each of the group's queries */
	float qf[GM][EPL];
#pragma unroll
	for (int j = 0; j < GM; j++) {
		if (j < g) {
			const uint4 *qv = (const uint4 *)(q + ((long)b * Hq + (long)kvh * g + j) * HD);
#pragma unroll
			for (int c = 0; c < EPL / 8; c++)
				bf16x8_to_f32(qv[sub * (EPL / 8) + c], qf[j] + 8 * c);
		} else {
#pragma unroll
			for (int i = 0; i < EPL; i++)
				qf[j][i] = 0.f;
		}
	}
	/* the new position, written by the predecessor */
	if constexpr (PIPE) {
		/* if its piece is already in the ring: this thread's vectors of it, by plain loads
		 * and stores into the place the ring's copy left out (pieces ≥ NST − 1 get it from
		 * issue_ring, after the wait) */
		const int r = ctx - 1 - lo;
		if (ctx >= 1 && r >= 0 && ctx - 1 < hi && r < (NST - 1) * PIECE &&
		    r % RPS == r_lane) {
			const int i = r / PIECE, u = (r % PIECE) / RPS;
			const long off = row_off(bt[(ctx - 1) >> log2_bs], ctx - 1);
			unsigned char *st = ring + i * STAGE + u * PA_THREADS * VB;
			if constexpr (VB == 16) {
				*(uint4 *)st = ld_nc((const uint4 *)(k_cache + off));
				*(uint4 *)(st + STAGE / 2) = ld_nc((const uint4 *)(v_cache + off));
			} else {
				*(uint2 *)st = *(const uint2 *)(k_cache + off);
				*(uint2 *)(st + STAGE / 2) = *(const uint2 *)(v_cache + off);
			}
		}
	} else {
		issue(lo, min(PIECE, hi - lo), ctx - 1, ctx);
	}
	float acc[GM][EPL];
#pragma unroll
	for (int j = 0; j < GM; j++)
#pragma unroll
		for (int i = 0; i < EPL; i++)
			acc[j][i] = 0.f;

	for (int start = lo, i = 0; start < hi; start += PIECE, i++) {
		const int n = min(PIECE, hi - start);
		const unsigned char *st = ring + (i % NST) * STAGE;
		if constexpr (PIPE) {
			/* piece i + NST − 1 into the stage piece i − 1 left (every thread is past
			 * its reads: the barrier at the end of the loop), the block table a piece
			 * ahead; then wait for piece i (all but the NST − 1 newest groups) */
			issue_ring(i + NST - 1, blk_next, hi);
			bt_read(i + NST, blk_next);
			cp_async_wait<NST - 1>();
#pragma unroll
			for (int u = 0; u < U; u++) {
				if constexpr (VB == 16) {
					kv[u] = *(const uint4 *)(st + u * PA_THREADS * VB);
				} else {
					const uint2 t = *(const uint2 *)(st + u * PA_THREADS * VB);
					kv[u] = make_uint4(t.x, t.y, 0, 0);
				}
			}
		} else if (start != lo) {
			clear();
			issue(start, n, 0, ctx);
		}
		/* scores; every lane takes part in the shuffles (the loops are compile-time) */
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int r = u * RPS + r_lane;
			float kf[EPL];
			elems_to_f32<FP8, EPL>(kv[u], kf);
#pragma unroll
			for (int j = 0; j < GM; j++) {
				float d = 0.f;
#pragma unroll
				for (int i = 0; i < EPL; i++)
					d = fmaf(qf[j][i], kf[i], d);
#pragma unroll
				for (int o = LPK / 2; o > 0; o >>= 1)
					d += __shfl_xor_sync(0xffffffffu, d, o);
				if (j < g && sub == 0 && r < n)
					s[j * PIECE + r] = d * scale_k;
			}
		}
		__syncthreads();

		/* the running softmax statistics, one warp per query head */
		for (int j = warp; j < g; j += PA_WARPS) {
			float *sj = s + j * PIECE;
			float m = -INFINITY;
			for (int r = lane; r < n; r += 32)
				m = fmaxf(m, sj[r]);
			m = warp_max(m);
			const float mo = run_m[j], M = fmaxf(mo, m);
			float l = 0.f;
			for (int r = lane; r < n; r += 32) {
				float e = __expf(sj[r] - M);
				sj[r] = e;
				l += e;
			}
			l = warp_sum(l);
			__syncwarp();   /* every lane has read run_m[j] */
			if (lane == 0) {
				const float a = __expf(mo - M);   /* 0 for the first piece */
				run_m[j] = M;
				run_l[j] = run_l[j] * a + l;
				alpha[j] = a;
			}
		}
		__syncthreads();

		/* P·V: each lane accumulates its EPL dims over the rows of its lane group */
#pragma unroll
		for (int j = 0; j < GM; j++) {
			if (j >= g)
				continue;
			const float a = alpha[j];
#pragma unroll
			for (int i = 0; i < EPL; i++)
				acc[j][i] *= a;
		}
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int r = u * RPS + r_lane;
			if (r >= n)
				continue;
			if constexpr (PIPE) {
				const unsigned char *sv = st + STAGE / 2 + u * PA_THREADS * VB;
				if constexpr (VB == 16) {
					vv[u] = *(const uint4 *)sv;
				} else {
					const uint2 t = *(const uint2 *)sv;
					vv[u] = make_uint4(t.x, t.y, 0, 0);
				}
			}
			float vf[EPL];
			elems_to_f32<FP8, EPL>(vv[u], vf);
#pragma unroll
			for (int j = 0; j < GM; j++) {
				if (j >= g)
					continue;
				const float w = s[j * PIECE + r];
#pragma unroll
				for (int i = 0; i < EPL; i++)
					acc[j][i] = fmaf(w, vf[i], acc[j][i]);
			}
		}
		__syncthreads();   /* s and alpha are rewritten by the next piece, PIPE: the stage */
	}
	if constexpr (PIPE)
		cp_async_wait<0>();   /* nothing is left in flight (later groups are empty): red may
				       * reuse the ring, whose last reads the loop's barrier ended */
	/* across the lane groups of the warp (lanes with equal sub hold the same dims) ... */
#pragma unroll
	for (int j = 0; j < GM; j++)
#pragma unroll
		for (int i = 0; i < EPL; i++)
#pragma unroll
			for (int o = LPK; o < 32; o <<= 1)
				acc[j][i] += __shfl_xor_sync(0xffffffffu, acc[j][i], o);
	/* ... then across the warps, into red's first (g, HD) */
	if (lane < LPK) {
#pragma unroll
		for (int j = 0; j < GM; j++) {
			if (j >= g)
				continue;
			float4 *dst = (float4 *)(red + ((long)warp * GM + j) * HD + sub * EPL);
#pragma unroll
			for (int c = 0; c < EPL / 4; c++)
				dst[c] = make_float4(acc[j][4 * c], acc[j][4 * c + 1],
						     acc[j][4 * c + 2], acc[j][4 * c + 3]);
		}
	}
	__syncthreads();
	for (int t = threadIdx.x; t < g * HD; t += PA_THREADS) {
		float a = red[t];   /* warp 0's, at (j, d) = t */
#pragma unroll
		for (int w = 1; w < PA_WARPS; w++)
			a += red[(long)w * GM * HD + t];
		red[t] = a;
	}

	pa_cluster_merge<HD, GM, FP8>(out, red, run_m, run_l, wn, Hq, g, kvh, b, v_scale);
}

/* CTAs per (sequence, kv head) for a batch of B, a power of two (the merge's lanes). Measured
 * on an H100 (hd 128, g 2, ctx 640, graph of launches): every split costs a CTA's fixed
 * latency and the merge, so splitting pays only while the grid is far from filling the GPU:
 * 16 for B ≤ 2, then 8, 4, 2 and, from B = 64 (512 CTAs for KV 8), 1. */
static int pa_plan(int B)
{
	return B <= 2 ? 16 : B <= 4 ? 8 : B <= 8 ? 4 : B < 64 ? 2 : 1;
}

/* The pipelined kernel (K/V through the shared-memory ring) for a bf16 cache and a batch of
 * B. Below PA_PIPE_MIN_B the slices are one or two pieces, nothing is left to overlap, and
 * the register kernel's shorter path from load to use (no shared-memory hop, pieces of 64
 * rows) keeps the batch-1 latency (measured, top of the file). fp8 always takes the ring. */
static bool pa_pipe(int B)
{
	return B >= PA_PIPE_MIN_B;
}

extern "C" size_t kn_paged_attention_workspace_bytes(int B, int Hq, int hd, int max_ctx)
{
	if (B <= 0 || Hq <= 0 || hd <= 0 || max_ctx <= 0)
		return 0;
	/* The kernel keeps its partial results in shared memory and uses no workspace; a token
	 * size keeps the callers' allocation and the size check meaningful. */
	return 256;
}

template <int HD, int GM, int KT, bool PIPE>
static void pa_launch(uint16_t *out, const uint16_t *q, const void *k_cache,
		      const void *v_cache, const int32_t *block_table, const int32_t *ctx_len,
		      int B, int Hq, int KV, int log2_bs, int max_blocks_per_seq, float scale_k,
		      float v_scale, cudaStream_t stream)
{
	const int g = Hq / KV, n_split = pa_plan(B);
	void (*kernel)(__nv_bfloat16 *, const __nv_bfloat16 *, const uint8_t *, const uint8_t *,
		       const int32_t *, const int32_t *, int, int, int, int, int, float, float) =
		pa_kernel<HD, GM, KT, PIPE>;
	constexpr int DYN = pa_shape<HD, GM, KT, PIPE>::DYN;
	/* clusters over 8 CTAs need the attribute, set once per device and instance (host work
	 * that need not repeat on every decode step) */
	static unsigned long long non_portable_set;   /* bit d: device d */
	int dev = 0;
	if (n_split > 8 && cudaGetDevice(&dev) == cudaSuccess &&
	    (dev >= 64 || !(non_portable_set >> dev & 1))) {
		CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed,
						1));
		if (dev < 64)
			non_portable_set |= 1ull << dev;
	}
	/* the ring's dynamic shared memory (over 48 KB needs the opt-in), with the most of the
	 * SM's unified L1 given to shared memory (the K/V loads bypass L1), likewise once */
	static unsigned long long dyn_set;
	if (PIPE && cudaGetDevice(&dev) == cudaSuccess && (dev >= 64 || !(dyn_set >> dev & 1))) {
		CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
						DYN));
		CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
						(int)cudaSharedmemCarveoutMaxShared));
		if (dev < 64)
			dyn_set |= 1ull << dev;
	}
	cudaLaunchAttribute attr[2];
	attr[0].id = cudaLaunchAttributeClusterDimension;
	attr[0].val.clusterDim.x = n_split;
	attr[0].val.clusterDim.y = 1;
	attr[0].val.clusterDim.z = 1;
	attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
	attr[1].val.programmaticStreamSerializationAllowed = kn_pdl_enabled();
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = dim3(n_split, KV, B);
	cfg.blockDim = dim3(PA_THREADS);
	cfg.dynamicSmemBytes = DYN;
	cfg.stream = stream;
	cfg.attrs = attr;
	cfg.numAttrs = 2;
	CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, (__nv_bfloat16 *)out, (const __nv_bfloat16 *)q,
				      (const uint8_t *)k_cache, (const uint8_t *)v_cache, block_table,
				      ctx_len, Hq, KV, g, log2_bs, max_blocks_per_seq, scale_k,
				      v_scale));
	KN_CHECK_LAUNCH();
}

template <int HD, int KT, bool PIPE>
static int pa_dispatch_g(uint16_t *out, const uint16_t *q, const void *k_cache,
			 const void *v_cache, const int32_t *block_table, const int32_t *ctx_len,
			 int B, int Hq, int KV, int log2_bs, int max_blocks_per_seq, float scale_k,
			 float v_scale, cudaStream_t stream)
{
	const int g = Hq / KV;
#define PA_G(GM)                                                                               \
	pa_launch<HD, GM, KT, PIPE>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV, log2_bs, \
			       max_blocks_per_seq, scale_k, v_scale, stream)
	if (g == 1)
		PA_G(1);
	else if (g == 2)
		PA_G(2);
	else if (g <= 4)
		PA_G(4);
	else if (g <= 8)
		PA_G(8);
	else
		return -1;
#undef PA_G
	return 0;
}

/* Shape checks shared by both cache types, then the instance for hd and g. */
template <int KT, bool PIPE>
static int pa_run(uint16_t *out, const uint16_t *q, const void *k_cache, const void *v_cache,
		  const int32_t *block_table, const int32_t *ctx_len, int B, int Hq, int KV, int hd,
		  int block_size, int max_blocks_per_seq, float scale_k, float v_scale,
		  void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
	if (B <= 0)
		return 0;
	if (Hq <= 0 || KV <= 0 || Hq % KV != 0 || Hq / KV > 8 || max_blocks_per_seq <= 0 ||
	    block_size <= 0 || (block_size & (block_size - 1)) != 0 || B > 65535 || KV > 65535)
		return -1;
	if ((((uintptr_t)q | (uintptr_t)k_cache | (uintptr_t)v_cache) & 15) != 0)
		return -1;
	int log2_bs = 0;
	while ((1 << log2_bs) < block_size)
		log2_bs++;
	if ((long)max_blocks_per_seq << log2_bs > (1L << 30))
		return -1;
	int cap = max_blocks_per_seq << log2_bs;
	if (!workspace || workspace_bytes < kn_paged_attention_workspace_bytes(B, Hq, hd, cap))
		return -1;
#define PA_HD(HD)                                                                        \
	pa_dispatch_g<HD, KT, PIPE>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV, \
			       log2_bs, max_blocks_per_seq, scale_k, v_scale, stream)
	switch (hd) {
	case 32:
		return PA_HD(32);
	case 64:
		return PA_HD(64);
	case 128:
		return PA_HD(128);
	case 256:
		return PA_HD(256);
	default:
		return -1;
	}
#undef PA_HD
}

extern "C" int kn_paged_attention_cuda(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
				       const uint16_t *v_cache, const int32_t *block_table,
				       const int32_t *ctx_len, int B, int Hq, int KV, int hd,
				       int block_size, int max_blocks_per_seq, float scale,
				       void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
	if (pa_pipe(B))
		return pa_run<PA_BF16, true>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq,
					     KV, hd, block_size, max_blocks_per_seq, scale, 1.0f,
					     workspace, workspace_bytes, stream);
	return pa_run<PA_BF16, false>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV,
				      hd, block_size, max_blocks_per_seq, scale, 1.0f, workspace,
				      workspace_bytes, stream);
}

/* The score factor scale·k_scale is one fp32 product, taken here once. */
extern "C" int kn_paged_attention_fp8_cuda(uint16_t *out, const uint16_t *q,
					   const uint8_t *k_cache, const uint8_t *v_cache,
					   const int32_t *block_table, const int32_t *ctx_len, int B,
					   int Hq, int KV, int hd, int block_size,
					   int max_blocks_per_seq, float scale, float k_scale,
					   float v_scale, void *workspace, size_t workspace_bytes,
					   cudaStream_t stream)
{
	/* as kn_prefill_attention_fp8_cuda: scales positive, the folded score scale finite */
	const float sk = scale * k_scale;
	if (!(scale > 0.f) || !(k_scale > 0.f) || !(v_scale > 0.f) || !(sk > 0.f) || !isfinite(sk) ||
	    !isfinite(v_scale))
		return -1;
	return pa_run<PA_FP8, true>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV,
				    hd, block_size, max_blocks_per_seq, scale * k_scale, v_scale,
				    workspace, workspace_bytes, stream);
}
