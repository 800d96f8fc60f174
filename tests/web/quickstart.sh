#!/bin/bash
# quickstart.sh: the README's first command, end to end, from a built source tree: qvld on a
# model (the tiny random one by default, or the model directory given), qvl-fcgi spawned by
# lighttpd on 127.0.0.1:${QVL_PORT:-8080}, then one real chat request with an image through
# curl, whose answer is printed. Everything runs as the current user under
# ${TMPDIR:-/tmp}/qvl-quickstart and stops at the end, unless --keep leaves it serving.
#
#   tests/web/quickstart.sh [--keep] [MODEL_DIR]
#
# Random weights make the answer noise; what it shows is the whole path working:
# curl → lighttpd → qvl-fcgi (FastCGI) → qvld (engine, CPU backend) and back.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
keep=0
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
model=${1:-}
port=${QVL_PORT:-8080}
work=${TMPDIR:-/tmp}/qvl-quickstart
for prog in qvl qvld qvl-fcgi; do
	[ -x "$top/$prog" ] || { echo "quickstart: $top/$prog is not built (run make first)" >&2; exit 1; }
done
command -v lighttpd >/dev/null || { echo "quickstart: lighttpd is not installed" >&2; exit 1; }
command -v curl >/dev/null || { echo "quickstart: curl is not installed" >&2; exit 1; }
export QVL_DATADIR="$top/share"
mkdir -p "$work"
pids=()
cleanup() {
	[ "$keep" = 1 ] && return
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

if [ -z "$model" ]; then
	model="$work/tiny"
	[ -f "$model/model.safetensors" ] || "$top/qvl" mkmodel --preset tiny --out "$model"
fi

echo "== qvld on $model (CPU backend)"
rm -f "$work/qvld.sock"
QVL_CONFIG= "$top/qvld" --model "$model" --served-model-name qvl --socket "$work/qvld.sock" \
	--backend cpu --max-model-len 4096 --kv-cache-memory-bytes 1073741824 \
	>"$work/qvld.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
	[ -S "$work/qvld.sock" ] && break
	kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/qvld.log"; exit 1; }
	sleep 0.1
done
[ -S "$work/qvld.sock" ] || { echo "quickstart: qvld did not start" >&2; cat "$work/qvld.log"; exit 1; }

echo "== lighttpd on 127.0.0.1:$port, spawning qvl-fcgi"
cat >"$work/lighttpd.conf" <<EOF
server.document-root = "$work"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$work/lighttpd.log"
server.upload-dirs = ( "$work" )
server.modules = ( "mod_fastcgi" )
server.stream-response-body = 2
server.max-request-size = 65536
fastcgi.server = ( "/" => ((
	"bin-path" => "$top/qvl-fcgi --threads 4 --daemon-socket $work/qvld.sock",
	"bin-environment" => ( "QVL_DATADIR" => "$top/share" ),
	"socket" => "$work/qvl-fcgi.sock",
	"max-procs" => 1,
	"check-local" => "disable",
)) )
EOF
lighttpd -tt -f "$work/lighttpd.conf" >/dev/null
lighttpd -D -f "$work/lighttpd.conf" &
pids+=($!)
base="http://127.0.0.1:$port"
for _ in $(seq 100); do
	curl -fs "$base/health" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "$base/v1/models" >/dev/null

echo "== a chat request with an image"
img=$(base64 -w0 "$top/tests/data/images/png_rgb8.png")
cat >"$work/request.json" <<EOF
{"model": "qvl", "max_tokens": 32, "temperature": 0,
 "messages": [{"role": "user", "content": [
   {"type": "image_url", "image_url": {"url": "data:image/png;base64,$img"}},
   {"type": "text", "text": "What is in this picture?"}]}]}
EOF
curl -fsS "$base/v1/chat/completions" -H 'Content-Type: application/json' \
	--data-binary @"$work/request.json" | tee "$work/answer.json"
echo
if [ "$keep" = 1 ]; then
	echo "== serving on $base (qvld pid ${pids[0]}, lighttpd pid ${pids[1]}); stop with:"
	echo "   kill ${pids[*]}"
fi
