/*
 * paged_attention reference: plain C, everything in double (see paged_attention.h for shapes,
 * the pool layout and the formula). Two passes over the context per query head: the maximum
 * score, then the exponentials, their sum and the weighted sum of V. Obviously correct first,
 * fast never.
 *
 * One walk serves both cache types: a cache is read through pa_elem, which gives element i of
 * a bf16 cache as is and of an fp8 cache (fp8.h) as float(byte) · scale, exactly the value the
 * byte stands for. The bf16 path does the arithmetic it always did.
 */
#include "paged_attention.h"

#include <math.h>

#include "bf16.h"
#include "fp8.h"

/* A cache of either element type: bf16 (u16) or fp8 E4M3 (u8, read back times scale). */
struct pa_cache {
	const uint16_t *u16;
	const uint8_t *u8;
	double scale;
};

static double pa_elem(const struct pa_cache *c, long i)
{
	return c->u8 ? fp8e4m3_to_f32(c->u8[i]) * c->scale : (double)bf16_to_f32(c->u16[i]);
}

/* Index of the first element of position p's row of kv head kvh, in a cache of
 * (n_blocks, bs, KV, hd) for the sequence whose block-table row is bt_row. */
static long row_index(const int32_t *bt_row, int p, int bs, int KV, int hd, int kvh)
{
	long blk = bt_row[p / bs];
	return ((blk * bs + p % bs) * KV + kvh) * (long)hd;
}

static void pa_ref(uint16_t *out, const uint16_t *q, const struct pa_cache *kc,
		   const struct pa_cache *vc, const int32_t *block_table, const int32_t *ctx_len,
		   int B, int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
		   float scale)
{
	const int g = Hq / KV;
	for (int b = 0; b < B; b++) {
		const int32_t *bt = block_table + (long)b * max_blocks_per_seq;
		const int n = ctx_len[b];
		for (int h = 0; h < Hq; h++) {
			const uint16_t *qh = q + ((long)b * Hq + h) * hd;
			uint16_t *oh = out + ((long)b * Hq + h) * hd;
			const int kvh = h / g;
			double mx = -INFINITY;
			for (int p = 0; p < n; p++) {
				const long k = row_index(bt, p, block_size, KV, hd, kvh);
				double s = 0.0;
				for (int d = 0; d < hd; d++)
					s += (double)bf16_to_f32(qh[d]) * pa_elem(kc, k + d);
				s *= scale;
				if (s > mx)
					mx = s;
			}
			double acc[KN_PAGED_ATTENTION_MAX_HD] = { 0 }, sum = 0.0;
			for (int p = 0; p < n; p++) {
				const long k = row_index(bt, p, block_size, KV, hd, kvh);
				double s = 0.0;
				for (int d = 0; d < hd; d++)
					s += (double)bf16_to_f32(qh[d]) * pa_elem(kc, k + d);
				double w = exp(s * scale - mx);
				sum += w;
				for (int d = 0; d < hd; d++)
					acc[d] += w * pa_elem(vc, k + d);
			}
			for (int d = 0; d < hd; d++)
				oh[d] = f32_to_bf16(n > 0 ? (float)(acc[d] / sum) : 0.0f);
		}
	}
}

void kn_paged_attention_ref(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			    const uint16_t *v_cache, const int32_t *block_table,
			    const int32_t *ctx_len, int B, int Hq, int KV, int hd, int block_size,
			    int max_blocks_per_seq, float scale)
{
	const struct pa_cache kc = { k_cache, NULL, 1.0 }, vc = { v_cache, NULL, 1.0 };
	pa_ref(out, q, &kc, &vc, block_table, ctx_len, B, Hq, KV, hd, block_size,
	       max_blocks_per_seq, scale);
}

void kn_paged_attention_fp8_ref(uint16_t *out, const uint16_t *q, const uint8_t *k_cache,
				const uint8_t *v_cache, const int32_t *block_table,
				const int32_t *ctx_len, int B, int Hq, int KV, int hd,
				int block_size, int max_blocks_per_seq, float scale, float k_scale,
				float v_scale)
{
	const struct pa_cache kc = { NULL, k_cache, k_scale }, vc = { NULL, v_cache, v_scale };
	pa_ref(out, q, &kc, &vc, block_table, ctx_len, B, Hq, KV, hd, block_size,
	       max_blocks_per_seq, scale);
}
