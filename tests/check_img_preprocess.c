/*
 * Tests of Qwen3-VL image preprocessing (img_resize.c, img_preprocess.c): smart_resize against
 * the worked values of spec §4.2, the uint8 anti-aliased bicubic against a plain reference
 * written here (per-pixel windows, Pillow's form of the cubic, floor division instead of
 * shifts) on seeded random images, the SIMD path against the scalar one, patchify against a
 * per-element formula, the normalisation values, the content hash, a 1x1 image and the limits.
 * Bit-exactness against transformers itself is checked by tests/golden/make_image_golden.py.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "img_preprocess.h"
#include "img_resize.h"
#include "rng.h"
#include "testimg.h"
#include "testutil.h"

/* ---- helpers ---- */

/* ---- reference resampling ---- */

/* Pillow's bicubic filter, a = -0.5, in its own operation order. */
static double ref_filter(double x)
{
	const double a = -0.5;
	if (x < 0)
		x = -x;
	if (x < 1)
		return ((a + 2) * x - (a + 3)) * x * x + 1;
	if (x < 2)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0;
}

typedef struct ref_axis {
	int taps, prec;
	int *lo, *n;
	double *wd;     /* [n_out][taps] normalised double weights */
	int *wi;        /* [n_out][taps] quantised */
} ref_axis;

static void ref_axis_make(int n_in, int n_out, ref_axis *a)
{
	double scale = (double)n_in / n_out;
	double support = 2.0 * (scale > 1 ? scale : 1);
	double inv = scale > 1 ? 1 / scale : 1;
	a->taps = 2 * (int)ceil(support) + 1;
	a->lo = xcalloc((size_t)n_out, sizeof(int));
	a->n = xcalloc((size_t)n_out, sizeof(int));
	a->wd = xcalloc((size_t)n_out * a->taps, sizeof(double));
	a->wi = xcalloc((size_t)n_out * a->taps, sizeof(int));
	double wmax = 0;
	for (int i = 0; i < n_out; i++) {
		double center = scale * (i + 0.5);
		long lo = (long)(center - support + 0.5), hi = (long)(center + support + 0.5);
		if (lo < 0)
			lo = 0;
		if (hi > n_in)
			hi = n_in;
		long n = hi - lo;
		if (n > a->taps)
			n = a->taps;
		if (n < 0)
			n = 0;
		a->lo[i] = (int)lo;
		a->n[i] = (int)n;
		double *w = a->wd + (size_t)i * a->taps, sum = 0;
		for (int j = 0; j < n; j++)
			sum += (w[j] = ref_filter(((double)(lo + j) - center + 0.5) * inv));
		for (int j = 0; j < n && sum != 0; j++) {
			w[j] /= sum;
			wmax = fmax(wmax, w[j]);
		}
	}
	a->prec = 22;
	for (int q = 0; q < 22; q++)
		if ((int)(0.5 + ldexp(wmax, q + 1)) >= 32768) {
			a->prec = q;
			break;
		}
	for (size_t k = 0; k < (size_t)n_out * a->taps; k++) {
		double v = ldexp(a->wd[k], a->prec);
		a->wi[k] = (int)(v >= 0 ? v + 0.5 : v - 0.5);
		ck_assert_int_le(abs(a->wi[k]), 32767);
	}
}

static void ref_axis_free(ref_axis *a)
{
	free(a->lo);
	free(a->n);
	free(a->wd);
	free(a->wi);
}

