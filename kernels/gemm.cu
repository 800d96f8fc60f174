/*
 * gemm through cuBLASLt (formula, shapes and aliasing in gemm.h; reference kn_gemm_ref).
 *
 * Layouts: cuBLASLt is column-major. A row-major (R, C) matrix is the column-major (C, R) matrix
 * with leading dimension C, so
 *   W row-major (N, K)  = column-major (K, N), ld K  → A, opA = T   (op(A) is (N, K))
 *   x row-major (M, K)  = column-major (K, M), ld K  → B, opB = N   (op(B) is (K, M))
 *   y row-major (M, N)  = column-major (N, M), ld N  → D (and C = residual, same layout)
 * and D = op(A)·op(B) = W·xᵀ = (x·Wᵀ)ᵀ, i.e. y row-major. The TN form is the one cuBLASLt's
 * Hopper kernels prefer.
 *
 * Output type: kn_gemm_cuda and kn_gemm_bias_cuda write bf16 (C and D layouts CUDA_R_16BF),
 * kn_gemm_f32_cuda fp32 (CUDA_R_32F, the residual then fp32 too), kn_gemm_f16_cuda fp16
 * (CUDA_R_16F; the GEMV's store rounds its fp32 sum the same way); A and B are bf16 (CUDA_R_16F
 * for kn_gemm_f32_f16_cuda) and the compute type CUBLAS_COMPUTE_32F always.
 *
 * Algorithm choice: the first call for a (M, N, K, residual?, bias?, input type, output type,
 * alignment) key builds the matmul descriptor and layouts, asks cublasLtMatmulAlgoGetHeuristic
 * for its best algorithm within the ctx's workspace, and keeps all of it in a small table
 * (linear search, round-robin eviction);
 * later calls with the key only call cublasLtMatmul. kn_gemm_f32_tune replaces that first choice
 * by the fastest of up to 2 · GEMM_TUNE_MAX candidates, timed on the device (the decoder does it
 * at start-up for its full-step shape: the heuristic's first pick is up to 9% slower there,
 * tests/bench/bench_gemm_cuda).
 *
 * Small M (decode of a few sequences, M ≤ GEMV_MAX_M = 4, no bias): cuBLASLt's kernels reach only
 * 1.3–2.4 TB/s on these weight-streaming shapes, so our own kernel runs them instead — the whole
 * product is one read of W, and that is what it is built to do at full bandwidth:
 *
 *   W (N, K) in row groups of ROWS rows; CTA b of G owns groups b, b+G, b+2G, …
 *   a CTA = 8 warps = 256 lanes; lane t takes the 16-byte pieces k = t, t+256, t+512, … of
 *   each of its group's rows (UNROLL × ROWS loads in flight), and the same pieces of the M
 *   rows of x from L1 (x is at most 4 rows: it stays cached; at 8 rows the FMAs on CUDA
 *   cores and the L1 traffic of x made it slower than cuBLASLt's tensor-core kernels, 3.25
 *   against 2.60 ms per 8-sequence step on an H100)
 *   fp32 sums: one fmaf chain per lane in k order, reduced across the warp (shuffles) and
 *   the warps (shared memory), the residual added before the one rounding
 *
 * The grid is capped at ctas_per_sm × SMs (and at the CTAs that fit at once), each CTA looping
 * over its groups, so that every CTA is resident from the start. Then the ramp of a small
 * projection (N = 2048: 8 MB, ~3 µs of DRAM time) can hide under its predecessor: under PDL
 * (pdl.cuh) the CTAs start while the previous kernel still runs and, before kn_pdl_wait, ask the
 * L2 for their first pf groups (cp.async.bulk.prefetch.L2) and load their first pieces of W into
 * registers (and, with the RMSNorm inside, the norm weight: a weight too); only x and the
 * residual, which the predecessor may write, are read after the wait.
 * While looping, each CTA keeps prefetching pf groups ahead. The configuration per shape
 * (gemv_pick) came from a sweep on an H100 (bench_decode_cuda table 2, B = 1, graph µs, before
 * → after this design): qkv 8.01 → 6.10, o 4.66 → 3.31, gate_up 20.65 → 17.53, down 10.34 →
 * 9.05, LM head 228.7 → 199.7 (2.1–2.7 TB/s → 2.5–3.1 TB/s). No configuration changes the
 * order of the sums, so all give the same bits (and the same as the kernel before them).
 * The kernel is a template on the output (and residual) type: bf16 (kn_gemm_cuda: the residual
 * widened, added, one rounding) or fp32 (kn_gemm_f32_cuda: the same sum stored as it is), so
 * the bf16 instances are the very code they were and the fp32 ones differ only in the store;
 * and on the operands' type (F16: x and W fp16, kn_gemm_f32_f16_cuda), which changes only how
 * an 8-element piece is widened to fp32 (both exactly), not the sums.
 * Needs K % 8 == 0 and 16-byte aligned x and W (true for the model); otherwise cuBLASLt runs it.
 *
 * RMSNorm fused into the GEMV (kn_gemm_f32_rmsnorm_cuda, M ≤ 4, K ≤ 2048): before its sums each
 * CTA normalises the M rows of x into shared memory with rmsnorm.cuh's code, the very code of
 * kn_rmsnorm(_f16)'s register kernel on the same 256-thread block, so the rows are the bits that
 * kernel would write; the sums then read them from shared memory instead of global memory. One
 * launch instead of two for each of the decoder's qkv and gate/up projections in a decode step
 * of ≤ 4 sequences (56 of its 57 RMSNorms), and no 16-bit row through global memory. Each CTA
 * reads the M fp32 rows (8 KiB each at D = 2048) from L2: ~4 MiB a projection at M = 1, ~12
 * MiB at M = 4 (about 400 CTAs), against 17–50 MB of weights from DRAM. QVL_FUSE_RMSNORM=0 in
 * the environment runs the two kernels instead (A/B).
 *
 * Bias (kn_gemm_bias_cuda): plans with has_bias carry CUBLASLT_EPILOGUE_BIAS and a bf16 bias
 * type; the bias pointer is a per-call attribute of the cached descriptor, set before each
 * cublasLtMatmul (cuBLASLt reads it at enqueue time, so later changes do not affect a queued
 * call). The bias vector has one entry per row of the column-major D, i.e. per output feature n.
 */
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <type_traits>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "gemm.h"
#include "gemm_glu_tma.h"
#include "gemm_wgmma.h"
#include "silu_mul.h"
#include "pdl.cuh"
#include "rmsnorm.cuh"
#include "rmsnorm.h"

