/*
 * check_sampling_cuda: kn_sample_cuda against kn_sample_ref on random batches (bf16 logits of
 * several kinds: normal, coarse with many ties, -inf / NaN / +inf, all masked, all equal; every
 * parameter mixed; penalty and mask lists overlapping; logprobs), V in {1, 7, 65, 1000, 4099,
 * 151936} (vector and scalar loads), B in {1, 7, 128}.
 *
 * Masses are exact integers in both (sampling.h), so the ids must be identical; a mismatch is
 * printed with the reference's margins to the nearest boundary and fails whatever they are.
 * Logprobs within 1e-3 (fp32 sums on the GPU, double in the reference), top ids identical, and a
 * row without logprobs leaves its poisoned outputs alone. Timing of B = 128 at V = 151936 is
 * printed (events, 3 warm-up, median of 20), not asserted.
 *
 * SAMPLING_QUICK=1 runs a smaller set (for compute-sanitizer). Exits 77 without a GPU; the suite
 * runs with CK_NOFORK (main() touches CUDA).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "sampling.h"
#include "sampling_testgen.h"

#define CK(call)                                                                            \
	do {                                                                                \
		cudaError_t e_ = (call);                                                    \
		ck_assert_msg(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_)); \
	} while (0)

/* Random parameters and lists for row r (lists appended at *n_pen, *n_mask). */
static void gen_row(kn_sample_row *r, kn_sample_pen *pen, int *n_pen, int32_t *mask, int *n_mask,
		    int V)
{
	double T = irand(5) == 0 ? (irand(2) ? 0 : 5e-6) : 0.05 + 2 * urand();
	double top_p = irand(2) ? (irand(4) ? 0.02 + 0.97 * urand() : 0.9) : 1;
	int top_k = irand(2) ? (irand(4) ? 1 + irand(V < 300 ? V + 2 : 300) : V + irand(3)) : 0;
	double min_p = irand(4) == 0 ? (irand(5) ? 0.3 * urand() : 1) : 0;
	double rep = irand(4) == 0 ? 0.5 + 1.5 * urand() : 1;
	double fq = irand(4) == 0 ? 4 * urand() - 2 : 0;
	double pr = irand(4) == 0 ? 4 * urand() - 2 : 0;
	kn_sample_row_init(r, T, top_p, top_k, min_p, rep, pr, fq);
	r->u = irand(20) == 0 ? 1 - 0x1p-53 * (1 + irand(4)) : urand();
	r->logprobs = irand(3) ? -1 : irand(KN_SAMPLE_MAX_LOGPROBS + 1);
	r->pen_start = *n_pen;
	if (rep != 1 || fq != 0 || pr != 0) {
		int n = irand(V < 100 ? V + 1 : 100);
		int start = irand(V);
		for (int i = 0; i < n; i++)   /* distinct: consecutive ids mod V */
			pen[(*n_pen)++] = (kn_sample_pen){ (start + i * 7) % V == 0 && i ? -1 :
							   (start + i) % V, irand(3) ? irand(5) : 0 };
		r->pen_count = n;
	}
	r->mask_start = *n_mask;
	if (irand(4) == 0) {
		int n = 1 + irand(6);
		for (int i = 0; i < n; i++) {
			/* duplicates, overlaps with pen ids, and now and then out of range */
			int32_t id = irand(3) == 0 && r->pen_count ? pen[r->pen_start].id : irand(V);
			mask[(*n_mask)++] = irand(30) == 0 ? V + 3 : id;
			if (irand(4) == 0 && i + 1 < n)
				mask[(*n_mask)++] = id, i++;
		}
		r->mask_count = *n_mask - r->mask_start;
	}
}

typedef struct batch {
	int B, V;
	uint16_t *logits;
	kn_sample_row *rows;
	kn_sample_pen *pen;
	int32_t *mask;
	int n_pen, n_mask;
} batch;

