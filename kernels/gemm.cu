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
