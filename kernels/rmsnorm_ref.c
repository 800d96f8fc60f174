/*
 * rmsnorm reference: plain C, statistics and products in double, one rounding to bf16 (or fp16)
 * at the end (through float; see rmsnorm.h for the formula). Obviously correct first, fast never.
 */
#include "rmsnorm.h"

#include <math.h>

#include "bf16.h"

/* The normalised products in double, rounded by round_to (to bf16 or fp16, through float). */
static void rmsnorm_ref(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
			float eps, uint16_t (*round_to)(float))
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (long)r * cols;
		uint16_t *yr = out + (long)r * cols;
		double ss = 0.0;
		for (int c = 0; c < cols; c++)
			ss += (double)xr[c] * xr[c];
		double inv = 1.0 / sqrt(ss / cols + (double)eps);
		for (int c = 0; c < cols; c++)
			yr[c] = round_to((float)(bf16_to_f32(w[c]) * (xr[c] * inv)));
	}
}

void kn_rmsnorm_ref(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
		    float eps)
{
	rmsnorm_ref(out, x, w, rows, cols, eps, f32_to_bf16);
}

void kn_rmsnorm_f16_ref(uint16_t *out, const float *x, const uint16_t *w, int rows, int cols,
			float eps)
{
	rmsnorm_ref(out, x, w, rows, cols, eps, f32_to_f16);
}