static void batch_gen(batch *bt, int B, int V)
{
	bt->B = B;
	bt->V = V;
	bt->logits = malloc((size_t)B * V * sizeof(uint16_t));
	bt->rows = malloc((size_t)B * sizeof(kn_sample_row));
	bt->pen = malloc((size_t)B * 101 * sizeof(kn_sample_pen));
	bt->mask = malloc((size_t)B * 12 * sizeof(int32_t) + 4);
	bt->n_pen = bt->n_mask = 0;
	for (int b = 0; b < B; b++) {
		sg_gen_logits(bt->logits + (size_t)b * V, V, irand(7));
		gen_row(&bt->rows[b], bt->pen, &bt->n_pen, bt->mask, &bt->n_mask, V);
	}
}

static void batch_free(batch *bt)
{
	free(bt->logits);
	free(bt->rows);
	free(bt->pen);
	free(bt->mask);
}

typedef struct dev {
	uint16_t *logits;
	kn_sample_row *rows;
	kn_sample_pen *pen;
	int32_t *mask, *ids, *top_ids;
	float *lp, *top_lps;
} dev;

static void dev_up(dev *d, const batch *bt)
{
	size_t B = (size_t)bt->B, nl = B * KN_SAMPLE_MAX_LOGPROBS;
	CK(cudaMalloc((void **)&d->logits, B * bt->V * sizeof(uint16_t)));
	CK(cudaMalloc((void **)&d->rows, B * sizeof(kn_sample_row)));
	CK(cudaMalloc((void **)&d->pen, (bt->n_pen + 1) * sizeof(kn_sample_pen)));
	CK(cudaMalloc((void **)&d->mask, (bt->n_mask + 1) * sizeof(int32_t)));
	CK(cudaMalloc((void **)&d->ids, B * sizeof(int32_t)));
	CK(cudaMalloc((void **)&d->lp, B * sizeof(float)));
	CK(cudaMalloc((void **)&d->top_ids, nl * sizeof(int32_t)));
	CK(cudaMalloc((void **)&d->top_lps, nl * sizeof(float)));
	CK(cudaMemcpy(d->logits, bt->logits, B * bt->V * sizeof(uint16_t), cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d->rows, bt->rows, B * sizeof(kn_sample_row), cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d->pen, bt->pen, bt->n_pen * sizeof(kn_sample_pen), cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d->mask, bt->mask, bt->n_mask * sizeof(int32_t), cudaMemcpyHostToDevice));
	/* poison: 0xff bytes are NaN floats and id -1 */
	CK(cudaMemset(d->ids, 0xff, B * sizeof(int32_t)));
	CK(cudaMemset(d->lp, 0xff, B * sizeof(float)));
	CK(cudaMemset(d->top_ids, 0xff, nl * sizeof(int32_t)));
	CK(cudaMemset(d->top_lps, 0xff, nl * sizeof(float)));
}

static void dev_free(dev *d)
{
	cudaFree(d->logits);
	cudaFree(d->rows);
	cudaFree(d->pen);
	cudaFree(d->mask);
	cudaFree(d->ids);
	cudaFree(d->lp);
	cudaFree(d->top_ids);
	cudaFree(d->top_lps);
}

static int close_lp(float a, float b)
{
	return a == b || fabsf(a - b) <= 1e-3f;
}

