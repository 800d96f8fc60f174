/*
 * rows CUDA kernels (formulas in rows.h; references in rows_ref.c).
 *
 * Launch: one block of 128 threads per moved row (n blocks; n is a step's logit rows or image
 * tokens, at most a few thousand), each thread a strided pass over the row's columns. Rows are
 * short (2048 bf16 for the 2B model): the kernels are latency-bound, not bandwidth-bound.
 */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "rows.h"

#define ROWS_THREADS 128

enum { ROWS_GATHER, ROWS_SCATTER, ROWS_SCATTER_ADD };

template <int MODE>
static __global__ void rows_kernel(__nv_bfloat16 *dst, const __nv_bfloat16 *src,
				   const int32_t *idx, int cols)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	const long r = idx[blockIdx.x];
	const long i = blockIdx.x;
	__nv_bfloat16 *d = dst + (MODE == ROWS_GATHER ? i : r) * cols;
	const __nv_bfloat16 *s = src + (MODE == ROWS_GATHER ? r : i) * cols;
	for (int c = threadIdx.x; c < cols; c += ROWS_THREADS) {
		if (MODE == ROWS_SCATTER_ADD)
			d[c] = __float2bfloat16(__bfloat162float(d[c]) + __bfloat162float(s[c]));
		else
			d[c] = s[c];
	}
}

template <int MODE>
static void rows_launch(uint16_t *dst, const uint16_t *src, const int32_t *idx, int n, int cols,
			cudaStream_t stream)
{
	if (n <= 0 || cols <= 0)
		return;
	kn_launch(rows_kernel<MODE>, n, ROWS_THREADS, 0, stream, (__nv_bfloat16 *)dst,
							  (const __nv_bfloat16 *)src, idx, cols);
	KN_CHECK_LAUNCH();
}

extern "C" void kn_rows_gather_cuda(uint16_t *out, const uint16_t *src, const int32_t *idx, int n,
				    int cols, cudaStream_t stream)
{
	rows_launch<ROWS_GATHER>(out, src, idx, n, cols, stream);
}

extern "C" void kn_rows_scatter_cuda(uint16_t *dst, const uint16_t *src, const int32_t *idx, int n,
				     int cols, cudaStream_t stream)
{
	rows_launch<ROWS_SCATTER>(dst, src, idx, n, cols, stream);
}

extern "C" void kn_rows_scatter_add_cuda(uint16_t *dst, const uint16_t *src, const int32_t *idx,
					 int n, int cols, cudaStream_t stream)
{
	rows_launch<ROWS_SCATTER_ADD>(dst, src, idx, n, cols, stream);
}