#define CUBLAS_CHECK(call)                                                                 \
	do {                                                                               \
		cublasStatus_t st_ = (call);                                               \
		if (st_ != CUBLAS_STATUS_SUCCESS) {                                        \
			fprintf(stderr, "<2>[cuda] %s:%d: %s failed: %s (%d)\n", __FILE__,       \
				__LINE__, #call, cublasGetStatusString(st_), (int)st_);          \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define GEMM_CACHE 256   /* plans (host state only): the graph ladder alone makes ~160 */
#define GEMM_TUNE_MAX 8     /* cuBLASLt candidates kn_gemm_f32_tune times, twice over */
static_assert(KN_GEMM_TUNE_WGMMA >= 2 * GEMM_TUNE_MAX, "gemm_wgmma's index is no candidate's");

struct gemm_plan {
	int used;
	int pinned;                     /* tuned (kn_gemm_*_tune): never evicted */
	int M, N, K, has_bias;
	int has_res;                    /* 0 none, 1 another buffer, 2 in place (y is it) */
	cudaDataType_t in;              /* of A and B: CUDA_R_16BF or CUDA_R_16F */
	cudaDataType_t out;             /* of C and D: CUDA_R_16BF or CUDA_R_32F */
	unsigned align;                 /* min alignment in bytes of the four pointers, ≤ 256 */
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t a, b, c; /* c is the layout of both C and D */
	cublasLtMatmulAlgo_t algo;
	int use_wgmma;                  /* tuned: gemm_wgmma beat cuBLASLt for this key */
	int use_glu;                    /* tuned (fp16 gate/up keys): the fused form kn_gemm_glu_cuda
					 * runs (KN_GEMM_GLU_*; 0: none) */
};

struct kn_gemm_ctx {
	cublasLtHandle_t lt;
	void *workspace;
	size_t workspace_bytes;
	int next_evict;
	kn_gemm_wgmma *wgmma;           /* NULL off sm_90 (or QVL_GEMM_WGMMA=0) */
	kn_glu_tma *glu_tma;            /* NULL off sm_90 (or QVL_GLU_TMA=0) */
	struct gemm_plan plans[GEMM_CACHE];
};

extern "C" kn_gemm_ctx *kn_gemm_ctx_new(size_t workspace_bytes)
{
	kn_gemm_ctx *ctx = (kn_gemm_ctx *)calloc(1, sizeof(*ctx));
	if (!ctx) {
		fprintf(stderr, "<2>[cuda] kn_gemm_ctx_new: out of memory\n");
		abort();
	}
	CUBLAS_CHECK(cublasLtCreate(&ctx->lt));
	ctx->workspace_bytes = workspace_bytes;
	if (workspace_bytes)
		CUDA_CHECK(cudaMalloc(&ctx->workspace, workspace_bytes));
	ctx->wgmma = kn_gemm_wgmma_new();
	ctx->glu_tma = kn_glu_tma_new();
	return ctx;
}

static void plan_release(struct gemm_plan *p)
{
	if (!p->used)
		return;
	CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
	CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
	CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->c));
	CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
	p->used = 0;
	p->pinned = 0;
}

extern "C" void kn_gemm_ctx_free(kn_gemm_ctx *ctx)
{
	if (!ctx)
		return;
	CUDA_CHECK(cudaDeviceSynchronize()); /* no matmul may still use the workspace */
	for (int i = 0; i < GEMM_CACHE; i++)
		plan_release(&ctx->plans[i]);
	if (ctx->workspace)
		CUDA_CHECK(cudaFree(ctx->workspace));
	kn_gemm_wgmma_free(ctx->wgmma);
	kn_glu_tma_free(ctx->glu_tma);
	CUBLAS_CHECK(cublasLtDestroy(ctx->lt));
	free(ctx);
}

static unsigned ptr_align(const void *p)
{
	uintptr_t u = (uintptr_t)p;
	unsigned a = 256;
	while (a > 1 && (u & (a - 1)))
		a >>= 1;
	return a;
}

/* cuBLASLt's first n (≤ GEMM_TUNE_MAX) algorithms for plan p's descriptor and layouts within the
 * ctx's workspace and p's alignment, best first: how many it found (only usable ones). With
 * only_id ≥ 0, the heuristic is restricted to that algorithm id
 * (CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID), which lists other tile and stage configurations of it
 * than the unrestricted ranking's first n. */
static int plan_heuristics(kn_gemm_ctx *ctx, const struct gemm_plan *p, int n,
			   cublasLtMatmulHeuristicResult_t *res, int only_id)
{
	cublasLtMatmulPreference_t pref;
	CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
	if (only_id >= 0) {
		cublasLtMatmulAlgo_t base;
		if (cublasLtMatmulAlgoInit(ctx->lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, p->in, p->in,
					   p->out, p->out, only_id, &base) !=
		    CUBLAS_STATUS_SUCCESS) {
			CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
			return 0;
		}
		uint32_t mode = CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID;
		if (cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_SEARCH_MODE, &mode,
							 sizeof(mode)) != CUBLAS_STATUS_SUCCESS) {
			CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
			return 0;
		}
		for (int i = 0; i < n; i++)
			res[i].algo = base;
	}
	uint64_t ws = ctx->workspace_bytes;
	uint32_t al = p->align;
	CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
		pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
	CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
		pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof(al)));
	CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
		pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof(al)));
	CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
		pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof(al)));
	CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
		pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof(al)));
	int found = 0;
	cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->a, p->b, p->c, p->c,
							   pref, n, res, &found);
	if (only_id < 0)
		CUBLAS_CHECK(st);
	else if (st != CUBLAS_STATUS_SUCCESS)
		found = 0;   /* no configuration of that id: the unrestricted candidates stand */
	CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
	int k = 0;
	for (int i = 0; i < found; i++)
		if (res[i].state == CUBLAS_STATUS_SUCCESS)
			res[k++] = res[i];
	return k;
}

static void plan_build(kn_gemm_ctx *ctx, struct gemm_plan *p, int M, int N, int K, int has_res,
		       int has_bias, cudaDataType_t in, cudaDataType_t out, unsigned align)
{
	p->M = M, p->N = N, p->K = K, p->has_res = has_res, p->has_bias = has_bias, p->out = out;
	p->in = in;
	p->align = align;
	p->use_wgmma = 0;
	p->use_glu = 0;
	CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
	cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
	CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
						    sizeof(ta)));
	CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
						    sizeof(tb)));
	if (has_bias) {
		cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
		cudaDataType_t bt = CUDA_R_16BF;
		CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
							    &epi, sizeof(epi)));
		CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
			p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
	}
	CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, in, K, N, K));
	CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, in, K, M, K));
	CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, out, N, M, N));

	cublasLtMatmulHeuristicResult_t res;
	if (plan_heuristics(ctx, p, 1, &res, -1) < 1) {
		fprintf(stderr, "<2>[cuda] gemm: no cuBLASLt algorithm for M=%d N=%d K=%d\n", M, N,
			K);
		abort();
	}
	p->algo = res.algo;
	p->used = 1;
}

/* A prompt step's product of M rows (past the decode graphs' sizes) whose M was not tuned takes
 * the algorithm that kn_gemm_*_tune kept for the nearest tuned M above it of the same shape and
 * types (at most twice M), where cuBLASLt accepts it for M: the engine tunes its
 * max_num_batched_tokens, while the steps at the edges of a wave of prompts hold a few rows
 * less. */
