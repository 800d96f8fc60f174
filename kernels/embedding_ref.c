/*
 * embedding reference: plain C, each bf16 table element widened to float (exact; see
 * embedding.h for shapes and the id contract).
 */
#include "embedding.h"

#include "bf16.h"

void kn_embedding_ref(float *out, const uint16_t *table, const int32_t *ids, int T, int D)
{
	for (int t = 0; t < T; t++) {
		const uint16_t *row = table + (long)ids[t] * D;
		float *o = out + (long)t * D;
		for (int c = 0; c < D; c++)
			o[c] = bf16_to_f32(row[c]);
	}
}
