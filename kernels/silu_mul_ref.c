/*
 * silu_mul reference: silu(g)·u in double from the fp32 inputs, rounded once to bf16 (through
 * float). See silu_mul.h.
 */
#include "silu_mul.h"

#include <math.h>

#include "bf16.h"

void kn_silu_mul_ref(uint16_t *out, const float *gu, int T, int F)
{
	for (int t = 0; t < T; t++) {
		const float *g = gu + (long)t * 2 * F, *u = g + F;
		uint16_t *o = out + (long)t * F;
		for (int c = 0; c < F; c++) {
			double gd = g[c];
			o[c] = f32_to_bf16((float)(gd / (1.0 + exp(-gd)) * u[c]));
		}
	}
}

void kn_silu_mul_f16_ref(uint16_t *out, const uint16_t *gu, int T, int F)
{
	for (int t = 0; t < T; t++) {
		const uint16_t *g = gu + (long)t * 2 * F, *u = g + F;
		uint16_t *o = out + (long)t * F;
		for (int c = 0; c < F; c++) {
			double gd = f16_to_f32(g[c]);
			o[c] = f32_to_bf16((float)(gd / (1.0 + exp(-gd)) * f16_to_f32(u[c])));
		}
	}
}
