/*
 * gemm_tma: the machinery of the products on Hopper's TMA and wgmma whose epilogues do the
 * elementwise work that follows them, shared by gemm_glu_tma.cu (gate/up with SwiGLU) and
 * gemm_qkv_tma.cu (q/k/v with the q/k norms, MRoPE and the KV-cache writes). sm_90a only:
 * the files that include this build their device code for that target alone (Makefile.am).
 *
 * A tile is 128 rows of x (GT_BM) × 2·BF rows of W, in fp16: out tile = x tile · W tileᵀ, fp32
 * sums in the registers of two consumer warpgroups (rows 0-63 and 64-127; BF registers a
 * thread, wgmma.cuh's C layout). What the 2·BF W rows are, and what happens to the sums, is
 * the epilogue's (E below). Clusters of two CTAs share one operand by TMA multicast (gt_shape):
 *
 *   !SHARE_X (prompt steps): the two CTAs take two row blocks of one output block and share
 *     its W tile, each copying one half of it (BF rows: E::w_row) into both, so a stage's L2
 *     traffic a CTA is 32 KB instead of 48 for BF 128.
 *   SHARE_X (decode steps, GLU only): the two take two output blocks of one row block and share
 *     its x tile, each copying 128/CL of its rows into both; the W tile is the gate rows f0..
 *     and the up rows F + f0.. . x boxes are M rounded up to 8 rows tall (TMA's zero fill of
 *     rows past M is slow), so a tile's rows past them hold stale bytes, which reach only the
 *     product's rows past M.
 *
 * Persistent clusters walk the units (a cluster's tiles) in groups of GT_GROUP unit rows, each
 * group's rows fastest over every column, so that a wave's x rows and W rows both stay a few MB
 * of the L2 (gt_tile).
 *
 *   warpgroup 0, one thread: the producer. Per 64-wide k block, into ring stage s: waits for
 *     empty[s], expects the stage's bytes on full[s], then its copies (128-byte swizzled: the
 *     layout wgmma.cuh describes), the shared one multicast.
 *   warpgroups 1, 2: the consumers. Per k block: wait for full[s], four wgmma (fp16, fp32
 *     accumulators), commit; once the previous block's products are done, one arrive on that
 *     stage's empty barrier in both CTAs (count 4: the peer's producer writes into this CTA's
 *     stage too). After the tile's last block: E::store, straight from the accumulators.
 *   setmaxnreg moves registers from the producer (40) to the consumers (232).
 *
 * The empty arrives are release at CTA scope: at cluster scope each costs a MEMBAR.GPU, which
 * on the consumer's path between two k blocks held the tensor pipe at ~45% (1.07 ms against
 * 0.56 at 8,192 rows of gate/up).
 *
 * Rows of x past M come in as zeros (prompt shape: TMA's out-of-bounds fill) or stale bytes
 * (decode shape), and E::store must not store them; a cluster's second row block may lie
 * wholly past M. PDL: every thread waits before the first copy; nothing is read before.
 *
 * The epilogue type E: a trivially copyable struct passed by value (__grid_constant__) with
 *   static __device__ int w_row(unsigned rank, int f0, int F)
 *       the first W row of CTA `rank`'s half of output block f0's tile (!SHARE_X shapes)
 *   __device__ void store(const float (&acc)[BF], int r, int f0, int M, int F, int l) const
 *       the tile's sums of warpgroup rows r .. (r + 8 in the upper registers; r is the tile row
 *       of lane l's register rows, m0 + 64c + 16w + l/4) at output block f0. Called by every
 *       consumer thread with the same control flow (shuffles inside are allowed).
 */
#ifndef QVL_KERNELS_GEMM_TMA_CUH
#define QVL_KERNELS_GEMM_TMA_CUH

#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>

#include "cuda_check.h"
#include "pdl.cuh"
#include "wgmma.cuh"

#define GT_BM 128                        /* x rows a tile */
#define GT_BK 64                         /* k a stage (128 bytes of fp16) */
#define GT_X_BYTES (GT_BM * GT_BK * 2)
#define GT_THREADS 384
#define GT_GROUP 8                       /* unit rows a raster group (gt_tile) */
#define GT_SMEM_MAX (227 * 1024)
#define GT_SLACK 1152                    /* the ring's 1024-byte alignment and the barriers */

/* A shape of the kernel: BF outputs a tile (N = 2·BF rows of W), CL CTAs a cluster. SHARE_X:
 * the cluster's CTAs take CL consecutive output blocks of one row block and share its x tile
 * (each copies 128/CL of its rows into all of them); else two consecutive row blocks of one
 * output block share its W tile (each copies one half into both). As many stages as fit, up to
 * 8 (+ 1 KB of alignment slack and the barriers). */
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
	static_assert(SHARE_X || CL == 2, "a W tile is shared by its two halves");
	static_assert(STAGE % 1024 == 0 && (BF * 128) % 1024 == 0 && BF % 8 == 0,
		      "128-byte swizzle atoms stay whole");
};
/* prompt steps: 128 × 256-column tiles (m64n256), pairs of row blocks sharing W; 4 stages */
typedef gt_shape<128, 2, false> gt_prompt;
/* decode steps (M ≤ 128): 128 × 96-column tiles (m64n96), 128 CTAs for gate/up's F = 6144,
 * pairs of output blocks sharing x; 8 stages. (Clusters of four: only 30 fit on an H100 at
 * once, so 128 CTAs took two waves, 30.9 µs against 22.8 at M = 128.) */
