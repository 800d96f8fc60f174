/*
 * img_resize: smart_resize and PyTorch's CPU uint8 anti-aliased bicubic resampling, bit-exact
 * (spec §4.2, §4.3, §14.1–2).
 *
 * Why bit-exact: the vision tower sees the resampled pixels; HF's fast processor (the model's
 * reference) resamples with torchvision, which keeps uint8 and calls
 * at::_upsample_bicubic2d_aa — PyTorch's port of Pillow-SIMD. Pillow's own resize (22-bit
 * weights) and float resamplers differ by ±1 on some pixels, so neither will do.
 *
 * How (per axis, n_in -> n_out, all in double, as PyTorch's _compute_indices_min_size_weights_aa
 * and _compute_index_ranges_int16_weights do):
 *
 *   scale   = n_in / n_out            support = 2 * max(scale, 1)    (bicubic: 4 taps / 2)
 *   taps    = ceil(support) * 2 + 1   invscale = scale >= 1 ? 1/scale : 1
 *   output i: center = scale * (i + 0.5)
 *             start  = max((int64)(center - support + 0.5), 0)          (C truncation)
 *             len    = clamp(min((int64)(center + support + 0.5), n_in) - start, 0, taps)
 *             w_j    = K((j + start - center + 0.5) * invscale),  j < len,  then w_j /= Σ w
 *   K = Keys cubic, a = -0.5, written as PyTorch's cubic_convolution1/2
 *   precision p: from 0, p++ while p < 22 and (int)(0.5 + wmax * 2^(p+1)) < 32768, wmax the
 *             largest normalised weight of the whole axis (so every w16 fits an int16)
 *   w16_j   = (int)(w_j * 2^p ± 0.5)   (+ for w >= 0, - below: rounds half away from zero)
 *   out     = clamp((2^(p-1) + Σ_j in[start + j] * w16_j) >> p, 0, 255)   (int32, arithmetic >>)
 *
 * The weight tables are built once per axis; then the width pass turns every input row into a
 * row of out_w pixels (an intermediate uint8 image in->h x out_w), and the height pass combines
 * whole rows of that image. A pass whose side is unchanged is skipped, as PyTorch skips it (at
 * scale 1 the weights are exactly 0, 1, 0, so it would be the identity anyway).
 *
 *   width pass:  out[y][i][c]  = Σ_j w_h[i][j] * in[y][start_h[i] + j][c]         (3 channels)
 *   height pass: out[i][x][c]  = Σ_j w_v[i][j] * mid[start_v[i] + j][x][c]
 *
 * Speed: the height pass uses SSE2 (every x86-64): two source rows per _mm_madd_epi16, 16
 * bytes of one tap's row interleaved with the same 16 bytes of the next tap's row, against the
 * weight pair (w_j, w_j+1). The width pass uses AVX2 where the CPU has it (checked at run time):
 * two rows at once, one per 128-bit lane; one 16-byte load holds four source pixels, two
 * vpshufb turn them into R0R1 G0G1 B0B1 and R2R3 G2G3 B2B3 int16 pairs, two vpmaddwd give three
 * channel sums. Elsewhere (other CPUs, row tails, windows at the right edge) plain-C loops run,
 * shaped so that compilers vectorise the height pass on any target. Integer sums are exact, so
 * the order of accumulation cannot change a result; the plain-C path
 * (img_resize_bicubic_aa_scalar) computes the same numbers and is what the SIMD paths are
 * tested against. Buffers of megabytes ask for transparent huge pages (xmalloc_huge): page faults
 * otherwise cost as much as the resampling.
 *
 * Floating point: the weights are computed with the operations PyTorch's source writes, one
 * IEEE double operation at a time (the default x86-64 target has no FMA to contract them into;
 * a contraction could move a weight by an ulp, which only matters where w*2^p lies within an
 * ulp of a half-integer). With a = -0.5, a power of two, Pillow's (((x-5)x+8)x-4)a and
 * PyTorch's ((ax-5a)x+8a)x-4a round identically.
 *
 * Invariants: images are packed RGB (img.h); an output pixel depends only on its window. Right
 * shifts of negative int32 are arithmetic (GCC and Clang define it so).
 * Threads: no state; any thread may call in.
 */
#include "img_resize.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <immintrin.h>
#define RESIZE_X86 1
#else
#define RESIZE_X86 0
#endif

#include "alloc.h"

/* ---- smart_resize ---- */

