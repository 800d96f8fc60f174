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

#include "bf16.h"
#include "cuda_check.h"
#include "rmsnorm.h"

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
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
