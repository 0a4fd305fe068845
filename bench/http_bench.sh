#!/usr/bin/env bash
# HTTP benchmark of `mann serve` with wrk, beside nginx answering a constant as this machine's
# ceiling, all on 127.0.0.1, and one markdown table of the results.
#
#   bench/http_bench.sh [--duration SECONDS] [--memories N] [--out FILE]
#                       [--mann PATH] [--model-dir DIR]
#
#   --duration    seconds of each wrk run (default 10)
#   --memories    distinct facts loaded through POST /memories before the runs (default 10000)
#   --out         also write the table to FILE (the raw wrk output stays in the log directory)
#   --mann        the mann binary (default build/mann)
#   --model-dir   the sentence encoder (default models/use-lite; scripts/fetch-model.sh)
#
# Steps: start `mann serve` on a fresh data directory (default encoder, use-lite; memory_size N,
# no eviction), start nginx with a generated config (`return 200 "ok"`, access log off, as many
# worker processes as mann has I/O threads), load N facts with bench/http/load_memories.py
# (8 keep-alive connections), then run wrk --latency for nginx /, GET /health, POST /search and
# POST /memories (search before the writes, so it scores exactly the N loaded facts), each with
# 1 connection on 1 thread and with 64 connections on 2 threads. Every response outside
# 200..299 and every socket error counts as an error (bench/http/common.lua). Besides wrk's
# figures, the table has the server's CPU time per request (user + system, from /proc), which
# moves less than requests/s when other work shares the cores: wrk itself runs on the same two.
#
# Needs: wrk, nginx (/usr/sbin/nginx), python3. Takes about 8 x (duration + 1) seconds plus the
# load (about a minute for 10,000 facts on 2 cores). Every process it starts is stopped on exit,
# on failure and on Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration=10
memories=10000
out=""
mann="$root/build/mann"
model_dir="$root/models/use-lite"
nginx_bin="${NGINX:-/usr/sbin/nginx}"
wait_limit=60  # seconds, for each server to start and to stop

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="${2:?--duration needs a number of seconds}"; shift 2 ;;
    --memories) memories="${2:?--memories needs a number}"; shift 2 ;;
    --out) out="${2:?--out needs a file}"; shift 2 ;;
    --mann) mann="${2:?--mann needs a path}"; shift 2 ;;
    --model-dir) model_dir="${2:?--model-dir needs a directory}"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "http_bench.sh: unknown argument '$1'" >&2; usage ;;
  esac
done

die() {
  echo "http_bench.sh: $*" >&2
  exit 1
}
[[ "$duration" =~ ^[1-9][0-9]*$ ]] || die "--duration must be a whole number of seconds, got '$duration'"
[[ "$memories" =~ ^[0-9]+$ ]] || die "--memories must be a whole number, got '$memories'"
[[ -x "$mann" ]] || die "no mann binary at $mann (build it, or pass --mann PATH)"
[[ -f "$model_dir/model.json" ]] ||
  die "no sentence encoder in $model_dir (run scripts/fetch-model.sh, or pass --model-dir DIR)"
[[ -x "$nginx_bin" ]] || die "no nginx at $nginx_bin (apt-get install nginx-light)"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 is not installed"

work="$(mktemp -d "${TMPDIR:-/tmp}/mann-http-bench.XXXXXX")"
pids=()

# Stops what this script started: SIGTERM (mann drains, nginx exits fast), then SIGKILL for
# whatever is still there after the wait limit.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < wait_limit * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((status == 0)); then
    rm -rf "$work"
  else
    echo "http_bench.sh: failed (status $status); logs kept in $work" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until `cond` (a command) succeeds, at most wait_limit seconds; dies with `what` if not.
wait_for() {
  local what="$1"
  shift
  local tries=0
  until "$@"; do
    ((tries++ < wait_limit * 10)) || die "$what did not happen within ${wait_limit} s"
    sleep 0.1
  done
}