/* Python's round() of a non-negative double: halves go to the even neighbour. Written out, so
 * that the FPU rounding mode cannot matter. */
static double round_half_even(double x)
{
	double f = floor(x), d = x - f;
	if (d > 0.5)
		return f + 1.0;
	if (d < 0.5)
		return f;
	return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

/* 2^53: integers up to here are exact in a double. */
#define EXACT_INT ((int64_t)1 << 53)

/* A non-negative integral double as int64, or -1 when it exceeds INT_MAX (no UB on huge values). */
static int64_t side_of(double v)
{
	return v > (double)INT_MAX ? -1 : (int64_t)v;
}

int img_smart_resize(int64_t h, int64_t w, int factor, int64_t min_pixels, int64_t max_pixels,
		     int *out_h, int *out_w, qerr *e)
{
	if (h < 1 || w < 1)
		return qerr_set(e, QERR_INVALID, "image of %lldx%lld pixels: a side is empty",
				(long long)w, (long long)h);
	if (h > IMG_RESIZE_MAX_SIDE || w > IMG_RESIZE_MAX_SIDE)
		return qerr_set(e, QERR_LIMIT, "image of %lldx%lld pixels: a side exceeds %d",
				(long long)w, (long long)h, IMG_RESIZE_MAX_SIDE);
	if (factor < 1 || factor > IMG_RESIZE_MAX_SIDE)
		return qerr_set(e, QERR_INVALID, "resize factor %d is out of range", factor);
	if (min_pixels < 0 || max_pixels < 0 || min_pixels > EXACT_INT || max_pixels > EXACT_INT)
		return qerr_set(e, QERR_LIMIT, "pixel bounds [%lld, %lld] are out of range",
				(long long)min_pixels, (long long)max_pixels);

	const double H = (double)h, W = (double)w, f = (double)factor;
	const double ratio = (H > W ? H : W) / (H < W ? H : W);
	if (ratio > 200.0)
		return qerr_set(e, QERR_INVALID,
				"image of %lldx%lld pixels: aspect ratio %.1f exceeds 200",
				(long long)w, (long long)h, ratio);

	/* Sides <= 2^24 and factor <= 2^24: every product below stays far from int64 overflow and
	 * h*w (< 2^48) is exact in a double, as Python's integer h*w is exact. */
	int64_t hb = (int64_t)round_half_even(H / f) * factor;
	int64_t wb = (int64_t)round_half_even(W / f) * factor;
	if (hb * wb > max_pixels) {
		if (max_pixels == 0)
			return qerr_set(e, QERR_INVALID, "max_pixels is 0");
		double beta = sqrt((double)(h * w) / (double)max_pixels);
		/* Two divisions, H/beta then /factor, as the Python writes it. */
		int64_t fh = (int64_t)floor(H / beta / f), fw = (int64_t)floor(W / beta / f);
		hb = fh * factor > factor ? fh * factor : factor;
		wb = fw * factor > factor ? fw * factor : factor;
	} else if (hb * wb < min_pixels) {
		double beta = sqrt((double)min_pixels / (double)(h * w));
		/* The sides are checked against INT_MAX in double before any conversion; below
		 * that bound ceil(...) * factor is exact, as Python's integer product is. */
		double ch = ceil(H * beta / f), cw = ceil(W * beta / f);
		int64_t sh = side_of(ch * f), sw = side_of(cw * f);
		if (sh < 0 || sw < 0)
			return qerr_set(e, QERR_LIMIT,
					"image of %lldx%lld pixels: min_pixels %lld asks for a "
					"side beyond %d", (long long)w, (long long)h,
					(long long)min_pixels, INT_MAX);
		hb = sh;
		wb = sw;
	}
	if (hb > INT_MAX || wb > INT_MAX)
		return qerr_set(e, QERR_LIMIT, "resized side beyond %d", INT_MAX);
	if (hb < 1 || wb < 1)
		return qerr_set(e, QERR_INVALID,
				"image of %lldx%lld pixels resizes to %lldx%lld (min_pixels %lld)",
				(long long)w, (long long)h, (long long)wb, (long long)hb,
				(long long)min_pixels);
	*out_h = (int)hb;
	*out_w = (int)wb;
	return 0;
}

/* ---- weight tables ---- */

/* One axis's taps: output i reads len[i] inputs from start[i] with weights w[i*taps ...]. */
typedef struct axis_taps {
	int n_out;
	int taps;          /* the window bound (PyTorch's max_interp_size): stride of w */
	int prec;          /* weights_precision, 1..22 (weights are far below 2^14) */
	int *start;        /* owned: [n_out] */
	int *len;          /* owned: [n_out], 0 <= len <= taps */
	int16_t *w;        /* owned: [n_out][taps], zero past len */
} axis_taps;

/* PyTorch's HelperInterpCubic::aa_filter with a = -0.5 (cubic_convolution1/2, same operation
 * order). */
static double keys_cubic(double x)
{
	const double a = -0.5;
	x = fabs(x);
	if (x < 1.0)
		return ((a + 2) * x - (a + 3)) * x * x + 1;
	if (x < 2.0)
		return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
	return 0.0;
}

static void axis_taps_init(axis_taps *t, int n_in, int n_out)
{
	const double scale = (double)n_in / (double)n_out;
	const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
	const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
	const int taps = (int)ceil(support) * 2 + 1;
	double *wd = xmalloc((size_t)n_out * (size_t)taps * sizeof(*wd));
	double wmax = 0.0;

	t->n_out = n_out;
	t->taps = taps;
	t->start = xmalloc((size_t)n_out * sizeof(*t->start));
	t->len = xmalloc((size_t)n_out * sizeof(*t->len));
	t->w = xmalloc((size_t)n_out * (size_t)taps * sizeof(*t->w));
	for (int i = 0; i < n_out; i++) {
		double *wi = wd + (size_t)i * taps;
		double center = scale * (i + 0.5);
		int64_t xmin = (int64_t)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int64_t xmax = (int64_t)(center + support + 0.5);
		if (xmax > n_in)
			xmax = n_in;
		int64_t xsize = xmax - xmin;
		/* Rounding can make the window one wider than taps: clip it, as PyTorch does. */
		if (xsize < 0)
			xsize = 0;
		if (xsize > taps)
			xsize = taps;
		double total = 0.0;
		int j = 0;
		for (; j < xsize; j++) {
			wi[j] = keys_cubic(((double)(j + xmin) - center + 0.5) * invscale);
			total += wi[j];
		}
		if (total != 0.0)
			for (j = 0; j < xsize; j++) {
				wi[j] /= total;
				if (wi[j] > wmax)
					wmax = wi[j];
			}
		for (j = (int)xsize; j < taps; j++)
			wi[j] = 0.0;
		t->start[i] = (int)xmin;
		t->len[i] = (int)xsize;
	}

	int p = 0;
	while (p < 22 && (int)(0.5 + wmax * (double)(1 << (p + 1))) < (1 << 15))
		p++;
	t->prec = p;
	const double mul = (double)(1 << p);
	for (size_t k = 0; k < (size_t)n_out * taps; k++) {
		double v = wd[k] * mul;
		t->w[k] = (int16_t)(v < 0 ? (int)(v - 0.5) : (int)(v + 0.5));
	}
	free(wd);
}

static void axis_taps_deinit(axis_taps *t)
{
	free(t->start);
	free(t->len);
	free(t->w);
}

static inline uint8_t clamp_u8(int32_t v)
{
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* The low three bytes of v (R, G, B in little-endian order) to d. */
static inline void put_rgb(uint8_t *d, uint32_t v)
{
	d[0] = (uint8_t)v;
	d[1] = (uint8_t)(v >> 8);
	d[2] = (uint8_t)(v >> 16);
}

/* ---- scalar passes ---- */

/* One output pixel of the width pass from row s (packed RGB). */
static inline void h_pixel(const uint8_t *s, const axis_taps *t, int i, uint8_t *d)
{
	const int16_t *w = t->w + (size_t)i * t->taps;
	const uint8_t *p = s + (size_t)t->start[i] * 3;
	const int32_t half = (int32_t)1 << (t->prec - 1);
	int32_t r = half, g = half, b = half;
	for (int j = 0; j < t->len[i]; j++) {
		r += p[3 * j] * w[j];
		g += p[3 * j + 1] * w[j];
		b += p[3 * j + 2] * w[j];
	}
	d[0] = clamp_u8(r >> t->prec);
	d[1] = clamp_u8(g >> t->prec);
	d[2] = clamp_u8(b >> t->prec);
}

/* Width pass: rows of in_w pixels -> rows of t->n_out pixels. */
static void pass_h_scalar(const uint8_t *src, int in_w, int rows, const axis_taps *t,
			  uint8_t *dst)
{
	for (int y = 0; y < rows; y++) {
		const uint8_t *s = src + (size_t)y * in_w * 3;
		uint8_t *d = dst + (size_t)y * t->n_out * 3;
		for (int i = 0; i < t->n_out; i++)
			h_pixel(s, t, i, d + 3 * i);
	}
}

/* Height pass, bytes [k0, k1) of output row i; rows of row_bytes bytes. Blocks of 16 bytes
 * with a local accumulator, a shape compilers vectorise at -O2 on any target. */
static void v_span_scalar(const uint8_t *src, size_t row_bytes, const axis_taps *t, int i,
			  size_t k0, size_t k1, uint8_t *d)
{
	const int16_t *w = t->w + (size_t)i * t->taps;
	const uint8_t *base = src + (size_t)t->start[i] * row_bytes;
	const int32_t half = (int32_t)1 << (t->prec - 1);
	const int n = t->len[i];
	size_t k = k0;
	for (; k + 16 <= k1; k += 16) {
		int32_t acc[16];
		for (int m = 0; m < 16; m++)
			acc[m] = half;
		for (int j = 0; j < n; j++) {
			const uint8_t *s = base + (size_t)j * row_bytes + k;
			const int32_t wj = w[j];
			for (int m = 0; m < 16; m++)
				acc[m] += s[m] * wj;
		}
		for (int m = 0; m < 16; m++)
			d[k + m] = clamp_u8(acc[m] >> t->prec);
	}
	for (; k < k1; k++) {
		int32_t acc = half;
		for (int j = 0; j < n; j++)
			acc += base[(size_t)j * row_bytes + k] * w[j];
		d[k] = clamp_u8(acc >> t->prec);
	}
}

static void pass_v_scalar(const uint8_t *src, size_t row_bytes, const axis_taps *t,
			  uint8_t *dst)
{
	for (int i = 0; i < t->n_out; i++)
		v_span_scalar(src, row_bytes, t, i, 0, row_bytes, dst + (size_t)i * row_bytes);
}

/* ---- x86 SIMD passes (SSE2 always, AVX2 where the CPU has it) ---- */

#if RESIZE_X86

/* The weight pair (w0, w1) repeated four times: madd against (a, b) int16 pairs gives
 * a*w0 + b*w1. */
static inline __m128i pair_weights(int16_t w0, int16_t w1)
{
	return _mm_set1_epi32((int32_t)(((uint32_t)(uint16_t)w1 << 16) | (uint16_t)w0));
}

/* acc[0..3] += the 16 bytes x0 times w0 plus the 16 bytes x1 times w1 (byte k in lane k). */
static inline void v_madd16(__m128i acc[4], __m128i x0, __m128i x1, __m128i wv)
{
	const __m128i zero = _mm_setzero_si128();
	__m128i lo = _mm_unpacklo_epi8(x0, x1), hi = _mm_unpackhi_epi8(x0, x1);
	acc[0] = _mm_add_epi32(acc[0], _mm_madd_epi16(_mm_unpacklo_epi8(lo, zero), wv));
	acc[1] = _mm_add_epi32(acc[1], _mm_madd_epi16(_mm_unpackhi_epi8(lo, zero), wv));
	acc[2] = _mm_add_epi32(acc[2], _mm_madd_epi16(_mm_unpacklo_epi8(hi, zero), wv));
	acc[3] = _mm_add_epi32(acc[3], _mm_madd_epi16(_mm_unpackhi_epi8(hi, zero), wv));
}

/* Height pass. Per output row, 16 bytes at a time: four int32 accumulators (16 lanes), two
 * source rows per madd (an odd last tap is paired with a zero row of weight 0). The tail of a
 * row (< 16 bytes) goes through the scalar span. */
static void pass_v_sse2(const uint8_t *src, size_t row_bytes, const axis_taps *t, uint8_t *dst)
{
	const __m128i zero = _mm_setzero_si128();
	const __m128i half = _mm_set1_epi32((int32_t)1 << (t->prec - 1));
	const __m128i shift = _mm_cvtsi32_si128(t->prec);
	for (int i = 0; i < t->n_out; i++) {
		const int16_t *w = t->w + (size_t)i * t->taps;
		const int n = t->len[i];
		const uint8_t *base = src + (size_t)t->start[i] * row_bytes;
		uint8_t *d = dst + (size_t)i * row_bytes;
		size_t k = 0;
		for (; k + 16 <= row_bytes; k += 16) {
			__m128i a[4] = { half, half, half, half };
			const uint8_t *s = base + k;
			int j = 0;
			for (; j + 1 < n; j += 2) {
				const uint8_t *s0 = s + (size_t)j * row_bytes;
				v_madd16(a, _mm_loadu_si128((const __m128i *)s0),
					 _mm_loadu_si128((const __m128i *)(s0 + row_bytes)),
					 pair_weights(w[j], w[j + 1]));
			}
			if (j < n) {
				const uint8_t *s0 = s + (size_t)j * row_bytes;
				v_madd16(a, _mm_loadu_si128((const __m128i *)s0), zero,
					 pair_weights(w[j], 0));
			}
			for (int m = 0; m < 4; m++)
				a[m] = _mm_sra_epi32(a[m], shift);
			/* Saturating packs clamp to 0..255 exactly as clamp_u8 does. */
			__m128i px = _mm_packus_epi16(_mm_packs_epi32(a[0], a[1]),
						      _mm_packs_epi32(a[2], a[3]));
			_mm_storeu_si128((__m128i *)(d + k), px);
		}
		v_span_scalar(src, row_bytes, t, i, k, row_bytes, d);
	}
}

/* The width-pass weights for AVX2: per output pixel, ceil(len/4) pairs of vectors
 * (w_j, w_j+1) x3, (0, 0) — taps 4q, 4q+1, then 4q+2, 4q+3 — zero past len; nquad_max pairs a
 * pixel. fast[i]: whether pixel i's 16-byte loads stay inside a row of in_row bytes. */
static void h_avx2_tables(const axis_taps *t, size_t in_row, int nquad_max, int16_t *wp,
			  uint8_t *fast)
{
	for (int i = 0; i < t->n_out; i++) {
		const int16_t *w = t->w + (size_t)i * t->taps;
		int16_t *o = wp + (size_t)i * nquad_max * 16;
		for (int j = 0; j < t->len[i]; j += 2) {
			int16_t w0 = w[j], w1 = j + 1 < t->len[i] ? w[j + 1] : 0;
			int16_t v[8] = { w0, w1, w0, w1, w0, w1, 0, 0 };
			memcpy(o + 4 * j, v, sizeof(v));
		}
		/* The last load covers bytes [start*3 + 12*(nquad-1), +16). */
		int nquad = (t->len[i] + 3) / 4;
		fast[i] = nquad > 0 &&
			  (int64_t)t->start[i] * 3 + 12 * (nquad - 1) + 16 <= (int64_t)in_row;
	}
}

/* One output pixel of two rows (p0, p1: the window starts), weights wv: the rounded, shifted,
 * saturated result, R G B 0 in the low 4 bytes of each 128-bit lane. */
__attribute__((target("avx2")))
static inline __m256i h_pixel_avx2(const uint8_t *p0, const uint8_t *p1, const __m128i *wv,
				   int nquad, __m256i half, __m128i shift)
{
	const __m256i lo_pair = _mm256_broadcastsi128_si256(_mm_setr_epi8(
		0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1));
	const __m256i hi_pair = _mm256_broadcastsi128_si256(_mm_setr_epi8(
		6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1));
	__m256i acc0 = half, acc1 = _mm256_setzero_si256();
	for (int q = 0; q < nquad; q++) {
		__m128i r0 = _mm_loadu_si128((const __m128i *)(p0 + 12 * q));
		__m128i r1 = _mm_loadu_si128((const __m128i *)(p1 + 12 * q));
		__m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(r0), r1, 1);
		__m256i wlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(wv + 2 * q));
		__m256i whi = _mm256_broadcastsi128_si256(_mm_loadu_si128(wv + 2 * q + 1));
		__m256i m0 = _mm256_madd_epi16(_mm256_shuffle_epi8(v, lo_pair), wlo);
		__m256i m1 = _mm256_madd_epi16(_mm256_shuffle_epi8(v, hi_pair), whi);
		acc0 = _mm256_add_epi32(acc0, m0);
		acc1 = _mm256_add_epi32(acc1, m1);
	}
	__m256i acc = _mm256_sra_epi32(_mm256_add_epi32(acc0, acc1), shift);
	acc = _mm256_packs_epi32(acc, acc);
	return _mm256_packus_epi16(acc, acc);
}

