/*
 * gemm_glu_tma: a prompt step's gate/up projection with SwiGLU in its epilogue, for M above
 * gemm_wgmma's 128 rows, on Hopper's TMA and wgmma (interface in gemm_glu_tma.h, formulas and
 * reference in gemm.h's kn_gemm_glu).
 *
 * Why: at 8,192 rows cuBLASLt's fp16 gate/up product writes its (M, 2F) fp16 output and
 * silu_mul reads it back and writes act: ~0.14 ms of ~0.64 ms a layer (H100), which no cuBLASLt
 * epilogue can absorb. Here the product's fp32 sums of an output's gate and up rows meet in
 * one thread's registers and leave as bf16(silu(g)·u).
 *
 * Shape of the work: a tile is 128 rows of x × 128 outputs, i.e. the 128 gate rows and the 128
 * up rows (F rows further on) of W: act tile = x tile · [Wg | Wu] tileᵀ, N = 256, of which
 * columns c and c + 128 are the gate and up sums of output c. Clusters of two CTAs take the two
 * row blocks of a "unit" (256 rows × 128 outputs) and share its W tile by TMA multicast, each
 * CTA loading half (rank 0 the gate rows, rank 1 the up rows) into both: a stage's L2 traffic
 * a CTA is 32 KB instead of 48. Persistent clusters walk the units in groups of GT_GROUP unit
 * rows (2,048 x rows), each group's row blocks fastest over every output block, so that a
 * wave's x rows and W rows both stay a few MB of the L2 (gt_tile).
 *
 *   warpgroup 0, one thread: the producer. Per 64-wide k block, into ring stage s (NS = 4 of
 *     48 KB): waits for empty[s], expects 48 KB on full[s], then its x 128 × 64 and its half
 *     of W 128 × 64 multicast (128-byte swizzled: the layout wgmma.cuh describes).
 *   warpgroups 1, 2: consumers of rows 0-63 and 64-127 of the tile. Per k block: wait for
 *     full[s], four wgmma m64n256k16 (fp16, fp32 accumulators: 128 registers), commit; once the
 *     previous block's products are done, one arrive on that stage's empty barrier in both
 *     CTAs (count 4: the peer's producer writes into this CTA's stage too). After the tile's
 *     last block: the epilogue straight from the accumulators (the C layout puts output c's
 *     gate in register group j and its up in j + 16 of the same thread), bf16x2 stores.
 *   setmaxnreg moves registers from the producer (40) to the consumers (232).
 *
 * The empty arrives are release at CTA scope: at cluster scope each costs a MEMBAR.GPU, which
 * on the consumer's path between two k blocks held the tensor pipe at ~45% (1.07 ms against
 * 0.56 at 8,192 rows). The epilogue's silu uses __expf and a fast divide (gt_silu_mul2):
 * the exact expf and IEEE divide with their slow-path branches cost ~25% of the kernel.
 *
 * Rows of x past M come in as zeros (TMA's out-of-bounds fill; a cluster's second row block
 * may lie wholly past M) and are not stored. PDL: every thread waits before the first copy;
 * nothing is read before.
 *
 * sm_90a only (Makefile.am builds this file's device code for that target alone; elsewhere
 * kn_glu_tma_new returns NULL). kn_gemm_glu_tune keeps it only where it times faster than the
 * cuBLASLt product and silu_mul apart.
 *
 * Measured (H100, tests/bench/bench_gemm_cuda --glu, weights cold, F 6144, K 2048): at 8,192
 * rows 0.558 ms (740 TFLOP/s) against 0.503 for cuBLASLt's product alone and 0.640 with
 * silu_mul; at 2,048 rows 0.144 against 0.135 and 0.171.
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "gemm_glu_tma.h"
#include "pdl.cuh"
#include "wgmma.cuh"

#define GT_BM 128                        /* x rows a tile */
#define GT_BF 128                        /* outputs a tile: 128 gate and 128 up rows of W */
#define GT_BK 64                         /* k a stage (128 bytes of fp16) */
#define GT_NS 4                          /* ring stages */
#define GT_X_BYTES (GT_BM * GT_BK * 2)
#define GT_W_BYTES (2 * GT_BF * GT_BK * 2)
#define GT_STAGE (GT_X_BYTES + GT_W_BYTES)
#define GT_THREADS 384
#define GT_CL 2                          /* CTAs a cluster: row blocks sharing each W tile */
#define GT_GROUP 8                       /* cluster row blocks a raster group (gt_tile) */
#define GT_SMEM (GT_NS * GT_STAGE + 1024 + 128)   /* + alignment slack and the barriers */

