/*
 * img_preprocess: decoded RGB -> pixel_values / grid_thw / token count / content hash, as
 * transformers' Qwen2VLImageProcessorFast does it on the CPU (spec §4.2–4.7, §14.1–4).
 *
 * Steps:
 *   1. size:      smart_resize(h, w, factor = patch*merge, min_pixels, max_pixels)
 *                 (img_resize.c), the bounds from the request or the config;
 *   2. resample:  torchvision's uint8 anti-aliased bicubic to that size (img_resize.c);
 *   3. normalise: every uint8 value x of channel c becomes the fp32 value the processor gives
 *                 it. Only 256 values per channel exist, so a 3 x 256 table is computed once
 *                 per call with exactly the processor's fp32 operations:
 *                   rescale and normalize (fused, torchvision):
 *                     mean' = fl32(mean_c * fl32(1/rescale)), std' = fl32(std_c * fl32(1/rescale))
 *                     v = fl32(fl32(float(x) - mean') / std')   (a true fp32 division)
 *                     — with mean = std = 0.5 and 1/255: (float(x) - 127.5f) / 127.5f
 *                   normalize only:  (float(x) - mean_c) / std_c
 *                   rescale only:    float(x) * fl32(rescale)
 *                   neither:         float(x)
 *   4. temporal:  a still image is one frame, padded to temporal_patch_size frames by
 *                 repeating it: every temporal slot holds the same values;
 *   5. patchify:  rows in merge-window order, columns in Conv3d-weight order (below).
 *   6. hash:      sha256 over a tag, the resized size, patch/merge/temporal, the normalisation
 *                 settings and the resized pixels — everything pixel_values is a function of,
 *                 so equal hashes mean equal pixel_values (a key for caching vision outputs).
 *
 * pixel_values layout, P = patch (16), M = merge (2), T = temporal (2), C = 3, resized H' x W',
 * gh = H'/P, gw = W'/P (both multiples of M):
 *
 *   patches of the resized image, numbered by their row r in pixel_values (gw = 6):
 *
 *            patch col:  0    1  |  2    3  |  4    5
 *     patch row 0:     [ 0    1  |  4    5  |  8    9 ]     one M x M merge window per box;
 *     patch row 1:     [ 2    3  |  6    7  | 10   11 ]     windows in raster order, patches
 *                      ----------+----------+----------     inside a window in raster order
 *     patch row 2:     [12   13  | 16   17  | 20   21 ]
 *     patch row 3:     [14   15  | 18   19  | 22   23 ]
 *
 *     r = ((bh * (gw/M) + bw) * M + ih) * M + iw      patch (bh*M + ih, bw*M + iw)
 *
 *   one row, cols = C*T*P*P = 1536 floats:
 *
 *     | c=0, t=0: 16x16 | c=0, t=1: 16x16 | c=1, t=0 | c=1, t=1 | c=2, t=0 | c=2, t=1 |
 *     col = ((c*T + t)*P + y)*P + x   = c*512 + t*256 + y*16 + x
 *     value = norm_c(resized[(bh*M + ih)*P + y][(bw*M + iw)*P + x][c])   (same for every t)
 *
 * rows = grid_t * gh * gw with grid_t = 1; image tokens = rows / M^2 (one per merge window).
 *
 * Limits: the size of pixel_values is known from smart_resize alone, so it and the resampling
 * buffers are checked against IMG_PP_MAX_FLOATS before anything is allocated.
 *
 * The split: img_preprocess_resize does steps 1-2 (a responder runs it and sends the uint8
 * pixels over the wire, with img_preprocess_hash of them), img_preprocess_patches steps 3-6
 * (the daemon runs it); img_preprocess is the two in a row, so the halves give its results bit
 * for bit.
 *
 * Threads: no state; any thread may call in. img_preprocess_patches hashes a large image on a
 * short-lived thread of its own while it patchifies (joined before it returns).
 */
#include "img_preprocess.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "img_resize.h"
#include "parallel.h"
#include "sha256.h"

/* The hash's first bytes: bump the version when what is hashed, or how pixel_values is computed
 * from it, changes. */
static const char HASH_TAG[] = "qvl.img_preprocess.v1";

static bool finite_positive(double v)
{
	return isfinite(v) && v > 0.0;
}

