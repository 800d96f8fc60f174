/*
 * sampling_testgen: the random logits the sampling tests share (check_sampling_ref.c against
 * sampler.c on the CPU, check_sampling_cuda.c against the reference on the GPU).
 *
 * A splitmix64 stream (each test program seeds it once, sg_seed, before its suites run), its
 * uniform, integer and normal draws, and sg_gen_logits: V bf16 logits of one of seven kinds —
 * plain normals, coarse values with many exact ties, a few -inf and NaN, a peak, a rare +inf,
 * all -inf but a few, and all equal — so that every tie and non-finite path is exercised.
 */
#ifndef QVL_TESTS_SAMPLING_TESTGEN_H
#define QVL_TESTS_SAMPLING_TESTGEN_H

#include <math.h>
#include <stdint.h>

#include "bf16.h"

static uint64_t sg_state;

static inline void sg_seed(uint64_t seed)
{
	sg_state = seed;
}

static inline uint64_t rnd64(void)
{
	uint64_t z = (sg_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline double urand(void)
{
	return (double)(rnd64() >> 11) * 0x1p-53;
}

static inline int irand(int n)
{
	return (int)(rnd64() % (uint64_t)n);
}

static inline double nrand(void)
{
	double a = urand() + 1e-300, b = urand();
	return sqrt(-2 * log(a)) * cos(2 * M_PI * b);
}

/* Random bf16 logits of one of several kinds (0 .. 6, see the top of this file). */
static inline void sg_gen_logits(uint16_t *h, int V, int kind)
{
	double scale = 0.5 + 4 * urand();
	for (int i = 0; i < V; i++) {
		double x = nrand() * scale;
		switch (kind) {
		case 1:   /* coarse: many exact ties */
			x = floor(x * 2) / 2;
			break;
		case 2:   /* a few -inf and NaN */
			if (irand(20) == 0)
				x = -INFINITY;
			else if (irand(50) == 0)
				x = NAN;
			break;
		case 3:   /* a peak */
			if (irand(V) < 3)
				x += 15;
			break;
		case 4:   /* rarely +inf */
			if (irand(V) == 0)
				x = INFINITY;
			break;
		case 5:   /* all -inf but a few */
			x = irand(V) < 2 ? x : -INFINITY;
			break;
		case 6:   /* everything equal */
			x = 1.5;
			break;
		}
		h[i] = f32_to_bf16((float)x);
	}
}

#endif
