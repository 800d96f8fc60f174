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
 *   A CTA walks its slice in pieces of PIECE rows (64 for hd 128, g ≤ 2). For a piece every
 *   thread first reads the block-table entries of its rows, then issues all its K and V loads
 *   (U 16-byte vectors of each, in registers), so a piece costs one DRAM round trip instead of
 *   one per row group:
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
 *   the merge used to be a separate launch and a drain between the two.
 *
 * PDL (pdl.cuh): before griddepcontrol.wait a CTA reads ctx_len, the block table and the K/V
 *   rows of its first piece at positions < ctx − 1, overlapping those DRAM round trips with
 *   the predecessor (qk_norm_rope) instead of following it. That is safe because:
 *     - ctx_len and block_table come from the step's input upload (text_cuda.c stage_upload, a
 *       cudaMemcpyAsync before the step's first kernel; no kernel writes them), and a kernel
 *       cannot start early across a memcpy;
 *     - the only cache slot written in this step for sequence b is its new position ctx − 1
 *       (qk_norm_rope, the predecessor): positions < ctx − 1 were written by earlier steps.
 *   q and the row at ctx − 1 are read after the wait. Padded rows of a graph (ctx 1, block 0)
 *   read only position 0 = ctx − 1, so also after the wait.
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
 *   memory per CTA (static): s (GM, PIECE) + red (4 warps, GM, hd) + 3·GM fp32, at most 33 KB.
 *   Long contexts at small batch walk ⌈ctx/(S·PIECE)⌉ pieces in series per CTA.
 */
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
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

/* Row groups per piece: the K and V vectors a thread holds in registers at once (2·U uint4),
 * fewer when the g queries and accumulators (16·GM registers) already take many. */
template <int HD, int GM>
struct pa_shape {
	static constexpr int LPK = HD / 8;               /* lanes per row: one 16-byte load each */
	static constexpr int RPW = 32 / LPK;             /* rows per warp and row group */
	static constexpr int RPS = RPW * PA_WARPS;       /* rows per CTA and row group */
	static constexpr int U_REG = GM <= 2 ? 8 : GM <= 4 ? 4 : 2;
	static constexpr int U_MAX = 64 / RPS > 0 ? 64 / RPS : 1;
	static constexpr int U = U_REG < U_MAX ? U_REG : U_MAX;
	static constexpr int PIECE = U * RPS;            /* rows per piece */
};

/*
 * HD: head dim; GM: a compile-time bound on g (register arrays are GM long, heads j ≥ g are
 * skipped). Static shared memory, see the top of the file.
 */
