/*
 * bench_gemm_cuda: how far cuBLASLt's first heuristic is from the best it offers on the decoder's
 * projections (Qwen3-VL-2B shapes), i.e. what an algorithm search at start-up would buy, and
 * how fast the weight streams at decode batch sizes.
 *
 *   usage: bench_gemm_cuda [--m M,M,...] [--algos N] [--reps N] [--f16] [--exhaustive] [--glu]
 *                          [--qkv]
 *   exits 77 when no GPU is visible (or the build has no CUDA)
 *
 * For each M (default 8, 32, 64, 128, 256: decode batches; 8192: a prefill step) and each
 * projection (qkv 2048→4096, o 2048→2048 with the residual, gate_up 2048→12288, down 6144→2048
 * with the residual: bf16 operands, fp32 output, compute 32F, the TN layout of kernels/gemm.cu,
 * the same 32 MiB workspace and alignments; --f16: fp16 operands for qkv and gate_up, as the
 * decoder runs them when text_cuda.c allows), cublasLtMatmulAlgoGetHeuristic is asked for up to N
 * (16) algorithms. Each is timed as it comes and with its K dimension split 2, 4 and 8 ways
 * (CUBLASLT_ALGO_CONFIG_SPLITK_NUM, where cublasLtMatmulAlgoCheck accepts it): the median of 7
 * CUDA-event measurements of `reps` back-to-back launches. The weight rotates over enough copies
 * (≥ 160 MB) that each launch reads it from DRAM, as in a step where every layer's weights are
 * cold.
 *
 * Prints, per shape: the heuristic's first choice and the fastest (its rank/split), in µs and
 * TFLOP/s, the weight's TB/s for both, and the sum over the 28 layers' four projections. On an
 * sm_90 device also kernels/gemm_wgmma.cu's kernel ("wg" rows), timed the same way with at most
 * 8, 4, 2 and 1 K splits (its default: 8), and the layers' sum with it where it is faster.
 * --exhaustive goes past the heuristic: for every algorithm id cublasLtMatmulAlgoGetIds lists, the
 * heuristic restricted to that id (CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID, up to N results) and
 * every tile × stages its capabilities list (cluster shape auto), then every cluster shape for
 * the five fastest so far, each that cublasLtMatmulAlgoCheck accepts timed as above (no
 * split-K); it prints the five fastest per shape with their configuration next to the
 * heuristic's best. On an H100 with cuBLAS 13.0 (fp16 operands, M = 64 and 128): of the ~4,100
 * tile × stages pairs the ids list, cublasLtMatmulAlgoCheck accepts none for these shapes;
 * ~240 configurations are timed a shape, and the five fastest are all the Hopper id's (66)
 * restricted-heuristic ones, some with an explicit cluster shape. Against the best of the
 * first 32 they are 1-10% faster (down at M = 128: 16.74 → 15.04 µs), 3-4% over a layer's
 * four projections.
 * --glu times the gate/up projection with SwiGLU instead (bench_glu below): the cuBLASLt product,
 * the product with silu_mul, and the fused launch (gemm_glu_tma above 128 rows), as the
 * decoder's start-up tuning does; on an H100 at 8,192 rows 0.56 ms fused against 0.64 apart.
 * --qkv times a prompt step's q/k/v projection with q/k norm, rope and the fp8 cache writes
 * (bench_qkv below): apart (the tuned fp32 product, then qk_norm_rope) against gemm_qkv_tma.
 * Nothing is asserted (a benchmark, not a test). On an H100 (tests/bench/PERF.md): over the four
 * projections the best of 16 is 4–6 % faster than the first at M ≤ 128 and 12 % at M = 256
 * (down: 28 %), and no split-K variant is the fastest anywhere; at M = 128 the four
 * projections stream their weights at 1.6–2.1 TB/s and ~260 TFLOP/s (gate_up), i.e. between the
 * memory and the mma.sync compute limits.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cublasLt.h declares a function without a prototype */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <cublasLt.h>
#pragma GCC diagnostic pop
#include <cuda_runtime_api.h>

#include "gemm.h"
#include "gemm_glu_tma.h"
#include "gemm_qkv_tma.h"
#include "gemm_wgmma.h"
#include "qk_norm_rope.h"

#include "cuda_check.h"

#define MAX_ALGOS 32
#define WORKSPACE (32u << 20)

#define LT(call)                                                                           \
	do {                                                                               \
		cublasStatus_t s_ = (call);                                                \
		if (s_ != CUBLAS_STATUS_SUCCESS) {                                         \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,         \
				cublasGetStatusString(s_));                                \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

typedef struct shape {
	const char *name;
	int N, K, residual;
} shape;

static const shape shapes[] = {
	{ "qkv", 4096, 2048, 0 },
	{ "o", 2048, 2048, 1 },
	{ "gate_up", 12288, 2048, 0 },
	{ "down", 2048, 6144, 1 },
};
#define N_SHAPES (int)(sizeof(shapes) / sizeof(shapes[0]))

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Random bf16 in [-0.05, 0.05) (small, so that repeated residual adds stay finite). */
static void fill(uint16_t *d, size_t n)
{
	uint16_t *h = malloc(n * 2);
	uint64_t s = 0x9e3779b97f4a7c15ull ^ n;
	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		float f = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
		uint32_t u;
		memcpy(&u, &f, 4);
		h[i] = (uint16_t)(u >> 16);
	}
	CUDA_CHECK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
	free(h);
}

