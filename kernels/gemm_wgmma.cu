/*
 * gemm_wgmma: a decode step's projections, y = x · Wᵀ for 5-128 rows of x, on Hopper's wgmma,
 * launched with PDL (interface in gemm_wgmma.h; formulas and reference in gemm.h).
 *
 * Why: at 128 rows a projection is close to the machine's balance point (one layer's four
 * products are ~26 GFLOP against ~100 MB of weights), so it must stream W at full bandwidth
 * with its math under the loads. cuBLASLt's kernels stream at 1.6-2.5 TB/s there and take no
 * PDL, so each of them also pays a drain and a ramp (tests/bench/PERF.md, sessions 6-9). This
 * kernel reads its weights before waiting for its predecessor and lets its successor be
 * scheduled before its epilogue.
 *
 * Shape of the work: W rows are the MMA's M side (a CTA owns 128 of them: two warpgroups of
 * 64) and the batch its N side (BN = 64 or 128 columns, rows of x past M read as zeros), so
 * yᵀ tile = W tile · xᵀ. K is split S ways (S = 1, 2, 4 or 8, the most that keeps the grid of
 * N / 128 · S CTAs within one per multiprocessor) so that the small projections (N = 2048)
 * still spread over the whole GPU. A CTA walks its K range in stages of 64 (128 bytes a row):
 *
 *   smem ring of R stages, each  W tile (128 × 64) | x tile (BN × 64), 128-byte swizzled
 *   (wgmma.cuh), filled by all 256 threads with 16-byte cp.async (x rows ≥ M zero-filled);
 *   before kn_pdl_wait the CTA issues the W tiles of its first R − 2 stages (weights only: the
 *   PDL contract of gemm.h), after it the x tiles; stage k + R − 2 is issued once every
 *   warpgroup is past stage k − 2's MMAs (one __syncthreads a stage), so R − 2 stages are in
 *   flight while one is computed.
 *   Each warpgroup: four wgmma m64nBNk16 a stage into 64 × BN fp32 registers.
 *
 * Epilogue: the accumulators go through shared memory (transposed to rows of y, padded rows:
 * no bank conflicts) and leave as 16-byte rows:
 *   S = 1: y = sum (+ residual), fp32 or fp16 (one rounding).
 *   S > 1 with the residual in place (y == residual: o and down, y += x·Wᵀ): each CTA adds its
 *   sums into y with vector atomic adds (red.global.add.v4.f32, done in the L2). Nothing
 *   waits and nothing is read back, but the splits land in arrival order, so the last bits of
 *   y may differ between runs (~1e-7 relative; as with cuBLASLt's atomic split-K schemes).
 *   S > 1 otherwise: each CTA writes its partial (BN × 128 fp32) to the workspace, then the S
 *   CTAs of a tile meet at a counter (each adds 8 / S, so a launch moves every used counter
 *   by exactly 8 whatever its S; thread 0 spins with acquire loads until the launch's 8 are
 *   in) and each sums a 1/S share of the rows, partials in split order, then adds the
 *   residual: the same order every run, so the bits do not depend on timing. The spin is
 *   safe because the grid never exceeds one CTA per multiprocessor: all of a tile's CTAs are
 *   resident together (its successor, launched early by PDL, is scheduled only after every
 *   CTA of this grid has started), as long as no other grid that waits the same way holds
 *   multiprocessors at the same moment: one context per stream, and no other process's
 *   kernels beside it (MPS). qvld has one context and one stream per GPU.
 *
 * GLU (kn_gemm_wgmma_glu_run, gemm.h's kn_gemm_glu): the gate/up projection with SwiGLU in its
 * epilogue. A CTA's 128 W rows are 64 gate rows and the 64 up rows of the same outputs (rows 64
 * on are read F − 64 rows further: gw_load's jump), so warpgroup 0 sums gate and warpgroup 1 up
 * for the same columns; K is not split (S = 1: 96 CTAs for the 2b model's F = 6144), and the
 * epilogue writes act[m][n0 + i] = bf16(silu(g)·u) from the transposed tile with silu_mul.cuh's
 * arithmetic. No (M, 2F) gate/up array is written or read back, and the silu_mul launch is gone:
 * H100, 128 rows, 2b shapes, 23.6 against 26.8 µs for the product and silu_mul apart.
 *
 * Measured (H100, tests/bench/bench_gemm_cuda --f16, weights cold, µs against cuBLASLt's best
 * of its first 8 with split-K): at 128 rows qkv 14.0 vs 10.1 (the partials' round trip), o
 * 8.0 vs 7.9, gate_up 23.1 vs 23.9, down 13.5 vs 15.7; at 64 rows a layer's four projections
 * take 12% less, at 32 rows 15% less. The partials' workspace, counter and re-read cost
 * ~5.7 µs a launch (o at 128 rows: 11.6 µs that way, 5.9 µs for the main loop alone), which
 * is why the in-place shapes add into y instead. gemm.cu runs the kernel only where its
 * start-up tuning timed it faster (tests/bench/PERF.md, session 10).
 *
 * sm_90a only (wgmma is arch-specific): Makefile.am builds this file's device code for sm_90a
 * alone, so on any other device the kernels have no image, cudaFuncGetAttributes fails and
 * kn_gemm_wgmma_new returns NULL.
 */
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "gemm_wgmma.h"
#include "mma.cuh"
#include "pdl.cuh"
#include "silu_mul.cuh"
#include "wgmma.cuh"