/* Width pass (AVX2; the caller checks the CPU). Two rows at a time, one per 128-bit lane,
 * sharing the weights. A 16-byte load holds four source pixels R0G0B0 R1G1B1 R2G2B2 R3G3B3;
 * two vpshufb make the int16 lanes R0 R1 G0 G1 B0 B1 0 0 and R2 R3 G2 G3 B2 B3 0 0; each
 * vpmaddwd against its weights gives three channel sums (lane 3 stays 0). An odd last row
 * rides in both lanes. Pixels whose loads would pass the end of the row (the right edge) go
 * through the scalar h_pixel. */
__attribute__((target("avx2")))
static void pass_h_avx2(const uint8_t *src, int in_w, int rows, const axis_taps *t,
			uint8_t *dst)
{
	const int nquad_max = (t->taps + 3) / 4;
	const size_t in_row = (size_t)in_w * 3, out_row = (size_t)t->n_out * 3;
	int16_t *wp = xcalloc((size_t)t->n_out * nquad_max * 16, sizeof(*wp));
	uint8_t *fast = xmalloc((size_t)t->n_out);
	h_avx2_tables(t, in_row, nquad_max, wp, fast);
	const __m256i half = _mm256_set1_epi32((int32_t)1 << (t->prec - 1));
	const __m128i shift = _mm_cvtsi32_si128(t->prec);
	for (int y = 0; y < rows; y += 2) {
		const bool pair = y + 1 < rows;
		const uint8_t *s0 = src + (size_t)y * in_row, *s1 = pair ? s0 + in_row : s0;
		uint8_t *d0 = dst + (size_t)y * out_row, *d1 = d0 + out_row;
		for (int i = 0; i < t->n_out; i++) {
			if (!fast[i]) {
				h_pixel(s0, t, i, d0 + 3 * i);
				if (pair)
					h_pixel(s1, t, i, d1 + 3 * i);
				continue;
			}
			const size_t off = (size_t)t->start[i] * 3;
			const __m128i *wv = (const __m128i *)(wp + (size_t)i * nquad_max * 16);
			__m256i px = h_pixel_avx2(s0 + off, s1 + off, wv, (t->len[i] + 3) / 4, half,
						  shift);
			uint32_t px0 = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(px));
			uint32_t px1 = (uint32_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(px, 1));
			/* Four bytes where the next pixel follows (written next), else three. */
			if (i + 1 < t->n_out) {
				memcpy(d0 + 3 * i, &px0, 4);
				if (pair)
					memcpy(d1 + 3 * i, &px1, 4);
			} else {
				put_rgb(d0 + 3 * i, px0);
				if (pair)
					put_rgb(d1 + 3 * i, px1);
			}
		}
	}
	free(wp);
	free(fast);
}

