/*
 * layernorm: nn.LayerNorm with weight and bias over the last dimension, as the Qwen3-VL vision
 * tower uses it (norm1/norm2 of every block, the merger norms; eps 1e-6, hard-coded by
 * transformers since the vision config has no eps field).
 *
 *   x (rows, cols) bf16    w (cols) bf16    b (cols) bf16    out (rows, cols) bf16
 *
 *   mean      = mean_c(x[c])                           fp32 (double in the ref)
 *   rstd      = 1 / sqrt(mean_c((x[c] − mean)²) + eps) biased variance; fp32 (double in the ref)
 *   out[c]    = bf16( (x[c] − mean)·rstd·w[c] + b[c] ) ONE rounding
 *
 * Rounding: unlike Qwen3's RMSNorm (which rounds the normalised value to bf16 before the weight
 * multiply, see rmsnorm.h), torch's layer_norm on a bf16 tensor runs the whole thing in its fp32
 * accumulate type (mean and rstd by Welford, then gamma·(rstd·(x − mean)) + beta with w and b
 * promoted to fp32) and rounds the output once. The CPU tower (vision_cpu.c layer_norm) agrees:
 * fp32 output of the same expression, moments in double.
 *
 * Sizes: cols = Dv = 1024 (blocks, main merger, pre-shuffle) or Dm = 4096 (deepstack mergers,
 * post-shuffle) for the 2B model. out may alias x (each block reads its row fully before its
 * last pass writes it, and each thread rewrites only the elements it read itself).
 *
 * kn_layernorm_ref is the plain-C reference (always built); kn_layernorm_cuda takes the same
 * arguments in the same order plus a stream, with device pointers.
 */
#ifndef QVL_KERNELS_LAYERNORM_H
#define QVL_KERNELS_LAYERNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_layernorm_ref(uint16_t *out, const uint16_t *x, const uint16_t *w, const uint16_t *b,
		      int rows, int cols, float eps);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
void kn_layernorm_cuda(uint16_t *out, const uint16_t *x, const uint16_t *w, const uint16_t *b,
		       int rows, int cols, float eps, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
