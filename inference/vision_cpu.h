/*
 * vision_cpu: the Qwen3-VL vision tower on the CPU in fp32 — the reference the CUDA backend is
 * checked against and the encoder of the CPU backend (spec §5). vision_cpu.c has the data flow.
 *
 * Weights are converted to fp32 once at vision_cpu_new (bf16/f16 widened; fp32 tensors whose
 * mapping is 4-byte aligned are borrowed from the mapping instead of copied). Matrix products go
 * through OpenBLAS (cblas_sgemm); everything else is plain loops.
 *
 * Threads: one thread drives a vision_cpu (its scratch buffers are reused between calls);
 * OpenBLAS uses its own threads inside. The two table functions are pure and thread-safe.
 */
#ifndef QVL_VISION_CPU_H
#define QVL_VISION_CPU_H

#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"

typedef struct vision_cpu vision_cpu;

/* The sizes of a vision tower (vision_cpu.c's top comment names them), shared by every
 * backend's tower. */
typedef struct vision_dims {
	int Dv, Iv, H, hd, depth, K, merge, side, Dm, D, n_ds;
	int ds_idx[MODEL_MAX_DEEPSTACK];   /* blocks after which the deepstack mergers tap */
} vision_dims;

/* The sizes of mc's tower, checked against the config's own consistency and the bound weights
 * w: QERR_INVALID when mc has no vision tower or its sizes are inconsistent (a deepstack index
 * beyond the depth included), QERR_MISSING when w's block or merger counts differ. */
int vision_dims_of(const model_config *mc, const model_weights *w, vision_dims *d, qerr *e);

/* Build the tower of mc (which must have a vision_config) from the bound weights w. w is
 * borrowed and must outlive *out (fp32 tensors may be read from its mapping). n_threads > 0 sets
 * OpenBLAS's thread count (process-wide: openblas_set_num_threads), 0 leaves it alone.
 * Fails with QERR_INVALID when mc has no vision tower or its sizes are inconsistent, and
 * QERR_MISSING when w lacks a vision tensor. */
int vision_cpu_new(const model_config *mc, const model_weights *w, int n_threads, vision_cpu **out,
		   qerr *e);

/* Release v (NULL is a no-op). */
void vision_cpu_free(vision_cpu *v);

/* Encode one image (or video) item:
 *   pixel_values  (grid_t*grid_h*grid_w, C*Tp*P*P) rows in merge-window order (img_preprocess)
 *   out           (n_tokens, 1 + n_ds, D), n_tokens = grid_t*grid_h*grid_w / merge², D =
 *                 out_hidden_size: per token its main-merger row, then deepstack rows 0..n_ds-1.
 * Fails with QERR_INVALID for a grid that is not positive or whose h, w are not multiples of the
 * merge size, and QERR_LIMIT when the item is larger than 2^20 patches. */
int vision_cpu_encode(vision_cpu *v, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		      float *out, qerr *e);

/* The learned position embedding of a (grid_t, grid_h, grid_w) item (spec §5.2): table
 * (side*side, dv) fp32, resampled align-corners bilinearly to grid_h x grid_w with torch's fp32
 * linspace, repeated per temporal slice and permuted to merge-window order → out
 * (grid_t*grid_h*grid_w, dv). Exposed for tests and for backends that add it on the device. */
void vision_cpu_pos_embed(const float *table, int side, int dv, int merge, int grid_t, int grid_h,
			  int grid_w, float *out);

/* The 2-D rotary tables of an item (spec §5.3): for each patch row n (merge-window order) and
 * i < head_dim/2, cos and sin of θ[n][i] = row(n)·f_i for i < head_dim/4, col(n)·f_(i-head_dim/4)
 * otherwise, f_k = 1/10000^(2k/(head_dim/2)) in fp32 → cos_out, sin_out (N, head_dim/2). Pair
 * (i, i + head_dim/2) of every q and k head rotates by θ[n][i] (rotate-half). */
void vision_cpu_rope_tables(int head_dim, int merge, int grid_t, int grid_h, int grid_w,
			    float *cos_out, float *sin_out);

#endif
