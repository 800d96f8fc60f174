#!/bin/bash
# On the GPU machine: the foundation's checks that need a GPU or transformers. Run from the
# repository root after packing the build with ../shared/tools/gpu-pack (qvl, check_kernels_cuda)
# and copying the build tree's share/ to .gpu/share:
#   1. the CUDA kernel suites against their C references;
#   2. qvl mkmodel (tiny, 2b, and a dense Qwen3 from tests/data) and the time the 2b takes;
#   3. those checkpoints loaded and run in Hugging Face transformers (hf_load_check.py);
#   4. the transformers defaults that config parsing must match.
set -u
export QVL_DATADIR="$PWD/.gpu/share" NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
work=/tmp/qvl-foundation
mkdir -p "$work" "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== kernel suites"
.gpu/run check_kernels_cuda
echo "== mkmodel"
/usr/bin/time -f "tiny: %e s" .gpu/run qvl mkmodel --preset tiny --seed 1 --out "$work/tiny"
/usr/bin/time -f "2b: %e s, max RSS %M KB" .gpu/run qvl mkmodel --preset 2b --seed 1 --out "$work/2b"
.gpu/run qvl mkmodel --config tests/data/configs/qwen3-0.6b/config.json --seed 1 --out "$work/qwen3"
.gpu/run qvl inspect "$work/2b" | head -8
echo "== transformers"
python3 tests/golden/hf_load_check.py "$work/tiny" "$work/2b" "$work/qwen3" 2>&1 | grep -v Warning | tee "$out/hf_load_check.txt"
echo "== transformers config defaults"
python3 - <<'PY'
from transformers import Qwen3Config
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLTextConfig, Qwen3VLConfig, Qwen3VLVisionConfig
for c in (Qwen3Config(), Qwen3VLTextConfig()):
    print(type(c).__name__, "head_dim", getattr(c, "head_dim", None), "max_pos", c.max_position_embeddings,
          "tie", getattr(c, "tie_word_embeddings", None), "rope", getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None))
print("Qwen3VLConfig tie", Qwen3VLConfig().tie_word_embeddings)
v = Qwen3VLVisionConfig()
print("vision defaults", v.depth, v.hidden_size, v.hidden_act, v.deepstack_visual_indexes, v.num_position_embeddings)
PY
