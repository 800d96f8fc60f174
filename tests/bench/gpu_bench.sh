#!/bin/bash
# gpu_bench.sh: qvl against Hugging Face transformers on one GPU, the same random 2b checkpoint,
# one table. See tests/bench/README for what each number means.
#
#   tests/bench/gpu_bench.sh --pack BUILD_DIR   (here) pack qvl, qvld, qvl-fcgi, the libraries the
#                                               GPU machine lacks and BUILD_DIR/share into
#                                               .gpu/qvl-bench.tar.gz (gzip: the three programs
#                                               and their libraries are over the 64 MiB carry
#                                               limit unpacked)
#   tests/bench/gpu_bench.sh                    (GPU machine, repository root) the benchmark
#
# The benchmark: `qvl mkmodel --preset 2b` (bf16, seed 1) into $QVL_BENCH_WORK; qvld on it
# (--backend cuda); qvl-fcgi on a Unix socket (--listen); `qvl bench --fcgi` for every row
# (FastCGI straight to qvl-fcgi, no web server; streaming chat completions, --ignore-eos),
# each row's --result-json kept under $QVL_BENCH_WORK/results; qvld's GPU memory polled with
# nvidia-smi while it serves; qvld stopped; tests/bench/hf_generate_baseline.py on the same
# checkpoint; then the table: rows = metrics, columns = qvl, transformers, qvl/transformers.
#
# Programs: .gpu/qvl-bench.tar.gz (from --pack) unpacked into $QVL_BENCH_WORK/pack, else
# .gpu/run qvl|qvld|qvl-fcgi as ../shared/tools/gpu-pack leaves them (QVL_DATADIR: .gpu/share).
#
# Environment knobs (defaults for the cuda backend; the cpu backend's in brackets):
#   QVL_BENCH_BACKEND      cuda | cpu: the local smoke test, programs from $QVL_BUILDDIR (.)
#   QVL_BENCH_PRESET       2b [tiny]
#   QVL_BENCH_IN/OUT       512/128 [64/16]: input and output tokens of the decode rows
#   QVL_BENCH_CONC         "8 32 64 128 256" ["2 4"]: concurrency rows
#   QVL_BENCH_FP8_CONC     "128 256" [""]: concurrency rows run again on a second qvld with
#                          --kv-cache-dtype fp8 (empty: none)
#   QVL_BENCH_PROMPTS_X    8 [2]: num-prompts = this × concurrency (1024 at 128, where vllm bench
#                          serve's default is 1000): enough waves that the first ramp and the
#                          last drain, when the batch is not full, do not dominate the row
#   QVL_BENCH_SINGLE_N     3: sequential requests of the single-stream row
#   QVL_BENCH_PREFILL      "512 4096" ["64 256"]: prompt lengths of the prefill rows (1 token out)
#   QVL_BENCH_PREFILL_N    5: sequential requests of each prefill row
#   QVL_BENCH_IMAGE        448x448: the image row's image (with 32 text tokens, 1 token out)
#   QVL_BENCH_IMAGE_N      5: sequential requests of the image row (median TTFT)
#   QVL_BENCH_ROW_TIMEOUT  90 [300]: seconds one `qvl bench` may take
#   QVL_BENCH_QVL_BUDGET   300: rows that would start later than this many seconds after the
#                          script began are skipped (the whole run stays under ~8 min on an H100)
#   QVL_BENCH_QVLD_ARGS    extra qvld flags (e.g. --gpu-memory-utilization 0.5)
#   QVL_BENCH_FCGI_ARGS    extra qvl-fcgi flags (e.g. --log-level debug: each chat request's timing)
#   QVL_BENCH_HF           auto | 0 (skip) | 1 (fail when it cannot run)
#   QVL_BENCH_HF_ARGS      extra hf_generate_baseline.py flags (e.g. --quick)
#   QVL_BENCH_HF_TIMEOUT   300: seconds the baseline may take
#   QVL_BENCH_WORK         /tmp/qvl-bench: model, logs, results (the model is made again only
#                          when missing or made with another preset)
set -euo pipefail