static void plan_borrow_tuned(kn_gemm_ctx *ctx, struct gemm_plan *p)
{
	if (p->M <= KN_GEMM_WGMMA_MAX_M)
		return;
	const struct gemm_plan *best = NULL;
	for (int i = 0; i < GEMM_CACHE; i++) {
		const struct gemm_plan *q = &ctx->plans[i];
		if (q != p && q->used && q->pinned && q->N == p->N && q->K == p->K &&
		    q->has_res == p->has_res && q->has_bias == p->has_bias && q->in == p->in &&
		    q->out == p->out && q->align == p->align && q->M > p->M && q->M <= 2 * p->M &&
		    (!best || q->M < best->M))
			best = q;
	}
	cublasLtMatmulHeuristicResult_t r;
	if (best && cublasLtMatmulAlgoCheck(ctx->lt, p->desc, p->a, p->b, p->c, p->c, &best->algo,
					    &r) == CUBLAS_STATUS_SUCCESS &&
	    r.workspaceSize <= ctx->workspace_bytes)
		p->algo = best->algo;
	/* the fused gate/up form of the nearest tuned M (gemm_glu_tma takes any rows) */
	if (best)
		p->use_glu = best->use_glu;
}

static struct gemm_plan *plan_get(kn_gemm_ctx *ctx, int M, int N, int K, int has_res,
				  int has_bias, cudaDataType_t in, cudaDataType_t out,
				  unsigned align)
{
	for (int i = 0; i < GEMM_CACHE; i++) {
		struct gemm_plan *p = &ctx->plans[i];
		if (p->used && p->M == M && p->N == N && p->K == K && p->has_res == has_res &&
		    p->has_bias == has_bias && p->in == in && p->out == out && p->align == align)
			return p;
	}
	struct gemm_plan *p = NULL;
	for (int i = 0; i < GEMM_CACHE && !p; i++)
		if (!ctx->plans[i].used)
			p = &ctx->plans[i];
	if (!p) { /* full: evict round-robin (the plan is only host state), never a tuned one */
		for (int tries = 0; tries < GEMM_CACHE && !p; tries++) {
			struct gemm_plan *q = &ctx->plans[ctx->next_evict];
			ctx->next_evict = (ctx->next_evict + 1) % GEMM_CACHE;
			if (!q->pinned)
				p = q;
		}
		if (!p) {
			fprintf(stderr, "<2>[cuda] gemm: every one of %d plans is tuned\n", GEMM_CACHE);
			abort();
		}
		plan_release(p);
	}
	plan_build(ctx, p, M, N, K, has_res, has_bias, in, out, align);
	plan_borrow_tuned(ctx, p);
	return p;
}

/* ---- small M: our own weight-streaming kernel ---- */

#define GEMV_MAX_M 4
static_assert(GEMV_MAX_M < KN_GEMM_WGMMA_MIN_M, "gemm_wgmma takes no GEMV rows");
#define GEMV_WARPS 8
#define GEMV_THREADS (GEMV_WARPS * 32)
#define GEMV_NORM_NV RMSNORM_REG_SHORT   /* fused RMSNorm: rows of ≤ 2048 columns */
static_assert(GEMV_THREADS == RMSNORM_THREADS, "the fused RMSNorm is rmsnorm.cu's block");

/* One launch configuration of the GEMV: rows per group and 16-byte loads per lane and row in
 * flight (template instances: rows 2, 4 or 8; unroll 2), CTAs per multiprocessor (the
 * grid cap; never more than fit at once) and row groups prefetched into L2 ahead of use. */
struct gemv_cfg {
	int rows, unroll, ctas_per_sm, pf;
};

/* The fused RMSNorm's inputs (kn_gemm_f32_rmsnorm_cuda): the fp32 rows, the norm weight, eps. */
struct gemv_norm {
	const float4 *x;
	const uint2 *w;
	float eps;
};

static __device__ __forceinline__ void bf16x8_f32(uint4 u, float f[8])
{
	const unsigned w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
	for (int i = 0; i < 4; i++) {
		f[2 * i] = __uint_as_float(w[i] << 16);
		f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
	}
}

/* 8 fp16 (IEEE binary16) in a uint4 to fp32, exactly. */
static __device__ __forceinline__ void f16x8_f32(uint4 u, float f[8])
{
	const unsigned w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__half2 h = *(const __half2 *)&w[i];
		float2 t = __half22float2(h);
		f[2 * i] = t.x;
		f[2 * i + 1] = t.y;
	}
}

/* x8_f32<F16>: the operands' 8-element pieces to fp32, bf16 or fp16. */
template <bool F16>
static __device__ __forceinline__ void x8_f32(uint4 u, float f[8])
{
	if (F16)
		f16x8_f32(u, f);
	else
		bf16x8_f32(u, f);
}

static __device__ __forceinline__ uint16_t f32_bf16_rn(float f)
{
	unsigned u = __float_as_uint(f);
	if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu))
		return (uint16_t)((u >> 16) | 0x40);   /* NaN stays NaN */
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* The GEMV's output element: bf16 (the sum plus the widened residual, rounded once) or fp32
 * (the sum plus the residual, stored as it is). */
static __device__ __forceinline__ float gemv_widen(uint16_t r)
{
	return __uint_as_float((unsigned)r << 16);
}
static __device__ __forceinline__ float gemv_widen(float r)
{
	return r;
}
static __device__ __forceinline__ void gemv_store(uint16_t *y, float v)
{
	*y = f32_bf16_rn(v);
}
static __device__ __forceinline__ void gemv_store(float *y, float v)
{
	*y = v;
}
static __device__ __forceinline__ float gemv_widen(__half r)
{
	return __half2float(r);
}
static __device__ __forceinline__ void gemv_store(__half *y, float v)
{
	*y = __float2half_rn(v);
}

/* cuBLASLt's C and D type for the output type T (uint16_t: bf16). */
template <typename T> static cudaDataType_t out_type(void);
template <> cudaDataType_t out_type<float>(void)
{
	return CUDA_R_32F;
}
template <> cudaDataType_t out_type<uint16_t>(void)
{
	return CUDA_R_16BF;
}
template <> cudaDataType_t out_type<__half>(void)
{
	return CUDA_R_16F;
}

/* L2 prefetch of row group g (rows g·ROWS … , clipped at N) of W; kv = K/8 uint4 per row. */
template <int ROWS>
static __device__ __forceinline__ void gemv_prefetch(const uint4 *W, int g, int N, int kv)
{
	int n0 = g * ROWS, nr = N - n0 < ROWS ? N - n0 : ROWS;
	kn_prefetch_l2(W + (size_t)n0 * kv, (unsigned)nr * (unsigned)kv * 16u);
}

