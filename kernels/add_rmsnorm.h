/*
 * add_rmsnorm: the residual add of a decoder layer fused with the RMSNorm that follows it.
 *
 *   residual (rows, cols) bf16, updated in place    x (rows, cols) bf16    w (cols) bf16
 *   out (rows, cols) bf16
 *
 *   residual[c] = bf16( float(residual[c]) + float(x[c]) )     transformers' bf16
 *                 `hidden_states = residual + hidden_states` (fp32 add, one rounding)
 *   r           = rsqrt(mean_c(residual[c]²) + eps)             over the rounded sum; fp32
 *                                                               (double in the ref)
 *   out[c]      = bf16( w[c] · bf16(residual[c]·r) )            rmsnorm's two roundings
 *                                                               (see rmsnorm.h)
 *
 * In a Qwen3 decoder layer (x = the attention or MLP output projection) this is
 *   residual = residual + attn_out; h = post_attention_layernorm(residual)     and
 *   residual = residual + mlp_out;  h = input_layernorm of the next layer (or the final norm).
 * cols = D = 2048 for the 2B model, eps = 1e-6.
 *
 * Aliasing: out may alias x (x is fully read before out is written); out must not alias
 * residual, and residual must not alias x.
 *
 * kn_add_rmsnorm_ref is the plain-C reference (always built); kn_add_rmsnorm_cuda takes the same
 * arguments in the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_ADD_RMSNORM_H
#define QVL_KERNELS_ADD_RMSNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_add_rmsnorm_ref(uint16_t *out, uint16_t *residual, const uint16_t *x, const uint16_t *w,
			int rows, int cols, float eps);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_add_rmsnorm_cuda(uint16_t *out, uint16_t *residual, const uint16_t *x, const uint16_t *w,
			 int rows, int cols, float eps, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
