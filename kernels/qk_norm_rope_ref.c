/*
 * qk_norm_rope reference: plain C, one token and one head at a time (see qk_norm_rope.h for the
 * formulas). The RMS statistics are taken in double as in rmsnorm_ref; everything transformers
 * does in a fixed precision is done in that precision here: inv_freq and θ in fp32, cos/sin
 * rounded to fp32 and then to bf16, each bf16·bf16 product (exact in fp32) rounded to bf16, and
 * the sum of the two rounded products added in fp32 and rounded to bf16, as torch adds two bf16
 * tensors. Obviously correct first, fast never.
 */
#include "qk_norm_rope.h"

#include <math.h>
#include <string.h>

#include "bf16.h"

enum { QKNR_MAX_HALF = 256 };   /* hd ≤ 512 */

/* bf16(a · b) of two bf16 values: the product is exact in fp32, one rounding. */
static float mul_bf16(float a, float b)
{
	return bf16_to_f32(f32_to_bf16(a * b));
}

/* One head: rmsnorm with weight w, then rope with the bf16 cos/sin c, s (hd/2 each). */
static void norm_rope_head(uint16_t *out, const uint16_t *x, const uint16_t *w, int hd,
			   const float *c, const float *s, float eps)
{
	const int half = hd / 2;
	float n[2 * QKNR_MAX_HALF];
	double ss = 0.0;
	for (int i = 0; i < hd; i++) {
		double v = bf16_to_f32(x[i]);
		ss += v * v;
	}
	double inv = 1.0 / sqrt(ss / hd + (double)eps);
	for (int i = 0; i < hd; i++) {
		float normed = bf16_to_f32(f32_to_bf16((float)(bf16_to_f32(x[i]) * inv)));
		n[i] = mul_bf16(bf16_to_f32(w[i]), normed);
	}
	for (int j = 0; j < half; j++) {
		float a = n[j], b = n[j + half];
		float lo = mul_bf16(a, c[j]) + mul_bf16(-b, s[j]);   /* fp32 add */
		float hi = mul_bf16(b, c[j]) + mul_bf16(a, s[j]);
		out[j] = f32_to_bf16(lo);
		out[j + half] = f32_to_bf16(hi);
	}
}

void kn_qk_norm_rope_ref(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
			 const uint16_t *qkv, const uint16_t *q_norm_w, const uint16_t *k_norm_w,
			 const int32_t *pos, const int32_t *slot_mapping, int T, int Hq, int KV,
			 int hd, const int mrope_section[3], float rope_theta, float eps)
{
	const int half = hd / 2;
	const long row = (long)(Hq + 2 * KV) * hd;
	float inv_freq[QKNR_MAX_HALF], c[QKNR_MAX_HALF], s[QKNR_MAX_HALF];
	int axis[QKNR_MAX_HALF];
	if (T <= 0 || hd < 2 || hd % 2 || half > QKNR_MAX_HALF)
		return;
	for (int j = 0; j < half; j++) {
		/* transformers: 1.0 / (base ** (arange(0, hd, 2).float() / hd)), all fp32 */
		inv_freq[j] = 1.0f / powf(rope_theta, (float)(2 * j) / (float)hd);
		axis[j] = 0;
		if (j % 3 == 1 && j < 3 * mrope_section[1])
			axis[j] = 1;
		else if (j % 3 == 2 && j < 3 * mrope_section[2])
			axis[j] = 2;
	}
	for (int t = 0; t < T; t++) {
		for (int j = 0; j < half; j++) {
			float th = (float)pos[(long)axis[j] * T + t] * inv_freq[j];
			c[j] = bf16_to_f32(f32_to_bf16((float)cos((double)th)));
			s[j] = bf16_to_f32(f32_to_bf16((float)sin((double)th)));
		}
		const uint16_t *q = qkv + t * row, *k = q + (long)Hq * hd, *v = k + (long)KV * hd;
		for (int h = 0; h < Hq; h++)
			norm_rope_head(q_out + ((long)t * Hq + h) * hd, q + (long)h * hd, q_norm_w, hd,
				       c, s, eps);
		int32_t slot = slot_mapping[t];
		if (slot < 0)
			continue;
		for (int h = 0; h < KV; h++)
			norm_rope_head(k_cache + ((long)slot * KV + h) * hd, k + (long)h * hd, k_norm_w,
				       hd, c, s, eps);
		memcpy(v_cache + (long)slot * KV * hd, v, (size_t)KV * hd * sizeof(uint16_t));
	}
}