/* The lane's UNROLL × ROWS pieces of row group n0 at k0, k0 + 256, …; zeros past K or N. */
template <int ROWS, int UNROLL>
static __device__ __forceinline__ void gemv_load(uint4 (&w)[UNROLL][ROWS], const uint4 *W, int n0,
						 int k0, int N, int kv)
{
#pragma unroll
	for (int u = 0; u < UNROLL; u++)
#pragma unroll
		for (int r = 0; r < ROWS; r++) {
			int k = k0 + u * GEMV_THREADS;
			w[u][r] = k < kv && n0 + r < N ? __ldcs(W + (size_t)(n0 + r) * kv + k) :
							 make_uint4(0, 0, 0, 0);
		}
}

/*
 * y (M, N) = x (M, K) · Wᵀ (+ residual), y and residual of type T (uint16_t: bf16, or float).
 * CTA b owns row groups b, b + gridDim.x, …
 *
 * Order of events: the L2 prefetch of the first pf groups and the loads of the first group's
 * first pieces of W into registers (NORM: and the norm weight) come before kn_pdl_wait (weights
 * are not written by the step's kernels, pdl.cuh); x and the residual are read after it. The
 * sums run over k in the same order for either T (one fmaf chain per lane, k ascending, then the
 * same shuffle and warp trees), so the fp32 output rounded to bf16 is the bf16 output.
 */
template <int M, int ROWS, int UNROLL, typename T, bool F16, bool NORM>
static __global__ void __launch_bounds__(GEMV_THREADS)
gemv_kernel(T *y, const uint4 *x, const uint4 *W, const T *residual, int N, int K, int pf,
	    const float4 *xn, const uint2 *nw, float eps)
{
	__shared__ float part[2][GEMV_WARPS][M * ROWS];
	extern __shared__ uint4 gemv_hs[];   /* NORM: the M normalised rows, (M, K/8) pieces */
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int kv = K / 8;   /* uint4 per row */
	const int step = GEMV_THREADS;
	const int groups = (N + ROWS - 1) / ROWS;

	if ((int)threadIdx.x < pf) {
		int g = blockIdx.x + threadIdx.x * gridDim.x;
		if (g < groups)
			gemv_prefetch<ROWS>(W, g, N, kv);
	}
	uint4 w[UNROLL][ROWS];
	if ((int)blockIdx.x < groups)
		gemv_load<ROWS, UNROLL>(w, W, blockIdx.x * ROWS, threadIdx.x, N, kv);
	uint2 nwv[GEMV_NORM_NV];   /* NORM: the norm weight, read before the wait like W */
	if (NORM)
#pragma unroll
		for (int k = 0; k < GEMV_NORM_NV; k++) {
			int i = threadIdx.x + k * GEMV_THREADS;
			nwv[k] = i < K / 4 ? __ldg(&nw[i]) : make_uint2(0, 0);
		}
	kn_pdl_wait();
	kn_pdl_trigger();
	if (NORM) {   /* kn_rmsnorm(_f16)'s rows, computed here by its own code: the same bits */
#pragma unroll
		for (int m = 0; m < M; m++)
			rmsnorm_row_reg<GEMV_NORM_NV, F16>((uint2 *)(gemv_hs + (size_t)m * kv),
							    xn + (size_t)m * (K / 4), nwv, K / 4, eps);
		__syncthreads();
	}
	bool loaded = true;   /* w holds the first pieces of the CTA's first group */
	int par = 0;
	for (int g = blockIdx.x; g < groups; g += gridDim.x, par ^= 1) {
		if (pf && threadIdx.x == 0 && g + pf * gridDim.x < groups)
			gemv_prefetch<ROWS>(W, g + pf * gridDim.x, N, kv);
		const int n0 = g * ROWS;
		/* the residual of the element this thread writes at the end of the group, loaded
		 * now so that its latency hides under the sums */
		float res = 0.f;
		if (residual && (int)threadIdx.x < M * ROWS && n0 + (int)threadIdx.x % ROWS < N)
			res = gemv_widen(residual[(size_t)(threadIdx.x / ROWS) * N + n0 +
						  threadIdx.x % ROWS]);
		float acc[M][ROWS];
#pragma unroll
		for (int m = 0; m < M; m++)
#pragma unroll
			for (int r = 0; r < ROWS; r++)
				acc[m][r] = 0.f;
		for (int k0 = threadIdx.x; k0 < kv; k0 += step * UNROLL) {
			if (!loaded)
				gemv_load<ROWS, UNROLL>(w, W, n0, k0, N, kv);
			loaded = false;
#pragma unroll
			for (int u = 0; u < UNROLL; u++) {
				int k = k0 + u * step;
				if (k >= kv)
					break;
				float wf[ROWS][8];
#pragma unroll
				for (int r = 0; r < ROWS; r++)
					x8_f32<F16>(w[u][r], wf[r]);
#pragma unroll
				for (int m = 0; m < M; m++) {
					float xf[8];
					x8_f32<F16>(NORM ? gemv_hs[(size_t)m * kv + k] :
							   __ldg(x + (size_t)m * kv + k),
						    xf);
#pragma unroll
					for (int r = 0; r < ROWS; r++)
#pragma unroll
						for (int i = 0; i < 8; i++)
							acc[m][r] = fmaf(xf[i], wf[r][i], acc[m][r]);
				}
			}
		}
		/* part[] alternates between groups: a warp that runs ahead into the next group
		 * writes the other half while warp 0 may still read this one, and it cannot get two
		 * groups ahead past the __syncthreads below. */
#pragma unroll
		for (int m = 0; m < M; m++)
#pragma unroll
			for (int r = 0; r < ROWS; r++) {
#pragma unroll
				for (int o = 16; o > 0; o >>= 1)
					acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], o);
				if (lane == 0)
					part[par][warp][m * ROWS + r] = acc[m][r];
			}
		__syncthreads();
		if (threadIdx.x < M * ROWS) {
			const int m = threadIdx.x / ROWS, n = n0 + threadIdx.x % ROWS;
			float v = 0.f;
#pragma unroll
			for (int w8 = 0; w8 < GEMV_WARPS; w8++)
				v += part[par][w8][threadIdx.x];
			if (n < N) {
				size_t at = (size_t)m * N + n;
				if (residual)
					v += res;
				gemv_store(y + at, v);
			}
		}
	}
}

/* Whether the GEMV can run y = x·Wᵀ for this shape and these pointers. */
static bool gemv_fits(const void *x, const void *W, int M, int K)
{
	return M >= 1 && M <= GEMV_MAX_M && K >= 8 && K % 8 == 0 &&
	       ((uintptr_t)x | (uintptr_t)W) % 16 == 0;
}

static int gemv_sms(void)
{
	static int sms;   /* the device's; all devices of one host are alike here */
	if (!sms) {
		int dev, n;
		CUDA_CHECK(cudaGetDevice(&dev));
		CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
		sms = n;
	}
	return sms;
}

