/*
 * paged_attention CUDA kernels (shapes, pool layout, formula and limits in paged_attention.h;
 * reference kn_paged_attention_ref).
 *
 * Split-KV in two launches:
 *
 *   1. pa_chunk_kernel, grid (n_split, KV, B), 128 threads. The context of sequence b is cut
 *      into chunks of `chunk` positions; CTA (split x, kv head, b) takes chunks x, x + n_split,
 *      x + 2·n_split, … and computes all g query heads of its kv head, so each K and V row is
 *      read from device memory once per group. Per chunk:
 *        scores: a K row of hd bf16 is hd/8 lanes × one 16-byte load, so a warp reads 32/(hd/8)
 *                rows at a time (hd 128: two rows, 256 contiguous bytes each), UNROLL row
 *                groups in flight per thread; the dot products with the g queries (held in
 *                registers, fp32) are reduced across the row's lanes with shuffles and land
 *                in shared memory, s (g, chunk) fp32, already times scale.
 *        softmax: one warp per query head: the chunk's max m and Σ exp(s − m) = l; s is
 *                overwritten with exp(s − m).
 *        P·V:    the same row-per-lane-group walk over V, accumulating (g, 8) fp32 per lane;
 *                reduced across the lane groups (shuffles) and the warps (shared memory),
 *                then merged into the CTA's running (m, l, acc) (the online-softmax rescale).
 *      Writes to the workspace, per (b, query head h, split x): acc (hd) fp32 unnormalised,
 *      and (m, l); a split with no chunk writes m = −inf, l = 0, acc = 0.
 *   2. pa_combine_kernel, grid (Hq, B), 128 threads: M = max_x m_x, w_x = exp(m_x − M),
 *      out = bf16( Σ_x w_x acc_x / Σ_x w_x l_x ), the single rounding.
 *
 * The split count and chunk size follow the batch (pa_plan): a big batch fills the GPU with
 * one CTA per (sequence, kv head), whole chunks of 256; a small one splits each context over
 * up to 64 CTAs of short chunks (B = 1: chunks of 32), so that a single sequence still puts
 * most multiprocessors to work. Neither depends on max_ctx, so the grid does not grow with the
 * longest allowed sequence (a CUDA graph captures it once per batch size).
 *
 * Workspace (fp32), S = n_split(B):
 *
 *   acc (B, Hq, S, hd) | ml (B, Hq, S, 2)             B·S ≤ max(B, 512)
 *
 * Memory-bound: 2·ctx·KV·hd·2 bytes of K and V per sequence, read once; q, the workspace
 * and out are small beside it for ctx ≫ chunk/hd. Shared memory per CTA: g·chunk·4 bytes of
 * scores, 4 warps · g · hd · 4 bytes for the reduction and g·(hd + 2)·4 of running state (at
 * most 45 KB).
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "paged_attention.h"
#include "pdl.cuh"

#define PA_THREADS 128
#define PA_WARPS (PA_THREADS / 32)
#define PA_CHUNK KN_PAGED_ATTENTION_CHUNK
#define PA_UNROLL 4

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

/* Positions a CTA may attend in sequence b: ctx_len[b] clamped to what its block table holds. */
static __device__ __forceinline__ int seq_len(const int32_t *ctx_len, int b, int cap)
{
	int n = ctx_len[b];
	return n < 0 ? 0 : n > cap ? cap : n;
}

/* The two per-head merge factors of the current chunk live after the running state. */
#define s_scale_old(red, g, HD) ((red) + PA_WARPS * (g) * (HD) + (g) * (HD) + 2 * (g))
#define s_scale_new(red, g, HD) ((red) + PA_WARPS * (g) * (HD) + (g) * (HD) + 3 * (g))

/*
 * HD: head dim; GM: a compile-time bound on g (the register arrays are GM long, heads j ≥ g
 * are skipped). Dynamic shared memory: s (g, chunk) fp32, red (PA_WARPS, g, HD) fp32, then the
 * running state run_acc (g, HD), run_m (g), run_l (g) fp32.
 */