#define GW_TM 128                 /* W rows a CTA */
#define GW_KB 64                  /* k elements a stage */
#define GW_THREADS 256            /* two warpgroups */
#define GW_RING (192 * 1024)      /* shared memory for the ring (the epilogue reuses it) */
#define GW_SMEM (GW_RING + 1024)  /* + alignment slack: the ring starts 1024-byte aligned */
#define GW_MAXS 8                 /* most K splits; counters move by GW_MAXS a launch */
#define GW_TS (GW_TM + 4)         /* epilogue row stride in floats (conflict-free writes) */

template <int BN> struct gw_ring {
	static constexpr int W_BYTES = GW_TM * GW_KB * 2;
	static constexpr int X_BYTES = BN * GW_KB * 2;
	static constexpr int STAGE = W_BYTES + X_BYTES;
	static constexpr int R = GW_RING / STAGE;
	static_assert(STAGE % 1024 == 0, "swizzled tiles start 1024-byte aligned");
	static_assert(R >= 3, "the ring needs a stage in flight");
	static_assert(BN * GW_TS * 4 <= GW_RING, "the epilogue tile fits the ring");
};

/* A split grid has tiles · S ≤ sms CTAs (gw_splits), so sms partial tiles of the widest BN and
 * sms tile counters hold any of them. */
struct kn_gemm_wgmma {
	float *partials;            /* owned: sms × KN_GEMM_WGMMA_MAX_M × GW_TM */
	unsigned *counters;         /* owned: sms */
	int sms;
	int max_splits;   /* a power of two ≤ GW_MAXS */
};

/* ROWS rows × 128 bytes of a 16-bit matrix (row stride ld elements) into a swizzled tile at
 * shared address dst; rows ≥ valid are zeros (nothing read); rows from 64 on are read jump
 * elements further on (the up rows of a GLU tile; 0 otherwise). */
template <int ROWS>
static __device__ __forceinline__ void gw_load(uint32_t dst, const uint16_t *src, int ld,
					       int valid, int tid, size_t jump = 0)
{
#pragma unroll
	for (int j = 0; j < ROWS * 8 / GW_THREADS; j++) {
		const int q = tid + j * GW_THREADS, r = q >> 3, c = q & 7;
		const bool ok = r < valid;
		const uint16_t *s = ok ? src + (size_t)r * ld + (r >= 64 ? jump : 0) + c * 8 : src;
		cp_async16_shared(dst + r * 128 + ((c ^ (r & 7)) << 4), s, ok);
	}
}