typedef gt_shape<48, 2, true> gt_decode;

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

template <typename S, typename E>
static __global__ void __launch_bounds__(GT_THREADS, 1)
gt_kernel(const __grid_constant__ E ep, const __grid_constant__ CUtensorMap tx,
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
							       bar, kb * GT_BK, E::w_row(rank, f0, F), 3);
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
			const int l = t128 & 31;
			ep.store(acc, m0 + c * 64 + (t128 >> 5) * 16 + (l >> 2), f0, M, F, l);
		}
	}
	kn_pdl_trigger();
	gt_cluster_sync();   /* no CTA leaves while a peer may still write or arrive here */
#else
	__trap();
#endif
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

/* Whether this build has the kernel's sm_90a image for the current device. */
template <typename S, typename E> static bool gt_has_image(void)
{
	cudaFuncAttributes fa;
	if (cudaFuncGetAttributes(&fa, gt_kernel<S, E>) != cudaSuccess) {
		(void)cudaGetLastError();
		return false;
	}
	return true;
}

/* Sets shape S's shared memory; returns the most of its CTAs resident at once (whole
 * clusters; sms rounded down to them where the query fails). */
template <typename S, typename E> static int gt_prepare(int sms)
{
	const int cl = S::CL;
	CUDA_CHECK(cudaFuncSetAttribute(gt_kernel<S, E>,
					cudaFuncAttributeMaxDynamicSharedMemorySize, S::SMEM));
	gt_config<S> c(sms / cl * cl, 0);
	int n = 0;
	if (cudaOccupancyMaxActiveClusters(&n, gt_kernel<S, E>, &c.cfg) != cudaSuccess || n < 1) {
		(void)cudaGetLastError();
		return sms / cl * cl;
	}
	return n * cl;
}

/* The driver's cuTensorMapEncodeTiled, or NULL. */
static inline PFN_cuTensorMapEncodeTiled_v12000 gt_encode_fn(void)
{
	void *fn = NULL;
	cudaDriverEntryPointQueryResult q;
	if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
					     &q) != cudaSuccess ||
	    q != cudaDriverEntryPointSuccess || !fn) {
		(void)cudaGetLastError();
		return NULL;
	}
	return (PFN_cuTensorMapEncodeTiled_v12000)fn;
}

/* Whether a product on this machinery may run here: the environment variable env is not "0",
 * this build has kernel (S, E)'s image for the device, and the driver gives its tensor-map
 * encoder (*encode); *sms: the device's multiprocessors. */
template <typename S, typename E>
static bool gt_available(const char *env, PFN_cuTensorMapEncodeTiled_v12000 *encode, int *sms)
{
	const char *e = getenv(env);
	if ((e && *e == '0') || !gt_has_image<S, E>() || !(*encode = gt_encode_fn()))
		return false;
	int dev;
	CUDA_CHECK(cudaGetDevice(&dev));
	CUDA_CHECK(cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev));
	return true;
}

/* The 2-D map of rows × K fp16 elements at p, boxes of box_rows × GT_BK, 128-byte swizzled,
 * rows past the end read as zeros. */
static inline CUtensorMap gt_map(PFN_cuTensorMapEncodeTiled_v12000 encode, const uint16_t *p,
				 int rows, int K, int box_rows)
{
	CUtensorMap m;
	const cuuint64_t dims[2] = { (cuuint64_t)K, (cuuint64_t)rows };
	const cuuint64_t strides[1] = { (cuuint64_t)K * 2 };
	const cuuint32_t box[2] = { GT_BK, (cuuint32_t)box_rows }, estr[2] = { 1, 1 };
	const CUresult r = encode(&m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, (void *)p, dims, strides,
				  box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
				  CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
				  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
	if (r != CUDA_SUCCESS) {
		fprintf(stderr, "<2>[cuda] gemm_tma: cuTensorMapEncodeTiled failed (%d) for %d "
				"rows of %d\n", (int)r, rows, K);
		abort();
	}
	return m;
}

/* Launches shape S with epilogue ep over M rows of x and the 2F rows of W (F outputs in BF
 * blocks), at most max_ctas CTAs. */
template <typename S, typename E>
static void gt_launch(PFN_cuTensorMapEncodeTiled_v12000 encode, int max_ctas, const E &ep,
		      const uint16_t *x, const uint16_t *W, int M, int F, int K, cudaStream_t stream)
{
	/* x boxes: shared x's no taller than M rounded up to 8 (TMA's zero fill of rows past M is
	 * slow: 54 against 26 µs at M = 8 with 64-row boxes; the rows of the tile past the box
	 * keep stale bytes, which reach only rows past M of the product) */
	const int xbox = S::SHARE_X ? std::min(GT_BM / S::CL, (M + 7) / 8 * 8) : GT_BM;
	const CUtensorMap tx = gt_map(encode, x, M, K, xbox), tw = gt_map(encode, W, 2 * F, K, S::BF);
	const int ctas = S::rows(M) * S::cols(F) * S::CL;
	gt_config<S> c(ctas < max_ctas ? ctas : max_ctas, stream);
	CUDA_CHECK(cudaLaunchKernelEx(&c.cfg, gt_kernel<S, E>, ep, tx, tw, M, F, K, xbox));
}

#endif
