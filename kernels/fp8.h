/*
 * fp8.h: the fp8 E4M3 format of the KV cache (`--kv-cache-dtype fp8`), on the host.
 *
 * E4M3 ("E4M3FN" in the OCP 8-bit float spec, __nv_fp8_e4m3 in CUDA): 1 sign bit, 4 exponent
 * bits (bias 7), 3 mantissa bits, no infinities, one NaN per sign (S.1111.111). Values:
 *
 *   exponent field 0      subnormal   m · 2^-9                 m = 0..7   (0, 0.00195 … 0.0137)
 *   exponent field 1..15  normal      (1 + m/8) · 2^(e - 7)               (0.0156 … 448)
 *
 * so 3 significant bits after the leading one: a relative rounding error of at most 1/16.
 *
 * A cache element is q = fp8(x · (1 / scale)), read back as float(q) · scale, with one fp32
 * scale per tensor (k_scale, v_scale; 1.0 unless calibrated, as vLLM does for checkpoints that
 * carry none). 1 / scale is computed in fp32 on both sides, so the reference and the GPU store
 * the same bits.
 *
 * The cache holds a NaN code (S.1111.111) only where K or V itself was NaN (a diverged
 * sequence; finite values saturate to ±448): the decode kernel reads it back as NaN, the prefill
 * kernel's faster widening (prefill_attention.cu) as ±480 — garbage either way, and the
 * references read NaN.
 *
 * f32_to_fp8e4m3 rounds to nearest, ties to even, and saturates: |x| > 448 gives ±448 and NaN
 * gives NaN — exactly __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3), which the CUDA
 * kernels use. fp8e4m3_to_f32 is exact (every E4M3 value is a float, and a bf16 too).
 */
#ifndef QVL_KERNELS_FP8_H
#define QVL_KERNELS_FP8_H
#include <math.h>
#include <stdint.h>

#define FP8E4M3_MAX 448.0f

static inline float fp8e4m3_to_f32(uint8_t v)
{
	const int e = (v >> 3) & 15, m = v & 7;
	float a;
	if (e == 15 && m == 7)
		a = NAN;
	else if (e == 0)
		a = ldexpf((float)m, -9);
	else
		a = ldexpf(1.0f + (float)m / 8.0f, e - 7);
	return (v & 0x80) ? -a : a;
}

static inline uint8_t f32_to_fp8e4m3(float x)
{
	const uint8_t sign = signbit(x) ? 0x80 : 0;
	float a = fabsf(x);
	if (isnan(a))
		return (uint8_t)(sign | 0x7f);
	if (a > FP8E4M3_MAX)
		a = FP8E4M3_MAX;
	/* The quantum at a: 2^(e-3) for a normal of exponent e, 2^-9 below 2^-6. Scaling by a power
	 * of two is exact, and rintf rounds to nearest even in the default rounding mode. */
	int e = a >= 0x1p-6f ? ilogbf(a) : -6;
	float r = rintf(ldexpf(a, 3 - e));        /* 0 … 16 significant steps */
	if (e == -6 && r < 8.0f)                  /* subnormal (r = 8 is 2^-6, the first normal) */
		return (uint8_t)(sign | (uint8_t)r);
	if (r == 16.0f) {                         /* rounded up into the next binade */
		r = 8.0f;
		e++;
	}
	return (uint8_t)(sign | (uint8_t)((e + 7) << 3) | (uint8_t)((int)r - 8));
}

#endif
