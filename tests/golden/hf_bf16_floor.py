#!/usr/bin/env python3
"""How far transformers in bf16 is from transformers in fp32 on a random-weight checkpoint: the
floor under any bf16 engine's agreement with the fp32 goldens. Run on the GPU machine:

    hf_bf16_floor.py MODEL_DIR [PROMPT_LEN]

Loads the checkpoint (qvl mkmodel) twice, fp32 (TF32 off) and bf16 (sdpa), feeds one random
text prompt, and prints the relative L2 distance of the last position's logits, the top-1
agreement and the fp32 top-1 margin.
"""
import sys

import torch
from transformers import Qwen3VLForConditionalGeneration

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def last_logits(mdir, dtype, ids):
    model = Qwen3VLForConditionalGeneration.from_pretrained(mdir, dtype=dtype).to("cuda").eval()
    with torch.no_grad():
        out = model(input_ids=ids).logits[0, -1].float()
    del model
    torch.cuda.empty_cache()
    return out


def main():
    mdir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 150000, (1, n), generator=g).to("cuda")
    ref = last_logits(mdir, torch.float32, ids)
    got = last_logits(mdir, torch.bfloat16, ids)
    rel = (got - ref).norm() / ref.norm()
    top2 = ref.topk(2).values
    print(f"{mdir}: {n}-token prompt: bf16 vs fp32 last-position logits rel L2 {rel:.3e}; "
          f"top-1 {'agrees' if got.argmax() == ref.argmax() else 'differs'} "
          f"(fp32 margin {float(top2[0] - top2[1]):.3g})")


if __name__ == "__main__":
    main()
