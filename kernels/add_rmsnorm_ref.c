/*
 * add_rmsnorm reference: the bf16 residual add in fp32 with one rounding (exactly torch's bf16
 * add), then kn_rmsnorm_ref over the updated residual (statistics in double). See add_rmsnorm.h.
 */
#include "add_rmsnorm.h"

#include "bf16.h"
#include "rmsnorm.h"

void kn_add_rmsnorm_ref(uint16_t *out, uint16_t *residual, const uint16_t *x, const uint16_t *w,
			int rows, int cols, float eps)
{
	long n = (long)rows * cols;
	for (long i = 0; i < n; i++)
		residual[i] = f32_to_bf16(bf16_to_f32(residual[i]) + bf16_to_f32(x[i]));
	kn_rmsnorm_ref(out, residual, w, rows, cols, eps);
}