template <int M, int ROWS, int UNROLL, typename T, bool F16, bool NORM>
static void gemv_launch_t(const struct gemv_cfg *c, T *y, const uint4 *x, const uint4 *W,
			  const T *residual, int N, int K, const struct gemv_norm *nm,
			  cudaStream_t stream)
{
	void (*kernel)(T *, const uint4 *, const uint4 *, const T *, int, int, int, const float4 *,
		       const uint2 *, float) = gemv_kernel<M, ROWS, UNROLL, T, F16, NORM>;
	/* NORM: the normalised rows in dynamic shared memory (≤ 4 · 2048 · 2 = 16 KiB) */
	const size_t smem = NORM ? (size_t)M * GEMV_NORM_NV * GEMV_THREADS * 4 * 2 : 0;
	static int fit;   /* CTAs of this instance that fit on a multiprocessor (a race repeats it) */
	if (!fit) {
		int n;
		CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, GEMV_THREADS,
									 smem));
		fit = n > 0 ? n : 1;
	}
	int groups = (N + ROWS - 1) / ROWS;
	int cap = (c->ctas_per_sm < fit ? c->ctas_per_sm : fit) * gemv_sms();
	int per = (groups + cap - 1) / cap;         /* groups per CTA; then as few CTAs as */
	int grid = (groups + per - 1) / per;        /* give each of them exactly that many */
	kn_launch(kernel, grid, GEMV_THREADS, smem, stream, y, x, W, residual, N, K, c->pf,
		  nm ? nm->x : (const float4 *)NULL, nm ? nm->w : (const uint2 *)NULL,
		  nm ? nm->eps : 0.f);
}

/* The (rows, unroll) instances built, per M: those gemv_pick chooses (a tuning build may define
 * a longer list before including this file). */
#ifndef GEMV_INSTANCES
#define GEMV_INSTANCES(m) GEMV_CASE(m, 2, 2) GEMV_CASE(m, 4, 2) GEMV_CASE(m, 8, 2)
#endif

template <typename T, bool F16, bool NORM>
static void gemv_launch(const struct gemv_cfg *c, T *y, const uint16_t *x, const uint16_t *W,
			const T *residual, int M, int N, int K, const struct gemv_norm *nm,
			cudaStream_t stream)
{
	const uint4 *xv = (const uint4 *)x, *Wv = (const uint4 *)W;
#define GEMV_CASE(m, r, u)                                                                   \
	if (M == m && c->rows == r && c->unroll == u) {                                      \
		gemv_launch_t<m, r, u, T, F16, NORM>(c, y, xv, Wv, residual, N, K, nm, stream); \
		KN_CHECK_LAUNCH();                                                           \
		return;                                                                      \
	}
	GEMV_INSTANCES(1)
	GEMV_INSTANCES(2)
	GEMV_INSTANCES(3)
	GEMV_INSTANCES(4)
#undef GEMV_CASE
	fprintf(stderr, "<2>[cuda] gemv: no kernel for M=%d rows=%d unroll=%d\n", M, c->rows,
		c->unroll);
	abort();
}

/* The configuration for a shape, from a sweep over rows {2, 4, 8} × unroll {2, 3} × CTAs per
 * multiprocessor {2, 4, 8} × pf {0, 1, 2} on an H100 SXM, each projection timed after a one-CTA
 * kernel as in a decode step (graph µs, old kernel → this one). M = 1: rows 8, 4 CTAs per SM, no
 * L2 prefetch were within 0.1 µs of the best for o, gate_up, down and the LM head; qkv (N 4096)
 * liked 4 rows with one group prefetched. M = 2, 4 (swept less; batch 1 is the target): 2 rows,
 * 8 CTAs, pf 1 for the K = 2048 projections (qkv 7.2 → 7.7 and 10.5 → 9.7, o 4.5 → 4.2 and
 * 6.5 → 5.3, gate_up 18.0 → 18.5 and 25.2 → 24.2); down 8 rows at M = 2 (10.1 → 9.2), 4 rows
 * and 4 CTAs above (12.2 → 10.9); the LM head 8 rows at M = 2 (198 → 204: the one loss), 4
 * rows with pf 1 above (273 → 254). */
static struct gemv_cfg gemv_pick(int M, int N, int K)
{
	struct gemv_cfg c = { 8, 2, 4, 0 };
	if (M == 1) {
		if (K <= 2048 && N > 2048 && N <= 8192) {
			c.rows = 4;
			c.pf = 1;
		}
	} else if (N > 65536) {               /* the LM head */
		c.rows = M == 2 ? 8 : 4;
		c.ctas_per_sm = 8;
		c.pf = M == 2 ? 0 : 1;
	} else if (K > 4096) {                /* down: fewer, longer rows */
		c.rows = M == 2 ? 8 : 4;
		c.ctas_per_sm = M == 2 ? 8 : 4;
	} else {
		c.rows = 2;
		c.ctas_per_sm = 8;
		c.pf = 1;
	}
	return c;
}

/* Runs y = x·Wᵀ (+ residual) for M ≤ GEMV_MAX_M when the layout allows; false otherwise. */
template <typename T, bool F16>
static bool gemv_run(T *y, const uint16_t *x, const uint16_t *W, const T *residual, int M, int N,
		     int K, cudaStream_t stream)
{
	if (!gemv_fits(x, W, M, K))
		return false;
	struct gemv_cfg c = gemv_pick(M, N, K);
	gemv_launch<T, F16, false>(&c, y, x, W, residual, M, N, K, NULL, stream);
	return true;
}

/* The cached plan of a cuBLASLt call: its key is the shape, the operand and output types and
 * the alignment of the pointers. */
template <typename T, bool F16>
static struct gemm_plan *plan_of_call(kn_gemm_ctx *ctx, const T *y, const uint16_t *x,
				      const uint16_t *W, const uint16_t *bias, const T *residual,
				      int M, int N, int K)
{
	unsigned align = ptr_align(y);
	unsigned a2 = ptr_align(x), a3 = ptr_align(W), a4 = residual ? ptr_align(residual) : 256;
	if (a2 < align)
		align = a2;
	if (a3 < align)
		align = a3;
	if (a4 < align)
		align = a4;
	const cudaDataType_t out = out_type<T>();
	const cudaDataType_t in = F16 ? CUDA_R_16F : CUDA_R_16BF;
	/* in place or not matters to gemm_wgmma's split-K epilogue (a tuned choice is for one) */
	const int has_res = !residual ? 0 : residual == y ? 2 : 1;
	return plan_get(ctx, M, N, K, has_res, bias != NULL, in, out, align);
}

/* gemm_wgmma takes fp32 (with or without residual) and fp16 outputs; bf16 ones stay here. */
template <typename T>
static bool wgmma_fits(const kn_gemm_ctx *ctx, const T *y, const uint16_t *x, const uint16_t *W,
		       const T *residual, int M, int N, int K)
{
	constexpr bool f32 = std::is_same<T, float>::value, f16o = std::is_same<T, __half>::value;
	if constexpr (!f32 && !f16o)
		return false;
	else
		return kn_gemm_wgmma_fits(ctx->wgmma, y, x, W, (const float *)residual, M, N, K,
					  f16o);
}