static int check_config(const preprocessor_config *pc, qerr *e)
{
	if (pc->patch_size < 1 || pc->merge_size < 1 || pc->temporal_patch_size < 1 ||
	    pc->patch_size > 4096 || pc->merge_size > 64 || pc->temporal_patch_size > 64)
		return qerr_set(e, QERR_INVALID,
				"preprocessor: patch_size %d, merge_size %d, "
				"temporal_patch_size %d out of range", pc->patch_size,
				pc->merge_size, pc->temporal_patch_size);
	if (pc->do_rescale && !finite_positive(pc->rescale_factor))
		return qerr_set(e, QERR_INVALID, "preprocessor: rescale_factor %g is not positive",
				pc->rescale_factor);
	for (int c = 0; c < 3 && pc->do_normalize; c++)
		if (!isfinite(pc->image_mean[c]) || !isfinite(pc->image_std[c]) ||
		    pc->image_std[c] == 0.0f)
			return qerr_set(e, QERR_INVALID,
					"preprocessor: image_mean/image_std[%d] = %g/%g unusable",
					c, (double)pc->image_mean[c], (double)pc->image_std[c]);
	return 0;
}

/* lut[c][x]: the fp32 value pixel_values holds for uint8 x in channel c (step 3 above). Every
 * operation is a single fp32 operation, as torch does it on float32 tensors. */
static void norm_table(const preprocessor_config *pc, float lut[3][256])
{
	for (int c = 0; c < 3; c++) {
		float mean = 0.0f, std = 1.0f;
		if (pc->do_normalize) {
			mean = pc->image_mean[c];
			std = pc->image_std[c];
			if (pc->do_rescale) {
				/* transformers' _fuse_mean_std_and_rescale_factor: a float32 tensor
				 * times the Python scalar 1/rescale, which torch casts to float. */
				const float inv = (float)(1.0 / pc->rescale_factor);
				mean = mean * inv;
				std = std * inv;
			}
		}
		for (int x = 0; x < 256; x++) {
			float v = (float)x;
			if (pc->do_normalize)
				v = (v - mean) / std;
			else if (pc->do_rescale)
				v = v * (float)pc->rescale_factor;
			lut[c][x] = v;
		}
	}
}

static void put_u32(sha256_ctx *h, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	sha256_update(h, b, 4);
}

static void put_f32(sha256_ctx *h, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	put_u32(h, u);
}

static void put_f64(sha256_ctx *h, double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	put_u32(h, (uint32_t)u);
	put_u32(h, (uint32_t)(u >> 32));
}

/* Step 6: every number little-endian, so the hash is the same on every machine. Everything
 * before the pixels: */
void img_preprocess_hash_begin(sha256_ctx *h, int w, int hgt, const preprocessor_config *pc)
{
	sha256_init(h);
	sha256_update(h, HASH_TAG, sizeof(HASH_TAG));
	put_u32(h, (uint32_t)w);
	put_u32(h, (uint32_t)hgt);
	put_u32(h, (uint32_t)pc->patch_size);
	put_u32(h, (uint32_t)pc->merge_size);
	put_u32(h, (uint32_t)pc->temporal_patch_size);
	put_u32(h, (uint32_t)(pc->do_rescale ? 1 : 0) | (uint32_t)(pc->do_normalize ? 2 : 0));
	for (int c = 0; c < 3; c++)
		put_f32(h, pc->image_mean[c]);
	for (int c = 0; c < 3; c++)
		put_f32(h, pc->image_std[c]);
	put_f64(h, pc->rescale_factor);
}

/* Then the pixels, row after row. */
static void content_hash(const preprocessor_config *pc, const img_rgb *rs, uint8_t out[32])
{
	sha256_ctx h;
	img_preprocess_hash_begin(&h, rs->w, rs->h, pc);
	sha256_update(&h, rs->px, (size_t)rs->w * (size_t)rs->h * 3);
	sha256_final(&h, out);
}

/* One row of pixel_values: patch (py0, px0) (its top-left pixel) of the resized image. Channel
 * planes of slot t = 0 first, read pixel by pixel through the table; then step 4: the other
 * temporal slots repeat slot 0. */
static void patch_row(const img_rgb *rs, size_t py0, size_t px0, int P, int T,
		      const float lut[3][256], float *row)
{
	const size_t plane = (size_t)P * P, stride = (size_t)rs->w * 3;
	float *r = row, *g = row + T * plane, *b = row + 2 * T * plane;
	for (int y = 0; y < P; y++, r += P, g += P, b += P) {
		const uint8_t *s = rs->px + (py0 + y) * stride + px0 * 3;
		for (int x = 0; x < P; x++) {
			r[x] = lut[0][s[3 * x]];
			g[x] = lut[1][s[3 * x + 1]];
			b[x] = lut[2][s[3 * x + 2]];
		}
	}
	for (int c = 0; c < 3; c++)
		for (int t = 1; t < T; t++)
			memcpy(row + ((size_t)c * T + t) * plane, row + (size_t)c * T * plane,
			       plane * sizeof(float));
}

