/*
 * paged_attention reference: plain C, everything in double (see paged_attention.h for shapes,
 * the pool layout and the formula). Two passes over the context per query head: the maximum
 * score, then the exponentials, their sum and the weighted sum of V. Obviously correct first,
 * fast never.
 */
#include "paged_attention.h"

#include <math.h>

#include "bf16.h"

/* Row of position p of sequence b's kv head kvh in a cache of (n_blocks, bs, KV, hd). */
static const uint16_t *cache_row(const uint16_t *cache, const int32_t *bt_row, int p, int bs,
				 int KV, int hd, int kvh)
{
	long blk = bt_row[p / bs];
	return cache + ((blk * bs + p % bs) * KV + kvh) * (long)hd;
}

void kn_paged_attention_ref(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			    const uint16_t *v_cache, const int32_t *block_table,
			    const int32_t *ctx_len, int B, int Hq, int KV, int hd, int block_size,
			    int max_blocks_per_seq, float scale)
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
				const uint16_t *k = cache_row(k_cache, bt, p, block_size, KV, hd, kvh);
				double s = 0.0;
				for (int d = 0; d < hd; d++)
					s += (double)bf16_to_f32(qh[d]) * bf16_to_f32(k[d]);
				s *= scale;
				if (s > mx)
					mx = s;
			}
			double acc[KN_PAGED_ATTENTION_MAX_HD] = { 0 }, sum = 0.0;
			for (int p = 0; p < n; p++) {
				const uint16_t *k = cache_row(k_cache, bt, p, block_size, KV, hd, kvh);
				const uint16_t *v = cache_row(v_cache, bt, p, block_size, KV, hd, kvh);
				double s = 0.0;
				for (int d = 0; d < hd; d++)
					s += (double)bf16_to_f32(qh[d]) * bf16_to_f32(k[d]);
				double w = exp(s * scale - mx);
				sum += w;
				for (int d = 0; d < hd; d++)
					acc[d] += w * bf16_to_f32(v[d]);
			}
			for (int d = 0; d < hd; d++)
				oh[d] = f32_to_bf16(n > 0 ? (float)(acc[d] / sum) : 0.0f);
		}
	}
}
