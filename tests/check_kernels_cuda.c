/*
 * CUDA kernels against their plain-C references, on seeded random inputs (never zeros), with
 * the output poisoned with NaN first so that an unwritten element fails. Exits 77 (automake's
 * SKIP) when no GPU is visible.
 *
 * The suite runs with CK_NOFORK: main() touches CUDA to look for a GPU, and a child forked
 * after that cannot use CUDA ("initialization error").
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "add_rmsnorm.h"
#include "bf16.h"
#include "cuda_check.h"
#include "embedding.h"
#include "rmsnorm.h"
#include "silu_mul.h"

static uint64_t lcg = 88172645463325252ull;
static float frand(float lo, float hi)
{
	lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
	return lo + (hi - lo) * (float)(lcg >> 40) / (float)(1u << 24);
}

/* ‖got − ref‖ / ‖ref‖ over n bf16 values; NaN anywhere in got gives +inf. Prints the first
 * mismatches beyond tol_abs. */
static double rel_l2_bf16(const uint16_t *got, const uint16_t *ref, size_t n, double tol_abs)
{
	double num = 0, den = 0;
	int shown = 0;
	for (size_t i = 0; i < n; i++) {
		double g = bf16_to_f32(got[i]), r = bf16_to_f32(ref[i]);
		if (isnan(g))
			return INFINITY;
		num += (g - r) * (g - r);
		den += r * r;
		if (fabs(g - r) > tol_abs && shown++ < 5)
			fprintf(stderr, "  mismatch at %zu: got %g want %g\n", i, g, r);
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

START_TEST(test_kernels_cuda_rmsnorm)
{
	static const int sizes[][2] = { { 1, 1 }, { 1, 128 }, { 7, 3 }, { 5, 2048 }, { 64, 128 },
					{ 3, 4099 }, { 300, 2048 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int rows = sizes[s][0], cols = sizes[s][1];
		size_t n = (size_t)rows * cols;
		uint16_t *x = malloc(n * 2), *w = malloc((size_t)cols * 2), *ref = malloc(n * 2),
			 *got = malloc(n * 2);
		for (size_t i = 0; i < n; i++)
			x[i] = f32_to_bf16(frand(-3.f, 3.f));
		for (int c = 0; c < cols; c++)
			w[c] = f32_to_bf16(frand(0.5f, 1.5f));
		kn_rmsnorm_ref(ref, x, w, rows, cols, 1e-6f);

		uint16_t *dx, *dw, *dy;
		CUDA_CHECK(cudaMalloc((void **)&dx, n * 2));
		CUDA_CHECK(cudaMalloc((void **)&dw, (size_t)cols * 2));
		CUDA_CHECK(cudaMalloc((void **)&dy, n * 2));
		CUDA_CHECK(cudaMemcpy(dx, x, n * 2, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dw, w, (size_t)cols * 2, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemset(dy, 0xff, n * 2)); /* 0xffff is a bf16 NaN */
		kn_rmsnorm_cuda(dy, dx, dw, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.02);
		fprintf(stderr, "rmsnorm %dx%d: rel L2 %.3g\n", rows, cols, err);
		/* bf16 output; the kernel's fp32 sum differs from the double reference only by
		 * rounding, which can flip a bf16 rounding now and then */
		ck_assert_msg(err < 2e-3, "rmsnorm %dx%d: rel L2 error %g", rows, cols, err);

		/* in place */
		CUDA_CHECK(cudaMemcpy(dy, x, n * 2, cudaMemcpyHostToDevice));
		kn_rmsnorm_cuda(dy, dy, dw, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaMemcpy(got, dy, n * 2, cudaMemcpyDeviceToHost));
		ck_assert(rel_l2_bf16(got, ref, n, 0.02) < 2e-3);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		free(x);
		free(w);
		free(ref);
		free(got);
	}
}
END_TEST

/* Fraction of the n bf16 values of got that equal ref bit for bit. */
static double exact_rate(const uint16_t *got, const uint16_t *ref, size_t n)
{
	size_t same = 0;
	for (size_t i = 0; i < n; i++)
		same += got[i] == ref[i];
	return n ? (double)same / (double)n : 1.0;
}

static void fill_bf16(uint16_t *p, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		p[i] = f32_to_bf16(frand(lo, hi));
}

/* A device buffer of n bf16 plus one spare element (for the misaligned cases), filled with
 * NaN (0xffff), or with host data when src is non-NULL (at element offset off). */
static uint16_t *dev_bf16(const uint16_t *src, size_t n, int off)
{
	uint16_t *d;
	CUDA_CHECK(cudaMalloc((void **)&d, (n + 1) * 2));
	CUDA_CHECK(cudaMemset(d, 0xff, (n + 1) * 2));
	if (src)
		CUDA_CHECK(cudaMemcpy(d + off, src, n * 2, cudaMemcpyHostToDevice));
	return d;
}

/* Sizes: {rows, cols, misaligned}. misaligned shifts every buffer by one bf16 so that the
 * vector paths are refused and the element paths run on shapes they would otherwise not see. */
START_TEST(test_kernels_cuda_embedding)
{
	enum { V = 4099 };
	static const int sizes[][3] = { { 1, 1, 0 },    { 1, 2048, 0 }, { 7, 3, 0 },
					{ 5, 13, 0 },   { 3, 8, 0 },    { 37, 2048, 0 },
					{ 300, 2048, 0 }, { 9, 2048, 1 }, { 4, 6144, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], D = sizes[s][1], off = sizes[s][2];
		size_t nt = (size_t)V * D, n = (size_t)T * D;
		uint16_t *table = malloc(nt * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		int32_t *ids = malloc((size_t)T * 4);
		fill_bf16(table, nt, -2.f, 2.f);
		for (int t = 0; t < T; t++)
			ids[t] = (int32_t)frand(0.f, (float)V - 0.5f);
		ids[0] = V - 1;   /* the last row, the one most likely to be read out of bounds */
		kn_embedding_ref(ref, table, ids, T, D);

		uint16_t *dt = dev_bf16(table, nt, off), *dy = dev_bf16(NULL, n, 0);
		int32_t *di;
		CUDA_CHECK(cudaMalloc((void **)&di, (size_t)T * 4));
		CUDA_CHECK(cudaMemcpy(di, ids, (size_t)T * 4, cudaMemcpyHostToDevice));
		kn_embedding_cuda(dy + off, dt + off, di, T, D, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double rate = exact_rate(got, ref, n);
		fprintf(stderr, "embedding T=%d D=%d%s: exact %.6f\n", T, D, off ? " misaligned" : "",
			rate);
		ck_assert_msg(memcmp(got, ref, n * 2) == 0, "embedding T=%d D=%d: not bit-exact", T, D);
		CUDA_CHECK(cudaFree(dt));
		CUDA_CHECK(cudaFree(dy));
		CUDA_CHECK(cudaFree(di));
		free(table);
		free(ref);
		free(got);
		free(ids);
	}
}
END_TEST

START_TEST(test_kernels_cuda_add_rmsnorm)
{
	static const int sizes[][3] = { { 1, 1, 0 },     { 1, 2048, 0 }, { 7, 3, 0 },
					{ 5, 2048, 0 },  { 3, 4099, 0 }, { 64, 128, 0 },
					{ 300, 2048, 0 }, { 2, 6144, 0 }, { 5, 2048, 1 },
					{ 33, 1000, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int rows = sizes[s][0], cols = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)rows * cols;
		uint16_t *res = malloc(n * 2), *x = malloc(n * 2), *w = malloc((size_t)cols * 2),
			 *ref_res = malloc(n * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		fill_bf16(res, n, -3.f, 3.f);
		fill_bf16(x, n, -1.f, 1.f);
		fill_bf16(w, (size_t)cols, 0.5f, 1.5f);
		memcpy(ref_res, res, n * 2);
		kn_add_rmsnorm_ref(ref, ref_res, x, w, rows, cols, 1e-6f);

		uint16_t *dr = dev_bf16(res, n, off), *dx = dev_bf16(x, n, off),
			 *dw = dev_bf16(w, (size_t)cols, off), *dy = dev_bf16(NULL, n, 0);
		kn_add_rmsnorm_cuda(dy + off, dr + off, dx + off, dw + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		/* the residual add is one fp32 add and one rounding in both: bit-exact */
		CUDA_CHECK(cudaMemcpy(got, dr + off, n * 2, cudaMemcpyDeviceToHost));
		double rate_res = exact_rate(got, ref_res, n);
		ck_assert_msg(memcmp(got, ref_res, n * 2) == 0,
			      "add_rmsnorm %dx%d: residual not bit-exact (%.6f)", rows, cols, rate_res);
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.02);
		fprintf(stderr, "add_rmsnorm %dx%d%s: rel L2 %.3g, exact %.6f (residual exact %.6f)\n",
			rows, cols, off ? " misaligned" : "", err, exact_rate(got, ref, n), rate_res);
		ck_assert_msg(err <= 1e-2, "add_rmsnorm %dx%d: rel L2 error %g", rows, cols, err);

		/* out aliasing x */
		CUDA_CHECK(cudaMemcpy(dr + off, res, n * 2, cudaMemcpyHostToDevice));
		kn_add_rmsnorm_cuda(dx + off, dr + off, dx + off, dw + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaMemcpy(got, dx + off, n * 2, cudaMemcpyDeviceToHost));
		err = rel_l2_bf16(got, ref, n, 0.02);
		ck_assert_msg(err <= 1e-2, "add_rmsnorm %dx%d in place: rel L2 error %g", rows, cols,
			      err);
		CUDA_CHECK(cudaFree(dr));
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		free(res);
		free(x);
		free(w);
		free(ref_res);
		free(ref);
		free(got);
	}
}
END_TEST

START_TEST(test_kernels_cuda_silu_mul)
{
	static const int sizes[][3] = { { 1, 1, 0 },     { 1, 6144, 0 }, { 7, 3, 0 },
					{ 5, 13, 0 },    { 37, 6144, 0 }, { 300, 6144, 0 },
					{ 3, 2048, 0 },  { 4, 6144, 1 }, { 17, 1000, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], F = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)T * F;
		uint16_t *gu = malloc(2 * n * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		fill_bf16(gu, 2 * n, -6.f, 6.f);
		kn_silu_mul_ref(ref, gu, T, F);

		uint16_t *dg = dev_bf16(gu, 2 * n, off), *dy = dev_bf16(NULL, n, 0);
		kn_silu_mul_cuda(dy + off, dg + off, T, F, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.05);
		fprintf(stderr, "silu_mul T=%d F=%d%s: rel L2 %.3g, exact %.6f\n", T, F,
			off ? " misaligned" : "", err, exact_rate(got, ref, n));
		ck_assert_msg(err <= 1e-2, "silu_mul T=%d F=%d: rel L2 error %g", T, F, err);
		CUDA_CHECK(cudaFree(dg));
		CUDA_CHECK(cudaFree(dy));
		free(gu);
		free(ref);
		free(got);
	}
}
END_TEST

int main(void)
{
	int count = 0;
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
		fprintf(stderr, "no CUDA device visible: skipping\n");
		return 77;
	}
	Suite *s = suite_create("kernels_cuda");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_kernels_cuda_rmsnorm);
	tcase_add_test(tc, test_kernels_cuda_embedding);
	tcase_add_test(tc, test_kernels_cuda_add_rmsnorm);
	tcase_add_test(tc, test_kernels_cuda_silu_mul);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
