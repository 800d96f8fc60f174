/*
 * Tests of the plain-C kernel references and the float conversions they are built on. These run
 * everywhere; the CUDA kernels are compared with these references in check_kernels_cuda.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "add_rmsnorm.h"
#include "bf16.h"
#include "embedding.h"
#include "rmsnorm.h"
#include "silu_mul.h"
#include "testutil.h"

START_TEST(test_bf16_round_trip_and_rounding)
{
	/* every bf16 value survives bf16 → f32 → bf16 */
	for (uint32_t h = 0; h < 65536; h++) {
		float f = bf16_to_f32((uint16_t)h);
		if (isnan(f))
			continue;
		ck_assert_uint_eq(f32_to_bf16(f), h);
	}
	/* ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
	ck_assert_uint_eq(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	ck_assert_uint_eq(f32_to_bf16(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82);
	ck_assert_uint_eq(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	ck_assert(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}
END_TEST

START_TEST(test_f16_matches_compiler_conversion)
{
	/* decode: all 65536 values against the compiler's _Float16 */
	for (uint32_t h = 0; h < 65536; h++) {
		_Float16 g;
		uint16_t hh = (uint16_t)h;
		memcpy(&g, &hh, 2);
		float ref = (float)g, got = f16_to_f32(hh);
		if (isnan(ref)) {
			ck_assert(isnan(got));
			continue;
		}
		ck_assert_mem_eq(&got, &ref, 4);
	}
	/* encode: a strided sweep of all float bit patterns, subnormals and overflow included */
	for (uint64_t i = 0; i < (1ull << 32); i += 4099) {
		uint32_t u = (uint32_t)i;
		float f;
		memcpy(&f, &u, 4);
		if (isnan(f))
			continue;
		_Float16 g = (_Float16)f;
		uint16_t want;
		memcpy(&want, &g, 2);
		ck_assert_msg(f32_to_f16(f) == want, "f32 %08x -> %04x, want %04x", u, f32_to_f16(f), want);
	}
}
END_TEST

START_TEST(test_rmsnorm_ref_constant_row)
{
	/* a row of equal values c normalises to sign(c) (up to eps), then times w */
	enum { C = 40 };
	uint16_t x[2 * C], w[C], y[2 * C];
	for (int c = 0; c < C; c++) {
		x[c] = f32_to_bf16(3.0f);
		x[C + c] = f32_to_bf16(-0.5f);
		w[c] = f32_to_bf16(0.25f * (float)(c % 5 + 1));
	}
	kn_rmsnorm_ref(y, x, w, 2, C, 1e-6f);
	for (int c = 0; c < C; c++) {
		ck_assert_float_eq_tol(bf16_to_f32(y[c]), bf16_to_f32(w[c]), 1e-2);
		ck_assert_float_eq_tol(bf16_to_f32(y[C + c]), -bf16_to_f32(w[c]), 1e-2);
	}
}
END_TEST

START_TEST(test_rmsnorm_ref_matches_formula)
{
	/* against an independent float64 evaluation of the same formula, on seeded random rows */
	enum { R = 3, C = 129 };
	uint16_t x[R * C], w[C], y[R * C];
	srand(7);
	for (int i = 0; i < R * C; i++)
		x[i] = f32_to_bf16((float)rand() / RAND_MAX * 4.0f - 2.0f);
	for (int c = 0; c < C; c++)
		w[c] = f32_to_bf16(0.5f + (float)rand() / RAND_MAX);
	kn_rmsnorm_ref(y, x, w, R, C, 1e-6f);
	for (int r = 0; r < R; r++) {
		double ss = 0;
		for (int c = 0; c < C; c++)
			ss += (double)bf16_to_f32(x[r * C + c]) * bf16_to_f32(x[r * C + c]);
		double inv = 1.0 / sqrt(ss / C + 1e-6);
		for (int c = 0; c < C; c++) {
			double want = bf16_to_f32(w[c]) * bf16_to_f32(x[r * C + c]) * inv;
			/* two bf16 roundings: within 2^-7 relative */
			ck_assert_double_eq_tol(bf16_to_f32(y[r * C + c]), want, fabs(want) * 0x1p-7 + 1e-30);
		}
	}
	/* in place gives the same result */
	uint16_t z[R * C];
	memcpy(z, x, sizeof(z));
	kn_rmsnorm_ref(z, z, w, R, C, 1e-6f);
	ck_assert_mem_eq(z, y, sizeof(z));
}
END_TEST

static uint16_t rand_bf16(double lo, double hi)
{
	return f32_to_bf16((float)(lo + (hi - lo) * rand() / RAND_MAX));
}

/* |got − want| within two bf16 roundings (2^-7 relative) of a float64 value. */
static void assert_bf16_near(uint16_t got, double want, const char *what, int i)
{
	double g = bf16_to_f32(got);
	ck_assert_msg(fabs(g - want) <= fabs(want) * 0x1p-7 + 1e-30, "%s[%d]: got %.9g want %.9g",
		      what, i, g, want);
}

