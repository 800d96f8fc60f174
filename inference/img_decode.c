/*
 * img_decode: PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp) bytes to 8-bit RGB, the
 * same bytes Pillow's Image.open(...).convert("RGB") gives, because the model was trained and
 * is served by transformers on exactly those pixels (spec §4.1).
 *
 *   bytes ─sniff magic─┬─ PNG  ─ libpng progressive reader ─ raw rows ─ png_row_rgb ─┐
 *                      ├─ JPEG ─ libjpeg (ISLOW, fancy upsampling) ─ gray/RGB/CMYK ──┼─► img_rgb
 *                      ├─ WebP ─ WebPDecode(MODE_RGB) ────────────────────────────────┘
 *                      └─ anything else: QERR_UNSUPPORTED (GIF, BMP, …) or QERR_FORMAT
 *
 * What Pillow does, and so what we do (checked against Pillow's source, 9.4 and 12.x, and
 * byte-compared with Pillow 9.4 and 11.0 on every file in tests/data/images):
 *   PNG   gray 1/2/4-bit: scaled to 0..255 (×255, ×85, ×17). gray 16-bit: Pillow opens mode "I"
 *         (≤10.2) or "I;16" (≥10.3) and both convert to RGB by CLIPPING the 16-bit value to 255,
 *         not by taking the high byte; so a 16-bit gray PNG comes out mostly white. RGB, RGBA,
 *         gray+alpha 16-bit: the high (first, big-endian) byte of each sample. Alpha is dropped,
 *         never composited; tRNS is ignored (palette lookup only). A palette index past the
 *         PLTE entries gives black (Pillow ≥10.1; 9.4 gave the gray ramp (i,i,i)). Interlaced:
 *         same pixels. Gamma, iCCP, sRGB, sBIT: ignored (Pillow ignores them too). APNG: the
 *         default image (Pillow's frame 0).
 *         CRCs: Pillow checks the CRC of every chunk before the first IDAT and none after, and
 *         accepts a file cut short once every image row has been decoded (missing IEND, cut
 *         Adler-32 or CRC). We read with libpng's progressive reader so that "all rows decoded"
 *         is known exactly, and relax the CRC checks when the first IDAT arrives.
 *   JPEG  Pillow's decoder: libjpeg defaults (JDCT_ISLOW, fancy upsampling), out_color_space
 *         GRAYSCALE / RGB / CMYK by the number of components; warnings ("Corrupt JPEG data: …")
 *         are ignored, errors fail. Input that runs out before the last scanline fails ("image
 *         file is truncated" in Pillow); once every scanline is out, a missing EOI is fine.
 *         4 components: Pillow always assumes Adobe polarity ("CMYK;I": every channel
 *         inverted, whether or not an Adobe APP14 marker is present; YCCK is turned into CMYK
 *         by libjpeg first), then converts CMYK to RGB with
 *             nk = 255 − K;  R = clip(nk − (C·nk + 128 + ((C·nk + 128) >> 8)) >> 8)   (same G, B)
 *         where C, K are the inverted samples. We do exactly that.
 *   WebP  Pillow decodes through WebPAnimDecoder into non-premultiplied RGBA/RGBX and drops
 *         alpha: the RGB equals WebPDecode in MODE_RGB. Animated WebP is refused here
 *         (QERR_UNSUPPORTED); Pillow would give frame 0.
 *   EXIF orientation is NOT applied (transformers' load_image applies ImageOps.exif_transpose
 *   before convert; the caller does that, if anyone does).
 *
 * Where we knowingly differ from Pillow, only ever on damaged or hostile input (decoding every
 * prefix and 60 random one-byte changes of each test image, next to Pillow 11, found only the
 * first): a PNG chunk length over 2^31−1 after the image rows (libpng refuses it, Pillow reads
 * what is there); a PNG with an unknown critical chunk (libpng refuses it, Pillow skips it);
 * JPEGs with more than JPEG_MAX_SCANS scans (refused: a known slow-decode DoS of progressive
 * JPEG); animated WebP (refused, see above); WebP containers that WebPDecode accepts and
 * WebPDemux would not; sizes over IMG_DECODE_MAX_SIDE per side.
 *
 * Limits: input bytes are checked first, then each format's header gives the size, which must
 * pass the side cap and lim->max_pixels before any pixel buffer exists. Working memory per
 * pixel, besides the 3-byte output: up to 8 bytes for an interlaced PNG (16-bit RGBA), about
 * 2 bytes per component for a progressive JPEG (libjpeg's coefficient buffers), nothing else.
 *
 * Errors: libpng and libjpeg report through callbacks that longjmp. Each library runs inside one
 * small function (png_run, jpeg_run) that holds the setjmp and touches only the decoder
 * struct owned by its caller; everything allocated is reachable from that struct, so the
 * caller frees it on either path and no local needs to be volatile.
 *
 * Rows as they come: img_decode_rows tells a sink of every final row (PNG without interlacing,
 * JPEG: after each row is converted to RGB; otherwise all at the end), so that a consumer can
 * work on the top of an image while the bottom is decoded.
 *
 * Threads: no globals; every call owns its decoder state.
 */