/* One launch of a timed product, on weight copy k mod n_w; false when it cannot run. */
typedef bool (*launch_fn)(const void *call, int k);

/* Median µs per launch over `reps` back-to-back launches (after 3 untimed), 7 measurements;
 * negative if a launch fails. */
static float time_launches(launch_fn launch, const void *call, int reps)
{
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	float t[7];
	int k = 0;
	bool ok = true;
	for (; k < 3 && ok; k++)
		ok = launch(call, k);
	for (int m = 0; m < 7 && ok; m++) {
		CUDA_CHECK(cudaEventRecord(e0, 0));
		for (int r = 0; r < reps && ok; r++, k++)
			ok = launch(call, k);
		CUDA_CHECK(cudaEventRecord(e1, 0));
		CUDA_CHECK(cudaEventSynchronize(e1));
		CUDA_CHECK(cudaEventElapsedTime(&t[m], e0, e1));
		t[m] *= 1000.0f / reps;
	}
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	if (!ok)
		return -1;
	qsort(t, 7, sizeof(float), cmp_float);
	return t[3];
}

struct lt_call {
	cublasLtHandle_t lt;
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t a, b, c;
	const cublasLtMatmulAlgo_t *algo;
	uint16_t *const *w;
	int n_w;
	const uint16_t *x;
	float *y, beta;
	void *ws;
};

static bool lt_launch(const void *call, int k)
{
	const struct lt_call *p = call;
	const float alpha = 1.0f;
	return cublasLtMatmul(p->lt, p->desc, &alpha, p->w[k % p->n_w], p->a, p->x, p->b, &p->beta,
			      p->y, p->c, p->y, p->c, p->algo, p->ws, WORKSPACE, 0) ==
	       CUBLAS_STATUS_SUCCESS;
}

/* Median µs per launch of algo (time_launches); negative if it fails. */
static float time_algo(cublasLtHandle_t lt, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
		       cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
		       const cublasLtMatmulAlgo_t *algo, uint16_t *const *w, int n_w,
		       const uint16_t *x, float *y, float beta, void *ws, int reps)
{
	const struct lt_call call = { lt, desc, a, b, c, algo, w, n_w, x, y, beta, ws };
	return time_launches(lt_launch, &call, reps);
}

struct wgmma_call {
	kn_gemm_wgmma *g;
	uint16_t *const *w;
	int n_w;
	const uint16_t *x;
	float *y;
	bool residual, f16, out_f16;
	int M, N, K;
};

static bool wgmma_launch(const void *call, int k)
{
	const struct wgmma_call *p = call;
	kn_gemm_wgmma_run(p->g, p->y, p->x, p->w[k % p->n_w], p->residual ? p->y : NULL, p->M,
			  p->N, p->K, p->f16, p->out_f16, 0);
	return true;
}

/* The same timing for gemm_wgmma.cu's kernel (launched with PDL, so consecutive launches overlap
 * as they do behind a PDL predecessor in a step); gate_up with fp16 operands writes fp16, as
 * the decoder runs it. Negative when the kernel does not take the shape. */
static float time_wgmma(kn_gemm_wgmma *g, uint16_t *const *w, int n_w, const uint16_t *x,
			float *y, bool residual, bool f16, bool out_f16, int M, int N, int K, int reps)
{
	if (!kn_gemm_wgmma_fits(g, y, x, w[0], residual ? y : NULL, M, N, K, out_f16))
		return -1;
	const struct wgmma_call call = { g, w, n_w, x, y, residual, f16, out_f16, M, N, K };
	return time_launches(wgmma_launch, &call, reps);
}

/* One timed configuration of --exhaustive. */
typedef struct found_cfg {
	float us;
	cublasLtMatmulAlgo_t algo;
	int id, tile, stages, cluster, from_heuristic;
} found_cfg;

static void keep_best(found_cfg *top, int n_top, found_cfg c)
{
	for (int i = 0; i < n_top; i++)
		if (top[i].us < 0 || c.us < top[i].us) {
			memmove(&top[i + 1], &top[i], (size_t)(n_top - 1 - i) * sizeof(*top));
			top[i] = c;
			return;
		}
}

