/*
 * prefill_attention on the GPU against kn_prefill_attention_ref (and, for one-row sequences,
 * against the decode kernel kn_paged_attention_cuda), on seeded random inputs (never zeros) with
 * shuffled block tables and the output poisoned with NaN first so that an unwritten element
 * fails. Every case runs in seven variants: the kernel's own choice, both query tile heights of
 * prefill_attention.cu's mma.sync kernel (QVL_PREFILL_ATTN_BM=64, 128), split-KV over 3 and 8
 * splits (QVL_PREFILL_ATTN_SPLIT), and the kernel's own tile choice over 1 and 5 splits — for
 * head dim 128 on an sm_90 device that is prefill_attention_wgmma.cu's kernel. A timing test prints (never asserts) ms and TFLOP/s for the 2B model's shape, bf16 and fp8
 * caches side by side. Exits 77 (automake's SKIP) when no GPU is visible.
 *
 * The fp8 cache (tcase "fp8"): kn_prefill_attention_fp8_cuda against kn_prefill_attention_fp8_ref
 * reading the same E4M3 bytes (relative L2 ≤ 2e-3), on the bf16 tests' shapes, with values
 * that saturate the format, and with scales that are not powers of two. Where the scales are
 * powers of two the bf16 cache of the same batch holds exactly the decoded values times the
 * scales, and the fp8 kernel must then reproduce the bf16 kernel's output bit for bit (it
 * widens the bytes exactly and runs the same arithmetic). One test reads back every non-NaN
 * code through one-position sequences (output = the decoded V row, exactly).
 *
 * QVL_TEST_SMALL=1 runs only small cases and skips the timing (for compute-sanitizer's
 * racecheck, which is slow); QVL_TEST_NO_TIMING=1 skips only the timing (for memcheck);
 * CK_RUN_CASE=fp8 runs only the fp8 tests.
 *
 * The suite runs with CK_NOFORK: main() touches CUDA to look for a GPU, and a child forked
 * after that cannot use CUDA ("initialization error").
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "cuda_check.h"
#include "fp8.h"
#include "kernel_testutil.h"
#include "paged_attention.h"
#include "prefill_attention.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int small_mode(void)
{
	const char *s = getenv("QVL_TEST_SMALL");
	return s && *s == '1';
}

static double max_abs_bf16(const uint16_t *got, const uint16_t *ref, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(bf16_to_f32(got[i]) - bf16_to_f32(ref[i])));
	return m;
}

/* Device copy of n host bytes (or n bytes of NaN-poison 0xff when src is NULL). */
static void *dev_copy(const void *src, size_t n)
{
	void *d;
	CUDA_CHECK(cudaMalloc(&d, n ? n : 1));
	if (src)
		CUDA_CHECK(cudaMemcpy(d, src, n, cudaMemcpyHostToDevice));
	else
		CUDA_CHECK(cudaMemset(d, 0xff, n ? n : 1));
	return d;
}

/* A shuffled pool of n_blocks distinct block ids dealt out to n sequences of ctx[s] positions;
 * unused entries of the (n, max_blocks) table are -1, so reading one faults. */
static void pf_block_table(int32_t *bt, const int *ctx, int n, int max_blocks, int bs, int n_blocks)
{
	int32_t *perm = malloc((size_t)n_blocks * sizeof(*perm));
	kt_shuffled_ids(perm, n_blocks);
	int next = 0;
	for (int s = 0; s < n; s++)
		for (int i = 0; i < max_blocks; i++)
			bt[(size_t)s * max_blocks + i] = i < (ctx[s] + bs - 1) / bs ? perm[next++] : -1;
	free(perm);
}

/* One batch on the host and the device: sequences of len[s] new rows after nc[s] cached ones.
 * The fp8 caches (kc8, vc8) exist after pf_batch_fp8 only. */
struct pf_batch {
	int n, T, Hq, KV, hd, bs, max_blocks, n_blocks;
	int32_t *q_start, *n_cached, *bt;
	uint16_t *q, *kc, *vc;                 /* host */
	uint8_t *kc8, *vc8;                    /* host */
	uint16_t *dq, *dk, *dv, *dout;         /* device */
	uint8_t *dk8, *dv8;                    /* device */
	int32_t *dq_start, *dn_cached, *dbt;
	void *ws;
	size_t ws_bytes, nq, pool;
	float k_scale, v_scale;
};

