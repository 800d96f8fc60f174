/*
 * check_img_decode: tests of inference/img_decode.c.
 *
 * What: every decoder path against Pillow — tests/data/images/expected.jsonl holds, for each
 * valid test image, the size and FNV-1a-64 of Pillow 11.0's Image.open(f).convert("RGB")
 * bytes (made by tests/data/images/gen_images.py, which also says how each image was made):
 * PNG gray 1/2/4/8/16-bit, gray+tRNS, gray+alpha 8/16, RGB 8/16, RGBA 8/16, palette 1/2/4/8 with
 * and without tRNS, a palette shorter than its indices, Adam7 (1×1, 3×2 and larger, several
 * depths), split IDAT with a bad IDAT CRC and no IEND, APNG; JPEG 4:2:0/4:2:2/4:4:4, progressive,
 * gray, CMYK with and without Adobe marker, YCCK, RGB colour space, restart markers, EXIF
 * orientation (not applied), a recoverable-corruption warning, 300×200; WebP lossy, lossless,
 * each with alpha. Then one test per class of bad input, each asserting the return code and a
 * distinctive part of the message: truncation (and the trailer truncation Pillow accepts), bad
 * CRCs, empty input, zero size, headers claiming huge sizes, small limits, byte limits,
 * random bytes, other formats' magic, animated WebP, 12-bit JPEG, too many progressive scans.
 *
 * How: fixtures live in $srcdir/tests/data/images/ (srcdir defaults to "."; run from the top
 * of the tree, as automake does). Bad inputs are made in memory from valid fixtures.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "img_decode.h"
#include "testutil.h"

/* ---- fixtures ---- */

static char *fixture_path(const char *name)
{
	const char *srcdir = getenv("srcdir");
	return xasprintf("%s/tests/data/images/%s", srcdir && *srcdir ? srcdir : ".", name);
}