#include "img_decode.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>

#include "alloc.h"
#include "log.h"

/* libjpeg-turbo's own fuzzers stop at 500 scans (TJFLAG_LIMITSCANS): a progressive file of
 * thousands of tiny scans takes minutes to decode. Real encoders write about ten. */
#define JPEG_MAX_SCANS 500

#define DEC_MSG_MAX 256

enum img_fmt { FMT_NONE, FMT_PNG, FMT_JPEG, FMT_WEBP };

void img_rgb_deinit(img_rgb *im)
{
	if (!im)
		return;
	free(im->px);
	im->px = NULL;
	im->w = im->h = 0;
}

/* ---- format detection ---------------------------------------------------------------------- */

static int starts(const uint8_t *p, size_t n, const char *magic, size_t m)
{
	return n >= m && memcmp(p, magic, m) == 0;
}

/* The image formats we do not decode, named so that the error tells the user what they sent. */
static const char *other_format(const uint8_t *p, size_t n)
{
	if (starts(p, n, "GIF8", 4))
		return "GIF";
	if (starts(p, n, "BM", 2))
		return "BMP";
	if (starts(p, n, "II*\0", 4) || starts(p, n, "MM\0*", 4))
		return "TIFF";
	if (starts(p, n, "\0\0\1\0", 4))
		return "ICO";
	if (starts(p, n, "8BPS", 4))
		return "PSD";
	if (starts(p, n, "%PDF", 4))
		return "PDF";
	if (starts(p, n, "qoif", 4))
		return "QOI";
	if (starts(p, n, "\0\0\0\x0cjP  \r\n\x87\n", 12) || starts(p, n, "\xff\x4f\xff\x51", 4))
		return "JPEG 2000";
	if (starts(p, n, "\0\0\0\x0cJXL \r\n\x87\n", 12) || starts(p, n, "\xff\x0a", 2))
		return "JPEG XL";
	if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
		const uint8_t *b = p + 8;
		if (!memcmp(b, "avif", 4) || !memcmp(b, "avis", 4))
			return "AVIF";
		if (!memcmp(b, "heic", 4) || !memcmp(b, "heix", 4) || !memcmp(b, "mif1", 4) ||
		    !memcmp(b, "msf1", 4) || !memcmp(b, "hevc", 4) || !memcmp(b, "heim", 4))
			return "HEIF";
		return "MP4/QuickTime (video)";
	}
	if (starts(p, n, "RIFF", 4))
		return "RIFF (not WebP)";
	if (starts(p, n, "<?xml", 5) || starts(p, n, "<svg", 4))
		return "SVG/XML";
	if (n >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7' &&
	    (p[2] == '\n' || p[2] == ' ' || p[2] == '\r' || p[2] == '\t'))
		return "PNM";
	return NULL;
}

/* The format of data by its first bytes (as Pillow's _accept functions look at them). */
static int sniff(const uint8_t *p, size_t n, enum img_fmt *fmt, qerr *e)
{
	*fmt = FMT_NONE;
	if (n == 0)
		return qerr_set(e, QERR_FORMAT, "empty image data");
	if (starts(p, n, "\x89PNG", 4)) {
		*fmt = FMT_PNG;
		return 0;
	}
	if (starts(p, n, "\xff\xd8\xff", 3)) {
		*fmt = FMT_JPEG;
		return 0;
	}
	if (starts(p, n, "RIFF", 4) && (n < 12 || memcmp(p + 8, "WEBP", 4) == 0)) {
		if (n < 12)
			return qerr_set(e, QERR_FORMAT, "truncated WebP");
		*fmt = FMT_WEBP;
		return 0;
	}
	const char *other = other_format(p, n);
	if (other)
		return qerr_set(e, QERR_UNSUPPORTED,
				"%s images are not supported (PNG, JPEG and WebP are)", other);
	uint8_t b[4] = {0};
	memcpy(b, p, n < 4 ? n : 4);
	return qerr_set(e, QERR_FORMAT,
			"unrecognised image data (%zu bytes starting %02x %02x %02x %02x)",
			n, b[0], b[1], b[2], b[3]);
}