static void pf_batch_init(struct pf_batch *b, int n, const int *len, const int *nc, int Hq,
			  int KV, int hd, int bs, int fill)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	b->Hq = Hq;
	b->KV = KV;
	b->hd = hd;
	b->bs = bs;
	b->q_start = malloc((size_t)(n + 1) * sizeof(int32_t));
	b->n_cached = malloc((size_t)n * sizeof(int32_t));
	int *ctx = malloc((size_t)n * sizeof(int));
	int need = 0, max_ctx = 1;
	b->q_start[0] = 0;
	for (int s = 0; s < n; s++) {
		b->q_start[s + 1] = b->q_start[s] + len[s];
		b->n_cached[s] = nc[s];
		ctx[s] = nc[s] + len[s];
		need += (ctx[s] + bs - 1) / bs;
		if (ctx[s] > max_ctx)
			max_ctx = ctx[s];
	}
	b->T = b->q_start[n];
	b->max_blocks = (max_ctx + bs - 1) / bs + 1;
	b->n_blocks = need + 5;
	b->bt = malloc((size_t)n * b->max_blocks * sizeof(int32_t));
	pf_block_table(b->bt, ctx, n, b->max_blocks, bs, b->n_blocks);
	free(ctx);
	b->nq = (size_t)b->T * Hq * hd;
	b->pool = (size_t)b->n_blocks * bs * KV * hd;
	b->q = malloc(b->nq * 2 + 2);
	b->kc = malloc(b->pool * 2);
	b->vc = malloc(b->pool * 2);
	if (fill) {
		fill_bf16(b->q, b->nq, -2.f, 2.f);
		fill_bf16(b->kc, b->pool, -2.f, 2.f);
		fill_bf16(b->vc, b->pool, -2.f, 2.f);
	} else {   /* timing: contents do not matter, but keep them finite */
		fill_bf16(b->q, b->nq < 4096 ? b->nq : 4096, -2.f, 2.f);
		for (size_t i = 4096; i < b->nq; i++)
			b->q[i] = b->q[i % 4096];
		for (size_t i = 0; i < b->pool; i++)
			b->kc[i] = b->vc[i] = b->q[i % 4093];
	}
	b->dq = dev_copy(b->q, b->nq * 2);
	b->dk = dev_copy(b->kc, b->pool * 2);
	b->dv = dev_copy(b->vc, b->pool * 2);
	b->dout = dev_copy(NULL, b->nq * 2);
	b->dq_start = dev_copy(b->q_start, (size_t)(n + 1) * sizeof(int32_t));
	b->dn_cached = dev_copy(b->n_cached, (size_t)n * sizeof(int32_t));
	b->dbt = dev_copy(b->bt, (size_t)n * b->max_blocks * sizeof(int32_t));
	b->ws_bytes = kn_prefill_attention_workspace_bytes(b->T, n, Hq, hd, b->max_blocks * bs);
	b->ws = dev_copy(NULL, b->ws_bytes);
}

static void pf_batch_free(struct pf_batch *b)
{
	CUDA_CHECK(cudaFree(b->dq));
	CUDA_CHECK(cudaFree(b->dk));
	CUDA_CHECK(cudaFree(b->dv));
	CUDA_CHECK(cudaFree(b->dout));
	CUDA_CHECK(cudaFree(b->dq_start));
	CUDA_CHECK(cudaFree(b->dn_cached));
	CUDA_CHECK(cudaFree(b->dbt));
	CUDA_CHECK(cudaFree(b->ws));
	CUDA_CHECK(cudaFree(b->dk8));   /* NULL unless pf_batch_fp8 ran: a no-op */
	CUDA_CHECK(cudaFree(b->dv8));
	free(b->kc8);
	free(b->vc8);
	free(b->q_start);
	free(b->n_cached);
	free(b->bt);
	free(b->q);
	free(b->kc);
	free(b->vc);
}

static int pf_run(struct pf_batch *b, size_t ws_bytes, int hd, cudaStream_t st)
{
	const float scale = 1.0f / sqrtf((float)b->hd);
	return kn_prefill_attention_cuda(b->dout, b->dq, b->dk, b->dv, b->dbt, b->dq_start,
					 b->dn_cached, b->n, b->T, b->Hq, b->KV, hd, b->bs,
					 b->max_blocks, scale, b->ws, ws_bytes, st);
}

static int pf_run_fp8(struct pf_batch *b, size_t ws_bytes, int hd, float k_scale, float v_scale,
		      cudaStream_t st)
{
	const float scale = 1.0f / sqrtf((float)b->hd);
	return kn_prefill_attention_fp8_cuda(b->dout, b->dq, b->dk8, b->dv8, b->dbt, b->dq_start,
					     b->dn_cached, b->n, b->T, b->Hq, b->KV, hd, b->bs,
					     b->max_blocks, scale, k_scale, v_scale, b->ws, ws_bytes,
					     st);
}

/* A random real K (V) element: uniform in ±k_range (±2), and with `sat` one element in 50 in
 * ±700·scale, which the encoding saturates to ±448·scale when |x| > 448·scale. */
static float pf_fp8_draw(float range, float scale, int sat)
{
	if (sat && frand(0.f, 1.f) < 0.02f)
		return frand(-700.f, 700.f) * scale;
	return frand(-range, range);
}

