#!/usr/bin/env bash
# bench/resolve.sh: time `comfypak resolve` against `uv pip compile` on the same input — the
# default stack's `deps` layer pak files plus the `stable` layer's torch pins (pak1), with the
# stack's index pins, for CPython 3.14 on manylinux_2_39 x86_64, wheels only — against the
# live indexes, cold cache (fresh cache folders before every run) and warm cache (the same
# folders again), in one run, and print the medians and the ratios comfypak/uv.
#
# Not a test: it needs the network (COMFYPAK_LIVE=1) and uv (COMFYPAK_UV, else `uv` on PATH;
# .ci/setup.d/20-uv.sh installs one). Index URLs come from indexes/*.toml.
#   COMFYPAK_LIVE=1 bench/resolve.sh
# Environment:
#   COLD_RUNS (default 3), WARM_RUNS (default 5): timed runs of each kind, per tool.
#   TORCH_INDEX=pytorch (default): the torch family comes from the PyTorch cu130 index
#     (comfypak: the stack's pin; uv: --torch-backend cu130).
#   TORCH_INDEX=pypi: point the stack's `pytorch-cu130` index at the public index instead
#     (whose torch 2.11.0 Linux wheels are the cu130 builds), and give uv the public index
#     alone. Use it where the PyTorch index cannot be reached.
# hyperfine is used when it is on PATH (apt-get install hyperfine), else a plain loop with
# `date +%s.%N`; both report the median.
#
# The "warm, revalidate" row runs comfypak with --refresh (every cached page revalidated
# with the server, as uv does when a server sends no cache headers): a server or proxy that
# strips Cache-Control/ETag makes uv fetch every page again on a warm run, while comfypak
# reuses a validator-less page for --page-freshness seconds (600 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "${COMFYPAK_LIVE:-}" != 1 ]; then
  echo "bench/resolve.sh resolves against the live public indexes; set COMFYPAK_LIVE=1" >&2
  exit 2
fi
uv="${COMFYPAK_UV:-$(command -v uv || true)}"
if [ -z "$uv" ] || [ ! -x "$uv" ]; then
  echo "uv not found: set COMFYPAK_UV or source .ci/setup.d/20-uv.sh" >&2
  exit 2
fi
cold_runs="${COLD_RUNS:-3}"
warm_runs="${WARM_RUNS:-5}"
torch_index="${TORCH_INDEX:-pytorch}"

index_url() { sed -n 's/^url *= *"\(.*\)"/\1/p' "indexes/$1.toml"; }
pypi_url=$(index_url pypi)

echo "building comfypak (release)..." >&2
cargo build --release --quiet --bin comfypak
comfypak="$repo/target/release/comfypak"

work=$(mktemp -d "${TMPDIR:-/tmp}/comfypak-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# pak files of a layer, from pak/stack.toml.
layer_paks() {
  sed -n "/^\[\[layer\]\]/{n;/name = \"$1\"/{n;s/^paks = \[\(.*\)\]/\1/p}}" pak/stack.toml \
    | tr -d '"' | tr ',' ' '
}
stable_paks=$(layer_paks stable)
deps_paks=$(layer_paks deps)
if [ -z "$deps_paks" ] || [ -z "$stable_paks" ]; then
  echo "cannot find the stable and deps layers' paks in pak/stack.toml" >&2
  exit 2
fi
mkdir -p "$work/stack"
toml_list() { local out=""; for p in "$@"; do out="$out\"$p\", "; done; echo "${out%, }"; }
uv_inputs=()
for pak in $stable_paks $deps_paks; do
  cp "pak/$pak" "$work/stack/$pak"
  uv_inputs+=("$work/stack/$pak")
done
# The default stack's header (target, indexes and their pins) for one platform, without the
# perf-wheels source (the perf layer is not part of this input), then the two layers.
{
  sed -n '/^\[\[layer\]\]/q;p' pak/stack.toml \
    | sed -e "s|^index-dir = .*|index-dir = \"$repo/indexes\"|" \
      -e 's|^platforms = .*|platforms = ["manylinux_2_39_x86_64"]|' \
      -e '/^perf-wheels = /d'
  printf '[[layer]]\nname = "stable"\npaks = [%s]\n\n' "$(toml_list $stable_paks)"
  printf '[[layer]]\nname = "deps"\npaks = [%s]\n' "$(toml_list $deps_paks)"
} > "$work/stack/stack.toml"

cpk_index=()
uv_index=(--index-url "$pypi_url")
case "$torch_index" in
  pytorch) uv_index+=(--torch-backend cu130) ;;
  pypi) cpk_index=(--index "pytorch-cu130=$pypi_url") ;;
  *) echo "TORCH_INDEX must be pytorch or pypi, not $torch_index" >&2; exit 2 ;;
esac

