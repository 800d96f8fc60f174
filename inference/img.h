/*
 * img: the image types shared by decoding (img_decode.c) and Qwen3-VL preprocessing
 * (img_resize.c, img_preprocess.c).
 *
 *   bytes ──img_decode──► img_rgb (uint8 RGB, as PIL's convert("RGB"))
 *         ──img_preprocess──► img_patches (pixel_values, grid_thw, token count, content hash)
 *
 * An img_rgb is row-major, 3 bytes per pixel, no padding: px[(y*w + x)*3 + c].
 */
#ifndef QVL_IMG_H
#define QVL_IMG_H

#include <stddef.h>
#include <stdint.h>

/* PIL's Image.MAX_IMAGE_PIXELS: larger images are refused before any pixel is allocated. */
#define IMG_DEFAULT_MAX_PIXELS 89478485ull
#define IMG_DEFAULT_MAX_BYTES (64u << 20)

typedef struct img_rgb {
	int w, h;
	uint8_t *px;          /* owned: h*w*3 bytes */
} img_rgb;

typedef struct img_limits {
	uint64_t max_pixels;  /* width*height cap (0: IMG_DEFAULT_MAX_PIXELS) */
	size_t max_bytes;     /* encoded input cap (0: IMG_DEFAULT_MAX_BYTES) */
} img_limits;

void img_rgb_deinit(img_rgb *im);

#endif