template <typename T, bool F16>
static void wgmma_launch(kn_gemm_ctx *ctx, T *y, const uint16_t *x, const uint16_t *W,
			 const T *residual, int M, int N, int K, cudaStream_t stream)
{
	kn_gemm_wgmma_run(ctx->wgmma, y, x, W, (const float *)residual, M, N, K, F16,
			  std::is_same<T, __half>::value, stream);
}

/* The common path of the entry points: T is the output and residual type (uint16_t: bf16,
 * float: fp32, __half: fp16); bias NULL: no epilogue (a bias is bf16 and comes with bf16 output
 * only). */
template <typename T, bool F16>
static void gemm_run(kn_gemm_ctx *ctx, T *y, const uint16_t *x, const uint16_t *W,
		     const uint16_t *bias, const T *residual, int M, int N, int K,
		     cudaStream_t stream)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0 && !bias) { /* empty sum: y = residual or 0 */
		size_t bytes = (size_t)M * N * sizeof(T);
		if (residual && residual != y)
			CUDA_CHECK(cudaMemcpyAsync(y, residual, bytes, cudaMemcpyDeviceToDevice,
						   stream));
		else if (!residual)
			CUDA_CHECK(cudaMemsetAsync(y, 0, bytes, stream));
		return;
	}
	if (K <= 0) { /* y = bias (+ residual) has no product: not a shape the model has */
		fprintf(stderr, "<2>[cuda] gemm: bias with K = %d is not supported\n", K);
		abort();
	}
	if (!bias && gemv_run<T, F16>(y, x, W, residual, M, N, K, stream))
		return;
	struct gemm_plan *p = plan_of_call<T, F16>(ctx, y, x, W, bias, residual, M, N, K);
	if (p->use_wgmma && wgmma_fits<T>(ctx, y, x, W, residual, M, N, K)) {
		wgmma_launch<T, F16>(ctx, y, x, W, residual, M, N, K, stream);
		return;
	}
	if (bias)
		CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
			p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
	const float alpha = 1.f, beta = residual ? 1.f : 0.f;
	const void *c = residual ? (const void *)residual : (const void *)y;
	CUBLAS_CHECK(cublasLtMatmul(ctx->lt, p->desc, &alpha, W, p->a, x, p->b, &beta, c, p->c, y,
				    p->c, &p->algo, ctx->workspace, ctx->workspace_bytes, stream));
}

extern "C" void kn_gemm_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *W,
			     const uint16_t *residual, int M, int N, int K, cudaStream_t stream)
{
	gemm_run<uint16_t, false>(ctx, y, x, W, NULL, residual, M, N, K, stream);
}

extern "C" void kn_gemm_bias_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x,
				  const uint16_t *W, const uint16_t *bias, const uint16_t *residual,
				  int M, int N, int K, cudaStream_t stream)
{
	gemm_run<uint16_t, false>(ctx, y, x, W, bias, residual, M, N, K, stream);
}

extern "C" void kn_gemm_f32_cuda(kn_gemm_ctx *ctx, float *y, const uint16_t *x, const uint16_t *W,
				 const float *residual, int M, int N, int K, cudaStream_t stream)
{
	gemm_run<float, false>(ctx, y, x, W, NULL, residual, M, N, K, stream);
}

extern "C" void kn_gemm_f16_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x,
				 const uint16_t *W, int M, int N, int K, cudaStream_t stream)
{
	gemm_run<__half, true>(ctx, (__half *)y, x, W, NULL, NULL, M, N, K, stream);
}

extern "C" void kn_gemm_f32_f16_cuda(kn_gemm_ctx *ctx, float *y, const uint16_t *x,
				     const uint16_t *W, const float *residual, int M, int N, int K,
				     cudaStream_t stream)
{
	gemm_run<float, true>(ctx, y, x, W, NULL, residual, M, N, K, stream);
}

static bool gemv_norm_enabled(void)
{
	static int on = -1;   /* read once */
	if (on < 0) {
		const char *e = getenv("QVL_FUSE_RMSNORM");
		on = !(e && *e == '0');
	}
	return on;
}

extern "C" void kn_gemm_f32_rmsnorm_cuda(kn_gemm_ctx *ctx, float *y, uint16_t *h, const float *x,
					 const uint16_t *norm_w, float eps, const uint16_t *W,
					 int M, int N, int K, bool f16, cudaStream_t stream)
{
	if (M <= 0 || N <= 0)
		return;
	if (gemv_fits(x, W, M, K) && K <= 4 * GEMV_NORM_NV * GEMV_THREADS &&
	    (uintptr_t)norm_w % 8 == 0 && gemv_norm_enabled()) {
		struct gemv_cfg c = gemv_pick(M, N, K);
		struct gemv_norm nm = { (const float4 *)x, (const uint2 *)norm_w, eps };
		if (f16)
			gemv_launch<float, true, true>(&c, y, NULL, W, NULL, M, N, K, &nm, stream);
		else
			gemv_launch<float, false, true>(&c, y, NULL, W, NULL, M, N, K, &nm, stream);
		return;
	}
	if (f16) {
		kn_rmsnorm_f16_cuda(h, x, norm_w, M, K, eps, stream);
		kn_gemm_f32_f16_cuda(ctx, y, h, W, NULL, M, N, K, stream);
	} else {
		kn_rmsnorm_cuda(h, x, norm_w, M, K, eps, stream);
		kn_gemm_f32_cuda(ctx, y, h, W, NULL, M, N, K, stream);
	}
}

/* gemm_tune's candidates for plan p into res (2 · GEMM_TUNE_MAX): the heuristic's first
 * GEMM_TUNE_MAX, then the configurations of the first one's algorithm id that are not among
 * them (whole descriptors compared, so res is zeroed first). How many. */
static int tune_candidates(kn_gemm_ctx *ctx, const struct gemm_plan *p,
			   cublasLtMatmulHeuristicResult_t *res)
{
	memset(res, 0, 2 * GEMM_TUNE_MAX * sizeof(*res));
	const int n_first = plan_heuristics(ctx, p, GEMM_TUNE_MAX, res, -1);
	int id = -1;
	size_t wr;
	if (n_first < 1 ||
	    cublasLtMatmulAlgoConfigGetAttribute(&res[0].algo, CUBLASLT_ALGO_CONFIG_ID, &id,
						 sizeof(id), &wr) != CUBLAS_STATUS_SUCCESS ||
	    id < 0)
		return n_first;
	const int n_more = plan_heuristics(ctx, p, GEMM_TUNE_MAX, res + n_first, id);
	int n = n_first;
	for (int j = n_first; j < n_first + n_more; j++) {
		bool dup = false;
		for (int i = 0; i < n_first && !dup; i++)
			dup = !memcmp(&res[i].algo, &res[j].algo, sizeof(res[i].algo));
		if (!dup)
			res[n++] = res[j];
	}
	return n;
}

