#!/usr/bin/env bash
# bench/resolve.sh: time `comfypak resolve` against `uv pip compile` on several inputs, in one
# run, against the live indexes, for CPython 3.14 on manylinux_2_39 x86_64, wheels only, and
# print per input the medians, the ratio comfypak/uv, whether both give the same names and
# versions, and the floor (dependency depth × measured round trip).
#
# The inputs ("sets"):
#   default       the default stack's `deps` layer pak files plus the `stable` layer's torch
#                 pins (pak1), with the stack's index pins;
#   bench/sets/NAME.txt
#                 one requirement file each, assembled from popular ComfyUI custom nodes'
#                 requirements; torch is not pinned, and everything comes from the public
#                 index, so its CUDA torch build and nvidia-* closure are resolved (comfypak:
#                 the backend's `pytorch-cu130` index, where the torch family goes, pointed at
#                 the public index; uv: the public index alone).
#
# Not a test: it needs the network (COMFYPAK_LIVE=1) and uv (COMFYPAK_UV, else `uv` on PATH;
# .ci/setup.d/20-uv.sh installs one). Index URLs come from indexes/*.toml.
#   COMFYPAK_LIVE=1 bench/resolve.sh
# Environment:
#   SETS (default: "default" and every bench/sets/*.txt): the inputs to run, by name.
#   COMFYPAK_BIN: time this comfypak binary instead of building the release one.
#   COLD_RUNS (default 3), WARM_RUNS (default 3): timed runs of each kind, per tool. WARM_RUNS=0
#     skips the warm rows.
#   TORCH_INDEX=pytorch (default): the default set's torch family comes from the PyTorch cu130
#     index (comfypak: the stack's pin; uv: --torch-backend cu130).
#   TORCH_INDEX=pypi: point the stack's `pytorch-cu130` index at the public index instead
#     (whose torch Linux wheels are the CUDA builds), and give uv the public index alone. Use
#     it where the PyTorch index cannot be reached.
#
# Timing: the two tools' runs alternate (comfypak, uv, comfypak, uv, ...) so that both see the
# same load on a shared machine; each run is timed with `date +%s.%N` around the command, after
# its preparation (outside the timing); the median of each tool's runs is reported.
#
# The floor: after the timed runs, one more cold comfypak run with `--profile` (not timed) says
# how the time went (requests per phase, the longest chain of dependent requests, the solver's
# waits); its lock gives the dependency depth D (the longest path from a pak requirement down
# the lock's dependency edges, counted in packages). The round trip R is the median time to the
# first byte of a small index page on a reused connection, measured with curl in this run. No
# resolver can know a package's dependencies before it has read its page and then its METADATA,
# so floor = 2 × D × R. floor+C adds the first request's connection set-up C (curl's DNS, TCP
# and TLS), which every cold run pays once before its first answer.
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
if ! command -v curl > /dev/null; then
  echo "curl not found (it measures the round trip): apt-get install curl" >&2
  exit 2
