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
 * Algorithm choice: the first call for a (M, N, K, residual?, alignment) key builds the matmul
 * descriptor and layouts, asks cublasLtMatmulAlgoGetHeuristic for its best algorithm within the
 * ctx's workspace, and keeps all of it in a small table (linear search, round-robin eviction);
 * later calls with the key only call cublasLtMatmul.
 *
 * Small M (decode of a few sequences, M ≤ GEMV_MAX_M = 4, no bias): cuBLASLt's kernels reach only
 * 1.3–2.4 TB/s on these weight-streaming shapes, so our own kernel runs them instead — the whole
 * product is one read of W, and that is what it is built to do at full bandwidth: a CTA of 8
 * warps owns GEMV_ROWS rows of W (N/4 CTAs: enough to fill the GPU even for N = 2048), its
 * warps split K, each lane streams 16-byte pieces of the rows (ROWS × UNROLL loads in flight)
 * and takes the matching pieces of the M rows of x from L1 (x is at most 4 rows: it stays
 * cached; at 8 rows the FMAs on CUDA cores and the L1 traffic of x made it slower than
 * cuBLASLt's tensor-core kernels, 3.25 against 2.60 ms per 8-sequence step on an H100); fp32 sums reduced across the warp (shuffles) and the warps (shared memory), the
 * residual added before the one rounding. Needs
 * K % 8 == 0 and 16-byte aligned x and W (true for the model); otherwise cuBLASLt runs it.
 *
 * Bias (kn_gemm_bias_cuda): plans with has_bias carry CUBLASLT_EPILOGUE_BIAS and a bf16 bias
 * type; the bias pointer is a per-call attribute of the cached descriptor, set before each
 * cublasLtMatmul (cuBLASLt reads it at enqueue time, so later changes do not affect a queued
 * call). The bias vector has one entry per row of the column-major D, i.e. per output feature n.
 */
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "gemm.h"
#include "pdl.cuh"

#define CUBLAS_CHECK(call)                                                                 \
	do {                                                                               \
		cublasStatus_t st_ = (call);                                               \
		if (st_ != CUBLAS_STATUS_SUCCESS) {                                        \
			fprintf(stderr, "<2>[cuda] %s:%d: %s failed: %s (%d)\n", __FILE__,       \
				__LINE__, #call, cublasGetStatusString(st_), (int)st_);          \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define GEMM_CACHE 64

struct gemm_plan {
	int used;
	int M, N, K, has_res, has_bias;
	unsigned align;                 /* min alignment in bytes of the four pointers, ≤ 256 */
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t a, b, c; /* c is the layout of both C and D */
	cublasLtMatmulAlgo_t algo;
};

struct kn_gemm_ctx {
	cublasLtHandle_t lt;
	void *workspace;
	size_t workspace_bytes;
	int next_evict;
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

static void plan_build(kn_gemm_ctx *ctx, struct gemm_plan *p, int M, int N, int K, int has_res,
		       int has_bias, unsigned align)
{
	p->M = M, p->N = N, p->K = K, p->has_res = has_res, p->has_bias = has_bias, p->align = align;
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
	CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, K, N, K));
	CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, K, M, K));
	CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_16BF, N, M, N));

	cublasLtMatmulPreference_t pref;
	CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
	uint64_t ws = ctx->workspace_bytes;
	uint32_t al = align;
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
	cublasLtMatmulHeuristicResult_t res;
	int found = 0;
	CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->a, p->b, p->c, p->c, pref,
						    1, &res, &found));
	CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
	if (found < 1 || res.state != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "<2>[cuda] gemm: no cuBLASLt algorithm for M=%d N=%d K=%d\n", M, N,
			K);
		abort();
	}
	p->algo = res.algo;
	p->used = 1;
}

static struct gemm_plan *plan_get(kn_gemm_ctx *ctx, int M, int N, int K, int has_res,
				  int has_bias, unsigned align)
{
	for (int i = 0; i < GEMM_CACHE; i++) {
		struct gemm_plan *p = &ctx->plans[i];
		if (p->used && p->M == M && p->N == N && p->K == K && p->has_res == has_res &&
		    p->has_bias == has_bias && p->align == align)
			return p;
	}
	struct gemm_plan *p = NULL;
	for (int i = 0; i < GEMM_CACHE && !p; i++)
		if (!ctx->plans[i].used)
			p = &ctx->plans[i];
	if (!p) { /* full: evict round-robin (the plan is only host state) */
		p = &ctx->plans[ctx->next_evict];
		ctx->next_evict = (ctx->next_evict + 1) % GEMM_CACHE;
		plan_release(p);
	}
	plan_build(ctx, p, M, N, K, has_res, has_bias, align);
	return p;
}

/* ---- small M: our own weight-streaming kernel ---- */

#define GEMV_MAX_M 4
#define GEMV_ROWS 4
#define GEMV_WARPS 8
#define GEMV_UNROLL 2

static __device__ __forceinline__ void bf16x8_f32(uint4 u, float f[8])
{
	const unsigned w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
	for (int i = 0; i < 4; i++) {
		f[2 * i] = __uint_as_float(w[i] << 16);
		f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
	}
}

static __device__ __forceinline__ uint16_t f32_bf16_rn(float f)
{
	unsigned u = __float_as_uint(f);
	if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu))
		return (uint16_t)((u >> 16) | 0x40);   /* NaN stays NaN */
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

