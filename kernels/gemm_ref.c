/*
 * gemm reference: y = x · Wᵀ (+ residual), each output a double sum over k of the exact products
 * of the bf16 inputs, plus the residual (and the bias in kn_gemm_bias_ref), rounded once to float
 * and then to bf16 (kn_gemm_f32_ref: to float only). See gemm.h.
 */
#include "gemm.h"

#include <stdlib.h>

#include "bf16.h"
#include "rmsnorm.h"

/* Σ_k x[k]·w[k] of two bf16 rows, in double. */
static double dot_bf16(const uint16_t *x, const uint16_t *w, int K)
{
	double s = 0;
	for (int k = 0; k < K; k++)
		s += (double)bf16_to_f32(x[k]) * bf16_to_f32(w[k]);
	return s;
}

void kn_gemm_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *residual,
		 int M, int N, int K)
{
	for (int m = 0; m < M; m++) {
		const uint16_t *xr = x + (size_t)m * K;
		for (int n = 0; n < N; n++) {
			double s = dot_bf16(xr, W + (size_t)n * K, K);
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
			double s = bf16_to_f32(bias[n]) + dot_bf16(xr, W + (size_t)n * K, K);
			size_t o = (size_t)m * N + n;
			if (residual)
				s += bf16_to_f32(residual[o]);
			y[o] = f32_to_bf16((float)s);
		}
	}
}

/* Σ_k x[k]·w[k] in double, x and w fp16. */
static double dot_f16(const uint16_t *x, const uint16_t *w, int K)
{
	double s = 0.0;
	for (int k = 0; k < K; k++)
		s += (double)f16_to_f32(x[k]) * f16_to_f32(w[k]);
	return s;
}

/* kn_gemm_f32_ref and kn_gemm_f32_f16_ref: the operands' dot product in double, then fp32. */
static void gemm_f32_ref(float *y, const uint16_t *x, const uint16_t *W, const float *residual,
			 int M, int N, int K, double (*dot)(const uint16_t *, const uint16_t *, int))
{
	for (int m = 0; m < M; m++) {
		const uint16_t *xr = x + (size_t)m * K;
		for (int n = 0; n < N; n++) {
			double s = dot(xr, W + (size_t)n * K, K);
			size_t o = (size_t)m * N + n;
			if (residual)   /* read before y[o] is written: y may alias residual */
				s += residual[o];
			y[o] = (float)s;
		}
	}
}

void kn_gemm_f32_ref(float *y, const uint16_t *x, const uint16_t *W, const float *residual, int M,
		     int N, int K)
{
	gemm_f32_ref(y, x, W, residual, M, N, K, dot_bf16);
}

void kn_gemm_f32_f16_ref(float *y, const uint16_t *x, const uint16_t *W, const float *residual,
			 int M, int N, int K)
{
	gemm_f32_ref(y, x, W, residual, M, N, K, dot_f16);
}

void kn_gemm_f16_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, int M, int N, int K)
{
	for (int m = 0; m < M; m++)
		for (int n = 0; n < N; n++)
			y[(size_t)m * N + n] =
				f32_to_f16((float)dot_f16(x + (size_t)m * K, W + (size_t)n * K, K));
}

void kn_gemm_f32_rmsnorm_ref(float *y, const float *x, const uint16_t *norm_w, float eps,
			     const uint16_t *W, int M, int N, int K, bool f16)
{
	uint16_t *h = malloc((size_t)M * K * sizeof(*h) + 1);
	if (!h)
		abort();
	if (f16) {
		kn_rmsnorm_f16_ref(h, x, norm_w, M, K, eps);
		kn_gemm_f32_f16_ref(y, h, W, NULL, M, N, K);
	} else {
		kn_rmsnorm_ref(h, x, norm_w, M, K, eps);
		kn_gemm_f32_ref(y, h, W, NULL, M, N, K);
	}
	free(h);
}