fi
cold_runs="${COLD_RUNS:-3}"
warm_runs="${WARM_RUNS:-3}"
torch_index="${TORCH_INDEX:-pytorch}"
if [ -z "${SETS:-}" ]; then
  SETS="default"
  for f in bench/sets/*.txt; do SETS="$SETS $(basename "$f" .txt)"; done
fi

index_url() { sed -n 's/^url *= *"\(.*\)"/\1/p' "indexes/$1.toml"; }
pypi_url=$(index_url pypi)

if [ -n "${COMFYPAK_BIN:-}" ]; then
  comfypak=$(realpath "$COMFYPAK_BIN")
else
  echo "building comfypak (release)..." >&2
  cargo build --release --quiet --bin comfypak
  comfypak="${CARGO_TARGET_DIR:-$repo/target}/release/comfypak"
  case "$comfypak" in /*) ;; *) comfypak="$repo/$comfypak" ;; esac
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/comfypak-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/trash"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# A cold run's cache folder is moved aside, not deleted, before the next one: on ext4 without
# a journal, inodes freed in the last seconds make every new file slow to create, which would
# time the deletion rather than the tool (see bench/README.md).
aside() { if [ -e "$1" ]; then mv "$1" "$(mktemp -d "$work/trash/XXXXXX")/"; fi; }

# The round trip: time to the first byte of one small page, on a connection curl reuses;
# prints "R C", C being the first request's connection set-up (DNS, TCP, TLS).
rtt_probe() {
  local url="${pypi_url%/}/six/" urls=() out
  for _ in 1 2 3 4 5 6 7; do urls+=(-o /dev/null "$url"); done
  out=$(curl -s -H 'Accept: application/vnd.pypi.simple.v1+json' \
    -w '%{time_starttransfer} %{time_pretransfer}\n' "${urls[@]}")
  echo "$(echo "$out" | tail -n +2 | awk '{print $1 - $2}' | median) $(echo "$out" | head -1 | awk '{print $2}')"
}

# pak files of a layer, from pak/stack.toml.
layer_paks() {
  sed -n "/^\[\[layer\]\]/{n;/name = \"$1\"/{n;s/^paks = \[\(.*\)\]/\1/p}}" pak/stack.toml \
    | tr -d '"' | tr ',' ' '
}
toml_list() { local out=""; for p in "$@"; do out="$out\"$p\", "; done; echo "${out%, }"; }

# prepare_set NAME: writes $work/NAME/stack (a stack folder) and sets uv_inputs, cpk_index,
# uv_index and describe for it.
prepare_set() {
  local name=$1 dir="$work/$1/stack"
  mkdir -p "$dir"
  uv_inputs=()
  cpk_index=()
  uv_index=(--index-url "$pypi_url")
  if [ "$name" = default ]; then
    local stable_paks deps_paks
    stable_paks=$(layer_paks stable)
    deps_paks=$(layer_paks deps)
    if [ -z "$deps_paks" ] || [ -z "$stable_paks" ]; then
      echo "cannot find the stable and deps layers' paks in pak/stack.toml" >&2
      exit 2
    fi
    for pak in $stable_paks $deps_paks; do
      cp "pak/$pak" "$dir/$pak"
      uv_inputs+=("$dir/$pak")
    done
    # The default stack's header (target, indexes and their pins) for one platform, without
    # the perf-wheels source (the perf layer is not part of this input), then the two layers.
    {
      sed -n '/^\[\[layer\]\]/q;p' pak/stack.toml \
        | sed -e "s|^index-dir = .*|index-dir = \"$repo/indexes\"|" \
          -e 's|^platforms = .*|platforms = ["manylinux_2_39_x86_64"]|' \
          -e '/^perf-wheels = /d'
      printf '[[layer]]\nname = "stable"\npaks = [%s]\n\n' "$(toml_list $stable_paks)"
      printf '[[layer]]\nname = "deps"\npaks = [%s]\n' "$(toml_list $deps_paks)"
    } > "$dir/stack.toml"
    case "$torch_index" in
      pytorch) uv_index+=(--torch-backend cu130) ;;
      pypi) cpk_index=(--index "pytorch-cu130=$pypi_url") ;;
      *) echo "TORCH_INDEX must be pytorch or pypi, not $torch_index" >&2; exit 2 ;;
    esac
    describe="stable ($(echo $stable_paks)) + deps ($(echo $deps_paks)), torch index: $torch_index"
  else
    if [ ! -f "bench/sets/$name.txt" ]; then
      echo "no set $name: expected bench/sets/$name.txt" >&2
      exit 2
    fi
    cp "bench/sets/$name.txt" "$dir/requirements.txt"
    uv_inputs=("$dir/requirements.txt")
    cpk_index=(--index "pytorch-cu130=$pypi_url")
    cat > "$dir/stack.toml" <<EOF
[stack]
name = "bench-$name"
index-dir = "$repo/indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"
torch-backend = "cu130"

[indexes]
default = ["pypi"]

[[layer]]
name = "deps"
paks = ["requirements.txt"]
EOF
    describe="bench/sets/$name.txt, torch unpinned, everything from the public index"
  fi
}

cpk_cmd() { # $1 stack, $2 cache dir, $3 output, $4 extra flags
  printf '%q --quiet resolve --stack %q -o %q --platform manylinux_2_39_x86_64 --python 3.14 --cache-dir %q %s %s' \
    "$comfypak" "$1" "$3" "$2" "${cpk_index[*]:+$(printf '%q ' "${cpk_index[@]}")}" "$4"
}
uv_cmd() { # $1 cache dir, $2 output
  printf 'UV_CACHE_DIR=%q %q pip compile --no-config --no-python-downloads --quiet --no-header --python-version 3.14 --python-platform x86_64-manylinux_2_39 --only-binary :all: %s -o %q %s' \
    "$1" "$uv" "$(printf '%q ' "${uv_index[@]}")" "$2" "$(printf '%q ' "${uv_inputs[@]}")"
}

# time_one COMMAND: the wall time of COMMAND (a shell string), in seconds.
time_one() {
  local start end
  start=$(now)
  bash -c "$1" > /dev/null || { echo "failed: $1" >&2; return 1; }
  end=$(now)
  awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
}

# alternate RUNS PREP_A CMD_A PREP_B CMD_B: runs A and B in turn RUNS times; prints the two
# medians.
alternate() {
  local runs=$1 a=() b=()
  for _ in $(seq "$runs"); do
    eval "$2"
    a+=("$(time_one "$3")")
    eval "$4"
    b+=("$(time_one "$5")")
  done
  echo "$(printf '%s\n' "${a[@]}" | median) $(printf '%s\n' "${b[@]}" | median)"
}

# Names and versions of comfypak's lock against uv's pins.
compare() {
  python3 - "$1" "$2" <<'PY'
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
}

# The dependency depth of a lock: the longest path from a package no other package needs (or a
# pak requirement) down the dependency edges, in packages.
depth() {
  python3 - "$1" <<'PY'
import sys, tomllib
from functools import lru_cache
packages = tomllib.load(open(sys.argv[1], "rb"))["packages"]
deps = {}
for p in packages:
    deps.setdefault(p["name"], set()).update(d["name"] for d in p.get("dependencies", []) if d.get("name"))
import sys as _s
_s.setrecursionlimit(10000)
@lru_cache(None)
def longest(name, seen=frozenset()):
    return 1 + max((longest(d, seen | {name}) for d in deps.get(name, ()) if d not in seen and d in deps), default=0)
print(max((longest(n) for n in deps), default=0))
PY
}

read -r rtt_start connect_start < <(rtt_probe)
echo "round trip (curl, median time to first byte of a small page on a reused connection): ${rtt_start}s; connection set-up ${connect_start}s" >&2
rows=()
profiles=()
for set in $SETS; do
  prepare_set "$set"
  stack="$work/$set/stack"
  cc="$work/$set/cache-comfypak"
  cu="$work/$set/cache-uv"
  out="$work/$set"
  echo "$set: cold, fresh cache folders before each run, $cold_runs runs each, alternating" >&2
  # Every run starts without an output file: both tools take the versions an existing output
  # pins as preferences (comfypak's minimal churn, uv's pip-compile behaviour).
  read -r cpk_cold uv_cold < <(alternate "$cold_runs" \
    "aside $cc; rm -f $out/cold.pylock.toml" \
    "$(cpk_cmd "$stack" "$cc" "$out/cold.pylock.toml" "")" \
    "aside $cu; rm -f $out/cold.uv.txt" \
    "$(uv_cmd "$cu" "$out/cold.uv.txt")")
  cpk_warm=- uv_warm=- cpk_reval=-
  if [ "$warm_runs" -gt 0 ]; then
    echo "$set: warm, the same cache folders, $warm_runs runs each, alternating" >&2
    read -r cpk_warm uv_warm < <(alternate "$warm_runs" \
      "rm -f $out/warm.pylock.toml" "$(cpk_cmd "$stack" "$cc" "$out/warm.pylock.toml" "")" \
      "rm -f $out/warm.uv.txt" "$(uv_cmd "$cu" "$out/warm.uv.txt")")
    read -r cpk_reval _ < <(alternate "$warm_runs" \
      "rm -f $out/reval.pylock.toml" "$(cpk_cmd "$stack" "$cc" "$out/reval.pylock.toml" "--refresh")" \
      "true" "true")
  fi
  # One more cold run, not timed, with the profile.
  aside "$cc"
  rm -f "$out/profile.pylock.toml"
  bash -c "$(cpk_cmd "$stack" "$cc" "$out/profile.pylock.toml" "--profile")" 2> "$out/profile.txt" > /dev/null
  profiles+=("$set" "$out/profile.txt")

  cpk_count=$(grep -c '^\[\[packages\]\]' "$out/cold.pylock.toml" || true)
  uv_count=$(grep -Ec '^[A-Za-z0-9]' "$out/cold.uv.txt" || true)
  same=$(compare "$out/cold.pylock.toml" "$out/cold.uv.txt")
  d=$(depth "$out/cold.pylock.toml")
  rows+=("$(printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s' "$set" "$cpk_count" "$uv_count" "$same" \
    "$cpk_cold" "$uv_cold" "$d" "$cpk_warm" "$uv_warm" "$cpk_reval" "$describe")")
done
read -r rtt_end connect_end < <(rtt_probe)
rtt=$(printf '%s\n%s\n' "$rtt_start" "$rtt_end" | median)
connect=$(printf '%s\n%s\n' "$connect_start" "$connect_end" | median)

for ((i = 0; i < ${#profiles[@]}; i += 2)); do
  printf '\n== profile of one cold comfypak run: %s ==\n' "${profiles[i]}"
  grep -v '^warning:' "${profiles[i + 1]}" || true
done

printf '\nCPython 3.14, manylinux_2_39_x86_64, wheels only; medians of %s cold and %s warm runs per tool, alternating\n' "$cold_runs" "$warm_runs"
printf 'round trip R = %.3fs (curl, median time to first byte of a small page; %.3fs before, %.3fs after); floor = 2 x depth x R\n' \
  "$rtt" "$rtt_start" "$rtt_end"
printf 'connection set-up C = %.3fs (curl: DNS, TCP and TLS of the first request; %.3fs before, %.3fs after); floor+C adds one, for the index host\n' \
  "$connect" "$connect_start" "$connect_end"
printf 'load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %5s %5s %10s %10s %7s %6s %8s %8s %10s %10s %7s %10s %7s  %s\n' \
  set pkgs uv "cold cpk" "cold uv" ratio depth floor floor+C "warm cpk" "warm uv" ratio "warm reval" ratio "names+versions"
for row in "${rows[@]}"; do
  IFS='|' read -r set cpk_count uv_count same cpk_cold uv_cold d cpk_warm uv_warm cpk_reval describe <<< "$row"
  floor=$(awk -v d="$d" -v r="$rtt" 'BEGIN { printf "%.2f", 2 * d * r }')
  floor_c=$(awk -v d="$d" -v r="$rtt" -v c="$connect" 'BEGIN { printf "%.2f", c + 2 * d * r }')
  if [ "$cpk_warm" = - ]; then
    warm_cols=$(printf '%10s %10s %7s %10s %7s' - - - - -)
  else
    warm_cols=$(printf '%9.2fs %9.2fs %7s %9.2fs %7s' "$cpk_warm" "$uv_warm" "$(ratio "$cpk_warm" "$uv_warm")" \
      "$cpk_reval" "$(ratio "$cpk_reval" "$uv_warm")")
  fi
  printf '%-16s %5s %5s %9.2fs %9.2fs %7s %6s %7ss %7ss %s  %s\n' "$set" "$cpk_count" "$uv_count" \
    "$cpk_cold" "$uv_cold" "$(ratio "$cpk_cold" "$uv_cold")" "$d" "$floor" "$floor_c" "$warm_cols" "$same"
done
printf 'inputs:\n'
for row in "${rows[@]}"; do
  IFS='|' read -r set _ _ _ _ _ _ _ _ _ describe <<< "$row"
  printf '  %-16s %s\n' "$set" "$describe"
done
printf 'target: comfypak/uv <= 0.50 cold (and warm) on every set\n'
printf 'uv: %s\n' "$("$uv" --version)"
