#!/usr/bin/env bash
# bench/install.sh: install of one layer of a lock by `comfypak install` against
# `uv pip install --target` of the very same wheel files, in one run, and print the ratio.
#
#   bench/install.sh [--cold] [LOCK] [LAYER]   # defaults: pylock.toml deps; RUNS=5
#   bench/install.sh [--cold] --set NAME        # live: lock a custom-node set first (below)
#
# Warm (the default; target: comfypak <= 0.6x uv): both tools get a warm cache first
# (comfypak: fetched and unpacked; uv: one install done), then each is timed RUNS times into
# a fresh, empty target. Cold (`--cold`; target <= 0.8x uv): every timed run starts with
# empty caches and downloads the layer's wheels: `comfypak install` (fetch, unpack, link) of
# the lock against `uv pip install --no-deps --target` of the same wheel URLs (one URL per
# line, so uv reads no index page either). The tools alternate (comfypak, uv, comfypak, ...)
# so both see the same load and network; medians are compared.
#
# Each run's output (and, cold, its caches) is moved aside, outside the timing, and deleted
# at the end: on an ext4 without a journal, inodes freed in the last minute make every new
# inode costly to allocate, so deleting a 40,000-file tree right before a run would time the
# deletion's aftermath, not the install. Cold runs download a whole layer each, so there the
# earlier runs are deleted before each pair (one pair, about 3 GB, on disk at a time), then
# `sync` and a pause of SETTLE_S (61) seconds: ext4 skips an inode freed less than 60 s ago
# (300 s more while its inode table block is dirty, hence the sync) at every new inode.
#
# `--set NAME` (needs COMFYPAK_LIVE=1): resolves a two-layer stack for CPython 3.14 on
# manylinux_2_39 x86_64 from the public index: `stable` = the default stack's torch pins
# (pak/pak1.txt), `deps` = bench/sets/NAME.txt (a custom-node set), or, for NAME=default, the
# default stack's deps paks; then benchmarks layer `deps`. With WORK=DIR the lock is kept in
# DIR/NAME/ and reused. Not a test: it needs uv (COMFYPAK_UV, else `uv` on PATH;
# .ci/setup.d/20-uv.sh installs one). uv also checks each wheel's Requires-Python against the
# interpreter it runs with (a CPython >= 3.12, found as said below), so use a lock whose
# packages admit that interpreter's version too. COMFYPAK_BIN uses that binary instead of
# building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cold=0
if [ "${1:-}" = --cold ]; then
  cold=1
  shift
fi
set_name=""
if [ "${1:-}" = --set ]; then
  set_name="${2:?--set needs a NAME (a bench/sets/NAME.txt, or default)}"
  shift 2
fi
runs="${RUNS:-5}"
uv="${COMFYPAK_UV:-$(command -v uv || true)}"
if [ -z "$uv" ] || [ ! -x "$uv" ]; then
  echo "uv not found: set COMFYPAK_UV or source .ci/setup.d/20-uv.sh" >&2
  exit 2
fi
# A CPython >= 3.12 for uv to run with (and for tomllib): uv checks each wheel's
# Requires-Python against it even with --python-version (librosa 1.0 needs >= 3.12).
# COMFYPAK_ORACLE_PYTHON when it is new enough (CI's oracle venv is 3.11), else the first of
# python3.14 .. python3.12 / python3 on PATH, pyenv's versions, or one uv knows.
python_ok() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2> /dev/null; }
python=""
for candidate in "${COMFYPAK_ORACLE_PYTHON:-}" "$(command -v python3.14 || true)" \
  "$(command -v python3.13 || true)" "$(command -v python3.12 || true)" "$(command -v python3 || true)" \
  $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 2> /dev/null | sort -rV) \
  "$("$uv" python find '>=3.12' 2> /dev/null || true)"; do
  if python_ok "$candidate"; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "no CPython >= 3.12 found for uv to run with: set COMFYPAK_ORACLE_PYTHON to one" >&2
  exit 2
