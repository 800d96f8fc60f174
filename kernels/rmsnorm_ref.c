/*
 * rmsnorm reference: plain C, statistics in double (see rmsnorm.h for the formula and the two
 * roundings it reproduces). Obviously correct first, fast never.
 */
#include "rmsnorm.h"

#include <math.h>

#include "bf16.h"

void kn_rmsnorm_ref(uint16_t *out, const uint16_t *x, const uint16_t *w, int rows, int cols,
		    float eps)
{
	for (int r = 0; r < rows; r++) {
		const uint16_t *xr = x + (long)r * cols;
		uint16_t *yr = out + (long)r * cols;
		double ss = 0.0;
		for (int c = 0; c < cols; c++) {
			double v = bf16_to_f32(xr[c]);
			ss += v * v;
		}
		double inv = 1.0 / sqrt(ss / cols + (double)eps);
		for (int c = 0; c < cols; c++) {
			float normed = bf16_to_f32(f32_to_bf16((float)(bf16_to_f32(xr[c]) * inv)));
			yr[c] = f32_to_bf16(bf16_to_f32(w[c]) * normed);
		}
	}
}
