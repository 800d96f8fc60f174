# tests/web/common.sh: what the web-server integration tests (tests/web_*.test) share. Sourced by
# bash; each test then only writes its server's configuration (from the shipped snippet in etc/),
# starts the server and calls web_run_checks.
#
#   web_init NAME             prerequisites (skip 77 without curl or a built qvl-fcgi), a
#                             temporary directory, an EXIT trap that stops every process started
#                             here, a tiny model, qvld on $QVLD_SOCK
#   web_start_responder       qvl-fcgi on its own (--listen $FCGI_SOCK), for servers that only
#                             connect: nginx, Apache mod_proxy_fcgi
#   web_start_server FN       pick a free port ($PORT), run FN (writes the configuration, starts
#                             the server in the background, sets SERVER_PID, SERVER_LOG and
#                             SERVER_STOP), wait until the API answers; retries on a port clash
#   web_run_checks            every check below, against http://127.0.0.1:$PORT
#   web_finish                the summary; logs when something failed; the exit status
#
# Checks: GET /v1/models; /health, /version, /metrics, /tokenize, /detokenize are routed to the
# responder; a chat completion (content, usage); a streamed one whose events arrive one by one
# (spread over the request's time, each apart from the one before: not held back by a buffer or
# a compressor, as SDKs' Accept-Encoding: gzip would invite);
# an image as a data: URL and as a file:// URL under --allowed-local-media-path (and one outside
# it refused); the OpenAI Node SDK (tests/web/openai_sdk.mjs; skipped without node or the npm
# package openai on NODE_PATH); a wrong or missing API key (401), a body over
# --max-request-bytes (413), malformed JSON (400), an unknown model (404); and qvld killed with
# SIGKILL in the middle of a stream: the client gets an error event and the end of the response
# (no hang), requests meanwhile get 503, and once qvld is back on the same socket the next
# request succeeds with the same web server and responders.
#
# The servers run as www-data (or nobody) when the test runs as root, as the invoking user
# otherwise; the temporary directory is then made traversable and qvld's socket world-writable.
# Set QVL_WEB_KEEP=1 to keep the temporary directory.

B="${QVL_BUILDDIR:-.}"
srcdir="${srcdir:-.}"
API_KEY=sk-test
MODEL=qvl-tiny
MAX_REQUEST_BYTES=1048576
fails=0 passes=0 skips=0
SERVER_PID='' SERVER_LOG='' SERVER_STOP=TERM
QVLD_PID='' RESPONDER_PID=''
unset QVL_API_KEY QVL_CONFIG NOTIFY_SOCKET WATCHDOG_USEC LISTEN_FDS LISTEN_PID

ok() { passes=$((passes + 1)); echo "ok: $*"; }
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }
skip_part() { skips=$((skips + 1)); echo "skipped: $*"; }
die() { echo "FAIL: $*"; exit 1; }

now() { if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/,/.}"; else date +%s.%N; fi; }