template <int HD, int GM>
static __global__ void __launch_bounds__(PA_THREADS)
pa_chunk_kernel(float *ws_acc, float *ws_ml, const __nv_bfloat16 *q, const uint4 *k_cache,
		const uint4 *v_cache, const int32_t *block_table, const int32_t *ctx_len, int Hq,
		int KV, int g, int log2_bs, int max_blocks_per_seq, int chunk, float scale)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	constexpr int LPK = HD / 8;          /* lanes per K/V row: one 16-byte load each */
	constexpr int RPW = 32 / LPK;        /* rows per warp and step */
	constexpr int RPS = RPW * PA_WARPS;  /* rows per CTA and step */
	constexpr int ROW_VECS = HD / 8;     /* uint4 per row */
	extern __shared__ float smem[];
	float *s = smem;                          /* (g, chunk) */
	float *red = smem + g * chunk;            /* (PA_WARPS, g, HD) */
	float *run_acc = red + PA_WARPS * g * HD; /* (g, HD) */
	float *run_m = run_acc + g * HD;          /* (g) */
	float *run_l = run_m + g;                 /* (g) */

	const int split = blockIdx.x, n_split = gridDim.x, kvh = blockIdx.y, b = blockIdx.z;
	const int bs_mask = (1 << log2_bs) - 1;
	const int ctx = seq_len(ctx_len, b, max_blocks_per_seq << log2_bs);
	const int nc = (ctx + chunk - 1) / chunk;
	for (int t = threadIdx.x; t < g * HD; t += PA_THREADS)
		run_acc[t] = 0.f;
	if (threadIdx.x < g) {
		run_m[threadIdx.x] = -INFINITY;
		run_l[threadIdx.x] = 0.f;
	}
	const int32_t *bt = block_table + (long)b * max_blocks_per_seq;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int sub = lane % LPK;          /* which 8 dims of the row this lane holds */
	const int row_in_warp = lane / LPK;

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

	for (int c = split; c < nc; c += n_split) {
	const int start = c * chunk;
	const int n = min(chunk, ctx - start);
	/* uint4 offset of chunk row r's (kv head kvh) vector sub in a cache of (n_blocks, bs, KV, HD) */
	auto row_off = [&](int r) -> long {
		int p = start + r;
		long blk = bt[p >> log2_bs];
		return (((blk << log2_bs) + (p & bs_mask)) * KV + kvh) * ROW_VECS + sub;
	};

	/* scores; the loop bound is warp-uniform so that every lane takes part in the shuffles */
	for (int r0 = warp * RPW; r0 < n; r0 += PA_UNROLL * RPS) {
		uint4 kv[PA_UNROLL];
#pragma unroll
		for (int u = 0; u < PA_UNROLL; u++) {
			int r = r0 + u * RPS + row_in_warp;
			kv[u] = r < n ? __ldg(k_cache + row_off(r)) : make_uint4(0, 0, 0, 0);
		}
#pragma unroll
		for (int u = 0; u < PA_UNROLL; u++) {
			int r = r0 + u * RPS + row_in_warp;
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
					s[j * chunk + r] = d * scale;
			}
		}
	}
	__syncthreads();

	/* the chunk's softmax statistics, one warp per query head */
	for (int j = warp; j < g; j += PA_WARPS) {
		float *sj = s + j * chunk;
		float m = -INFINITY;
		for (int r = lane; r < n; r += 32)
			m = fmaxf(m, sj[r]);
		m = warp_max(m);
		float l = 0.f;
		for (int r = lane; r < n; r += 32) {
			float e = __expf(sj[r] - m);
			sj[r] = e;
			l += e;
		}
		l = warp_sum(l);
		if (lane == 0) {
			/* chunk statistics parked in red's tail until the merge below */
			float mo = run_m[j], M = fmaxf(mo, m);
			float a = __expf(mo - M), w = __expf(m - M);
			run_m[j] = M;
			run_l[j] = run_l[j] * a + l * w;
			s_scale_old(red, g, HD)[j] = a;
			s_scale_new(red, g, HD)[j] = w;
		}
	}
	__syncthreads();

	/* P·V: each lane accumulates its 8 dims for the rows of its lane group */
	float acc[GM][8];
#pragma unroll
	for (int j = 0; j < GM; j++)