/* Step 6 beside step 5: content_hash of an image at least this large runs on a thread of its
 * own while the caller's thread patchifies. The two take about the same time (SHA-NI hashes
 * ~1.3 GB/s; patchify writes 8·T bytes per input byte), so a 448x448 image's ~0.9 ms becomes
 * ~0.5 ms where a core is free; starting a thread (~30 us) is not worth it for small images. */
#define HASH_THREAD_MIN_BYTES ((size_t)128 << 10)

typedef struct hash_job {
	const preprocessor_config *pc; /* borrowed */
	const img_rgb *rs;             /* borrowed */
	uint8_t hash[32];
} hash_job;

static void *hash_main(void *arg)
{
	hash_job *j = arg;
	content_hash(j->pc, j->rs, j->hash);
	return NULL;
}

/* Start j on a thread; false (nothing started) when the image is small or no thread can be
 * had — the caller then hashes inline. */
static bool hash_start(hash_job *j, pthread_t *th)
{
	if ((size_t)j->rs->w * (size_t)j->rs->h * 3 < HASH_THREAD_MIN_BYTES)
		return false;
	pthread_attr_t at;
	if (pthread_attr_init(&at))
		return false;
	pthread_attr_setstacksize(&at, (size_t)256 << 10);   /* the hash needs < 1 KB */
	bool ok = pthread_create(th, &at, hash_main, j) == 0;
	pthread_attr_destroy(&at);
	return ok;
}

/* Step 5 for the merge-window rows [bh0, bh1): rows in merge-window order, windows in raster
 * order (diagram above). */
typedef struct patch_job {
	const img_rgb *rs;             /* borrowed */
	const preprocessor_config *pc; /* borrowed */
	const float (*lut)[256];       /* borrowed: [3][256] */
	float *pv;                     /* the whole pixel_values */
	int bh0, bh1;
} patch_job;

static void *patchify_part(void *arg)
{
	const patch_job *j = arg;
	const int P = j->pc->patch_size, M = j->pc->merge_size, T = j->pc->temporal_patch_size;
	const size_t cols = 3 * (size_t)T * P * P;
	const int bw_n = j->rs->w / P / M;
	float *row = j->pv + (size_t)j->bh0 * bw_n * M * M * cols;
	for (int bh = j->bh0; bh < j->bh1; bh++)
		for (int bw = 0; bw < bw_n; bw++)
			for (int ih = 0; ih < M; ih++)
				for (int iw = 0; iw < M; iw++, row += cols)
					patch_row(j->rs, (size_t)(bh * M + ih) * P,
						  (size_t)(bw * M + iw) * P, P, T, j->lut, row);
	return NULL;
}

/* Step 5 on up to PATCH_PARTS threads (the caller's and short-lived ones), each writing whole
 * merge-window rows, so the bits do not depend on the split. A 448x448 image writes 4.8 MB:
 * 1.2-1.8 ms on one core of the H100 machine's host (qvld's SUBMIT log, session 17), on the
 * image request's path before the engine sees it; on 4 threads 0.7-1.4 ms (session 18).
 * Only where the machine has at least PATCH_MIN_CPUS online (the hash runs on a thread of its
 * own beside: on 2 cores more threads measured slower, 0.56-0.70 against 0.49-0.51 ms), and
 * parts of at least PATCH_PART_MIN_BYTES; QVL_PATCHIFY_THREADS=n sets the count (A/B). */
#define PATCH_PARTS 8
#define PATCH_MIN_CPUS 8
#define PATCH_THREADS 4
#define PATCH_PART_MIN_BYTES ((size_t)1 << 20)

static pthread_once_t patch_once = PTHREAD_ONCE_INIT;
static int patch_want;            /* written once, under patch_once */

static void patch_want_init(void)
{
	const char *e = getenv("QVL_PATCHIFY_THREADS");
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int want = e && *e ? atoi(e) : cpus >= PATCH_MIN_CPUS ? PATCH_THREADS : 1;
	patch_want = want < 1 ? 1 : want > PATCH_PARTS ? PATCH_PARTS : want;
}

/* The parts of an item of bytes floats' bytes and bh_n merge-window rows: parts > 0 asks for
 * exactly that many (img_preprocess_patches_split), else the machine's default. */
static int patch_parts(size_t bytes, int bh_n, int parts)
{
	if (parts <= 0) {
		pthread_once(&patch_once, patch_want_init);
		parts = (int)(bytes / PATCH_PART_MIN_BYTES);
		if (parts > patch_want)
			parts = patch_want;
	}
	if (parts > PATCH_PARTS)
		parts = PATCH_PARTS;
	if (parts > bh_n)
		parts = bh_n;
	return parts < 1 ? 1 : parts;
}