# ---- mann -----------------------------------------------------------------------------------
# A hermetic environment (no MANN_ variables, its own HOME), the default encoder, and room for
# every fact: memory_size N so utilization reads 1.0 after the load, and a capacity that the
# POST /memories runs cannot reach, so no eviction runs during the benchmark.
mann_port="$(free_port)"
mkdir -p "$work/home"
: >"$work/mann.out"
env -i PATH="$PATH" HOME="$work/home" LANG=C.UTF-8 \
  "$mann" serve --data-dir "$work/data" \
  --set server.host=127.0.0.1 --set "server.port=$mann_port" \
  --set encoder.kind=use-lite --set "encoder.model_dir=$model_dir" \
  --set "memory.memory_size=$((memories > 0 ? memories : 1))" \
  --set memory.max_memory_capacity=10000000 \
  >"$work/mann.out" 2>"$work/mann.log" &
pids+=($!)
mann_pid=$!
mann_up() {
  kill -0 "$mann_pid" 2>/dev/null || die "mann serve exited at start; $work/mann.log says: $(tail -n 5 "$work/mann.log")"
  grep -q "serving on http://127.0.0.1:$mann_port" "$work/mann.out"
}
wait_for "mann serve listening on 127.0.0.1:$mann_port" mann_up
# The server's log reaches its file in blocks, within a fraction of a second.
logged_threads() { grep -q 'io_threads=[0-9]*' "$work/mann.log"; }
wait_for "mann's listening line in its log" logged_threads
io_threads="$(grep -o 'io_threads=[0-9]*' "$work/mann.log" | head -n 1 | cut -d= -f2)"
# The figures are the sentence encoder's only if it started: mann falls back to hashed vectors
# when the model cannot be read.
curl -s "http://127.0.0.1:$mann_port/metrics" | grep -q '^mann_encoder_fallback{configured="use-lite"} 0' ||
  die "the use-lite encoder did not start (mann_encoder_fallback is not 0); see $work/mann.log"

# ---- nginx ----------------------------------------------------------------------------------
# Every path inside the work directory; as many workers as mann has I/O threads, each taking
# any number of requests per keep-alive connection, as mann does.
nginx_port="$(free_port)"
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $io_threads;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events {
  worker_connections 1024;
}
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  default_type text/plain;
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      return 200 "ok";
    }
  }
}
EOF
"$nginx_bin" -e "$work/nginx/error.log" -p "$work/nginx/" -c "$work/nginx/nginx.conf" \
  -g 'daemon off;' >"$work/nginx/stdout.log" 2>&1 &