static long floor_div(long a, long b)
{
	long q = a / b;
	return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Output value i along the axis of the reference pass, at the other coordinate o, channel c,
 * from src (w pixels wide). quant: the int16 scheme with floor division; else the double
 * weights, rounded half up (the sanity check against exact weights). */
static uint8_t ref_value(const uint8_t *src, int w, int along, const ref_axis *a, int i, int o,
			 int c, int quant)
{
	long acc = 1L << (a->prec - 1);
	double dacc = 0;
	for (int j = 0; j < a->n[i]; j++) {
		int k = a->lo[i] + j;
		size_t px = along ? (size_t)k * w + o : (size_t)o * w + k;
		uint8_t v = src[px * 3 + c];
		acc += (long)v * a->wi[(size_t)i * a->taps + j];
		dacc += v * a->wd[(size_t)i * a->taps + j];
	}
	long r = quant ? floor_div(acc, 1L << a->prec) : (long)floor(dacc + 0.5);
	return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}

/* One separable pass of the reference over a w x h image along the axis `along` (0: x, 1: y)
 * to n_out pixels. */
static uint8_t *ref_pass(const uint8_t *src, int w, int h, int along, int n_out, int quant)
{
	ref_axis a;
	ref_axis_make(along ? h : w, n_out, &a);
	int ow = along ? w : n_out, oh = along ? n_out : h;
	uint8_t *dst = xmalloc((size_t)ow * oh * 3);
	for (int y = 0; y < oh; y++)
		for (int x = 0; x < ow; x++) {
			int i = along ? y : x, o = along ? x : y;
			for (int c = 0; c < 3; c++)
				dst[((size_t)y * ow + x) * 3 + c] =
					ref_value(src, w, along, &a, i, o, c, quant);
		}
	ref_axis_free(&a);
	return dst;
}

/* The whole resize: width pass (if the width changes), then height pass (if it changes). */
static uint8_t *ref_resize(const img_rgb *in, int ow, int oh, int quant)
{
	uint8_t *cur = xmalloc((size_t)in->w * in->h * 3);
	memcpy(cur, in->px, (size_t)in->w * in->h * 3);
	int w = in->w;
	if (ow != in->w) {
		uint8_t *n = ref_pass(cur, w, in->h, 0, ow, quant);
		free(cur);
		cur = n;
		w = ow;
	}
	if (oh != in->h) {
		uint8_t *n = ref_pass(cur, w, in->h, 1, oh, quant);
		free(cur);
		cur = n;
	}
	return cur;
}

/* Count and print the first mismatches between a and the reference; returns their number. */
static size_t compare_px(const uint8_t *got, const uint8_t *ref, int w, int h, const char *what)
{
	size_t bad = 0;
	for (size_t i = 0; i < (size_t)w * h * 3; i++)
		if (got[i] != ref[i] && bad++ < 5)
			fprintf(stderr, "%s %dx%d: pixel (%zu,%zu) c%zu: got %u, reference %u\n",
				what, w, h, (i / 3) % (size_t)w, (i / 3) / (size_t)w, i % 3, got[i],
				ref[i]);
	return bad;
}

/* ---- smart_resize ---- */

START_TEST(test_img_preprocess_smart_resize_worked_values)
{
	/* spec §4.2: H x W -> H' x W', image-pad tokens */
	static const struct { int h, w, rh, rw, tokens; } t[] = {
		{ 1365, 2048, 1376, 2048, 2752 }, { 256, 256, 256, 256, 64 },
		{ 10, 10, 256, 256, 64 },         { 480, 640, 480, 640, 300 },
		{ 720, 1280, 704, 1280, 880 },    { 1080, 1920, 1088, 1920, 2040 },
		{ 400, 528, 384, 512, 192 },      { 300, 200, 320, 224, 70 },
		{ 4000, 6000, 3328, 4992, 16224 }, { 3024, 4032, 3008, 4032, 11844 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rh = -1, rw = -1;
		qerr e = { 0 };
		int rc = img_smart_resize(t[i].h, t[i].w, 32, 65536, 16777216, &rh, &rw, &e);
		ck_assert_msg(rc == 0, "%s", e.msg);
		ck_assert_msg(rh == t[i].rh && rw == t[i].rw, "%dx%d -> %dx%d, expected %dx%d",
			      t[i].h, t[i].w, rh, rw, t[i].rh, t[i].rw);
		ck_assert_int_eq((rh / 32) * (rw / 32), t[i].tokens);
	}
	/* 400x528: 12.5 and 16.5 round to even (12, 16); C's round() would give 416x544 */
	int rh, rw;
	ck_assert_int_eq(img_smart_resize(400, 528, 32, 65536, 16777216, &rh, &rw, NULL), 0);
	ck_assert_int_eq(rh, 384);
	ck_assert_int_eq(rw, 512);
	/* 13.5 rounds up to 14 (even) */
	ck_assert_int_eq(img_smart_resize(432, 432, 32, 65536, 16777216, &rh, &rw, NULL), 0);
	ck_assert_int_eq(rh, 448);
	/* a 1x1 image grows to the minimum */
	ck_assert_int_eq(img_smart_resize(1, 1, 32, 65536, 16777216, &rh, &rw, NULL), 0);
	ck_assert(rh == 256 && rw == 256);
	/* the max branch: floor(H/beta/32)*32 */
	ck_assert_int_eq(img_smart_resize(1000, 1000, 32, 4096, 100000, &rh, &rw, NULL), 0);
	ck_assert(rh == 288 && rw == 288);
}
END_TEST

START_TEST(test_img_preprocess_smart_resize_errors)
{
	int rh = 7, rw = 7;
	qerr e = { 0 };
	/* aspect ratio: 200 is allowed, above is not */
	ck_assert_int_eq(img_smart_resize(10, 2000, 32, 65536, 16777216, &rh, &rw, NULL), 0);
	ck_assert(rh == 32 && rw == 3648);
	rh = rw = 7;    /* failures leave the outputs alone */
	ck_assert_int_eq(img_smart_resize(10, 2001, 32, 65536, 16777216, &rh, &rw, &e),
			 -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "aspect ratio"));
	ck_assert_int_eq(img_smart_resize(3000, 14, 32, 65536, 16777216, &rh, &rw, &e),
			 -QERR_INVALID);
	ck_assert_int_eq(img_smart_resize(0, 10, 32, 65536, 16777216, &rh, &rw, &e), -QERR_INVALID);
	ck_assert_int_eq(img_smart_resize(10, 10, 0, 65536, 16777216, &rh, &rw, &e), -QERR_INVALID);
	ck_assert_int_eq(img_smart_resize((int64_t)1 << 25, 1 << 20, 32, 65536, 16777216, &rh, &rw,
					  &e), -QERR_LIMIT);
	/* pixel bounds beyond 2^53 */
	ck_assert_int_eq(img_smart_resize(1, 1, 32, ((int64_t)1 << 53) + 1, (int64_t)1 << 54, &rh,
					  &rw, &e), -QERR_LIMIT);
	/* max_pixels 0 (Python divides by zero) */
	ck_assert_int_eq(img_smart_resize(64, 64, 32, 0, 0, &rh, &rw, &e), -QERR_INVALID);
	ck_assert(rh == 7 && rw == 7);
}
END_TEST

/* ---- resampling ---- */

static void assert_resize_matches(int w, int h, int ow, int oh, uint64_t seed)
{
	img_rgb in = random_image(w, h, seed, 0);
	img_rgb a = { 0 }, b = { 0 };
	img_resize_bicubic_aa(&in, ow, oh, &a);
	img_resize_bicubic_aa_scalar(&in, ow, oh, &b);
	ck_assert(a.w == ow && a.h == oh && b.w == ow && b.h == oh);
	uint8_t *ref = ref_resize(&in, ow, oh, 1);
	char what[96];
	snprintf(what, sizeof(what), "%dx%d->", w, h);
	size_t bad = compare_px(a.px, ref, ow, oh, what);
	bad += compare_px(b.px, ref, ow, oh, what);
	ck_assert_msg(bad == 0, "%dx%d -> %dx%d: %zu mismatches", w, h, ow, oh, bad);
	free(ref);
	free(a.px);
	free(b.px);
	free(in.px);
}

START_TEST(test_img_preprocess_resize_matches_reference)
{
	static const int s[][4] = {
		/* w, h -> ow, oh: up, down, mixed, odd sizes, both passes */
		{ 37, 23, 64, 32 },   { 101, 77, 32, 64 },  { 333, 211, 96, 64 },
		{ 17, 19, 160, 96 },  { 255, 129, 256, 128 }, { 7, 5, 3, 2 },
		{ 1000, 31, 64, 33 }, { 45, 300, 11, 1000 }, { 1, 1, 5, 3 },
		{ 3, 1, 1, 4 },       { 640, 480, 1, 1 },   { 61, 67, 61, 128 },
		{ 2, 9, 1, 1 },       { 1280, 20, 320, 7 },
	};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		assert_resize_matches(s[i][0], s[i][1], s[i][2], s[i][3], 1000 + i);
	/* seeded random sizes */
	uint64_t key = rng_key(7, 7);
	for (int i = 0; i < 40; i++) {
		uint64_t r = rng_u64(key, (uint64_t)i);
		int w = 1 + (int)(r % 157), h = 1 + (int)((r >> 16) % 151);
		int ow = 1 + (int)((r >> 32) % 173), oh = 1 + (int)((r >> 48) % 139);
		assert_resize_matches(w, h, ow, oh, 2000 + (uint64_t)i);
	}
}
END_TEST

START_TEST(test_img_preprocess_resize_unchanged_axes)
{
	/* one axis unchanged: only the other pass runs */
	assert_resize_matches(96, 61, 96, 200, 1);
	assert_resize_matches(61, 96, 200, 96, 2);
	assert_resize_matches(1920, 13, 1920, 32, 3);
	/* both unchanged: a copy */
	img_rgb in = random_image(33, 21, 4, 0), out = { 0 };
	img_resize_bicubic_aa(&in, 33, 21, &out);
	ck_assert_mem_eq(in.px, out.px, (size_t)33 * 21 * 3);
	free(out.px);
	free(in.px);
}
END_TEST

START_TEST(test_img_preprocess_resize_close_to_float)
{
	/* A smooth image, int16 weights vs exact double weights (each pass rounded to uint8): the
	 * weight quantisation moves a pass by at most one step, a second pass can carry it to 2. */
	static const int s[][4] = { { 640, 480, 224, 160 }, { 100, 80, 416, 352 },
				    { 1999, 1001, 1408, 704 } };
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		img_rgb in = random_image(s[i][0], s[i][1], 50 + i, 1), out = { 0 };
		img_resize_bicubic_aa(&in, s[i][2], s[i][3], &out);
		uint8_t *ref = ref_resize(&in, s[i][2], s[i][3], 0);
		size_t n = (size_t)s[i][2] * s[i][3] * 3, diff = 0;
		int maxd = 0;
		for (size_t k = 0; k < n; k++) {
			int d = abs((int)out.px[k] - ref[k]);
			maxd = d > maxd ? d : maxd;
			diff += d != 0;
		}
		ck_assert_msg(maxd <= 2 && diff * 100 < n, "%dx%d: max diff %d, %zu of %zu differ",
			      s[i][0], s[i][1], maxd, diff, n);
		free(ref);
		free(out.px);
		free(in.px);
	}
}
END_TEST

