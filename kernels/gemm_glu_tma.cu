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
 * c + BF are the gate and up sums of output c. Clusters of two CTAs share one operand by TMA
 * multicast (gt_shape):
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
 * Persistent clusters walk the units (a cluster's two tiles) in groups of GT_GROUP unit rows,
 * each group's rows fastest over every column, so that a wave's x rows and W rows both stay a
 * few MB of the L2 (gt_tile).
 *
 *   warpgroup 0, one thread: the producer. Per 64-wide k block, into ring stage s: waits for
 *     empty[s], expects the stage's bytes on full[s], then its copies (128-byte swizzled: the
 *     layout wgmma.cuh describes), the shared one multicast.
 *   warpgroups 1, 2: consumers of rows 0-63 and 64-127 of the tile. Per k block: wait for
 *     full[s], four wgmma (fp16, fp32 accumulators: BF registers), commit; once the previous
 *     block's products are done, one arrive on that stage's empty barrier in both CTAs (count
 *     4: the peer's producer writes into this CTA's stage too). After the tile's last block:
 *     the epilogue straight from the accumulators (the C layout puts output c's gate in
 *     register group j and its up in j + BF/8 of the same thread), bf16x2 stores.
 *   setmaxnreg moves registers from the producer (40) to the consumers (232).
 *
 * The empty arrives are release at CTA scope: at cluster scope each costs a MEMBAR.GPU, which
 * on the consumer's path between two k blocks held the tensor pipe at ~45% (1.07 ms against
 * 0.56 at 8,192 rows). The epilogue's silu uses __expf and a fast divide (gt_silu_mul2):
 * the exact expf and IEEE divide with their slow-path branches cost ~25% of the kernel.
 *
 * Rows of x past M are not stored (the prompt shape's come in as zeros from TMA's
 * out-of-bounds fill; a cluster's second row block may lie wholly past M). PDL: every thread
 * waits before the first copy; nothing is read before.
 *
 * sm_90a only (Makefile.am builds this file's device code for that target alone; elsewhere
 * kn_glu_tma_new returns NULL).
 *
 * Measured (H100, tests/bench/bench_gemm_cuda --glu, weights cold, F 6144, K 2048), µs, against
 * cuBLASLt's product alone / with silu_mul / gemm_wgmma's GLU epilogue: 8,192 rows 558-609
 * against 503-516 / 640-658; 2,048 rows 144-182 against 135-143 / 171-189; 128 rows 23.1
 * against 22.7 / 27.5 / 28.8; 64 rows 22.2 against 22.3 / 25.1 / 22.1.
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>

#include "cuda_check.h"
#include "gemm_glu_tma.h"
#include "pdl.cuh"
#include "wgmma.cuh"

#define GT_BM 128                        /* x rows a tile */
#define GT_BK 64                         /* k a stage (128 bytes of fp16) */
#define GT_X_BYTES (GT_BM * GT_BK * 2)
#define GT_THREADS 384
#define GT_GROUP 8                       /* unit rows a raster group (gt_tile) */
#define GT_SMEM_MAX (227 * 1024)
#define GT_SLACK 1152                    /* the ring's 1024-byte alignment and the barriers */

/* A shape of the kernel: BF outputs a tile (N = 2·BF rows of W: BF gate, BF up), CL CTAs a
 * cluster. SHARE_X: the cluster's CTAs take CL consecutive output blocks of one row block and
 * share its x tile (each copies 128/CL of its rows into all of them); else two consecutive row
 * blocks of one output block share its W tile (rank 0 copies the gate rows, rank 1 the up rows,
 * into both). As many stages as fit, up to 8 (+ 1 KB of alignment slack and the barriers). */
template <int BF_, int CL_, bool SHARE_X_> struct gt_shape {
	static constexpr int BF = BF_, CL = CL_;
	static constexpr bool SHARE_X = SHARE_X_;
	static constexpr int W_BYTES = 2 * BF * GT_BK * 2;
	static constexpr int STAGE = GT_X_BYTES + W_BYTES;
	static constexpr int NS = (GT_SMEM_MAX - GT_SLACK) / STAGE < 8 ?
					  (GT_SMEM_MAX - GT_SLACK) / STAGE : 8;
	static constexpr int SMEM = NS * STAGE + GT_SLACK;
	/* the grid of units (a unit is one cluster's CL tiles): rows(M) × cols(F) */
	static __host__ __device__ int rows(int M)
	{
		const int mt = (M + GT_BM - 1) / GT_BM;
		return SHARE_X ? mt : (mt + CL - 1) / CL;
	}
	static __host__ __device__ int cols(int F) { return SHARE_X ? F / BF / CL : F / BF; }
	static_assert(SHARE_X || CL == 2, "a W tile is shared by its gate and up halves");
	static_assert(STAGE % 1024 == 0 && (BF * 128) % 1024 == 0 && BF % 8 == 0,
		      "128-byte swizzle atoms stay whole");
};
/* prompt steps: 128 × 128-output tiles (m64n256), pairs of row blocks sharing W; 4 stages */
typedef gt_shape<128, 2, false> gt_prompt;
/* decode steps (M ≤ 128): 128 × 48-output tiles (m64n96), 128 CTAs for F = 6144, pairs of
 * output blocks sharing x; 8 stages. (Clusters of four: only 30 fit on an H100 at once, so
 * 128 CTAs took two waves, 30.9 µs against 22.8 at M = 128.) */
typedef gt_shape<48, 2, true> gt_decode;

struct kn_glu_tma {
	PFN_cuTensorMapEncodeTiled_v12000 encode;
	int max_prompt, max_decode;      /* the most CTAs of each shape resident at once */
};

static __device__ __forceinline__ void gt_bar_init(uint32_t bar, unsigned count)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

static __device__ __forceinline__ void gt_bar_expect_tx(uint32_t bar, unsigned bytes)
{
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar),
		     "r"(bytes)
		     : "memory");
}

