/*
 * prefill_attention reference: plain C, everything in double (see prefill_attention.h for the
 * shapes, the pool layout and the formula). For each sequence, new row and query head: the
 * scores of positions 0 .. n_cached + row into a scratch array, their maximum, then the
 * exponentials, their sum and the weighted sum of V. Obviously correct first, fast never.
 *
 * One body serves both cache element types: pf_kv reads element i of a bf16 or an fp8 (E4M3,
 * fp8.h) cache as a float, the latter through a table of fp8e4m3_to_f32 over the 256 codes
 * (built per call: no shared state). The bf16 entry point passes scales of 1, and multiplying
 * a double by 1 is exact, so its results are those of a bf16-only reference.
 */
#include "prefill_attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bf16.h"
#include "fp8.h"

/* Element i of a cache of bf16 (fp8 == NULL) or E4M3 bytes (fp8: their values by code). */
static float pf_kv(const void *cache, long i, const float *fp8)
{
	return fp8 ? fp8[((const uint8_t *)cache)[i]] : bf16_to_f32(((const uint16_t *)cache)[i]);
}

/* Element index of the row of position p of kv head kvh in a cache of (n_blocks, bs, KV, hd). */
static long pf_cache_row(const int32_t *bt_row, int p, int bs, int KV, int hd, int kvh)
{
	long blk = bt_row[p / bs];
	return ((blk * bs + p % bs) * KV + kvh) * (long)hd;
}

/* sc = scale · k_scale · q·float(k);  out = bf16(v_scale · Σ softmax(sc) · float(v)). */
static void pf_attention(uint16_t *out, const uint16_t *q, const void *k_cache,
			 const void *v_cache, const float *fp8, const int32_t *block_table,
			 const int32_t *q_start, const int32_t *n_cached, int n_seqs, int Hq,
			 int KV, int hd, int block_size, int max_blocks_per_seq, double scale,
			 double k_scale, double v_scale)
{
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
					const long k = pf_cache_row(bt, p, block_size, KV, hd, kvh);
					double d = 0.0;
					for (int e = 0; e < hd; e++)
						d += (double)bf16_to_f32(qh[e]) *
						     pf_kv(k_cache, k + e, fp8);
					sc[p] = d * scale * k_scale;
					if (sc[p] > mx)
						mx = sc[p];
				}
				double acc[KN_PREFILL_ATTENTION_MAX_HD] = { 0 }, sum = 0.0;
				for (int p = 0; p < n; p++) {
					const long v = pf_cache_row(bt, p, block_size, KV, hd, kvh);
					double w = exp(sc[p] - mx);
					sum += w;
					for (int e = 0; e < hd; e++)
						acc[e] += w * pf_kv(v_cache, v + e, fp8);
				}
				for (int e = 0; e < hd; e++)
					oh[e] = f32_to_bf16(n > 0 ? (float)(acc[e] / sum * v_scale)
								  : 0.0f);
			}
		}
		free(sc);
	}
}

void kn_prefill_attention_ref(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
			      const uint16_t *v_cache, const int32_t *block_table,
			      const int32_t *q_start, const int32_t *n_cached, int n_seqs, int T,
			      int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
			      float scale)
{
	(void)T;
	pf_attention(out, q, k_cache, v_cache, NULL, block_table, q_start, n_cached, n_seqs, Hq, KV,
		     hd, block_size, max_blocks_per_seq, scale, 1.0, 1.0);
}

void kn_prefill_attention_fp8_ref(uint16_t *out, const uint16_t *q, const uint8_t *k_cache,
				  const uint8_t *v_cache, const int32_t *block_table,
				  const int32_t *q_start, const int32_t *n_cached, int n_seqs, int T,
				  int Hq, int KV, int hd, int block_size, int max_blocks_per_seq,
				  float scale, float k_scale, float v_scale)
{
	(void)T;
	float lut[256];
	for (int c = 0; c < 256; c++)
		lut[c] = fp8e4m3_to_f32((uint8_t)c);
	pf_attention(out, q, k_cache, v_cache, lut, block_table, q_start, n_cached, n_seqs, Hq, KV,
		     hd, block_size, max_blocks_per_seq, scale, k_scale, v_scale);
}
