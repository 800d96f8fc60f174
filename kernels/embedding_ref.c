/*
 * embedding reference: plain C row copies (see embedding.h for shapes and the id contract).
 */
#include "embedding.h"

#include <string.h>

void kn_embedding_ref(uint16_t *out, const uint16_t *table, const int32_t *ids, int T, int D)
{
	for (int t = 0; t < T; t++)
		memcpy(out + (long)t * D, table + (long)ids[t] * D, (size_t)D * sizeof(uint16_t));
}