/* Waits until the phase of the given parity of barrier bar has completed. */
static __device__ __forceinline__ void gt_bar_wait(uint32_t bar, unsigned parity)
{
	asm volatile("{\n"
		     ".reg .pred done;\n"
		     "GT_WAIT:\n"
		     "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
		     "@!done bra GT_WAIT;\n"
		     "}\n" ::"r"(bar),
		     "r"(parity)
		     : "memory");
}

/* A TMA copy of the box at (c0, c1) (c0 along the rows' elements) of tensor map m into shared
 * memory at dst, completing on barrier bar. */
static __device__ __forceinline__ void gt_tma_load(uint32_t dst, const CUtensorMap *m, uint32_t bar,
						   int c0, int c1)
{
	asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
		     " [%0], [%1, {%3, %4}], [%2];" ::"r"(dst),
		     "l"(m), "r"(bar), "r"(c0), "r"(c1)
		     : "memory");
}

/* The same copy, multicast: it lands at dst in every CTA of the cluster in mask, completing on
 * the barrier at bar's offset in each. */
static __device__ __forceinline__ void gt_tma_load_mc(uint32_t dst, const CUtensorMap *m,
						      uint32_t bar, int c0, int c1, uint16_t mask)
{
	asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
		     ".multicast::cluster [%0], [%1, {%3, %4}], [%2], %5;" ::"r"(dst),
		     "l"(m), "r"(bar), "r"(c0), "r"(c1), "h"(mask)
		     : "memory");
}

/* One arrive on the barrier at bar's offset in cluster CTA `rank` (release at CTA scope, the
 * default: a stronger scope costs a MEMBAR.GPU a k block, and the wgmma reads it orders are
 * complete once wgmma_wait returns). */
static __device__ __forceinline__ void gt_bar_arrive_cluster(uint32_t bar, unsigned rank)
{
	uint32_t r;
	asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(bar), "r"(rank));
	asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(r) : "memory");
}

/* bf16(silu(g)·u) of two outputs, packed: __expf and a fast divide (~1e-6 relative, far under
 * bf16's rounding; g below ~−87 gives 0, silu's limit), one round-to-nearest-even each. */
