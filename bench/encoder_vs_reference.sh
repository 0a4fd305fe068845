#!/usr/bin/env bash
# The C++ USE-lite encoder beside the JavaScript reference it reproduces, in one invocation, on
# the same sentences, both on one thread, and one table of the two.
#
#   bench/encoder_vs_reference.sh [--sentences FILE] [--build DIR] [--limit N]
#                                 [--min-time SECONDS] [--kernel NAME]
#
#   --sentences   one sentence a line (default bench/data/encoder_sentences.txt)
#   --build       build directory holding encoder_bench (default build)
#   --limit       use only the first N sentences of FILE, on both sides (default: all; the
#                 whole default file takes the reference about 10 s)
#   --min-time    Google Benchmark's minimum time per C++ benchmark (default 2)
#   --kernel      the C++ matrix kernel (auto, portable, avx2, avx512; default auto)
#
# The reference (scripts/use-reference/bench.mjs; TF.js 4.5.0 WASM backend, one thread) runs
# first, then build/encoder_bench --sentences=FILE. Each side embeds every sentence alone after
# a warm-up, then the file in slices of 32 per call, and the sentences of exactly 20 words alone.
# Rates are in wall-clock time and in CPU time: on a shared machine the CPU-time ratio is the
# steadier one (the reference's CPU time includes V8's helper threads).
#
# Needs: node, scripts/use-reference/node_modules (npm ci there), models/use-lite
# (scripts/fetch-model.sh), encoder_bench (-DMANN_BUILD_BENCH=ON), python3. About 20 seconds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sentences="$root/bench/data/encoder_sentences.txt"
build="$root/build"
limit=""
min_time=2
kernel=auto

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sentences) sentences="${2:?--sentences needs a file}"; shift 2 ;;
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    --limit) limit="${2:?--limit needs a number}"; shift 2 ;;
    --min-time) min_time="${2:?--min-time needs seconds}"; shift 2 ;;
    --kernel) kernel="${2:?--kernel needs a name}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "encoder_vs_reference.sh: unknown option $1" >&2; usage ;;
  esac
done

fail() { echo "encoder_vs_reference.sh: $*" >&2; exit 1; }
[[ -r "$sentences" ]] || fail "cannot read $sentences"
sentences="$(cd "$(dirname "$sentences")" && pwd)/$(basename "$sentences")"
command -v node >/dev/null || fail "node is not on PATH"
command -v python3 >/dev/null || fail "python3 is not on PATH"
[[ -d "$root/scripts/use-reference/node_modules" ]] ||
  fail "scripts/use-reference/node_modules is missing: run npm ci in scripts/use-reference"
[[ -f "$root/models/use-lite/model.json" ]] ||
  fail "models/use-lite is missing: run scripts/fetch-model.sh"
bench="$build/encoder_bench"
[[ -x "$bench" ]] ||
  fail "$bench not found: configure with -DMANN_BUILD_BENCH=ON and build encoder_bench"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -n "$limit" ]]; then
  [[ "$limit" =~ ^[1-9][0-9]*$ ]] || fail "--limit wants a positive number, got $limit"
  grep -v '^[[:space:]]*$' "$sentences" | head -n "$limit" >"$tmp/sentences.txt"
  sentences="$tmp/sentences.txt"
fi

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "reference: node scripts/use-reference/bench.mjs ..." >&2
(cd "$root/scripts/use-reference" && node bench.mjs --sentences "$sentences") \
  >"$tmp/reference.json"

echo "ours: $bench --sentences=... --kernel=$kernel ..." >&2
"$bench" --model_dir="$root/models/use-lite" --kernel="$kernel" --sentences="$sentences" \
  --benchmark_filter='BM_UseLiteFile' --benchmark_min_time="$min_time" \
  --benchmark_format=json >"$tmp/ours.json"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$tmp/reference.json" "$tmp/ours.json" "$sentences" <<'EOF'
import json, sys

reference = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))
lines = [l for l in open(sys.argv[3], encoding="utf-8").read().split("\n") if l.strip()]

# Our per-sentence times, from Google Benchmark's per-iteration times (one pass each).
scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
mine = {}
kernel = ""
for b in ours["benchmarks"]:
    n = b["sentences"]
    unit = scale[b["time_unit"]]
    mine[b["name"]] = {"wall": b["real_time"] * unit / n, "cpu": b["cpu_time"] * unit / n, "n": n}
    kernel = b.get("label", kernel)

rows = [
    ("single sentences", reference["single"], mine.get("BM_UseLiteFileSingle")),
    (f"batches of {reference['batch_size']}", reference["batch"],
     mine.get("BM_UseLiteFileBatch")),
    ("20-word sentences, alone", reference["twenty"],
     mine.get("BM_UseLiteFileTwentyWords")),
]

words = sum(len(l.split()) for l in lines) / len(lines)
print(f"USE-lite on the same {len(lines)} sentences (mean {words:.1f} words) on both sides, "
      f"one thread each; C++ kernel {kernel}.")
for clock in ("wall", "cpu"):
    print()
    print(f"{'wall-clock' if clock == 'wall' else 'CPU'} time:")
    print()
    print("| mode | reference sentences/s | C++ sentences/s | C++ / reference "
          "| reference ms/sentence | C++ ms/sentence |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, ref, cpp in rows:
        if not ref or not cpp:
            continue
        ref_ms = ref[f"ms_per_sentence_{clock}"]
        cpp_ms = cpp[clock]
        print(f"| {name} | {1000 / ref_ms:.1f} | {1000 / cpp_ms:.0f} | {ref_ms / cpp_ms:.1f}x | "
              f"{ref_ms:.1f} | {cpp_ms:.2f} |")
EOF
