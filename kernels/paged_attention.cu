/*
 * paged_attention CUDA kernels (shapes, pool layout, formula and limits in paged_attention.h;
 * reference kn_paged_attention_ref).
 *
 * Split-KV in two launches:
 *
 *   1. pa_chunk_kernel, grid (max_chunks, KV, B), 128 threads. One CTA per (sequence b, kv
 *      head, chunk c of KN_PAGED_ATTENTION_CHUNK positions) computes all g query heads of its
 *      kv head, so each K and V row is read from device memory once per group. CTAs whose
 *      chunk starts at or past ctx_len[b] return at once.
 *        scores: a K row of hd bf16 is hd/8 lanes × one 16-byte load, so a warp reads 32/(hd/8)
 *                rows at a time (hd 128: two rows, 256 contiguous bytes each), UNROLL row
 *                groups in flight per thread; the dot products with the g queries (held in
 *                registers, fp32) are reduced across the row's lanes with shuffles and land
 *                in shared memory, s (g, CHUNK) fp32, already times scale.
 *        softmax: one warp per query head: the chunk's max m and Σ exp(s − m) = l; s is
 *                overwritten with exp(s − m).
 *        P·V:    the same row-per-lane-group walk over V, accumulating (g, 8) fp32 per lane;
 *                reduced across the lane groups (shuffles) and the warps (shared memory).
 *      Writes to the workspace, per (b, query head h, c): acc (hd) fp32 unnormalised, and
 *      (m, l).
 *   2. pa_combine_kernel, grid (Hq, B), 128 threads: M = max_c m_c, w_c = exp(m_c − M),
 *      out = bf16( Σ_c w_c acc_c / Σ_c w_c l_c ), the single rounding.
 *
 * Workspace (fp32), max_chunks = ceil(max_ctx / CHUNK):
 *
 *   acc (B, Hq, max_chunks, hd) | ml (B, Hq, max_chunks, 2)
 *
 * Memory-bound: 2·ctx·KV·hd·2 bytes of K and V per sequence, read once; q, the workspace
 * and out are small beside it for ctx ≫ CHUNK/hd. Shared memory per CTA: g·CHUNK·4 bytes of
 * scores plus 4 warps · g · hd · 4 bytes for the final reduction (at most 40 KB).
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "paged_attention.h"

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

/*
 * HD: head dim; GM: a compile-time bound on g (the register arrays are GM long, heads j ≥ g
 * are skipped). Dynamic shared memory: s (g, PA_CHUNK) fp32, then red (PA_WARPS, g, HD) fp32.
 */
template <int HD, int GM>
static __global__ void __launch_bounds__(PA_THREADS)
pa_chunk_kernel(float *ws_acc, float *ws_ml, const __nv_bfloat16 *q, const uint4 *k_cache,
		const uint4 *v_cache, const int32_t *block_table, const int32_t *ctx_len, int Hq,
		int KV, int g, int log2_bs, int max_blocks_per_seq, int max_chunks, float scale)
{
	constexpr int LPK = HD / 8;          /* lanes per K/V row: one 16-byte load each */
	constexpr int RPW = 32 / LPK;        /* rows per warp and step */
	constexpr int RPS = RPW * PA_WARPS;  /* rows per CTA and step */
	constexpr int ROW_VECS = HD / 8;     /* uint4 per row */
	extern __shared__ float smem[];
	float *s = smem;                     /* (g, PA_CHUNK) */
	float *red = smem + g * PA_CHUNK;    /* (PA_WARPS, g, HD) */

	const int c = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
	const int bs_mask = (1 << log2_bs) - 1;
	const int ctx = seq_len(ctx_len, b, max_blocks_per_seq << log2_bs);
	const int start = c * PA_CHUNK;
	if (start >= ctx)
		return;
	const int n = min(PA_CHUNK, ctx - start);
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
					s[j * PA_CHUNK + r] = d * scale;
			}
		}
	}
	__syncthreads();

	/* the chunk's softmax statistics, one warp per query head */
	for (int j = warp; j < g; j += PA_WARPS) {
		float *sj = s + j * PA_CHUNK;
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
			long slot = ((long)b * Hq + (long)kvh * g + j) * max_chunks + c;
			ws_ml[2 * slot] = m;
			ws_ml[2 * slot + 1] = l;
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
				float w = s[j * PA_CHUNK + r];
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
		long slot = ((long)b * Hq + (long)kvh * g + j) * max_chunks + c;
		ws_acc[slot * HD + d] = a;
	}
}

