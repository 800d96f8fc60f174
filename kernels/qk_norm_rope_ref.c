/*
 * qk_norm_rope reference: plain C, one token and one head at a time (see qk_norm_rope.h for the
 * formulas). inv_freq and θ in fp32 and cos/sin rounded to fp32, as the GPU has them; the norm
 * and the rope in double, rounded to bf16 once at the end. Obviously correct first, fast never.
 *
 * The fp8 variant runs the same walk and stores each k and v head through qknr_store: the bf16
 * head as it is, or its bytes f32_to_fp8e4m3(x · inv) (fp8.h).
 */
#include "qk_norm_rope.h"

#include <math.h>
#include <string.h>

#include "bf16.h"
#include "fp8.h"

enum { QKNR_MAX_HALF = 256 };   /* hd ≤ 512 */

/* One head: rmsnorm with weight w, then rope with the fp32 cos/sin c, s (hd/2 each); double
 * inside, one rounding to bf16. */
static void norm_rope_head(uint16_t *out, const float *x, const uint16_t *w, int hd,
			   const float *c, const float *s, float eps)
{
	const int half = hd / 2;
	double n[2 * QKNR_MAX_HALF];
	double ss = 0.0;
	for (int i = 0; i < hd; i++)
		ss += (double)x[i] * x[i];
	double inv = 1.0 / sqrt(ss / hd + (double)eps);
	for (int i = 0; i < hd; i++)
		n[i] = (double)bf16_to_f32(w[i]) * ((double)x[i] * inv);
	for (int j = 0; j < half; j++) {
		double a = n[j], b = n[j + half];
		out[j] = f32_to_bf16((float)(a * c[j] - b * s[j]));
		out[j + half] = f32_to_bf16((float)(b * c[j] + a * s[j]));
	}
}

/* A cache being written: bf16 (u16) or fp8 (u8, each value times inv before encoding). */
struct qknr_cache {
	uint16_t *u16;
	uint8_t *u8;
	float inv;
};

/* Element i.. i+n−1 of the cache from the bf16 values x. */
static void qknr_store(const struct qknr_cache *c, long i, const uint16_t *x, int n)
{
	if (!c->u8) {
		memcpy(c->u16 + i, x, (size_t)n * sizeof(uint16_t));
		return;
	}
	for (int d = 0; d < n; d++)
		c->u8[i + d] = f32_to_fp8e4m3(bf16_to_f32(x[d]) * c->inv);
}

/* inv_freq and the axis of each pair j < hd/2 (hd/2 ≤ QKNR_MAX_HALF). */
static void rope_setup(float *inv_freq, int *axis, int hd, const int mrope_section[3],
		       float rope_theta)
{
	for (int j = 0; j < hd / 2; j++) {
		/* transformers: 1.0 / (base ** (arange(0, hd, 2).float() / hd)), all fp32 */
		inv_freq[j] = 1.0f / powf(rope_theta, (float)(2 * j) / (float)hd);
		axis[j] = 0;
		if (j % 3 == 1 && j < 3 * mrope_section[1])
			axis[j] = 1;
		else if (j % 3 == 2 && j < 3 * mrope_section[2])
			axis[j] = 2;
	}
}

/* cos and sin of token t's hd/2 angles (fp32 θ, taken in double, rounded to fp32). */
static void rope_row(float *c, float *s, const float *inv_freq, const int *axis,
		     const int32_t *pos, int T, int t, int hd)
{
	for (int j = 0; j < hd / 2; j++) {
		float th = (float)pos[(long)axis[j] * T + t] * inv_freq[j];
		c[j] = (float)cos((double)th);
		s[j] = (float)sin((double)th);
	}
}

static void qknr_ref(uint16_t *q_out, const struct qknr_cache *kc, const struct qknr_cache *vc,
		     const float *qkv, const uint16_t *q_norm_w, const uint16_t *k_norm_w,
		     const int32_t *pos, const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
		     const int mrope_section[3], float rope_theta, float eps)
{
	const int half = hd / 2;
	const long row = (long)(Hq + 2 * KV) * hd;
	float inv_freq[QKNR_MAX_HALF], c[QKNR_MAX_HALF], s[QKNR_MAX_HALF];
	int axis[QKNR_MAX_HALF];
	if (T <= 0 || hd < 2 || hd % 2 || half > QKNR_MAX_HALF)
		return;
	rope_setup(inv_freq, axis, hd, mrope_section, rope_theta);
	for (int t = 0; t < T; t++) {
		rope_row(c, s, inv_freq, axis, pos, T, t, hd);
		const float *q = qkv + t * row, *k = q + (long)Hq * hd, *v = k + (long)KV * hd;
		for (int h = 0; h < Hq; h++)
			norm_rope_head(q_out + ((long)t * Hq + h) * hd, q + (long)h * hd, q_norm_w, hd,
				       c, s, eps);
		int32_t slot = slot_mapping[t];
		if (slot < 0)
			continue;
		for (int h = 0; h < KV; h++) {
			uint16_t kh[2 * QKNR_MAX_HALF];
			norm_rope_head(kh, k + (long)h * hd, k_norm_w, hd, c, s, eps);
			qknr_store(kc, ((long)slot * KV + h) * hd, kh, hd);
		}
		uint16_t vh[2 * QKNR_MAX_HALF];
		for (int h = 0; h < KV; h++) {
			for (int i = 0; i < hd; i++)
				vh[i] = f32_to_bf16(v[(long)h * hd + i]);
			qknr_store(vc, ((long)slot * KV + h) * hd, vh, hd);
		}
	}
}

void kn_qk_norm_rope_ref(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
			 const float *qkv, const uint16_t *q_norm_w, const uint16_t *k_norm_w,
			 const int32_t *pos, const int32_t *slot_mapping, int T, int Hq, int KV,
			 int hd, const int mrope_section[3], float rope_theta, float eps)
{
	const struct qknr_cache kc = { k_cache, NULL, 1.0f }, vc = { v_cache, NULL, 1.0f };
	qknr_ref(q_out, &kc, &vc, qkv, q_norm_w, k_norm_w, pos, slot_mapping, T, Hq, KV, hd,
		 mrope_section, rope_theta, eps);
}

void kn_qk_norm_rope_fp8_ref(uint16_t *q_out, uint8_t *k_cache, uint8_t *v_cache,
			     const float *qkv, const uint16_t *q_norm_w,
			     const uint16_t *k_norm_w, const int32_t *pos,
			     const int32_t *slot_mapping, int T, int Hq, int KV, int hd,
			     const int mrope_section[3], float rope_theta, float eps,
			     float k_scale, float v_scale)
{
	const struct qknr_cache kc = { NULL, k_cache, 1.0f / k_scale },
				vc = { NULL, v_cache, 1.0f / v_scale };
	qknr_ref(q_out, &kc, &vc, qkv, q_norm_w, k_norm_w, pos, slot_mapping, T, Hq, KV, hd,
		 mrope_section, rope_theta, eps);
}

void kn_rope_table_ref(float *cs, float *sn, const int32_t *pos, int T, int hd,
		       const int mrope_section[3], float rope_theta)
{
	float inv_freq[QKNR_MAX_HALF];
	int axis[QKNR_MAX_HALF];
	if (T <= 0 || hd < 2 || hd % 2 || hd / 2 > QKNR_MAX_HALF)
		return;
	rope_setup(inv_freq, axis, hd, mrope_section, rope_theta);
	for (int t = 0; t < T; t++)
		rope_row(cs + (long)t * (hd / 2), sn + (long)t * (hd / 2), inv_freq, axis, pos, T,
			 t, hd);
}