static __device__ __forceinline__ uint32_t gt_silu_mul2(float g0, float u0, float g1, float u1)
{
	const __nv_bfloat162 v = __floats2bfloat162_rn(__fdividef(g0, 1.0f + __expf(-g0)) * u0,
						       __fdividef(g1, 1.0f + __expf(-g1)) * u1);
	return *(const uint32_t *)&v;
}

static __device__ __forceinline__ void gt_cluster_sync(void)
{
	asm volatile("barrier.cluster.arrive.release;\n"
		     "barrier.cluster.wait.acquire;" ::: "memory");
}

/* The first x row m0 and output f0 of this CTA's tile (rank: its place in the cluster) in unit
 * u of a grid of R × C units, walked in groups of GT_GROUP unit rows, each group's rows fastest
 * over every column, so that a wave's x rows and W rows both stay a few MB of the L2. */
template <typename S>
static __device__ __forceinline__ void gt_tile(int u, int R, int C, unsigned rank, int *m0,
					       int *f0)
{
	constexpr int BF = S::BF, CL = S::CL;
	constexpr bool SHARE_X = S::SHARE_X;
	const int g = u / (GT_GROUP * C), i = u - g * GT_GROUP * C;
	const int rows = min(GT_GROUP, R - g * GT_GROUP);
	const int ur = g * GT_GROUP + i % rows, uc = i / rows;
	*m0 = (SHARE_X ? ur : ur * CL + (int)rank) * GT_BM;
	*f0 = (SHARE_X ? uc * CL + (int)rank : uc) * BF;
}

