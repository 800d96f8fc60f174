/*
 * mrope: the 3-D positions (T, H, W) of Qwen3-VL's interleaved MRoPE for a prompt, and the
 * positions of decoded tokens — transformers' Qwen3VLModel.get_rope_index (spec §7.3, §7.4).
 *
 * Text advances all three axes together; an image of grid (t, h, w) occupies t·(h/m)·(w/m)
 * consecutive <|image_pad|> tokens (m = spatial_merge_size) that share T = s + frame and spread
 * H = s + row, W = s + col from the scalar position s it starts at; text after it restarts at
 * (largest position so far) + 1. rope_delta = max position + 1 − prompt length, and a token at
 * cache index p later gets p + rope_delta on all three axes.
 *
 *   ids   ... <vs> [pad pad pad pad] <ve> a  b        (image 2x2 after merging, s = 5)
 *   T     ... 4     5   5   5   5    7   8  9
 *   H     ... 4     5   5   6   6    7   8  9
 *   W     ... 4     5   6   5   6    7   8  9
 *
 * Videos (<|video_pad|>, one item per frame group) are not supported yet: a prompt holding a
 * video token is refused with QERR_UNSUPPORTED. Models without vision (arch qwen3) get plain
 * positions 0..n-1 on all three rows and delta 0.
 *
 * Pure functions of their arguments; any thread may call.
 */
#ifndef QVL_MROPE_H
#define QVL_MROPE_H

#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "qerr.h"

/* Positions of a whole prompt ids (n tokens, n ≥ 1) with n_grids image grids (t, h, w) in
 * prompt order. pos is (3, n): row 0 = T, row 1 = H, row 2 = W; *rope_delta as above.
 * Fails with QERR_INVALID when the image-token runs do not match the grids (a run too short,
 * an image token left over, a grid unused, h or w not a multiple of the merge size, a value
 * ≤ 0), QERR_UNSUPPORTED for a video token, QERR_LIMIT when positions would exceed int32.
 * Outputs are written only on success. */
int mrope_positions(const model_config *mc, const int32_t *ids, size_t n, const int32_t (*grids)[3],
		    size_t n_grids, int32_t *pos, int64_t *rope_delta, qerr *e);

/* Positions of n tokens at cache indexes first, first+1, …: index + rope_delta on all three
 * rows of pos (3, n). Fails with QERR_INVALID when a position would be negative and
 * QERR_LIMIT past int32. */
int mrope_decode_positions(int64_t first, int n, int64_t rope_delta, int32_t *pos, qerr *e);

#endif