#pragma unroll
		for (int i = 0; i < 8; i++)
			acc[j][i] = 0.f;
	for (int r0 = warp * RPW; r0 < n; r0 += PA_UNROLL * RPS) {
		uint4 vv[PA_UNROLL];
#pragma unroll
		for (int u = 0; u < PA_UNROLL; u++) {
			int r = r0 + u * RPS + row_in_warp;
			vv[u] = r < n ? __ldg(v_cache + row_off(r)) : make_uint4(0, 0, 0, 0);
		}
#pragma unroll
		for (int u = 0; u < PA_UNROLL; u++) {
			int r = r0 + u * RPS + row_in_warp;
			if (r >= n)
				continue;
			float vf[8];
			bf16x8_to_f32(vv[u], vf);
#pragma unroll
			for (int j = 0; j < GM; j++) {
				if (j >= g)
					continue;
				float w = s[j * chunk + r];
#pragma unroll
				for (int i = 0; i < 8; i++)
					acc[j][i] = fmaf(w, vf[i], acc[j][i]);
			}
		}
	}
	/* across the lane groups of the warp (lanes with equal sub hold the same dims) ... */
#pragma unroll
	for (int j = 0; j < GM; j++)
#pragma unroll
		for (int i = 0; i < 8; i++)
#pragma unroll
			for (int o = LPK; o < 32; o <<= 1)
				acc[j][i] += __shfl_xor_sync(0xffffffffu, acc[j][i], o);
	/* ... then across the warps */
	if (row_in_warp == 0) {
#pragma unroll
		for (int j = 0; j < GM; j++) {
			if (j >= g)
				continue;
			float4 *dst = (float4 *)(red + ((long)warp * g + j) * HD + sub * 8);
			dst[0] = make_float4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
			dst[1] = make_float4(acc[j][4], acc[j][5], acc[j][6], acc[j][7]);
		}
	}
	__syncthreads();
	for (int t = threadIdx.x; t < g * HD; t += PA_THREADS) {
		int j = t / HD, d = t % HD;
		float a = 0.f;
#pragma unroll
		for (int w = 0; w < PA_WARPS; w++)
			a += red[((long)w * g + j) * HD + d];
		run_acc[t] = run_acc[t] * s_scale_old(red, g, HD)[j] +
			     a * s_scale_new(red, g, HD)[j];
	}
	__syncthreads();   /* s, red and the scales are reused by the next chunk */
	}
	for (int t = threadIdx.x; t < g * HD; t += PA_THREADS) {
		int j = t / HD, d = t % HD;
		long slot = ((long)b * Hq + (long)kvh * g + j) * n_split + split;
		ws_acc[slot * HD + d] = run_acc[t];
	}
	if (threadIdx.x < g) {
		long slot = ((long)b * Hq + (long)kvh * g + threadIdx.x) * n_split + split;
		ws_ml[2 * slot] = run_m[threadIdx.x];
		ws_ml[2 * slot + 1] = run_l[threadIdx.x];
	}
}

/* One CTA per (query head, sequence): merge the splits' partial results. Warp 0 turns the
 * splits' (m, l) into weights w_x = exp(m_x − M) in shared memory (only the splits that got a
 * chunk: min(n_split, chunks)), then every thread sums its output dims over them — independent
 * loads, so the loop pipelines instead of waiting on each split in turn. */
#define PA_MAX_SPLIT 64
static __global__ void __launch_bounds__(PA_THREADS)
pa_combine_kernel(__nv_bfloat16 *out, const float *ws_acc, const float *ws_ml,
		  const int32_t *ctx_len, int Hq, int hd, int cap, int n_split, int chunk)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	__shared__ float w[PA_MAX_SPLIT];
	__shared__ float inv_l;
	const int h = blockIdx.x, b = blockIdx.y;
	const int ctx = seq_len(ctx_len, b, cap);
	const int nc = (ctx + chunk - 1) / chunk;
	const int nu = nc < n_split ? nc : n_split;
	const long slot0 = ((long)b * Hq + h) * n_split;
	if (threadIdx.x < 32) {
		const int lane = threadIdx.x;
		float M = -INFINITY;
		for (int x = lane; x < nu; x += 32)
			M = fmaxf(M, ws_ml[2 * (slot0 + x)]);
		M = warp_max(M);
		float L = 0.f;
		for (int x = lane; x < nu; x += 32) {
			float e = __expf(ws_ml[2 * (slot0 + x)] - M);
			w[x] = e;
			L += e * ws_ml[2 * (slot0 + x) + 1];
		}
		L = warp_sum(L);
		if (lane == 0)
			inv_l = nu > 0 && L > 0.f ? 1.f / L : 0.f;
	}
	__syncthreads();
	for (int d = threadIdx.x; d < hd; d += PA_THREADS) {
		float a = 0.f;
#pragma unroll 4
		for (int x = 0; x < nu; x++)
			a = fmaf(w[x], ws_acc[(slot0 + x) * hd + d], a);
		out[((long)b * Hq + h) * hd + d] = __float2bfloat16(a * inv_l);
	}
}