template <typename S>
static __global__ void __launch_bounds__(GT_THREADS, 1)
gt_kernel(uint16_t *act, const __grid_constant__ CUtensorMap tx,
	  const __grid_constant__ CUtensorMap tw, int M, int F, int K, int xbox)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
	constexpr int BF = S::BF, CL = S::CL;
	constexpr bool SHARE_X = S::SHARE_X;
	extern __shared__ uint8_t gt_raw[];
	const uint32_t raw = (uint32_t)__cvta_generic_to_shared(gt_raw);
	const uint32_t base = (raw + 1023) & ~1023u;
	const uint32_t full = base + S::NS * S::STAGE, empty = full + 8 * S::NS;
	const int wg = threadIdx.x >> 7, t128 = threadIdx.x & 127;
	unsigned rank;   /* this CTA's place in its cluster */
	asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
	const int nkb = K / GT_BK, R = S::rows(M), C = S::cols(F);
	const int u0 = blockIdx.x / CL, ustep = gridDim.x / CL;

	if (threadIdx.x == 0) {
		for (int s = 0; s < S::NS; s++) {
			gt_bar_init(full + 8 * s, 1);
			gt_bar_init(empty + 8 * s, 2 * CL);
		}
		asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
	}
	gt_cluster_sync();   /* the peers' barriers are initialised before any copy or arrive */
	kn_pdl_wait();

	/* (producer and consumers in branches of their own: sharing one loop over the units, the
	 * producer's path kept the consumers' registers and ptxas dropped both setmaxnreg) */
	if (wg == 0) {   /* the producer */
		asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
		if (t128 == 0) {
			int it = 0;
			for (int u = u0; u < R * C; u += ustep) {
				int m0, f0;
				gt_tile<S>(u, R, C, rank, &m0, &f0);
				/* shared x: rank q copies rows m0 + q·128/CL.. (xbox of them) if any
				 * is below M */
				const int xr = GT_BM / CL * (int)rank;
				int xs = 0;
				for (int q = 0; q < CL; q++)
					xs += m0 + GT_BM / CL * q < M;
				for (int kb = 0; kb < nkb; kb++, it++) {
					const int s = it % S::NS;
					const uint32_t st = base + s * S::STAGE, bar = full + 8 * s;
					gt_bar_wait(empty + 8 * s, ((it / S::NS) & 1) ^ 1);
					if (SHARE_X) {
						gt_bar_expect_tx(bar, xs * xbox * 128 + S::W_BYTES);
						if (m0 + xr < M)
							gt_tma_load_mc(st + xr * 128, &tx, bar, kb * GT_BK,
								       m0 + xr, (1 << CL) - 1);
						gt_tma_load(st + GT_X_BYTES, &tw, bar, kb * GT_BK, f0);
						gt_tma_load(st + GT_X_BYTES + BF * 128, &tw, bar,
							    kb * GT_BK, F + f0);
					} else {
						gt_bar_expect_tx(bar, S::STAGE);
						gt_tma_load(st, &tx, bar, kb * GT_BK, m0);
						gt_tma_load_mc(st + GT_X_BYTES + rank * BF * 128, &tw,
							       bar, kb * GT_BK, (int)rank * F + f0, 3);
					}
				}
			}
		}
	} else {   /* the consumers: warpgroup c of rows 64c .. 64c + 63 of the tile */
		asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
		const int c = wg - 1;
		float acc[BF];
		int it = 0;
		for (int u = u0; u < R * C; u += ustep) {
			int m0, f0;
			gt_tile<S>(u, R, C, rank, &m0, &f0);
			for (int kb = 0; kb < nkb; kb++, it++) {
				const int s = it % S::NS;
				const uint32_t st = base + s * S::STAGE;
				gt_bar_wait(full + 8 * s, (it / S::NS) & 1);
				wgmma_fence();
#pragma unroll
				for (int kk = 0; kk < GT_BK / 16; kk++) {
					const uint64_t da = wgmma_desc_sw128(st + c * 64 * 128 + kk * 32);
					const uint64_t db = wgmma_desc_sw128(st + GT_X_BYTES + kk * 32);
					if constexpr (BF == 128)
						wgmma_m64n256k16_f16(acc, da, db, kb > 0 || kk > 0);
					else
						wgmma_m64n96k16_f16(acc, da, db, kb > 0 || kk > 0);
				}
				wgmma_commit();
				wgmma_wait<1>();   /* the previous block's products are done */
				if (kb > 0 && t128 < CL)   /* its stage is free in every CTA it fed */
					gt_bar_arrive_cluster(empty + 8 * ((it - 1) % S::NS), t128);
			}
			wgmma_wait<0>();
			wgmma_pin(acc);
			if (t128 < CL)
				gt_bar_arrive_cluster(empty + 8 * ((it - 1) % S::NS), t128);

			/* act from the accumulators: register group j holds columns 8j + 2(l mod 4)
			 * and + 1 of rows r and r + 8; gate column c's up column is c + BF
			 * (j + BF / 8) */
			const int w = t128 >> 5, l = t128 & 31;
			const int r = m0 + c * 64 + w * 16 + (l >> 2);
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
	}
	kn_pdl_trigger();
	gt_cluster_sync();   /* no CTA leaves while a peer may still write or arrive here */
#else
	__trap();
#endif
}

static bool gt_env_enabled(void)
{
	const char *e = getenv("QVL_GLU_TMA");
	return !(e && *e == '0');
}

/* The launch configuration of shape S over ctas CTAs (whole clusters), PDL allowed. */
template <typename S> struct gt_config {
	cudaLaunchAttribute attr[2];
	cudaLaunchConfig_t cfg;
	gt_config(int ctas, cudaStream_t stream)
	{
		attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
		attr[0].val.programmaticStreamSerializationAllowed = kn_pdl_enabled();
		attr[1].id = cudaLaunchAttributeClusterDimension;
		attr[1].val.clusterDim.x = S::CL;
		attr[1].val.clusterDim.y = 1;
		attr[1].val.clusterDim.z = 1;
		cfg = {};
		cfg.gridDim = dim3(ctas);
		cfg.blockDim = dim3(GT_THREADS);
		cfg.dynamicSmemBytes = S::SMEM;
		cfg.stream = stream;
		cfg.attrs = attr;
		cfg.numAttrs = 2;
	}
};

/* Sets shape S's shared memory; returns the most of its CTAs resident at once (whole
 * clusters; sms rounded down to them where the query fails). */
