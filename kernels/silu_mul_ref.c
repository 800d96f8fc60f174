/*
 * silu_mul reference: silu in double, rounded to bf16 (through float, the precision torch
 * computes it in), then the exact bf16 product rounded to bf16. See silu_mul.h.
 */
#include "silu_mul.h"

#include <math.h>

#include "bf16.h"

void kn_silu_mul_ref(uint16_t *out, const uint16_t *gu, int T, int F)
{
	for (int t = 0; t < T; t++) {
		const uint16_t *g = gu + (long)t * 2 * F, *u = g + F;
		uint16_t *o = out + (long)t * F;
		for (int c = 0; c < F; c++) {
			double gd = bf16_to_f32(g[c]);
			float s = bf16_to_f32(f32_to_bf16((float)(gd / (1.0 + exp(-gd)))));
			o[c] = f32_to_bf16(s * bf16_to_f32(u[c]));
		}
	}
}
