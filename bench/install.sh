#!/usr/bin/env bash
# bench/install.sh: warm-cache install of one layer of a lock by `comfypak install` against
# `uv pip install --target` of the very same wheel files, in one run, and print the ratio
# (target: comfypak <= 0.8x uv).
#
#   bench/install.sh [LOCK] [LAYER]          # defaults: pylock.toml deps; RUNS=5
#
# Both tools get a warm cache first (comfypak: fetched and unpacked; uv: one install done),
# then each is timed RUNS times into a fresh, empty target (the previous one is moved aside
# between runs, outside the timing, and deleted at the end: on an ext4 without a journal,
# inodes freed in the last seconds make every new inode costly to allocate, so deleting a
# 40,000-file tree right before a run would time the deletion's aftermath, not the
# install); the medians are compared. Not a test: it needs uv (COMFYPAK_UV, else `uv`
# on PATH; .ci/setup.d/20-uv.sh installs one) and the lock's wheels (fetched once, from the
# lock's URLs, into a bench-only cache). uv also checks each wheel's Requires-Python against
# the interpreter it runs with (COMFYPAK_ORACLE_PYTHON, else python3), so use a lock whose
# packages admit that interpreter's version too.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

lock="${1:-pylock.toml}"
layer="${2:-deps}"
runs="${RUNS:-5}"
if [ ! -f "$lock" ]; then
  echo "no lock at $lock: pass one (bench/install.sh path/to/pylock.toml [LAYER]) or run comfypak resolve" >&2
  exit 2
fi
lock=$(cd "$(dirname "$lock")" && pwd)/$(basename "$lock")
uv="${COMFYPAK_UV:-$(command -v uv || true)}"
if [ -z "$uv" ] || [ ! -x "$uv" ]; then
  echo "uv not found: set COMFYPAK_UV or source .ci/setup.d/20-uv.sh" >&2
  exit 2
fi
python="${COMFYPAK_ORACLE_PYTHON:-$(command -v python3)}"

echo "building comfypak (release)..." >&2
cargo build --release --quiet
comfypak="$repo/target/release/comfypak"

work=$(mktemp -d "${TMPDIR:-/tmp}/comfypak-bench-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
cache="$work/cache"

# The layer's wheels for the lock's x86_64 platform, in a cache of their own.
"$comfypak" --quiet fetch --lock "$lock" --layer "$layer" --platform x86_64 --cache-dir "$cache"
mapfile -t wheels < <(find "$cache/wheels" -name '*.whl' | sort)
if [ "${#wheels[@]}" -eq 0 ]; then
  echo "layer $layer of $lock has no wheels for x86_64" >&2
  exit 2
fi
bytes=$(du -cb "${wheels[@]}" | tail -1 | cut -f1)
pyver=$(sed -n 's/^python *= *"\(.*\)"/\1/p' "$lock" | head -1)
platform=$(sed -n 's/^platforms *= *\["\([^"]*\)".*/\1/p' "$lock" | head -1)
# uv names platforms ARCH-manylinux_X_Y.
uv_platform=$(echo "$platform" | sed -E 's/^manylinux_([0-9]+)_([0-9]+)_(.*)$/\3-manylinux_\1_\2/')

now() { date +%s.%N; }
mkdir -p "$work/trash"
set_aside() { if [ -e "$1" ]; then mv "$1" "$(mktemp -d "$work/trash/XXXXXX")/"; fi; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

comfypak_once() {
  set_aside "$work/out"
  local t0 t1
  t0=$(now)
  "$comfypak" --quiet install --offline --lock "$lock" --layer "$layer" --platform x86_64 \
    --cache-dir "$cache" --out "$work/out" --link-mode hardlink --allow-overwrite
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

uv_once() {
  set_aside "$work/uv-target"
  local t0 t1
  t0=$(now)
  "$uv" pip install --quiet --offline --no-deps --no-compile --link-mode hardlink \
    --cache-dir "$work/uv-cache" --python "$python" --python-version "$pyver" \
    --python-platform "$uv_platform" --target "$work/uv-target" "${wheels[@]}"
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

echo "layer $layer: ${#wheels[@]} wheels, $bytes bytes; $runs timed runs each after one warm-up" >&2
comfypak_once >/dev/null
uv_once >/dev/null
c_times=()
u_times=()
for _ in $(seq "$runs"); do
  c_times+=("$(comfypak_once)")
  u_times+=("$(uv_once)")
done
c_med=$(printf '%s\n' "${c_times[@]}" | median)
u_med=$(printf '%s\n' "${u_times[@]}" | median)
c_files=$(find "$work/out/layers/$layer" -type f | wc -l)
u_files=$(find "$work/uv-target" -type f | wc -l)
printf 'comfypak install: median %.3fs  (%s files)   runs: %s\n' "$c_med" "$c_files" "${c_times[*]}"
printf 'uv pip install --target: median %.3fs  (%s files)   runs: %s\n' "$u_med" "$u_files" "${u_times[*]}"
printf 'ratio comfypak/uv: %.2fx (target <= 0.80x)\n' "$(echo "$c_med / $u_med" | bc -l)"