keep_libs='^(linux-vdso|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|ld-linux|libgcc_s|libstdc\+\+|libcuda\.so|libcudart|libcublas|libcublasLt|libnccl|libnvidia)'
pack_file=${QVL_BENCH_PACK:-.gpu/qvl-bench.tar.gz}

if [ "${1:-}" = --pack ]; then
	b=${2:?usage: gpu_bench.sh --pack BUILD_DIR}
	st=$(mktemp -d)
	trap 'rm -rf "$st"' EXIT
	mkdir -p "$st/bin" "$st/lib"
	for p in qvl qvld qvl-fcgi; do
		[ -x "$b/$p" ] || { echo "gpu_bench: $b/$p is not built" >&2; exit 2; }
		cp -f "$b/$p" "$st/bin/"
		ldd "$b/$p" | awk '/=> \// {print $1, $3}' | while read -r name path; do
			echo "$name" | grep -Eq "$keep_libs" || cp -fL "$path" "$st/lib/"
		done
	done
	[ -d "$b/share/presets" ] || { echo "gpu_bench: $b/share has no presets (make first)" >&2; exit 2; }
	cp -rL "$b/share" "$st/share"
	cat >"$st/run" <<'EOF'
#!/bin/bash
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export QVL_DATADIR="${QVL_DATADIR:-$here/share}"
prog=$1; shift
exec "$here/bin/$prog" "$@"
EOF
	chmod +x "$st/run"
	mkdir -p "$(dirname "$pack_file")"
	tar -czf "$pack_file" -C "$st" .
	echo "gpu_bench: $(du -h "$pack_file" | cut -f1) in $pack_file; carry [\"$pack_file\"] and run tests/bench/gpu_bench.sh"
	exit 0
fi

top=$(pwd)
backend=${QVL_BENCH_BACKEND:-cuda}
work=${QVL_BENCH_WORK:-/tmp/qvl-bench}
res=$work/results
mkdir -p "$work"
rm -rf "$res" "$work/logs"
mkdir -p "$res" "$work/logs"
export TMPDIR=${TMPDIR:-/tmp} PYTHONUNBUFFERED=1
unset QVL_CONFIG QVL_API_KEY NOTIFY_SOCKET LISTEN_FDS LISTEN_PID
t_begin=$(date +%s.%N)
elapsed() { awk -v a="$t_begin" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }
say() { echo "== [$(elapsed) s] $*"; }
die() { echo "gpu_bench: $*" >&2; exit 1; }

if [ "$backend" = cpu ]; then
	B=${QVL_BUILDDIR:-.}
	B=$(cd "$B" && pwd)
	for p in qvl qvld qvl-fcgi; do [ -x "$B/$p" ] || die "$B/$p is not built (QVL_BUILDDIR?)"; done
	QVL=("$B/qvl") QVLD=("$B/qvld") FCGI=("$B/qvl-fcgi")
	export QVL_DATADIR=${QVL_DATADIR:-$B/share}
	preset=${QVL_BENCH_PRESET:-tiny}
	IN=${QVL_BENCH_IN:-64} OUT=${QVL_BENCH_OUT:-16}
	CONC=${QVL_BENCH_CONC:-2 4}
	PREFILL=${QVL_BENCH_PREFILL:-64 256}
	ROW_TIMEOUT=${QVL_BENCH_ROW_TIMEOUT:-300}
	FP8_CONC=
	PROMPTS_X=${QVL_BENCH_PROMPTS_X:-2}
	[ -n "${QVL_BENCH_FP8_CONC:-}" ] && echo "gpu_bench: QVL_BENCH_FP8_CONC ignored: the cpu backend has no fp8 KV cache" >&2
	qvld_backend=(--backend cpu --cpu-threads "$(nproc)" --kv-cache-memory-bytes 268435456)