template <int HD, int GM>
static __global__ void __launch_bounds__(PA_THREADS)
pa_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *q, const uint4 *k_cache,
	  const uint4 *v_cache, const int32_t *block_table, const int32_t *ctx_len, int Hq, int KV,
	  int g, int log2_bs, int max_blocks_per_seq, float scale)
{
	typedef pa_shape<HD, GM> sh;
	constexpr int LPK = sh::LPK, RPW = sh::RPW, RPS = sh::RPS, U = sh::U, PIECE = sh::PIECE;
	constexpr int ROW_VECS = HD / 8;   /* uint4 per row */
	__shared__ float s[GM * PIECE];                        /* (g, PIECE) scores, then weights */
	__shared__ __align__(16) float red[PA_WARPS * GM * HD]; /* (warps, g, HD); [0] the result */
	__shared__ float run_m[GM], run_l[GM], alpha[GM];
	__shared__ float wn[GM * PA_MAX_CLUSTER];               /* merge weights (g, S) */

	cg::cluster_group cluster = cg::this_cluster();
	const int split = blockIdx.x, n_split = gridDim.x, kvh = blockIdx.y, b = blockIdx.z;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int sub = lane % LPK;                       /* which 8 dims of the row this lane holds */
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
				long off = ((((long)blk[u] << log2_bs) + (p & bs_mask)) * KV + kvh) *
					   ROW_VECS + sub;
				kv[u] = ld_nc(k_cache + off);
				vv[u] = ld_nc(v_cache + off);
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
	clear();
	issue(lo, min(PIECE, hi - lo), 0, ctx - 1);   /* cached rows: not written this step */
	kn_pdl_wait();
	kn_pdl_trigger();

	/* this lane's 8 dims of each of the group's queries */
	float qf[GM][8];
#pragma unroll
	for (int j = 0; j < GM; j++) {
		if (j < g) {
			const uint4 *qv = (const uint4 *)(q + ((long)b * Hq + (long)kvh * g + j) * HD);
			bf16x8_to_f32(qv[sub], qf[j]);
		} else {
#pragma unroll
			for (int i = 0; i < 8; i++)
				qf[j][i] = 0.f;
		}
	}
	issue(lo, min(PIECE, hi - lo), ctx - 1, ctx); /* the new position, written by the predecessor */
	float acc[GM][8];
#pragma unroll
	for (int j = 0; j < GM; j++)
#pragma unroll
		for (int i = 0; i < 8; i++)
			acc[j][i] = 0.f;

	for (int start = lo; start < hi; start += PIECE) {
		const int n = min(PIECE, hi - start);
		if (start != lo) {
			clear();
			issue(start, n, 0, ctx);
		}
		/* scores; every lane takes part in the shuffles (the loops are compile-time) */
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int r = u * RPS + r_lane;
			float kf[8];
			bf16x8_to_f32(kv[u], kf);
#pragma unroll
			for (int j = 0; j < GM; j++) {
				float d = 0.f;
#pragma unroll
				for (int i = 0; i < 8; i++)
					d = fmaf(qf[j][i], kf[i], d);
#pragma unroll
				for (int o = LPK / 2; o > 0; o >>= 1)
					d += __shfl_xor_sync(0xffffffffu, d, o);
				if (j < g && sub == 0 && r < n)
					s[j * PIECE + r] = d * scale;
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

		/* P·V: each lane accumulates its 8 dims over the rows of its lane group */
#pragma unroll
		for (int j = 0; j < GM; j++) {
			if (j >= g)
				continue;
			const float a = alpha[j];
#pragma unroll
			for (int i = 0; i < 8; i++)
				acc[j][i] *= a;
		}
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int r = u * RPS + r_lane;
			if (r >= n)
				continue;
			float vf[8];
			bf16x8_to_f32(vv[u], vf);
#pragma unroll
			for (int j = 0; j < GM; j++) {
				if (j >= g)
					continue;
				const float w = s[j * PIECE + r];
#pragma unroll
				for (int i = 0; i < 8; i++)
					acc[j][i] = fmaf(w, vf[i], acc[j][i]);
			}
		}
		__syncthreads();   /* s and alpha are rewritten by the next piece */
	}

	/* across the lane groups of the warp (lanes with equal sub hold the same dims) ... */
#pragma unroll
	for (int j = 0; j < GM; j++)
#pragma unroll
		for (int i = 0; i < 8; i++)
#pragma unroll
			for (int o = LPK; o < 32; o <<= 1)
				acc[j][i] += __shfl_xor_sync(0xffffffffu, acc[j][i], o);
	/* ... then across the warps, into red's first (g, HD) */
	if (lane < LPK) {
#pragma unroll
		for (int j = 0; j < GM; j++) {
			if (j >= g)
				continue;
			float4 *dst = (float4 *)(red + ((long)warp * GM + j) * HD + sub * 8);
			dst[0] = make_float4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
			dst[1] = make_float4(acc[j][4], acc[j][5], acc[j][6], acc[j][7]);
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
		if (x == 0)
			out[((long)b * Hq + (long)kvh * g + j) * HD + o % HD] = __float2bfloat16(v);
	}
	cluster.sync();   /* keep this CTA's shared memory until every reader is done */
}

/* CTAs per (sequence, kv head) for a batch of B, a power of two (the merge's lanes). Measured
 * on an H100 (hd 128, g 2, ctx 640, graph of launches): every split costs a CTA's fixed
 * latency and the merge, so splitting pays only while the grid is far from filling the GPU:
 * 16 for B ≤ 2, then 8, 4, 2 and, from B = 64 (512 CTAs for KV 8), 1. */
static int pa_plan(int B)
{
	return B <= 2 ? 16 : B <= 4 ? 8 : B <= 8 ? 4 : B < 64 ? 2 : 1;
}

extern "C" size_t kn_paged_attention_workspace_bytes(int B, int Hq, int hd, int max_ctx)
{
	if (B <= 0 || Hq <= 0 || hd <= 0 || max_ctx <= 0)
		return 0;
	/* The kernel keeps its partial results in shared memory and uses no workspace; a token
	 * size keeps the callers' allocation and the size check meaningful. */
	return 256;
}

template <int HD, int GM>
static void pa_launch(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
		      const uint16_t *v_cache, const int32_t *block_table, const int32_t *ctx_len,
		      int B, int Hq, int KV, int log2_bs, int max_blocks_per_seq, float scale,
		      cudaStream_t stream)
{
	const int g = Hq / KV, n_split = pa_plan(B);
	void (*kernel)(__nv_bfloat16 *, const __nv_bfloat16 *, const uint4 *, const uint4 *,
		       const int32_t *, const int32_t *, int, int, int, int, int, float) =
		pa_kernel<HD, GM>;
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
	cfg.dynamicSmemBytes = 0;
	cfg.stream = stream;
	cfg.attrs = attr;
	cfg.numAttrs = 2;
	CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, (__nv_bfloat16 *)out, (const __nv_bfloat16 *)q,
				      (const uint4 *)k_cache, (const uint4 *)v_cache, block_table,
				      ctx_len, Hq, KV, g, log2_bs, max_blocks_per_seq, scale));
	KN_CHECK_LAUNCH();
}

template <int HD>
static int pa_dispatch_g(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			 const uint16_t *v_cache, const int32_t *block_table, const int32_t *ctx_len,
			 int B, int Hq, int KV, int log2_bs, int max_blocks_per_seq, float scale,
			 cudaStream_t stream)
{
	const int g = Hq / KV;
#define PA_G(GM)                                                                            \
	pa_launch<HD, GM>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV, log2_bs, \
			  max_blocks_per_seq, scale, stream)
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

extern "C" int kn_paged_attention_cuda(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
				       const uint16_t *v_cache, const int32_t *block_table,
				       const int32_t *ctx_len, int B, int Hq, int KV, int hd,
				       int block_size, int max_blocks_per_seq, float scale,
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
#define PA_HD(HD)                                                                          \
	pa_dispatch_g<HD>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV, log2_bs, \
			  max_blocks_per_seq, scale, stream)
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
