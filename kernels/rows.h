/*
 * rows: moving whole rows by index — what the decoder does at the edges of a step besides the
 * token embedding.
 *
 *   kn_rows_gather      out[i]      = src[idx[i]]             bf16 → bf16   the normed hidden
 *                                                                           rows that want
 *                                                                           logits → LM head
 *   kn_rows_scatter     dst[idx[i]] = float(src[i])           bf16 → fp32   vision row 0
 *                                                                           replaces the token
 *                                                                           embedding in x
 *   kn_rows_scatter_add dst[idx[i]] = dst[idx[i]] + float(src[i])           a deepstack row
 *                                     (fp32 add, no rounding to bf16)      added to x after
 *                                                                           layer l
 *
 *   i < n. gather: src, out bf16 row-major, `cols` per row. scatters: src (n, cols) bf16, dst
 *   (rows, cols) fp32, the decoder's fp32 residual stream x (text_cuda.c); widening is exact,
 *   so kn_rows_scatter is a bit-exact copy and kn_rows_scatter_add one IEEE fp32 add.
 *   idx (n) int32, every value a valid row of the indexed matrix (the caller's contract: it
 *   builds them from checked sequences). For the scatters the idx values must be distinct (two
 *   writes to one row would race).
 *
 * kn_rows_*_ref are the plain-C references (always built); the _cuda versions take the same
 * arguments in the same order plus a stream, with device pointers (idx too).
 */
#ifndef QVL_KERNELS_ROWS_H
#define QVL_KERNELS_ROWS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_rows_gather_ref(uint16_t *out, const uint16_t *src, const int32_t *idx, int n, int cols);
void kn_rows_scatter_ref(float *dst, const uint16_t *src, const int32_t *idx, int n, int cols);
void kn_rows_scatter_add_ref(float *dst, const uint16_t *src, const int32_t *idx, int n, int cols);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_rows_gather_cuda(uint16_t *out, const uint16_t *src, const int32_t *idx, int n, int cols,
			 cudaStream_t stream);
void kn_rows_scatter_cuda(float *dst, const uint16_t *src, const int32_t *idx, int n, int cols,
			  cudaStream_t stream);
void kn_rows_scatter_add_cuda(float *dst, const uint16_t *src, const int32_t *idx, int n,
			      int cols, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
