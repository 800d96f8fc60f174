/*
 * Tests of the plain-C kernel references and the float conversions they are built on. These run
 * everywhere; the CUDA kernels are compared with these references in check_kernels_cuda.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "rmsnorm.h"
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

int main(void)
{
	Suite *s = suite_create("kernels_ref");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_bf16_round_trip_and_rounding);
	tcase_add_test(tc, test_f16_matches_compiler_conversion);
	tcase_add_test(tc, test_rmsnorm_ref_constant_row);
	tcase_add_test(tc, test_rmsnorm_ref_matches_formula);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