/*
 * Gives the batch fp8 caches: with fill, K and V drawn as pf_fp8_draw says and stored as
 * q = fp8(x · (1/scale)) (fp8.h); else (timing) the bytes of the bf16 caches' values. The bf16
 * caches (host and device) are then overwritten with bf16(float(q) · scale): exactly the
 * decoded values times the scales when the scales are powers of two.
 */
static void pf_batch_fp8(struct pf_batch *b, float k_scale, float v_scale, int fill, int sat)
{
	const float inv_k = 1.0f / k_scale, inv_v = 1.0f / v_scale;
	b->k_scale = k_scale;
	b->v_scale = v_scale;
	b->kc8 = malloc(b->pool);
	b->vc8 = malloc(b->pool);
	for (size_t i = 0; i < b->pool; i++) {
		if (!fill && i >= 4093) {   /* timing: a repeating pattern, as the bf16 fill */
			b->kc8[i] = b->kc8[i % 4093];
			b->vc8[i] = b->vc8[i % 4093];
			continue;
		}
		float k = fill ? pf_fp8_draw(4.f, k_scale, sat) : bf16_to_f32(b->kc[i]);
		float v = fill ? pf_fp8_draw(2.f, v_scale, sat) : bf16_to_f32(b->vc[i]);
		b->kc8[i] = f32_to_fp8e4m3(k * inv_k);
		b->vc8[i] = f32_to_fp8e4m3(v * inv_v);
	}
	for (size_t i = 0; i < b->pool; i++) {
		b->kc[i] = f32_to_bf16(fp8e4m3_to_f32(b->kc8[i]) * k_scale);
		b->vc[i] = f32_to_bf16(fp8e4m3_to_f32(b->vc8[i]) * v_scale);
	}
	CUDA_CHECK(cudaMemcpy(b->dk, b->kc, b->pool * 2, cudaMemcpyHostToDevice));
	CUDA_CHECK(cudaMemcpy(b->dv, b->vc, b->pool * 2, cudaMemcpyHostToDevice));
	b->dk8 = dev_copy(b->kc8, b->pool);
	b->dv8 = dev_copy(b->vc8, b->pool);
}

/* x is a power of two (so x·y is exact for every bf16 or E4M3 y in range). */
static int pow2(float x)
{
	int e;
	return x > 0 && frexpf(x, &e) == 0.5f;
}

/* Kernel variants the correctness tests run: query tile height and key splits (NULL: the
 * kernel's own choice). Splits apply only to batches of ≤ 16384 (row, head) pairs. An explicit
 * tile height selects prefill_attention.cu's mma.sync kernel; without one, head dim 128 on an
 * sm_90 device runs prefill_attention_wgmma.cu's (so the last two variants split that one). */
static const struct {
	const char *bm, *split;
} pf_variants[] = { { NULL, NULL }, { "128", "1" }, { "64", "1" }, { "64", "3" }, { "128", "8" },
		    { NULL, "1" },  { NULL, "5" } };

static void pf_set_variant(int v)
{
	if (pf_variants[v].bm)
		setenv("QVL_PREFILL_ATTN_BM", pf_variants[v].bm, 1);
	else
		unsetenv("QVL_PREFILL_ATTN_BM");
	if (pf_variants[v].split)
		setenv("QVL_PREFILL_ATTN_SPLIT", pf_variants[v].split, 1);
	else
		unsetenv("QVL_PREFILL_ATTN_SPLIT");
}

/* Runs one batch in every variant against the reference; returns the worst rel L2. */
static double pf_check(int n, const int *len, const int *nc, int Hq, int KV, int hd, int bs)
{
	struct pf_batch b;
	pf_batch_init(&b, n, len, nc, Hq, KV, hd, bs, 1);
	uint16_t *ref = malloc(b.nq * 2), *got = malloc(b.nq * 2);
	kn_prefill_attention_ref(ref, b.q, b.kc, b.vc, b.bt, b.q_start, b.n_cached, n, b.T, Hq, KV,
				 hd, bs, b.max_blocks, 1.0f / sqrtf((float)hd));
	/* refused, nothing launched: short workspace, unsupported head dim */
	ck_assert_int_eq(pf_run(&b, b.ws_bytes - 1, hd, 0), -1);
	ck_assert_int_eq(pf_run(&b, b.ws_bytes, 96, 0), -1);
	double worst = 0;
	for (int i = 0; i < NELEM(pf_variants); i++) {
		pf_set_variant(i);
		CUDA_CHECK(cudaMemset(b.dout, 0xff, b.nq * 2)); /* 0xffff is a bf16 NaN */
		ck_assert_int_eq(pf_run(&b, b.ws_bytes, hd, 0), 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, b.dout, b.nq * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, b.nq, 0.05);
		fprintf(stderr,
			"prefill_attention n=%d T=%d Hq=%d KV=%d hd=%d bs=%d BM=%s split=%s: rel L2 "
			"%.3g, max abs %.3g\n",
			n, b.T, Hq, KV, hd, bs, pf_variants[i].bm ? pf_variants[i].bm : "auto",
			pf_variants[i].split ? pf_variants[i].split : "auto", err,
			max_abs_bf16(got, ref, b.nq));
		ck_assert_msg(err <= 1e-2, "prefill_attention T=%d Hq=%d hd=%d variant %d: rel L2 %g",
			      b.T, Hq, hd, i, err);
		worst = fmax(worst, err);
	}
	pf_set_variant(0);
	free(ref);
	free(got);
	pf_batch_free(&b);
	return worst;
}

