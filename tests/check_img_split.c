/*
 * Tests of the two halves of image preprocessing (img_preprocess_resize, the responder's, and
 * img_preprocess_patches, the daemon's, with the resized uint8 pixels crossing the wire in
 * between): together they give img_preprocess's pixel_values, grid, token count and hash bit
 * for bit, and img_preprocess_hash gives that hash without the patches — over seeded random
 * images of several shapes and settings (resampled up and down, already the right size,
 * request bounds, do_resize off, another processor configuration);
 * resize fails exactly as img_preprocess does; patches refuses an image whose sides are not
 * multiples of patch*merge, an empty one and one over the pixel_values limit; the patches cut
 * over 1-8 threads (img_preprocess_patches_split) are the same bits as in one piece.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "img_preprocess.h"
#include "rng.h"
#include "testimg.h"
#include "testutil.h"

/* img_preprocess(in) against patches(resize(in)): equal in everything but width/height. */
static void assert_split_equals_whole(const img_rgb *in, const preprocessor_config *pc,
				      int64_t min_pixels, int64_t max_pixels)
{
	img_patches whole, split;
	img_rgb rs;
	qerr e = { 0 };
	ck_assert_msg(img_preprocess(in, pc, min_pixels, max_pixels, &whole, &e) == 0, "%s",
		      e.msg);
	ck_assert_msg(img_preprocess_resize(in, pc, min_pixels, max_pixels, &rs, &e) == 0, "%s",
		      e.msg);
	ck_assert_int_eq(rs.w, whole.resized_width);
	ck_assert_int_eq(rs.h, whole.resized_height);
	ck_assert_ptr_nonnull(rs.px);
	ck_assert_ptr_ne(rs.px, in->px);   /* owned, even when nothing was resampled */
	ck_assert_msg(img_preprocess_patches(&rs, pc, &split, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(split.width, rs.w);
	ck_assert_int_eq(split.height, rs.h);
	ck_assert_int_eq(whole.width, in->w);
	ck_assert_int_eq(whole.height, in->h);
	ck_assert_int_eq(split.resized_width, whole.resized_width);
	ck_assert_int_eq(split.resized_height, whole.resized_height);
	ck_assert_int_eq(split.grid_t, whole.grid_t);
	ck_assert_int_eq(split.grid_h, whole.grid_h);
	ck_assert_int_eq(split.grid_w, whole.grid_w);
	ck_assert_int_eq(split.n_tokens, whole.n_tokens);
	ck_assert_uint_eq(split.rows, whole.rows);
	ck_assert_uint_eq(split.cols, whole.cols);
	ck_assert_mem_eq(split.hash, whole.hash, 32);
	uint8_t hash[32];
	img_preprocess_hash(&rs, pc, hash);
	ck_assert_mem_eq(hash, whole.hash, 32);
	ck_assert(memcmp(split.pixel_values, whole.pixel_values,
			 whole.rows * whole.cols * sizeof(float)) == 0);
	img_patches_deinit(&whole);
	img_patches_deinit(&split);
	img_rgb_deinit(&rs);
}

START_TEST(test_img_split_equals_img_preprocess)
{
	const preprocessor_config pc = default_pc();
	const struct { int w, h, smooth; int64_t min_pixels, max_pixels; } cases[] = {
		{ 640, 480, 1, 0, 0 },          /* resampled down a little */
		{ 320, 256, 0, 0, 0 },          /* already the right size: nothing resampled */
		{ 64, 48, 1, 0, 0 },            /* up to min_pixels */
		{ 1000, 37, 0, 0, 0 },          /* wide */
		{ 23, 411, 1, 0, 0 },           /* tall and odd */
		{ 800, 600, 1, 0, 100000 },     /* the request's max_pixels */
		{ 200, 150, 0, 300000, 0 },     /* the request's min_pixels */
		{ 1, 1, 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		img_rgb in = random_image(cases[i].w, cases[i].h, 1000 + i, cases[i].smooth);
		assert_split_equals_whole(&in, &pc, cases[i].min_pixels, cases[i].max_pixels);
		img_rgb_deinit(&in);
	}
}
END_TEST

START_TEST(test_img_split_equals_img_preprocess_other_settings)
{
	/* do_resize off: sides already multiples of 32 */
	preprocessor_config pc = default_pc();
	pc.do_resize = false;
	img_rgb in = random_image(96, 64, 7, 1);
	assert_split_equals_whole(&in, &pc, 0, 0);
	img_rgb_deinit(&in);

	/* patch 14, merge 2, temporal 3, ImageNet mean/std: rescale and normalize fused */
	pc = default_pc();
	pc.patch_size = 14;
	pc.temporal_patch_size = 3;
	pc.image_mean[0] = 0.485f, pc.image_mean[1] = 0.456f, pc.image_mean[2] = 0.406f;
	pc.image_std[0] = 0.229f, pc.image_std[1] = 0.224f, pc.image_std[2] = 0.225f;
	in = random_image(333, 251, 8, 0);
	assert_split_equals_whole(&in, &pc, 0, 0);
	img_rgb_deinit(&in);

	/* rescale only */
	pc = default_pc();
	pc.do_normalize = false;
	in = random_image(150, 170, 9, 1);
	assert_split_equals_whole(&in, &pc, 0, 0);
	img_rgb_deinit(&in);
}
END_TEST

/* Both must fail with the same code and message; resize leaves *resized empty. */
static void assert_resize_fails_like_whole(const img_rgb *in, const preprocessor_config *pc,
					   int64_t min_pixels, int64_t max_pixels, int code)
{
	img_patches whole;
	img_rgb rs = { 5, 5, (uint8_t *)&rs };
	qerr e1 = { 0 }, e2 = { 0 };
	ck_assert_int_eq(img_preprocess(in, pc, min_pixels, max_pixels, &whole, &e1), -code);
	ck_assert_int_eq(img_preprocess_resize(in, pc, min_pixels, max_pixels, &rs, &e2), -code);
	ck_assert_int_eq(e2.code, code);
	ck_assert_str_eq(e1.msg, e2.msg);
	ck_assert(rs.w == 0 && rs.h == 0 && rs.px == NULL);
}

START_TEST(test_img_split_resize_errors_match)
{
	preprocessor_config pc = default_pc();
	img_rgb empty = { 0, 0, NULL };
	assert_resize_fails_like_whole(&empty, &pc, 0, 0, QERR_INVALID);
	img_rgb thin = random_image(402, 2, 1, 0);   /* aspect ratio 201 */
	assert_resize_fails_like_whole(&thin, &pc, 0, 0, QERR_INVALID);
	img_rgb small = random_image(40, 30, 2, 0);
	assert_resize_fails_like_whole(&small, &pc, -1, 0, QERR_INVALID);
	pc.do_resize = false;   /* 40 x 30 is not a multiple of 32 */
	assert_resize_fails_like_whole(&small, &pc, 0, 0, QERR_INVALID);
	pc = default_pc();
	pc.patch_size = 0;
	assert_resize_fails_like_whole(&small, &pc, 0, 0, QERR_INVALID);
	/* resized pixel_values over IMG_PP_MAX_FLOATS: refused before reading a pixel */
	pc = default_pc();
	img_rgb big = { 5000, 5000, calloc((size_t)5000 * 5000 * 3, 1) };
	assert_resize_fails_like_whole(&big, &pc, 0, 25000000, QERR_LIMIT);
	free(big.px);
	img_rgb_deinit(&small);
	img_rgb_deinit(&thin);
}
END_TEST

static void assert_patches_fails(const img_rgb *rs, const preprocessor_config *pc, int code,
				 const char *want)
{
	img_patches out;
	memset(&out, 0xff, sizeof(out));
	qerr e = { 0 };
	ck_assert_int_eq(img_preprocess_patches(rs, pc, &out, &e), -code);
	ck_assert_int_eq(e.code, code);
	ck_assert_msg(strstr(e.msg, want) != NULL, "message \"%s\" lacks \"%s\"", e.msg, want);
	ck_assert_ptr_null(out.pixel_values);
	ck_assert_int_eq(out.grid_h, 0);
	img_patches_deinit(&out);
}

START_TEST(test_img_split_patches_refuses_bad_sizes)
{
	preprocessor_config pc = default_pc();
	img_rgb im = random_image(33, 32, 3, 0);
	assert_patches_fails(&im, &pc, QERR_INVALID, "33x32");
	assert_patches_fails(&im, &pc, QERR_INVALID, "multiples of 32");
	img_rgb_deinit(&im);
	im = random_image(32, 48, 4, 0);   /* 48 is a multiple of the patch, not of patch*merge */
	assert_patches_fails(&im, &pc, QERR_INVALID, "32x48");
	img_rgb_deinit(&im);
	img_rgb empty = { 0, 0, NULL };
	assert_patches_fails(&empty, &pc, QERR_INVALID, "empty");
	im = random_image(32, 32, 5, 0);
	pc.merge_size = 0;
	assert_patches_fails(&im, &pc, QERR_INVALID, "merge_size");
	img_rgb_deinit(&im);
	/* 32 x 524800: 2 x 32800 patches of 1536 floats, over IMG_PP_MAX_FLOATS */
	pc = default_pc();
	img_rgb tall = { 32, 524800, calloc((size_t)32 * 524800 * 3, 1) };
	assert_patches_fails(&tall, &pc, QERR_LIMIT, "IMG_PP_MAX_FLOATS");
	free(tall.px);
	/* and a multiple is accepted, its size reported as the input's */
	im = random_image(64, 32, 6, 0);
	img_patches out;
	qerr e = { 0 };
	ck_assert_msg(img_preprocess_patches(&im, &pc, &out, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(out.width, 64);
	ck_assert_int_eq(out.height, 32);
	ck_assert_int_eq(out.grid_w, 4);
	ck_assert_int_eq(out.grid_h, 2);
	ck_assert_int_eq(out.n_tokens, 2);
	img_patches_deinit(&out);
	img_rgb_deinit(&im);
}
END_TEST

/* Every split of step 5 gives the one-piece result, down to the bit: sizes with fewer window
 * rows than parts, rows that do not divide evenly, another patch/temporal size. */
START_TEST(test_img_split_patches_over_threads)
{
	preprocessor_config pc = default_pc();
	const struct { int w, h, patch, temporal; } cases[] = {
		{ 448, 448, 16, 2 }, { 64, 32, 16, 2 }, { 96, 224, 16, 2 }, { 1024, 96, 16, 2 },
		{ 32, 1024, 16, 2 }, { 336, 588, 14, 3 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pc.patch_size = cases[i].patch;
		pc.temporal_patch_size = cases[i].temporal;
		img_rgb im = random_image(cases[i].w, cases[i].h, 40 + i, 0);
		img_patches one, many;
		qerr e = { 0 };
		ck_assert_msg(img_preprocess_patches_split(&im, &pc, 1, &one, &e) == 0, "%s", e.msg);
		const size_t bytes = one.rows * one.cols * sizeof(float);
		for (int parts = 2; parts <= 9; parts++) {   /* 9: more than the 8 allowed */
			ck_assert_msg(img_preprocess_patches_split(&im, &pc, parts, &many, &e) == 0,
				      "%s", e.msg);
			ck_assert_uint_eq(many.rows, one.rows);
			ck_assert_uint_eq(many.cols, one.cols);
			ck_assert_mem_eq(many.hash, one.hash, 32);
			ck_assert_msg(memcmp(many.pixel_values, one.pixel_values, bytes) == 0,
				      "%dx%d in %d parts differs from one piece", im.w, im.h, parts);
			img_patches_deinit(&many);
		}
		/* the default (whatever this machine's CPUs make it) too */
		ck_assert_msg(img_preprocess_patches(&im, &pc, &many, &e) == 0, "%s", e.msg);
		ck_assert(memcmp(many.pixel_values, one.pixel_values, bytes) == 0);
		img_patches_deinit(&many);
		img_patches_deinit(&one);
		img_rgb_deinit(&im);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("img_split");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_img_split_equals_img_preprocess);
	tcase_add_test(tc, test_img_split_equals_img_preprocess_other_settings);
	tcase_add_test(tc, test_img_split_resize_errors_match);
	tcase_add_test(tc, test_img_split_patches_refuses_bad_sizes);
	tcase_add_test(tc, test_img_split_patches_over_threads);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