/* Splits per sequence and chunk size for a batch of B (see the top of this file). */
static void pa_plan(int B, int *n_split, int *chunk)
{
	int s = 512 / (B > 0 ? B : 1);
	*n_split = s < 1 ? 1 : s > PA_MAX_SPLIT ? PA_MAX_SPLIT : s;
	*chunk = B <= 4 ? 32 : B <= 16 ? 64 : B <= 32 ? 128 : PA_CHUNK;
}

extern "C" size_t kn_paged_attention_workspace_bytes(int B, int Hq, int hd, int max_ctx)
{
	if (B <= 0 || Hq <= 0 || hd <= 0 || max_ctx <= 0)
		return 0;
	/* B·n_split(B) ≤ 512 for every B ≤ 512 (64·B below 8), and B beyond: size for the worst
	 * batch up to B, since a graph ladder calls with every size up to the largest */
	size_t worst = B < 8 ? 64 * (size_t)B : (B > 512 ? (size_t)B : 512);
	return worst * (size_t)Hq * ((size_t)hd + 2) * sizeof(float);
}

template <int HD, int GM>
static void pa_launch(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
		      const uint16_t *v_cache, const int32_t *block_table, const int32_t *ctx_len,
		      int B, int Hq, int KV, int log2_bs, int max_blocks_per_seq, float scale,
		      float *ws, cudaStream_t stream)
{
	const int g = Hq / KV, cap = max_blocks_per_seq << log2_bs;
	int n_split, chunk;
	pa_plan(B, &n_split, &chunk);
	float *ws_acc = ws, *ws_ml = ws + (size_t)B * Hq * n_split * HD;
	size_t shm = ((size_t)g * chunk + (size_t)PA_WARPS * g * HD + (size_t)g * HD + 4 * g) *
		     sizeof(float);
	dim3 grid(n_split, KV, B);
	if (shm > 48 * 1024)
		CUDA_CHECK(cudaFuncSetAttribute(pa_chunk_kernel<HD, GM>,
						cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
	kn_launch(pa_chunk_kernel<HD, GM>, grid, PA_THREADS, shm, stream,
		ws_acc, ws_ml, (const __nv_bfloat16 *)q, (const uint4 *)k_cache,
		(const uint4 *)v_cache, block_table, ctx_len, Hq, KV, g, log2_bs,
		max_blocks_per_seq, chunk, scale);
	KN_CHECK_LAUNCH();
	kn_launch(pa_combine_kernel, dim3(Hq, B), PA_THREADS, 0, stream,
		(__nv_bfloat16 *)out, ws_acc, ws_ml, ctx_len, Hq, HD, cap, n_split, chunk);
	KN_CHECK_LAUNCH();
}

template <int HD>
static int pa_dispatch_g(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			 const uint16_t *v_cache, const int32_t *block_table, const int32_t *ctx_len,
			 int B, int Hq, int KV, int log2_bs, int max_blocks_per_seq, float scale,
			 float *ws, cudaStream_t stream)
{
	const int g = Hq / KV;
#define PA_G(GM)                                                                            \
	pa_launch<HD, GM>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV, log2_bs, \
			  max_blocks_per_seq, scale, ws, stream)
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
	    block_size <= 0 || (block_size & (block_size - 1)) != 0)
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
	float *ws = (float *)workspace;
#define PA_HD(HD)                                                                          \
	pa_dispatch_g<HD>(out, q, k_cache, v_cache, block_table, ctx_len, B, Hq, KV, log2_bs, \
			  max_blocks_per_seq, scale, ws, stream)
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