/*
 * Runs one batch with an fp8 cache in every variant against the fp8 reference (relative L2 ≤
 * 2e-3) and, when both scales are powers of two, against the bf16 kernel on the batch's
 * decoded bf16 cache (bit for bit). Returns the worst rel L2.
 */
static double pf_check_fp8(int n, const int *len, const int *nc, int Hq, int KV, int hd, int bs,
			   float k_scale, float v_scale, int sat)
{
	struct pf_batch b;
	pf_batch_init(&b, n, len, nc, Hq, KV, hd, bs, 1);
	pf_batch_fp8(&b, k_scale, v_scale, 1, sat);
	uint16_t *ref = malloc(b.nq * 2), *got = malloc(b.nq * 2), *b16 = malloc(b.nq * 2);
	kn_prefill_attention_fp8_ref(ref, b.q, b.kc8, b.vc8, b.bt, b.q_start, b.n_cached, n, b.T,
				     Hq, KV, hd, bs, b.max_blocks, 1.0f / sqrtf((float)hd), k_scale,
				     v_scale);
	/* refused, nothing launched: short workspace, unsupported head dim, bad scales */
	ck_assert_int_eq(pf_run_fp8(&b, b.ws_bytes - 1, hd, k_scale, v_scale, 0), -1);
	ck_assert_int_eq(pf_run_fp8(&b, b.ws_bytes, 96, k_scale, v_scale, 0), -1);
	ck_assert_int_eq(pf_run_fp8(&b, b.ws_bytes, hd, 0.f, v_scale, 0), -1);
	ck_assert_int_eq(pf_run_fp8(&b, b.ws_bytes, hd, k_scale, -1.f, 0), -1);
	ck_assert_int_eq(pf_run_fp8(&b, b.ws_bytes, hd, NAN, v_scale, 0), -1);
	const int exact = pow2(k_scale) && pow2(v_scale);
	/* mismatches worth printing: beyond a bf16 rounding flip at the outputs' magnitude */
	double ref_max = 0;
	for (size_t e = 0; e < b.nq; e++)
		ref_max = fmax(ref_max, fabs(bf16_to_f32(ref[e])));
	const double tol_print = fmax(0.05, ref_max / 64);
	double worst = 0;
	for (int i = 0; i < NELEM(pf_variants); i++) {
		pf_set_variant(i);
		long diff = -1;   /* elements that differ from the bf16 kernel; -1: not compared */
		if (exact) {
			CUDA_CHECK(cudaMemset(b.dout, 0xff, b.nq * 2));
			ck_assert_int_eq(pf_run(&b, b.ws_bytes, hd, 0), 0);
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(b16, b.dout, b.nq * 2, cudaMemcpyDeviceToHost));
		}
		CUDA_CHECK(cudaMemset(b.dout, 0xff, b.nq * 2)); /* 0xffff is a bf16 NaN */
		ck_assert_int_eq(pf_run_fp8(&b, b.ws_bytes, hd, k_scale, v_scale, 0), 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, b.dout, b.nq * 2, cudaMemcpyDeviceToHost));
		if (exact) {
			diff = 0;
			for (size_t e = 0; e < b.nq; e++)
				diff += got[e] != b16[e];
		}
		double err = rel_l2_bf16(got, ref, b.nq, tol_print);
		fprintf(stderr,
			"prefill_attention fp8 n=%d T=%d Hq=%d KV=%d hd=%d bs=%d k_scale=%g "
			"v_scale=%g%s BM=%s split=%s: rel L2 %.3g, max abs %.3g; differ from bf16 "
			"kernel: %ld\n",
			n, b.T, Hq, KV, hd, bs, k_scale, v_scale, sat ? " saturating" : "",
			pf_variants[i].bm ? pf_variants[i].bm : "auto",
			pf_variants[i].split ? pf_variants[i].split : "auto", err,
			max_abs_bf16(got, ref, b.nq), diff);
		ck_assert_msg(err <= 2e-3, "prefill_attention fp8 T=%d Hq=%d hd=%d variant %d: rel L2 %g",
			      b.T, Hq, hd, i, err);
		ck_assert_msg(diff <= 0, "prefill_attention fp8 T=%d hd=%d variant %d: %ld elements "
			      "differ from the bf16 kernel", b.T, hd, i, diff);
		worst = fmax(worst, err);
	}
	pf_set_variant(0);
	free(ref);
	free(got);
	free(b16);
	pf_batch_free(&b);
	return worst;
}