/* One CTA per (query head, sequence): merge the chunks' partial results. */
static __global__ void __launch_bounds__(PA_THREADS)
pa_combine_kernel(__nv_bfloat16 *out, const float *ws_acc, const float *ws_ml,
		  const int32_t *ctx_len, int Hq, int hd, int cap, int max_chunks)
{
	const int h = blockIdx.x, b = blockIdx.y;
	const int ctx = seq_len(ctx_len, b, cap);
	const int nc = (ctx + PA_CHUNK - 1) / PA_CHUNK;
	const long slot0 = ((long)b * Hq + h) * max_chunks;
	float M = -INFINITY;
	for (int c = 0; c < nc; c++)
		M = fmaxf(M, ws_ml[2 * (slot0 + c)]);
	float L = 0.f;
	for (int c = 0; c < nc; c++)
		L += __expf(ws_ml[2 * (slot0 + c)] - M) * ws_ml[2 * (slot0 + c) + 1];
	const float inv = nc > 0 ? 1.f / L : 0.f;
	for (int d = threadIdx.x; d < hd; d += PA_THREADS) {
		float a = 0.f;
		for (int c = 0; c < nc; c++)
			a += __expf(ws_ml[2 * (slot0 + c)] - M) * ws_acc[(slot0 + c) * hd + d];
		out[((long)b * Hq + h) * hd + d] = __float2bfloat16(a * inv);
	}
}

static int pa_max_chunks(int max_ctx)
{
	return (max_ctx + PA_CHUNK - 1) / PA_CHUNK;
}

extern "C" size_t kn_paged_attention_workspace_bytes(int B, int Hq, int hd, int max_ctx)
{
	if (B <= 0 || Hq <= 0 || hd <= 0 || max_ctx <= 0)
		return 0;
	size_t slots = (size_t)B * (size_t)Hq * (size_t)pa_max_chunks(max_ctx);
	return slots * ((size_t)hd + 2) * sizeof(float);
}

template <int HD, int GM>
static void pa_launch(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
		      const uint16_t *v_cache, const int32_t *block_table, const int32_t *ctx_len,
		      int B, int Hq, int KV, int log2_bs, int max_blocks_per_seq, float scale,
		      float *ws, cudaStream_t stream)
{
	const int g = Hq / KV, cap = max_blocks_per_seq << log2_bs;
	const int max_chunks = pa_max_chunks(cap);
	float *ws_acc = ws, *ws_ml = ws + (size_t)B * Hq * max_chunks * HD;
	size_t shm = ((size_t)g * PA_CHUNK + (size_t)PA_WARPS * g * HD) * sizeof(float);
	dim3 grid(max_chunks, KV, B);
	pa_chunk_kernel<HD, GM><<<grid, PA_THREADS, shm, stream>>>(
		ws_acc, ws_ml, (const __nv_bfloat16 *)q, (const uint4 *)k_cache,
		(const uint4 *)v_cache, block_table, ctx_len, Hq, KV, g, log2_bs,
		max_blocks_per_seq, max_chunks, scale);
	KN_CHECK_LAUNCH();
	pa_combine_kernel<<<dim3(Hq, B), PA_THREADS, 0, stream>>>(
		(__nv_bfloat16 *)out, ws_acc, ws_ml, ctx_len, Hq, HD, cap, max_chunks);
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