static found_cfg cfg_of(const cublasLtMatmulAlgo_t *algo, float us, int from_heuristic)
{
	found_cfg c = { .us = us, .algo = *algo, .from_heuristic = from_heuristic };
	uint32_t v = 0;
	uint16_t v16 = 0;
	size_t wr;
	cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_ID, &c.id, sizeof(c.id), &wr);
	if (cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &v, sizeof(v),
						 &wr) == CUBLAS_STATUS_SUCCESS)
		c.tile = (int)v;
	if (cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &v, sizeof(v),
						 &wr) == CUBLAS_STATUS_SUCCESS)
		c.stages = (int)v;
	/* uint16_t, unlike the tile and stage ids */
	if (cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &v16,
						 sizeof(v16), &wr) == CUBLAS_STATUS_SUCCESS)
		c.cluster = v16;
	return c;
}

/* The uint32 list of capability `cap` of algo (malloc'd into *out, NULL when empty): how many. */
static int cap_list(const cublasLtMatmulAlgo_t *algo, cublasLtMatmulAlgoCapAttributes_t cap,
		    uint32_t **out)
{
	size_t need = 0;
	*out = NULL;
	if (cublasLtMatmulAlgoCapGetAttribute(algo, cap, NULL, 0, &need) != CUBLAS_STATUS_SUCCESS ||
	    need < sizeof(uint32_t))
		return 0;
	*out = malloc(need);
	if (cublasLtMatmulAlgoCapGetAttribute(algo, cap, *out, need, &need) != CUBLAS_STATUS_SUCCESS) {
		free(*out);
		*out = NULL;
		return 0;
	}
	return (int)(need / sizeof(uint32_t));
}

/* Times algo when cublasLtMatmulAlgoCheck accepts it; keeps it in top. */
static int try_cfg(cublasLtHandle_t lt, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
		   cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, const cublasLtMatmulAlgo_t *algo,
		   uint16_t *const *w, int n_w, const uint16_t *x, float *y, float beta, void *ws,
		   int reps, found_cfg *top, int n_top, int from_heuristic)
{
	cublasLtMatmulHeuristicResult_t chk;
	if (cublasLtMatmulAlgoCheck(lt, desc, a, b, c, c, algo, &chk) != CUBLAS_STATUS_SUCCESS ||
	    chk.workspaceSize > WORKSPACE)
		return 0;
	float t = time_algo(lt, desc, a, b, c, algo, w, n_w, x, y, beta, ws, reps);
	if (t > 0)
		keep_best(top, n_top, cfg_of(algo, t, from_heuristic));
	return 1;
}

/* --exhaustive for one shape: every algorithm id's restricted heuristic and its listed tile ×
 * stages configurations (cluster shape auto), then every cluster shape for the five fastest. */
static void search_all(cublasLtHandle_t lt, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
		       cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cudaDataType_t in,
		       uint16_t *const *w, int n_w, const uint16_t *x, float *y, float beta, void *ws,
		       int reps, int n_algos, int M, const char *name, float t_heur)
{
	enum { N_TOP = 5, MAX_IDS = 256 };
	found_cfg top[N_TOP];
	for (int i = 0; i < N_TOP; i++)
		top[i].us = -1;
	int ids[MAX_IDS], n_ids = 0, n_timed = 0, n_listed = 0;
	LT(cublasLtMatmulAlgoGetIds(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, in, in, CUDA_R_32F,
				    CUDA_R_32F, MAX_IDS, ids, &n_ids));
	for (int k = 0; k < n_ids; k++) {
		cublasLtMatmulAlgo_t base;
		if (cublasLtMatmulAlgoInit(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, in, in, CUDA_R_32F,
					   CUDA_R_32F, ids[k], &base) != CUBLAS_STATUS_SUCCESS)
			continue;
		/* the heuristic, restricted to this id */
		cublasLtMatmulPreference_t pref;
		LT(cublasLtMatmulPreferenceCreate(&pref));
		uint32_t mode = CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID;
		uint64_t wsb = WORKSPACE;
		LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_SEARCH_MODE, &mode,
							sizeof(mode)));
		LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
							&wsb, sizeof(wsb)));
		cublasLtMatmulHeuristicResult_t res[MAX_ALGOS];
		int found = 0;
		for (int i = 0; i < n_algos; i++)
			res[i].algo = base;
		if (cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, c, c, pref, n_algos, res, &found) !=
		    CUBLAS_STATUS_SUCCESS)
			found = 0;
		LT(cublasLtMatmulPreferenceDestroy(pref));
		for (int i = 0; i < found; i++)
			if (res[i].state == CUBLAS_STATUS_SUCCESS)
				n_timed += try_cfg(lt, desc, a, b, c, &res[i].algo, w, n_w, x, y, beta,
						   ws, reps, top, N_TOP, 1);
		/* every listed tile × stages, the cluster shape left to the library */
		uint32_t *tiles, *stages;
		int n_t = cap_list(&base, CUBLASLT_ALGO_CAP_TILE_IDS, &tiles);
		int n_s = cap_list(&base, CUBLASLT_ALGO_CAP_STAGES_IDS, &stages);
		n_listed += n_t * (n_s ? n_s : 1);
		for (int ti = 0; ti < n_t; ti++)
			for (int si = 0; si < (n_s ? n_s : 1); si++) {
				cublasLtMatmulAlgo_t algo = base;
				if (cublasLtMatmulAlgoConfigSetAttribute(
					    &algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tiles[ti],
					    sizeof(tiles[ti])) != CUBLAS_STATUS_SUCCESS ||
				    (n_s && cublasLtMatmulAlgoConfigSetAttribute(
						    &algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages[si],
						    sizeof(stages[si])) != CUBLAS_STATUS_SUCCESS))
					continue;
				n_timed += try_cfg(lt, desc, a, b, c, &algo, w, n_w, x, y, beta, ws,
						   reps, top, N_TOP, 0);
			}
		free(tiles);
		free(stages);
	}
	/* every cluster shape for the fastest five so far */
	found_cfg best[N_TOP];
	memcpy(best, top, sizeof(best));
	for (int i = 0; i < N_TOP && best[i].us > 0; i++)
		for (uint16_t cl = 1; cl < CUBLASLT_CLUSTER_SHAPE_END; cl++) {
			cublasLtMatmulAlgo_t algo = best[i].algo;
			if (cublasLtMatmulAlgoConfigSetAttribute(&algo,
								 CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID,
								 &cl, sizeof(cl)) == CUBLAS_STATUS_SUCCESS)
				n_timed += try_cfg(lt, desc, a, b, c, &algo, w, n_w, x, y, beta, ws,
						   reps, top, N_TOP, best[i].from_heuristic);
		}
	printf("%6d %-8s exhaustive: %d ids, %d tile × stages listed, %d configurations timed; "
	       "heuristic best %.2f µs\n", M, name, n_ids, n_listed, n_timed, t_heur);
	for (int i = 0; i < N_TOP && top[i].us > 0; i++)
		printf("%6s %-8s   %8.2f µs  id %3d tile %3d stages %3d cluster %2d%s\n", "", "",
		       top[i].us, top[i].id, top[i].tile, top[i].stages, top[i].cluster,
		       top[i].from_heuristic ? "  (restricted heuristic)" : "");
}