/* ms a launch of launch() (a cublasStatus_t), between events e0 and e1 on stream: one untimed
 * warm-up, then 5 timed; -1 for a candidate the library lists but cannot run here. */
template <typename F>
static float tune_time(F launch, cudaStream_t stream, cudaEvent_t e0, cudaEvent_t e1)
{
	enum { REPS = 5 };
	cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
	for (int r = 0; r <= REPS && st == CUBLAS_STATUS_SUCCESS; r++) {
		if (r == 1)
			CUDA_CHECK(cudaEventRecord(e0, stream));
		st = launch();
	}
	if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE)
		return -1;
	CUBLAS_CHECK(st);
	CUDA_CHECK(cudaEventRecord(e1, stream));
	CUDA_CHECK(cudaEventSynchronize(e1));
	float ms;
	CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
	return ms / REPS;
}

#define TUNE_ROT_MAX 64   /* weights a tuning rotates over */

/* Whether the tuning may run on stream: not while it is being captured. */
static bool tune_stream_free(cudaStream_t stream)
{
	cudaStreamCaptureStatus cs;
	CUDA_CHECK(cudaStreamIsCapturing(stream, &cs));
	return cs == cudaStreamCaptureStatusNone;
}

/* The weights of Ws that plan p's alignment allows (p is Ws[0]'s), at most TUNE_ROT_MAX, into
 * rot; how many. */
static int tune_rotation(const struct gemm_plan *p, const uint16_t *const *Ws, int n_W,
			 const uint16_t **rot)
{
	int n_rot = 0;
	for (int i = 0; i < n_W && n_rot < TUNE_ROT_MAX; i++)
		if (Ws[i] && ptr_align(Ws[i]) >= p->align)
			rot[n_rot++] = Ws[i];
	return n_rot;
}

/* kn_gemm_f32_tune, kn_gemm_f16_tune and kn_gemm_tune: T the output type, F16 the operands' (gemm.h).
 *
 * Candidates: the heuristic's first GEMM_TUNE_MAX, then up to GEMM_TUNE_MAX more from the
 * heuristic restricted to the first one's algorithm id (other tiles and stages of the same
 * kernel family; bench_gemm_cuda --exhaustive: on the decode shapes they hold the fastest plan
 * more often than the unrestricted ranking's tail), duplicates dropped.
 * Timing: launch r reads W = Ws[r mod n] over the whole run (warm-up and every candidate), so a
 * weight is read again only after n − 1 others: with the decoder's 28 layers that is every
 * launch from device memory, as in a step. Timed on one W, a projection of ≤ 50 MB would sit
 * in the H100's L2 and the kernel that computes fastest would win, not the one that streams
 * fastest, which is what a decode step of up to a few hundred rows needs. */
template <typename T, bool F16>
static int gemm_tune(kn_gemm_ctx *ctx, T *y, const uint16_t *x, const uint16_t *const *Ws,
		     int n_W, const T *residual, int M, int N, int K, cudaStream_t stream,
		     float *ms_first, float *ms_best)
{
	*ms_first = *ms_best = 0.f;
	if (M <= 0 || N <= 0 || K <= 0 || n_W < 1 || !Ws[0] || gemv_fits(x, Ws[0], M, K) ||
	    !tune_stream_free(stream))
		return -1;
	struct gemm_plan *p = plan_of_call<T, F16>(ctx, y, x, Ws[0], NULL, residual, M, N, K);
	const uint16_t *rot[TUNE_ROT_MAX];
	const int n_rot = tune_rotation(p, Ws, n_W, rot);
	cublasLtMatmulHeuristicResult_t res[2 * GEMM_TUNE_MAX];
	const int n = tune_candidates(ctx, p, res);
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	const float alpha = 1.f, beta = residual ? 1.f : 0.f;
	const void *c = residual ? (const void *)residual : (const void *)y;
	unsigned turn = 0;
	auto lt_run = [&](const cublasLtMatmulAlgo_t *algo) {
		return cublasLtMatmul(ctx->lt, p->desc, &alpha, rot[turn++ % n_rot], p->a, x, p->b,
				      &beta, c, p->c, y, p->c, algo, ctx->workspace,
				      ctx->workspace_bytes, stream);
	};
	/* the clocks up first: 20 runs of the first guess, untimed */
	for (int r = 0; r < 20 && n > 0; r++)
		CUBLAS_CHECK(lt_run(&res[0].algo));
	float ms[2 * GEMM_TUNE_MAX];
	for (int i = 0; i < n; i++)
		ms[i] = tune_time([&] { return lt_run(&res[i].algo); }, stream, e0, e1);
	/* gemm_wgmma, where it fits every weight of the rotation, on the same terms */
	float ms_w = -1;
	bool w_fits = true;
	for (int i = 0; i < n_rot; i++)
		w_fits = w_fits && wgmma_fits<T>(ctx, y, x, rot[i], residual, M, N, K);
	if (w_fits)
		ms_w = tune_time([&] {
			wgmma_launch<T, F16>(ctx, y, x, rot[turn++ % n_rot], residual, M, N, K,
					     stream);
			return CUBLAS_STATUS_SUCCESS;
		}, stream, e0, e1);
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	/* the first guess stays unless another is more than 2% faster (timing noise must not
	 * make two start-ups keep different algorithms for a near tie) */
	int best = n > 0 && ms[0] > 0 ? 0 : -1;
	for (int i = 1; i < n; i++)
		if (ms[i] > 0 && (best < 0 || ms[i] < (best == 0 ? 0.98f : 1.f) * ms[best]))
			best = i;
	if (best >= 0) {
		*ms_first = ms[0] > 0 ? ms[0] : 0.f;
		*ms_best = ms[best];
		p->algo = res[best].algo;
		p->pinned = 1;
	}
	if (w_fits) {
		p->pinned = 1;
		/* as between cuBLASLt's candidates: a near tie keeps the first guess */
		p->use_wgmma = best < 0 || ms_w < 0.98f * ms[best];
		if (p->use_wgmma) {
			if (best < 0)
				*ms_first = ms_w;
			*ms_best = ms_w;
			best = KN_GEMM_TUNE_WGMMA;
		}
	}
	return best;
}

extern "C" bool kn_gemm_ctx_wgmma(const kn_gemm_ctx *ctx)
{
	return ctx->wgmma != NULL;
}

extern "C" int kn_gemm_ctx_n_tuned(const kn_gemm_ctx *ctx)
{
	int n = 0;
	for (int i = 0; i < GEMM_CACHE; i++)
		n += ctx->plans[i].used && ctx->plans[i].pinned;
	return n;
}

