/*
 * bench_img: how long Qwen3-VL image preprocessing takes on one core, decode excluded.
 *
 * Seeded random RGB images (1920x1080, 4032x3024 and 3024x4032, and 4000x3000 with a 1.5 Mpx
 * budget for a large downscale) go through img_preprocess with the Qwen3-VL defaults; the stages are also
 * timed alone: the resampling (SIMD, each pass that runs on its own, and plain C) and the
 * sha256 content hash of the resized pixels. The rest of img_preprocess is the normalisation
 * and patchify, and the allocation of pixel_values. Method: CLOCK_MONOTONIC, 2 warm-up runs,
 * median of N (default 20, argv[1]); one thread. MB/s counts the input image's bytes (w*h*3).
 * Timings include allocating (and page-faulting) each output, as a request would.
 *
 *   usage: bench_img [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "img_preprocess.h"
#include "img_resize.h"
#include "rng.h"
#include "sha256.h"

typedef struct bench_case {
	const char *name;
	int w, h;
	int64_t max_pixels;    /* 0: the config's */
} bench_case;

typedef enum stage {
	ST_PREPROCESS, ST_RESIZE, ST_WIDTH, ST_HEIGHT, ST_RESIZE_SCALAR, ST_HASH, ST_COUNT
} stage;
static const char *const stage_names[ST_COUNT] = {
	"img_preprocess", "resize (SIMD)", "  width pass", "  height pass", "resize (plain C)",
	"sha256 of resized"
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One run of a stage; returns its time in ms. mid: the width pass's output (in->h rows of rw
 * pixels), the height pass's input. */
static double run_stage(stage st, const img_rgb *in, const preprocessor_config *pc,
			int64_t max_pixels, int rw, int rh, const img_rgb *resized,
			const img_rgb *mid)
{
	double t0 = now_ms();
	switch (st) {
	case ST_PREPROCESS: {
		img_patches p;
		qerr e = { 0 };
		if (img_preprocess(in, pc, 0, max_pixels, &p, &e)) {
			fprintf(stderr, "bench_img: %s\n", e.msg);
			exit(1);
		}
		img_patches_deinit(&p);
		break;
	}
	case ST_RESIZE:
	case ST_WIDTH:
	case ST_HEIGHT:
	case ST_RESIZE_SCALAR: {
		img_rgb out;
		if (st == ST_RESIZE)
			img_resize_bicubic_aa(in, rw, rh, &out);
		else if (st == ST_WIDTH)
			img_resize_bicubic_aa(in, rw, in->h, &out);
		else if (st == ST_HEIGHT)
			img_resize_bicubic_aa(mid, rw, rh, &out);
		else
			img_resize_bicubic_aa_scalar(in, rw, rh, &out);
		free(out.px);
		break;
	}
	case ST_HASH: {
		uint8_t d[32];
		sha256(resized->px, (size_t)resized->w * resized->h * 3, d);
		break;
	}
	default:
		break;
	}
	return now_ms() - t0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20;
	if (n < 1)
		n = 1;
	static const bench_case cases[] = {
		{ "1080p", 1920, 1080, 0 },
		{ "12 Mpx photo", 4032, 3024, 0 },
		{ "portrait", 3024, 4032, 0 },
		{ "downscale", 4000, 3000, 1500000 },
	};
	preprocessor_config pc = {
		.min_pixels = 65536, .max_pixels = 16777216, .patch_size = 16,
		.temporal_patch_size = 2, .merge_size = 2, .image_mean = { 0.5f, 0.5f, 0.5f },
		.image_std = { 0.5f, 0.5f, 0.5f }, .rescale_factor = 1.0 / 255.0,
		.do_resize = true, .do_rescale = true, .do_normalize = true, .do_convert_rgb = true,
	};
	double *t = xmalloc((size_t)n * sizeof(*t));

	printf("bench_img: one thread, CLOCK_MONOTONIC, 2 warm-up runs, median of %d\n", n);
	printf("%-13s %-10s %-10s %-19s %10s %10s\n", "case", "input", "resized", "stage", "ms",
	       "MB/s");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const bench_case *bc = &cases[c];
		img_rgb in = { bc->w, bc->h, xmalloc((size_t)bc->w * bc->h * 3) };
		uint64_t key = rng_key(1, c);
		for (size_t i = 0; i < (size_t)bc->w * bc->h * 3; i += 8) {
			uint64_t r = rng_u64(key, i / 8);
			size_t k = (size_t)bc->w * bc->h * 3 - i;
			memcpy(in.px + i, &r, k < 8 ? k : 8);
		}
		int rw, rh;
		int64_t budget = bc->max_pixels ? bc->max_pixels : pc.max_pixels;
		if (img_smart_resize(bc->h, bc->w, 32, pc.min_pixels, budget, &rh, &rw, NULL))
			return 1;
		img_rgb resized, mid;
		img_resize_bicubic_aa(&in, rw, rh, &resized);
		img_resize_bicubic_aa(&in, rw, in.h, &mid);
		char isz[32], rsz[32];
		snprintf(isz, sizeof(isz), "%dx%d", bc->w, bc->h);
		snprintf(rsz, sizeof(rsz), "%dx%d", rw, rh);
		for (int st = 0; st < ST_COUNT; st++) {
			const int64_t mx = bc->max_pixels;
			if ((st == ST_WIDTH && rw == in.w) || (st == ST_HEIGHT && rh == in.h))
				continue;    /* a pass that does not run */
			for (int i = 0; i < 2; i++)
				run_stage((stage)st, &in, &pc, mx, rw, rh, &resized, &mid);
			for (int i = 0; i < n; i++)
				t[i] = run_stage((stage)st, &in, &pc, mx, rw, rh, &resized, &mid);
			qsort(t, (size_t)n, sizeof(*t), cmp_double);
			double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
			printf("%-13s %-10s %-10s %-19s %10.2f %10.0f\n", bc->name, isz, rsz,
			       stage_names[st], med, (double)bc->w * bc->h * 3 / 1e3 / med);
		}
		free(resized.px);
		free(mid.px);
		free(in.px);
	}
	free(t);
	return 0;
}