/* One fused gate/up launch (form: KN_GEMM_GLU_WGMMA or _TMA) on weight copy k mod 4. */
typedef struct glu_call {
	kn_gemm_wgmma *gw;
	kn_glu_tma *gt;
	int form, M, F, K;
	uint16_t *act;
	const uint16_t *x, *const *w;
} glu_call;

static bool glu_launch(const void *call, int k)
{
	const glu_call *c = call;
	const uint16_t *w = c->w[k % 4];
	if (c->form == KN_GEMM_GLU_TMA) {
		if (!kn_glu_tma_fits(c->gt, c->act, c->x, w, c->M, c->F, c->K))
			return false;
		kn_glu_tma_run(c->gt, c->act, c->x, w, c->M, c->F, c->K, 0);
	} else {
		if (!kn_gemm_wgmma_glu_fits(c->gw, c->act, c->x, w, c->M, c->F, c->K))
			return false;
		kn_gemm_wgmma_glu_run(c->gw, c->act, c->x, w, c->M, c->F, c->K, 0);
	}
	return true;
}

/* --glu: the gate/up projection and SwiGLU (kernels/gemm.h's kn_gemm_glu) at each M, as the
 * decoder's start-up tuning times them: kn_gemm_f16_tune keeps cuBLASLt's fastest fp16
 * product, then kn_gemm_glu_tune times it with silu_mul against the fused forms and keeps the
 * fastest. Each fused form is also timed alone (time_launches; "-" where it does not fit):
 * gemm_wgmma's GLU epilogue (up to 128 rows) and gemm_glu_tma. Weights rotate over 4 copies
 * (200 MB: cold). */
