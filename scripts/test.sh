#!/usr/bin/env bash
# Sets mann up and runs the whole test suite: unit and integration tests on the release build,
# then the unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer, then the
# libFuzzer targets over the REST API for a bounded time (MANN_FUZZ_SECONDS per target, default
# 60; 0 replays the regression inputs and the seed corpus only).
# Exit status is non-zero when any test fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" --asan

jobs="$(nproc)"
status=0

# PostgreSQL and Redis for the tests that need them, on loopback, stopped however this ends.
services="$(mktemp -d)"
trap '"$root/scripts/services.sh" stop "$services"' EXIT
"$root/scripts/services.sh" start "$services"
set -a
# shellcheck source=/dev/null
. "$services/env"
set +a
# With the services up, a test that finds no server fails instead of skipping.
export MANN_REQUIRE_SERVICES=1

echo "== release build: unit and integration tests"
ctest --test-dir "$root/build" -j "$jobs" --output-on-failure --timeout 600 || status=1
echo "== sanitizer build (ASan + UBSan): unit tests"
# tests/lsan.supp names the one third-party leak (libpqxx's) that the tests meet.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0" \
  ctest --test-dir "$root/build-asan" -j "$jobs" -L unit --output-on-failure --timeout 600 ||
  status=1
echo "== fuzzing (clang, ASan + UBSan): the REST API's parsers and handlers"
"$root/scripts/fuzz.sh" --seconds "${MANN_FUZZ_SECONDS:-60}" || status=1
exit "$status"
