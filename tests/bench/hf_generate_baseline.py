#!/usr/bin/env python3
"""The transformers baseline of tests/bench/gpu_bench.sh: plain `generate` on one GPU.

Loads a `qvl mkmodel` checkpoint directory (random weights; the 2b preset has the published
Qwen3-VL-2B shapes) with Qwen3VLForConditionalGeneration in bf16 on cuda, attn_implementation
"sdpa", the default dynamic KV cache, no torch.compile, no network, and measures:

  single    one 512-token random prompt, 128 new tokens (greedy; min_new_tokens = max_new_tokens
            so EOS cannot stop it): decode tok/s = (128 - 1) / decode time
  batch B   B random 512-token prompts in one batched generate() (equal lengths, no padding),
            128 new tokens each, for B in 8, 32, 64, 128, 256: decode tok/s =
            B * (128 - 1) / decode time, and output tok/s = B * 128 / the whole generate()'s
            time (prefill included, as `vllm bench serve`'s output_throughput)
  prefill   one N-token prompt, max_new_tokens=1, N in 512 and 4096: TTFT = the generate()'s
            time, prefill tok/s = N / TTFT
  image     TTFT of one 448x448 image and 32 text tokens (max_new_tokens=1): the chat
            template's ids built by hand (no processor), <|vision_start|>, 196 <|image_pad|>,
            <|vision_end|>, then 32 random text ids; pixel_values are random in [-1, 1] of shape
            (28*28, 3*2*16*16) with image_grid_thw (1, 28, 28), the shapes Qwen3-VL's processor
            makes of a 448x448 image (patch 16, merge 2)
  memory    torch.cuda.max_memory_allocated over each part and over the whole run (MiB)

Method: the decode time is measured with timestamps, not by subtracting two generate() calls:
a logits processor notes time.perf_counter() at every step, and generate() synchronizes with
the GPU every step (its stopping check reads a device tensor), so the decode time of n tokens
is the last stamp less the first (n - 1 steps, the prefill and first token excluded). Whole
generate() calls are timed between torch.cuda.synchronize() calls, after a warm-up generate.
Eager transformers decode is bound by the host's kernel launches (~25-30 ms a step on an H100
host), and the first generate() of a new shape is much slower (up to ~80 ms a step: torch picks
cuDNN's attention for sdpa on H100, which seems to set up a plan per new KV length; the second
run of the same shapes is fast), so every case runs several times (--reps, --batch-reps) and
the best is reported (the median is kept in the JSON too): the baseline warmed up, at its best.
--no-cudnn-sdpa turns cuDNN's sdpa backend off (flash/efficient kernels instead; untested). Prints each result as it is measured and writes everything as one JSON object to
--out (and to standard output's last line).

usage: hf_generate_baseline.py MODEL_DIR [--out FILE] [--quick] [--reps N]
       --quick skips B = 256 and the 4096-token prefill (a fast check that it works).
"""
import argparse
import inspect
import json
import statistics
import sys
import time

import torch

IM_START, IM_END, NL, USER, ASSISTANT = 151644, 151645, 198, 872, 77091
VISION_START, VISION_END, IMAGE_PAD = 151652, 151653, 151655
MAX_TEXT_ID = 150000  # below every special id (151643 and up)


class Stamps:
    """A logits processor that only notes the time it is called: once per generated token,
    after that step's forward. generate() synchronizes with the GPU every step (its stopping
    check reads a device tensor), so successive stamps are one decode step apart."""

    def __init__(self):
        self.t = []

    def __call__(self, input_ids, scores):
        self.t.append(time.perf_counter())
        return scores


def generate(model, inputs, n):
    """Greedy generate of exactly n new tokens. Returns (total s, decode s): the decode time is
    from the first token's stamp to the last's (n - 1 steps; 0 when n == 1)."""
    from transformers import LogitsProcessorList

    ids = inputs["input_ids"]
    st = Stamps()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, top_k=None, top_p=None,
                             temperature=None, logits_processor=LogitsProcessorList([st]))
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
    if out.shape != (ids.shape[0], ids.shape[1] + n) or len(st.t) != n:
        raise RuntimeError(f"generate made {tuple(out.shape)} in {len(st.t)} steps, want "
                           f"{(ids.shape[0], ids.shape[1] + n)} in {n}")
    return total, st.t[-1] - st.t[0]


