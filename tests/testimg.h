/*
 * testimg: test images and settings shared by the image-preprocessing Check programs —
 * seeded random pictures and the Qwen3-VL processor settings. Header-only, for tests only.
 */
#ifndef QVL_TESTIMG_H
#define QVL_TESTIMG_H

#include <math.h>
#include <stdint.h>

#include "alloc.h"
#include "img.h"
#include "model_config.h"
#include "rng.h"

/* A seeded random image; smooth != 0 gives a gradient with mild noise instead of pure noise. */
static inline img_rgb random_image(int w, int h, uint64_t seed, int smooth)
{
	img_rgb im = { w, h, xmalloc((size_t)w * h * 3) };
	uint64_t key = rng_key(seed, (uint64_t)w * 65537u + (uint64_t)h);
	for (size_t i = 0; i < (size_t)w * h * 3; i++) {
		uint64_t r = rng_u64(key, i);
		if (smooth) {
			size_t px = i / 3, x = px % (size_t)w, y = px / (size_t)w, c = i % 3;
			double v = 128 + 100 * sin(0.05 * (double)x + 1.3 * (double)c) *
				   cos(0.07 * (double)y) + (double)(r % 9) - 4;
			im.px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
		} else {
			im.px[i] = (uint8_t)(r >> 17);
		}
	}
	return im;
}

/* Qwen3-VL's preprocessor_config.json (spec §1.5), written out so that this test needs no
 * config parsing. */
static inline preprocessor_config default_pc(void)
{
	preprocessor_config pc = {
		.min_pixels = 65536, .max_pixels = 16777216, .patch_size = 16,
		.temporal_patch_size = 2, .merge_size = 2, .image_mean = { 0.5f, 0.5f, 0.5f },
		.image_std = { 0.5f, 0.5f, 0.5f }, .rescale_factor = 1.0 / 255.0,
		.do_resize = true, .do_rescale = true, .do_normalize = true, .do_convert_rgb = true,
	};
	return pc;
}

#endif