/* y[at .. at+3] += v, atomically (the L2 adds; in whatever order the splits arrive). */
static __device__ __forceinline__ void gw_red_add(void *y, size_t at, float4 v)
{
	asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"((float *)y + at),
		     "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
		     : "memory");
}

static __device__ __forceinline__ unsigned gw_ld_acquire(const unsigned *p)
{
	unsigned v;
	asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
	return v;
}

template <int BN, bool F16>
static __device__ __forceinline__ void gw_mma(float (&acc)[BN / 2], uint64_t a, uint64_t b)
{
	if constexpr (BN == 128 && F16)
		wgmma_m64n128k16_f16(acc, a, b, 1);
	else if constexpr (BN == 128)
		wgmma_m64n128k16_bf16(acc, a, b, 1);
	else if constexpr (F16)
		wgmma_m64n64k16_f16(acc, a, b, 1);
	else
		wgmma_m64n64k16_bf16(acc, a, b, 1);
}

/* y[m][n .. n+3] from the fp32 sums v (+ residual), one rounding for fp16. */
template <bool OUT_F16>
static __device__ __forceinline__ void gw_store(void *y, const float *residual, size_t at,
						float4 v)
{
	if constexpr (OUT_F16) {
		__half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w);
		uint2 u;
		u.x = *(uint32_t *)&a;
		u.y = *(uint32_t *)&b;
		*(uint2 *)((__half *)y + at) = u;
	} else {
		if (residual) {
			const float4 r = *(const float4 *)(residual + at);
			v.x += r.x;
			v.y += r.y;
			v.z += r.z;
			v.w += r.w;
		}
		*(float4 *)((float *)y + at) = v;
	}
}