/* The size a header states, against the side cap and the pixel limit (0: no pixel limit,
 * for img_probe). Fails with a message in msg (DEC_MSG_MAX bytes) and returns the code. */
static int check_size(const char *fmt, uint64_t w, uint64_t h, uint64_t max_pixels, char *msg)
{
	if (w == 0 || h == 0) {
		snprintf(msg, DEC_MSG_MAX, "%s: empty image (%llux%llu)", fmt,
			 (unsigned long long)w, (unsigned long long)h);
		return QERR_FORMAT;
	}
	if (max_pixels == 0)   /* img_probe: every format's header field fits an int */
		return 0;
	if (w > IMG_DECODE_MAX_SIDE || h > IMG_DECODE_MAX_SIDE) {
		snprintf(msg, DEC_MSG_MAX, "%s: image of %llux%llu exceeds the limit of %d pixels "
			 "per side", fmt, (unsigned long long)w, (unsigned long long)h,
			 IMG_DECODE_MAX_SIDE);
		return QERR_LIMIT;
	}
	if (w * h > max_pixels) {   /* both ≤ 65535: no overflow */
		snprintf(msg, DEC_MSG_MAX, "%s: image of %llux%llu = %llu pixels exceeds the "
			 "limit of %llu pixels", fmt, (unsigned long long)w, (unsigned long long)h,
			 (unsigned long long)(w * h), (unsigned long long)max_pixels);
		return QERR_LIMIT;
	}
	return 0;
}

/* out->px for a w×h image whose size already passed check_size. */
static void rgb_alloc(img_rgb *out, uint32_t w, uint32_t h)
{
	out->w = (int)w;
	out->h = (int)h;
	out->px = xmalloc((size_t)w * h * 3);
}

/* ---- PNG ------------------------------------------------------------------------------------ */

typedef struct png_dec {
	png_structp png;           /* owned, with info */
	png_infop info;
	const uint8_t *data;       /* borrowed */
	size_t len;
	uint64_t max_pixels;
	int probe;                 /* stop at the header */
	/* from IHDR */
	uint32_t w, h;
	int depth, ctype, interlaced;
	uint8_t pal[256 * 3];      /* PLTE, black past its entries (Pillow ≥ 10.1) */
	size_t rowbytes;           /* of a raw row after png_set_packing */
	/* progress */
	int have_header;           /* png_on_info ran and passed */
	uint8_t *raw;              /* owned: interlaced only, h*rowbytes, combined by libpng */
	img_rgb *out;              /* borrowed; out->px owned by out once allocated */
	const img_row_sink *sink;  /* borrowed; NULL: none */
	/* failure */
	int err_code;              /* QERR_* set by a callback, 0 for a libpng error */
	int stopped;               /* probe: longjmp after the header, not an error */
	char msg[DEC_MSG_MAX];
	char warning[DEC_MSG_MAX]; /* the first warning after the header ("" if none) */
	char last_warning[DEC_MSG_MAX];   /* the latest warning, for context of an error */
} png_dec;

/* libpng often warns with the detail before it fails ("Image width is zero in IHDR", then
 * "Invalid IHDR data"): the message carries both. */
static void png_on_error(png_structp png, png_const_charp msg)
{
	png_dec *d = png_get_error_ptr(png);
	if (d->last_warning[0])
		snprintf(d->msg, sizeof(d->msg), "PNG: %s (%.100s)", msg, d->last_warning);
	else
		snprintf(d->msg, sizeof(d->msg), "PNG: %s", msg);
	png_longjmp(png, 1);
}