static void patchify(const img_rgb *rs, const preprocessor_config *pc, const float lut[3][256],
		     float *pv, size_t nfloat, int want_parts)
{
	const int bh_n = rs->h / pc->patch_size / pc->merge_size;
	const int parts = patch_parts(nfloat * sizeof(float), bh_n, want_parts);
	patch_job job[PATCH_PARTS];
	for (int k = 0; k < parts; k++)
		job[k] = (patch_job){ .rs = rs, .pc = pc, .lut = lut, .pv = pv,
				      .bh0 = (int)((int64_t)bh_n * k / parts),
				      .bh1 = (int)((int64_t)bh_n * (k + 1) / parts) };
	/* a part needs < 1 KB of stack */
	parallel_run(patchify_part, job, sizeof(job[0]), parts, (size_t)256 << 10);
}

/* Step 1's bounds: the request's, else the config's. */
static void pixel_bounds(const preprocessor_config *pc, int64_t *min_pixels, int64_t *max_pixels)
{
	if (*min_pixels == 0)
		*min_pixels = pc->min_pixels;
	if (*max_pixels == 0)
		*max_pixels = pc->max_pixels;
}

bool img_preprocess_keeps_size(int w, int h, const preprocessor_config *pc, int64_t min_pixels,
			       int64_t max_pixels)
{
	if (w < 1 || h < 1 || min_pixels < 0 || max_pixels < 0 || check_config(pc, NULL))
		return false;
	pixel_bounds(pc, &min_pixels, &max_pixels);
	const int factor = pc->patch_size * pc->merge_size;
	if (!pc->do_resize)
		return h % factor == 0 && w % factor == 0;
	int rh, rw;
	return !img_smart_resize(h, w, factor, min_pixels, max_pixels, &rh, &rw, NULL) &&
	       rh == h && rw == w;
}

/* Steps 1-2: the checks img_preprocess makes before it allocates, then the resampling. On
 * success *resized holds the resized image: fresh pixels, or (may_borrow, and the size did not
 * change) in's own pixels — the caller frees resized->px only when it differs from in->px. On
 * failure *resized is zeroed. */
static int resize_step(const img_rgb *in, const preprocessor_config *pc, int64_t min_pixels,
		       int64_t max_pixels, bool may_borrow, img_rgb *resized, qerr *e)
{
	memset(resized, 0, sizeof(*resized));
	if (!in->px || in->w < 1 || in->h < 1)
		return qerr_set(e, QERR_INVALID, "image of %dx%d pixels is empty", in->w, in->h);
	int rc = check_config(pc, e);
	if (rc)
		return rc;
	if (min_pixels < 0 || max_pixels < 0)
		return qerr_set(e, QERR_INVALID, "min_pixels %lld / max_pixels %lld is negative",
				(long long)min_pixels, (long long)max_pixels);
	pixel_bounds(pc, &min_pixels, &max_pixels);

	const int P = pc->patch_size, M = pc->merge_size, T = pc->temporal_patch_size;
	const int factor = P * M;
	int rh = in->h, rw = in->w;
	if (pc->do_resize) {
		if ((rc = img_smart_resize(in->h, in->w, factor, min_pixels, max_pixels, &rh, &rw,
					   e)))
			return rc;
	} else if (rh % factor || rw % factor) {
		return qerr_set(e, QERR_INVALID,
				"image of %dx%d pixels: without resizing both sides must be "
				"multiples of %d", in->w, in->h, factor);
	}

	/* Sizes first, allocation after. pixel_values holds 3*T floats per resized pixel, so its
	 * cap bounds the resized image too; the width pass's intermediate (in->h rows of the new
	 * width) is checked on its own. */
	const size_t gh = (size_t)rh / P, gw = (size_t)rw / P;
	size_t rows, cols, nfloat, mid_bytes;
	if (!size_mul(gh, gw, &rows) || !size_mul((size_t)3 * T, (size_t)P * P, &cols) ||
	    !size_mul(rows, cols, &nfloat) || nfloat > IMG_PP_MAX_FLOATS)
		return qerr_set(e, QERR_LIMIT,
				"image of %dx%d pixels resizes to %dx%d, whose pixel_values exceed "
				"IMG_PP_MAX_FLOATS (%zu floats); lower max_pixels", in->w, in->h,
				rw, rh, IMG_PP_MAX_FLOATS);
	if (!size_mul((size_t)rw * 3, (size_t)in->h, &mid_bytes) ||
	    mid_bytes > 4 * IMG_PP_MAX_FLOATS)
		return qerr_set(e, QERR_LIMIT,
				"image of %dx%d pixels: resampling to %dx%d needs more than %zu "
				"bytes", in->w, in->h, rw, rh, 4 * IMG_PP_MAX_FLOATS);

	if (rw != in->w || rh != in->h) {
		img_resize_bicubic_aa(in, rw, rh, resized);
	} else if (may_borrow) {
		/* Nothing to resample: borrow the input's pixels. */
		*resized = *in;
	} else {
		const size_t n = (size_t)rw * (size_t)rh * 3;   /* ≤ nfloat: checked above */
		resized->w = rw;
		resized->h = rh;
		resized->px = xmalloc_huge(n);
		memcpy(resized->px, in->px, n);
	}
	return 0;
}

