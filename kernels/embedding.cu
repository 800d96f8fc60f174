/*
 * embedding CUDA kernel (shapes and the id contract in embedding.h; reference kn_embedding_ref).
 *
 * Launch: a grid-stride loop over the (T, D) output. When D is a multiple of 8 and both pointers
 * are 16-byte aligned (then every table row and every output row starts 16-byte aligned), an
 * item is 8 elements: one 16-byte load of 8 bf16, two 16-byte stores of 4 floats;
 * else one element. 256 threads a block, at most 32 blocks per multiprocessor: enough loads in
 * flight to saturate HBM, no block-scheduling tail for large T. Memory-bound: 2·T·D bytes read
 * (scattered rows, each row contiguous) and 4·T·D written. Widening bf16 → fp32 is exact (a
 * 16-bit shift), so the output is bit-identical to the reference.
 */
#include <stdint.h>

#include "cuda_check.h"
#include "embedding.h"
#include "pdl.cuh"

#define EMBEDDING_THREADS 256

/* The float whose top 16 bits are the bf16 h (exact). */
static __device__ __forceinline__ float bf16_bits_f32(unsigned h)
{
	return __uint_as_float(h << 16);
}

/* out (T, D/4) float4 = widen(table (V, D/8) uint4 [ids]); n_vec = T·D/8 items, dv = D/8. */
static __global__ void embedding_vec_kernel(float4 *out, const uint4 *table, const int32_t *ids,
					    long n_vec, int dv)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_vec;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / dv;
		int c = (int)(i - t * dv);
		uint4 v = __ldg(&table[(long)__ldg(&ids[t]) * dv + c]);
		out[2 * i] = make_float4(bf16_bits_f32(v.x & 0xffffu), bf16_bits_f32(v.x >> 16),
					 bf16_bits_f32(v.y & 0xffffu), bf16_bits_f32(v.y >> 16));
		out[2 * i + 1] = make_float4(bf16_bits_f32(v.z & 0xffffu), bf16_bits_f32(v.z >> 16),
					     bf16_bits_f32(v.w & 0xffffu), bf16_bits_f32(v.w >> 16));
	}
}

static __global__ void embedding_kernel(float *out, const uint16_t *table, const int32_t *ids,
					long n, int D)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
	     i += (long)gridDim.x * blockDim.x) {
		long t = i / D;
		int c = (int)(i - t * D);
		out[i] = bf16_bits_f32(__ldg(&table[(long)__ldg(&ids[t]) * D + c]));
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

extern "C" void kn_embedding_cuda(float *out, const uint16_t *table, const int32_t *ids, int T,
				  int D, cudaStream_t stream)
{
	if (T <= 0 || D <= 0)
		return;
	long n = (long)T * D;
	if (D % 8 == 0 && ((uintptr_t)out | (uintptr_t)table) % 16 == 0) {
		long n_vec = n / 8;
		kn_launch(embedding_vec_kernel, grid_for(n_vec), EMBEDDING_THREADS, 0, stream,
			  (float4 *)out, (const uint4 *)table, ids, n_vec, D / 8);
	} else {
		kn_launch(embedding_kernel, grid_for(n), EMBEDDING_THREADS, 0, stream, out, table, ids,
			  n, D);
	}
	KN_CHECK_LAUNCH();
}
