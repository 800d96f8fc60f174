/*
 * img_resize: Qwen3-VL's target size (smart_resize) and the resampling that Hugging Face's
 * fast image processor applies to reach it — torchvision's resize(BICUBIC, antialias=True) on
 * a uint8 image on the CPU, which is PyTorch's separable anti-aliased uint8 kernel (a port of
 * Pillow-SIMD) with int16 weights at a per-axis precision. Both are bit-exact reproductions
 * (spec §4.2, §4.3); img_resize.c says how.
 */
#ifndef QVL_IMG_RESIZE_H
#define QVL_IMG_RESIZE_H

#include <stdint.h>

#include "img.h"
#include "qerr.h"

/* Inputs larger than this on a side are refused by img_smart_resize (far beyond any decoder
 * limit; it keeps every product below 2^53, where Python's integer arithmetic and IEEE double
 * agree). */
#define IMG_RESIZE_MAX_SIDE (1 << 24)

/* transformers' smart_resize(height=h, width=w, factor, min_pixels, max_pixels): the size,
 * multiple of factor on both sides, closest to h x w in aspect ratio with a pixel count in
 * [min_pixels, max_pixels] (as the Python does it: IEEE double, round half to even, the two
 * successive divisions h/beta/factor). On success writes *out_h, *out_w (>= 1) and returns 0.
 * Fails with QERR_INVALID when a side is < 1, factor < 1, the aspect ratio exceeds 200 or the
 * result is empty; QERR_LIMIT when a side exceeds IMG_RESIZE_MAX_SIDE, a pixel bound exceeds
 * 2^53 or the result does not fit an int. min_pixels/max_pixels are used as given (0 or
 * min > max are not rejected here: the Python does not reject them either). */
int img_smart_resize(int64_t h, int64_t w, int factor, int64_t min_pixels, int64_t max_pixels,
		     int *out_h, int *out_w, qerr *e);

/* Resample in (w x h, RGB) to out_w x out_h exactly as PyTorch's CPU uint8 anti-aliased
 * bicubic does: width pass then height pass, each rounded to uint8, a pass skipped when that
 * side is unchanged. out->px is allocated here (owned by *out; free it with free() or
 * img_rgb_deinit); the caller has checked out_w*out_h*3 and in->h*out_w*3 against its limits
 * (allocation failure aborts). Requires in->w, in->h, out_w, out_h >= 1 and out != in. Uses SSE2
 * where the compiler targets it, else img_resize_bicubic_aa_scalar. Any thread; no state. */
void img_resize_bicubic_aa(const img_rgb *in, int out_w, int out_h, img_rgb *out);

/* The same result computed in plain C (no SIMD): the fallback on other CPUs, and the
 * reference the SIMD path is tested against. Same contract. */
void img_resize_bicubic_aa_scalar(const img_rgb *in, int out_w, int out_h, img_rgb *out);

#endif