/* ---- preprocessing ---- */

/* pixel_values[r][col] against the spec's formula, element by element, from the resized image. */
static void check_patchify(const img_patches *p, const img_rgb *rs, const preprocessor_config *pc)
{
	const int P = pc->patch_size, M = pc->merge_size, T = pc->temporal_patch_size;
	const int gh = rs->h / P, gw = rs->w / P;
	const float inv = (float)(1.0 / pc->rescale_factor);
	ck_assert_int_eq(p->grid_t, 1);
	ck_assert_int_eq(p->grid_h, gh);
	ck_assert_int_eq(p->grid_w, gw);
	ck_assert_uint_eq(p->rows, (size_t)gh * gw);
	ck_assert_uint_eq(p->cols, (size_t)3 * T * P * P);
	ck_assert_int_eq(p->n_tokens, (int64_t)gh * gw / (M * M));
	for (size_t r = 0; r < p->rows; r++) {
		int iw = (int)(r % M), ih = (int)(r / M % M);
		int bw = (int)(r / ((size_t)M * M) % (size_t)(gw / M));
		int bh = (int)(r / ((size_t)M * M) / (size_t)(gw / M));
		for (size_t col = 0; col < p->cols; col++) {
			int x = (int)(col % P), y = (int)(col / P % P), t = (int)(col / P / P % T);
			int c = (int)(col / ((size_t)P * P * T));
			(void)t;
			int py = (bh * M + ih) * P + y, px = (bw * M + iw) * P + x;
			uint8_t v = rs->px[((size_t)py * rs->w + px) * 3 + c];
			float m = pc->image_mean[c] * inv, s = pc->image_std[c] * inv;
			float want = ((float)v - m) / s;
			float got = p->pixel_values[r * p->cols + col];
			if (memcmp(&got, &want, 4))
				ck_abort_msg("row %zu col %zu: got %.9g, expected %.9g", r, col,
					     (double)got, (double)want);
		}
	}
}