template <int BN, bool F16, bool OUT_F16, bool GLU = false>
static __global__ void __launch_bounds__(GW_THREADS, 1)
gw_kernel(void *y, const uint16_t *__restrict__ x, const uint16_t *__restrict__ W,
	  const float *residual, int M, int N, int K, int S, bool red, float *ws, unsigned *counters)
{
	typedef gw_ring<BN> RG;
	constexpr int R = RG::R;
	extern __shared__ uint8_t gw_raw[];
	const uint32_t raw = (uint32_t)__cvta_generic_to_shared(gw_raw);
	const uint32_t base = (raw + 1023) & ~1023u;
	float *tile_t = (float *)(gw_raw + (base - raw));

	const int tid = threadIdx.x, wg = tid >> 7;
	const int tile = blockIdx.x / S, s = blockIdx.x % S;
	/* GLU: the tile's 64 gate rows, then the 64 up rows F = N / 2 rows further on */
	const int n0 = tile * (GLU ? 64 : GW_TM);
	const size_t jump = GLU ? (size_t)(N / 2 - 64) * K : 0;
	const int nkb = K / GW_KB / S;
	const uint16_t *Wt = W + (size_t)n0 * K + (size_t)s * nkb * GW_KB;
	const uint16_t *xt = x + (size_t)s * nkb * GW_KB;

	/* the weights of the first stages while the predecessor may still run */
	const int pre = nkb < R - 2 ? nkb : R - 2;
	for (int i = 0; i < pre; i++)
		gw_load<GW_TM>(base + i * RG::STAGE, Wt + i * GW_KB, K, GW_TM, tid, jump);
	kn_pdl_wait();
	/* group i holds stage i's x tile (group 0 also every W tile above) */
	for (int i = 0; i < R - 2; i++) {
		if (i < pre)
			gw_load<BN>(base + i * RG::STAGE + RG::W_BYTES, xt + i * GW_KB, K, M, tid);
		cp_async_commit();
	}

	float acc[BN / 2];
#pragma unroll
	for (int i = 0; i < BN / 2; i++)
		acc[i] = 0.f;
	for (int kb = 0; kb < nkb; kb++) {
		cp_async_wait<R - 3>();   /* groups 0 .. kb complete */
		fence_proxy_async_smem();
		__syncthreads();
		const uint32_t st = base + (kb % R) * RG::STAGE;
		const uint32_t sw = st + wg * 64 * 128, sx = st + RG::W_BYTES;
		wgmma_fence();
#pragma unroll
		for (int kk = 0; kk < GW_KB / 16; kk++)
			gw_mma<BN, F16>(acc, wgmma_desc_sw128(sw + kk * 32),
					wgmma_desc_sw128(sx + kk * 32));
		wgmma_commit();
		wgmma_wait<1>();   /* this warpgroup's stage kb − 1 is read */
		/* stage (kb − 2) mod R: every warpgroup waited for it before the barrier above */
		const int nk = kb + R - 2;
		if (nk < nkb) {
			const uint32_t dst = base + (nk % R) * RG::STAGE;
			gw_load<GW_TM>(dst, Wt + (size_t)nk * GW_KB, K, GW_TM, tid, jump);
			gw_load<BN>(dst + RG::W_BYTES, xt + (size_t)nk * GW_KB, K, M, tid);
		}
		cp_async_commit();
	}
	wgmma_wait<0>();
	wgmma_pin(acc);
	cp_async_wait<0>();
	kn_pdl_trigger();
	__syncthreads();   /* the ring is free: the epilogue tile overwrites it */

	/* accumulators → tile_t[c][r] (c: row of y, r: column within the CTA's 128) */
	{
		const int w = (tid >> 5) & 3, l = tid & 31;
		const int r = wg * 64 + w * 16 + (l >> 2);
#pragma unroll
		for (int j = 0; j < BN / 8; j++) {
			const int c = j * 8 + (l & 3) * 2;
			tile_t[c * GW_TS + r] = acc[4 * j];
			tile_t[(c + 1) * GW_TS + r] = acc[4 * j + 1];
			tile_t[c * GW_TS + r + 8] = acc[4 * j + 2];
			tile_t[(c + 1) * GW_TS + r + 8] = acc[4 * j + 3];
		}
	}
	__syncthreads();
	if constexpr (GLU) {   /* S = 1: act[m][n0 + i] = silu(gate sum i)·(up sum i), bf16 */
		const int q = tid & 15, r0 = tid >> 4, F = N / 2;   /* 16 lanes a row */
		for (int m = r0; m < M; m += GW_THREADS / 16) {
			const float4 g = *(const float4 *)&tile_t[m * GW_TS + 4 * q];
			const float4 u = *(const float4 *)&tile_t[m * GW_TS + 64 + 4 * q];
			uint2 o;
			o.x = kn_silu_mul_bits(g.x, u.x) | kn_silu_mul_bits(g.y, u.y) << 16;
			o.y = kn_silu_mul_bits(g.z, u.z) | kn_silu_mul_bits(g.w, u.w) << 16;
			*(uint2 *)((uint16_t *)y + (size_t)m * F + n0 + 4 * q) = o;
		}
		return;
	}
	const int q = tid & 31, r0 = tid >> 5;   /* 32 float4 a row, 8 rows a pass */
	if (S == 1) {
		for (int m = r0; m < M; m += GW_THREADS / 32)
			gw_store<OUT_F16>(y, residual, (size_t)m * N + n0 + 4 * q,
					  *(const float4 *)&tile_t[m * GW_TS + 4 * q]);
		return;
	}
	if (red) {   /* y holds the residual: add this split's sums into it */
		for (int m = r0; m < M; m += GW_THREADS / 32)
			gw_red_add(y, (size_t)m * N + n0 + 4 * q,
				   *(const float4 *)&tile_t[m * GW_TS + 4 * q]);
		return;
	}
	float *mine = ws + (size_t)blockIdx.x * BN * GW_TM;
	for (int m = r0; m < M; m += GW_THREADS / 32)
		__stcg((float4 *)&mine[m * GW_TM + 4 * q],
		       *(const float4 *)&tile_t[m * GW_TS + 4 * q]);
	__threadfence();
	__syncthreads();
	if (tid == 0) {
		__threadfence();   /* the signalling thread's own release of the CTA's partials */
		unsigned *cnt = counters + tile;
		const unsigned old = atomicAdd(cnt, GW_MAXS / S);
		const unsigned target = old - old % GW_MAXS + GW_MAXS;
		while ((int)(gw_ld_acquire(cnt) - target) < 0)
			__nanosleep(32);
	}
	__syncthreads();
	const float *parts = ws + (size_t)tile * S * BN * GW_TM;
	const int per = (M + S - 1) / S, m_lo = s * per;
	const int m_hi = m_lo + per < M ? m_lo + per : M;
	for (int m = m_lo + r0; m < m_hi; m += GW_THREADS / 32) {
		float4 v = __ldcg((const float4 *)&parts[m * GW_TM + 4 * q]);
		for (int z = 1; z < S; z++) {
			const float4 p = __ldcg((const float4 *)&parts[((size_t)z * BN + m) * GW_TM +
								       4 * q]);
			v.x += p.x;
			v.y += p.y;
			v.z += p.z;
			v.w += p.w;
		}
		gw_store<OUT_F16>(y, residual, (size_t)m * N + n0 + 4 * q, v);
	}
}

