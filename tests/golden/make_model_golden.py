#!/usr/bin/env python3
"""Golden outputs of transformers' Qwen3-VL for the CPU reference model (GPU machine).

For each model config in tests/data/model-golden/configs/*.json (checkpoints are made here with
`qvl mkmodel --config FILE --seed 1 --dtype f32`) and each chat request in
tests/data/model-golden/prompts/*.json (OpenAI chat format; image parts name files under
tests/data/images*/ as {"type": "image", "image": "<file name>"}), run
Qwen3VLForConditionalGeneration (or AutoModelForCausalLM for model_type qwen3) in fp32 with TF32
off, through AutoProcessor (the vendored chat template and preprocessing), and write one JSON line
per (config, prompt) to OUT:

  {"config", "prompt", "prompt_ids", "image_grid_thw", "rope_deltas",
   "vision": {"n_tokens", "embeds_head": first 16 values of the merged image embeddings (fp32),
              "embeds_norm": their L2 norm, "deepstack_norms": [L2 norm of each deepstack output]},
   "steps": [{"top_ids": [50], "top_logits": [50], "logsumexp": float}, ...8 greedy steps],
   "greedy_ids": [8]}

Step k's logits are those of the last position after k greedy tokens (step 0 = the prompt).
usage: make_model_golden.py QVL_BINARY REPO_ROOT OUT.jsonl
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import torch
from PIL import Image

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_grad_enabled(False)

STEPS = 8
TOPK = 50


def load_images(messages, root):
    images = []
    for m in messages:
        if isinstance(m.get("content"), list):
            for part in m["content"]:
                if part.get("type") == "image":
                    name = part["image"]
                    path = next(p for p in glob.glob(f"{root}/tests/data/images*/{name}"))
                    img = Image.open(path).convert("RGB")
                    images.append(img)
                    part["image"] = img
    return images


def run(model, processor, request, root, device):
    messages = json.loads(json.dumps(request["messages"]))
    images = load_images(messages, root)
    inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                           return_dict=True, return_tensors="pt")
    inputs = {k: v.to(device) for k, v in inputs.items()}
    rec = {"prompt_ids": inputs["input_ids"][0].tolist()}
    vision = None
    if images:
        rec["image_grid_thw"] = inputs["image_grid_thw"].tolist()
        pv = inputs["pixel_values"].to(model.dtype)
        out = model.model.visual(pv, grid_thw=inputs["image_grid_thw"])
        embeds, deepstack = (out.pooler_output, out.deepstack_features) if hasattr(out, "pooler_output") else out
        if isinstance(embeds, (list, tuple)):
            embeds = torch.cat(list(embeds), 0)
        vision = {"n_tokens": int(embeds.shape[0]),
                  "embeds_head": embeds.reshape(-1)[:16].double().tolist(),
                  "embeds_norm": float(embeds.double().norm()),
                  "deepstack_norms": [float(d.double().norm()) for d in deepstack]}
    rec["vision"] = vision
    ids = inputs["input_ids"]
    steps, greedy = [], []
    gen = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, top_k=None, top_p=None, temperature=None)
    for lg in gen.logits:
        l = lg[0].double()
        top = torch.topk(l, TOPK)
        steps.append({"top_ids": top.indices.tolist(), "top_logits": top.values.tolist(),
                      "logsumexp": float(torch.logsumexp(l, 0))})
    greedy = gen.sequences[0, ids.shape[1]:].tolist()
    rec["steps"] = steps
    rec["greedy_ids"] = greedy
    if hasattr(model.model, "rope_deltas") and model.model.rope_deltas is not None:
        rec["rope_deltas"] = model.model.rope_deltas.reshape(-1).tolist()
    return rec


def main():
    qvl, root, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    from transformers import AutoModelForCausalLM, AutoProcessor, AutoTokenizer, Qwen3VLForConditionalGeneration
    device = "cuda" if torch.cuda.is_available() else "cpu"
    configs = sorted(glob.glob(f"{root}/tests/data/model-golden/configs/*.json"))
    prompts = sorted(glob.glob(f"{root}/tests/data/model-golden/prompts/*.json"))
    with open(out_path, "w") as out, tempfile.TemporaryDirectory() as tmp:
        for cfg_path in configs:
            name = os.path.basename(cfg_path)[:-5]
            mdir = os.path.join(tmp, name)
            subprocess.run([qvl, "mkmodel", "--config", cfg_path, "--seed", "1", "--dtype", "f32",
                            "--out", mdir], check=True)
            cfg = json.load(open(cfg_path))
            vl = cfg["model_type"] == "qwen3_vl"
            if vl:
                model = Qwen3VLForConditionalGeneration.from_pretrained(mdir, dtype=torch.float32)
                processor = AutoProcessor.from_pretrained(mdir)
            else:
                model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32)
                processor = AutoTokenizer.from_pretrained(mdir)
            model = model.to(device).eval()
            for p_path in prompts:
                request = json.load(open(p_path))
                has_image = any(isinstance(m.get("content"), list) and
                                any(pt.get("type") == "image" for pt in m["content"])
                                for m in request["messages"])
                if has_image and not vl:
                    continue
                rec = {"config": name, "prompt": os.path.basename(p_path)[:-5]}
                rec.update(run(model, processor, request, root, device))
                out.write(json.dumps(rec) + "\n")
                out.flush()
                print(name, rec["prompt"], len(rec["prompt_ids"]), "tokens, greedy", rec["greedy_ids"])
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