else
	if [ -f "$pack_file" ]; then
		rm -rf "$work/pack" && mkdir -p "$work/pack"
		tar -xzf "$pack_file" -C "$work/pack"
		run=$work/pack/run
		export QVL_DATADIR=${QVL_DATADIR:-$work/pack/share}
	elif [ -x .gpu/run ]; then
		run=$top/.gpu/run
		export QVL_DATADIR=${QVL_DATADIR:-$top/.gpu/share}
	else
		die "no $pack_file and no .gpu/run: pack the programs first (tests/bench/gpu_bench.sh --pack BUILD_DIR)"
	fi
	QVL=("$run" qvl) QVLD=("$run" qvld) FCGI=("$run" qvl-fcgi)
	preset=${QVL_BENCH_PRESET:-2b}
	IN=${QVL_BENCH_IN:-512} OUT=${QVL_BENCH_OUT:-128}
	CONC=${QVL_BENCH_CONC:-8 32 64 128 256}
	PREFILL=${QVL_BENCH_PREFILL:-512 4096}
	ROW_TIMEOUT=${QVL_BENCH_ROW_TIMEOUT:-90}
	FP8_CONC=${QVL_BENCH_FP8_CONC-128 256}
	PROMPTS_X=${QVL_BENCH_PROMPTS_X:-8}
	qvld_backend=(--backend cuda)
fi
QVL_BUDGET=${QVL_BENCH_QVL_BUDGET:-300}
SINGLE_N=${QVL_BENCH_SINGLE_N:-3}
PREFILL_N=${QVL_BENCH_PREFILL_N:-5}
IMAGE=${QVL_BENCH_IMAGE:-448x448}
IMAGE_N=${QVL_BENCH_IMAGE_N:-5}
IMAGE_TEXT=32
max_conc=1
for c in $CONC $FP8_CONC; do [ "$c" -gt "$max_conc" ] && max_conc=$c; done
max_prefill=$IN
for n in $PREFILL; do [ "$n" -gt "$max_prefill" ] && max_prefill=$n; done
max_model_len=$(( (max_prefill + OUT + 64 + 1023) / 1024 * 1024 ))

pids=()
poll_pid=
cleanup() {
	local p
	for p in "${pids[@]}" $poll_pid; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- the checkpoint -----------------------------------------------------------------------------
model=$work/model-$preset
if [ -f "$model/model.safetensors" ] && [ -f "$model/.qvl-bench-done" ]; then
	say "reusing $model"
	mk_s=reused
else
	say "qvl mkmodel --preset $preset (bf16) into $model"
	rm -rf "$model"
	t=$(date +%s.%N)
	"${QVL[@]}" mkmodel --preset "$preset" --seed 1 --dtype bf16 --out "$model" >"$work/logs/mkmodel.log" 2>&1 ||
		{ cat "$work/logs/mkmodel.log"; die "qvl mkmodel failed"; }
	mk_s=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	touch "$model/.qvl-bench-done"
	say "mkmodel took $mk_s s"
fi

# Prompts over HTTP/FastCGI are N one-token words inside the chat template: ask the tokenizer how
# many tokens the template adds, so that the rows get the prompt lengths they name.
tmpl=$(echo '{"messages":[{"role":"user","content":"the"}]}' | "${QVL[@]}" tokenize --model "$model" --chat |
	python3 -c 'import json, sys; print(len(json.load(sys.stdin)["prompt_token_ids"]) - 1)') ||
	die "qvl tokenize --chat failed"
words() { local n=$(( $1 - tmpl )); [ "$n" -ge 1 ] || n=1; echo "$n"; }
say "the chat template adds $tmpl tokens to a text prompt"

# ---- qvld, qvl-fcgi -----------------------------------------------------------------------------
qvld_sock=$work/qvld.sock
fcgi_sock=$work/fcgi.sock
gpu_mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n 1 | tr -dc '0-9'; }
have_smi=
[ "$backend" != cpu ] && command -v nvidia-smi >/dev/null 2>&1 && have_smi=1