template <int M>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_kernel(uint16_t *y, const uint4 *x, const uint4 *W, const uint16_t *residual, int N, int K)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	__shared__ float part[GEMV_WARPS][M * GEMV_ROWS];
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int n0 = blockIdx.x * GEMV_ROWS;
	const int kv = K / 8;   /* uint4 per row */
	const int step = 32 * GEMV_WARPS;
	float acc[M][GEMV_ROWS];
#pragma unroll
	for (int m = 0; m < M; m++)
#pragma unroll
		for (int r = 0; r < GEMV_ROWS; r++)
			acc[m][r] = 0.f;
	for (int k0 = warp * 32 + lane; k0 < kv; k0 += step * GEMV_UNROLL) {
		uint4 w[GEMV_UNROLL][GEMV_ROWS];
#pragma unroll
		for (int u = 0; u < GEMV_UNROLL; u++)
#pragma unroll
			for (int r = 0; r < GEMV_ROWS; r++) {
				int k = k0 + u * step;
				w[u][r] = k < kv && n0 + r < N ?
					  __ldcs(W + (size_t)(n0 + r) * kv + k) : make_uint4(0, 0, 0, 0);
			}
#pragma unroll
		for (int u = 0; u < GEMV_UNROLL; u++) {
			int k = k0 + u * step;
			if (k >= kv)
				break;
			float wf[GEMV_ROWS][8];
#pragma unroll
			for (int r = 0; r < GEMV_ROWS; r++)
				bf16x8_f32(w[u][r], wf[r]);
#pragma unroll
			for (int m = 0; m < M; m++) {
				float xf[8];
				bf16x8_f32(__ldg(x + (size_t)m * kv + k), xf);
#pragma unroll
				for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
					for (int i = 0; i < 8; i++)
						acc[m][r] = fmaf(xf[i], wf[r][i], acc[m][r]);
			}
		}
	}
#pragma unroll
	for (int m = 0; m < M; m++)
#pragma unroll
		for (int r = 0; r < GEMV_ROWS; r++) {
#pragma unroll
			for (int o = 16; o > 0; o >>= 1)
				acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], o);
			if (lane == 0)
				part[warp][m * GEMV_ROWS + r] = acc[m][r];
		}
	__syncthreads();
	if (threadIdx.x < M * GEMV_ROWS) {
		const int m = threadIdx.x / GEMV_ROWS, n = n0 + threadIdx.x % GEMV_ROWS;
		float v = 0.f;
#pragma unroll
		for (int w8 = 0; w8 < GEMV_WARPS; w8++)
			v += part[w8][threadIdx.x];
		if (n < N) {
			size_t at = (size_t)m * N + n;
			if (residual)
				v += __uint_as_float((unsigned)residual[at] << 16);
			y[at] = f32_bf16_rn(v);
		}
	}
}

/* Runs y = x·Wᵀ (+ residual) for M ≤ GEMV_MAX_M when the layout allows; false otherwise. */
static bool gemv_run(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *residual,
		     int M, int N, int K, cudaStream_t stream)
{
	if (M < 1 || M > GEMV_MAX_M || K < 8 || K % 8 || ((uintptr_t)x | (uintptr_t)W) % 16)
		return false;
	dim3 grid((unsigned)((N + GEMV_ROWS - 1) / GEMV_ROWS));
	const uint4 *xv = (const uint4 *)x, *Wv = (const uint4 *)W;
	switch (M) {
#define GEMV_CASE(m)                                                                         \
	case m:                                                                              \
		kn_launch(gemv_kernel<m>, grid, GEMV_WARPS * 32, 0, stream, y, xv, Wv, residual, \
			  N, K);                                                             \
		break;
	GEMV_CASE(1)
	GEMV_CASE(2)
	GEMV_CASE(3)
	GEMV_CASE(4)
#undef GEMV_CASE
	}
	KN_CHECK_LAUNCH();
	return true;
}

/* The common path of kn_gemm_cuda and kn_gemm_bias_cuda (bias NULL: no epilogue). */
static void gemm_run(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *W,
		     const uint16_t *bias, const uint16_t *residual, int M, int N, int K,
		     cudaStream_t stream)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0 && !bias) { /* empty sum: y = residual or 0 */
		size_t bytes = (size_t)M * N * sizeof(uint16_t);
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
	if (!bias && gemv_run(y, x, W, residual, M, N, K, stream))
		return;
	unsigned align = ptr_align(y);
	unsigned a2 = ptr_align(x), a3 = ptr_align(W), a4 = residual ? ptr_align(residual) : 256;
	if (a2 < align)
		align = a2;
	if (a3 < align)
		align = a3;
	if (a4 < align)
		align = a4;
	struct gemm_plan *p = plan_get(ctx, M, N, K, residual != NULL, bias != NULL, align);
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
	gemm_run(ctx, y, x, W, NULL, residual, M, N, K, stream);
}

extern "C" void kn_gemm_bias_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x,
				  const uint16_t *W, const uint16_t *bias, const uint16_t *residual,
				  int M, int N, int K, cudaStream_t stream)
{
	gemm_run(ctx, y, x, W, bias, residual, M, N, K, stream);
}