/* Warnings include libpng's "benign errors"; in the image data they stop decoding (a damaged
 * zlib stream is one), which is then reported with the first such warning. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
	png_dec *d = png_get_error_ptr(png);
	log_msg(LOG_LEVEL_DEBUG, "img", "PNG warning: %s", msg);
	snprintf(d->last_warning, sizeof(d->last_warning), "%s", msg);
	if (d->have_header && !d->warning[0])
		snprintf(d->warning, sizeof(d->warning), "%s", msg);
}

/* One raw row (after png_set_packing: ≥ 1 byte per sample, 16-bit big-endian) to RGB. */
static void png_row_rgb(const png_dec *d, const uint8_t *s, uint8_t *o)
{
	uint32_t w = d->w;
	int wide = d->depth == 16;
	switch (d->ctype) {
	case PNG_COLOR_TYPE_GRAY:
		for (uint32_t x = 0; x < w; x++, o += 3) {
			uint8_t v;
			switch (d->depth) {
			case 1: v = s[x] ? 255 : 0; break;
			case 2: v = (uint8_t)(s[x] * 0x55); break;
			case 4: v = (uint8_t)(s[x] * 0x11); break;
			case 8: v = s[x]; break;
			/* Pillow: mode I / I;16, then convert clips to 0..255 */
			default: v = s[2 * x] ? 255 : s[2 * x + 1]; break;
			}
			o[0] = o[1] = o[2] = v;
		}
		break;
	case PNG_COLOR_TYPE_GRAY_ALPHA:
		for (uint32_t x = 0; x < w; x++, o += 3)
			o[0] = o[1] = o[2] = s[x * (wide ? 4 : 2)];
		break;
	case PNG_COLOR_TYPE_RGB:
		if (!wide) {
			memcpy(o, s, (size_t)w * 3);
			break;
		}
		for (uint32_t x = 0; x < w; x++, o += 3, s += 6) {
			o[0] = s[0];
			o[1] = s[2];
			o[2] = s[4];
		}
		break;
	case PNG_COLOR_TYPE_RGB_ALPHA:
		for (uint32_t x = 0; x < w; x++, o += 3, s += wide ? 8 : 4) {
			o[0] = s[0];
			o[1] = s[wide ? 2 : 1];
			o[2] = s[wide ? 4 : 2];
		}
		break;
	case PNG_COLOR_TYPE_PALETTE:
		for (uint32_t x = 0; x < w; x++, o += 3)
			memcpy(o, d->pal + 3 * s[x], 3);
		break;
	}
}

/* All chunks before the first IDAT have been read (and CRC-checked): size, limits, buffers. */
static void png_on_info(png_structp png, png_infop info)
{
	png_dec *d = png_get_progressive_ptr(png);
	png_uint_32 w, h;
	int interlace;
	png_get_IHDR(png, info, &w, &h, &d->depth, &d->ctype, &interlace, NULL, NULL);
	d->w = w;
	d->h = h;
	d->interlaced = interlace != PNG_INTERLACE_NONE;
	if (d->probe) {
		d->stopped = 1;
		png_longjmp(png, 1);
	}
	int code = check_size("PNG", w, h, d->max_pixels, d->msg);
	if (code) {
		d->err_code = code;
		png_longjmp(png, 1);
	}
	if (d->ctype == PNG_COLOR_TYPE_PALETTE) {
		png_colorp plte = NULL;
		int n = 0;
		if (png_get_PLTE(png, info, &plte, &n) && plte) {
			for (int i = 0; i < n && i < 256; i++) {
				d->pal[3 * i + 0] = plte[i].red;
				d->pal[3 * i + 1] = plte[i].green;
				d->pal[3 * i + 2] = plte[i].blue;
			}
		}
	}
	/* Pillow never checks a CRC from the first IDAT on; neither do we from here. */
	png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
	if (d->depth < 8)
		png_set_packing(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, info);
	d->rowbytes = png_get_rowbytes(png, info);
	int spp = d->ctype == PNG_COLOR_TYPE_RGB ? 3 : d->ctype == PNG_COLOR_TYPE_RGB_ALPHA ? 4 :
		  d->ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
	if (d->rowbytes != (size_t)w * (size_t)spp * (d->depth == 16 ? 2 : 1)) {
		snprintf(d->msg, sizeof(d->msg), "PNG: unexpected row size %zu", d->rowbytes);
		d->err_code = QERR_FORMAT;
		png_longjmp(png, 1);
	}
	if (d->interlaced)   /* rowbytes ≤ 8 * 65535 and h ≤ 65535: fits size_t */
		d->raw = xcalloc(h, d->rowbytes);
	rgb_alloc(d->out, w, h);
	d->have_header = 1;
}