/* The 2B model's shape (g 2): a decode-like row with a long cache, a fresh prompt, a 1-row
 * prompt, cached prefixes not multiples of the block size, tile-sized and odd lengths. */
START_TEST(test_attention_cuda_qwen_shape)
{
	if (small_mode()) {
		static const int len[] = { 1, 70, 3 }, nc[] = { 40, 5, 0 };
		ck_assert(pf_check(NELEM(len), len, nc, 4, 2, 128, 16) <= 1e-2);
		return;
	}
	static const int len[] = { 1, 700, 1, 130, 65, 64, 129 };
	static const int nc[] = { 3000, 0, 0, 37, 1000, 64, 0 };
	ck_assert(pf_check(NELEM(len), len, nc, 16, 8, 128, 16) <= 1e-2);
}
END_TEST

/* The tiny test model's shape: hd 32, one long prompt among short ones. */
START_TEST(test_attention_cuda_hd32)
{
	if (small_mode()) {
		static const int len[] = { 66, 1 }, nc[] = { 3, 17 };
		ck_assert(pf_check(NELEM(len), len, nc, 4, 2, 32, 16) <= 1e-2);
		return;
	}
	static const int len[] = { 2500, 3, 129 }, nc[] = { 0, 17, 300 };
	ck_assert(pf_check(NELEM(len), len, nc, 4, 2, 32, 16) <= 1e-2);
}
END_TEST

/* GQA g 4 and 8 at hd 64, block sizes 32 and 8, an empty sequence in the middle of the batch. */
START_TEST(test_attention_cuda_gqa_hd64)
{
	if (small_mode()) {
		static const int len[] = { 20, 0, 45 }, nc[] = { 9, 50, 100 };
		ck_assert(pf_check(NELEM(len), len, nc, 8, 2, 64, 32) <= 1e-2);
		return;
	}
	static const int len[] = { 257, 1, 0, 100, 63 }, nc[] = { 5, 1, 50, 900, 0 };
	ck_assert(pf_check(NELEM(len), len, nc, 8, 2, 64, 32) <= 1e-2);
	static const int len8[] = { 190, 7 }, nc8[] = { 77, 1200 };
	ck_assert(pf_check(NELEM(len8), len8, nc8, 8, 1, 64, 8) <= 1e-2);
}
END_TEST

/* g 1 (no sharing) at hd 128, block size 8. */
START_TEST(test_attention_cuda_mha_hd128)
{
	if (small_mode())
		return;
	static const int len[] = { 333, 17, 1 }, nc[] = { 123, 0, 4000 };
	ck_assert(pf_check(NELEM(len), len, nc, 4, 4, 128, 8) <= 1e-2);
}
END_TEST

/* All sequences one new row: the prefill kernel must agree with the decode kernel (and both
 * with the reference). */
