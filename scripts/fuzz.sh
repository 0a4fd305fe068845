#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan in build-fuzz/, replays the
# regression inputs, then fuzzes each target for a bounded time.
#
#   scripts/fuzz.sh                 60 s per target
#   scripts/fuzz.sh --seconds 300   longer runs
#   scripts/fuzz.sh --seconds 0     build, then replay the regressions and the seed corpus only
#
# Each target runs on a scratch copy of its seed corpus, so the committed corpus does not grow;
# a crashing input is saved under build-fuzz/artifacts/ (the summary names the file). Prints one
# summary line per target; exits non-zero when a regression input or a fuzzing run crashes,
# times out (10 s for one input) or runs out of memory (2 GiB). Needs what scripts/setup.sh
# installs (clang, libclang-rt-14-dev and the project's libraries).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=60
while (($#)); do
  case "$1" in
    --seconds)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || {
        echo "fuzz.sh: --seconds needs a whole number of seconds" >&2
        exit 2
      }
      seconds="$2"
      shift 2
      ;;
    -h | --help)
      sed -n '2,13p' "$0"
      exit 0
      ;;
    *)
      echo "fuzz.sh: unknown option $1 (see --help)" >&2
      exit 2
      ;;
  esac
done

targets=(http_request json_handlers)
build="$root/build-fuzz"
# The library the API needs (the configuration checks pager, monitor and Redis settings, and the
# runtime builds the language-model responder, so those modules come along); no command line, no
# benchmarks.
modules="core;text;encode;index;store;metrics;cache;pager;config;llm;chat;runtime;server;security"
modules+=";monitor;api"

# ---- Toolchain -------------------------------------------------------------------------------
for tool in clang clang++ cmake ninja; do
  command -v "$tool" >/dev/null || {
    echo "fuzz.sh: $tool not found; run scripts/setup.sh first" >&2
    exit 1
  }
done
libfuzzer="$(clang++ -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a"
[[ -f "$libfuzzer" ]] || {
  echo "fuzz.sh: libFuzzer is missing ($libfuzzer); install libclang-rt-14-dev" \
    "(scripts/setup.sh does)" >&2
  exit 1
}

# ---- Build -----------------------------------------------------------------------------------
# A cache made with another compiler cannot be switched to clang in place.
if [[ -f "$build/CMakeCache.txt" ]] &&
  ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++' "$build/CMakeCache.txt"; then
  echo "fuzz.sh: $build was configured with another compiler; remove it and run again" >&2
  exit 1
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
build_start=$SECONDS
# Configuring again is cheap and keeps the options right in an existing directory. Warnings
# are policed by the GCC builds; here a warning only clang knows must not stop the fuzzing.
mkdir -p "$build"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DMANN_BUILD_FUZZ=ON -DMANN_BUILD_BENCH=OFF -DMANN_WERROR=OFF \
  -DMANN_MODULES="$modules" "${launcher[@]}" >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2
  echo "fuzz.sh: configuring $build failed" >&2
  exit 1
}
cmake --build "$build" -j "$(nproc)" --target fuzz
echo "fuzz: built in $((SECONDS - build_start)) s"

# ---- Scratch space ---------------------------------------------------------------------------
# The targets' data directories go here too ($TMPDIR): on tmpfs SQLite's fsyncs are cheap, so
# the run measures the code, not the disk.
scratch_parent="${TMPDIR:-/tmp}"
[[ -d /dev/shm && -w /dev/shm ]] && scratch_parent=/dev/shm
scratch="$(mktemp -d "$scratch_parent/mann-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/tmp" "$build/logs"
export TMPDIR="$scratch/tmp"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
limits=(-timeout=10 -rss_limit_mb=2048)

# The input files under a directory (README or .gitkeep files are not inputs).
inputs_of() {
  find "$1" -type f ! -name README.md ! -name .gitkeep 2>/dev/null | sort
}

# Runs `target` on the given files once each; true when none crashed.
replay() {  # replay TARGET LABEL FILE...
  local target="$1" label="$2"
  shift 2
  (($#)) || return 0
  local log="$build/logs/${target}_${label}.log"
  if "$build/fuzz/${target}_fuzzer" "${limits[@]}" "$@" >"$log" 2>&1; then
    echo "fuzz: $target: $label: $# inputs replayed, no crash"
    return 0
  fi
  tail -n 60 "$log" >&2
  echo "fuzz: $target: $label: CRASH replaying inputs (log: $log)" >&2
  return 1
}

status=0

# ---- Regression inputs -----------------------------------------------------------------------
for target in "${targets[@]}"; do
  mapfile -t files < <(inputs_of "$root/fuzz/regressions/$target")
  replay "$target" regressions "${files[@]}" || status=1
  if ((seconds == 0)); then
    mapfile -t files < <(inputs_of "$root/fuzz/corpus/$target")
    replay "$target" corpus "${files[@]}" || status=1
  fi
done
((seconds == 0)) && exit "$status"

# ---- Fuzzing ---------------------------------------------------------------------------------
for target in "${targets[@]}"; do
  corpus="$scratch/corpus/$target"
  mkdir -p "$corpus"
  cp -R "$root/fuzz/corpus/$target/." "$corpus/"
  artifacts="$build/artifacts/$target-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$artifacts"
  log="$build/logs/$target.log"
  dict=()
  [[ -f "$root/fuzz/$target.dict" ]] && dict=(-dict="$root/fuzz/$target.dict")

  rc=0
  "$build/fuzz/${target}_fuzzer" "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus" >"$log" 2>&1 || rc=$?

  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  units="$(find "$corpus" -type f | wc -l)"
  mapfile -t found < <(find "$artifacts" -type f | sort)
  rmdir "$artifacts" 2>/dev/null || true
  crashes=${#found[@]}
  ((rc != 0 && crashes == 0)) && crashes=1  # died without saving an input (e.g. a leak at exit)
  echo "fuzz: $target: ${runs:-0} executions in $seconds s, coverage ${cov:-0} edges" \
    "(${ft:-0} features), corpus $units inputs, crashes $crashes"
  if ((crashes)); then
    status=1
    tail -n 60 "$log" >&2
    for file in "${found[@]}"; do echo "fuzz: $target: crashing input saved as $file" >&2; done
    echo "fuzz: $target: full log in $log; keep the input under fuzz/regressions/$target/" \
      "once fixed (fuzz/README.md)" >&2
  fi
done
exit "$status"