struct kn_glu_tma {
	PFN_cuTensorMapEncodeTiled_v12000 encode;
	int max_ctas;                    /* the most CTAs resident at once (whole clusters) */
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
 * u: groups of GT_GROUP cluster row blocks, each walked with its row blocks fastest over every
 * output block, so that a wave's x rows and W rows both stay a few MB of the L2. */
static __device__ __forceinline__ void gt_tile(int u, int mtc, int nf, unsigned rank, int *m0,
					       int *f0)
{
	const int g = u / (GT_GROUP * nf), i = u - g * GT_GROUP * nf;
	const int rows = min(GT_GROUP, mtc - g * GT_GROUP);
	*m0 = ((g * GT_GROUP + i % rows) * GT_CL + (int)rank) * GT_BM;
	*f0 = i / rows * GT_BF;
}

static __global__ void __launch_bounds__(GT_THREADS, 1) __cluster_dims__(GT_CL, 1, 1)
gt_kernel(uint16_t *act, const __grid_constant__ CUtensorMap tx,
	  const __grid_constant__ CUtensorMap tw, int M, int F, int K)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
	extern __shared__ uint8_t gt_raw[];
	const uint32_t raw = (uint32_t)__cvta_generic_to_shared(gt_raw);
	const uint32_t base = (raw + 1023) & ~1023u;
	const uint32_t full = base + GT_NS * GT_STAGE, empty = full + 8 * GT_NS;
	const int wg = threadIdx.x >> 7, t128 = threadIdx.x & 127;
	unsigned rank;   /* this CTA's row block of the cluster's pair */
	asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
	const int mt = (M + GT_BM - 1) / GT_BM, mtc = (mt + GT_CL - 1) / GT_CL, nf = F / GT_BF;
	const int units = mtc * nf, nkb = K / GT_BK;
	const int u0 = blockIdx.x / GT_CL, ustep = gridDim.x / GT_CL;

	if (threadIdx.x == 0) {
		for (int s = 0; s < GT_NS; s++) {
			gt_bar_init(full + 8 * s, 1);
			gt_bar_init(empty + 8 * s, 2 * GT_CL);
		}
		asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
	}
	gt_cluster_sync();   /* the peer's barriers are initialised before any copy or arrive */
	kn_pdl_wait();