static void bench_glu(const int *ms, int n_m, int reps)
{
	const int F = 6144, K = 2048, n_w = 4;
	const size_t wn = (size_t)2 * F * K;
	int max_m = 0;
	for (int i = 0; i < n_m; i++)
		max_m = ms[i] > max_m ? ms[i] : max_m;
	uint16_t *w[4], *x, *gu, *act;
	for (int i = 0; i < n_w; i++) {
		CUDA_CHECK(cudaMalloc((void **)&w[i], wn * 2));
		fill(w[i], wn);
	}
	CUDA_CHECK(cudaMalloc((void **)&x, (size_t)max_m * K * 2));
	CUDA_CHECK(cudaMalloc((void **)&gu, (size_t)max_m * 2 * F * 2));
	CUDA_CHECK(cudaMalloc((void **)&act, (size_t)max_m * F * 2));
	fill(x, (size_t)max_m * K);
	kn_gemm_wgmma *gw = kn_gemm_wgmma_new();
	kn_glu_tma *gt = kn_glu_tma_new();
	printf("gate_up (F %d, K %d) + SwiGLU, fp16: the cuBLASLt product alone, with silu_mul, "
	       "each fused form, and the form the tuning kept (TFLOP/s: the product's FLOPs)\n", F, K);
	printf("%6s %12s %9s %10s %10s %10s %9s %8s\n", "M", "product µs", "TFLOP/s", "+silu µs",
	       "wgmma µs", "tma µs", "TFLOP/s", "kept");
	for (int mi = 0; mi < n_m; mi++) {
		const int M = ms[mi];
		kn_gemm_ctx *ctx = kn_gemm_ctx_new(WORKSPACE);
		float first, best, unf = 0, fus = 0;
		const uint16_t *const *ws = (const uint16_t *const *)w;
		const int k = kn_gemm_f16_tune(ctx, gu, x, ws, n_w, M, 2 * F, K, 0, &first, &best);
		const int g = kn_gemm_glu_tune(ctx, act, gu, x, ws, n_w, M, F, K, 0, &unf, &fus);
		float us[3] = { 0, -1, -1 };
		for (int f = KN_GEMM_GLU_WGMMA; f <= KN_GEMM_GLU_TMA; f++) {
			const glu_call c = { gw, gt, f, M, F, K, act, x, ws };
			const bool have = f == KN_GEMM_GLU_TMA ? gt != NULL : gw != NULL;
			us[f] = have ? time_launches(glu_launch, &c, reps) : -1;
		}
		char uw[16] = "-", ut[16] = "-";
		if (us[1] > 0)
			snprintf(uw, sizeof(uw), "%.1f", us[1]);
		if (us[2] > 0)
			snprintf(ut, sizeof(ut), "%.1f", us[2]);
		const double flop = 2.0 * M * 2 * F * K;
		printf("%6d %12.1f %9.0f %10.1f %10s %10s %9.0f %8s\n", M, 1000 * best,
		       k >= 0 ? flop / (best * 1e9) : 0.0, 1000 * unf, uw, ut,
		       fus > 0 ? flop / (fus * 1e9) : 0.0,
		       g == KN_GEMM_GLU_TMA ? "tma" : g > 0 ? "wgmma" : g == 0 ? "apart" : "-");
		kn_gemm_ctx_free(ctx);
	}
	kn_glu_tma_free(gt);
	kn_gemm_wgmma_free(gw);
	for (int i = 0; i < n_w; i++)
		CUDA_CHECK(cudaFree(w[i]));
	CUDA_CHECK(cudaFree(x));
	CUDA_CHECK(cudaFree(gu));
	CUDA_CHECK(cudaFree(act));
}

/* One q/k/v step of a prompt (fp8 cache) on weight copy k mod 4: apart (the tuned fp32
 * product, then qk_norm_rope), fused (gemm_qkv_tma, reading the rope table), or the rope table
 * alone (once a step). */
enum { QKV_APART, QKV_FUSED, QKV_TABLE };
typedef struct qkv_call {
	kn_gemm_ctx *ctx;
	kn_qkv_tma *qt;
	int what;
	int M, Hq, KV, K;
	float *qkv, *cs, *sn;
	uint16_t *q, *norm;
	uint8_t *kc, *vc;
	const uint16_t *x, *const *w;
	const int32_t *pos, *slot;
} qkv_call;

static bool qkv_launch(const void *call, int k)
{
	const qkv_call *c = call;
	const uint16_t *w = c->w[k % 4];
	const int N = (c->Hq + 2 * c->KV) * 128, sec[3] = { 24, 20, 20 };
	if (c->what == QKV_TABLE) {
		kn_rope_table_cuda(c->cs, c->sn, c->pos, c->M, 128, sec, 5e6f, 0);
	} else if (c->what == QKV_FUSED) {
		if (!kn_qkv_tma_fits(c->qt, c->x, w, c->M, c->Hq, c->KV, 128, c->K))
			return false;
		kn_qkv_tma_run(c->qt, c->q, c->kc, c->vc, true, c->x, w, c->norm, c->norm, c->cs,
			       c->sn, c->slot, c->M, c->Hq, c->KV, c->K, 1e-6f, 1.0f, 1.0f, 0);
	} else {
		kn_gemm_f32_f16_cuda(c->ctx, c->qkv, c->x, w, NULL, c->M, N, c->K, 0);
		kn_qk_norm_rope_fp8_cuda(c->q, c->kc, c->vc, c->qkv, c->norm, c->norm, c->pos,
					 c->slot, c->M, c->Hq, c->KV, 128, sec, 5e6f, 1e-6f, 1.0f,
					 1.0f, 0);
	}
	return true;
}

/* --qkv: the q/k/v projection of a prompt step with q/k norm, rope and the fp8 cache writes
 * (the 2b shapes: Hq 16, KV 8, hd 128, K 2048) at each M: apart (kn_gemm_f32_f16 with the plan
 * kn_gemm_f32_tune keeps, then kn_qk_norm_rope_fp8_cuda) against gemm_qkv_tma, which also
 * needs the step's rope table (timed alone: once a step, not a layer). Weights rotate over 4
 * copies (cold). */
