#!/usr/bin/env python3
"""
Regenerates the test images of tests/check_img_decode.c and their expected RGB hashes.

    python3 gen_images.py gen      # writes the images into this directory (needs Pillow with
                                   # WebP support, gcc and the libjpeg headers)
    python3 gen_images.py expect   # prints, for every image, Pillow's Image.open(f).convert("RGB")
                                   # size and the FNV-1a-64 of its bytes, one JSON line each
    python3 gen_images.py merge NEW.jsonl OLD.jsonl   # NEW with OLD's differences as pil94_*

PNG files are written by the small encoder below (every colour type and bit depth, Adam7,
all five filter types, split IDAT, APNG chunks, a bad IDAT CRC, a missing IEND), so that each
libpng path is exercised on purpose. JPEG files come from Pillow (baseline, progressive, gray,
4:2:0/4:2:2/4:4:4, CMYK with Adobe marker, EXIF orientation) and from a 60-line libjpeg program
(YCCK, CMYK without Adobe marker, RGB colour space, restart intervals). WebP from Pillow.
expected.jsonl committed here is `merge` of `expect` run under Pillow 11.0.0 (built from source
against the system libjpeg-turbo 2.1.5 and libwebp 1.2.4) and under Debian's Pillow 9.4.0 (same
libraries): the pil94_* fields record where 9.4 differs (png_pal4_short: indices past the
palette were a gray ramp before Pillow 10.1; png_gray16: mode "I" before 10.3, same pixels).
"""
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


class Lcg:
    """A fixed pseudo-random sequence (the test images must never change by accident)."""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF

    def next(self):
        self.s = (self.s * 1664525 + 1013904223) & 0xFFFFFFFF
        return self.s >> 8


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for c in b:
        h ^= c
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


# ---- PNG encoder ---------------------------------------------------------------------------

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def chunk(typ, data, bad_crc=False):
    crc = zlib.crc32(typ + data) & 0xFFFFFFFF
    if bad_crc:
        crc ^= 0xDEADBEEF
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", crc)


def pack_row(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp, first_filter):
    """Filter each row, cycling through the five filter types."""
    out, prev = bytearray(), None
    for i, row in enumerate(rows):
        ft = (first_filter + i) % 5
        prior = prev if prev is not None else bytes(len(row))
        f = bytearray()
        for j, x in enumerate(row):
            a = row[j - bpp] if j >= bpp else 0
            b = prior[j]
            c = prior[j - bpp] if j >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            f.append((x - pred) & 0xFF)
        out += bytes([ft]) + f
        prev = row
    return bytes(out)


