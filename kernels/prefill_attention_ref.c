/*
 * prefill_attention reference: plain C, everything in double (see prefill_attention.h for the
 * shapes, the pool layout and the formula). For each sequence, new row and query head: the
 * scores of positions 0 .. n_cached + row into a scratch array, their maximum, then the
 * exponentials, their sum and the weighted sum of V. Obviously correct first, fast never.
 */
#include "prefill_attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bf16.h"

/* Row of position p of kv head kvh in a cache of (n_blocks, bs, KV, hd). */
static const uint16_t *pf_cache_row(const uint16_t *cache, const int32_t *bt_row, int p, int bs,
				    int KV, int hd, int kvh)
{
	long blk = bt_row[p / bs];
	return cache + ((blk * bs + p % bs) * KV + kvh) * (long)hd;
}

void kn_prefill_attention_ref(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			      const uint16_t *v_cache, const int32_t *block_table,
			      const int32_t *q_start, const int32_t *n_cached, int n_seqs, int T,
			      int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
			      float scale)
{
	(void)T;
	const int g = Hq / KV;
	for (int s = 0; s < n_seqs; s++) {
		const int32_t *bt = block_table + (long)s * max_blocks_per_seq;
		const int nc = n_cached[s] < 0 ? 0 : n_cached[s];
		const int len = q_start[s + 1] - q_start[s];
		const int cap = max_blocks_per_seq * block_size;
		double *sc = malloc((size_t)(nc + len > 0 ? nc + len : 1) * sizeof(*sc));
		if (!sc) {
			fprintf(stderr, "<2>[kernels] prefill_attention_ref: out of memory\n");
			abort();
		}
		for (int i = 0; i < len; i++) {
			const long row = q_start[s] + i;
			int n = nc + i + 1;         /* positions this row attends */
			if (n > cap)
				n = cap;
			for (int h = 0; h < Hq; h++) {
				const uint16_t *qh = q + (row * Hq + h) * hd;
				uint16_t *oh = out + (row * Hq + h) * hd;
				const int kvh = h / g;
				double mx = -INFINITY;
				for (int p = 0; p < n; p++) {
					const uint16_t *k =
						pf_cache_row(k_cache, bt, p, block_size, KV, hd, kvh);
					double d = 0.0;
					for (int e = 0; e < hd; e++)
						d += (double)bf16_to_f32(qh[e]) * bf16_to_f32(k[e]);
					sc[p] = d * scale;
					if (sc[p] > mx)
						mx = sc[p];
				}
				double acc[KN_PREFILL_ATTENTION_MAX_HD] = { 0 }, sum = 0.0;
				for (int p = 0; p < n; p++) {
					const uint16_t *v =
						pf_cache_row(v_cache, bt, p, block_size, KV, hd, kvh);
					double w = exp(sc[p] - mx);
					sum += w;
					for (int e = 0; e < hd; e++)
						acc[e] += w * bf16_to_f32(v[e]);
				}
				for (int e = 0; e < hd; e++)
					oh[e] = f32_to_bf16(n > 0 ? (float)(acc[e] / sum) : 0.0f);
			}
		}
		free(sc);
	}
}