def reps_of(k, fn):
    """fn() k times: a list of its results."""
    return [fn() for _ in range(k)]


def text_inputs(gen, batch, length, device):
    return {"input_ids": torch.randint(0, MAX_TEXT_ID, (batch, length), generator=gen).to(device)}


def image_inputs(gen, text_len, device, dtype, type_ids):
    grid = (1, 28, 28)
    n_patches = grid[0] * grid[1] * grid[2]
    n_tokens = n_patches // 4
    text = torch.randint(0, MAX_TEXT_ID, (text_len,), generator=gen).tolist()
    ids = ([IM_START, USER, NL, VISION_START] + [IMAGE_PAD] * n_tokens + [VISION_END] + text +
           [IM_END, NL, IM_START, ASSISTANT, NL])
    pixels = torch.rand((n_patches, 3 * 2 * 16 * 16), generator=gen) * 2 - 1
    inputs = {"input_ids": torch.tensor([ids], device=device),
              "pixel_values": pixels.to(device=device, dtype=dtype),
              "image_grid_thw": torch.tensor([grid], device=device)}
    if type_ids:  # transformers 5 wants the processor's mm_token_type_ids (1: image) for M-RoPE
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == IMAGE_PAD).to(torch.int32)
    return inputs


def mib(n):
    return round(n / 2**20, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--out", help="write the JSON results here")
    ap.add_argument("--quick", action="store_true", help="skip B=256 and the 4096-token prefill")
    ap.add_argument("--reps", type=int, default=3, help="runs of the single-stream/prefill/image cases")
    ap.add_argument("--batch-reps", type=int, default=2, help="runs of each batch")
    ap.add_argument("--input-len", type=int, default=512)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--batches", default="8,32,64,128,256")
    ap.add_argument("--prefill-lens", default="512,4096")
    ap.add_argument("--image-text-len", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cudnn-sdpa", action="store_true", help="torch.backends.cuda.enable_cudnn_sdp(False)")
    a = ap.parse_args()
    batches = [int(x) for x in a.batches.split(",") if x]
    prefill_lens = [int(x) for x in a.prefill_lens.split(",") if x]
    if a.quick:
        batches = [b for b in batches if b < 256]
        prefill_lens = [n for n in prefill_lens if n < 4096]
    if not torch.cuda.is_available():
        print("hf_generate_baseline: no CUDA device", file=sys.stderr)
        return 1

    if a.no_cudnn_sdpa:
        torch.backends.cuda.enable_cudnn_sdp(False)
    import transformers
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    device, dtype = "cuda", torch.bfloat16
    res = {"torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name(0), "model_dir": a.model_dir, "dtype": "bf16",
           "attn_implementation": "sdpa", "cudnn_sdpa": not a.no_cudnn_sdpa, "input_len": a.input_len, "output_len": a.output_len,
           "method": "decode tok/s = B*(out-1)/(last token's stamp - first token's), best of reps"}
    print(f"torch {res['torch']}, transformers {res['transformers']}, {res['device']}", flush=True)

    def save():
        if a.out:
            with open(a.out, "w") as f:
                json.dump(res, f, indent=1)

    t0 = time.perf_counter()
    model = Qwen3VLForConditionalGeneration.from_pretrained(a.model_dir, dtype=dtype,
                                                            attn_implementation="sdpa")
    model = model.to(device).eval()
    # the checkpoint's generation_config samples (do_sample, top_k, top_p); greedy here, and
    # both of Qwen's end ids known (min_new_tokens masks them)
    model.generation_config = GenerationConfig(eos_token_id=[151645, 151643], pad_token_id=151643,
                                               do_sample=False)
    torch.cuda.synchronize()
    res["load_s"] = round(time.perf_counter() - t0, 2)
    res["weights_mib"] = mib(torch.cuda.memory_allocated())
    res["params"] = sum(p.numel() for p in model.parameters())
    print(f"loaded {res['params']:,} parameters in {res['load_s']} s, "
          f"{res['weights_mib']} MiB on the GPU", flush=True)

    type_ids = "mm_token_type_ids" in inspect.signature(model.forward).parameters
    gen = torch.Generator().manual_seed(a.seed)
    L, N = a.input_len, a.output_len

    # warm-up: kernels, cuBLAS handles (the vision tower's: before the image case)
    generate(model, text_inputs(gen, 1, L, device), 8)

    torch.cuda.reset_peak_memory_stats()
    one = text_inputs(gen, 1, L, device)
    runs = reps_of(a.reps, lambda: generate(model, one, N))
    dec = [d for _, d in runs]
    res["single"] = {"decode_s": dec, "generate_s": [t for t, _ in runs],
                     "decode_tok_s": (N - 1) / min(dec),
                     "decode_tok_s_median": (N - 1) / statistics.median(dec),
                     "tpot_ms": 1e3 * min(dec) / (N - 1),
                     "peak_mib": mib(torch.cuda.max_memory_allocated())}
    r = res["single"]
    print(f"single stream: decode {r['decode_tok_s']:.1f} tok/s best, {r['decode_tok_s_median']:.1f} "
          f"median of {a.reps} (TPOT {r['tpot_ms']:.2f} ms)", flush=True)
    save()

    res["prefill"] = {}
    for n in prefill_lens:
        torch.cuda.reset_peak_memory_stats()
        inp = text_inputs(gen, 1, n, device)
        generate(model, inp, 1)  # warm-up at this length
        ts = [t for t, _ in reps_of(max(a.reps, 3), lambda: generate(model, inp, 1))]
        res["prefill"][str(n)] = {"ttft_s": ts, "ttft_ms": 1e3 * min(ts), "tok_s": n / min(ts),
                                  "ttft_ms_median": 1e3 * statistics.median(ts),
                                  "peak_mib": mib(torch.cuda.max_memory_allocated())}
        print(f"prefill {n}: {n / min(ts):.0f} tok/s, TTFT {1e3 * min(ts):.1f} ms best, "
              f"{1e3 * statistics.median(ts):.1f} ms median", flush=True)
        save()

    try:
        torch.cuda.reset_peak_memory_stats()
        img = image_inputs(gen, a.image_text_len, device, dtype, type_ids)
        generate(model, img, 1)  # warm-up: the vision tower
        ts = [t for t, _ in reps_of(max(a.reps, 3), lambda: generate(model, img, 1))]
        res["image"] = {"prompt_tokens": int(img["input_ids"].shape[1]), "image_tokens": 196,
                        "ttft_s": ts, "ttft_ms": 1e3 * min(ts),
                        "ttft_ms_median": 1e3 * statistics.median(ts),
                        "peak_mib": mib(torch.cuda.max_memory_allocated())}
        print(f"image 448x448 + {a.image_text_len} text ({res['image']['prompt_tokens']} prompt "
              f"tokens): TTFT {1e3 * min(ts):.1f} ms best, {1e3 * statistics.median(ts):.1f} ms median",
              flush=True)
    except Exception as e:  # report it and go on with the text rows
        res["image"] = {"error": f"{type(e).__name__}: {e}"}
        print(f"image: FAILED: {res['image']['error']}", flush=True)
    save()

    res["batch"] = {}
    for b in batches:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        inp = text_inputs(gen, b, L, device)
        try:
            runs = reps_of(a.batch_reps, lambda: generate(model, inp, N))
        except torch.OutOfMemoryError as e:
            res["batch"][str(b)] = {"error": f"out of memory: {e}"}
            print(f"batch {b}: out of memory", flush=True)
            del inp
            save()
            break
        dec, tot = [d for _, d in runs], [t for t, _ in runs]
        res["batch"][str(b)] = {"decode_s": dec, "generate_s": tot,
                                "decode_tok_s": b * (N - 1) / min(dec),
                                "decode_tok_s_median": b * (N - 1) / statistics.median(dec),
                                "output_tok_s": b * N / min(tot),
                                "tpot_ms": 1e3 * min(dec) / (N - 1),
                                "peak_mib": mib(torch.cuda.max_memory_allocated())}
        r = res["batch"][str(b)]
        print(f"batch {b}: decode {r['decode_tok_s']:.0f} tok/s best, {r['decode_tok_s_median']:.0f} "
              f"median; output {r['output_tok_s']:.0f} tok/s (generate {min(tot):.2f} s, "
              f"peak {r['peak_mib']} MiB)", flush=True)
        save()

    parts = [res["single"]] + list(res["prefill"].values()) + [res["image"]] + list(res["batch"].values())
    res["peak_mib"] = max(p.get("peak_mib", 0) for p in parts)
    print(f"peak GPU memory (max_memory_allocated): {res['peak_mib']} MiB", flush=True)
    save()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
