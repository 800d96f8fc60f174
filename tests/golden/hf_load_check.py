#!/usr/bin/env python3
"""Load `qvl mkmodel` checkpoints in Hugging Face transformers and run them (GPU machine).

For each model directory given: load it with Qwen3VLForConditionalGeneration (or
AutoModelForCausalLM for model_type qwen3) in fp32 with TF32 off, run one chat prompt (with a
random 448x448 image when the model has a vision tower) through AutoProcessor and the model, and
print what a reader needs to judge that the checkpoint is sound: parameter count, logits shape,
whether they are finite, their spread (std, top-1 probability, entropy against log(vocab)), and
8 greedily generated ids. Exit status 1 if anything fails to load or produces non-finite logits.

usage: hf_load_check.py MODEL_DIR [MODEL_DIR...]
"""
import json
import math
import sys
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoProcessor, AutoTokenizer

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def check(model_dir: str) -> bool:
    cfg = json.load(open(f"{model_dir}/config.json"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    if cfg["model_type"] == "qwen3_vl":
        from transformers import Qwen3VLForConditionalGeneration

        model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
        processor = AutoProcessor.from_pretrained(model_dir)
        rng = np.random.default_rng(0)
        from PIL import Image

        image = Image.fromarray(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8))
        messages = [{"role": "user", "content": [
            {"type": "image", "image": image},
            {"type": "text", "text": "Describe this image."}]}]
        inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                               return_dict=True, return_tensors="pt")
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(model_dir)
        messages = [{"role": "user", "content": "Describe a cat."}]
        inputs = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                         return_dict=True, return_tensors="pt")
    model = model.to(device).eval()
    inputs = {k: v.to(device) for k, v in inputs.items()}
    load_s = time.time() - t0
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        out = model(**inputs)
        logits = out.logits[0, -1].double()
        gen = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    probs = torch.softmax(logits, -1)
    entropy = float(-(probs * torch.log(probs.clamp_min(1e-300))).sum())
    finite = bool(torch.isfinite(out.logits).all())
    new_ids = gen[0, inputs["input_ids"].shape[1]:].tolist()
    print(f"{model_dir}: {cfg['model_type']}, {params:,} parameters, loaded in {load_s:.1f} s on {device}")
    print(f"  prompt tokens {inputs['input_ids'].shape[1]}"
          + (f", image grid {inputs['image_grid_thw'].tolist()}" if "image_grid_thw" in inputs else ""))
    print(f"  logits {tuple(out.logits.shape)} finite={finite} last-position std={float(logits.std()):.3f}"
          f" top1 p={float(probs.max()):.4f} entropy={entropy:.3f} (uniform would be {math.log(logits.numel()):.3f})")
    print(f"  greedy ids: {new_ids}")
    return finite


def main() -> int:
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    ok = True
    for d in sys.argv[1:]:
        try:
            ok = check(d) and ok
        except Exception as e:  # report and go on to the next model
            print(f"{d}: FAILED: {type(e).__name__}: {e}")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