pids+=($!)
nginx_pid=$!
nginx_up() {
  kill -0 "$nginx_pid" 2>/dev/null || die "nginx exited at start: $(tail -n 5 "$work/nginx/error.log")"
  [[ "$(curl -s "http://127.0.0.1:$nginx_port/" 2>/dev/null)" == "ok" ]]
}
wait_for "nginx answering on 127.0.0.1:$nginx_port" nginx_up
nginx_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"  # master and workers

# ---- load -----------------------------------------------------------------------------------
echo "Loading $memories facts through POST /memories (8 keep-alive connections) ..." >&2
load="$(python3 "$root/bench/http/load_memories.py" --port "$mann_port" --count "$memories" \
  --connections 8 --timeout 900)" || die "loading failed: $load"
count="$(curl -s "http://127.0.0.1:$mann_port/health" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["memory_count"])')"
echo "  $load" >&2
echo "  bank holds $count memories" >&2

# ---- wrk ------------------------------------------------------------------------------------
# CPU time (user + system, in clock ticks) the given processes have used, all threads together.
cpu_ticks() {
  local total=0 pid fields
  for pid in "$@"; do
    # Fields after the ")" that closes the command name: utime and stime are the 12th and 13th.
    read -r -a fields <<<"$(cut -d')' -f2 "/proc/$pid/stat")"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# label | url | lua script | server pids
targets=(
  "nginx /|http://127.0.0.1:$nginx_port/|get.lua|$nginx_pids"
  "mann GET /health|http://127.0.0.1:$mann_port/health|get.lua|$mann_pid"
  "mann POST /search|http://127.0.0.1:$mann_port/search|search.lua|$mann_pid"
  "mann POST /memories|http://127.0.0.1:$mann_port/memories|memories.lua|$mann_pid"
)
declare -A rps
rows=()
hz="$(getconf CLK_TCK)"
for target in "${targets[@]}"; do
  IFS='|' read -r label url script server_pids <<<"$target"
  for conns in 1 64; do
    threads=$((conns == 1 ? 1 : 2))
    raw="$work/wrk-$(echo "$label" | tr -c 'a-zA-Z0-9' '_')-c$conns.txt"
    echo "wrk $label, $conns connection(s), $threads thread(s), ${duration} s ..." >&2
    # wrk stops itself after the duration; the outer timeout only guards against a hang.
    # shellcheck disable=SC2086 # server_pids is a list
    ticks_before="$(cpu_ticks $server_pids)"
    timeout $((duration + 30)) wrk --latency --timeout 5s -t "$threads" -c "$conns" \
      -d "${duration}s" -s "$root/bench/http/$script" "$url" >"$raw" 2>&1 ||
      die "wrk failed for $label ($conns connections): $(tail -n 5 "$raw")"
    # shellcheck disable=SC2086
    ticks="$(($(cpu_ticks $server_pids) - ticks_before))"
    result="$(grep '^RESULT ' "$raw" | tail -n 1)"
    [[ -n "$result" ]] || die "wrk printed no RESULT line for $label: $(tail -n 5 "$raw")"
    declare -A r=()
    for kv in ${result#RESULT }; do r["${kv%%=*}"]="${kv#*=}"; done
    errors=$((r[non2xx] + r[socket_errors]))
    error_text="$errors"
    ((errors == 0)) || error_text="$errors (non-2xx ${r[non2xx]} [${r[codes]}], socket ${r[socket_errors]})"
    rps["$label/$conns"]="${r[rps]}"
    rows+=("$(awk -v label="$label" -v conns="$conns" -v rps="${r[rps]}" -v p50="${r[p50_us]}" \
      -v p99="${r[p99_us]}" -v errors="$error_text" -v ticks="$ticks" -v hz="$hz" \
      -v requests="${r[requests]}" \
      'BEGIN { cpu = requests > 0 ? ticks / hz * 1e6 / requests : 0
               printf "| %s | %d | %.0f | %.2f ms | %.2f ms | %s | %.0f µs |", label, conns, rps,
               p50 / 1000, p99 / 1000, errors, cpu }')")
    unset r
  done
done

# ---- table ----------------------------------------------------------------------------------
ratio="$(awk -v a="${rps["mann GET /health/64"]}" -v b="${rps["nginx //64"]}" 'BEGIN { print a / b }')"
{
  echo "wrk ${duration} s per run; $count memories; use-lite; mann io_threads=$io_threads, nginx worker_processes=$io_threads; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "load: $load"
  echo
  echo "| target | connections | requests/s | p50 | p99 | errors | server CPU per request |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  # The order of the product issue: nginx, /health, POST /memories, POST /search.
  printf '%s\n' "${rows[0]}" "${rows[1]}" "${rows[2]}" "${rows[3]}" "${rows[6]}" "${rows[7]}" \
    "${rows[4]}" "${rows[5]}"
  echo
  printf 'mann GET /health ÷ nginx at 64 connections: %.2f (target: at least 0.5)\n' "$ratio"
  echo "server CPU per request: user + system time of the server's processes (nginx: master and"
  echo "workers) during the run over the requests answered; steadier than requests/s on a shared machine."
} | tee "$work/table.md"
[[ -z "$out" ]] || cp "$work/table.md" "$out"