/* Interlaced, libpng calls this for every image row of every pass (NULL: nothing new for the
 * row), and png_progressive_combine_row puts the pass's pixels in place. */
static void png_on_row(png_structp png, png_bytep row, png_uint_32 y, int pass)
{
	(void)pass;
	png_dec *d = png_get_progressive_ptr(png);
	if (!row || y >= d->h)
		return;
	if (d->interlaced) {
		png_progressive_combine_row(png, d->raw + (size_t)y * d->rowbytes, row);
	} else {
		png_row_rgb(d, row, d->out->px + (size_t)y * d->w * 3);
		/* rows come in order, each once: rows [0, y] are final */
		if (d->sink)
			d->sink->rows(d->sink->ctx, d->out, (int)y + 1);
	}
}

/* Every row of every pass decoded? libpng counts rows (row number reaches the height) and,
 * interlaced, passes (the pass number reaches 7) after each row's callback returned. */
static int png_complete(const png_dec *d)
{
	if (!d->have_header)
		return 0;
	if (d->interlaced)
		return png_get_current_pass_number(d->png) >= 7;
	return png_get_current_row_number(d->png) >= d->h;
}

static void png_on_end(png_structp png, png_infop info)
{
	(void)png;
	(void)info;
}

/* All libpng work; the one frame holding the setjmp. Returns 0, or -1 after a longjmp. */
static int png_run(png_dec *d)
{
	if (setjmp(png_jmpbuf(d->png)))
		return -1;
	/* libpng's own user limits (1e6) would fail with a format error; we want QERR_LIMIT */
	png_set_user_limits(d->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
	/* Ancillary chunks are skipped unparsed (their CRC is still checked); only IHDR, PLTE,
	 * tRNS, IDAT and IEND are read. */
	png_set_keep_unknown_chunks(d->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
	/* Before the first IDAT, a bad CRC in any chunk is an error (Pillow: "broken PNG file") */
	png_set_crc_action(d->png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
	png_set_progressive_read_fn(d->png, d, png_on_info, png_on_row, png_on_end);
	/* libpng reads but does not write the buffer */
	png_process_data(d->png, d->info, (png_bytep)(uintptr_t)d->data, d->len);
	return 0;
}

static int png_decode(const uint8_t *p, size_t n, uint64_t max_pixels, img_rgb *out,
		      const img_row_sink *sink, uint32_t *w, uint32_t *h, qerr *e)
{
	png_dec *d = xcalloc(1, sizeof(*d));   /* 1 KB of palette: keep it off small stacks */
	d->sink = sink;
	d->data = p;
	d->len = n;
	d->max_pixels = max_pixels;
	d->probe = out == NULL;
	d->out = out;
	d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_on_error, png_on_warning);
	if (d->png)
		d->info = png_create_info_struct(d->png);
	if (!d->png || !d->info) {
		log_msg(LOG_LEVEL_CRIT, "img", "libpng: out of memory creating a reader");
		abort();
	}
	int failed = png_run(d) < 0;
	int rc = 0;
	if (d->stopped) {
		if (check_size("PNG", d->w, d->h, 0, d->msg))
			rc = qerr_set(e, QERR_FORMAT, "%s", d->msg);
	} else if (d->err_code) {
		rc = qerr_set(e, d->err_code, "%s", d->msg);
	} else if (png_complete(d)) {
		/* every row decoded: whatever came after (or did not) does not matter */
		if (d->interlaced)
			for (uint32_t y = 0; y < d->h; y++)
				png_row_rgb(d, d->raw + (size_t)y * d->rowbytes,
					    out->px + (size_t)y * d->w * 3);
	} else if (failed) {
		rc = qerr_set(e, QERR_FORMAT, "%s", d->msg);
	} else if (d->warning[0]) {
		/* e.g. any zlib data error reads "IDAT: IDAT: ADLER32 checksum mismatch" */
		rc = qerr_set(e, QERR_FORMAT, "PNG: corrupt image data (libpng: %s)", d->warning);
	} else {
		rc = qerr_set(e, QERR_FORMAT, "truncated PNG (%s)",
			      d->have_header ? "image data cut short" : "no image data");
	}
	*w = d->w;
	*h = d->h;
	png_destroy_read_struct(&d->png, &d->info, NULL);
	free(d->raw);
	free(d);
	return rc;
}

/* ---- JPEG ----------------------------------------------------------------------------------- */

typedef struct jpeg_dec {
	struct jpeg_decompress_struct cinfo;   /* created when created != 0 */
	struct jpeg_error_mgr jerr;
	struct jpeg_progress_mgr progress;
	jmp_buf jb;
	int created;
	const uint8_t *data;       /* borrowed */
	size_t len;
	uint64_t max_pixels;
	int probe;
	uint32_t w, h;
	int rows_done;             /* every scanline read: running out of input is fine now */
	uint8_t *row;              /* owned: one gray or CMYK scanline */
	img_rgb *out;              /* borrowed */
	const img_row_sink *sink;  /* borrowed; NULL: none */
	int err_code;
	char msg[DEC_MSG_MAX];
} jpeg_dec;

static void jpeg_on_error(j_common_ptr c)
{
	jpeg_dec *d = c->client_data;
	char buf[JMSG_LENGTH_MAX];
	(*c->err->format_message)(c, buf);
	switch (c->err->msg_code) {
	case JERR_BAD_PRECISION:
	case JERR_CONVERSION_NOTIMPL:
		d->err_code = QERR_UNSUPPORTED;
		break;
	case JERR_IMAGE_TOO_BIG:
		d->err_code = QERR_LIMIT;
		break;
	default:
		d->err_code = QERR_FORMAT;
	}
	snprintf(d->msg, sizeof(d->msg), "JPEG: %s", buf);
	longjmp(d->jb, 1);
}

/* Warnings (level −1) are ignored as Pillow ignores them, except the memory source's "Premature
 * end of JPEG file" before the last scanline: Pillow fails there ("image file is truncated"). */
static void jpeg_on_message(j_common_ptr c, int level)
{
	jpeg_dec *d = c->client_data;
	if (level >= 0)
		return;
	c->err->num_warnings++;
	if (c->err->msg_code == JWRN_JPEG_EOF && !d->rows_done) {
		snprintf(d->msg, sizeof(d->msg), "truncated JPEG (premature end of data)");
		d->err_code = QERR_FORMAT;
		longjmp(d->jb, 1);
	}
	if (LOG_ENABLED(LOG_LEVEL_DEBUG)) {
		char buf[JMSG_LENGTH_MAX];
		(*c->err->format_message)(c, buf);
		log_msg(LOG_LEVEL_DEBUG, "img", "JPEG warning: %s", buf);
	}
}

static void jpeg_on_output(j_common_ptr c)
{
	(void)c;
}

static void jpeg_on_progress(j_common_ptr c)
{
	jpeg_dec *d = c->client_data;
	if (d->cinfo.input_scan_number > JPEG_MAX_SCANS) {
		snprintf(d->msg, sizeof(d->msg), "JPEG: more than %d scans", JPEG_MAX_SCANS);
		d->err_code = QERR_LIMIT;
		longjmp(d->jb, 1);
	}
}

/* Pillow's "CMYK;I" unpacker (invert) followed by its cmyk2rgb. */
static void cmyk_row_rgb(const uint8_t *s, uint8_t *o, uint32_t w)
{
	for (uint32_t x = 0; x < w; x++, s += 4, o += 3) {
		int nk = 255 - (255 - s[3]);   /* 255 − inverted K */
		for (int c = 0; c < 3; c++) {
			int t = (255 - s[c]) * nk + 128;   /* inverted C · nk + 128 */
			int v = nk - (((t >> 8) + t) >> 8);
			o[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
		}
	}
}

/* All libjpeg work; the one frame holding the setjmp. Returns 0, or -1 on failure (err_code and
 * msg set). */
static int jpeg_run(jpeg_dec *d)
{
	if (setjmp(d->jb))
		return -1;
	struct jpeg_decompress_struct *ci = &d->cinfo;
	d->created = 1;
	jpeg_create_decompress(ci);   /* keeps err and client_data, zeroes the rest */
	d->progress.progress_monitor = jpeg_on_progress;
	ci->progress = &d->progress;
	jpeg_mem_src(ci, d->data, (unsigned long)d->len);
	jpeg_read_header(ci, TRUE);
	d->w = ci->image_width;
	d->h = ci->image_height;
	if (d->probe)
		return 0;
	int code = check_size("JPEG", d->w, d->h, d->max_pixels, d->msg);
	if (code) {
		d->err_code = code;
		return -1;
	}
	int nc = ci->num_components;
	if (nc != 1 && nc != 3 && nc != 4) {
		/* Pillow: "cannot handle N-layer images" */
		snprintf(d->msg, sizeof(d->msg), "JPEG: %d-component images are not supported", nc);
		d->err_code = QERR_UNSUPPORTED;
		return -1;
	}
	ci->out_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
	ci->dct_method = JDCT_ISLOW;
	ci->do_fancy_upsampling = TRUE;
	jpeg_start_decompress(ci);
	if (ci->output_width != d->w || ci->output_height != d->h ||
	    ci->output_components != nc) {
		snprintf(d->msg, sizeof(d->msg), "JPEG: decoder output %ux%u×%d, expected %ux%u×%d",
			 ci->output_width, ci->output_height, ci->output_components,
			 d->w, d->h, nc);
		d->err_code = QERR_FORMAT;
		return -1;
	}
	rgb_alloc(d->out, d->w, d->h);
	if (nc != 3)
		d->row = xmalloc((size_t)d->w * (size_t)nc);
	while (ci->output_scanline < ci->output_height) {
		uint8_t *o = d->out->px + (size_t)ci->output_scanline * d->w * 3;
		JSAMPROW r = nc == 3 ? o : d->row;
		if (jpeg_read_scanlines(ci, &r, 1) != 1) {
			/* a memory source never suspends; never loop on it */
			snprintf(d->msg, sizeof(d->msg), "JPEG: decoder suspended");
			d->err_code = QERR_FORMAT;
			return -1;
		}
		if (nc == 1)
			for (uint32_t x = 0; x < d->w; x++)
				o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = d->row[x];
		else if (nc == 4)
			cmyk_row_rgb(d->row, o, d->w);
		if (d->sink)
			d->sink->rows(d->sink->ctx, d->out, (int)ci->output_scanline);
	}
	d->rows_done = 1;
	jpeg_finish_decompress(ci);
	return 0;
}

static int jpeg_decode(const uint8_t *p, size_t n, uint64_t max_pixels, img_rgb *out,
		       const img_row_sink *sink, uint32_t *w, uint32_t *h, qerr *e)
{
	jpeg_dec *d = xcalloc(1, sizeof(*d));
	d->sink = sink;
	d->data = p;
	d->len = n;
	d->max_pixels = max_pixels;
	d->probe = out == NULL;
	d->out = out;
	d->cinfo.err = jpeg_std_error(&d->jerr);
	d->jerr.error_exit = jpeg_on_error;
	d->jerr.emit_message = jpeg_on_message;
	d->jerr.output_message = jpeg_on_output;
	d->cinfo.client_data = d;
	int rc = 0;
	if (jpeg_run(d) < 0)
		rc = qerr_set(e, d->err_code ? d->err_code : QERR_FORMAT, "%s", d->msg);
	else if (d->probe && check_size("JPEG", d->w, d->h, 0, d->msg))
		rc = qerr_set(e, QERR_FORMAT, "%s", d->msg);
	*w = d->w;
	*h = d->h;
	if (d->created)
		jpeg_destroy_decompress(&d->cinfo);
	free(d->row);
	free(d);
	return rc;
}

/* ---- WebP ----------------------------------------------------------------------------------- */

static int webp_status(VP8StatusCode st, qerr *e)
{
	switch (st) {
	case VP8_STATUS_NOT_ENOUGH_DATA:
		return qerr_set(e, QERR_FORMAT, "truncated WebP");
	case VP8_STATUS_UNSUPPORTED_FEATURE:
		return qerr_set(e, QERR_UNSUPPORTED, "WebP: unsupported feature");
	case VP8_STATUS_OUT_OF_MEMORY:
		return qerr_set(e, QERR_LIMIT, "WebP: decoder out of memory");
	case VP8_STATUS_BITSTREAM_ERROR:
		return qerr_set(e, QERR_FORMAT, "WebP: corrupt bitstream");
	case VP8_STATUS_INVALID_PARAM:
		return qerr_set(e, QERR_FORMAT, "WebP: invalid header");
	default:
		return qerr_set(e, QERR_FORMAT, "WebP: decoding failed (status %d)", (int)st);
	}
}

static int webp_decode(const uint8_t *p, size_t n, uint64_t max_pixels, img_rgb *out,
		       uint32_t *w, uint32_t *h, qerr *e)
{
	WebPDecoderConfig cfg;
	if (!WebPInitDecoderConfig(&cfg))
		return qerr_set(e, QERR_UNSUPPORTED, "WebP: libwebp version mismatch");
	VP8StatusCode st = WebPGetFeatures(p, n, &cfg.input);
	if (st != VP8_STATUS_OK)
		return webp_status(st, e);
	*w = (uint32_t)cfg.input.width;
	*h = (uint32_t)cfg.input.height;
	if (cfg.input.has_animation)
		return qerr_set(e, QERR_UNSUPPORTED, "animated WebP images are not supported");
	char msg[DEC_MSG_MAX];
	int code = check_size("WebP", *w, *h, out ? max_pixels : 0, msg);
	if (code)
		return qerr_set(e, code, "%s", msg);
	if (!out)
		return 0;
	rgb_alloc(out, *w, *h);
	cfg.output.colorspace = MODE_RGB;
	cfg.output.is_external_memory = 1;
	cfg.output.u.RGBA.rgba = out->px;
	cfg.output.u.RGBA.stride = (int)(*w * 3);
	cfg.output.u.RGBA.size = (size_t)*w * *h * 3;
	st = WebPDecode(p, n, &cfg);
	WebPFreeDecBuffer(&cfg.output);   /* external memory: frees nothing of ours */
	if (st != VP8_STATUS_OK)
		return webp_status(st, e);
	return 0;
}

/* ---- API ------------------------------------------------------------------------------------ */

int img_decode(const void *data, size_t len, const img_limits *lim, img_rgb *out, qerr *e)
{
	return img_decode_rows(data, len, lim, out, NULL, e);
}

int img_decode_rows(const void *data, size_t len, const img_limits *lim, img_rgb *out,
		    const img_row_sink *sink, qerr *e)
{
	out->w = out->h = 0;
	out->px = NULL;
	uint64_t max_pixels = lim && lim->max_pixels ? lim->max_pixels : IMG_DEFAULT_MAX_PIXELS;
	size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : IMG_DEFAULT_MAX_BYTES;
	enum img_fmt fmt;
	int rc;
	if (len > max_bytes)
		rc = qerr_set(e, QERR_LIMIT, "image data of %zu bytes exceeds the limit of %zu bytes",
			      len, max_bytes);
	else
		rc = sniff(data, len, &fmt, e);
	uint32_t w = 0, h = 0;
	if (!rc) {
		switch (fmt) {
		case FMT_PNG: rc = png_decode(data, len, max_pixels, out, sink, &w, &h, e); break;
		case FMT_JPEG: rc = jpeg_decode(data, len, max_pixels, out, sink, &w, &h, e); break;
		default: rc = webp_decode(data, len, max_pixels, out, &w, &h, e); break;
		}
	}
	if (sink) {
		if (!rc)
			sink->rows(sink->ctx, out, out->h);
		sink->end(sink->ctx, rc == 0);
	}
	if (rc)
		img_rgb_deinit(out);
	return rc;
}

int img_probe(const void *data, size_t len, int *w, int *h, const char **format, qerr *e)
{
	if (w)
		*w = 0;
	if (h)
		*h = 0;
	if (format)
		*format = NULL;
	enum img_fmt fmt;
	int rc = sniff(data, len, &fmt, e);
	if (rc)
		return rc;
	uint32_t pw = 0, ph = 0;
	const char *name;
	switch (fmt) {
	case FMT_PNG: rc = png_decode(data, len, 0, NULL, NULL, &pw, &ph, e); name = "png"; break;
	case FMT_JPEG: rc = jpeg_decode(data, len, 0, NULL, NULL, &pw, &ph, e); name = "jpeg"; break;
	default: rc = webp_decode(data, len, 0, NULL, &pw, &ph, e); name = "webp"; break;
	}
	if (rc)
		return rc;
	if (w)
		*w = (int)pw;
	if (h)
		*h = (int)ph;
	if (format)
		*format = name;
	return 0;
}
