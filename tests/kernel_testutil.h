/*
 * kernel_testutil: what the GPU kernel suites (check_kernels_cuda, check_attention_cuda,
 * check_vision_cuda) share to compare a kernel with its plain-C reference: a seeded random
 * stream (each program seeds it once, kt_seed, before its suites run), random bf16 fills, a
 * random permutation (block ids, rows), the relative L2 distance of two bf16 arrays, and the
 * median of a set of timings.
 */
#ifndef QVL_TESTS_KERNEL_TESTUTIL_H
#define QVL_TESTS_KERNEL_TESTUTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bf16.h"

static uint64_t kt_lcg;

static inline void kt_seed(uint64_t seed)
{
	kt_lcg = seed;
}

/* Uniform in [lo, hi), 24 bits. */
static inline float frand(float lo, float hi)
{
	kt_lcg = kt_lcg * 6364136223846793005ull + 1442695040888963407ull;
	return lo + (hi - lo) * (float)(kt_lcg >> 40) / (float)(1u << 24);
}

static inline void fill_bf16(uint16_t *p, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		p[i] = f32_to_bf16(frand(lo, hi));
}

/* p = a random permutation of 0 .. n−1 (Fisher–Yates from the top, one frand a swap). */
static inline void kt_shuffled_ids(int32_t *p, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)frand(0.f, (float)i + 0.999f);
		int32_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
}

/* ‖got − ref‖ / max(‖ref‖, floor·sqrt(n)) over n bf16 values: relative L2, except that a
 * vector of outputs all below floor in RMS is measured against floor an element (floor 0:
 * plain relative L2, and ‖got − ref‖ when ref is all zeros). NaN anywhere in got gives +inf.
 * Prints the first mismatches beyond tol_abs (and the NaN). */
static inline double rel_l2_bf16_floor(const uint16_t *got, const uint16_t *ref, size_t n,
				       double tol_abs, double floor)
{
	double num = 0, den = 0;
	int shown = 0;
	for (size_t i = 0; i < n; i++) {
		double g = bf16_to_f32(got[i]), r = bf16_to_f32(ref[i]);
		if (isnan(g)) {
			fprintf(stderr, "  NaN at %zu (want %g)\n", i, r);
			return INFINITY;
		}
		num += (g - r) * (g - r);
		den += r * r;
		if (fabs(g - r) > tol_abs && shown++ < 5)
			fprintf(stderr, "  mismatch at %zu: got %g want %g\n", i, g, r);
	}
	const double f2 = floor * floor * (double)n;
	den = den > f2 ? den : f2;
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ‖got − ref‖ / ‖ref‖ over n bf16 values (rel_l2_bf16_floor with no floor). */
static inline double rel_l2_bf16(const uint16_t *got, const uint16_t *ref, size_t n,
				 double tol_abs)
{
	return rel_l2_bf16_floor(got, ref, n, tol_abs, 0);
}

/* The median of n timings (sorts ms in place). */
static inline double median_ms(float *ms, int n)
{
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && ms[k - 1] > ms[k]; k--) {
			float t = ms[k];
			ms[k] = ms[k - 1];
			ms[k - 1] = t;
		}
	return n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
}

#endif
