/*
 * vision_cuda: the Qwen3-VL vision tower on the GPU in bf16, as transformers runs it with the
 * model in bf16 (spec §5) — the encoder of the CUDA backend. vision_cuda.c has the data flow;
 * vision_cpu.h is the fp32 reference it is checked against (tests/check_vision_cuda.c).
 *
 * Weights are uploaded once at vision_cuda_new as bf16 (f32/f16 tensors converted on the host).
 * Everything an encode needs on the device besides the weights lives in a caller-provided
 * scratch buffer of vision_cuda_scratch_bytes(max_patches): the request path never allocates
 * device memory. Pinned host staging for the pixel upload and the output download grows to the
 * largest item seen (cudaMallocHost, host memory only).
 *
 * Threads: one thread drives a vision_cuda; its launches go to the stream given at creation and
 * its products through the borrowed kn_gemm_ctx (whose workspace belongs to that stream).
 */
#ifndef QVL_VISION_CUDA_H
#define QVL_VISION_CUDA_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "gemm.h"
#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"

typedef struct vision_cuda vision_cuda;

/* Upload the tower of mc (which must have a vision_config) from the bound weights w (only read
 * during the call). gemm and stream are borrowed and must outlive *out. Fails with
 * QERR_INVALID when mc has no vision tower or its sizes are inconsistent, QERR_MISSING when w
 * lacks a vision tensor, and QERR_UNSUPPORTED for a head_dim the attention kernel lacks (16, 32,
 * 48, 64, 80, 96, 128 are supported) or a block activation other than GELU. */
int vision_cuda_new(const model_config *mc, const model_weights *w, kn_gemm_ctx *gemm,
		    cudaStream_t stream, vision_cuda **out, qerr *e);

/* Release v and its device weights (NULL is a no-op). Synchronises the stream first. */
void vision_cuda_free(vision_cuda *v);

/* Device bytes of the uploaded weights. */
size_t vision_cuda_weight_bytes(const vision_cuda *v);

/* Device scratch bytes an item of up to max_patches patches needs (0 when max_patches is not
 * in 1 .. 2^20). */
size_t vision_cuda_scratch_bytes(const vision_cuda *v, int max_patches);

/* Encode one image (or video) item, with the same contract as vision_cpu_encode:
 *   pixel_values  host (grid_t*grid_h*grid_w, C*Tp*P*P) fp32, rows in merge-window order
 *   dev_out       device (1 + n_ds, n_tokens, D) bf16, n_tokens = N / merge²: plane 0 the
 *                 main-merger rows, plane 1+k deepstack k's; NULL: the scratch holds them only
 *                 until the next encode
 *   out           host (n_tokens, 1 + n_ds, D) fp32: per token its main-merger row, then
 *                 deepstack rows 0..n_ds-1 — the same values widened; NULL (dev_out then
 *                 required): no host copy
 *   scratch       device memory of scratch_bytes ≥ vision_cuda_scratch_bytes(v, N)
 * Returns when out is written; without out, once the work is queued on the stream (dev_out is
 * complete for later work on that stream). Fails with QERR_INVALID for a grid that is not
 * positive or whose h, w are not multiples of the merge size, or neither output; QERR_LIMIT
 * when the item is larger than 2^20 patches or the scratch is too small. */
int vision_cuda_encode(vision_cuda *v, const float *pixel_values, int grid_t, int grid_h,
		       int grid_w, void *scratch, size_t scratch_bytes, uint16_t *dev_out, float *out,
		       qerr *e);

/* Encoder rows as the device holds them, planes (n_planes, T, D) bf16 (host memory), into the
 * host layout (T, n_planes, D) fp32 of out. */
void vision_cuda_rows_to_host(float *out, const uint16_t *planes, size_t T, int n_planes, int D);

#endif