# serve TAG EXTRA_QVLD_ARGS...: start qvld (log $work/logs/qvld-TAG.log) and qvl-fcgi; qvld's GPU
# memory is polled into $res/qvld_mem-TAG while they run
serve() {
	local tag=$1 t mem_before=
	shift
	rm -f "$qvld_sock" "$fcgi_sock"
	[ -n "$have_smi" ] && mem_before=$(gpu_mem)
	say "qvld ${qvld_backend[*]} --max-model-len $max_model_len ${QVL_BENCH_QVLD_ARGS:-} $*"
	t=$(date +%s.%N)
	# shellcheck disable=SC2086
	"${QVLD[@]}" --model "$model" --served-model-name qvl-bench --socket "$qvld_sock" \
		"${qvld_backend[@]}" --max-model-len "$max_model_len" --log-level notice ${QVL_BENCH_QVLD_ARGS:-} "$@" \
		>"$work/logs/qvld-$tag.log" 2>&1 &
	qvld_pid=$!
	pids+=("$qvld_pid")
	for _ in $(seq 3000); do
		grep -q "serving" "$work/logs/qvld-$tag.log" 2>/dev/null && break
		kill -0 "$qvld_pid" 2>/dev/null || { tail -n 40 "$work/logs/qvld-$tag.log"; die "qvld exited during start-up"; }
		sleep 0.1
	done
	grep -q "serving" "$work/logs/qvld-$tag.log" || { tail -n 40 "$work/logs/qvld-$tag.log"; die "qvld did not start in 300 s"; }
	qvld_start_s=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	say "qvld serving after $qvld_start_s s"
	# qvld's GPU memory: the largest used_memory nvidia-smi reports for its pid (or, when the
	# container's pids do not match, the sum over all compute processes: only qvld runs now),
	# and the device's memory.used less what it was before qvld started, every 0.5 s.
	if [ -n "$have_smi" ]; then
		(
			max_app=0 max_dev=0
			while :; do
				a=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
					awk -F', *' -v p="$qvld_pid" '{ s += $2; if ($1 == p) m = $2 } END { print (m != "" ? m : s + 0) }')
				d=$(gpu_mem)
				[ -n "$a" ] && [ "$a" -gt "$max_app" ] && max_app=$a
				[ -n "$d" ] && [ -n "$mem_before" ] && [ $((d - mem_before)) -gt "$max_dev" ] && max_dev=$((d - mem_before))
				echo "$max_app $max_dev" >"$res/qvld_mem.tmp" && mv "$res/qvld_mem.tmp" "$res/qvld_mem-$tag"
				sleep 0.5
			done
		) &
		poll_pid=$!
	fi
	"${FCGI[@]}" --listen "$fcgi_sock" --threads $((max_conc + 16)) --daemon-socket "$qvld_sock" \
		--log-level warn ${QVL_BENCH_FCGI_ARGS:-} >"$work/logs/qvl-fcgi-$tag.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do [ -S "$fcgi_sock" ] && break; sleep 0.1; done
	[ -S "$fcgi_sock" ] || { cat "$work/logs/qvl-fcgi-$tag.log"; die "qvl-fcgi did not listen on $fcgi_sock"; }
}

stop_serving() {
	sleep 1
	if [ -n "$poll_pid" ]; then
		kill "$poll_pid" 2>/dev/null || true
		wait "$poll_pid" 2>/dev/null || true
		poll_pid=
	fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pids=()
	say "qvld and qvl-fcgi stopped"
}

# bench NAME ARGS...: one `qvl bench` row, its JSON in $res/NAME.json, its table in the log. Each
# row draws its prompts and images with a seed of its own: qvl bench's request k depends only
# on (seed, k), so rows sharing a seed would find each other's prompts in qvld's prefix cache
# (and images in its encoder cache) and measure hits instead of prefill.
row_seed=0
bench() {
	local name=$1 rc=0
	shift
	row_seed=$((row_seed + 1))
	if [ "$(elapsed)" -gt "$QVL_BUDGET" ]; then
		echo "== qvl bench $name: skipped (past QVL_BENCH_QVL_BUDGET=$QVL_BUDGET s)"
		echo '{"skipped": true}' >"$res/$name.json"
		return 0
	fi
	say "qvl bench $name: $*"
	timeout "$ROW_TIMEOUT" "${QVL[@]}" bench --fcgi "$fcgi_sock" --ignore-eos --seed "$row_seed" \
		--result-json "$res/$name.json" "$@" >"$work/logs/bench-$name.log" 2>&1 || rc=$?
	if [ "$rc" = 124 ]; then
		echo "   timed out after $ROW_TIMEOUT s"
		echo '{"timeout": true}' >"$res/$name.json"
	elif [ "$rc" != 0 ]; then
		echo "   failed ($rc):"; tail -n 5 "$work/logs/bench-$name.log" | sed 's/^/   /'
		rm -f "$res/$name.json"
	else
		grep -E "Output token throughput|Median TTFT|Mean TPOT|Failed requests" "$work/logs/bench-$name.log" | sed 's/^/   /' || true
	fi
}