START_TEST(test_attention_cuda_matches_decode)
{
	enum { HQ = 16, KV = 8, HD = 128, BS = 16 };
	static const int lens[] = { 1, 15, 16, 17, 1000, 3000 };
	const int n = small_mode() ? 4 : 37;
	int *len = malloc((size_t)n * sizeof(int)), *nc = malloc((size_t)n * sizeof(int));
	for (int s = 0; s < n; s++) {
		len[s] = 1;
		nc[s] = lens[(s + s / 6) % 6] - 1;
	}
	struct pf_batch b;
	pf_batch_init(&b, n, len, nc, HQ, KV, HD, BS, 1);
	const float scale = 1.0f / sqrtf((float)HD);
	uint16_t *ref = malloc(b.nq * 2), *got = malloc(b.nq * 2), *dec = malloc(b.nq * 2);
	kn_prefill_attention_ref(ref, b.q, b.kc, b.vc, b.bt, b.q_start, b.n_cached, n, b.T, HQ, KV,
				 HD, BS, b.max_blocks, scale);

	/* split 1 (the plain path), then the keys split in 5 */
	setenv("QVL_PREFILL_ATTN_SPLIT", "1", 1);
	ck_assert_int_eq(pf_run(&b, b.ws_bytes, HD, 0), 0);
	CUDA_CHECK(cudaDeviceSynchronize());
	CUDA_CHECK(cudaMemcpy(got, b.dout, b.nq * 2, cudaMemcpyDeviceToHost));
	double e_plain = rel_l2_bf16(got, ref, b.nq, 0.05);
	setenv("QVL_PREFILL_ATTN_SPLIT", "5", 1);
	CUDA_CHECK(cudaMemset(b.dout, 0xff, b.nq * 2));
	ck_assert_int_eq(pf_run(&b, b.ws_bytes, HD, 0), 0);
	CUDA_CHECK(cudaDeviceSynchronize());
	CUDA_CHECK(cudaMemcpy(got, b.dout, b.nq * 2, cudaMemcpyDeviceToHost));
	unsetenv("QVL_PREFILL_ATTN_SPLIT");

	int32_t *ctx = malloc((size_t)n * sizeof(int32_t));
	for (int s = 0; s < n; s++)
		ctx[s] = nc[s] + 1;
	int32_t *dctx = dev_copy(ctx, (size_t)n * sizeof(int32_t));
	size_t wsb = kn_paged_attention_workspace_bytes(n, HQ, HD, b.max_blocks * BS);
	void *ws = dev_copy(NULL, wsb);
	uint16_t *ddec = dev_copy(NULL, b.nq * 2);
	ck_assert_int_eq(kn_paged_attention_cuda(ddec, b.dq, b.dk, b.dv, b.dbt, dctx, n, HQ, KV, HD,
						 BS, b.max_blocks, scale, ws, wsb, 0),
			 0);
	CUDA_CHECK(cudaDeviceSynchronize());
	CUDA_CHECK(cudaMemcpy(dec, ddec, b.nq * 2, cudaMemcpyDeviceToHost));

	double e_dec = rel_l2_bf16(got, dec, b.nq, 0.05), e_ref = rel_l2_bf16(got, ref, b.nq, 0.05);
	double e_dr = rel_l2_bf16(dec, ref, b.nq, 0.05);
	fprintf(stderr,
		"prefill_attention 1-row x %d vs decode: rel L2 %.3g (max abs %.3g); vs ref %.3g "
		"(split 5; unsplit %.3g); decode vs ref %.3g\n",
		n, e_dec, max_abs_bf16(got, dec, b.nq), e_ref, e_plain, e_dr);
	ck_assert_msg(e_plain <= 1e-2, "prefill (split 1) vs ref: rel L2 %g", e_plain);
	ck_assert_msg(e_dec <= 1e-2, "prefill vs decode: rel L2 %g", e_dec);
	ck_assert_msg(e_ref <= 1e-2, "prefill vs ref: rel L2 %g", e_ref);

	CUDA_CHECK(cudaFree(dctx));
	CUDA_CHECK(cudaFree(ws));
	CUDA_CHECK(cudaFree(ddec));
	free(ctx);
	free(ref);
	free(got);
	free(dec);
	free(len);
	free(nc);
	pf_batch_free(&b);
}
END_TEST

/* fp8: the shapes of test_attention_cuda_qwen_shape, scales 1 (the engine's) and 2^-2, 2^3. */
START_TEST(test_attention_cuda_fp8_qwen_shape)
{
	if (small_mode()) {
		static const int len[] = { 1, 70, 3 }, nc[] = { 40, 5, 0 };
		ck_assert(pf_check_fp8(NELEM(len), len, nc, 4, 2, 128, 16, 1.f, 1.f, 0) <= 2e-3);
		return;
	}
	static const int len[] = { 1, 700, 1, 130, 65, 64, 129 };
	static const int nc[] = { 3000, 0, 0, 37, 1000, 64, 0 };
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 16, 8, 128, 16, 1.f, 1.f, 0) <= 2e-3);
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 16, 8, 128, 16, 0.25f, 8.f, 0) <= 2e-3);
}
END_TEST

/* fp8: the shapes of test_attention_cuda_hd32 (odd lengths, chunked prefill). */
START_TEST(test_attention_cuda_fp8_hd32)
{
	if (small_mode()) {
		static const int len[] = { 66, 1 }, nc[] = { 3, 17 };
		ck_assert(pf_check_fp8(NELEM(len), len, nc, 4, 2, 32, 16, 0.5f, 2.f, 0) <= 2e-3);
		return;
	}
	static const int len[] = { 2500, 3, 129 }, nc[] = { 0, 17, 300 };
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 4, 2, 32, 16, 0.5f, 2.f, 0) <= 2e-3);
}
END_TEST

/* fp8: GQA g 4 and 8 at hd 64, block sizes 32 and 8, an empty sequence in the batch. */
START_TEST(test_attention_cuda_fp8_gqa_hd64)
{
	if (small_mode()) {
		static const int len[] = { 20, 0, 45 }, nc[] = { 9, 50, 100 };
		ck_assert(pf_check_fp8(NELEM(len), len, nc, 8, 2, 64, 32, 1.f, 1.f, 0) <= 2e-3);
		return;
	}
	static const int len[] = { 257, 1, 0, 100, 63 }, nc[] = { 5, 1, 50, 900, 0 };
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 8, 2, 64, 32, 1.f, 1.f, 0) <= 2e-3);
	static const int len8[] = { 190, 7 }, nc8[] = { 77, 1200 };
	ck_assert(pf_check_fp8(NELEM(len8), len8, nc8, 8, 1, 64, 8, 2.f, 0.5f, 0) <= 2e-3);
}
END_TEST

