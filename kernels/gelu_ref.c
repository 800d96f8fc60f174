/*
 * gelu reference: either GELU in double from the bf16 input, rounded to bf16 through float (the
 * precision torch computes it in). See gelu.h.
 */
#include "gelu.h"

#include <math.h>

#include "bf16.h"

void kn_gelu_ref(uint16_t *out, const uint16_t *x, long n, kn_gelu_mode mode)
{
	const double beta = sqrt(2.0 / M_PI), kappa = 0.044715;
	for (long i = 0; i < n; i++) {
		double z = bf16_to_f32(x[i]), y;
		if (mode == KN_GELU_TANH)
			y = 0.5 * z * (1.0 + tanh(beta * (z + kappa * z * z * z)));
		else
			y = 0.5 * z * (1.0 + erf(z * M_SQRT1_2));
		out[i] = f32_to_bf16((float)y);
	}
}
