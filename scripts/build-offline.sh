#!/usr/bin/env bash
# The main job, offline: build the shipped ComfyUI stack (pak/) into an OCI image, against
# the fixture indexes in fixtures/indexes/ written to disk as file:// indexes (faithful copies
# of the PyTorch cu130 index, the public index's packages for this stack, and the
# performance-wheel release pages, with tiny wheels). Same command, same code paths as a
# networked build; only the index URLs differ.
#
# The stack's `nodes` layer (pak7.txt, pak8.txt) is left out with `--no-layer nodes`: its
# packages are built from sdists and git repositories, which needs a base with a compiler, the
# sdists and the repositories, and the fixture indexes carry wheels only. The other layers
# resolve and build exactly as they would with it (the image then has no `nodes` layer).
#
#   bash scripts/build-offline.sh [OUT]        (default OUT: build-offline)
#
# Writes OUT/indexes, OUT/pylock.toml, OUT/build/{x86_64,aarch64}/layers and OUT/build/image.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build-offline}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

cargo build --release --quiet --bin comfypak
cargo build --release --quiet -p comfypak-testkit --bin comfypak-fixtures
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bin="$target/release"

for spec in pypi-snapshot:pypi pytorch-cu130:pytorch-cu130 perf-wheels:perf-wheels; do
  "$bin/comfypak-fixtures" write "fixtures/indexes/${spec%%:*}.json" "$out/indexes/${spec##*:}" >/dev/null
done

export COMFYPAK_CACHE_DIR="${COMFYPAK_CACHE_DIR:-$out/cache}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
echo "build-offline: leaving out layer \`nodes\` (--no-layer nodes): its source builds need a base" \
  "with a compiler and the real sdists and git repositories; the fixture indexes have wheels only" >&2
"$bin/comfypak" build --stack pak --no-layer nodes --lock "$out/pylock.toml" --out "$out/build" \
  --index "pypi=file://$out/indexes/pypi/simple/" \
  --index "pytorch-cu130=file://$out/indexes/pytorch-cu130/simple/" \
  --index "perf-wheels=file://$out/indexes/perf-wheels/files/"