/* fp8: g 1 at hd 128, block size 8. */
START_TEST(test_attention_cuda_fp8_mha_hd128)
{
	if (small_mode())
		return;
	static const int len[] = { 333, 17, 1 }, nc[] = { 123, 0, 4000 };
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 4, 4, 128, 8, 1.f, 1.f, 0) <= 2e-3);
}
END_TEST

/* fp8: values beyond the format's range (saturated to ±448·scale: peaked softmax rows, large
 * V), with power-of-two scales and with scales that are not (reference comparison only). */
START_TEST(test_attention_cuda_fp8_saturate)
{
	if (small_mode()) {
		static const int len[] = { 37, 1 }, nc[] = { 20, 70 };
		ck_assert(pf_check_fp8(NELEM(len), len, nc, 4, 2, 128, 16, 0.37f, 1.7f, 1) <= 2e-3);
		return;
	}
	static const int len[] = { 300, 1, 77, 129 }, nc[] = { 0, 2000, 500, 3 };
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 16, 8, 128, 16, 1.f, 1.f, 1) <= 2e-3);
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 16, 8, 128, 16, 0.37f, 1.7f, 1) <= 2e-3);
	ck_assert(pf_check_fp8(NELEM(len), len, nc, 8, 2, 64, 32, 0.013f, 21.f, 1) <= 2e-3);
}
END_TEST

/* Element offset of position 0, kv head 0 of sequence s in the batch's caches. */
static size_t pf_row0(const struct pf_batch *b, int s)
{
	return (size_t)b->bt[(size_t)s * b->max_blocks] * b->bs * b->KV * b->hd;
}

/*
 * fp8: every code but the two NaNs, read back exactly. Sequences of one position (len 1, nc
 * 0) attend only themselves, so out = bf16(v_scale · float(vq)) with softmax weight 1 and
 * no rounding anywhere (v_scale a power of two). 8 sequences × 32 dims × KV 1 = 256 codes.
 */
START_TEST(test_attention_cuda_fp8_every_code)
{
	enum { N = 8, HQ = 2, KV = 1, HD = 32, BS = 16 };
	static const float v_scales[] = { 1.f, 0.25f };
	int len[N], nc[N];
	for (int s = 0; s < N; s++) {
		len[s] = 1;
		nc[s] = 0;
	}
	struct pf_batch b;
	pf_batch_init(&b, N, len, nc, HQ, KV, HD, BS, 1);
	pf_batch_fp8(&b, 1.f, 1.f, 1, 0);
	/* the V row of sequence s holds codes 32·s .. 32·s + 31 */
	for (int s = 0; s < N; s++)
		for (int e = 0; e < HD; e++) {
			uint8_t c = (uint8_t)(32 * s + e);
			if ((c & 0x7f) == 0x7f)
				c &= 0x80;   /* NaN → ±0 */
			b.vc8[pf_row0(&b, s) + e] = c;
		}
	CUDA_CHECK(cudaMemcpy(b.dv8, b.vc8, b.pool, cudaMemcpyHostToDevice));
	uint16_t *got = malloc(b.nq * 2);
	for (int v = 0; v < NELEM(v_scales); v++)
		for (int i = 0; i < NELEM(pf_variants); i++) {
			pf_set_variant(i);
			CUDA_CHECK(cudaMemset(b.dout, 0xff, b.nq * 2));
			ck_assert_int_eq(pf_run_fp8(&b, b.ws_bytes, HD, 1.f, v_scales[v], 0), 0);
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(got, b.dout, b.nq * 2, cudaMemcpyDeviceToHost));
			int bad = 0;
			for (int r = 0; r < N * HQ; r++) {   /* row s, head h: r = s·HQ + h */
				const uint8_t *codes = b.vc8 + pf_row0(&b, r / HQ);
				for (int e = 0; e < HD; e++) {
					float want = fp8e4m3_to_f32(codes[e]) * v_scales[v];
					float g = bf16_to_f32(got[(size_t)r * HD + e]);
					if (g != want && bad++ < 5)
						fprintf(stderr, "  code 0x%02x: got %g want %g\n",
							codes[e], g, want);
				}
			}
			ck_assert_msg(bad == 0, "fp8 every code, v_scale %g, variant %d: %d wrong",
				      v_scales[v], i, bad);
		}
	fprintf(stderr, "prefill_attention fp8: all 254 non-NaN codes read back exactly\n");
	pf_set_variant(0);
	free(got);
	pf_batch_free(&b);
}
END_TEST

