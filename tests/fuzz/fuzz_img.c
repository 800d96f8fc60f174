/*
 * fuzz_img: libFuzzer targets for img_decode, one per format, built from this file with
 * -DFUZZ_IMG_png, -DFUZZ_IMG_jpeg or -DFUZZ_IMG_webp (tests/fuzz/fuzz_img_<format>).
 *
 *   png   libpng progressive reader, row conversion, Adam7 combination, truncation and CRC
 *         rules; the first 8 bytes are forced to the PNG signature
 *   jpeg  libjpeg error and warning handling, truncation, CMYK/YCCK conversion, the scan
 *         limit; the first 3 bytes are forced to FF D8 FF (SOI and a marker)
 *   webp  libwebp; "RIFF" and "WEBP" are forced into place
 *
 * Forcing the magic makes every mutation reach the decoder under test. img_decode runs with
 * max_pixels 4M (a 4M-pixel image is legal and would only make the fuzzer slow). Besides "never
 * crash, never read out of bounds, never leak" (ASan and UBSan report those), the target aborts
 * when a promise of the API is broken:
 *   - success: w, h > 0, w*h ≤ max_pixels, px non-NULL (every byte is read), and img_probe
 *     agrees on the size and names the format;
 *   - failure: -QERR_FORMAT, -QERR_UNSUPPORTED or -QERR_LIMIT, the same code in the qerr, a
 *     message that is one non-empty line, and an empty img_rgb.
 * Seeds: tests/data/img-seeds/<format>/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "img_decode.h"

#define FUZZ_MAX_PIXELS (4u << 20)

static void require(int ok)
{
	if (!ok)
		abort();
}

static void check(const uint8_t *data, size_t size, const char *format)
{
	img_limits lim = { .max_pixels = FUZZ_MAX_PIXELS, .max_bytes = 0 };
	img_rgb im;
	qerr e = { 0 };
	int rc = img_decode(data, size, &lim, &im, &e);
	if (rc == 0) {
		require(im.w > 0 && im.h > 0 && im.px != NULL);
		require((uint64_t)im.w * (uint64_t)im.h <= FUZZ_MAX_PIXELS);
		unsigned sum = 0;
		for (size_t i = 0; i < (size_t)im.w * (size_t)im.h * 3; i++)
			sum += im.px[i];
		int w, h;
		const char *f;
		require(img_probe(data, size, &w, &h, &f, NULL) == 0);
		require(w == im.w && h == im.h && strcmp(f, format) == 0);
		img_rgb_deinit(&im);
		require(sum != 0xFFFFFFFFu || im.px == NULL);   /* keep the reads */
	} else {
		require(rc == -QERR_FORMAT || rc == -QERR_UNSUPPORTED || rc == -QERR_LIMIT);
		require(e.code == -rc);
		require(e.msg[0] != '\0' && strchr(e.msg, '\n') == NULL);
		require(im.w == 0 && im.h == 0 && im.px == NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *b = malloc(size ? size : 1);
	memcpy(b, data, size);
#if defined(FUZZ_IMG_png)
	memcpy(b, "\x89PNG\r\n\x1a\n", size < 8 ? size : 8);
	check(b, size, "png");
#elif defined(FUZZ_IMG_jpeg)
	memcpy(b, "\xff\xd8\xff", size < 3 ? size : 3);
	check(b, size, "jpeg");
#elif defined(FUZZ_IMG_webp)
	memcpy(b, "RIFF", size < 4 ? size : 4);
	if (size >= 12)
		memcpy(b + 8, "WEBP", 4);
	check(b, size, "webp");
#else
#error "define FUZZ_IMG_png, FUZZ_IMG_jpeg or FUZZ_IMG_webp"
#endif
	free(b);
	return 0;
}