START_TEST(test_img_preprocess_patchify_index_math)
{
	/* the default config end to end: 300x200 (H x W) -> 320x224, grid (1,20,14), 70 tokens */
	preprocessor_config pc = default_pc();
	img_rgb in = random_image(200, 300, 11, 0), rs = { 0 };
	img_patches p;
	qerr e = { 0 };
	ck_assert_msg(img_preprocess(&in, &pc, 0, 0, &p, &e) == 0, "%s", e.msg);
	ck_assert(p.width == 200 && p.height == 300);
	ck_assert(p.resized_width == 224 && p.resized_height == 320);
	ck_assert(p.grid_h == 20 && p.grid_w == 14 && p.n_tokens == 70);
	ck_assert(p.rows == 280 && p.cols == 1536);
	img_resize_bicubic_aa(&in, 224, 320, &rs);
	check_patchify(&p, &rs, &pc);
	img_patches_deinit(&p);
	free(rs.px);
	free(in.px);

	/* other patch/merge/temporal sizes and per-channel mean/std, no resize */
	preprocessor_config g = default_pc();
	g.patch_size = 4;
	g.merge_size = 3;
	g.temporal_patch_size = 3;
	g.do_resize = false;
	g.image_mean[0] = 0.48145466f, g.image_mean[1] = 0.4578275f, g.image_mean[2] = 0.40821073f;
	g.image_std[0] = 0.26862954f, g.image_std[1] = 0.26130258f, g.image_std[2] = 0.27577711f;
	img_rgb in2 = random_image(36, 24, 12, 0);
	ck_assert_msg(img_preprocess(&in2, &g, 0, 0, &p, &e) == 0, "%s", e.msg);
	ck_assert(p.grid_h == 6 && p.grid_w == 9 && p.n_tokens == 6 && p.cols == 144);
	check_patchify(&p, &in2, &g);
	/* every temporal slot equal */
	for (size_t r = 0; r < p.rows; r++)
		for (int c = 0; c < 3; c++)
			for (int t = 1; t < 3; t++)
				ck_assert_mem_eq(p.pixel_values + r * 144 + (c * 3 + t) * 16,
						 p.pixel_values + r * 144 + (c * 3) * 16,
						 16 * sizeof(float));
	img_patches_deinit(&p);
	free(in2.px);
}
END_TEST

