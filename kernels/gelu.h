/*
 * gelu: the two GELU activations of the Qwen3-VL vision tower, elementwise on bf16.
 *
 *   x (n) bf16    out (n) bf16       (any shape, flattened: n = rows·cols)
 *
 *   KN_GELU_TANH:  out = bf16( 0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³))) )
 *                  the vision blocks' MLP (hidden_act "gelu_pytorch_tanh", i.e.
 *                  torch.nn.functional.gelu(z, approximate="tanh"))
 *   KN_GELU_ERF:   out = bf16( 0.5·z·(1 + erf(z/√2)) )
 *                  the main and deepstack mergers (nn.GELU() default, exact erf)
 *
 * Rounding: torch computes both in fp32 from the bf16 input and rounds once (double in the ref,
 * rounded through float). The fp32 kernel follows torch's fp32 expressions, so for z < −2 (where
 * 1 + tanh and 1 + erf cancel in fp32) it differs from the double ref by a bf16 ulp on ~1 in 3
 * inputs: ~13% of uniform(−6, 6) inputs are not bit-exact, at a relative L2 error ~2e-7. Iv = Dm = 4096 for the 2B model. out may alias x exactly (in place);
 * partial overlap is not allowed.
 *
 * kn_gelu_ref is the plain-C reference (always built); kn_gelu_cuda takes the same arguments in
 * the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_GELU_H
#define QVL_KERNELS_GELU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kn_gelu_mode {
	KN_GELU_TANH = 0,   /* gelu_pytorch_tanh */
	KN_GELU_ERF = 1,    /* exact erf */
} kn_gelu_mode;

void kn_gelu_ref(uint16_t *out, const uint16_t *x, long n, kn_gelu_mode mode);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_gelu_cuda(uint16_t *out, const uint16_t *x, long n, kn_gelu_mode mode,
		  cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