/* A whole fixture file (malloc'd); *n its length. */
static uint8_t *fixture(const char *name, size_t *n)
{
	char *path = fixture_path(name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	ck_assert_int_ge(len, 0);
	uint8_t *b = xmalloc((size_t)len + 1);
	ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	free(path);
	*n = (size_t)len;
	return b;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Decoding must fail with code and a message containing part; out must come back empty. */
static void assert_decode_fails(const void *data, size_t n, const img_limits *lim, int code,
			const char *part, const char *what)
{
	img_rgb im = { 7, 7, (uint8_t *)&im };
	qerr e = { 0 };
	int rc = img_decode(data, n, lim, &im, &e);
	ck_assert_msg(rc == -code, "%s: rc %d, expected %d (%s)", what, rc, -code, e.msg);
	ck_assert_int_eq(e.code, code);
	ck_assert_msg(strstr(e.msg, part) != NULL, "%s: message \"%s\" lacks \"%s\"", what, e.msg,
		      part);
	ck_assert_msg(strchr(e.msg, '\n') == NULL, "%s: message has a newline", what);
	ck_assert(im.w == 0 && im.h == 0 && im.px == NULL);
}

static void assert_file_fails(const char *name, const img_limits *lim, int code, const char *part)
{
	size_t n;
	uint8_t *b = fixture(name, &n);
	assert_decode_fails(b, n, lim, code, part, name);
	free(b);
}

/* Decode, which must succeed; returns the FNV-1a-64 of the RGB bytes. */
static uint64_t decode_hash(const void *data, size_t n, const img_limits *lim, int *w, int *h,
			    const char *what)
{
	img_rgb im;
	qerr e = { 0 };
	int rc = img_decode(data, n, lim, &im, &e);
	ck_assert_msg(rc == 0, "%s: %s", what, e.msg);
	ck_assert(im.w > 0 && im.h > 0 && im.px != NULL);
	uint64_t hash = fnv1a64(im.px, (size_t)im.w * im.h * 3);
	if (w)
		*w = im.w;
	if (h)
		*h = im.h;
	img_rgb_deinit(&im);
	ck_assert(im.px == NULL && im.w == 0);
	return hash;
}

static uint64_t file_hash(const char *name)
{
	size_t n;
	uint8_t *b = fixture(name, &n);
	uint64_t h = decode_hash(b, n, NULL, NULL, NULL, name);
	free(b);
	return h;
}

/* The PNG chunk CRC (CRC-32 of type and data), bit by bit. */
static uint32_t crc32_png(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return c ^ 0xffffffffu;
}

/* Recompute the CRC of the chunk whose length field is at off. */
static void png_fix_crc(uint8_t *b, size_t off)
{
	uint32_t len = (uint32_t)b[off] << 24 | (uint32_t)b[off + 1] << 16 |
		       (uint32_t)b[off + 2] << 8 | b[off + 3];
	uint32_t c = crc32_png(b + off + 4, 4 + (size_t)len);
	uint8_t *q = b + off + 8 + len;
	q[0] = (uint8_t)(c >> 24);
	q[1] = (uint8_t)(c >> 16);
	q[2] = (uint8_t)(c >> 8);
	q[3] = (uint8_t)c;
}

/* Offset of the first chunk of PNG data of this type (at its length field). */
static size_t png_chunk_at(const uint8_t *b, size_t n, const char *type)
{
	size_t off = 8;
	while (off + 12 <= n) {
		uint32_t len = (uint32_t)b[off] << 24 | (uint32_t)b[off + 1] << 16 |
			       (uint32_t)b[off + 2] << 8 | b[off + 3];
		if (!memcmp(b + off + 4, type, 4))
			return off;
		off += 12 + (size_t)len;
	}
	ck_abort_msg("no %s chunk", type);
	return 0;
}

/* ---- decoding, compared with Pillow ---- */

START_TEST(test_img_decode_matches_pillow)
{
	char *path = fixture_path("expected.jsonl");
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	char line[512];
	int count = 0, bad = 0;
	while (fgets(line, sizeof(line), f)) {
		char name[128], hex[17];
		int ew, eh;
		ck_assert_msg(sscanf(line, "{\"file\": \"%127[^\"]\", \"w\": %d, \"h\": %d, "
				     "\"fnv1a64\": \"%16[0-9a-f]\"", name, &ew, &eh, hex) == 4,
			      "bad line: %s", line);
		size_t n;
		uint8_t *b = fixture(name, &n);
		img_rgb im;
		qerr e = { 0 };
		int rc = img_decode(b, n, NULL, &im, &e);
		uint64_t want = strtoull(hex, NULL, 16);
		if (rc != 0) {
			fprintf(stderr, "%s: decode failed: %s\n", name, e.msg);
			bad++;
		} else if (im.w != ew || im.h != eh ||
			   fnv1a64(im.px, (size_t)im.w * im.h * 3) != want) {
			fprintf(stderr, "%s: %dx%d %016llx, Pillow %dx%d %s\n", name, im.w, im.h,
				(unsigned long long)fnv1a64(im.px, (size_t)im.w * im.h * 3), ew, eh,
				hex);
			bad++;
		}
		img_rgb_deinit(&im);
		/* the header agrees */
		int pw, ph;
		const char *fmt;
		rc = img_probe(b, n, &pw, &ph, &fmt, &e);
		ck_assert_msg(rc == 0, "%s: probe: %s", name, e.msg);
		ck_assert_int_eq(pw, ew);
		ck_assert_int_eq(ph, eh);
		const char *ext = strrchr(name, '.') + 1;
		ck_assert_str_eq(fmt, !strcmp(ext, "jpg") ? "jpeg" : ext);
		free(b);
		count++;
	}
	fclose(f);
	free(path);
	ck_assert_int_ge(count, 40);
	ck_assert_msg(bad == 0, "%d of %d images differ from Pillow", bad, count);
}
END_TEST

START_TEST(test_img_decode_interlaced_equals_plain)
{
	ck_assert(file_hash("png_gray2.png") == file_hash("png_gray2_interlaced.png"));
	ck_assert(file_hash("png_pal4.png") == file_hash("png_pal4_interlaced.png"));
}
END_TEST

START_TEST(test_img_decode_known_pixels)
{
	size_t n;
	uint8_t *b = fixture("png_1x1_interlaced.png", &n);
	img_rgb im;
	ck_assert_int_eq(img_decode(b, n, NULL, &im, NULL), 0);
	ck_assert(im.w == 1 && im.h == 1);
	ck_assert(im.px[0] == 10 && im.px[1] == 200 && im.px[2] == 30);
	img_rgb_deinit(&im);
	free(b);
	/* 16-bit gray: Pillow clips the value to 255 (no high byte); gray stays gray */
	b = fixture("png_gray16.png", &n);
	ck_assert_int_eq(img_decode(b, n, NULL, &im, NULL), 0);
	int white = 0;
	for (int i = 0; i < im.w * im.h; i++) {
		ck_assert(im.px[3 * i] == im.px[3 * i + 1] && im.px[3 * i] == im.px[3 * i + 2]);
		white += im.px[3 * i] == 255;
	}
	ck_assert_int_gt(white, im.w * im.h / 2);
	img_rgb_deinit(&im);
	free(b);
}
END_TEST

START_TEST(test_img_decode_jpeg_warning_ignored)
{
	/* "Corrupt JPEG data: 5 extraneous bytes before marker 0xd9": Pillow decodes it */
	int w, h;
	size_t n;
	uint8_t *b = fixture("jpeg_extraneous_bytes.jpg", &n);
	decode_hash(b, n, NULL, &w, &h, "jpeg_extraneous_bytes.jpg");
	ck_assert(w == 16 && h == 16);
	free(b);
}
END_TEST

/* ---- truncation ---- */

START_TEST(test_img_decode_truncated_png)
{
	size_t n;
	uint8_t *b = fixture("png_rgb8.png", &n);
	uint64_t full = decode_hash(b, n, NULL, NULL, NULL, "png_rgb8.png");
	size_t idat = png_chunk_at(b, n, "IDAT");
	assert_decode_fails(b, n / 2, NULL, QERR_FORMAT, "truncated PNG", "half");
	assert_decode_fails(b, idat + 20, NULL, QERR_FORMAT, "truncated PNG (image data cut short)",
		    "IDAT start");
	assert_decode_fails(b, idat, NULL, QERR_FORMAT, "truncated PNG (no image data)", "before IDAT");
	assert_decode_fails(b, 20, NULL, QERR_FORMAT, "truncated PNG", "in IHDR");
	assert_decode_fails(b, 5, NULL, QERR_FORMAT, "PNG", "in the signature");
	/* Pillow accepts a file cut after the last row: no IEND, no IDAT CRC, no Adler-32 */
	ck_assert(decode_hash(b, n - 12, NULL, NULL, NULL, "no IEND") == full);
	ck_assert(decode_hash(b, n - 16, NULL, NULL, NULL, "no CRC") == full);
	free(b);
}
END_TEST

START_TEST(test_img_decode_truncated_jpeg)
{
	static const char *const names[] = { "jpeg_420.jpg", "jpeg_progressive.jpg",
					     "jpeg_gray.jpg", "jpeg_ycck.jpg" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n;
		uint8_t *b = fixture(names[i], &n);
		assert_decode_fails(b, n / 2, NULL, QERR_FORMAT, "truncated JPEG", names[i]);
		assert_decode_fails(b, 100, NULL, QERR_FORMAT, "truncated JPEG", names[i]);
		/* no EOI: libjpeg wants more input before the last row, so Pillow fails too */
		assert_decode_fails(b, n - 2, NULL, QERR_FORMAT, "truncated JPEG", names[i]);
		assert_decode_fails(b, 3, NULL, QERR_FORMAT, "truncated JPEG", names[i]);
		free(b);
	}
}
END_TEST

START_TEST(test_img_decode_truncated_webp)
{
	static const char *const names[] = { "webp_lossy.webp", "webp_lossless.webp",
					     "webp_lossy_alpha.webp" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n;
		uint8_t *b = fixture(names[i], &n);
		assert_decode_fails(b, n / 2, NULL, QERR_FORMAT, "truncated WebP", names[i]);
		assert_decode_fails(b, n - 1, NULL, QERR_FORMAT, "truncated WebP", names[i]);
		assert_decode_fails(b, 16, NULL, QERR_FORMAT, "truncated WebP", names[i]);
		assert_decode_fails(b, 8, NULL, QERR_FORMAT, "truncated WebP", names[i]);
		free(b);
	}
}
END_TEST

/* ---- corruption ---- */

START_TEST(test_img_decode_png_bad_crc)
{
	size_t n;
	uint8_t *b = fixture("png_rgb8.png", &n);
	/* IHDR (critical) */
	b[29] ^= 0x01;
	assert_decode_fails(b, n, NULL, QERR_FORMAT, "IHDR: CRC error", "IHDR CRC");
	b[29] ^= 0x01;
	/* tEXt (ancillary, before IDAT): Pillow says "broken PNG file" too */
	size_t t = png_chunk_at(b, n, "tEXt");
	b[t + 9] ^= 0x20;
	assert_decode_fails(b, n, NULL, QERR_FORMAT, "CRC error", "tEXt CRC");
	free(b);
	/* an IDAT CRC is not checked, as by Pillow (png_split_badidatcrc_noiend.png decodes):
	 * but a damaged zlib stream is an error */
	b = fixture("png_gray8.png", &n);
	size_t idat = png_chunk_at(b, n, "IDAT");
	b[idat + 8] = 0;   /* zlib CMF */
	assert_decode_fails(b, n, NULL, QERR_FORMAT, "PNG: corrupt image data", "zlib header");
	free(b);
}
END_TEST

START_TEST(test_img_decode_jpeg_corrupt)
{
	size_t n;
	uint8_t *b = fixture("jpeg_444.jpg", &n);
	uint8_t *m = xmalloc(n);
	/* SOF's length one short */
	memcpy(m, b, n);
	uint8_t *sof = memmem(m, n, "\xff\xc0", 2);
	ck_assert_ptr_nonnull(sof);
	sof[3]--;
	assert_decode_fails(m, n, NULL, QERR_FORMAT, "JPEG: Bogus marker length", "SOF length");
	/* 12-bit precision in SOF: Pillow cannot handle it either */
	memcpy(m, b, n);
	sof = memmem(m, n, "\xff\xc0", 2);
	sof[4] = 12;
	assert_decode_fails(m, n, NULL, QERR_UNSUPPORTED, "precision 12", "12-bit");
	free(m);
	free(b);
}
END_TEST

START_TEST(test_img_decode_jpeg_too_many_scans)
{
	/* the last scan of a progressive file repeated 501 times: libjpeg only warns about the
	 * bogus progression; we stop at JPEG_MAX_SCANS */
	size_t n;
	uint8_t *b = fixture("jpeg_progressive.jpg", &n);
	size_t last = 0;
	for (size_t i = 0; i + 1 < n; i++)
		if (b[i] == 0xff && b[i + 1] == 0xda)
			last = i;
	ck_assert_uint_gt(last, 0);
	size_t scan = n - 2 - last, reps = 501;
	uint8_t *m = xmalloc(last + reps * scan + 2);
	memcpy(m, b, last);
	for (size_t r = 0; r < reps; r++)
		memcpy(m + last + r * scan, b + last, scan);
	memcpy(m + last + reps * scan, "\xff\xd9", 2);
	assert_decode_fails(m, last + reps * scan + 2, NULL, QERR_LIMIT, "more than 500 scans", "scans");
	/* 100 repeats are fine */
	memcpy(m + last + 100 * scan, "\xff\xd9", 2);
	decode_hash(m, last + 100 * scan + 2, NULL, NULL, NULL, "100 scans");
	free(m);
	free(b);
}
END_TEST

/* ---- sizes and limits ---- */

START_TEST(test_img_decode_empty_and_zero_size)
{
	assert_decode_fails("", 0, NULL, QERR_FORMAT, "empty image data", "zero bytes");
	size_t n;
	uint8_t *b = fixture("png_1x1_interlaced.png", &n);
	b[16 + 3] = 0;   /* IHDR width 1 -> 0, with a valid CRC */
	png_fix_crc(b, 8);
	assert_decode_fails(b, n, NULL, QERR_FORMAT, "PNG: Invalid IHDR data (Image width is zero in IHDR)", "zero width");
	b[16 + 3] = 1;
	b[20 + 3] = 0;   /* height */
	png_fix_crc(b, 8);
	assert_decode_fails(b, n, NULL, QERR_FORMAT, "Image height is zero", "zero height");
	free(b);
}
END_TEST

START_TEST(test_img_decode_huge_header)
{
	/* refused from the header, before a pixel is allocated (allocating would abort) */
	assert_file_fails("bad_png_100000x100000.png", NULL, QERR_LIMIT,
			 "100000x100000 exceeds the limit of 65535 pixels per side");
	assert_file_fails("bad_jpeg_65500x65500.jpg", NULL, QERR_LIMIT,
			 "65500x65500 = 4290250000 pixels exceeds the limit of 89478485 pixels");
	assert_file_fails("bad_webp_16384x16384.webp", NULL, QERR_LIMIT,
			 "16384x16384 = 268435456 pixels exceeds the limit");
	/* the header itself is fine: img_probe reports it */
	size_t n;
	uint8_t *b = fixture("bad_png_100000x100000.png", &n);
	int w, h;
	const char *fmt;
	ck_assert_int_eq(img_probe(b, n, &w, &h, &fmt, NULL), 0);
	ck_assert(w == 100000 && h == 100000 && !strcmp(fmt, "png"));
	free(b);
}
END_TEST

START_TEST(test_img_decode_small_pixel_limit)
{
	static const struct { const char *name; int w, h; } f[] = {
		{ "jpeg_large_300x200.jpg", 300, 200 },
		{ "png_rgb8.png", 64, 48 },
		{ "png_rgb8_interlaced.png", 37, 29 },
		{ "webp_lossy.webp", 45, 31 },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		size_t n;
		uint8_t *b = fixture(f[i].name, &n);
		uint64_t px = (uint64_t)f[i].w * f[i].h;
		img_limits lim = { .max_pixels = px - 1 };
		assert_decode_fails(b, n, &lim, QERR_LIMIT, "pixels exceeds the limit", f[i].name);
		lim.max_pixels = px;
		decode_hash(b, n, &lim, NULL, NULL, f[i].name);
		free(b);
	}
}
END_TEST

START_TEST(test_img_decode_byte_limit)
{
	size_t n;
	uint8_t *b = fixture("jpeg_large_300x200.jpg", &n);
	img_limits lim = { .max_bytes = n - 1 };
	assert_decode_fails(b, n, &lim, QERR_LIMIT, "bytes exceeds the limit", "max_bytes");
	lim.max_bytes = n;
	decode_hash(b, n, &lim, NULL, NULL, "max_bytes = n");
	free(b);
}
END_TEST

/* ---- not our formats ---- */

START_TEST(test_img_decode_random_bytes)
{
	uint8_t r[1000];
	uint32_t s = 12345;
	for (size_t i = 0; i < sizeof(r); i++) {
		s = s * 1664525u + 1013904223u;
		r[i] = (uint8_t)(s >> 24);
	}
	r[0] = 0x13;   /* not a magic we know */
	assert_decode_fails(r, sizeof(r), NULL, QERR_FORMAT, "unrecognised image data", "random");
	/* random after each format's magic */
	memcpy(r, "\x89PNG", 4);
	assert_decode_fails(r, sizeof(r), NULL, QERR_FORMAT, "PNG: ", "random PNG");
	memcpy(r, "\xff\xd8\xff", 3);
	img_rgb im;
	qerr e = { 0 };
	int rc = img_decode(r, sizeof(r), NULL, &im, &e);
	ck_assert_msg(rc == -QERR_FORMAT && (strstr(e.msg, "JPEG") || strstr(e.msg, "truncated")),
		      "random JPEG: %d %s", rc, e.msg);
	memcpy(r, "RIFF\xe8\x03\0\0WEBPVP8 ", 16);
	rc = img_decode(r, sizeof(r), NULL, &im, &e);
	ck_assert_msg(rc == -QERR_FORMAT && strstr(e.msg, "WebP"), "random WebP: %d %s", rc,
		      e.msg);
}
END_TEST

START_TEST(test_img_decode_other_formats)
{
	static const struct { const char *data; size_t n; const char *name; } f[] = {
		{ "GIF89a\x01\0\x01\0\0\0\0;", 14, "GIF images are not supported" },
		{ "GIF87a", 6, "GIF images" },
		{ "BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", 14, "BMP images are not supported" },
		{ "II*\0\x08\0\0\0", 8, "TIFF images" },
		{ "MM\0*\0\0\0\x08", 8, "TIFF images" },
		{ "\0\0\0\x1c" "ftypavif\0\0\0\0", 16, "AVIF images" },
		{ "\0\0\0\x18" "ftypheic\0\0\0\0", 16, "HEIF images" },
		{ "RIFF\x24\0\0\0WAVEfmt ", 16, "RIFF (not WebP) images" },
		{ "%PDF-1.7\n", 9, "PDF images" },
		{ "<svg xmlns=", 11, "SVG/XML images" },
		{ "\xff\x4f\xff\x51\0\x2f", 6, "JPEG 2000 images" },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		assert_decode_fails(f[i].data, f[i].n, NULL, QERR_UNSUPPORTED, f[i].name, f[i].name);
	int w, h;
	const char *fmt;
	qerr e = { 0 };
	ck_assert_int_eq(img_probe(f[0].data, f[0].n, &w, &h, &fmt, &e), -QERR_UNSUPPORTED);
	ck_assert(w == 0 && h == 0 && fmt == NULL);
}
END_TEST

START_TEST(test_img_decode_animated_webp)
{
	assert_file_fails("webp_animated.webp", NULL, QERR_UNSUPPORTED,
			 "animated WebP images are not supported");
}
END_TEST

/* ---- probe ---- */

START_TEST(test_img_decode_probe_header_only)
{
	/* a PNG cut right after the first IDAT's header, a JPEG cut inside the first scan */
	size_t n;
	uint8_t *b = fixture("png_rgb8.png", &n);
	size_t idat = png_chunk_at(b, n, "IDAT");
	int w, h;
	const char *fmt;
	qerr e = { 0 };
	ck_assert_msg(img_probe(b, idat + 8, &w, &h, &fmt, &e) == 0, "%s", e.msg);
	ck_assert(w == 64 && h == 48 && !strcmp(fmt, "png"));
	ck_assert_int_eq(img_probe(b, 30, &w, &h, &fmt, &e), -QERR_FORMAT);
	ck_assert(w == 0 && h == 0 && fmt == NULL);
	free(b);
	b = fixture("jpeg_420.jpg", &n);
	uint8_t *sos = memmem(b, n, "\xff\xda", 2);
	ck_assert_ptr_nonnull(sos);
	ck_assert_msg(img_probe(b, (size_t)(sos - b) + 20, &w, &h, NULL, &e) == 0, "%s", e.msg);
	ck_assert(w == 67 && h == 45);
	free(b);
	b = fixture("webp_lossy.webp", &n);
	ck_assert_int_eq(img_probe(b, 30, &w, &h, &fmt, NULL), 0);
	ck_assert(w == 45 && h == 31 && !strcmp(fmt, "webp"));
	free(b);
	ck_assert_int_eq(img_probe("", 0, NULL, NULL, NULL, NULL), -QERR_FORMAT);
}
END_TEST

START_TEST(test_img_decode_deinit_is_idempotent)
{
	img_rgb im = { 0, 0, NULL };
	ck_assert_int_eq(img_decode("\x89PNG", 4, NULL, &im, &(qerr){ 0 }), -QERR_FORMAT);
	img_rgb_deinit(&im);
	img_rgb_deinit(&im);
	img_rgb_deinit(NULL);
	ck_assert_ptr_null(im.px);
	ck_assert_int_eq(im.w, 0);
}
END_TEST

static Suite *img_decode_suite(void)
{
	Suite *s = suite_create("img_decode");
	TCase *ok = tcase_create("decode");
	tcase_set_timeout(ok, 60);
	tcase_add_test(ok, test_img_decode_matches_pillow);
	tcase_add_test(ok, test_img_decode_interlaced_equals_plain);
	tcase_add_test(ok, test_img_decode_known_pixels);
	tcase_add_test(ok, test_img_decode_jpeg_warning_ignored);
	tcase_add_test(ok, test_img_decode_probe_header_only);
	tcase_add_test(ok, test_img_decode_deinit_is_idempotent);
	suite_add_tcase(s, ok);

	TCase *bad = tcase_create("refused");
	tcase_set_timeout(bad, 60);
	tcase_add_test(bad, test_img_decode_truncated_png);
	tcase_add_test(bad, test_img_decode_truncated_jpeg);
	tcase_add_test(bad, test_img_decode_truncated_webp);
	tcase_add_test(bad, test_img_decode_png_bad_crc);
	tcase_add_test(bad, test_img_decode_jpeg_corrupt);
	tcase_add_test(bad, test_img_decode_jpeg_too_many_scans);
	tcase_add_test(bad, test_img_decode_empty_and_zero_size);
	tcase_add_test(bad, test_img_decode_huge_header);
	tcase_add_test(bad, test_img_decode_small_pixel_limit);
	tcase_add_test(bad, test_img_decode_byte_limit);
	tcase_add_test(bad, test_img_decode_random_bytes);
	tcase_add_test(bad, test_img_decode_other_formats);
	tcase_add_test(bad, test_img_decode_animated_webp);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	return tu_run_suite(img_decode_suite());
}
