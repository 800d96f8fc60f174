#!/bin/bash
# On the GPU machine (CPU work only): Hugging Face's Qwen3-VL image processor on the committed
# test images → tests/data/img-golden.jsonl, and the speed of both on a 1920x1080 JPEG, one core.
# Run from the repository root after ../shared/tools/gpu-pack build/qvl build/tests/bench/bench_img
# and copying the build's share/ to .gpu/share. Results land in $OUT.
set -u
out=${OUT:-/tmp/out}
imgs=/tmp/qvl-golden-images
rm -rf "$imgs" && mkdir -p "$imgs" "$out"
cp tests/data/images/*.png tests/data/images/*.jpg tests/data/images/*.webp tests/data/images-large/* "$imgs"/
# refused on purpose: bad_* (hostile headers) and the animated WebP (qvl refuses animations)
rm -f "$imgs"/bad_* "$imgs"/webp_animated.webp
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 QVL_DATADIR="$PWD/.gpu/share"
python3 tests/golden/make_image_golden.py "$imgs" /tmp/qvl-img-golden 2>&1 | tail -5
cp /tmp/qvl-img-golden/image_golden.jsonl "$out/img-golden.jsonl"
cp /tmp/qvl-img-golden/timing.txt "$out/hf_timing.txt"
echo "== Hugging Face (one thread)"; cat "$out/hf_timing.txt"
echo "== qvl image: decode + preprocess, 1920x1080 JPEG, one core, 21 runs"
for i in $(seq 21); do
	s=$(date +%s%N); taskset -c 2 .gpu/run qvl image tests/data/images-large/photo_1920x1080.jpg >/dev/null; e=$(date +%s%N)
	echo $(( (e - s) / 1000 ))
done | sort -n | awk '{a[NR]=$1} END {printf "median %.2f ms (min %.2f, max %.2f) per process, startup included\n", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000}'
echo "== bench_img (preprocess only, one core)"
taskset -c 2 .gpu/run bench_img 20
lscpu | grep -E "Model name|Flags" | cut -c1-120