START_TEST(test_img_preprocess_normalisation_values)
{
	/* a 32x32 image at the right size with do_resize off: pixel_values hold exactly the
	 * normalised bytes. */
	preprocessor_config pc = default_pc();
	pc.do_resize = false;
	img_rgb in = { 32, 32, xcalloc(32 * 32 * 3, 1) };
	in.px[0] = 0;       /* patch 0, c 0, y 0, x 0 -> col 0 */
	in.px[1] = 255;     /* c 1 -> col 512 */
	in.px[2] = 181;     /* c 2 -> col 1024 */
	in.px[3] = 128;     /* x 1, c 0 -> col 1 */
	in.px[4] = 127;     /* x 1, c 1 -> col 513 */
	img_patches p;
	qerr e = { 0 };
	ck_assert_msg(img_preprocess(&in, &pc, 0, 0, &p, &e) == 0, "%s", e.msg);
	const float *v = p.pixel_values;
	const float want181 = 0.41960785f;
	ck_assert(v[0] == -1.0f);
	ck_assert(v[512] == 1.0f);
	ck_assert_mem_eq(&v[1024], &want181, 4);
	ck_assert(v[1024] == 0x1.adadaep-2f);  /* the same value written exactly */
	ck_assert(v[1024 + 256] == v[1024]);  /* t = 1 */
	ck_assert(v[1] == 0.5f / 127.5f);
	ck_assert(v[513] == -0.5f / 127.5f);
	/* all 256 values are the true fp32 division */
	for (int x = 0; x < 256; x++) {
		in.px[0] = (uint8_t)x;
		img_patches q;
		ck_assert_int_eq(img_preprocess(&in, &pc, 0, 0, &q, NULL), 0);
		volatile float num = (float)x - 127.5f;
		float want = num / 127.5f;
		ck_assert_mem_eq(&q.pixel_values[0], &want, 4);
		img_patches_deinit(&q);
	}
	img_patches_deinit(&p);

	/* rescale only and neither */
	pc.do_normalize = false;
	in.px[0] = 181;
	ck_assert_int_eq(img_preprocess(&in, &pc, 0, 0, &p, NULL), 0);
	ck_assert(p.pixel_values[0] == 181.0f * (float)(1.0 / 255.0));
	img_patches_deinit(&p);
	pc.do_rescale = false;
	ck_assert_int_eq(img_preprocess(&in, &pc, 0, 0, &p, NULL), 0);
	ck_assert(p.pixel_values[0] == 181.0f);
	img_patches_deinit(&p);
	free(in.px);
}
END_TEST

