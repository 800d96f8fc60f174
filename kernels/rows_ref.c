/*
 * rows reference: plain loops (formulas in rows.h).
 */
#include "rows.h"

#include <stddef.h>
#include <string.h>

#include "bf16.h"

void kn_rows_gather_ref(uint16_t *out, const uint16_t *src, const int32_t *idx, int n, int cols)
{
	for (int i = 0; i < n; i++)
		memcpy(out + (size_t)i * cols, src + (size_t)idx[i] * cols, (size_t)cols * 2);
}

void kn_rows_scatter_ref(float *dst, const uint16_t *src, const int32_t *idx, int n, int cols)
{
	for (int i = 0; i < n; i++) {
		float *d = dst + (size_t)idx[i] * cols;
		const uint16_t *s = src + (size_t)i * cols;
		for (int c = 0; c < cols; c++)
			d[c] = bf16_to_f32(s[c]);
	}
}

void kn_rows_scatter_add_ref(float *dst, const uint16_t *src, const int32_t *idx, int n, int cols)
{
	for (int i = 0; i < n; i++) {
		float *d = dst + (size_t)idx[i] * cols;
		const uint16_t *s = src + (size_t)i * cols;
		for (int c = 0; c < cols; c++)
			d[c] = d[c] + bf16_to_f32(s[c]);
	}
}