template <typename S> static int gt_prepare(int sms)
{
	const int cl = S::CL;
	CUDA_CHECK(cudaFuncSetAttribute(gt_kernel<S>,
					cudaFuncAttributeMaxDynamicSharedMemorySize, S::SMEM));
	gt_config<S> c(sms / cl * cl, 0);
	int n = 0;
	if (cudaOccupancyMaxActiveClusters(&n, gt_kernel<S>, &c.cfg) != cudaSuccess || n < 1) {
		(void)cudaGetLastError();
		return sms / cl * cl;
	}
	return n * cl;
}

extern "C" kn_glu_tma *kn_glu_tma_new(void)
{
	if (!gt_env_enabled())
		return NULL;
	cudaFuncAttributes fa;
	if (cudaFuncGetAttributes(&fa, gt_kernel<gt_prompt>) != cudaSuccess) {
		(void)cudaGetLastError();
		return NULL;
	}
	void *fn = NULL;
	cudaDriverEntryPointQueryResult q;
	if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
					     &q) != cudaSuccess ||
	    q != cudaDriverEntryPointSuccess || !fn) {
		(void)cudaGetLastError();
		return NULL;
	}
	int dev, sms;
	CUDA_CHECK(cudaGetDevice(&dev));
	CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	kn_glu_tma *g = (kn_glu_tma *)calloc(1, sizeof(*g));
	if (!g) {
		fprintf(stderr, "<2>[cuda] kn_glu_tma_new: out of memory\n");
		abort();
	}
	g->encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
	g->max_prompt = gt_prepare<gt_prompt>(sms);
	g->max_decode = gt_prepare<gt_decode>(sms);
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

/* The 2-D map of rows × K fp16 elements at p, boxes of box_rows × GT_BK, 128-byte swizzled,
 * rows past the end read as zeros. */
static CUtensorMap gt_map(const kn_glu_tma *g, const uint16_t *p, int rows, int K, int box_rows)
{
	CUtensorMap m;
	const cuuint64_t dims[2] = { (cuuint64_t)K, (cuuint64_t)rows };
	const cuuint64_t strides[1] = { (cuuint64_t)K * 2 };
	const cuuint32_t box[2] = { GT_BK, (cuuint32_t)box_rows }, estr[2] = { 1, 1 };
	const CUresult r = g->encode(&m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, (void *)p, dims,
				     strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
				     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
				     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
	if (r != CUDA_SUCCESS) {
		fprintf(stderr, "<2>[cuda] gemm_glu_tma: cuTensorMapEncodeTiled failed (%d) for %d "
				"rows of %d\n", (int)r, rows, K);
		abort();
	}
	return m;
}

template <typename S>
static void gt_run(const kn_glu_tma *g, int max_ctas, uint16_t *act, const uint16_t *x,
		   const uint16_t *W, int M, int F, int K, cudaStream_t stream)
{
	/* x boxes: shared x's no taller than M rounded up to 8 (TMA's zero fill of rows past M is
	 * slow: 54 against 26 µs at M = 8 with 64-row boxes; the rows of the tile past the box
	 * keep stale bytes, which reach only rows past M of the product) */
	const int xbox = S::SHARE_X ? std::min(GT_BM / S::CL, (M + 7) / 8 * 8) : GT_BM;
	const CUtensorMap tx = gt_map(g, x, M, K, xbox), tw = gt_map(g, W, 2 * F, K, S::BF);
	const int ctas = S::rows(M) * S::cols(F) * S::CL;
	gt_config<S> c(ctas < max_ctas ? ctas : max_ctas, stream);
	CUDA_CHECK(cudaLaunchKernelEx(&c.cfg, gt_kernel<S>, act, tx, tw, M, F, K, xbox));
}

extern "C" void kn_glu_tma_run(kn_glu_tma *g, uint16_t *act, const uint16_t *x, const uint16_t *W,
			       int M, int F, int K, cudaStream_t stream)
{
	if (M <= GT_BM)
		gt_run<gt_decode>(g, g->max_decode, act, x, W, M, F, K, stream);
	else
		gt_run<gt_prompt>(g, g->max_prompt, act, x, W, M, F, K, stream);
}
