/*
 * vision_attention reference: plain C, one query row and one head at a time, scores, softmax
 * and the weighted sum of v all in double, the output rounded once to bf16 (vision_attention.h).
 * Obviously correct first, fast never.
 */
#include "vision_attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bf16.h"

void kn_vision_attention_ref(uint16_t *out, const uint16_t *qkv, int n_seg, int L, int H, int hd)
{
	size_t Dv = (size_t)H * hd, ld = 3 * Dv;
	double scale = 1.0 / sqrt((double)hd);
	double *p = malloc((size_t)(L > 0 ? L : 1) * sizeof(double));
	double *acc = malloc((size_t)(hd > 0 ? hd : 1) * sizeof(double));
	if (!p || !acc) {
		fprintf(stderr, "<2>[kernels] vision_attention_ref: out of memory\n");
		abort();
	}
	for (int s = 0; s < n_seg; s++)
		for (int i = 0; i < L; i++) {
			size_t n = (size_t)s * L + i;
			for (int h = 0; h < H; h++) {
				const uint16_t *q = qkv + n * ld + (size_t)h * hd;
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j < L; j++) {
					const uint16_t *k = qkv + ((size_t)s * L + j) * ld + Dv +
							    (size_t)h * hd;
					double d = 0;
					for (int c = 0; c < hd; c++)
						d += (double)bf16_to_f32(q[c]) * bf16_to_f32(k[c]);
					p[j] = d * scale;
					mx = p[j] > mx ? p[j] : mx;
				}
				for (int j = 0; j < L; j++)
					sum += (p[j] = exp(p[j] - mx));
				for (int c = 0; c < hd; c++)
					acc[c] = 0;
				for (int j = 0; j < L; j++) {
					const uint16_t *v = qkv + ((size_t)s * L + j) * ld + 2 * Dv +
							    (size_t)h * hd;
					for (int c = 0; c < hd; c++)
						acc[c] += p[j] * bf16_to_f32(v[c]);
				}
				uint16_t *o = out + n * Dv + (size_t)h * hd;
				for (int c = 0; c < hd; c++)
					o[c] = f32_to_bf16((float)(acc[c] / sum));
			}
		}
	free(p);
	free(acc);
}
