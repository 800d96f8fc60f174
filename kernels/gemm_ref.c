/*
 * gemm reference: y = x · Wᵀ (+ residual), each output a double sum over k of the exact products
 * of the bf16 inputs, plus the residual (and the bias in kn_gemm_bias_ref), rounded once to float
 * and then to bf16. kn_gemm_silu_ref is kn_silu_mul_ref into the scratch, then kn_gemm_ref.
 * See gemm.h.
 */
#include "gemm.h"

#include "bf16.h"
#include "silu_mul.h"

void kn_gemm_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *residual,
		 int M, int N, int K)
{
	for (int m = 0; m < M; m++) {
		const uint16_t *xr = x + (size_t)m * K;
		for (int n = 0; n < N; n++) {
			const uint16_t *wr = W + (size_t)n * K;
			double s = 0;
			for (int k = 0; k < K; k++)
				s += (double)bf16_to_f32(xr[k]) * bf16_to_f32(wr[k]);
			size_t o = (size_t)m * N + n;
			if (residual)
				s += bf16_to_f32(residual[o]);
			y[o] = f32_to_bf16((float)s);
		}
	}
}

void kn_gemm_bias_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *bias,
		      const uint16_t *residual, int M, int N, int K)
{
	for (int m = 0; m < M; m++) {
		const uint16_t *xr = x + (size_t)m * K;
		for (int n = 0; n < N; n++) {
			const uint16_t *wr = W + (size_t)n * K;
			double s = bf16_to_f32(bias[n]);
			for (int k = 0; k < K; k++)
				s += (double)bf16_to_f32(xr[k]) * bf16_to_f32(wr[k]);
			size_t o = (size_t)m * N + n;
			if (residual)
				s += bf16_to_f32(residual[o]);
			y[o] = f32_to_bf16((float)s);
		}
	}
}

void kn_gemm_silu_ref(uint16_t *y, const uint16_t *gu, const uint16_t *W, const uint16_t *residual,
		      uint16_t *scratch, int M, int N, int F)
{
	kn_silu_mul_ref(scratch, gu, M, F);
	kn_gemm_ref(y, scratch, W, residual, M, N, F);
}