serve bf16
start_s=$qvld_start_s
bench warmup --num-prompts 4 --max-concurrency 4 --input-len "$(words "$IN")" --output-len 8
bench warmup-image --num-prompts 2 --max-concurrency 1 --input-len "$IMAGE_TEXT" --output-len 1 --image-size "$IMAGE"
bench single --num-prompts "$SINGLE_N" --max-concurrency 1 --input-len "$(words "$IN")" --output-len "$OUT"
for n in $PREFILL; do
	bench "prefill$n" --num-prompts "$PREFILL_N" --max-concurrency 1 --input-len "$(words "$n")" --output-len 1
done
bench image --num-prompts "$IMAGE_N" --max-concurrency 1 --input-len "$IMAGE_TEXT" --output-len 1 --image-size "$IMAGE"
for c in $CONC; do
	bench "conc$c" --num-prompts $((PROMPTS_X * c)) --max-concurrency "$c" --input-len "$(words "$IN")" --output-len "$OUT"
done
stop_serving
if [ -n "$FP8_CONC" ]; then
	serve fp8 --kv-cache-dtype fp8
	bench fp8-warmup --num-prompts 4 --max-concurrency 4 --input-len "$(words "$IN")" --output-len 8
	for c in $FP8_CONC; do
		bench "fp8conc$c" --num-prompts $((PROMPTS_X * c)) --max-concurrency "$c" --input-len "$(words "$IN")" --output-len "$OUT"
	done
	stop_serving
fi

# ---- transformers -------------------------------------------------------------------------------
hf=${QVL_BENCH_HF:-auto}
hf_note=
if [ "$hf" = 0 ]; then
	hf_note="transformers: skipped (QVL_BENCH_HF=0)"
elif ! python3 -c 'import torch, transformers' 2>/dev/null; then
	hf_note="transformers: skipped (python3 cannot import torch and transformers here)"
	[ "$hf" = 1 ] && die "$hf_note"
elif ! python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
	hf_note="transformers: skipped (torch sees no CUDA device)"
	[ "$hf" = 1 ] && die "$hf_note"
else
	batches=$(echo "$CONC" | tr ' ' ',')
	prefills=$(echo "$PREFILL" | tr ' ' ',')
	say "transformers: hf_generate_baseline.py"
	set +e
	# shellcheck disable=SC2086
	timeout "${QVL_BENCH_HF_TIMEOUT:-300}" python3 "$top/tests/bench/hf_generate_baseline.py" "$model" \
		--out "$res/hf.json" --input-len "$IN" --output-len "$OUT" --batches "$batches" \
		--prefill-lens "$prefills" --image-text-len "$IMAGE_TEXT" ${QVL_BENCH_HF_ARGS:-} 2>&1 |
		tee "$work/logs/hf.log" | grep -Ev '^\{'
	rc=${PIPESTATUS[0]}
	set -e
	[ "$rc" = 0 ] || hf_note="transformers: hf_generate_baseline.py failed ($rc; 124: timed out); partial results kept, log $work/logs/hf.log"
fi
[ -n "$hf_note" ] && echo "$hf_note"

# ---- the table ----------------------------------------------------------------------------------
say "done"
python3 - "$res" "$backend" "$preset" "$IN" "$OUT" "$CONC" "$PREFILL" "$IMAGE" "$IMAGE_TEXT" "$mk_s" \
	"$start_s" "$hf_note" "$FP8_CONC" <<'EOF'