START_TEST(test_img_preprocess_hash)
{
	preprocessor_config pc = default_pc();
	img_rgb in = random_image(300, 200, 21, 0);
	img_patches a, b;
	ck_assert_int_eq(img_preprocess(&in, &pc, 0, 0, &a, NULL), 0);
	ck_assert_int_eq(img_preprocess(&in, &pc, 0, 0, &b, NULL), 0);
	ck_assert_mem_eq(a.hash, b.hash, 32);                      /* stable */
	ck_assert_mem_eq(a.pixel_values, b.pixel_values, a.rows * a.cols * sizeof(float));
	img_patches_deinit(&b);

	/* bounds that do not change the size do not change the hash */
	ck_assert_int_eq(img_preprocess(&in, &pc, 65536, 1 << 20, &b, NULL), 0);
	ck_assert_int_eq(b.resized_width, a.resized_width);
	ck_assert_mem_eq(a.hash, b.hash, 32);
	img_patches_deinit(&b);

	/* bounds that change the size do */
	ck_assert_int_eq(img_preprocess(&in, &pc, 0, 32768, &b, NULL), 0);
	ck_assert_int_ne(b.resized_width * b.resized_height, a.resized_width * a.resized_height);
	ck_assert(memcmp(a.hash, b.hash, 32) != 0);
	img_patches_deinit(&b);

	/* one pixel */
	in.px[3 * 150 + 1] ^= 0x40;
	ck_assert_int_eq(img_preprocess(&in, &pc, 0, 0, &b, NULL), 0);
	ck_assert(memcmp(a.hash, b.hash, 32) != 0);
	img_patches_deinit(&b);
	in.px[3 * 150 + 1] ^= 0x40;

	/* the normalisation */
	pc.image_mean[2] = 0.25f;
	ck_assert_int_eq(img_preprocess(&in, &pc, 0, 0, &b, NULL), 0);
	ck_assert(memcmp(a.hash, b.hash, 32) != 0);
	img_patches_deinit(&b);
	img_patches_deinit(&a);
	free(in.px);
}
END_TEST