int img_preprocess_resize(const img_rgb *in, const preprocessor_config *pc, int64_t min_pixels,
			  int64_t max_pixels, img_rgb *resized, qerr *e)
{
	return resize_step(in, pc, min_pixels, max_pixels, false, resized, e);
}

int img_preprocess_patches(const img_rgb *rs, const preprocessor_config *pc, img_patches *out,
			   qerr *e)
{
	return img_preprocess_patches_split(rs, pc, 0, out, e);
}

int img_preprocess_patches_split(const img_rgb *rs, const preprocessor_config *pc, int parts,
				 img_patches *out, qerr *e)
{
	memset(out, 0, sizeof(*out));
	if (!rs->px || rs->w < 1 || rs->h < 1)
		return qerr_set(e, QERR_INVALID, "image of %dx%d pixels is empty", rs->w, rs->h);
	int rc = check_config(pc, e);
	if (rc)
		return rc;
	const int P = pc->patch_size, M = pc->merge_size, T = pc->temporal_patch_size;
	const int factor = P * M;
	if (rs->h % factor || rs->w % factor)
		return qerr_set(e, QERR_INVALID,
				"resized image of %dx%d pixels: both sides must be multiples of %d",
				rs->w, rs->h, factor);
	const size_t gh = (size_t)rs->h / P, gw = (size_t)rs->w / P;
	size_t rows, cols, nfloat;
	if (!size_mul(gh, gw, &rows) || !size_mul((size_t)3 * T, (size_t)P * P, &cols) ||
	    !size_mul(rows, cols, &nfloat) || nfloat > IMG_PP_MAX_FLOATS)
		return qerr_set(e, QERR_LIMIT,
				"resized image of %dx%d pixels: its pixel_values exceed "
				"IMG_PP_MAX_FLOATS (%zu floats)", rs->w, rs->h, IMG_PP_MAX_FLOATS);

	hash_job hj = { .pc = pc, .rs = rs };
	pthread_t th;
	const bool threaded = hash_start(&hj, &th);
	float lut[3][256];
	norm_table(pc, lut);
	float *pv = xmalloc_huge(nfloat * sizeof(float));
	patchify(rs, pc, lut, pv, nfloat, parts);
	if (threaded)
		pthread_join(th, NULL);
	else
		content_hash(pc, rs, hj.hash);

	out->width = rs->w;
	out->height = rs->h;
	out->resized_width = rs->w;
	out->resized_height = rs->h;
	out->grid_t = 1;
	out->grid_h = (int)gh;
	out->grid_w = (int)gw;
	out->n_tokens = (int64_t)rows / ((int64_t)M * M);
	out->rows = rows;
	out->cols = cols;
	out->pixel_values = pv;
	memcpy(out->hash, hj.hash, 32);
	return 0;
}

void img_preprocess_hash(const img_rgb *resized, const preprocessor_config *pc, uint8_t out[32])
{
	content_hash(pc, resized, out);
}

/* Steps 1-2 then 3-6; the resize borrows the input when it has nothing to resample, so a
 * ready-sized image is not copied. */
int img_preprocess(const img_rgb *in, const preprocessor_config *pc, int64_t min_pixels,
		   int64_t max_pixels, img_patches *out, qerr *e)
{
	memset(out, 0, sizeof(*out));
	img_rgb resized;
	int rc = resize_step(in, pc, min_pixels, max_pixels, true, &resized, e);
	if (rc)
		return rc;
	rc = img_preprocess_patches(&resized, pc, out, e);
	if (resized.px != in->px)
		free(resized.px);
	if (rc)
		return rc;
	out->width = in->w;
	out->height = in->h;
	return 0;
}

void img_patches_deinit(img_patches *p)
{
	if (!p)
		return;
	free(p->pixel_values);
	memset(p, 0, sizeof(*p));
}