def png_bytes(w, h, depth, ctype, px, palette=None, trns=None, interlace=False, pre=(),
              idat_pieces=1, bad_idat_crc=False, iend=True, apng=False):
    """px(x, y) -> tuple of samples. pre: extra (type, data) chunks before IDAT."""
    ch = CHANNELS[ctype]
    bpp = max(1, ch * depth // 8)
    raw = b""
    if not interlace:
        rows = [pack_row([s for x in range(w) for s in px(x, y)], depth) for y in range(h)]
        raw = filter_rows(rows, bpp, 0)
    else:
        for p, (x0, y0, dx, dy) in enumerate(ADAM7):
            xs = list(range(x0, w, dx))
            ys = list(range(y0, h, dy))
            if not xs or not ys:
                continue
            rows = [pack_row([s for x in xs for s in px(x, y)], depth) for y in ys]
            raw += filter_rows(rows, bpp, p)
    z = zlib.compress(raw, 9)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0))
    for typ, data in pre:
        out += chunk(typ, data)
    if palette is not None:
        out += chunk(b"PLTE", b"".join(bytes(c) for c in palette))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    if apng:
        out += chunk(b"acTL", struct.pack(">II", 2, 0))
        out += chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, w, h, 0, 0, 1, 10, 0, 0))
    n = len(z)
    cuts = [n * i // idat_pieces for i in range(idat_pieces + 1)]
    for i in range(idat_pieces):
        out += chunk(b"IDAT", z[cuts[i]:cuts[i + 1]], bad_crc=bad_idat_crc and i == 0)
    if apng:   # a second frame, all black: libpng and Pillow's frame 0 both ignore it
        out += chunk(b"fcTL", struct.pack(">IIIIIHHBB", 1, w, h, 0, 0, 1, 10, 0, 0))
        fr = zlib.compress(b"".join(b"\0" + bytes(len(pack_row([0] * ch * w, depth)))
                                    for _ in range(h)))
        out += chunk(b"fdAT", struct.pack(">I", 2) + fr)
    if iend:
        out += chunk(b"IEND", b"")
    return out


def pattern(w, h, seed):
    """An RGB test picture: gradients, a few edges, and noise (so JPEG/WebP have detail)."""
    r = Lcg(seed)
    pix = []
    for y in range(h):
        for x in range(w):
            n = r.next() % 48
            red = (x * 255 // max(1, w - 1) + n) % 256
            green = (y * 255 // max(1, h - 1) + 2 * n) % 256
            blue = 255 if ((x // 5) + (y // 4)) % 2 else (x * y) % 256
            pix.append((red, green, blue))
    return pix


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def gen_png():
    r = Lcg(7)
    noise = [[r.next() for _ in range(400)] for _ in range(300)]

    def lv(x, y, bits):
        return noise[y][x] % (1 << bits)

    w, h = 17, 13
    for d in (1, 2, 4):
        write("png_gray%d.png" % d, png_bytes(w, h, d, 0, lambda x, y, d=d: (lv(x, y, d),)))
    write("png_gray8.png", png_bytes(33, 21, 8, 0, lambda x, y: (lv(x, y, 8),)))
    # 16-bit gray: a third of the samples below 256 (Pillow keeps those, clips the rest)
    write("png_gray16.png", png_bytes(33, 21, 16, 0, lambda x, y: (
        lv(x, y, 8) if (x + y) % 3 == 0 else lv(x, y, 16),)))
    write("png_gray8_trns.png", png_bytes(19, 11, 8, 0, lambda x, y: (lv(x, y, 2) * 85,),
                                          trns=struct.pack(">H", 85)))
    write("png_graya8.png", png_bytes(23, 17, 8, 4, lambda x, y: (lv(x, y, 8), lv(y, x, 8))))
    write("png_graya16.png", png_bytes(23, 17, 16, 4,
                                       lambda x, y: (lv(x, y, 16), lv(y, x, 16))))
    pic = pattern(64, 48, 1)
    write("png_rgb8.png", png_bytes(64, 48, 8, 2, lambda x, y: pic[y * 64 + x],
                                    pre=[(b"tEXt", b"Comment\0qvl test"),
                                         (b"gAMA", struct.pack(">I", 45455))]))
    write("png_rgb16.png", png_bytes(29, 19, 16, 2, lambda x, y: (
        lv(x, y, 16), lv(x + 1, y, 16), lv(x + 2, y, 16))))
    write("png_rgba8.png", png_bytes(31, 23, 8, 6, lambda x, y: (
        lv(x, y, 8), lv(x + 1, y, 8), lv(x + 2, y, 8), 0 if x < 10 else lv(x + 3, y, 8))))
    write("png_rgba16.png", png_bytes(21, 15, 16, 6, lambda x, y: (
        lv(x, y, 16), lv(x + 1, y, 16), lv(x + 2, y, 16), lv(x + 3, y, 16))))
    pal = [(lv(i, 0, 8), lv(i, 1, 8), lv(i, 2, 8)) for i in range(256)]
    write("png_pal8_trns.png", png_bytes(27, 19, 8, 3, lambda x, y: (lv(x, y, 8),), palette=pal,
                                         trns=bytes(lv(i, 3, 8) for i in range(100))))
    for d in (1, 2, 4):
        write("png_pal%d.png" % d, png_bytes(w, h, d, 3, lambda x, y, d=d: (lv(x, y, d),),
                                             palette=pal[:1 << d]))
    # indices 0..15 with a 5-entry palette: Pillow ≥10.1 gives black past the palette
    write("png_pal4_short.png", png_bytes(w, h, 4, 3, lambda x, y: (lv(x, y, 4),),
                                          palette=pal[:5]))
    # Adam7
    pic2 = pattern(37, 29, 2)
    write("png_rgb8_interlaced.png", png_bytes(37, 29, 8, 2, lambda x, y: pic2[y * 37 + x],
                                               interlace=True))
    write("png_gray2_interlaced.png", png_bytes(w, h, 2, 0, lambda x, y: (lv(x, y, 2),),
                                                interlace=True))
    write("png_rgba16_interlaced.png", png_bytes(11, 9, 16, 6, lambda x, y: (
        lv(x, y, 16), lv(x + 1, y, 16), lv(x + 2, y, 16), lv(x + 3, y, 16)), interlace=True))
    write("png_pal4_interlaced.png", png_bytes(w, h, 4, 3, lambda x, y: (lv(x, y, 4),),
                                               palette=pal[:16], interlace=True))
    write("png_1x1_interlaced.png", png_bytes(1, 1, 8, 2, lambda x, y: (10, 200, 30),
                                              interlace=True))
    write("png_3x2_interlaced.png", png_bytes(3, 2, 8, 0, lambda x, y: (lv(x, y, 8),),
                                              interlace=True))
    # container oddities Pillow accepts: IDAT in 7 pieces, the first with a bad CRC, no IEND
    write("png_split_badidatcrc_noiend.png", png_bytes(
        20, 20, 8, 2, lambda x, y: pic[y * 64 + x], idat_pieces=7, bad_idat_crc=True,
        iend=False))
    write("png_apng.png", png_bytes(16, 12, 8, 6, lambda x, y: (
        lv(x, y, 8), lv(x + 1, y, 8), lv(x + 2, y, 8), 255), apng=True))


# ---- JPEG ----------------------------------------------------------------------------------

JPEG_HELPER = r"""
/* mkjpeg in.rgb w h out.jpg mode: writes what Pillow cannot (YCCK, CMYK without Adobe
 * marker, RGB colour space, restart intervals) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
int main(int argc, char **argv)
{
	int w = atoi(argv[2]), h = atoi(argv[3]);
	const char *mode = argv[5];
	FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[4], "wb");
	unsigned char *rgb = malloc((size_t)w * h * 3);
	if (fread(rgb, 3, (size_t)w * h, in) != (size_t)w * h) return 1;
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr err;
	c.err = jpeg_std_error(&err);
	jpeg_create_compress(&c);
	jpeg_stdio_dest(&c, out);
	c.image_width = w;
	c.image_height = h;
	int cmyk = !strcmp(mode, "ycck") || !strcmp(mode, "cmyk_noadobe");
	c.input_components = cmyk ? 4 : 3;
	c.in_color_space = cmyk ? JCS_CMYK : JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, 90, TRUE);
	if (!strcmp(mode, "ycck")) jpeg_set_colorspace(&c, JCS_YCCK);
	if (!strcmp(mode, "cmyk_noadobe")) { jpeg_set_colorspace(&c, JCS_CMYK); c.write_Adobe_marker = FALSE; }
	if (!strcmp(mode, "rgb")) jpeg_set_colorspace(&c, JCS_RGB);
	if (!strcmp(mode, "restart")) c.restart_in_rows = 1;
	jpeg_start_compress(&c, TRUE);
	unsigned char *row = malloc((size_t)w * 4);
	while (c.next_scanline < c.image_height) {
		unsigned char *s = rgb + (size_t)c.next_scanline * w * 3;
		for (int x = 0; x < w; x++) {
			if (cmyk) {   /* a plain (non-inverted) CMYK from RGB, K = min */
				int C = 255 - s[3*x], M = 255 - s[3*x+1], Y = 255 - s[3*x+2];
				int K = C < M ? C : M; K = K < Y ? K : Y;
				row[4*x] = C - K; row[4*x+1] = M - K; row[4*x+2] = Y - K; row[4*x+3] = K;
			} else memcpy(row + 3 * x, s + 3 * x, 3);
		}
		JSAMPROW r = row;
		jpeg_write_scanlines(&c, &r, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	fclose(out);
	return 0;
}
"""


def gen_jpeg():
    from PIL import Image

    def img(w, h, seed):
        im = Image.new("RGB", (w, h))
        im.putdata(pattern(w, h, seed))
        return im

    im = img(67, 45, 3)
    im.save(os.path.join(HERE, "jpeg_420.jpg"), quality=90, subsampling=2)
    im.save(os.path.join(HERE, "jpeg_422.jpg"), quality=90, subsampling=1)
    im.save(os.path.join(HERE, "jpeg_444.jpg"), quality=90, subsampling=0)
    im.save(os.path.join(HERE, "jpeg_progressive.jpg"), quality=85, progressive=True)
    im.convert("L").save(os.path.join(HERE, "jpeg_gray.jpg"), quality=90)
    im.convert("CMYK").save(os.path.join(HERE, "jpeg_cmyk_adobe.jpg"), quality=90)
    big = img(300, 200, 4)
    big.save(os.path.join(HERE, "jpeg_large_300x200.jpg"), quality=75)
    ex = Image.Exif()
    ex[0x0112] = 6   # "rotate 90 CW" — img_decode ignores it, as convert() does
    img(24, 16, 5).save(os.path.join(HERE, "jpeg_exif_orient6.jpg"), quality=90,
                        exif=ex.tobytes())
    # "Corrupt JPEG data: 5 extraneous bytes before marker 0xd9": a warning Pillow ignores
    b = io.BytesIO()
    img(16, 16, 6).save(b, "JPEG", quality=90)
    d = b.getvalue()
    write("jpeg_extraneous_bytes.jpg", d[:-2] + b"\x12\x34\x56\x78\x9a" + d[-2:])

    with tempfile.TemporaryDirectory() as t:
        exe = os.path.join(t, "mkjpeg")
        src = os.path.join(t, "mkjpeg.c")
        with open(src, "w") as f:
            f.write(JPEG_HELPER)
        subprocess.check_call(["gcc", "-O1", src, "-o", exe, "-ljpeg"])
        im2 = img(41, 27, 8)
        rgbf = os.path.join(t, "in.rgb")
        with open(rgbf, "wb") as f:
            f.write(im2.tobytes())
        for mode in ("ycck", "cmyk_noadobe", "rgb", "restart"):
            subprocess.check_call([exe, rgbf, "41", "27", os.path.join(HERE, "jpeg_%s.jpg" % mode),
                                   mode])


def gen_webp():
    from PIL import Image
    pic = pattern(45, 31, 9)
    im = Image.new("RGB", (45, 31))
    im.putdata(pic)
    im.save(os.path.join(HERE, "webp_lossy.webp"), quality=80)
    im.save(os.path.join(HERE, "webp_lossless.webp"), lossless=True)
    a = im.convert("RGBA")
    r = Lcg(11)
    a.putalpha(Image.frombytes("L", im.size, bytes(
        0 if x < 12 else r.next() % 256 for y in range(31) for x in range(45))))
    a.save(os.path.join(HERE, "webp_lossy_alpha.webp"), quality=80)
    a.save(os.path.join(HERE, "webp_lossless_alpha.webp"), lossless=True, exact=True)
    f2 = Image.new("RGB", (45, 31), (255, 0, 0))
    im.save(os.path.join(HERE, "webp_animated.webp"), save_all=True, append_images=[f2],
            duration=100, lossless=True)


# ---- hostile headers -----------------------------------------------------------------------

def gen_bad():
    # PNG whose IHDR (valid CRC) claims 100000 x 100000, with a few bytes of IDAT
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    write("bad_png_100000x100000.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
          chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    # JPEG whose SOF0 claims 65500 x 65500 (libjpeg's maximum), tables from a real file
    with open(os.path.join(HERE, "jpeg_444.jpg"), "rb") as f:
        j = bytearray(f.read())
    i = j.index(b"\xff\xc0")
    struct.pack_into(">HH", j, i + 5, 65500, 65500)
    write("bad_jpeg_65500x65500.jpg", bytes(j))
    # lossless WebP header claiming 16384 x 16384
    bits = (16384 - 1) | ((16384 - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\0" * 8
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    write("bad_webp_16384x16384.webp", b"RIFF" + struct.pack("<I", len(body)) + body)


def expect():
    from PIL import Image
    names = sorted(n for n in os.listdir(HERE)
                   if n.split(".")[-1] in ("png", "jpg", "webp") and not n.startswith("bad_")
                   and "animated" not in n)
    for n in names:
        with Image.open(os.path.join(HERE, n)) as im:
            mode = im.mode
            rgb = im.convert("RGB")
        print(json.dumps({"file": n, "w": rgb.width, "h": rgb.height,
                          "fnv1a64": fnv1a64(rgb.tobytes()), "pil_mode": mode}))


def merge(new, old):
    """The check program reads file, w, h, fnv1a64 in this order from each line."""
    with open(old) as f:
        prev = {d["file"]: d for d in map(json.loads, f)}
    with open(new) as f:
        for d in map(json.loads, f):
            p = prev[d["file"]]
            if p["fnv1a64"] != d["fnv1a64"]:
                d["pil94_fnv1a64"] = p["fnv1a64"]
            if p["pil_mode"] != d["pil_mode"]:
                d["pil94_mode"] = p["pil_mode"]
            print(json.dumps(d))


if __name__ == "__main__":
    if sys.argv[1:] == ["gen"]:
        gen_png()
        gen_jpeg()
        gen_webp()
        gen_bad()
    elif sys.argv[1:] == ["expect"]:
        expect()
    elif len(sys.argv) == 4 and sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: gen_images.py gen | expect | merge NEW OLD")