extern "C" int kn_gemm_f32_tune(kn_gemm_ctx *ctx, float *y, const uint16_t *x,
				const uint16_t *const *Ws, int n_W, const float *residual, int M,
				int N, int K, bool f16, cudaStream_t stream, float *ms_first,
				float *ms_best)
{
	return f16 ? gemm_tune<float, true>(ctx, y, x, Ws, n_W, residual, M, N, K, stream,
					    ms_first, ms_best) :
		     gemm_tune<float, false>(ctx, y, x, Ws, n_W, residual, M, N, K, stream,
					     ms_first, ms_best);
}

extern "C" int kn_gemm_tune(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x,
			    const uint16_t *const *Ws, int n_W, int M, int N, int K,
			    cudaStream_t stream, float *ms_first, float *ms_best)
{
	return gemm_tune<uint16_t, false>(ctx, y, x, Ws, n_W, NULL, M, N, K, stream, ms_first,
					  ms_best);
}

extern "C" int kn_gemm_f16_tune(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x,
				const uint16_t *const *Ws, int n_W, int M, int N, int K,
				cudaStream_t stream, float *ms_first, float *ms_best)
{
	return gemm_tune<__half, true>(ctx, (__half *)y, x, Ws, n_W, NULL, M, N, K, stream,
				       ms_first, ms_best);
}

/* ---- kn_gemm_glu: gate/up and SwiGLU, fused where tuned ------------------------------------ */

/* The plan of the unfused gate/up product (fp16 operands and output) that carries the choice. */
static struct gemm_plan *glu_plan(kn_gemm_ctx *ctx, uint16_t *gu, const uint16_t *x,
				  const uint16_t *W, int M, int F, int K)
{
	return plan_of_call<__half, true>(ctx, (__half *)gu, x, W, NULL, NULL, M, 2 * F, K);
}

static void glu_unfused(kn_gemm_ctx *ctx, uint16_t *act, uint16_t *gu, const uint16_t *x,
			const uint16_t *W, int M, int F, int K, cudaStream_t stream)
{
	gemm_run<__half, true>(ctx, (__half *)gu, x, W, NULL, NULL, M, 2 * F, K, stream);
	kn_silu_mul_f16_cuda(act, gu, M, F, stream);
}

/* The fused forms (a plan's use_glu; 0: the unfused pair): gemm_wgmma's GLU epilogue, up to
 * KN_GEMM_WGMMA_MAX_M rows (no GEMV rows: KN_GEMM_WGMMA_MIN_M > GEMV_MAX_M), and gemm_glu_tma,
 * any rows (its decode shape up to 128, its prompt shape above). */
enum { GLU_APART, GLU_WGMMA = KN_GEMM_GLU_WGMMA, GLU_TMA = KN_GEMM_GLU_TMA, GLU_FORMS };

static bool glu_form_fits(const kn_gemm_ctx *ctx, int form, const uint16_t *act,
			  const uint16_t *x, const uint16_t *W, int M, int F, int K)
{
	if (form == GLU_WGMMA)
		return kn_gemm_wgmma_glu_fits(ctx->wgmma, act, x, W, M, F, K);
	return form == GLU_TMA && kn_glu_tma_fits(ctx->glu_tma, act, x, W, M, F, K);
}

static void glu_form_run(kn_gemm_ctx *ctx, int form, uint16_t *act, const uint16_t *x,
			 const uint16_t *W, int M, int F, int K, cudaStream_t stream)
{
	if (form == GLU_WGMMA)
		kn_gemm_wgmma_glu_run(ctx->wgmma, act, x, W, M, F, K, stream);
	else
		kn_glu_tma_run(ctx->glu_tma, act, x, W, M, F, K, stream);
}

extern "C" void kn_gemm_glu_cuda(kn_gemm_ctx *ctx, uint16_t *act, uint16_t *gu,
				 const uint16_t *x, const uint16_t *W, int M, int F, int K,
				 cudaStream_t stream)
{
	if (M <= 0 || F <= 0)
		return;
	/* no plan for the GEMV's rows (the unfused product takes no cuBLASLt plan there, and
	 * kn_gemm_glu_tune keeps no fused form for them) or an empty K */
	const int form = K > 0 && !gemv_fits(x, W, M, K) ?
				 glu_plan(ctx, gu, x, W, M, F, K)->use_glu : GLU_APART;
	if (form != GLU_APART && glu_form_fits(ctx, form, act, x, W, M, F, K)) {
		glu_form_run(ctx, form, act, x, W, M, F, K, stream);
		return;
	}
	glu_unfused(ctx, act, gu, x, W, M, F, K, stream);
}

extern "C" int kn_gemm_glu_tune(kn_gemm_ctx *ctx, uint16_t *act, uint16_t *gu, const uint16_t *x,
				const uint16_t *const *Ws, int n_W, int M, int F, int K,
				cudaStream_t stream, float *ms_unfused, float *ms_fused)
{
	*ms_unfused = *ms_fused = 0.f;
	if (M <= 0 || F <= 0 || K <= 0 || n_W < 1 || !Ws[0] || gemv_fits(x, Ws[0], M, K) ||
	    !tune_stream_free(stream))
		return -1;
	struct gemm_plan *p = glu_plan(ctx, gu, x, Ws[0], M, F, K);
	const uint16_t *rot[TUNE_ROT_MAX];
	const int n_rot = tune_rotation(p, Ws, n_W, rot);
	bool fits[GLU_FORMS] = { false }, any = false;
	for (int f = GLU_WGMMA; f < GLU_FORMS; f++) {
		fits[f] = n_rot > 0;
		for (int i = 0; i < n_rot; i++)
			fits[f] = fits[f] && glu_form_fits(ctx, f, act, x, rot[i], M, F, K);
		any = any || fits[f];
	}
	p->use_glu = GLU_APART;
	if (!any)   /* nothing to compare (no sm_90): the pair stays */
		return 0;
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	unsigned turn = 0;
	/* the product as it runs now (its own tuning already chose cuBLASLt or gemm_wgmma) and
	 * the activation after it, against each fused form, on the same rotation of weights */
	auto unfused = [&] {
		glu_unfused(ctx, act, gu, x, rot[turn++ % n_rot], M, F, K, stream);
		return CUBLAS_STATUS_SUCCESS;
	};
	for (int r = 0; r < 20; r++)
		unfused();
	*ms_unfused = tune_time(unfused, stream, e0, e1);
	int best = GLU_APART;
	for (int f = GLU_WGMMA; f < GLU_FORMS; f++) {
		if (!fits[f])
			continue;
		const float ms = tune_time([&] {
			glu_form_run(ctx, f, act, x, rot[turn++ % n_rot], M, F, K, stream);
			return CUBLAS_STATUS_SUCCESS;
		}, stream, e0, e1);
		if (best == GLU_APART || ms < *ms_fused) {
			best = f;
			*ms_fused = ms;
		}
	}
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	p->pinned = 1;
	/* a near tie keeps the unfused form, as the product's own tuning keeps its first guess */
	p->use_glu = *ms_fused < 0.98f * *ms_unfused ? best : GLU_APART;
	return p->use_glu;
}