/* The instances of one batch width (the decoder's three operand and output forms), allowed
 * their shared memory. */
template <int BN> static void gw_prepare(void)
{
	const int smem = GW_SMEM;
	CUDA_CHECK(cudaFuncSetAttribute(gw_kernel<BN, false, false>,
					cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
	CUDA_CHECK(cudaFuncSetAttribute(gw_kernel<BN, true, false>,
					cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
	CUDA_CHECK(cudaFuncSetAttribute(gw_kernel<BN, true, true>,
					cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
	CUDA_CHECK(cudaFuncSetAttribute(gw_kernel<BN, true, false, true>,
					cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
}

static bool gw_env_enabled(void)
{
	const char *e = getenv("QVL_GEMM_WGMMA");
	return !(e && *e == '0');
}

extern "C" kn_gemm_wgmma *kn_gemm_wgmma_new(void)
{
	if (!gw_env_enabled())
		return NULL;
	/* the kernels exist for sm_90a alone: any other device has no image for them */
	cudaFuncAttributes fa;
	if (cudaFuncGetAttributes(&fa, gw_kernel<128, false, false>) != cudaSuccess) {
		(void)cudaGetLastError();
		return NULL;
	}
	int dev, sms;
	CUDA_CHECK(cudaGetDevice(&dev));
	CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	gw_prepare<64>();
	gw_prepare<128>();
	kn_gemm_wgmma *g = (kn_gemm_wgmma *)calloc(1, sizeof(*g));
	if (!g) {
		fprintf(stderr, "<2>[cuda] kn_gemm_wgmma_new: out of memory\n");
		abort();
	}
	g->sms = sms;
	g->max_splits = GW_MAXS;
	CUDA_CHECK(cudaMalloc(&g->partials,
			      (size_t)sms * KN_GEMM_WGMMA_MAX_M * GW_TM * sizeof(float)));
	CUDA_CHECK(cudaMalloc(&g->counters, (size_t)sms * sizeof(unsigned)));
	CUDA_CHECK(cudaMemset(g->counters, 0, (size_t)sms * sizeof(unsigned)));
	return g;
}

extern "C" void kn_gemm_wgmma_set_max_splits(kn_gemm_wgmma *g, int s)
{
	int p = 1;
	while (2 * p <= s && 2 * p <= GW_MAXS)
		p *= 2;
	g->max_splits = p;
}

extern "C" void kn_gemm_wgmma_free(kn_gemm_wgmma *g)
{
	if (!g)
		return;
	CUDA_CHECK(cudaFree(g->partials));   /* synchronises: no launch still uses them */
	CUDA_CHECK(cudaFree(g->counters));
	free(g);
}

/* K splits: the most (a power of two ≤ GW_MAXS dividing the 64-wide k blocks) that keeps the
 * grid within one CTA per multiprocessor. */
static int gw_splits(const kn_gemm_wgmma *g, int N, int K)
{
	const int tiles = N / GW_TM, kbs = K / GW_KB;
	int S = 1;
	while (2 * S <= g->max_splits && tiles * 2 * S <= g->sms && kbs % (2 * S) == 0)
		S *= 2;
	return S;
}

static bool gw_aligned(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

extern "C" bool kn_gemm_wgmma_fits(const kn_gemm_wgmma *g, const void *y, const uint16_t *x,
				   const uint16_t *W, const float *residual, int M, int N, int K,
				   bool out_f16)
{
	if (!g || M < KN_GEMM_WGMMA_MIN_M || M > KN_GEMM_WGMMA_MAX_M || N <= 0 || K <= 0 ||
	    N % GW_TM || K % GW_KB)
		return false;
	if (!gw_aligned(y) || !gw_aligned(x) || !gw_aligned(W) || (residual && !gw_aligned(residual)))
		return false;
	return !(out_f16 && residual);   /* the workspace holds any split (struct kn_gemm_wgmma) */
}

template <int BN, bool F16, bool OUT_F16>
static void gw_launch(kn_gemm_wgmma *g, void *y, const uint16_t *x, const uint16_t *W,
		      const float *residual, int M, int N, int K, int S, cudaStream_t stream)
{
	kn_launch(gw_kernel<BN, F16, OUT_F16>, dim3((N / GW_TM) * S), dim3(GW_THREADS), GW_SMEM,
		  stream, y, x, W, residual, M, N, K, S, S > 1 && residual == y && !OUT_F16,
		  g->partials, g->counters);
}

/* The instance of batch width BN for the operand and output forms. */
template <int BN>
static void gw_launch_forms(kn_gemm_wgmma *g, void *y, const uint16_t *x, const uint16_t *W,
			    const float *residual, int M, int N, int K, bool f16, bool out_f16,
			    int S, cudaStream_t stream)
{
	if (out_f16)
		gw_launch<BN, true, true>(g, y, x, W, NULL, M, N, K, S, stream);
	else if (f16)
		gw_launch<BN, true, false>(g, y, x, W, residual, M, N, K, S, stream);
	else
		gw_launch<BN, false, false>(g, y, x, W, residual, M, N, K, S, stream);
}

extern "C" void kn_gemm_wgmma_run(kn_gemm_wgmma *g, void *y, const uint16_t *x,
				  const uint16_t *W, const float *residual, int M, int N, int K,
				  bool f16, bool out_f16, cudaStream_t stream)
{
	const int S = gw_splits(g, N, K);
	if (out_f16 && !f16) {
		fprintf(stderr, "<2>[cuda] gemm_wgmma: fp16 output comes with fp16 operands\n");
		abort();
	}
	if (M <= 64)
		gw_launch_forms<64>(g, y, x, W, residual, M, N, K, f16, out_f16, S, stream);
	else
		gw_launch_forms<128>(g, y, x, W, residual, M, N, K, f16, out_f16, S, stream);
}

extern "C" bool kn_gemm_wgmma_glu_fits(const kn_gemm_wgmma *g, const uint16_t *act,
				       const uint16_t *x, const uint16_t *W, int M, int F, int K)
{
	return g && M >= KN_GEMM_WGMMA_MIN_M && M <= KN_GEMM_WGMMA_MAX_M && F > 0 && F % 64 == 0 &&
	       K > 0 && K % GW_KB == 0 && gw_aligned(act) && gw_aligned(x) && gw_aligned(W);
}

extern "C" void kn_gemm_wgmma_glu_run(kn_gemm_wgmma *g, uint16_t *act, const uint16_t *x,
				      const uint16_t *W, int M, int F, int K, cudaStream_t stream)
{
	/* one CTA a tile of 64 gate and 64 up rows, K whole (the epilogue needs both sums) */
	kn_launch(M <= 64 ? gw_kernel<64, true, false, true> : gw_kernel<128, true, false, true>,
		  dim3(F / 64), dim3(GW_THREADS), GW_SMEM, stream, (void *)act, x, W,
		  (const float *)NULL, M, 2 * F, K, 1, false, g->partials, g->counters);
}
