/*
 * silu_mul: the SwiGLU activation of Qwen3's MLP, act_fn(gate_proj(x)) * up_proj(x), with gate
 * and up produced by one fused projection.
 *
 *   gu (T, 2F) bf16 row-major: row t = [ gate (F) | up (F) ]     out (T, F) bf16
 *
 *     gu row t:  | g0 g1 … g(F-1) | u0 u1 … u(F-1) |
 *
 *   s        = bf16( g / (1 + exp(-g)) )      torch's bf16 silu: computed in fp32 from the
 *                                              bf16 input (double in the ref), one rounding
 *   out[t,c] = bf16( s · u )                   torch's bf16 mul: the product of two bf16 is
 *                                              exact in fp32, then one rounding
 *
 * F = 6144 for the 2B model. out must not overlap gu.
 *
 * kn_silu_mul_ref is the plain-C reference (always built); kn_silu_mul_cuda takes the same
 * arguments in the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_SILU_MUL_H
#define QVL_KERNELS_SILU_MUL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_silu_mul_ref(uint16_t *out, const uint16_t *gu, int T, int F);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_silu_mul_cuda(uint16_t *out, const uint16_t *gu, int T, int F, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
