/*
 * fuzz_img_webp: libFuzzer target for the WebP path of img_decode (WebPGetFeatures, the
 * animation refusal, WebPDecode into caller memory, lossy, lossless and alpha bitstreams).
 *
 * The input is a WebP file; "RIFF" at byte 0 and "WEBP" at byte 8 are forced so that every
 * mutation reaches libwebp. img_decode runs with max_pixels 4M (a 4M-pixel image is legal and
 * would only make the fuzzer slow). Besides "never crash, never read out of bounds, never leak"
 * (ASan and UBSan report those), the target aborts when a promise of the API is broken:
 *   - success: w, h > 0, w*h ≤ max_pixels, px non-NULL (every byte is read), and img_probe
 *     agrees on the size and says "webp";
 *   - failure: -QERR_FORMAT, -QERR_UNSUPPORTED or -QERR_LIMIT, the same code in the qerr, a
 *     message that is one non-empty line, and an empty img_rgb.
 * Seeds: tests/data/img-seeds/webp/.
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
	memcpy(b, "RIFF", size < 4 ? size : 4);
	if (size >= 12)
		memcpy(b + 8, "WEBP", 4);
	check(b, size, "webp");
	free(b);
	return 0;
}