# wait_until TIMEOUT_S CMD...: poll CMD every 50 ms until it succeeds (0); 1 on timeout; 3 at
# once when CMD returns 3 (it never will: the process it waits for died)
wait_until() {
	local t=$1 end rc
	shift
	end=$(awk -v n="$(now)" -v t="$t" 'BEGIN { printf "%.3f", n + t }')
	while :; do
		"$@"
		rc=$?
		[ "$rc" = 0 ] && return 0
		[ "$rc" = 3 ] && return 3
		awk -v n="$(now)" -v e="$end" 'BEGIN { exit !(n > e) }' && return 1
		sleep 0.05
	done
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# stop PID [SIGNAL]: signal it, wait up to 10 s, then SIGKILL
stop_pid() {
	local pid=$1 sig=${2:-TERM}
	alive "$pid" || return 0
	kill -"$sig" "$pid" 2>/dev/null
	wait_until 10 eval "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# The processes left whose command line names our temporary directory: responders a web server
# spawned (lighttpd, mod_fcgid) that outlived it. Ours only: the directory name is unique.
stray_pids() {
	local f pid
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}; pid=${pid%/cmdline}
		[ "$pid" = "$$" ] && continue
		{ tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qF -- "$tmp/" && echo "$pid"
	done
}

web_cleanup() {
	local pid
	[ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID" "$SERVER_STOP"
	[ -n "$RESPONDER_PID" ] && stop_pid "$RESPONDER_PID"
	[ -n "$QVLD_PID" ] && stop_pid "$QVLD_PID"
	if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then
		for pid in $(stray_pids); do kill -TERM "$pid" 2>/dev/null; done
		wait_until 5 eval '[ -z "$(stray_pids)" ]' || for pid in $(stray_pids); do kill -KILL "$pid" 2>/dev/null; done
		if [ -n "${QVL_WEB_KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
	fi
}

# sed replacement text: escape \, | and &
sedrep() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

web_init() {
	local name=$1 base
	command -v curl >/dev/null 2>&1 || { echo "no curl: skipping"; exit 77; }
	[ -x "$B/qvl-fcgi" ] || { echo "$B/qvl-fcgi is not built: skipping"; exit 77; }
	[ -x "$B/qvl" ] && [ -x "$B/qvld" ] || die "$B/qvl or $B/qvld is not built"
	case "$B" in /*) ;; *) B="$(cd "$B" && pwd)" ;; esac
	case "$srcdir" in /*) ;; *) srcdir="$(cd "$srcdir" && pwd)" ;; esac
	# Unix socket paths are limited to 107 bytes, and lighttpd splits bin-path on spaces
	base="${TMPDIR:-/tmp}"
	case "$base" in *[[:space:]]*) base=/tmp ;; esac
	[ "${#base}" -gt 60 ] && base=/tmp
	tmp=$(mktemp -d "$base/qvl-web-$name.XXXXXX") || die "mktemp"
	trap web_cleanup EXIT
	trap 'exit 1' INT TERM HUP
	mkdir -p "$tmp/run" "$tmp/www" "$tmp/media" "$tmp/logs"
	if [ "$(id -u)" = 0 ]; then
		if id www-data >/dev/null 2>&1; then WEB_USER=www-data; else WEB_USER=nobody; fi
		WEB_GROUP=$(id -gn "$WEB_USER")
		chmod 0755 "$tmp"
		chown "$WEB_USER:$WEB_GROUP" "$tmp/run" "$tmp/logs"
		# Responders a web server spawns run as $WEB_USER, which may not reach the build tree
		# (under /root, say): give them a copy, with the data an uninstalled program looks
		# for beside itself (share/).
		mkdir "$tmp/bin"
		cp "$B/qvl-fcgi" "$tmp/bin/" || die "cp qvl-fcgi"
		[ -d "$B/share" ] && cp -rL "$B/share" "$tmp/bin/share"
		chmod -R a+rX "$tmp/bin"
		FCGI_BIN="$tmp/bin/qvl-fcgi"
	else
		WEB_USER='' WEB_GROUP=''
		FCGI_BIN="$B/qvl-fcgi"
	fi
	QVLD_SOCK="$tmp/qvld.sock"
	FCGI_SOCK="$tmp/run/fcgi.sock"
	# what every responder gets, however it is started
	RESPONDER_ARGS="--daemon-socket $QVLD_SOCK --api-key $API_KEY --max-request-bytes $MAX_REQUEST_BYTES --allowed-local-media-path $tmp/media --log-level info"

	"$B/qvl" mkmodel --preset tiny --out "$tmp/model" >"$tmp/logs/mkmodel.log" 2>&1 ||
		{ cat "$tmp/logs/mkmodel.log"; die "qvl mkmodel"; }
	cp "$srcdir/tests/data/images/jpeg_420.jpg" "$tmp/media/photo.jpg" || die "no test image"
	chmod -R a+rX "$tmp/model" "$tmp/media"
	QVLD_STARTS=0
	web_start_qvld
}

qvld_listening() {
	alive "$QVLD_PID" || return 3
	grep -q "serving" "$QVLD_LOG" 2>/dev/null
}

# Start qvld on $QVLD_SOCK (replacing a stale socket file) and wait until it listens.
web_start_qvld() {
	QVLD_STARTS=$((QVLD_STARTS + 1))
	QVLD_LOG="$tmp/logs/qvld.$QVLD_STARTS.log"
	local mode=()
	[ -n "$WEB_USER" ] && mode=(--socket-mode 0666)
	QVL_CONFIG='' "$B/qvld" --model "$tmp/model" --socket "$QVLD_SOCK" --served-model-name "$MODEL" \
		--cpu-threads 1 --kv-cache-memory-bytes 67108864 --max-model-len 2048 \
		--log-level notice "${mode[@]}" >"$QVLD_LOG" 2>&1 &
	QVLD_PID=$!
	wait_until 120 qvld_listening || { cat "$QVLD_LOG"; die "qvld did not start listening on $QVLD_SOCK"; }
}

# qvl-fcgi --listen $FCGI_SOCK, for servers that connect to a socket someone else manages. The
# web server's user must be able to connect: the socket is made group- and world-writable.
web_start_responder() {
	# shellcheck disable=SC2086
	"$FCGI_BIN" --listen "$FCGI_SOCK" --threads 4 $RESPONDER_ARGS >"$tmp/logs/qvl-fcgi.log" 2>&1 &
	RESPONDER_PID=$!
	wait_until 30 eval '[ -S "$FCGI_SOCK" ] || ! alive "$RESPONDER_PID"'
	alive "$RESPONDER_PID" && [ -S "$FCGI_SOCK" ] || { cat "$tmp/logs/qvl-fcgi.log"; die "qvl-fcgi --listen $FCGI_SOCK did not start"; }
	chmod 0666 "$FCGI_SOCK"
}

# ---- HTTP helpers ------------------------------------------------------------------------------

# req NAME METHOD PATH [curl args...]: body in $tmp/NAME.out, status in $status
req() {
	local name=$1 method=$2 path=$3
	shift 3
	status=$(curl -sS -o "$tmp/$name.out" -w '%{http_code}' --max-time 60 -X "$method" \
		"$@" "$URL$path" 2>"$tmp/$name.err") || status="curl-error($(tr '\n' ' ' <"$tmp/$name.err"))"
}
auth=(-H "Authorization: Bearer $API_KEY")
json=(-H "Content-Type: application/json")

# jcheck FILE JQ_FILTER GREP_PATTERN: with jq, `jq -e FILTER`; without, a looser grep -E
have_jq=
command -v jq >/dev/null 2>&1 && [ -z "${QVL_WEB_NO_JQ:-}" ] && have_jq=1
jcheck() {
	if [ -n "$have_jq" ]; then jq -e "$2" "$1" >/dev/null 2>&1; else grep -Eq -- "$3" "$1"; fi
}

# expect_status NAME WANT METHOD PATH [curl args]: one request, one verdict
expect_status() {
	local name=$1 want=$2
	shift 2
	req "$name" "$@"
	if [ "$status" = "$want" ]; then ok "$name: $status"; else fail "$name: status $status, want $want: $(head -c 400 "$tmp/$name.out")"; fi
}

chat_body() { # model max_tokens stream content-json
	printf '{"model": "%s", "max_tokens": %s, "stream": %s, "ignore_eos": true, "temperature": 0, "messages": [{"role": "user", "content": %s}]}' "$1" "$2" "$3" "$4"
}

# ---- start-up ----------------------------------------------------------------------------------

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		port_free "$p" && { echo "$p"; return 0; }
	done
	return 1
}
api_ready() {
	alive "$SERVER_PID" || return 3
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${auth[@]}" "$URL/v1/models")" = 200 ]
}

# web_start_server FN: FN writes the configuration for $PORT, starts the server in the
# background and sets SERVER_PID, SERVER_LOG (its error log) and SERVER_STOP (the signal that
# stops it). Waits until GET /v1/models answers 200 through the whole chain.
web_start_server() {
	local fn=$1
	for _ in 1 2 3; do
		PORT=$(pick_port) || die "no free port"
		URL="http://127.0.0.1:$PORT"
		"$fn" || die "$fn failed"
		if wait_until 60 api_ready; then
			ok "server up on port $PORT (pid $SERVER_PID)"
			return 0
		fi
		if ! alive "$SERVER_PID" && cat "$SERVER_LOG" "$tmp"/logs/*.out 2>/dev/null | grep -qi "address already in use"; then
			echo "port $PORT was taken; again"
			continue
		fi
		web_dump_logs
		req last GET /v1/models "${auth[@]}"
		die "the API did not answer 200 on $URL/v1/models within 60 s (last: $status $(head -c 300 "$tmp/last.out"))"
	done
	die "no port after 3 tries"
}

web_dump_logs() {
	local f
	for f in "$SERVER_LOG" "$tmp"/logs/*; do
		[ -n "$f" ] && [ -s "$f" ] || continue
		echo "---- $f (last 60 lines)"
		tail -n 60 "$f"
	done
}

# ---- Apache ------------------------------------------------------------------------------------

# apache_find MODULE...: sets APACHE (the httpd binary) and APACHE_MODDIR (holding every
# mod_MODULE.so named); exits 77 when either is missing. Call before web_init.
apache_find() {
	local d m
	APACHE=$(command -v apache2 || command -v httpd || ls /usr/sbin/apache2 /usr/sbin/httpd 2>/dev/null | head -n 1)
	[ -n "$APACHE" ] && [ -x "$APACHE" ] || { echo "no apache2/httpd: skipping"; exit 77; }
	APACHE_MODDIR=
	for d in /usr/lib/apache2/modules /usr/lib64/httpd/modules /usr/lib/httpd/modules /usr/libexec/apache2; do
		[ -f "$d/mod_proxy.so" ] && { APACHE_MODDIR=$d; break; }
	done
	[ -n "$APACHE_MODDIR" ] || { echo "no Apache module directory: skipping"; exit 77; }
	for m in "$@"; do
		[ -f "$APACHE_MODDIR/mod_$m.so" ] || { echo "no mod_$m in $APACHE_MODDIR: skipping"; exit 77; }
	done
}

# apache_conf FILE MODULE...: a minimal httpd.conf on 127.0.0.1:$PORT loading the modules named
# (mpm_event, authz_core, env, filter and deflate always), with compression on for every type a
# response may have, so that a streamed response would be held back wherever the snippet did
# not turn it off. The caller appends its own lines (an Include of the snippet).
apache_conf() {
	local f=$1 m
	shift
	{
		echo "ServerRoot \"$tmp\""
		echo "Listen 127.0.0.1:$PORT"
		echo "ServerName localhost"
		echo "PidFile $tmp/run/apache.pid"
		echo "DefaultRuntimeDir $tmp/run"
		echo "ErrorLog $tmp/logs/apache.error.log"
		echo "LogLevel warn"
		for m in mpm_event authz_core env filter deflate "$@"; do
			echo "LoadModule ${m}_module $APACHE_MODDIR/mod_$m.so"
		done
		[ -n "$WEB_USER" ] && printf 'User %s\nGroup %s\n' "$WEB_USER" "$WEB_GROUP"
		echo "DocumentRoot $tmp/www"
		echo "AddOutputFilterByType DEFLATE text/html text/plain application/json text/event-stream"
	} >"$f"
}

# Start Apache on CONF in the foreground (its own process group leader is $SERVER_PID).
apache_start() {
	local conf=$1
	"$APACHE" -t -f "$conf" >"$tmp/logs/apache.check" 2>&1 || { cat "$tmp/logs/apache.check"; return 1; }
	"$APACHE" -f "$conf" -DFOREGROUND >"$tmp/logs/apache.out" 2>&1 &
	SERVER_PID=$! SERVER_LOG="$tmp/logs/apache.error.log" SERVER_STOP=TERM
}

# ---- the checks --------------------------------------------------------------------------------

check_models() {
	req models GET /v1/models "${auth[@]}"
	if [ "$status" = 200 ] && jcheck "$tmp/models.out" '.object == "list" and any(.data[]; .id == "'$MODEL'")' '"id" *: *"'$MODEL'"'; then
		ok "GET /v1/models lists $MODEL"
	else
		fail "GET /v1/models: status $status: $(head -c 400 "$tmp/models.out")"
	fi
}

# The other paths the responder serves reach it (and not the web server's 404).
check_routes() {
	expect_status health 200 GET /health "${auth[@]}"
	expect_status version 200 GET /version "${auth[@]}"
	expect_status metrics 200 GET /metrics "${auth[@]}"
	expect_status tokenize 200 POST /tokenize "${auth[@]}" "${json[@]}" \
		--data-binary '{"model": "'$MODEL'", "prompt": "Hello, world"}'
	expect_status detokenize 200 POST /detokenize "${auth[@]}" "${json[@]}" \
		--data-binary '{"model": "'$MODEL'", "tokens": [9707, 11, 1879]}'
}

check_chat_response() { # name: a 200 chat.completion with string content and usage
	local name=$1
	if [ "$status" = 200 ] && jcheck "$tmp/$name.out" \
		'(.choices[0].message.content | type) == "string" and .usage.completion_tokens > 0 and .usage.prompt_tokens > 0' \
		'"content" *: *"'; then
		if [ -n "$have_jq" ] || grep -Eq '"usage" *: *\{' "$tmp/$name.out"; then
			ok "$name: 200, content and usage"
			return 0
		fi
	fi
	fail "$name: status $status: $(head -c 600 "$tmp/$name.out")"
}

check_chat() {
	req chat POST /v1/chat/completions "${auth[@]}" "${json[@]}" \
		--data-binary "$(chat_body "$MODEL" 8 false '"Hello!"')"
	check_chat_response chat
}

# A streamed completion, each line stamped with its arrival time as curl -N hands it over.
check_stream() {
	local t0 out="$tmp/stream.ts"
	t0=$(now)
	# Accept-Encoding as SDKs and browsers send it: a compressing server would hold the stream
	curl -sS -N --max-time 120 "${auth[@]}" "${json[@]}" -H "Accept-Encoding: gzip" \
		--data-binary "$(chat_body "$MODEL" 64 true '"Count to one hundred."')" \
		"$URL/v1/chat/completions" 2>"$tmp/stream.err" |
		while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME:-$(date +%s.%N)}" "$line"; done >"$out"
	local n
	n=$(grep -c ' data: {' "$out")
	if [ "$n" -lt 3 ] || ! grep -q ' data: \[DONE\]' "$out" || ! grep -q '"content"' "$out"; then
		fail "stream: $n data events, want >= 3 with content and a final [DONE]:"; head -c 1500 "$out"; cat "$tmp/stream.err"
		return
	fi
	# Streamed, the events arrive one by one as tokens are made: spread over most of the
	# request's time, and most of them apart from the one before. Buffered (wholly, or in
	# pieces of a few KB as nginx's and Apache's buffers fill), they arrive in bursts whose
	# lines follow each other within microseconds.
	local verdict
	verdict=$(grep ' data: ' "$out" | cut -d' ' -f1 | sed 's/,/./' | awk -v t0="${t0/,/.}" '
		NR == 1 { first = $1 }
		NR > 1 { gaps++; if ($1 - prev > 0.001) apart++ }
		{ prev = $1 }
		END {
			spread = prev - first
			good = spread > 0.02 && spread > 0.3 * (prev - t0) && apart >= 0.5 * gaps
			printf "%s first at +%.3f s, last at +%.3f s, %d of %d events apart from the previous\n", good ? "yes" : "no", first - t0, prev - t0, apart, gaps
		}')
	case "$verdict" in
	yes*) ok "stream: $n events, ${verdict#yes }" ;;
	*) fail "stream: the events were not delivered incrementally: ${verdict#no }" ;;
	esac
	if [ -n "$have_jq" ]; then
		if grep ' data: {' "$out" | cut -d' ' -f3- | jq -e -s 'all(.[]; .object == "chat.completion.chunk") and any(.[]; .choices[0].finish_reason != null)' >/dev/null 2>&1; then
			ok "stream: every event a chat.completion.chunk, one with finish_reason"
		else
			fail "stream: malformed chunks:"; head -c 1500 "$out"
		fi
	fi
}

check_images() {
	local b64
	b64=$(base64 -w0 "$srcdir/tests/data/images/png_rgb8.png") || { fail "base64"; return; }
	printf '%s' "$(chat_body "$MODEL" 4 false "[{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,$b64\"}}, {\"type\": \"text\", \"text\": \"What is in this image?\"}]")" >"$tmp/img_data.json"
	req image_data POST /v1/chat/completions "${auth[@]}" "${json[@]}" --data-binary @"$tmp/img_data.json"
	check_chat_response image_data
	req image_file POST /v1/chat/completions "${auth[@]}" "${json[@]}" \
		--data-binary "$(chat_body "$MODEL" 4 false "[{\"type\": \"image_url\", \"image_url\": {\"url\": \"file://$tmp/media/photo.jpg\"}}, {\"type\": \"text\", \"text\": \"Describe it.\"}]")"
	check_chat_response image_file
	# a file outside --allowed-local-media-path is refused
	req image_outside POST /v1/chat/completions "${auth[@]}" "${json[@]}" \
		--data-binary "$(chat_body "$MODEL" 4 false "[{\"type\": \"image_url\", \"image_url\": {\"url\": \"file://$srcdir/tests/data/images/jpeg_420.jpg\"}}, {\"type\": \"text\", \"text\": \"Describe it.\"}]")"
	case "$status" in
	400 | 403) ok "image_outside: $status" ;;
	*) fail "image_outside: a file:// URL outside --allowed-local-media-path got $status: $(head -c 300 "$tmp/image_outside.out")" ;;
	esac
}

check_sdk() {
	command -v node >/dev/null 2>&1 || { skip_part "OpenAI SDK: no node"; return; }
	node -e "require.resolve('openai')" >/dev/null 2>&1 || { skip_part "OpenAI SDK: no npm package openai (NODE_PATH?)"; return; }
	if node "$srcdir/tests/web/openai_sdk.mjs" "$URL/v1" "$API_KEY" "$MODEL" >"$tmp/logs/sdk.log" 2>&1; then
		ok "OpenAI SDK: $(tail -n 1 "$tmp/logs/sdk.log")"
	else
		fail "OpenAI SDK:"; sed 's/^/    /' "$tmp/logs/sdk.log"
	fi
}

check_errors() {
	local body
	body=$(chat_body "$MODEL" 4 false '"Hello!"')
	expect_status wrong_key 401 POST /v1/chat/completions -H "Authorization: Bearer sk-wrong" "${json[@]}" --data-binary "$body"
	expect_status no_key 401 GET /v1/models
	expect_status bad_json 400 POST /v1/chat/completions "${auth[@]}" "${json[@]}" --data-binary '{"model": "'$MODEL'", "messages": [{"role": '
	expect_status unknown_model 404 POST /v1/chat/completions "${auth[@]}" "${json[@]}" \
		--data-binary "$(chat_body no-such-model 4 false '"Hello!"')"
	# over --max-request-bytes (1 MiB here), well under every server's own limit (64 MiB)
	{
		printf '{"model": "%s", "max_tokens": 4, "messages": [{"role": "user", "content": "' "$MODEL"
		head -c $((MAX_REQUEST_BYTES + 512 * 1024)) /dev/zero | tr '\0' 'a'
		printf '"}]}'
	} >"$tmp/big.json"
	expect_status too_large 413 POST /v1/chat/completions "${auth[@]}" "${json[@]}" --data-binary @"$tmp/big.json"
	# ... from the responder (an OpenAI error object), not from the web server: so the server let
	# 1.5 MiB through (nginx's default limit is 1 MiB, mod_fcgid's 128 KiB)
	if [ "$status" = 413 ]; then
		if jcheck "$tmp/too_large.out" '.error.message | type == "string"' '"error" *: *\{'; then
			ok "too_large: the 413 came from qvl-fcgi"
		else
			fail "too_large: the 413 came from the web server (its body limit is below 1.5 MiB): $(head -c 300 "$tmp/too_large.out")"
		fi
	fi
	# the errors are OpenAI-style JSON
	if jcheck "$tmp/unknown_model.out" '.error.message | type == "string"' '"error" *: *\{'; then
		ok "errors carry an OpenAI error object"
	else
		fail "unknown_model: not an OpenAI error object: $(head -c 300 "$tmp/unknown_model.out")"
	fi
}

# qvld dies (SIGKILL) in the middle of a streamed response.
check_fault() {
	local out="$tmp/fault.out" cpid rc
	curl -sS -N --max-time 60 "${auth[@]}" "${json[@]}" \
		--data-binary "$(chat_body "$MODEL" 1500 true '"Write a long story."')" \
		"$URL/v1/chat/completions" >"$out" 2>"$tmp/fault.err" &
	cpid=$!
	if ! wait_until 30 eval '[ "$(grep -c "\"content\"" "$out")" -ge 3 ]'; then
		fail "fault: the stream did not start:"; head -c 1000 "$out"; cat "$tmp/fault.err"
		stop_pid "$cpid"
		return
	fi
	kill -KILL "$QVLD_PID"
	wait "$QVLD_PID" 2>/dev/null
	QVLD_PID=
	if ! wait_until 30 eval '! kill -0 $cpid 2>/dev/null'; then
		fail "fault: the client still waits 30 s after qvld died"
		stop_pid "$cpid"
	else
		wait "$cpid"
		rc=$?
		if grep -q '^data: .*"error"' "$out" && [ "$rc" = 0 ]; then
			ok "fault: qvld killed mid-stream, the client got an error event and the end of the response"
		else
			fail "fault: curl status $rc, want 0 and an error event; the last lines:"; tail -n 3 "$out" | head -c 1500; cat "$tmp/fault.err"
		fi
	fi
	# while qvld is away: an answer, not a hang
	req outage POST /v1/chat/completions "${auth[@]}" "${json[@]}" --data-binary "$(chat_body "$MODEL" 4 false '"Hello!"')"
	if [ "$status" = 503 ]; then ok "outage: 503"; else fail "outage: status $status, want 503: $(head -c 300 "$tmp/outage.out")"; fi
	# qvld back on the same socket; the same web server and responders serve again
	web_start_qvld
	req recovered POST /v1/chat/completions "${auth[@]}" "${json[@]}" --data-binary "$(chat_body "$MODEL" 8 false '"Hello again!"')"
	check_chat_response recovered
	if alive "$SERVER_PID"; then ok "the web server survived"; else fail "the web server died"; fi
}

web_run_checks() {
	check_models
	check_routes
	check_chat
	check_stream
	check_images
	check_sdk
	check_errors
	check_fault
}

web_finish() {
	if [ "$fails" != 0 ]; then
		web_dump_logs
	fi
	echo "$passes passed, $fails failed, $skips skipped"
	[ "$fails" = 0 ]
}