static void bench_qkv(const int *ms, int n_m, int reps)
{
	const int Hq = 16, KV = 8, K = 2048, N = (Hq + 2 * KV) * 128, n_w = 4;
	const size_t wn = (size_t)N * K;
	int max_m = 0;
	for (int i = 0; i < n_m; i++)
		max_m = ms[i] > max_m ? ms[i] : max_m;
	uint16_t *w[4], *x, *q, *norm;
	float *qkv, *cs, *sn;
	uint8_t *kc, *vc;
	int32_t *pos, *slot;
	for (int i = 0; i < n_w; i++) {
		CUDA_CHECK(cudaMalloc((void **)&w[i], wn * 2));
		fill(w[i], wn);
	}
	CUDA_CHECK(cudaMalloc((void **)&x, (size_t)max_m * K * 2));
	CUDA_CHECK(cudaMalloc((void **)&q, (size_t)max_m * Hq * 128 * 2));
	CUDA_CHECK(cudaMalloc((void **)&norm, 128 * 2));
	CUDA_CHECK(cudaMalloc((void **)&qkv, (size_t)max_m * N * 4));
	CUDA_CHECK(cudaMalloc((void **)&cs, (size_t)max_m * 64 * 4));
	CUDA_CHECK(cudaMalloc((void **)&sn, (size_t)max_m * 64 * 4));
	CUDA_CHECK(cudaMalloc((void **)&kc, (size_t)max_m * KV * 128));
	CUDA_CHECK(cudaMalloc((void **)&vc, (size_t)max_m * KV * 128));
	CUDA_CHECK(cudaMalloc((void **)&pos, (size_t)3 * max_m * 4));
	CUDA_CHECK(cudaMalloc((void **)&slot, (size_t)max_m * 4));
	fill(x, (size_t)max_m * K);
	fill(norm, 128);
	int32_t *h = malloc((size_t)3 * max_m * 4);
	for (int i = 0; i < 3 * max_m; i++)
		h[i] = i % max_m;
	CUDA_CHECK(cudaMemcpy(pos, h, (size_t)3 * max_m * 4, cudaMemcpyHostToDevice));
	CUDA_CHECK(cudaMemcpy(slot, h, (size_t)max_m * 4, cudaMemcpyHostToDevice));
	free(h);
	kn_qkv_tma *qt = kn_qkv_tma_new();
	printf("q/k/v (N %d, K %d) + q/k norm, rope, fp8 cache: apart (the tuned fp32 product, then "
	       "qk_norm_rope) against gemm_qkv_tma (+ its rope table, once a step)\n", N, K);
	printf("%6s %12s %10s %10s %10s %12s %9s\n", "M", "product µs", "+rope µs", "fused µs",
	       "table µs", "fused TFLOP/s", "gain");
	for (int mi = 0; mi < n_m; mi++) {
		const int M = ms[mi];
		kn_gemm_ctx *ctx = kn_gemm_ctx_new(WORKSPACE);
		float first, best;
		const uint16_t *const *ws = (const uint16_t *const *)w;
		kn_gemm_f32_tune(ctx, qkv, x, ws, n_w, NULL, M, N, K, true, 0, &first, &best);
		/* the table first: the fused launches read it */
		qkv_call c = { ctx, qt, QKV_TABLE, M, Hq, KV, K, qkv, cs, sn, q, norm, kc, vc, x,
			       ws, pos, slot };
		const float tab = time_launches(qkv_launch, &c, reps);
		c.what = QKV_APART;
		const float apart = time_launches(qkv_launch, &c, reps);
		c.what = QKV_FUSED;
		const float fused = qt ? time_launches(qkv_launch, &c, reps) : -1;
		const double flop = 2.0 * M * N * K;
		printf("%6d %12.1f %10.1f %10.1f %10.1f %12.0f %8.1f%%\n", M, 1000 * best, apart,
		       fused, tab, fused > 0 ? flop / (fused * 1e6) : 0.0,
		       fused > 0 ? 100.0 * (apart - fused) / apart : 0.0);
		kn_gemm_ctx_free(ctx);
	}
	kn_qkv_tma_free(qt);
	for (int i = 0; i < n_w; i++)
		CUDA_CHECK(cudaFree(w[i]));
	CUDA_CHECK(cudaFree(x));
	CUDA_CHECK(cudaFree(q));
	CUDA_CHECK(cudaFree(norm));
	CUDA_CHECK(cudaFree(qkv));
	CUDA_CHECK(cudaFree(cs));
	CUDA_CHECK(cudaFree(sn));
	CUDA_CHECK(cudaFree(kc));
	CUDA_CHECK(cudaFree(vc));
	CUDA_CHECK(cudaFree(pos));
	CUDA_CHECK(cudaFree(slot));
}