	if (wg == 0) {
		asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
		if (t128 == 0) {
			int it = 0;
			for (int u = u0; u < units; u += ustep) {
				int m0, f0;
				gt_tile(u, mtc, nf, rank, &m0, &f0);
				for (int kb = 0; kb < nkb; kb++, it++) {
					const int s = it % GT_NS;
					const uint32_t st = base + s * GT_STAGE;
					gt_bar_wait(empty + 8 * s, ((it / GT_NS) & 1) ^ 1);
					gt_bar_expect_tx(full + 8 * s, GT_STAGE);
					gt_tma_load(st, &tx, full + 8 * s, kb * GT_BK, m0);
					/* rank 0 the gate rows, rank 1 the up rows, to both */
					gt_tma_load_mc(st + GT_X_BYTES + rank * GT_BF * 128, &tw,
						       full + 8 * s, kb * GT_BK, (int)rank * F + f0, 3);
				}
			}
		}
	} else {
		asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
		const int c = wg - 1;   /* this warpgroup's 64 rows of the tile */
		float acc[128];
		int it = 0;
		for (int u = u0; u < units; u += ustep) {
			int m0, f0;
			gt_tile(u, mtc, nf, rank, &m0, &f0);
			for (int kb = 0; kb < nkb; kb++, it++) {
				const int s = it % GT_NS;
				const uint32_t st = base + s * GT_STAGE;
				gt_bar_wait(full + 8 * s, (it / GT_NS) & 1);
				wgmma_fence();
#pragma unroll
				for (int kk = 0; kk < GT_BK / 16; kk++)
					wgmma_m64n256k16_f16(
						acc, wgmma_desc_sw128(st + c * 64 * 128 + kk * 32),
						wgmma_desc_sw128(st + GT_X_BYTES + kk * 32),
						kb > 0 || kk > 0);
				wgmma_commit();
				wgmma_wait<1>();   /* the previous block's products are done */
				if (kb > 0 && t128 < GT_CL)   /* its stage is free in every CTA it fed */
					gt_bar_arrive_cluster(empty + 8 * ((it - 1) % GT_NS), t128);
			}
			wgmma_wait<0>();
			wgmma_pin(acc);
			if (t128 < GT_CL)
				gt_bar_arrive_cluster(empty + 8 * ((it - 1) % GT_NS), t128);

			/* act from the accumulators: register group j holds columns 8j + 2(l mod 4)
			 * and + 1 of rows r and r + 8; gate column c's up column is c + 128 (j + 16) */
			const int w = t128 >> 5, l = t128 & 31;
			const int r = m0 + c * 64 + w * 16 + (l >> 2);
#pragma unroll
			for (int j = 0; j < 16; j++) {
				const int col = f0 + 8 * j + 2 * (l & 3);
				const float *g = acc + 4 * j, *u = acc + 4 * (j + 16);
				if (r < M)
					*(uint32_t *)(act + (size_t)r * F + col) =
						gt_silu_mul2(g[0], u[0], g[1], u[1]);
				if (r + 8 < M)
					*(uint32_t *)(act + (size_t)(r + 8) * F + col) =
						gt_silu_mul2(g[2], u[2], g[3], u[3]);
			}
		}
	}
	kn_pdl_trigger();
	gt_cluster_sync();   /* no CTA leaves while its peer may still arrive on its barriers */
#else
	__trap();
#endif
}

static bool gt_env_enabled(void)
{
	const char *e = getenv("QVL_GLU_TMA");
	return !(e && *e == '0');
}

/* The most clusters of gt_kernel resident at once (sms / GT_CL where the query fails). */
static int gt_max_clusters(int sms)
{
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = dim3(sms / GT_CL * GT_CL);
	cfg.blockDim = dim3(GT_THREADS);
	cfg.dynamicSmemBytes = GT_SMEM;
	int n = 0;
	if (cudaOccupancyMaxActiveClusters(&n, gt_kernel, &cfg) != cudaSuccess || n < 1) {
		(void)cudaGetLastError();
		return sms / GT_CL;
	}
	return n;
}

extern "C" kn_glu_tma *kn_glu_tma_new(void)
{
	if (!gt_env_enabled())
		return NULL;
	cudaFuncAttributes fa;
	if (cudaFuncGetAttributes(&fa, gt_kernel) != cudaSuccess) {
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
	CUDA_CHECK(cudaFuncSetAttribute(gt_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
					GT_SMEM));
	kn_glu_tma *g = (kn_glu_tma *)calloc(1, sizeof(*g));
	if (!g) {
		fprintf(stderr, "<2>[cuda] kn_glu_tma_new: out of memory\n");
		abort();
	}
	g->encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
	g->max_ctas = GT_CL * gt_max_clusters(sms);
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
	return g && M > 0 && F > 0 && F % GT_BF == 0 && K > 0 && K % GT_BK == 0 && a % 16 == 0;
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

extern "C" void kn_glu_tma_run(kn_glu_tma *g, uint16_t *act, const uint16_t *x, const uint16_t *W,
			       int M, int F, int K, cudaStream_t stream)
{
	const CUtensorMap tx = gt_map(g, x, M, K, GT_BM), tw = gt_map(g, W, 2 * F, K, GT_BF);
	const int mt = (M + GT_BM - 1) / GT_BM;
	const int ctas = (mt + GT_CL - 1) / GT_CL * (F / GT_BF) * GT_CL;
	kn_launch(gt_kernel, dim3(ctas < g->max_ctas ? ctas : g->max_ctas), dim3(GT_THREADS), GT_SMEM,
		  stream, act, tx, tw, M, F, K);
}
