/*
 * token_chain reference (token_chain.h): the plain loop.
 */
#include "token_chain.h"

void kn_token_chain_ref(int32_t *ids, const int32_t *prev, const int32_t *pairs, int n)
{
	for (int i = 0; i < n; i++)
		ids[pairs[2 * i]] = prev[pairs[2 * i + 1]];
}
