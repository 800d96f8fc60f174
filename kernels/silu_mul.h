/*
 * silu_mul: the SwiGLU activation of Qwen3's MLP, act_fn(gate_proj(x)) * up_proj(x), with gate
 * and up produced by one fused projection in fp32 (kn_gemm_f32, gemm.h), and the result the
 * bf16 input of the down projection.
 *
 *   gu (T, 2F) fp32 row-major: row t = [ gate (F) | up (F) ]     out (T, F) bf16
 *
 *     gu row t:  | g0 g1 … g(F-1) | u0 u1 … u(F-1) |
 *
 *   out[t,c] = bf16( silu(g) · u ),  silu(g) = g / (1 + exp(−g))
 *              fp32 on the GPU (accurate expf, IEEE division), double in the ref; ONE rounding
 *
 * (transformers in bf16 rounds gate, up, silu and the product, four times; here only the bf16
 * GEMM input is rounded, as the decoder's fp32 residual stream wants, text_cuda.c.) A very
 * negative gate gives exp(−g) = inf and silu = −0, not NaN.
 *
 * F = 6144 for the 2B model. out must not overlap gu.
 *
 * kn_silu_mul_ref is the plain-C reference (always built); kn_silu_mul_cuda takes the same
 * arguments in the same order plus a stream, with device pointers.
 *
 * kn_silu_mul_f16_{ref,cuda}: the same with gu in IEEE fp16 (binary16), what the decoder's
 * gate/up projection writes for steps of more than 4 rows when a load-time bound proves fp16
 * holds it (text_cuda.c): half the bytes of fp32 to write and read back, 11 significant bits
 * (the output keeps bf16's 8). The values are widened exactly; the rest is the same code.
 */
#ifndef QVL_KERNELS_SILU_MUL_H
#define QVL_KERNELS_SILU_MUL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_silu_mul_ref(uint16_t *out, const float *gu, int T, int F);
void kn_silu_mul_f16_ref(uint16_t *out, const uint16_t *gu, int T, int F);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_silu_mul_cuda(uint16_t *out, const float *gu, int T, int F, cudaStream_t stream);
void kn_silu_mul_f16_cuda(uint16_t *out, const uint16_t *gu, int T, int F, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