import json, os, statistics, sys
res, backend, preset, IN, OUT, conc, prefill, image, image_text, mk_s, start_s, hf_note, fp8_conc = sys.argv[1:]
def load(name):
    try:
        with open(os.path.join(res, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
hf = load("hf") or {}
rows = []  # (metric, qvl, hf, higher_is_better, fmt)
def q_ok(j):
    return j is not None and j.get("completed", 0) > 0
def q_val(name, f):
    j = load(name)
    if j is None:
        return "failed"
    if j.get("timeout"):
        return "timeout"
    if j.get("skipped"):
        return "skipped"
    if not q_ok(j):
        return "failed"
    return f(j)
def prefill_tok_s(j):
    v = [n / t for n, t in zip(j["input_lens"], j["ttfts"]) if t > 0 and n > 0]
    return statistics.median(v) if v else None
def tokens_in(name):
    j = load(name)
    return round(j["total_input_tokens"] / j["completed"]) if q_ok(j) else None
def tpot(j):
    return 1e3 / j["mean_tpot_ms"] if j.get("mean_tpot_ms") else None
def hf_get(*ks):
    d = hf
    for k in ks:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d
n_in = tokens_in("single")
rows.append((f"decode tok/s, 1 stream ({n_in or IN} in, {OUT} out)", q_val("single", tpot), hf_get("single", "decode_tok_s"), True))
rows.append(("TTFT ms, 1 stream", q_val("single", lambda j: j["median_ttft_ms"]), None, False))
for n in prefill.split():
    n_in = tokens_in(f"prefill{n}")
    rows.append((f"prefill tok/s, {n_in or n}-token prompt", q_val(f"prefill{n}", prefill_tok_s), hf_get("prefill", n, "tok_s"), True))
    rows.append((f"TTFT ms, {n_in or n}-token prompt", q_val(f"prefill{n}", lambda j: j["median_ttft_ms"]), hf_get("prefill", n, "ttft_ms"), False))
n_in = tokens_in("image")
rows.append((f"TTFT ms, {image} image + {image_text} text ({n_in or '?'} tokens)", q_val("image", lambda j: j["median_ttft_ms"]), hf_get("image", "ttft_ms"), False))
for c in conc.split():
    rows.append((f"decode tok/s @{c} (C/TPOT | B*(out-1)/decode time)", q_val(f"conc{c}", lambda j, c=int(c): c * tpot(j) if tpot(j) else None), hf_get("batch", c, "decode_tok_s"), True))
    rows.append((f"output tok/s @{c} (sum out/duration)", q_val(f"conc{c}", lambda j: j["output_throughput"]), hf_get("batch", c, "output_tok_s"), True))
    rows.append((f"  median TTFT ms @{c}", q_val(f"conc{c}", lambda j: j["median_ttft_ms"]), None, False))
for c in fp8_conc.split():
    rows.append((f"decode tok/s @{c}, --kv-cache-dtype fp8", q_val(f"fp8conc{c}", lambda j, c=int(c): c * tpot(j) if tpot(j) else None), None, True))
    rows.append((f"output tok/s @{c}, --kv-cache-dtype fp8", q_val(f"fp8conc{c}", lambda j: j["output_throughput"]), None, True))
mem = None
try:
    with open(os.path.join(res, "qvld_mem-bf16")) as f:
        app, dev = (int(x) for x in f.read().split())
        mem = app if app > 0 else (dev if dev > 0 else None)
except (OSError, ValueError):
    pass
rows.append(("peak GPU memory MiB (qvld: nvidia-smi | torch max_allocated)", mem if backend != "cpu" else None, hf_get("peak_mib"), False))
def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
def ratio(q, t):
    if isinstance(q, (int, float)) and isinstance(t, (int, float)) and t > 0:
        return f"{q / t:.2f}"
    return "-"
w = max(len(r[0]) for r in rows) + 2
print()
print(f"qvl ({backend} backend, preset {preset}) vs transformers "
      f"{hf.get('transformers', '-')} / torch {hf.get('torch', '-')} on {hf.get('device', '-')}")
print(f"{'metric':<{w}}{'qvl':>12}{'transformers':>14}{'ratio':>8}")
print("-" * (w + 34))
for name, q, t, hib in rows:
    print(f"{name:<{w}}{fmt(q):>12}{fmt(t):>14}{ratio(q, t):>8}  {'(higher better)' if hib else '(lower better)'}")
print("-" * (w + 34))
print(f"ratio = qvl / transformers. mkmodel {mk_s}{' s' if mk_s != 'reused' else ''}, qvld start-up {start_s} s. Results: {res}")
if hf_note:
    print(hf_note)
EOF
