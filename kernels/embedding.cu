/*
 * embedding CUDA kernel (shapes and the id contract in embedding.h; reference kn_embedding_ref).
 *
 * Launch: a grid-stride loop over the (T, D) output in units of 16 bytes (8 bf16) when D is a
 * multiple of 8 and both pointers are 16-byte aligned (every row then starts 16-byte aligned),
 * else in single elements. 256 threads a block, at most 32 blocks per multiprocessor: enough
 * loads in flight to saturate HBM, no block-scheduling tail for large T. Pure copy, memory-bound:
 * 2·T·D bytes read (scattered rows, each row contiguous) and 2·T·D written; the output is
 * bit-identical to the reference.
 */
#include <stdint.h>

#include "cuda_check.h"
#include "embedding.h"
#include "pdl.cuh"

#define EMBEDDING_THREADS 256

/* out (T, D/8) uint4 = table (V, D/8) uint4 [ids] */
static __global__ void embedding_vec_kernel(uint4 *out, const uint4 *table, const int32_t *ids,
					    long n_vec, int dv)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_vec;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / dv;
		int c = (int)(i - t * dv);
		out[i] = __ldg(&table[(long)__ldg(&ids[t]) * dv + c]);
	}
}

static __global__ void embedding_kernel(uint16_t *out, const uint16_t *table, const int32_t *ids,
					long n, int D)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / D;
		int c = (int)(i - t * D);
		out[i] = __ldg(&table[(long)__ldg(&ids[t]) * D + c]);
	}
}

/* Blocks for a grid-stride loop over n items: enough to cover n, at most 32 per multiprocessor. */
static int grid_for(long n)
{
	int dev, sms;
	CUDA_CHECK(cudaGetDevice(&dev));
	CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	long blocks = (n + EMBEDDING_THREADS - 1) / EMBEDDING_THREADS;
	long cap = 32L * sms;
	return (int)(blocks < cap ? blocks : cap);
}

extern "C" void kn_embedding_cuda(uint16_t *out, const uint16_t *table, const int32_t *ids,
				  int T, int D, cudaStream_t stream)
{
	if (T <= 0 || D <= 0)
		return;
	long n = (long)T * D;
	if (D % 8 == 0 && ((uintptr_t)out | (uintptr_t)table) % 16 == 0) {
		long n_vec = n / 8;
		kn_launch(embedding_vec_kernel, grid_for(n_vec), EMBEDDING_THREADS, 0, stream,
			(uint4 *)out, (const uint4 *)table, ids, n_vec, D / 8);
	} else {
		kn_launch(embedding_kernel, grid_for(n), EMBEDDING_THREADS, 0, stream, out, table, ids, n,
										D);
	}
	KN_CHECK_LAUNCH();
}
