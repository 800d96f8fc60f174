/*
 * rows: moving whole rows of a (rows, cols) bf16 activation by index — what the decoder does at
 * the edges of a step besides the token embedding.
 *
 *   kn_rows_gather      out[i]     = src[idx[i]]                   i < n    the hidden rows that
 *                                                                           want logits → LM head
 *   kn_rows_scatter     dst[idx[i]] = src[i]                                vision row 0 replaces
 *                                                                           the token embedding
 *   kn_rows_scatter_add dst[idx[i]] = bf16(dst[idx[i]] + src[i])            a deepstack row added
 *                                                                           after layer l (fp32
 *                                                                           add, one rounding, as
 *                                                                           transformers' bf16
 *                                                                           `hidden + visual`)
 *
 *   src, dst, out: row-major with `cols` bf16 per row; idx (n) int32, every value a valid row of
 *   the indexed matrix (the caller's contract: it builds them from checked sequences). For the
 *   scatters the idx values must be distinct (two writes to one row would race).
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
void kn_rows_scatter_ref(uint16_t *dst, const uint16_t *src, const int32_t *idx, int n, int cols);
void kn_rows_scatter_add_ref(uint16_t *dst, const uint16_t *src, const int32_t *idx, int n,
			     int cols);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_rows_gather_cuda(uint16_t *out, const uint16_t *src, const int32_t *idx, int n, int cols,
			 cudaStream_t stream);
void kn_rows_scatter_cuda(uint16_t *dst, const uint16_t *src, const int32_t *idx, int n, int cols,
			  cudaStream_t stream);
void kn_rows_scatter_add_cuda(uint16_t *dst, const uint16_t *src, const int32_t *idx, int n,
			      int cols, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
