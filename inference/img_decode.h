/*
 * img_decode: encoded image bytes (PNG, JPEG, WebP) to an img_rgb, byte for byte what Pillow's
 * Image.open(...).convert("RGB") gives (see img_decode.c for each format's rules and the few
 * places where we knowingly differ). EXIF orientation is NOT applied.
 *
 * Every failure is one of three codes, all of which mean "bad request" to a caller:
 *   QERR_FORMAT       malformed or truncated data ("truncated PNG", "JPEG: Bogus marker length"),
 *                     and bytes that look like no image format at all ("unrecognised image
 *                     data (… bytes starting 13 5e …)")
 *   QERR_UNSUPPORTED  a recognised image we do not decode ("GIF images are not supported",
 *                     "animated WebP images are not supported", 12-bit JPEG, …)
 *   QERR_LIMIT        input bytes, a side or the pixel count over a limit; always detected from
 *                     the header, before any pixel memory is allocated
 *
 * Threads: no shared state; any thread may call in, each with its own output.
 */
#ifndef QVL_IMG_DECODE_H
#define QVL_IMG_DECODE_H

#include <stdbool.h>
#include <stddef.h>

#include "img.h"
#include "qerr.h"

/* No side of a decoded image may exceed this (JPEG's own maximum is 65500, WebP's 16383;
 * Pillow has no per-side cap, only the pixel count). */
#define IMG_DECODE_MAX_SIDE 65535

/* Decode data[0, len) into out (format from the magic bytes). lim may be NULL (defaults); a
 * zero field of lim means its default. On success out->w, out->h > 0 and out->px (owned by the
 * caller: img_rgb_deinit) holds h*w*3 bytes. On failure returns -QERR_FORMAT, -QERR_UNSUPPORTED
 * or -QERR_LIMIT with the reason in e, and *out is {0, 0, NULL}. */
int img_decode(const void *data, size_t len, const img_limits *lim, img_rgb *out, qerr *e);

/* A consumer of rows while they are decoded (the responder hashes an image's first rows while
 * its last ones are still being decoded). Both calls come on the decoding thread:
 *   rows(ctx, img, n)  rows [0, n) of img are final; n only grows. PNG (not interlaced) and
 *                      JPEG call it after every row; on success every format ends with
 *                      n = img->h. img->w, img->h and img->px do not change until end.
 *   end(ctx, ok)       decoding is over (ok: it succeeded); called before img_decode_rows
 *                      returns or frees anything: once end returns, the sink must not read
 *                      img (a consumer thread is stopped or joined here). */
typedef struct img_row_sink {
	void (*rows)(void *ctx, const img_rgb *img, int n);
	void (*end)(void *ctx, bool ok);
	void *ctx;
} img_row_sink;

/* img_decode, telling sink (NULL: none) of the rows as they are decoded. The pixels and errors
 * are img_decode's. */
int img_decode_rows(const void *data, size_t len, const img_limits *lim, img_rgb *out,
		    const img_row_sink *sink, qerr *e);

/* Read only the header: *w, *h as the header states them and *format ("png", "jpeg", "webp",
 * a static string). No limits are applied (the caller compares), but the header must be
 * well-formed and name a size of at least 1×1. Fails like img_decode (never QERR_LIMIT);
 * on failure *w = *h = 0 and *format = NULL. Any of w, h, format may be NULL. */
int img_probe(const void *data, size_t len, int *w, int *h, const char **format, qerr *e);

#endif