int main(int argc, char **argv)
{
	int ms[16] = { 8, 32, 64, 128, 256, 8192 }, n_m = 6, n_algos = 16, reps = 20;
	bool f16 = false, exhaustive = false, glu = false, qkv = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--m") && i + 1 < argc) {
			n_m = 0;
			for (char *p = strtok(argv[++i], ","); p && n_m < 16; p = strtok(NULL, ","))
				ms[n_m++] = atoi(p);
		} else if (!strcmp(argv[i], "--algos") && i + 1 < argc) {
			n_algos = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--f16")) {
			f16 = true;
		} else if (!strcmp(argv[i], "--glu")) {
			glu = true;
		} else if (!strcmp(argv[i], "--qkv")) {
			qkv = true;
		} else if (!strcmp(argv[i], "--exhaustive")) {
			exhaustive = true;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: bench_gemm_cuda [--m M,M,...] [--algos N] [--reps N] "
				"[--f16] [--exhaustive] [--glu] [--qkv]\n");
			return 2;
		}
	}
	if (n_algos < 1 || n_algos > MAX_ALGOS)
		n_algos = MAX_ALGOS;
	if (reps < 1)
		reps = 1;
	int n_dev = 0;
	if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
		fprintf(stderr, "bench_gemm_cuda: no GPU\n");
		return 77;
	}
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	if (qkv) {
		printf("bench_gemm_cuda --qkv on %s\n", prop.name);
		bench_qkv(ms, n_m, reps);
		return 0;
	}
	if (glu) {
		printf("bench_gemm_cuda --glu on %s\n", prop.name);
		bench_glu(ms, n_m, reps);
		return 0;
	}
	printf("bench_gemm_cuda on %s: cuBLASLt heuristic #1 against the fastest of its first %d, "
	       "median of 7 × %d launches, weights cold; %s operands for qkv and gate_up\n\n",
	       prop.name, n_algos, reps, f16 ? "fp16" : "bf16");
	cublasLtHandle_t lt;
	LT(cublasLtCreate(&lt));
	kn_gemm_wgmma *gw = kn_gemm_wgmma_new();   /* NULL off sm_90 */
	void *ws;
	CUDA_CHECK(cudaMalloc(&ws, WORKSPACE));
	int max_m = 0;
	for (int i = 0; i < n_m; i++)
		if (ms[i] > max_m)
			max_m = ms[i];
	uint16_t *x;
	float *y;
	CUDA_CHECK(cudaMalloc((void **)&x, (size_t)max_m * 6144 * 2));
	CUDA_CHECK(cudaMalloc((void **)&y, (size_t)max_m * 12288 * 4));
	fill(x, (size_t)max_m * 6144);
	CUDA_CHECK(cudaMemset(y, 0, (size_t)max_m * 12288 * 4));
	printf("%6s %-8s %10s %9s %10s %9s %5s %7s %8s %8s\n", "M", "proj", "heur µs", "TFLOP/s",
	       "best µs", "TFLOP/s", "#/spl", "gain", "W TB/s", "(best)");
	for (int mi = 0; mi < n_m; mi++) {
		const int M = ms[mi];
		double sum_h = 0, sum_b = 0, sum_w = 0;
		for (int si = 0; si < N_SHAPES; si++) {
			const shape *sh = &shapes[si];
			const size_t wbytes = (size_t)sh->N * sh->K * 2;
			int n_w = (int)((160u << 20) / wbytes) + 1;
			if (n_w > 64)
				n_w = 64;
			uint16_t *w[64];
			for (int i = 0; i < n_w; i++) {
				CUDA_CHECK(cudaMalloc((void **)&w[i], wbytes));
				fill(w[i], wbytes / 2);
			}
			cublasLtMatmulDesc_t desc;
			cublasLtMatrixLayout_t a, b, c;
			LT(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
			cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
			LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
			LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
			/* --f16: the operands of the decoder's qkv and gate/up (text_cuda.c) */
			const cudaDataType_t in = f16 && !sh->residual ? CUDA_R_16F : CUDA_R_16BF;
			LT(cublasLtMatrixLayoutCreate(&a, in, sh->K, sh->N, sh->K));
			LT(cublasLtMatrixLayoutCreate(&b, in, sh->K, M, sh->K));
			LT(cublasLtMatrixLayoutCreate(&c, CUDA_R_32F, sh->N, M, sh->N));
			cublasLtMatmulPreference_t pref;
			LT(cublasLtMatmulPreferenceCreate(&pref));
			uint64_t wsb = WORKSPACE;
			uint32_t al = 256;
			LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
								&wsb, sizeof(wsb)));
			LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
								&al, sizeof(al)));
			LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
								&al, sizeof(al)));
			LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
								&al, sizeof(al)));
			LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
								&al, sizeof(al)));
			cublasLtMatmulHeuristicResult_t res[MAX_ALGOS];
			int found = 0;
			LT(cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, c, c, pref, n_algos, res, &found));
			float t_h = -1, t_b = -1;
			int rank = 0, best_split = 1;
			for (int i = 0; i < found; i++) {
				if (res[i].state != CUBLAS_STATUS_SUCCESS)
					continue;
				/* as returned, then with the K dimension split 2, 4, 8 ways (where
				 * cublasLtMatmulAlgoCheck accepts it for this algorithm) */
				for (int sp = 1; sp <= 8; sp *= 2) {
					cublasLtMatmulAlgo_t algo = res[i].algo;
					if (sp > 1) {
						int32_t n_split = sp;
						uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
						cublasLtMatmulHeuristicResult_t chk;
						if (cublasLtMatmulAlgoConfigSetAttribute(
							    &algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &n_split,
							    sizeof(n_split)) != CUBLAS_STATUS_SUCCESS ||
						    cublasLtMatmulAlgoConfigSetAttribute(
							    &algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
							    &scheme, sizeof(scheme)) != CUBLAS_STATUS_SUCCESS ||
						    cublasLtMatmulAlgoCheck(lt, desc, a, b, c, c, &algo, &chk) !=
							    CUBLAS_STATUS_SUCCESS ||
						    chk.workspaceSize > WORKSPACE)
							continue;
					}
					float t = time_algo(lt, desc, a, b, c, &algo, w, n_w, x, y,
							    sh->residual ? 1.0f : 0.0f, ws, reps);
					if (i == 0 && sp == 1)
						t_h = t;
					if (t > 0 && (t_b < 0 || t < t_b)) {
						t_b = t;
						rank = i + 1;
						best_split = sp;
					}
				}
			}
			double fl = 2.0 * M * sh->N * sh->K;
			if (t_h <= 0 || t_b <= 0) {   /* no algorithm ran: nothing to print or sum */
				printf("%6d %-8s %10s\n", M, sh->name, "n/a");
				t_h = t_b = 0;
			} else {
				printf("%6d %-8s %10.2f %9.1f %10.2f %9.1f %3d/%d %6.1f%% %8.2f %8.2f\n",
				       M, sh->name, t_h, fl / t_h * 1e-6, t_b, fl / t_b * 1e-6, rank,
				       best_split, 100.0 * (t_h - t_b) / t_h, wbytes / t_h * 1e-6,
				       wbytes / t_b * 1e-6);
			}
			sum_h += t_h;
			sum_b += t_b;
			{
				/* gemm_wgmma with at most 8, 4, 2, 1 K splits; its default is 8 */
				const bool f16_op = f16 && !sh->residual;
				float t_min = t_b;
				for (int cap = 8; cap >= 1 && gw; cap /= 2) {
					kn_gemm_wgmma_set_max_splits(gw, cap);
					const float t_w = time_wgmma(gw, w, n_w, x, y, sh->residual,
								     f16_op, f16_op && !strcmp(sh->name,
								     "gate_up"), M, sh->N, sh->K, reps);
					if (t_w > 0)
						printf("%6d %-8s %10s %9s %10.2f %9.1f  wg%d %6.1f%% %8s "
						       "%8.2f   (gemm_wgmma, ≤ %d splits, against the "
						       "best)\n", M, sh->name, "", "", t_w, fl / t_w * 1e-6,
						       cap, 100.0 * (t_b - t_w) / t_b, "", wbytes / t_w * 1e-6,
						       cap);
					if (t_w > 0 && t_w < t_min)
						t_min = t_w;
				}
				if (gw)
					kn_gemm_wgmma_set_max_splits(gw, 8);
				sum_w += t_min;
			}
			if (exhaustive)
				search_all(lt, desc, a, b, c, in, w, n_w, x, y, sh->residual ? 1.0f : 0.0f,
					   ws, reps, n_algos, M, sh->name, t_b);
			LT(cublasLtMatmulPreferenceDestroy(pref));
			LT(cublasLtMatrixLayoutDestroy(a));
			LT(cublasLtMatrixLayoutDestroy(b));
			LT(cublasLtMatrixLayoutDestroy(c));
			LT(cublasLtMatmulDescDestroy(desc));
			for (int i = 0; i < n_w; i++)
				CUDA_CHECK(cudaFree(w[i]));
		}
		printf("%6d %-8s %10.1f %9s %10.1f %9s %5s %6.1f%%   (µs, the 4 projections × 28 "
		       "layers)\n\n", M, "layers", 28 * sum_h, "", 28 * sum_b, "", "",
		       100.0 * (sum_h - sum_b) / sum_h);
		if (gw)
			printf("%6d %-8s %10s %9s %10.1f %9s %5s %6.1f%%   (µs, with gemm_wgmma where "
			       "it is faster)\n\n", M, "layers", "", "", 28 * sum_w, "", "",
			       100.0 * (sum_h - sum_w) / sum_h);
	}
	CUDA_CHECK(cudaFree(x));
	CUDA_CHECK(cudaFree(y));
	CUDA_CHECK(cudaFree(ws));
	LT(cublasLtDestroy(lt));
	kn_gemm_wgmma_free(gw);
	return 0;
}