#endif

/* ---- the two passes ---- */

static void resize(const img_rgb *in, int out_w, int out_h, img_rgb *out, bool simd)
{
	const bool need_h = out_w != in->w, need_v = out_h != in->h;
	out->w = out_w;
	out->h = out_h;
	out->px = xmalloc_huge((size_t)out_w * (size_t)out_h * 3);
	if (!need_h && !need_v) {
		memcpy(out->px, in->px, (size_t)out_w * (size_t)out_h * 3);
		return;
	}
#if !RESIZE_X86
	simd = false;
#endif
	const uint8_t *src = in->px;
	uint8_t *mid = NULL;
	if (need_h) {
		axis_taps th;
		axis_taps_init(&th, in->w, out_w);
		if (need_v)
			mid = xmalloc_huge((size_t)in->h * (size_t)out_w * 3);
		uint8_t *dst = need_v ? mid : out->px;
#if RESIZE_X86
		if (simd && __builtin_cpu_supports("avx2"))
			pass_h_avx2(src, in->w, in->h, &th, dst);
		else
#endif
			pass_h_scalar(src, in->w, in->h, &th, dst);
		axis_taps_deinit(&th);
		src = dst;
	}
	if (need_v) {
		axis_taps tv;
		axis_taps_init(&tv, in->h, out_h);
#if RESIZE_X86
		if (simd)
			pass_v_sse2(src, (size_t)out_w * 3, &tv, out->px);
		else
#endif
			pass_v_scalar(src, (size_t)out_w * 3, &tv, out->px);
		axis_taps_deinit(&tv);
	}
	free(mid);
}

void img_resize_bicubic_aa(const img_rgb *in, int out_w, int out_h, img_rgb *out)
{
	resize(in, out_w, out_h, out, true);
}

void img_resize_bicubic_aa_scalar(const img_rgb *in, int out_w, int out_h, img_rgb *out)
{
	resize(in, out_w, out_h, out, false);
}