START_TEST(test_kernels_ref_embedding)
{
	/* out rows are the table rows named by ids, bit for bit, repeats and row 0/V-1 included */
	enum { V = 13 };
	static const int Ds[] = { 1, 7, 16 };
	srand(11);
	for (size_t s = 0; s < sizeof(Ds) / sizeof(Ds[0]); s++) {
		int D = Ds[s];
		uint16_t table[V * 16], out[6 * 16];
		int32_t ids[6] = { 0, V - 1, 5, 5, 2, 9 };
		for (int i = 0; i < V * D; i++)
			table[i] = rand_bf16(-2, 2);
		for (int T = 1; T <= 6; T += 5) {
			kn_embedding_ref(out, table, ids, T, D);
			for (int t = 0; t < T; t++)
				for (int c = 0; c < D; c++)
					ck_assert_uint_eq(out[t * D + c], table[ids[t] * D + c]);
		}
	}
}
END_TEST

START_TEST(test_kernels_ref_add_rmsnorm)
{
	/* ties of the bf16 add go to even: 1 + 2^-8 → 1, 1 + 3·2^-8 → 1 + 2^-6 */
	uint16_t r2[2] = { f32_to_bf16(1.0f), f32_to_bf16(1.0f) };
	uint16_t x2[2] = { f32_to_bf16(0x1p-8f), f32_to_bf16(3 * 0x1p-8f) };
	uint16_t w2[2] = { f32_to_bf16(1.0f), f32_to_bf16(1.0f) };
	uint16_t o2[2];
	kn_add_rmsnorm_ref(o2, r2, x2, w2, 1, 2, 1e-6f);
	ck_assert_uint_eq(r2[0], f32_to_bf16(1.0f));
	ck_assert_uint_eq(r2[1], f32_to_bf16(1.0f + 0x1p-6f));

	static const int sizes[][2] = { { 1, 1 }, { 2, 7 }, { 3, 129 } };
	srand(12);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int R = sizes[s][0], C = sizes[s][1], n = R * C;
		uint16_t res[3 * 129], res0[3 * 129], x[3 * 129], w[129], out[3 * 129];
		for (int i = 0; i < n; i++) {
			res[i] = res0[i] = rand_bf16(-3, 3);
			x[i] = rand_bf16(-1, 1);
		}
		for (int c = 0; c < C; c++)
			w[c] = rand_bf16(0.5, 1.5);
		kn_add_rmsnorm_ref(out, res, x, w, R, C, 1e-6f);
		for (int r = 0; r < R; r++) {
			double ss = 0, h[129];
			for (int c = 0; c < C; c++) {
				int i = r * C + c;
				/* the sum of two bf16 is exact in double: one rounding, to bf16 */
				double sum = (double)bf16_to_f32(res0[i]) + bf16_to_f32(x[i]);
				ck_assert_uint_eq(res[i], f32_to_bf16((float)sum));
				h[c] = bf16_to_f32(res[i]);
				ss += h[c] * h[c];
			}
			double inv = 1.0 / sqrt(ss / C + 1e-6);
			for (int c = 0; c < C; c++)
				assert_bf16_near(out[r * C + c], bf16_to_f32(w[c]) * h[c] * inv, "out",
						 r * C + c);
		}
		/* out may alias x */
		memcpy(res, res0, sizeof(res));
		uint16_t xo[3 * 129];
		memcpy(xo, x, sizeof(xo));
		kn_add_rmsnorm_ref(xo, res, xo, w, R, C, 1e-6f);
		ck_assert_mem_eq(xo, out, (size_t)n * 2);
	}
}
END_TEST

START_TEST(test_kernels_ref_silu_mul)
{
	/* silu(1) = 0.7310586 rounds to the bf16 0.73046875 before the multiply */
	uint16_t gu1[2] = { f32_to_bf16(1.0f), f32_to_bf16(1.0f) }, o1;
	kn_silu_mul_ref(&o1, gu1, 1, 1);
	ck_assert_uint_eq(o1, f32_to_bf16(0.73046875f));
	/* a very negative gate gives zero, not NaN */
	gu1[0] = f32_to_bf16(-200.0f);
	kn_silu_mul_ref(&o1, gu1, 1, 1);
	ck_assert_double_eq(bf16_to_f32(o1), 0.0);

	static const int sizes[][2] = { { 1, 1 }, { 3, 7 }, { 2, 64 } };
	srand(13);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], F = sizes[s][1];
		uint16_t gu[3 * 2 * 64], out[3 * 64];
		for (int i = 0; i < T * 2 * F; i++)
			gu[i] = rand_bf16(-6, 6);
		kn_silu_mul_ref(out, gu, T, F);
		for (int t = 0; t < T; t++)
			for (int c = 0; c < F; c++) {
				double g = bf16_to_f32(gu[t * 2 * F + c]);
				double u = bf16_to_f32(gu[t * 2 * F + F + c]);
				assert_bf16_near(out[t * F + c], g / (1.0 + exp(-g)) * u, "silu_mul",
						 t * F + c);
			}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kernels_ref");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_bf16_round_trip_and_rounding);
	tcase_add_test(tc, test_f16_matches_compiler_conversion);
	tcase_add_test(tc, test_rmsnorm_ref_constant_row);
	tcase_add_test(tc, test_rmsnorm_ref_matches_formula);
	tcase_add_test(tc, test_kernels_ref_embedding);
	tcase_add_test(tc, test_kernels_ref_add_rmsnorm);
	tcase_add_test(tc, test_kernels_ref_silu_mul);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