# The commands, as text for hyperfine and as functions for the fallback loop.
cpk_cmd() { # $1 cache dir, $2 output, $3 extra flags
  printf '%q --quiet resolve --stack %q -o %q --platform manylinux_2_39_x86_64 --python 3.14 --cache-dir %q %s %s' \
    "$comfypak" "$work/stack" "$2" "$1" "${cpk_index[*]:+$(printf '%q ' "${cpk_index[@]}")}" "$3"
}
uv_cmd() { # $1 cache dir, $2 output
  printf 'UV_CACHE_DIR=%q %q pip compile --no-config --no-python-downloads --quiet --no-header --python-version 3.14 --python-platform x86_64-manylinux_2_39 --only-binary :all: %s -o %q %s' \
    "$1" "$uv" "$(printf '%q ' "${uv_index[@]}")" "$2" "$(printf '%q ' "${uv_inputs[@]}")"
}

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# time_median RUNS PREPARE COMMAND: the median wall time of COMMAND (a shell string), with
# PREPARE (a shell string) run before each timed run, outside the timing.
time_median() {
  local runs=$1 prepare=$2 command=$3
  if command -v hyperfine > /dev/null; then
    hyperfine --style none --runs "$runs" --prepare "$prepare" --export-json "$work/h.json" \
      "$command" > /dev/null 2>&1 || { echo "failed: $command" >&2; return 1; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$work/h.json"
  else
    local times=() start end
    for _ in $(seq "$runs"); do
      bash -c "$prepare"
      start=$(now)
      bash -c "$command" > /dev/null || { echo "failed: $command" >&2; return 1; }
      end=$(now)
      times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")
    done
    printf '%s\n' "${times[@]}" | median
  fi
}

cc="$work/cache-comfypak"
cu="$work/cache-uv"
echo "cold: fresh cache folders before each run, $cold_runs runs each" >&2
# Every run starts without an output file: both tools take the versions an existing output
# pins as preferences (comfypak's minimal churn, uv's pip-compile behaviour). A cold run's
# cache folder is moved aside, not deleted, before the next one: on ext4 without a journal,
# inodes freed in the last seconds make every new file slow to create, which would time
# the deletion rather than the tool (see bench/README.md).
mkdir -p "$work/trash"
aside() { printf 'if [ -e %q ]; then mv %q "$(mktemp -d %q/XXXXXX)/"; fi' "$1" "$1" "$work/trash"; }
cpk_cold=$(time_median "$cold_runs" "$(aside "$cc"); rm -f $work/cold.pylock.toml" "$(cpk_cmd "$cc" "$work/cold.pylock.toml" "")")
uv_cold=$(time_median "$cold_runs" "$(aside "$cu"); rm -f $work/cold.uv.txt" "$(uv_cmd "$cu" "$work/cold.uv.txt")")
echo "warm: the same cache folders, $warm_runs runs each" >&2
cpk_warm=$(time_median "$warm_runs" "rm -f $work/warm.pylock.toml" "$(cpk_cmd "$cc" "$work/warm.pylock.toml" "")")
cpk_reval=$(time_median "$warm_runs" "rm -f $work/reval.pylock.toml" "$(cpk_cmd "$cc" "$work/reval.pylock.toml" "--refresh")")
uv_warm=$(time_median "$warm_runs" "rm -f $work/warm.uv.txt" "$(uv_cmd "$cu" "$work/warm.uv.txt")")

cpk_count=$(grep -c '^\[\[packages\]\]' "$work/cold.pylock.toml" || true)
uv_count=$(grep -Ec '^[A-Za-z0-9]' "$work/cold.uv.txt" || true)
# The same names and versions? (normalized names; comfypak's lock against uv's pins)
same=$(python3 - "$work/cold.pylock.toml" "$work/cold.uv.txt" <<'PY'
import re, sys, tomllib
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
lock = {norm(p["name"]): p["version"] for p in tomllib.load(open(sys.argv[1], "rb"))["packages"]}
uv = {}
for line in open(sys.argv[2]):
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
    if m:
        uv[norm(m.group(1))] = m.group(3)
diff = sorted(f"{n}: comfypak {lock.get(n)} uv {uv.get(n)}" for n in set(lock) | set(uv) if lock.get(n) != uv.get(n))
print("identical" if not diff else f"{len(diff)} differences: " + "; ".join(diff[:10]))
PY
)

printf '\ninput: stable (%s) + deps (%s), CPython 3.14, manylinux_2_39_x86_64, wheels only, torch index: %s\n' \
  "$stable_paks" "$deps_paks" "$torch_index"
printf 'packages: comfypak %s entries, uv %s pins; names and versions: %s\n' "$cpk_count" "$uv_count" "$same"
printf 'timer: %s; medians\n' "$(command -v hyperfine > /dev/null && hyperfine --version || echo 'date +%s.%N loop')"
printf '%-18s %10s %10s %12s\n' "cache" "comfypak" "uv" "comfypak/uv"
printf '%-18s %9.2fs %9.2fs %12s\n' "cold" "$cpk_cold" "$uv_cold" "$(ratio "$cpk_cold" "$uv_cold")"
printf '%-18s %9.2fs %9.2fs %12s\n' "warm" "$cpk_warm" "$uv_warm" "$(ratio "$cpk_warm" "$uv_warm")"
printf '%-18s %9.2fs %9.2fs %12s\n' "warm, revalidate" "$cpk_reval" "$uv_warm" "$(ratio "$cpk_reval" "$uv_warm")"
printf 'target: comfypak/uv <= 0.50 cold and warm\n'
printf 'uv: %s\n' "$("$uv" --version)"