START_TEST(test_img_preprocess_one_pixel)
{
	preprocessor_config pc = default_pc();
	img_rgb in = { 1, 1, xmalloc(3) };
	in.px[0] = 181, in.px[1] = 0, in.px[2] = 255;
	img_patches p;
	qerr e = { 0 };
	ck_assert_msg(img_preprocess(&in, &pc, 0, 0, &p, &e) == 0, "%s", e.msg);
	ck_assert(p.resized_width == 256 && p.resized_height == 256);
	ck_assert(p.grid_t == 1 && p.grid_h == 16 && p.grid_w == 16 && p.n_tokens == 64);
	ck_assert(p.rows == 256 && p.cols == 1536);
	/* a single pixel spreads unchanged (one tap of weight 1) */
	for (size_t r = 0; r < p.rows; r++)
		for (size_t c = 0; c < 1536; c++) {
			float want = c < 512 ? 0.41960785f : c < 1024 ? -1.0f : 1.0f;
			ck_assert(p.pixel_values[r * 1536 + c] == want);
		}
	img_patches_deinit(&p);
	img_patches_deinit(&p);    /* twice is fine */
	free(in.px);
}
END_TEST

START_TEST(test_img_preprocess_limits_and_errors)
{
	preprocessor_config pc = default_pc();
	img_rgb in = random_image(1000, 1000, 31, 0);
	img_patches p;
	qerr e = { 0 };
	/* 4128x4128 would need 102 Mi floats: refused before anything is allocated */
	ck_assert_int_eq(img_preprocess(&in, &pc, (int64_t)4097 * 4097, (int64_t)1 << 30, &p, &e),
			 -QERR_LIMIT);
	ck_assert_ptr_nonnull(strstr(e.msg, "IMG_PP_MAX_FLOATS"));
	ck_assert_ptr_null(p.pixel_values);
	/* a minimum far beyond any allocation */
	ck_assert_int_eq(img_preprocess(&in, &pc, (int64_t)1 << 40, (int64_t)1 << 40, &p, &e),
			 -QERR_LIMIT);
	/* negative bounds */
	ck_assert_int_eq(img_preprocess(&in, &pc, -1, 0, &p, &e), -QERR_INVALID);
	free(in.px);

	/* aspect ratio */
	img_rgb thin = random_image(402, 2, 32, 0);
	ck_assert_int_eq(img_preprocess(&thin, &pc, 0, 0, &p, &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "aspect ratio"));
	free(thin.px);

	/* empty image, bad settings */
	img_rgb empty = { 0, 5, NULL };
	ck_assert_int_eq(img_preprocess(&empty, &pc, 0, 0, &p, &e), -QERR_INVALID);
	img_rgb small = random_image(40, 32, 33, 0);
	preprocessor_config bad = pc;
	bad.image_std[1] = 0.0f;
	ck_assert_int_eq(img_preprocess(&small, &bad, 0, 0, &p, &e), -QERR_INVALID);
	bad = pc;
	bad.merge_size = 0;
	ck_assert_int_eq(img_preprocess(&small, &bad, 0, 0, &p, &e), -QERR_INVALID);
	bad = pc;
	bad.do_resize = false;    /* 40 is not a multiple of 32 */
	ck_assert_int_eq(img_preprocess(&small, &bad, 0, 0, &p, &e), -QERR_INVALID);
	ck_assert_ptr_null(p.pixel_values);
	img_patches_deinit(&p);
	free(small.px);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("img_preprocess");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_img_preprocess_smart_resize_worked_values);
	tcase_add_test(tc, test_img_preprocess_smart_resize_errors);
	tcase_add_test(tc, test_img_preprocess_resize_matches_reference);
	tcase_add_test(tc, test_img_preprocess_resize_unchanged_axes);
	tcase_add_test(tc, test_img_preprocess_resize_close_to_float);
	tcase_add_test(tc, test_img_preprocess_patchify_index_math);
	tcase_add_test(tc, test_img_preprocess_normalisation_values);
	tcase_add_test(tc, test_img_preprocess_hash);
	tcase_add_test(tc, test_img_preprocess_one_pixel);
	tcase_add_test(tc, test_img_preprocess_limits_and_errors);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
