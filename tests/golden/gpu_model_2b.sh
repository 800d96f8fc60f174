#!/bin/bash
# On the GPU machine: the 2b checkpoint's logits against transformers. transformers runs the
# published Qwen3-VL-2B shapes (qvl mkmodel --preset 2b's config, f32 weights, seed 1) on the
# text and one-image prompts of tests/data/model-golden (make_model_golden.py, GPU, fp32, TF32
# off); then the CPU reference model (tests/check_model_golden, carried with gpu-pack) builds
# the same prompts and compares prompt ids, vision embeddings and the logits of 8 greedy steps.
# Run from the repository root after
#   ../shared/tools/gpu-pack build/qvl build/tests/check_model_golden; cp -r build/share .gpu/share
# QVL_GPU_PACK names another pack directory (default .gpu), QVL_DATADIR another data directory,
# and QVL_GOLDEN_CHECKS the checks to run (default check_model_golden; check_model_golden_cuda
# is the same comparison through the CUDA backend).
set -eu
pack=${QVL_GPU_PACK:-.gpu}
export QVL_DATADIR=${QVL_DATADIR:-$PWD/$pack/share} PYTHONUNBUFFERED=1 TMPDIR=/tmp QVL_GOLDEN_MIN_CASES=2
root=/tmp/qvl-2b-root
rm -rf "$root" && mkdir -p "$root/tests/data/model-golden/configs" "$root/tests/data/model-golden/prompts"
cp -r tests/data/images tests/data/images-large "$root/tests/data/"
cp inference/data/presets/2b.json "$root/tests/data/model-golden/configs/2b.json"
cp tests/data/model-golden/prompts/text.json tests/data/model-golden/prompts/one-image.json \
	"$root/tests/data/model-golden/prompts/"
printf '#!/bin/sh\nexec %s/%s/run qvl "$@"\n' "$PWD" "$pack" >/tmp/qvlw
chmod +x /tmp/qvlw
python3 tests/golden/make_model_golden.py /tmp/qvlw "$root" "$root/tests/data/model-golden/golden.jsonl"
for check in ${QVL_GOLDEN_CHECKS:-check_model_golden}; do
	srcdir=$root "$pack/run" "$check"
done
