/*
 * img_preprocess: one decoded RGB image -> Qwen3-VL's pixel_values, grid_thw and image-token
 * count, exactly as Hugging Face's fast image processor (Qwen2VLImageProcessorFast, torchvision,
 * CPU) computes them (spec §4.2–4.7). img_preprocess.c has the layout diagrams.
 */
#ifndef QVL_IMG_PREPROCESS_H
#define QVL_IMG_PREPROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "img.h"
#include "model_config.h"
#include "qerr.h"
#include "sha256.h"

/* The most floats one image's pixel_values may hold: what the Qwen3-VL default max_pixels
 * (4096 x 4096) needs, 16777216 * 6 = 96 Mi floats (384 MiB). A request whose resized image
 * would need more is refused (QERR_LIMIT) before anything is allocated. */
#define IMG_PP_MAX_FLOATS ((size_t)96 << 20)

typedef struct img_patches {
	int width, height;                  /* the input image */
	int resized_width, resized_height;  /* after smart_resize: multiples of patch*merge */
	int grid_t, grid_h, grid_w;         /* image_grid_thw: 1, resized h/patch, w/patch */
	int64_t n_tokens;                   /* image-pad tokens: grid_t*grid_h*grid_w / merge^2 */
	size_t rows, cols;                  /* grid_t*grid_h*grid_w, 3*temporal*patch^2 */
	float *pixel_values;                /* owned: rows x cols, row-major */
	uint8_t hash[32];                   /* sha256: processing parameters + resized pixels */
} img_patches;

/* Preprocess in with the processor settings pc. min_pixels/max_pixels override pc's bounds for
 * this request (0: take pc's; used as transformers uses them, min > max included). On success
 * fills *out (pixel_values owned by it; release with img_patches_deinit) and returns 0. On
 * failure *out is zeroed (deinit is still safe) and returns:
 *   QERR_INVALID  an empty image, settings that make no sense (patch/merge/temporal < 1,
 *                 std 0, rescale_factor <= 0), an aspect ratio above 200, do_resize off with
 *                 sides that are not multiples of patch*merge, negative bounds;
 *   QERR_LIMIT    the resized image would need more than IMG_PP_MAX_FLOATS floats (or its
 *                 intermediate more than 4 * IMG_PP_MAX_FLOATS bytes).
 * Any thread; no shared state. */
int img_preprocess(const img_rgb *in, const preprocessor_config *pc, int64_t min_pixels,
		   int64_t max_pixels, img_patches *out, qerr *e);

/* img_preprocess in two halves, for a responder that resizes and a daemon that patchifies (the
 * wire protocol carries the resized uint8 RGB, 3 bytes a pixel instead of 3*T*4):
 *
 *   img_preprocess(in) == img_preprocess_patches(img_preprocess_resize(in))
 *
 * bit for bit (pixel_values, grid, token count, hash); only width/height differ (the input's
 * size there, the resized size here).
 *
 * img_preprocess_resize: steps 1-2 (smart_resize + resample). On success *resized owns fresh
 * pixels (a copy when no resampling was needed; release with img_rgb_deinit) and 0 is returned;
 * on failure *resized is zeroed and the errors are exactly img_preprocess's. */
int img_preprocess_resize(const img_rgb *in, const preprocessor_config *pc, int64_t min_pixels,
			  int64_t max_pixels, img_rgb *resized, qerr *e);

/* img_preprocess_patches: steps 3-6 on an image that is already resized. Its sides must be
 * multiples of patch*merge (QERR_INVALID otherwise, and for an empty image or unusable
 * settings); QERR_LIMIT when its pixel_values would exceed IMG_PP_MAX_FLOATS. On success fills
 * *out (width/height = resized_width/resized_height = the image's size); on failure *out is
 * zeroed. Any thread; no shared state. */
int img_preprocess_patches(const img_rgb *resized, const preprocessor_config *pc,
			   img_patches *out, qerr *e);

/* The same with step 5 (the patches) cut into parts pieces of whole merge-window rows, each on
 * a thread of its own (at most 8, and no more than the image has window rows; 0: the machine's
 * default, img_preprocess_patches's: 4 where 8 or more CPUs are online and the item is big
 * enough, else 1; QVL_PATCHIFY_THREADS overrides it). The result does not depend on parts. */
int img_preprocess_patches_split(const img_rgb *resized, const preprocessor_config *pc, int parts,
				 img_patches *out, qerr *e);

/* img_patches.hash of an already resized image, without making pixel_values (the responder
 * sends it in SUBMIT as the image's cache key). resized must be non-empty and pc valid (as
 * img_preprocess_patches would accept them); the result equals what img_preprocess_patches
 * writes to out->hash for the same arguments. */
void img_preprocess_hash(const img_rgb *resized, const preprocessor_config *pc, uint8_t out[32]);

/* The same hash fed a row at a time, for a caller that has the rows before the whole image
 * (the responder hashes while it decodes): img_preprocess_hash_begin with the resized size,
 * then sha256_update with the w*3 bytes of every row in order, then sha256_final. */
void img_preprocess_hash_begin(sha256_ctx *h, int w, int hgt, const preprocessor_config *pc);

/* Whether img_preprocess_resize of a w x h image with these bounds (as it takes them) would
 * keep the size, and so give the input's pixels unchanged. False also for anything it would
 * refuse for its settings or bounds. */
bool img_preprocess_keeps_size(int w, int h, const preprocessor_config *pc, int64_t min_pixels,
			       int64_t max_pixels);

/* Free pixel_values and zero *p (NULL or a zeroed struct is fine). */
void img_patches_deinit(img_patches *p);

#endif
