#!/usr/bin/env bash
# What bytecode costs and whether it is reproducible: `comfypak build --base ROOT` of a small
# live stack (two layers of common ComfyUI dependencies from the public index) three times:
# twice with bytecode (into two output folders; every .pyc must be byte-identical) and once with
# --no-compile; prints the compile time per layer (from the build log), the .pyc count and
# bytes, and the build time with bytecode against without, as a ratio.
#
#   COMFYPAK_LIVE=1 bench/bytecode.sh ROOT     # ROOT: a root with python3.14 (scripts/python-root.sh)
#
# COMFYPAK_BIN uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
[ "${COMFYPAK_LIVE:-}" = 1 ] || { echo "bytecode.sh reads the public index: set COMFYPAK_LIVE=1" >&2; exit 2; }
ROOT=${1:?usage: COMFYPAK_LIVE=1 bench/bytecode.sh ROOT}
if [ -n "${COMFYPAK_BIN:-}" ]; then
  COMFYPAK=$COMFYPAK_BIN
else
  cargo build --release --locked --bin comfypak 2>&1 | tail -n 1
  COMFYPAK=${CARGO_TARGET_DIR:-$REPO/target}/release/comfypak
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/pak"
printf 'numpy\npillow\n' >"$WORK/pak/base.txt"
printf 'requests\njinja2\npyyaml\ntqdm\naiohttp\nsafetensors\nscipy\n' >"$WORK/pak/deps.txt"
cat >"$WORK/pak/stack.toml" <<EOF
[stack]
name = "bytecode-bench"
index-dir = "$REPO/indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_$(uname -m)"]
venv = "/opt/venv"
torch-backend = "cpu"

[indexes]
default = ["pypi"]

[[layer]]
name = "base"
paks = ["base.txt"]

[[layer]]
name = "deps"
paks = ["deps.txt"]
EOF
export COMFYPAK_CACHE_DIR=$WORK/cache SOURCE_DATE_EPOCH=1700000000
build() { # OUT [flags...]
  local out=$1
  shift
  local start end
  start=$(date +%s.%N)
  "$COMFYPAK" build --stack "$WORK/pak" --lock "$WORK/pylock.toml" --out "$WORK/$out" \
    --base "$ROOT" "$@" >"$WORK/$out.log" 2>&1 || { cat "$WORK/$out.log" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
# A first build fills the cache (downloads) and unpacks nothing (a root folder is used as is).
build warm >/dev/null
with1=$(build with1)
with2=$(build with2)
without=$(build without --no-compile)
echo "compile per layer (build #1):"
grep '^==> layer' "$WORK/with1.log" | sed 's/^==> /  /'
pycs=$(find "$WORK/with1/layers" -name '*.pyc' | wc -l)
pyc_bytes=$(find "$WORK/with1/layers" -name '*.pyc' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
echo ".pyc files: $pycs ($((pyc_bytes / 1024)) KiB)"
if diff -r --no-dereference "$WORK/with1/layers" "$WORK/with2/layers" >/dev/null; then
  echo "two compilations: byte-identical layers"
else
  echo "two compilations: DIFFERENT"; diff -rq --no-dereference "$WORK/with1/layers" "$WORK/with2/layers" | head
fi
printf 'build with bytecode: %.2fs, %.2fs; without: %.2fs; ratio with/without: %.2f\n' \
  "$with1" "$with2" "$without" "$(echo "$with1 / $without" | bc -l)"
