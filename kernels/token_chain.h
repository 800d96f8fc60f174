/*
 * token_chain: the token ids a step takes from the step before it, without a trip to the host —
 * what lets the engine plan and launch decode step N+1 while step N still runs (async
 * scheduling, backend.h: BACKEND_CHAINED_ID).
 *
 *   ids (T) int32      the step's staged token ids; the chained rows hold a placeholder
 *   prev (R) int32     the previous step's sampled ids, one per logit row, still on the device
 *   pairs (n, 2) int32 (dst, src): ids[dst] = prev[src]          i < n
 *
 * Every dst is a valid, distinct row of ids and every src a valid row of prev (the caller's
 * contract: text_cuda builds them from checked sequences). n = 0 does nothing.
 *
 * kn_token_chain_ref is the plain-C reference (always built); kn_token_chain_cuda takes the same
 * arguments plus a stream, with device pointers, and launches with PDL like the decode kernels.
 */
#ifndef QVL_KERNELS_TOKEN_CHAIN_H
#define QVL_KERNELS_TOKEN_CHAIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_token_chain_ref(int32_t *ids, const int32_t *prev, const int32_t *pairs, int n);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_token_chain_cuda(int32_t *ids, const int32_t *prev, const int32_t *pairs, int n,
			 cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