/* Not an assertion: table lines for the 2B model's shape (Hq 16, KV 8, hd 128, bs 16). */
START_TEST(test_attention_cuda_timing)
{
	const char *skip = getenv("QVL_TEST_NO_TIMING");
	if (small_mode() || (skip && *skip == '1'))
		return;
	enum { HQ = 16, KV = 8, HD = 128, BS = 16, REPS = 15, MAXN = 8 };
	static const struct {
		const char *name;
		int n, len, nc;
	} sc[] = { { "1 x 4096 new", 1, 4096, 0 },
		   { "8 x 512 new", 8, 512, 0 },
		   { "1 x 512 new + 3584 cached", 1, 512, 3584 },
		   { "1 x 8192 new", 1, 8192, 0 } };
	static const char *const bms[] = { NULL, "64", "128" };   /* split: the kernel's choice */
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	for (int c = 0; c < NELEM(sc); c++) {
		int len[MAXN], nc[MAXN];
		for (int s = 0; s < sc[c].n; s++) {
			len[s] = sc[c].len;
			nc[s] = sc[c].nc;
		}
		struct pf_batch b;
		pf_batch_init(&b, sc[c].n, len, nc, HQ, KV, HD, BS, 0);
		pf_batch_fp8(&b, 1.f, 1.f, 0, 0);
		/* causal FLOPs: 4·hd·Hq per (row, attended position) */
		double pairs = 0;
		for (int s = 0; s < sc[c].n; s++)
			for (int i = 0; i < len[s]; i++)
				pairs += nc[s] + i + 1;
		double flops = 4.0 * HD * HQ * pairs;
		for (int v = 0; v < NELEM(bms); v++) {
			if (bms[v])
				setenv("QVL_PREFILL_ATTN_BM", bms[v], 1);
			else
				unsetenv("QVL_PREFILL_ATTN_BM");
			/* bf16 and fp8 cache alternately, rep by rep, so that clock drift hits both */
			float ms[2][REPS];
			for (int r = -3; r < REPS; r++)
				for (int f = 0; f < 2; f++) {
					CUDA_CHECK(cudaEventRecord(e0, 0));
					ck_assert_int_eq(f ? pf_run_fp8(&b, b.ws_bytes, HD, 1.f, 1.f, 0)
							   : pf_run(&b, b.ws_bytes, HD, 0),
							 0);
					CUDA_CHECK(cudaEventRecord(e1, 0));
					CUDA_CHECK(cudaEventSynchronize(e1));
					if (r >= 0)
						CUDA_CHECK(cudaEventElapsedTime(&ms[f][r], e0, e1));
				}
			double med = median_ms(ms[0], REPS), med8 = median_ms(ms[1], REPS);
			fprintf(stderr,
				"prefill_attention timing | %s | events, 3 warm-up, median of %d | %s | "
				"Hq=%d KV=%d hd=%d bs=%d BM=%s | bf16 %.3f ms %.1f TFLOP/s | fp8 %.3f ms "
				"%.1f TFLOP/s\n",
				prop.name, REPS, sc[c].name, HQ, KV, HD, BS,
				bms[v] ? bms[v] : "auto", med, flops / (med * 1e-3) / 1e12, med8,
				flops / (med8 * 1e-3) / 1e12);
		}
		unsetenv("QVL_PREFILL_ATTN_BM");
		pf_batch_free(&b);
	}
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
}
END_TEST

int main(void)
{
	kt_seed(0x9e3779b97f4a7c15ull);
	int count = 0;
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
		fprintf(stderr, "no CUDA device visible: skipping\n");
		return 77;
	}
	Suite *s = suite_create("attention_cuda");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_attention_cuda_qwen_shape);
	tcase_add_test(tc, test_attention_cuda_hd32);
	tcase_add_test(tc, test_attention_cuda_gqa_hd64);
	tcase_add_test(tc, test_attention_cuda_mha_hd128);
	tcase_add_test(tc, test_attention_cuda_matches_decode);
	tcase_add_test(tc, test_attention_cuda_timing);
	suite_add_tcase(s, tc);
	TCase *tc8 = tcase_create("fp8");
	tcase_set_timeout(tc8, 600);
	tcase_add_test(tc8, test_attention_cuda_fp8_qwen_shape);
	tcase_add_test(tc8, test_attention_cuda_fp8_hd32);
	tcase_add_test(tc8, test_attention_cuda_fp8_gqa_hd64);
	tcase_add_test(tc8, test_attention_cuda_fp8_mha_hd128);
	tcase_add_test(tc8, test_attention_cuda_fp8_saturate);
	tcase_add_test(tc8, test_attention_cuda_fp8_every_code);
	suite_add_tcase(s, tc8);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
