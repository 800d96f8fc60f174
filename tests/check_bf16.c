/*
 * bf16_round_array (bf16.c) against f32_to_bf16 (bf16.h), value by value: every bf16 pattern
 * with low halves at, around and past the tie (so rounding up, down and to even), NaNs (quiet
 * and signalling, both signs), infinities, subnormals, and random bit patterns; every length
 * 0-64 at every alignment of src and dst, so the vector steps, their tail and unaligned
 * access are all covered.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "testutil.h"

static float f_of(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* bf16_round_array over n values of src must give f32_to_bf16's bits. */
static void assert_round(const float *src, size_t n)
{
	uint16_t *got = malloc((n + 1) * 2);
	ck_assert_ptr_nonnull(got);
	got[n] = 0xabcd;
	bf16_round_array(got, src, n);
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &src[i], 4);
		ck_assert_msg(got[i] == f32_to_bf16(src[i]), "value %zu of %zu (bits 0x%08x): 0x%04x, "
			      "want 0x%04x", i, n, u, got[i], f32_to_bf16(src[i]));
	}
	ck_assert_uint_eq(got[n], 0xabcd);   /* nothing written past n */
	free(got);
}

START_TEST(test_bf16_round_array_every_pattern)
{
	static const uint32_t lows[] = { 0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff, 0x4000,
					 0xc000 };
	const size_t nl = sizeof(lows) / sizeof(lows[0]), n = 65536 * nl;
	float *src = malloc(n * 4);
	ck_assert_ptr_nonnull(src);
	for (uint32_t h = 0; h < 65536; h++)
		for (size_t k = 0; k < nl; k++)
			src[h * nl + k] = f_of(h << 16 | lows[k]);
	assert_round(src, n);
	free(src);
}
END_TEST

START_TEST(test_bf16_round_array_random_lengths_alignments)
{
	float buf[4 + 4096];
	uint32_t x = 0x12345678u;
	for (size_t i = 0; i < sizeof(buf) / sizeof(buf[0]); i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		buf[i] = f_of(x);
	}
	/* the specials somewhere in every 16-value step */
	static const uint32_t special[] = { 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
					    0xffffffffu, 0x00000001u, 0x807fffffu, 0x7f7fffffu };
	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
		buf[3 + 17 * i] = f_of(special[i]);
	for (size_t off = 0; off < 4; off++)
		for (size_t n = 0; n <= 64; n++)
			assert_round(buf + off, n);
	assert_round(buf, 4096);
	assert_round(buf + 1, 4093);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bf16");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_bf16_round_array_every_pattern);
	tcase_add_test(tc, test_bf16_round_array_random_lengths_alignments);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
