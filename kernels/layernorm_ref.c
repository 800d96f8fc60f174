/*
 * layernorm reference: mean and biased variance in double, then (x − mean)·rstd·w + b in double,
 * rounded to bf16 through float (the precision torch computes it in). See layernorm.h.
 */
#include "layernorm.h"

#include <math.h>

#include "bf16.h"

void kn_layernorm_ref(uint16_t *out, const uint16_t *x, const uint16_t *w, const uint16_t *b,
		      int rows, int cols, float eps)
{
	for (int r = 0; r < rows; r++) {
		const uint16_t *xr = x + (long)r * cols;
		uint16_t *o = out + (long)r * cols;
		double s = 0, ss = 0;
		for (int c = 0; c < cols; c++)
			s += bf16_to_f32(xr[c]);
		double mean = s / cols;
		for (int c = 0; c < cols; c++) {
			double d = bf16_to_f32(xr[c]) - mean;
			ss += d * d;
		}
		double rstd = 1.0 / sqrt(ss / cols + (double)eps);
		for (int c = 0; c < cols; c++) {
			double y = (bf16_to_f32(xr[c]) - mean) * rstd * bf16_to_f32(w[c]) +
				   bf16_to_f32(b[c]);
			o[c] = f32_to_bf16((float)y);
		}
	}
}