/* Run one batch on both and compare; returns the number of rows whose ids agree. */
static int run_batch(int B, int V)
{
	batch bt;
	batch_gen(&bt, B, V);
	dev d;
	dev_up(&d, &bt);
	ck_assert_int_eq(kn_sample_cuda(d.ids, d.lp, d.top_ids, d.top_lps, d.logits, d.rows, d.pen,
					d.mask, B, V, 0), 0);
	CK(cudaDeviceSynchronize());
	size_t nl = (size_t)B * KN_SAMPLE_MAX_LOGPROBS;
	int32_t *ids = malloc(B * sizeof(int32_t)), *ref_ids = malloc(B * sizeof(int32_t));
	int32_t *tid = malloc(nl * sizeof(int32_t)), *ref_tid = malloc(nl * sizeof(int32_t));
	float *lp = malloc(B * sizeof(float)), *ref_lp = malloc(B * sizeof(float));
	float *tlp = malloc(nl * sizeof(float)), *ref_tlp = malloc(nl * sizeof(float));
	CK(cudaMemcpy(ids, d.ids, B * sizeof(int32_t), cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(lp, d.lp, B * sizeof(float), cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(tid, d.top_ids, nl * sizeof(int32_t), cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(tlp, d.top_lps, nl * sizeof(float), cudaMemcpyDeviceToHost));
	kn_sample_ref(ref_ids, ref_lp, ref_tid, ref_tlp, bt.logits, bt.rows, bt.pen, bt.mask, B, V);
	int bad = 0;
	for (int b = 0; b < B; b++) {
		const kn_sample_row *r = &bt.rows[b];
		if (ids[b] != ref_ids[b]) {
			double dm, cm;
			kn_sample_ref_margins(bt.logits + (size_t)b * V, r, bt.pen, bt.mask, V, &dm, &cm);
			if (bad++ < 5) {
				printf("B %d V %d row %d: gpu %d ref %d (T %g top_p %g top_k %d min_p %g "
				       "pen %d mask %d u %.17g; ref margins %.3g %.3g)\n",
				       B, V, b, ids[b], ref_ids[b], r->temperature, r->top_p, r->top_k,
				       r->min_p, r->pen_count, r->mask_count, r->u, dm, cm);
				printf("  raw logits there: gpu's %g, ref's %g\n",
				       bf16_to_f32(bt.logits[(size_t)b * V + ids[b]]),
				       bf16_to_f32(bt.logits[(size_t)b * V + ref_ids[b]]));
			}
			continue;
		}
		size_t at = (size_t)b * KN_SAMPLE_MAX_LOGPROBS;
		int k = r->logprobs < V ? r->logprobs : V;
		if (r->logprobs < 0) {
			ck_assert_msg(isnan(lp[b]) && tid[at] == -1, "row %d: logprobs written", b);
			continue;
		}
		ck_assert_msg(close_lp(lp[b], ref_lp[b]), "B %d V %d row %d: logprob %g vs %g", B, V,
			      b, lp[b], ref_lp[b]);
		for (int j = 0; j < k; j++) {
			ck_assert_msg(tid[at + j] == ref_tid[at + j], "B %d V %d row %d top %d: %d vs %d",
				      B, V, b, j, tid[at + j], ref_tid[at + j]);
			ck_assert_msg(close_lp(tlp[at + j], ref_tlp[at + j]),
				      "B %d V %d row %d top %d: %g vs %g", B, V, b, j, tlp[at + j],
				      ref_tlp[at + j]);
		}
		if (k < KN_SAMPLE_MAX_LOGPROBS)
			ck_assert_msg(tid[at + k] == -1, "row %d: top slot %d written", b, k);
	}
	ck_assert_msg(bad == 0, "B %d V %d: %d of %d ids differ from the reference", B, V, bad, B);
	int same = B - bad;
	free(ids);
	free(ref_ids);
	free(tid);
	free(ref_tid);
	free(lp);
	free(ref_lp);
	free(tlp);
	free(ref_tlp);
	dev_free(&d);
	batch_free(&bt);
	return same;
}

static int quick(void)
{
	const char *s = getenv("SAMPLING_QUICK");
	return s && *s == '1';
}

START_TEST(test_sampling_cuda_matches_ref)
{
	static const int Vs[] = { 1, 7, 65, 1000, 4099 };
	int rows = 0, asked = 0, reps = quick() ? 1 : 6;
	for (int rep = 0; rep < reps; rep++)
		for (size_t i = 0; i < sizeof(Vs) / sizeof(Vs[0]); i++) {
			rows += run_batch(1, Vs[i]);
			rows += run_batch(7, Vs[i]);
			asked += 8;
			if (!quick()) {
				rows += run_batch(128, Vs[i]);
				asked += 128;
			}
		}
	rows += run_batch(quick() ? 2 : 7, 151936);
	asked += quick() ? 2 : 7;
	if (!quick()) {
		rows += run_batch(1, 151936);
		rows += run_batch(128, 151936);
		asked += 129;
	}
	ck_assert_int_eq(rows, asked);
	printf("check_sampling_cuda: %d rows identical to the reference\n", rows);
}
END_TEST

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* B = 128, V = 151936: one parameter set for every row; prints the median time. Checks the ids
 * against the reference; returns how many agree. */
static int bench(const char *name, double T, double top_p, int top_k, int logprobs)
{
	enum { B = 128, V = 151936, N = 20 };
	batch bt;
	batch_gen(&bt, B, V);
	for (int b = 0; b < B; b++) {
		sg_gen_logits(bt.logits + (size_t)b * V, V, 0);
		double u = urand();
		kn_sample_row_init(&bt.rows[b], T, top_p, top_k, 0, 1, 0, 0);
		bt.rows[b].u = u;
		bt.rows[b].logprobs = logprobs;
	}
	bt.n_pen = bt.n_mask = 0;
	dev d;
	dev_up(&d, &bt);
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	float ms[N];
	for (int i = 0; i < N + 3; i++) {
		CK(cudaEventRecord(e0, 0));
		kn_sample_cuda(d.ids, d.lp, d.top_ids, d.top_lps, d.logits, d.rows, d.pen, d.mask, B, V,
			       0);
		CK(cudaEventRecord(e1, 0));
		CK(cudaEventSynchronize(e1));
		if (i >= 3)
			CK(cudaEventElapsedTime(&ms[i - 3], e0, e1));
	}
	qsort(ms, N, sizeof(float), cmp_float);
	struct cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	printf("bench %s: %s, B %d V %d: median %.1f us (min %.1f, max %.1f) of %d\n", name,
	       prop.name, B, V, ms[N / 2] * 1e3, ms[0] * 1e3, ms[N - 1] * 1e3, N);
	int32_t ids[128], ref[128];
	CK(cudaMemcpy(ids, d.ids, sizeof(ids), cudaMemcpyDeviceToHost));
	kn_sample_ref(ref, NULL, NULL, NULL, bt.logits, bt.rows, bt.pen, bt.mask, B, V);
	int bad = 0;
	for (int b = 0; b < B; b++)
		if (ids[b] != ref[b] && bad++ < 5)
			printf("bench %s row %d: gpu %d (logit %g) ref %d (logit %g)\n", name, b, ids[b],
			       bf16_to_f32(bt.logits[(size_t)b * V + ids[b]]), ref[b],
			       bf16_to_f32(bt.logits[(size_t)b * V + ref[b]]));
	ck_assert_msg(bad == 0, "bench %s: %d rows differ from the reference", name, bad);
	cudaEventDestroy(e0);
	cudaEventDestroy(e1);
	dev_free(&d);
	batch_free(&bt);
	return B - bad;
}

START_TEST(test_sampling_cuda_bench)
{
	if (quick())
		return;
	ck_assert_int_eq(bench("greedy", 0, 1, 0, -1), 128);
	ck_assert_int_eq(bench("T0.8 top_p0.9 top_k50", 0.8, 0.9, 50, -1), 128);
	ck_assert_int_eq(bench("T0.8 top_p0.9", 0.8, 0.9, 0, -1), 128);
	ck_assert_int_eq(bench("T1 plain", 1.0, 1, 0, -1), 128);
	ck_assert_int_eq(bench("greedy logprobs20", 0, 1, 0, 20), 128);
}
END_TEST

int main(void)
{
	sg_seed(0x9876543210fedcbaull);
	int count = 0;
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
		printf("check_sampling_cuda: no GPU, skipped\n");
		return 77;
	}
	Suite *s = suite_create("sampling_cuda");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 1200);
	tcase_add_test(tc, test_sampling_cuda_matches_ref);
	tcase_add_test(tc, test_sampling_cuda_bench);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
