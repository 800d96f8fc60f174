/*
 * embedding: the token-embedding gather at the start of the text decoder, x = E[input_ids],
 * widened to the fp32 residual stream.
 *
 *   table (V, D) bf16 row-major    ids (T) int32    out (T, D) fp32
 *   out[t, :] = float(table[ids[t], :])             a widening copy: exact, no rounding
 *
 * The decoder keeps its residual stream x in fp32 (text_cuda.c): bf16 only where tensor cores
 * need it (GEMM inputs, KV cache, attention). The embedding starts that stream.
 *
 * For Qwen3-VL-2B, V = 151 936 and D = 2048 (embed_tokens.weight, also the tied LM head). Rows of
 * image/video pad tokens are overwritten afterwards by the vision features (kn_rows_scatter,
 * rows.h); that is not done here.
 *
 * Contract: every ids[t] must be in [0, V). An out-of-range id is the caller's bug (the tokenizer
 * and the request validation guarantee the range): neither function checks it, the reference
 * reads out of bounds and the CUDA kernel faults or copies garbage. out must not overlap table.
 *
 * kn_embedding_ref is the plain-C reference (always built); kn_embedding_cuda takes the same
 * arguments in the same order plus a stream, with device pointers (ids too).
 */
#ifndef QVL_KERNELS_EMBEDDING_H
#define QVL_KERNELS_EMBEDDING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_embedding_ref(float *out, const uint16_t *table, const int32_t *ids, int T, int D);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_embedding_cuda(float *out, const uint16_t *table, const int32_t *ids, int T, int D,
		       cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
