#!/usr/bin/env bash
# Sets mann up (packages and build) and starts the terminal chat on the embedded SQLite store.
# Any arguments go to `mann chat`, e.g. scripts/chat.sh --user alice.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" >&2
exec "$root/build/mann" chat "$@"
