#!/usr/bin/env python3
"""Golden values for qvl's Qwen3-VL image preprocessing (inference/img_preprocess.c).

Runs Hugging Face's image processor exactly as the model uses it — AutoImageProcessor built
from our vendored inference/data/qwen3-vl/preprocessor_config.json (copied into a temporary
directory; no network), which must resolve to the torchvision ("fast") processor — on every
image of a directory, opened with PIL and .convert("RGB"), for each (min_pixels, max_pixels)
setting below, and writes under OUT_DIR:

  image_golden.jsonl   one line per (image, setting):
      {"file", "size": [w, h], "mode": PIL mode before convert, "settings": {"name",
       "min_pixels", "max_pixels"}, "grid_thw": [t, h, w], "resized": [h, w],
       "n_tokens", "shape": [rows, cols], "sha256": of pixel_values as little-endian float32
       bytes (row-major), "first8", "last8": pixel_values' first and last 8 values (as floats,
       repr-exact), "png": the resized image's file name, "resize_check": see below}
  resized/<stem>.<setting>.png   the uint8 image torchvision produced (the intermediate), so
      that a mismatch can be located pixel by pixel.
  resized.tar          the same PNGs in one file, for copying the results off a machine.
  timing.txt           the processor on a 1920x1080 JPEG, one thread, median of 20.

How the resized image is obtained: torchvision.transforms.v2.functional.resize called directly
on the uint8 CHW tensor with the processor's own arguments (its resample mode, antialias=True,
the size from grid_thw * patch_size). To prove that this is the processor's intermediate, the
processor's pixel_values are inverted (temporal slot 0, un-patchified, v * std' + mean' with
mean' = std' = 127.5 — exact for these values, rounded to the nearest integer) and compared
byte for byte: resize_check is "direct resize == inverted pixel_values" when they agree. If they
ever disagree, the inverted image (the processor's truth) is written instead and resize_check
says so.

Settings (name: min_pixels, max_pixels; None = the config's 65536, 16777216), passed per call
as size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, as a request overrides them:
  default: None, None      budget1m: 65536, 1048576     min512: 262144, 16777216
  tiny: 1024, 50176

Usage (GPU machine: Python 3.12, torch, torchvision, transformers, PIL; runs on the CPU):
  python3 tests/golden/make_image_golden.py IMAGE_DIR OUT_DIR
(34 images, four of them 12 Mpx photos, took 35 s there, timing included.)
Images: every *.png, *.jpg, *.jpeg, *.ppm, *.bmp, *.gif, *.webp, *.tif(f) file of IMAGE_DIR
(not recursive), sorted by name. The timing uses the first 1920x1080 JPEG among them (else any
1920x1080 image, else a synthetic 1920x1080 JPEG written to a temporary directory).
Note: for images with a side of 3 pixels or less transformers has to guess which dimension
holds the channels (its warning is silenced here); such golden lines are only as good as
that guess.
"""
import hashlib
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time

import numpy as np
import torch
from PIL import Image

import torchvision
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF
import transformers
from transformers import AutoImageProcessor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "inference/data/qwen3-vl/preprocessor_config.json")
EXTS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SETTINGS = [
    ("default", None, None),
    ("budget1m", 65536, 1048576),
    ("min512", 262144, 16777216),
    ("tiny", 1024, 50176),
]


def load_processor(tmp):
    transformers.logging.set_verbosity_error()
    shutil.copy(CONFIG, os.path.join(tmp, "preprocessor_config.json"))
    proc = AutoImageProcessor.from_pretrained(tmp)
    cls = type(proc)
    backend = getattr(proc, "backend", None)
    print("processor: %s.%s backend=%s" % (cls.__module__, cls.__name__, backend))
    print("versions: torch %s, torchvision %s, transformers %s, PIL %s, cpu capability %s"
          % (torch.__version__, torchvision.__version__, transformers.__version__,
             Image.__version__, torch.backends.cpu.get_cpu_capability()))
    fast = backend == "torchvision" or cls.__name__.endswith("Fast") or any(
        b.__name__ in ("BaseImageProcessorFast", "TorchvisionBackend") for b in cls.__mro__)
    if not fast:
        sys.exit("the processor is not the torchvision one: %s" % cls.__name__)
    return proc


def run(proc, img, mn, mx):
    kw = {}
    if mn is not None:
        kw["size"] = {"shortest_edge": mn, "longest_edge": mx}
    out = proc(images=img, return_tensors="pt", **kw)
    return out["pixel_values"], out["image_grid_thw"]


def interpolation_of(proc):
    r = getattr(proc, "resample", 3)
    if isinstance(r, InterpolationMode):
        return r
    # PILImageResampling / int: 3 is BICUBIC
    return {0: InterpolationMode.NEAREST, 2: InterpolationMode.BILINEAR,
            3: InterpolationMode.BICUBIC}[int(r)]


def invert(pv, grid, patch, merge, temporal):
    """pixel_values -> the uint8 (3, H, W) image of temporal slot 0 (mean = std = 0.5 only)."""
    _, gh, gw = [int(v) for v in grid]
    x = pv.double().reshape(gh // merge, gw // merge, merge, merge, 3, temporal, patch, patch)
    x = x[:, :, :, :, :, 0]                       # bh, bw, ih, iw, c, y, x
    x = x.permute(4, 0, 2, 5, 1, 3, 6)            # c, bh, ih, y, bw, iw, x
    x = x.reshape(3, gh * patch, gw * patch)
    return torch.round(x * 127.5 + 127.5).clamp(0, 255).to(torch.uint8)


def le_f32_bytes(t):
    a = t.contiguous().numpy().astype("<f4", copy=False)
    return a.tobytes()


def floats(t):
    return [float(v) for v in t.tolist()]


def synthetic_1080p(tmp):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:1080, 0:1920]
    base = np.stack([128 + 100 * np.sin(xx / 37.0 + c) * np.cos(yy / 53.0) for c in range(3)], -1)
    arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    path = os.path.join(tmp, "synthetic_1920x1080.jpg")
    Image.fromarray(arr).save(path, quality=90)
    return path