fi
if [ -n "${COMFYPAK_ORACLE_PYTHON:-}" ] && [ "$python" != "$COMFYPAK_ORACLE_PYTHON" ]; then
  echo "COMFYPAK_ORACLE_PYTHON is older than 3.12; uv runs with $python instead" >&2
fi

if [ -n "${COMFYPAK_BIN:-}" ]; then
  comfypak="$COMFYPAK_BIN"
else
  echo "building comfypak (release)..." >&2
  cargo build --release --quiet --locked --bin comfypak
  comfypak="${CARGO_TARGET_DIR:-$repo/target}/release/comfypak"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/comfypak-bench-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
pypi_url=$(sed -n 's/^url *= *"\(.*\)"/\1/p' "$repo/indexes/pypi.toml")

if [ -n "$set_name" ]; then
  if [ "${COMFYPAK_LIVE:-}" != 1 ]; then
    echo "--set resolves against the public index: set COMFYPAK_LIVE=1" >&2
    exit 2
  fi
  keep="${WORK:-$work/keep}/$set_name"
  stack="$keep/stack"
  mkdir -p "$stack"
  cp pak/pak1.txt "$stack/pak1.txt"
  if [ "$set_name" = default ]; then
    deps_paks=$(sed -n '/^name = "deps"/,/^paks/p' pak/stack.toml | sed -n 's/^paks = \[\(.*\)\]/\1/p')
    for pak in $(echo "$deps_paks" | tr -d '",'); do cp "pak/$pak" "$stack/$pak"; done
  else
    if [ ! -f "bench/sets/$set_name.txt" ]; then
      echo "no set $set_name: expected bench/sets/$set_name.txt" >&2
      exit 2
    fi
    cp "bench/sets/$set_name.txt" "$stack/set.txt"
    deps_paks='"set.txt"'
  fi
  # The shipped stack's header (target, indexes, pins) for x86_64 only, without the
  # perf-wheels source, then the two layers.
  {
    sed -n '/^\[\[layer\]\]/q;p' pak/stack.toml \
      | sed -e "s|^index-dir = .*|index-dir = \"$repo/indexes\"|" \
        -e 's|^platforms = .*|platforms = ["manylinux_2_39_x86_64"]|' \
        -e '/^perf-wheels = /d'
    printf '[[layer]]\nname = "stable"\npaks = ["pak1.txt"]\n\n'
    printf '[[layer]]\nname = "deps"\npaks = [%s]\n' "$deps_paks"
  } > "$stack/stack.toml"
  lock="$keep/pylock.toml"
  if [ ! -f "$lock" ]; then
    echo "resolving set $set_name..." >&2
    "$comfypak" --quiet resolve --stack "$stack" --output "$lock" \
      --index "pytorch-cu130=$pypi_url" --cache-dir "$keep/resolve-cache"
  fi
  layer=deps
else
  lock="${1:-pylock.toml}"
  layer="${2:-deps}"
fi
if [ ! -f "$lock" ]; then
  echo "no lock at $lock: pass one (bench/install.sh path/to/pylock.toml [LAYER]) or run comfypak resolve" >&2
  exit 2
fi
lock=$(cd "$(dirname "$lock")" && pwd)/$(basename "$lock")
cache="$work/cache"
net=(--index "pytorch-cu130=$pypi_url")

# The layer's wheels for the lock's x86_64 platform, in a cache of their own.
"$comfypak" --quiet fetch --lock "$lock" --layer "$layer" --platform x86_64 --cache-dir "$cache" "${net[@]}"
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
uv_common=(--quiet --no-deps --no-compile --link-mode hardlink --python "$python"
  --python-version "$pyver" --python-platform "$uv_platform")

if [ "$cold" = 1 ]; then
  # The lock's URL of each fetched wheel, for uv.
  printf '%s\n' "${wheels[@]##*/}" > "$work/names.txt"
  "$python" - "$lock" "$work/names.txt" > "$work/urls.txt" <<'EOF'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
names = set(open(sys.argv[2]).read().split())
urls = {w["name"]: w["url"] for p in lock["packages"] for w in p.get("wheels", []) if "url" in w}
missing = names - urls.keys()
if missing:
    sys.exit(f"no url in the lock for {sorted(missing)}")
