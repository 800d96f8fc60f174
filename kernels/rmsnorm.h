/*
 * rmsnorm: RMS normalisation of rows, as Qwen3's RMSNorm computes it in bf16.
 *
 *   x   (rows, cols) bf16        w (cols) bf16        out (rows, cols) bf16
 *   r        = rsqrt(mean_c(x[c]²) + eps)              statistics in fp32 (double in the ref)
 *   out[c]   = bf16( w[c] · bf16(x[c]·r) )             two roundings, exactly as transformers:
 *              the normalised row is cast back to the input dtype before the weight multiply
 *
 * Used for input_layernorm, post_attention_layernorm and the final norm (cols = D) and, per head,
 * for q_norm/k_norm (cols = head_dim). out may alias x.
 *
 * kn_rmsnorm_ref is the plain-C reference (always built); kn_rmsnorm_cuda takes the same
 * arguments in the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_RMSNORM_H
#define QVL_KERNELS_RMSNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_rmsnorm_ref(uint16_t *out, const uint16_t *x, const uint16_t *w, int rows, int cols,
		    float eps);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_rmsnorm_cuda(uint16_t *out, const uint16_t *x, const uint16_t *w, int rows, int cols,
		     float eps, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
