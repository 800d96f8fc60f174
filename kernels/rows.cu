/*
 * rows CUDA kernels (formulas in rows.h; references in rows_ref.c).
 *
 * Launch: one block of 128 threads per moved row (n blocks; n is a step's logit rows or image
 * tokens, at most a few thousand), each thread a strided pass over the row's columns. Rows are
 * short (2048 elements for the 2B model): the kernels are latency-bound, not bandwidth-bound.
 * The scatters widen bf16 to fp32 exactly and add in fp32 (one IEEE add, the reference's), so
 * all three are bit-exact against rows_ref.c.
 */
#include <stdint.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "rows.h"

#define ROWS_THREADS 128

enum { ROWS_SCATTER, ROWS_SCATTER_ADD };

/* out (n, cols) bf16 = src[idx] */
static __global__ void rows_gather_kernel(uint16_t *out, const uint16_t *src, const int32_t *idx,
					  int cols)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	uint16_t *d = out + (long)blockIdx.x * cols;
	const uint16_t *s = src + (long)idx[blockIdx.x] * cols;
	for (int c = threadIdx.x; c < cols; c += ROWS_THREADS)
		d[c] = s[c];
}

/* dst[idx] (fp32) = or += float(src) (bf16), row blockIdx.x of src */
template <int MODE>
static __global__ void rows_scatter_kernel(float *dst, const uint16_t *src, const int32_t *idx,
					   int cols)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	float *d = dst + (long)idx[blockIdx.x] * cols;
	const uint16_t *s = src + (long)blockIdx.x * cols;
	for (int c = threadIdx.x; c < cols; c += ROWS_THREADS) {
		float v = __uint_as_float((unsigned)s[c] << 16);
		d[c] = MODE == ROWS_SCATTER_ADD ? d[c] + v : v;
	}
}

extern "C" void kn_rows_gather_cuda(uint16_t *out, const uint16_t *src, const int32_t *idx, int n,
				    int cols, cudaStream_t stream)
{
	if (n <= 0 || cols <= 0)
		return;
	kn_launch(rows_gather_kernel, n, ROWS_THREADS, 0, stream, out, src, idx, cols);
	KN_CHECK_LAUNCH();
}

extern "C" void kn_rows_scatter_cuda(float *dst, const uint16_t *src, const int32_t *idx, int n,
				     int cols, cudaStream_t stream)
{
	if (n <= 0 || cols <= 0)
		return;
	kn_launch(rows_scatter_kernel<ROWS_SCATTER>, n, ROWS_THREADS, 0, stream, dst, src, idx,
		  cols);
	KN_CHECK_LAUNCH();
}

extern "C" void kn_rows_scatter_add_cuda(float *dst, const uint16_t *src, const int32_t *idx,
					 int n, int cols, cudaStream_t stream)
{
	if (n <= 0 || cols <= 0)
		return;
	kn_launch(rows_scatter_kernel<ROWS_SCATTER_ADD>, n, ROWS_THREADS, 0, stream, dst, src, idx,
		  cols);
	KN_CHECK_LAUNCH();
}