print("\n".join(urls[n] for n in sorted(names)))
EOF
fi

now() { date +%s.%N; }
mkdir -p "$work/trash"
set_aside() { if [ -e "$1" ]; then mv "$1" "$(mktemp -d "$work/trash/XXXXXX")/"; fi; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# timed FILE CMD...: runs CMD, appending its CPU seconds (user + system) to FILE: less
# sensitive to the machine's load than the wall time, which is what the ratio compares.
timed() {
  local file=$1
  shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -a -o "$file" -f '%U %S' "$@"
  else
    "$@"
  fi
}

comfypak_once() {
  set_aside "$work/out"
  local t0 t1 c="$cache" extra=(--offline)
  if [ "$cold" = 1 ]; then
    set_aside "$work/cold-cache"
    c="$work/cold-cache"
    extra=("${net[@]}")
  fi
  t0=$(now)
  timed "$work/cpu-comfypak" "$comfypak" --quiet install --lock "$lock" --layer "$layer" --platform x86_64 \
    --cache-dir "$c" --out "$work/out" --link-mode hardlink --allow-overwrite "${extra[@]}"
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

uv_once() {
  set_aside "$work/uv-target"
  local t0 t1
  if [ "$cold" = 1 ]; then
    set_aside "$work/uv-cold-cache"
    t0=$(now)
    timed "$work/cpu-uv" "$uv" pip install "${uv_common[@]}" --cache-dir "$work/uv-cold-cache" \
      --target "$work/uv-target" -r "$work/urls.txt"
  else
    t0=$(now)
    timed "$work/cpu-uv" "$uv" pip install "${uv_common[@]}" --offline --cache-dir "$work/uv-cache" \
      --target "$work/uv-target" "${wheels[@]}"
  fi
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

# Cold: frees the disk of the earlier runs, then lets the freed inodes settle.
free_old_runs() {
  if [ "$cold" = 1 ]; then
    find "$work/trash" -mindepth 1 -maxdepth 1 -type d -print0 | xargs -0 -r rm -rf
    sync
    sleep "${SETTLE_S:-61}"
  fi
}

mode=warm
if [ "$cold" = 1 ]; then mode=cold; fi
echo "layer $layer of $lock: ${#wheels[@]} wheels, $bytes bytes; $mode; $runs timed runs each" >&2
if [ "$cold" = 0 ]; then
  comfypak_once >/dev/null
  uv_once >/dev/null
fi
rm -f "$work/cpu-comfypak" "$work/cpu-uv"
c_times=()
u_times=()
loads=()
for _ in $(seq "$runs"); do
  free_old_runs
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
  c_times+=("$(comfypak_once)")
  u_times+=("$(uv_once)")
done
c_med=$(printf '%s\n' "${c_times[@]}" | median)
u_med=$(printf '%s\n' "${u_times[@]}" | median)
c_files=$(find "$work/out/layers/$layer" -type f | wc -l)
u_files=$(find "$work/uv-target" -type f | wc -l)
target=0.60
if [ "$cold" = 1 ]; then target=0.80; fi
printf 'comfypak install: median %.3fs  (%s files)   runs: %s\n' "$c_med" "$c_files" "${c_times[*]}"
printf 'uv pip install --target: median %.3fs  (%s files)   runs: %s\n' "$u_med" "$u_files" "${u_times[*]}"
printf 'load average (1 min) before each pair: %s\n' "${loads[*]}"
if [ -s "$work/cpu-comfypak" ] && [ -s "$work/cpu-uv" ]; then
  cpu() { awk '{print $1 + $2}' "$1" | median; }
  printf 'CPU (user + system), median: comfypak %.2fs, uv %.2fs: %.2fx\n' \
    "$(cpu "$work/cpu-comfypak")" "$(cpu "$work/cpu-uv")" \
    "$(echo "$(cpu "$work/cpu-comfypak") / $(cpu "$work/cpu-uv")" | bc -l)"
fi
printf 'ratio comfypak/uv (%s): %.2fx (target <= %sx)\n' "$mode" "$(echo "$c_med / $u_med" | bc -l)" "$target"