def timing(proc, path, out_dir):
    torch.set_num_threads(1)
    img = Image.open(path).convert("RGB")
    for _ in range(3):
        run(proc, img, None, None)
    t_proc, t_all = [], []
    for _ in range(20):
        t0 = time.perf_counter()
        run(proc, img, None, None)
        t_proc.append((time.perf_counter() - t0) * 1e3)
    for _ in range(20):
        t0 = time.perf_counter()
        run(proc, Image.open(path).convert("RGB"), None, None)
        t_all.append((time.perf_counter() - t0) * 1e3)
    line = ("HF processor (%s), %s %dx%d, torch.set_num_threads(1), median of 20: "
            "%.2f ms processor only, %.2f ms with PIL open+decode+convert\n"
            % (type(proc).__name__, os.path.basename(path), img.width, img.height,
               statistics.median(t_proc), statistics.median(t_all)))
    print(line, end="")
    with open(os.path.join(out_dir, "timing.txt"), "w") as f:
        f.write(line)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_image_golden.py IMAGE_DIR OUT_DIR")
    img_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(out_dir, "resized"), exist_ok=True)
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        proc = load_processor(tmp)
        patch, merge = int(proc.patch_size), int(proc.merge_size)
        temporal = int(proc.temporal_patch_size)
        interp = interpolation_of(proc)
        mean, std = list(proc.image_mean), list(proc.image_std)
        invertible = mean == [0.5, 0.5, 0.5] and std == [0.5, 0.5, 0.5]
        print("resize: %s, antialias=True; patch %d merge %d temporal %d; mean %s std %s"
              % (interp, patch, merge, temporal, mean, std))

        files = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(EXTS))
        if not files:
            sys.exit("no images in %s" % img_dir)
        timing_path, timing_jpeg = None, False
        n_lines = n_bad = 0
        with open(os.path.join(out_dir, "image_golden.jsonl"), "w") as golden:
            for name in files:
                path = os.path.join(img_dir, name)
                src = Image.open(path)
                mode = src.mode
                img = src.convert("RGB")
                if img.size == (1920, 1080):
                    jpeg = name.lower().endswith((".jpg", ".jpeg"))
                    if timing_path is None or (jpeg and not timing_jpeg):
                        timing_path, timing_jpeg = path, jpeg
                chw = TF.pil_to_tensor(img)
                stem = os.path.splitext(name)[0]
                for sname, mn, mx in SETTINGS:
                    try:
                        pv, grid = run(proc, img, mn, mx)
                    except Exception as ex:   # an error is a golden result too
                        rec = {"file": name, "size": [img.width, img.height], "mode": mode,
                               "settings": {"name": sname, "min_pixels": mn, "max_pixels": mx},
                               "error": "%s: %s" % (type(ex).__name__, ex)}
                        golden.write(json.dumps(rec) + "\n")
                        n_lines += 1
                        continue
                    grid = [int(v) for v in grid[0]]
                    rh, rw = grid[1] * patch, grid[2] * patch
                    direct = TF.resize(chw, [rh, rw], interpolation=interp, antialias=True)
                    check = "not checked (mean/std not 0.5)"
                    png = direct
                    if invertible:
                        inv = invert(pv, grid, patch, merge, temporal)
                        if torch.equal(inv, direct):
                            check = "direct resize == inverted pixel_values"
                        else:
                            diff = (inv.int() - direct.int()).abs()
                            check = ("MISMATCH: direct resize differs from inverted "
                                     "pixel_values at %d values (max %d); png is the inverted"
                                     % (int((diff > 0).sum()), int(diff.max())))
                            png = inv
                            n_bad += 1
                    png_name = "%s.%s.png" % (stem, sname)
                    Image.fromarray(png.permute(1, 2, 0).numpy()).save(
                        os.path.join(out_dir, "resized", png_name))
                    flat = pv.reshape(-1)
                    rec = {
                        "file": name, "size": [img.width, img.height], "mode": mode,
                        "settings": {"name": sname, "min_pixels": mn, "max_pixels": mx},
                        "grid_thw": grid, "resized": [rh, rw],
                        "n_tokens": grid[0] * grid[1] * grid[2] // (merge * merge),
                        "shape": list(pv.shape), "dtype": str(pv.dtype),
                        "sha256": hashlib.sha256(le_f32_bytes(pv)).hexdigest(),
                        "first8": floats(flat[:8]), "last8": floats(flat[-8:]),
                        "png": png_name, "resize_check": check,
                    }
                    golden.write(json.dumps(rec) + "\n")
                    n_lines += 1
        with tarfile.open(os.path.join(out_dir, "resized.tar"), "w") as tar:
            tar.add(os.path.join(out_dir, "resized"), arcname="resized")
        print("%d lines, %d resize mismatches, %.1f s" % (n_lines, n_bad, time.time() - t_start))
        if timing_path is None:
            timing_path = synthetic_1080p(tmp)
        timing(proc, timing_path, out_dir)


if __name__ == "__main__":
    main()
