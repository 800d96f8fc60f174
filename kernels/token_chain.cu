/*
 * token_chain on the GPU (token_chain.h): one thread per pair; a few hundred pairs at most (one
 * per decoding sequence), so one CTA of 256 threads strides over them.
 */
#include "pdl.cuh"
#include "token_chain.h"

static __global__ void token_chain_kernel(int32_t *ids, const int32_t *prev, const int2 *pairs,
					  int n)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		int2 p = pairs[i];
		ids[p.x] = prev[p.y];
	}
}

extern "C" void kn_token_chain_cuda(int32_t *ids, const int32_t *prev, const int32_t *pairs,
				    int n, cudaStream_t stream)
{
	if (n <= 0)
		return;
	kn_launch(token_chain_kernel, dim3(1), dim3(256), 0, stream, ids, prev,
		  (const int2 *)pairs, n);
}
