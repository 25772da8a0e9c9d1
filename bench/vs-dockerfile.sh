#!/usr/bin/env bash
# comfypak against the Dockerfile way: the same stack built as image layers by `podman build`
# (one `RUN pip install` per pak file, as the ComfyUI images the pak files come from are built,
# with buildah's layer cache) and by `comfypak build`, each followed by a push to its own local
# registry (Debian's docker-registry on 127.0.0.1). Both start from the same base (the Debian
# testing + python3.14 root of scripts/python-root.sh, imported once as an OCI image) and
# install the same wheels: `comfypak mirror` of the lock is the Dockerfile's wheelhouse
# (`pip install --no-index --find-links`, every pak line pinned to the lock's version) and
# comfypak's lock points at the same files, so neither downloads anything while timed.
#
# Scenarios, in order: cold (empty caches and registries), no change, volatile bump
# (comfyui-frontend-package in pak9), deps bump (one package of pak5), torch bump (the torch
# family of pak1). Per scenario and tool: build and push wall time, layers rebuilt (layers of
# the pushed manifest not in the previous one), their bytes, the bytes the registry stored;
# then the ratio comfypak / Dockerfile per column. At the end the two images' installed
# distributions (name, version), read by their own python in `podman run`, are compared.
#
#   bench/vs-dockerfile.sh                  fixture scale: the fixture indexes of
#                                           fixtures/indexes, each wheel padded to
#                                           real size / FIXTURE_SCALE with random bytes
#   COMFYPAK_LIVE=1 bench/vs-dockerfile.sh  real wheels from the public index (see LIVE below)
#
# Settings (environment):
#   COMFYPAK_TEST_PYTHON_ROOT  the python root folder (.ci/setup.d/50-python-root.sh exports it)
#   COMFYPAK_ORACLE_PYTHON     a Python >= 3.11 with `packaging` (the CI tools venv), for helpers
#   COMFYPAK_DOCKER_REGISTRY_BIN  the registry server (default: docker-registry on PATH)
#   FIXTURE_SCALE   fixture wheels carry real size / this many bytes (default 100)
#   BENCH_DIR       work folder, emptied first (default: $CARGO_TARGET_DIR or target, then
#                   /bench-vs-dockerfile)
#   SPLIT_THRESHOLD comfypak build --split-threshold (a package whose wheel is at least this big
#                   gets its own image layer); default: comfypak's own (32MiB) live, and
#                   32MiB / FIXTURE_SCALE at fixture scale
#   NO_BUILD=1      bench the release binaries already built (no cargo build)
#   KEEP=1          keep BENCH_DIR (images, registries, caches) after the run
#   LOG_DIR         copy the build logs (comfypak's stage times, podman's output) there
#   PREP_CACHE      the comfypak cache of the untimed resolve and mirror steps (default: one
#                   in BENCH_DIR); a shared wheel cache spares a live run its downloads. The
#                   timed comfypak builds always start from an empty cache of their own.
#   FRONTEND_IN=pak9 (default) the Dockerfile has one RUN per pak file of the stack, the
#                   front-end packages last (pak9), as comfypak's stack splits them;
#                   FRONTEND_IN=pak4: they are installed by the pak4 RUN instead, as ComfyUI's
#                   own requirements.txt (pak4) lists them in the images the pak files come from
#   VOLATILE_FROM / VOLATILE_TO   comfyui-frontend-package versions (1.45.14 -> 1.45.15)
#   DEPS_PACKAGE, DEPS_FROM / DEPS_TO   the package bumped (gguf 0.18.0 -> 0.19.0), in DEPS_PAK
#                   (pak5; a pak file of the deps layer; the line is added when it has none)
#   TORCH_FROM / TORCH_TO   "torch torchvision torchaudio" versions; fixture scale: 2.10.0
#                   0.25.0 2.10.0 -> 2.11.0 0.26.0 2.11.0; live: 2.11.0 0.26.0 2.11.0 (the
#                   stack's pins) -> 2.12.0 0.27.0 2.11.1, both CUDA 13 builds on the public
#                   index (its 2.10.0 is a CUDA 12 build with another nvidia-* closure)
#   SAVE_DISK=1     (default) untimed, between the measured steps: comfypak's cache and
#                   registry hard-link the bytes the wheelhouse and its cache already hold,
#                   the Dockerfile's last image goes before the torch build (nothing of it above
#                   the venv step can be reused), its registry after the last push is measured;
#                   SAVE_DISK=0 keeps every copy
#   MIN_FREE_GB     the run stops when less is free after a step (default 8); per step it
#                   prints BENCH_DIR's size and the free space, and at the end the peak
#   LIVE: the PyTorch index and the perf-wheels release page are not reachable from every
#   network, so a live run takes the torch family from the public index (its Linux torch
#   wheels are the CUDA builds) and drops flash-attn and sageattention from pak6 (triton stays).
#   LIVE_PAKS="pak2 pak9" limits the stack's layers to those pak files (and
#   skips the scenarios that edit a pak file left out). LIVE_DROP="torch torchvision ..." removes
#   the lines naming those packages from every pak file; with LIVE_NO_TORCH=1 the run stops when
#   the lock still holds torch, triton or an nvidia-* CUDA library (a stack without the torch
#   closure fits in about 15 GB: see bench/README.md).
#
# Needs: podman and buildah with a working runtime (.ci/setup.d/60-podman.sh), skopeo, curl,
# docker-registry (.ci/setup.d/40-image-tools.sh). Runs as root (podman's storage is its own,
# under BENCH_DIR, so other images on the machine are untouched).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() {
  echo "vs-dockerfile.sh: $*" >&2
  exit 1
}
note() { printf '==> %s\n' "$*" >&2; }
now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

live="${COMFYPAK_LIVE:-0}"
scale="${FIXTURE_SCALE:-100}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
work="${BENCH_DIR:-$target_dir/bench-vs-dockerfile}"
py="${COMFYPAK_ORACLE_PYTHON:-python3}"
python_root="${COMFYPAK_TEST_PYTHON_ROOT:-}"
registry_bin="${COMFYPAK_DOCKER_REGISTRY_BIN:-$(command -v docker-registry || true)}"
volatile_from="${VOLATILE_FROM:-1.45.14}"
volatile_to="${VOLATILE_TO:-1.45.15}"
deps_package="${DEPS_PACKAGE:-gguf}"
deps_from="${DEPS_FROM:-0.18.0}"
deps_to="${DEPS_TO:-0.19.0}"
deps_pak="${DEPS_PAK:-pak5}"
if [ "$live" = 1 ]; then
  read -r -a torch_from <<<"${TORCH_FROM:-2.11.0 0.26.0 2.11.0}"
  read -r -a torch_to <<<"${TORCH_TO:-2.12.0 0.27.0 2.11.1}"
else
  read -r -a torch_from <<<"${TORCH_FROM:-2.10.0 0.25.0 2.10.0}"
  read -r -a torch_to <<<"${TORCH_TO:-2.11.0 0.26.0 2.11.0}"
fi
if [ "${#torch_from[@]}" != 3 ] || [ "${#torch_to[@]}" != 3 ]; then
  die "TORCH_FROM and TORCH_TO take three versions: torch torchvision torchaudio"
fi
helper="$repo/bench/vs-dockerfile.py"
frontend_in="${FRONTEND_IN:-pak9}"
case "$frontend_in" in pak9 | pak4) ;; *) die "FRONTEND_IN must be pak9 or pak4, not '$frontend_in'" ;; esac

# --- what it needs ---------------------------------------------------------------------------
missing=""
for tool in podman skopeo curl awk; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] || die "missing tools:$missing (podman: .ci/setup.d/60-podman.sh; skopeo: .ci/setup.d/40-image-tools.sh)"
[ -x "${registry_bin:-/nonexistent}" ] ||
  die "no registry server: install docker-registry (.ci/setup.d/40-image-tools.sh) or set COMFYPAK_DOCKER_REGISTRY_BIN"
[ -x "${python_root:-/nonexistent}/usr/bin/python3.14" ] ||
  die "COMFYPAK_TEST_PYTHON_ROOT='$python_root' is not a root with /usr/bin/python3.14; make one with scripts/python-root.sh (or source .ci/setup.d/50-python-root.sh)"
"$py" -c 'import sys, tomllib, packaging; assert sys.version_info >= (3, 11)' 2>/dev/null ||
  die "$py is not a Python >= 3.11 with packaging; set COMFYPAK_ORACLE_PYTHON (the CI tools venv has both)"
[ "$(id -u)" = 0 ] || die "run as root (podman builds with its own storage under BENCH_DIR)"
case "$scale" in '' | *[!0-9]* | 0) die "FIXTURE_SCALE must be a positive integer, not '$scale'" ;; esac
split_args=()
if [ -n "${SPLIT_THRESHOLD:-}" ]; then
  split_args=(--split-threshold "$SPLIT_THRESHOLD")
elif [ "$live" != 1 ]; then
  split_args=(--split-threshold "$((32 * 1024 * 1024 / scale))")
fi

comfypak="$target_dir/release/comfypak"
fixtures_bin="$target_dir/release/comfypak-fixtures"
if [ "${NO_BUILD:-0}" = 1 ]; then
  note "NO_BUILD=1: benching the release binaries already in $target_dir/release"
else
  note "building the release binaries (cargo build --release)"
  cargo build --release --quiet --bin comfypak
  [ "$live" = 1 ] || cargo build --release --quiet -p comfypak-testkit --bin comfypak-fixtures
fi
[ -x "$comfypak" ] || die "no $comfypak (build it, or drop NO_BUILD=1)"
[ "$live" = 1 ] || [ -x "$fixtures_bin" ] || die "no $fixtures_bin (build it, or drop NO_BUILD=1)"

rm -rf "$work"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
pm_root="$work/podman/root"
pm_run="$work/podman/run"
pm() { podman --root "$pm_root" --runroot "$pm_run" "$@"; }

registry_pids=()
results=""
table_printed=0
cleanup() {
  local pid
  # A run stopped part-way (a failure, too little disk, a kill) still prints what it measured.
  if [ "$table_printed" != 1 ] && [ -n "$results" ] && [ -s "$results" ]; then
    echo "vs-dockerfile.sh: stopped before the end; the scenarios measured so far:" >&2
    "$py" "$helper" table "$results" >&2 || true
  fi
  for pid in "${registry_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" != 1 ]; then
    pm rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- indexes and the stack copy --------------------------------------------------------------
index_url() { sed -n 's/^url *= *"\(.*\)"/\1/p' "$repo/indexes/$1.toml"; }
index_args=()
if [ "$live" = 1 ]; then
  pypi_url=$(index_url pypi)
  [ -n "$pypi_url" ] || die "no url in indexes/pypi.toml"
  index_args=(--index "pytorch-cu130=$pypi_url")
else
  note "fixture indexes, wheels padded to real size / $scale"
  for spec in pypi-snapshot:pypi pytorch-cu130:pytorch-cu130 perf-wheels:perf-wheels; do
    "$py" "$helper" pad "fixtures/indexes/${spec%%:*}.json" "$work/${spec##*:}.json" "$scale"
    "$fixtures_bin" write "$work/${spec##*:}.json" "$work/indexes/${spec##*:}" >/dev/null
  done
  index_args=(
    --index "pypi=file://$work/indexes/pypi/simple/"
    --index "pytorch-cu130=file://$work/indexes/pytorch-cu130/simple/"
    --index "perf-wheels=file://$work/indexes/perf-wheels/files/"
  )
fi

stack="$work/stack"
mkdir -p "$stack"
cp pak/pak*.txt "$stack/"
# One platform (the Dockerfile builds for this host's), the repository's index definitions.
sed -e "s|^index-dir = .*|index-dir = \"$repo/indexes\"|" \
  -e 's|^platforms = .*|platforms = ["manylinux_2_39_x86_64"]|' pak/stack.toml >"$stack/stack.toml"
grep -q "^index-dir = \"$repo/indexes\"" "$stack/stack.toml" || die "pak/stack.toml has no index-dir line to point at $repo/indexes"
if [ "$live" = 1 ]; then
  sed -i -E '/^(flash-attn|sageattention)([^A-Za-z0-9._-]|$)/d' "$stack/pak6.txt"
  for name in ${LIVE_DROP:-}; do
    sed -i -E "/^${name}([^A-Za-z0-9._-]|$)/Id" "$stack"/pak*.txt
  done
fi
# keep_paks "pakA pakB": the stack's layers keep only those pak files (a layer left with none
# goes).
keep_paks() {
  "$py" - "$stack/stack.toml" "$1" <<'EOF'
import re, sys
path, keep = sys.argv[1], set(p if p.endswith(".txt") else p + ".txt" for p in sys.argv[2].split())
text = open(path, encoding="utf-8").read()
head, _, rest = text.partition("[[layer]]")
blocks = ["[[layer]]" + b for b in rest.split("[[layer]]")]
out = []
for block in blocks:
    body, sep, tail = block.partition("\n[excluded]")
    paks = [p for p in re.findall(r'"([^"]+)"', re.search(r"paks = \[(.*?)\]", body).group(1)) if p in keep]
    if paks:
        out.append(re.sub(r"paks = \[.*?\]", "paks = [" + ", ".join(f'"{p}"' for p in paks) + "]", body))
    if sep:
        out.append(sep.lstrip("\n") + tail)
open(path, "w", encoding="utf-8").write(head + "\n".join(out))
EOF
}
if [ "$live" = 1 ] && [ -n "${LIVE_PAKS:-}" ]; then
  keep_paks "$LIVE_PAKS"
else
  # The source-built packages of pak7/pak8 (the nodes layer) are left out: the fixture indexes
  # have no sdists or git repositories, a live run's git sources are on a forge that is not
  # reachable from every network, and the Dockerfile's `pip install --no-index` from the
  # wheelhouse installs wheels only (it gets no RUN for them either).
  keep_paks "$(sed -n 's/^paks = \[\(.*\)\]/\1/p' "$stack/stack.toml" | tr -d '",' | tr ' ' '\n' | grep -vxE 'pak[78](\.txt)?' | tr '\n' ' ')"
fi

# set_pin FILE NAME REQUIREMENT: the line of FILE that asks for NAME becomes REQUIREMENT
# (appended when no line does).
set_pin() {
  local file="$1" name="$2" requirement="$3"
  if grep -qiE "^${name}([^A-Za-z0-9._-]|$)" "$file"; then
    sed -i -E "s/^${name}([^A-Za-z0-9._-].*)?$/${requirement}/I" "$file"
  else
    printf '%s\n' "$requirement" >>"$file"
  fi
}
paks_in_stack() { sed -n 's/^paks = \[\(.*\)\]/\1/p' "$stack/stack.toml" | tr -d '",' | tr ' ' '\n' | sed '/^$/d'; }
in_stack() { paks_in_stack | grep -qx "$1"; }

scenarios=(cold no-change)
in_stack pak9.txt && scenarios+=(volatile)
in_stack "$deps_pak.txt" && scenarios+=(deps)
in_stack pak1.txt && scenarios+=(torch)
# The starting point: the versions each bump moves away from.
set_pin "$stack/pak9.txt" comfyui-frontend-package "comfyui-frontend-package==$volatile_from"
set_pin "$stack/$deps_pak.txt" "$deps_package" "$deps_package==$deps_from"
set_pin "$stack/pak1.txt" torch "torch==${torch_from[0]}"
set_pin "$stack/pak1.txt" torchvision "torchvision==${torch_from[1]}"
set_pin "$stack/pak1.txt" torchaudio "torchaudio==${torch_from[2]}"

apply_scenario() {
  case "$1" in
    volatile) set_pin "$stack/pak9.txt" comfyui-frontend-package "comfyui-frontend-package==$volatile_to" ;;
    deps) set_pin "$stack/$deps_pak.txt" "$deps_package" "$deps_package==$deps_to" ;;
    torch)
      set_pin "$stack/pak1.txt" torch "torch==${torch_to[0]}"
      set_pin "$stack/pak1.txt" torchvision "torchvision==${torch_to[1]}"
      set_pin "$stack/pak1.txt" torchaudio "torchaudio==${torch_to[2]}"
      ;;
  esac
}

# --- the base image, the same blob for both --------------------------------------------------
note "base: $python_root as an OCI image"
mkdir -p "$pm_root" "$pm_run"
tar -C "$python_root" -c . |
  pm import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - localhost/bench/base-import:latest >/dev/null
skopeo copy -q --dest-compress "containers-storage:[overlay@$pm_root+$pm_run]localhost/bench/base-import:latest" \
  "oci:$work/base:latest" 2>/dev/null
pm rmi -f localhost/bench/base-import:latest >/dev/null
base_id=$(pm pull -q "oci:$work/base:latest")
pm tag "$base_id" localhost/bench/base:latest

# pip for the Dockerfile, run from its wheel (the image gets no pip, as comfypak's gets none).
pip_version=$("$py" -m pip --version | awk '{print $2}')
mkdir -p "$work/pip"
"$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
  -d "$work/pip" "pip==$pip_version" || die "cannot download pip $pip_version's wheel (needs the package index)"
pip_wheel=$(cd "$work/pip" && ls pip-*.whl)

# --- two registries ---------------------------------------------------------------------------
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A registry_port
for tool in dockerfile comfypak; do
  port=$(free_port)
  mkdir -p "$work/registry-$tool"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$work/registry-$tool/data" "$port" >"$work/registry-$tool/config.yml"
  "$registry_bin" serve "$work/registry-$tool/config.yml" >"$work/registry-$tool/log" 2>&1 &
  registry_pids+=("$!")
  registry_port[$tool]=$port
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    kill -0 "$!" 2>/dev/null || die "the registry did not start: $(tail -n 3 "$work/registry-$tool/log")"
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null || die "the registry on 127.0.0.1:$port does not answer"
done

# --- the Dockerfile ---------------------------------------------------------------------------
ctx="$work/context"
mkdir -p "$ctx/pins"
{
  echo "# One RUN pip install per pak file, from the wheelhouse, each pak line pinned to the lock."
  echo "FROM localhost/bench/base:latest"
  echo "RUN /usr/bin/python3.14 -m venv --without-pip /opt/comfyui/venv"
  for pak in $(paks_in_stack); do
    if [ "$frontend_in" = pak4 ] && [ "$pak" = pak9.txt ] && in_stack pak4.txt; then
      continue
    fi
    echo "COPY pins/$pak /tmp/pak/$pak"
    echo "RUN /opt/comfyui/venv/bin/python /pip/$pip_wheel/pip install --no-index --find-links /wheels/files --no-cache-dir --disable-pip-version-check --root-user-action=ignore --quiet -r /tmp/pak/$pak"
  done
} >"$ctx/Dockerfile"

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
prep_cache="${PREP_CACHE:-$work/prep-cache}"
results="$work/results.tsv"
: >"$results"

# measure TOOL SCENARIO BUILD_S PUSH_S: the manifest now in the tool's registry against the
# previous scenario's, and what the registry stores more than before the push.
measure() {
  local tool="$1" scenario="$2" build_s="$3" push_s="$4" port="${registry_port[$1]}"
  skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$port/bench/$tool:latest" >"$work/manifest-$tool-$scenario.json"
  local stored_after
  stored_after=$("$py" "$helper" blobs "$work/registry-$tool/data")
  read -r new_layers new_bytes total_layers < <("$py" "$helper" layers "$work/manifest-$tool-$scenario.json" "$work/manifest-$tool-previous.json")
  cp "$work/manifest-$tool-$scenario.json" "$work/manifest-$tool-previous.json"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$tool" "$build_s" "$push_s" \
    "$new_layers" "$new_bytes" "$((stored_after - stored_before))" "$total_layers" >>"$results"
}

# disk_check WHEN: BENCH_DIR's size (hard links counted once) and the free space, printed and
# kept in disk.tsv; the run stops when less than MIN_FREE_GB is left.
min_free_gb="${MIN_FREE_GB:-8}"
save_disk="${SAVE_DISK:-1}"
disk_check() {
  local used free
  used=$(du -sxB1 "$work" 2>/dev/null | cut -f1)
  free=$(df -B1 --output=avail "$work" | tail -n 1 | tr -d ' ')
  printf '%s\t%s\t%s\n' "$1" "$used" "$free" >>"$work/disk.tsv"
  note "disk after $1: $(awk -v u="$used" -v f="$free" 'BEGIN { printf "%.1f GB in BENCH_DIR, %.1f GB free", u / 1e9, f / 1e9 }')"
  [ "$free" -ge $((min_free_gb * 1000000000)) ] ||
    die "less than MIN_FREE_GB=$min_free_gb GB free after $1: stopping (what was measured is in $results)"
}
: >"$work/disk.tsv"

for scenario in "${scenarios[@]}"; do
  apply_scenario "$scenario"
  note "$scenario: resolve, mirror and pins (not timed)"
  COMFYPAK_CACHE_DIR="$prep_cache" "$comfypak" -q resolve --stack "$stack" -o "$work/pylock.toml" "${index_args[@]}"
  rm -rf "$work/mirror"
  COMFYPAK_CACHE_DIR="$prep_cache" "$comfypak" -q mirror --lock "$work/pylock.toml" --out "$work/mirror" "${index_args[@]}"
  if [ "${LIVE_NO_TORCH:-0}" = 1 ] && grep -qE '^name = "(torch|triton|nvidia-(cu|cuda|nccl|nvjit|nvshmem|nvtx)[a-z0-9-]*)"$' "$work/pylock.toml"; then
    die "LIVE_NO_TORCH=1 but the lock holds $(grep -oE '^name = "(torch|triton|nvidia-[a-z0-9-]*)"' "$work/pylock.toml" | grep -v nvidia-ml-py | tr '\n' ' '): add what pulls it in to LIVE_DROP"
  fi
  "$py" "$helper" relock "$work/pylock.toml" "$work/pylock-mirror.toml" "$work/mirror"
  rm -rf "$ctx/pins"
  "$py" "$helper" pin "$stack" "$work/pylock.toml" "$ctx/pins" >/dev/null
  if [ "$frontend_in" = pak4 ] && [ -f "$ctx/pins/pak4.txt" ] && [ -f "$ctx/pins/pak9.txt" ]; then
    cat "$ctx/pins/pak9.txt" >>"$ctx/pins/pak4.txt"
  fi

  note "$scenario: podman build + push"
  if [ "$save_disk" = 1 ] && [ "$scenario" = torch ] && [ "$(paks_in_stack | head -n 1)" = pak1.txt ]; then
    # The torch bump edits the first pak file: no layer of the last image above the venv step
    # can be reused, so that image goes before the build rather than after it (the build keeps
    # the venv step's image as its cache): one torch closure in podman's storage, not two.
    venv_step=$(pm history --no-trunc --format '{{.ID}}|{{.CreatedBy}}' localhost/bench/dockerfile:latest |
      awk -F'|' '/ -m venv / { print $1; exit }')
    [ -n "$venv_step" ] && [ "$venv_step" != "<missing>" ] || die "no image of the Dockerfile's venv step in podman's storage"
    pm tag "$venv_step" localhost/bench/venv-step:latest
    pm rmi localhost/bench/dockerfile:latest >/dev/null
    pm image prune -f >/dev/null
  fi
  stored_before=$("$py" "$helper" blobs "$work/registry-dockerfile/data")
  t0=$(now)
  pm build --quiet --network none -v "$work/mirror:/wheels:ro" -v "$work/pip:/pip:ro" \
    -t localhost/bench/dockerfile:latest "$ctx" >"$work/podman-build-$scenario.log" 2>&1 ||
    die "podman build failed ($scenario): $(tail -n 20 "$work/podman-build-$scenario.log")"
  t1=$(now)
  pm push --quiet --tls-verify=false localhost/bench/dockerfile:latest \
    "docker://127.0.0.1:${registry_port[dockerfile]}/bench/dockerfile:latest"
  t2=$(now)
  measure dockerfile "$scenario" "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")"
  if [ "$save_disk" = 1 ] && [ "$scenario" = "${scenarios[-1]}" ] && [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$work/registry-dockerfile/data" # measured; nothing is pushed there any more
  fi
  disk_check "$scenario dockerfile"
  # The previous scenario's image is untagged now; its layers are no later build's cache.
  pm image prune -f >/dev/null

  note "$scenario: comfypak build + push"
  # --allow-overwrite: the deps layer's four opencv packages write the same cv2/ files; pip
  # lets the later one overwrite them, comfypak refuses unless asked (README.md).
  stored_before=$("$py" "$helper" blobs "$work/registry-comfypak/data")
  t0=$(now)
  COMFYPAK_CACHE_DIR="$work/comfypak-cache" "$comfypak" build --frozen --stack "$stack" \
    --lock "$work/pylock-mirror.toml" --out "$work/comfypak-out" --base "$work/base" \
    --index "pypi=file://$work/mirror/simple/" --index "pytorch-cu130=file://$work/mirror/simple/" \
    --index "perf-wheels=file://$work/mirror/simple/" "${split_args[@]}" --allow-overwrite >"$work/comfypak-build-$scenario.log" 2>&1 ||
    die "comfypak build failed ($scenario): $(tail -n 20 "$work/comfypak-build-$scenario.log")"
  t1=$(now)
  "$comfypak" -q push --insecure "$work/comfypak-out/image" \
    "127.0.0.1:${registry_port[comfypak]}/bench/comfypak:latest"
  t2=$(now)
  measure comfypak "$scenario" "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")"
  if [ "$save_disk" = 1 ]; then
    linked=$("$py" "$helper" dedup "$work")
    note "$scenario: $(awk -v b="$linked" 'BEGIN { printf "%.1f GB", b / 1e9 }') of comfypak's cache and registry hard-linked to the same bytes (disk only)"
  fi
  disk_check "$scenario comfypak"
done

# --- the installed distributions of both images -----------------------------------------------
# Everything measured is in results.tsv: the wheelhouse, comfypak's cache and output and the
# Dockerfile's registry go before the comfypak image is pulled into podman's storage (a live
# image with the torch closure is several GB).
if [ "${KEEP:-0}" != 1 ]; then
  rm -rf "$work/mirror" "$work/comfypak-cache" "$work/comfypak-out" "$work/registry-dockerfile/data"
fi
list_dists='import importlib.metadata as m
print("\n".join(sorted({d.metadata["Name"] + "==" + d.version for d in m.distributions()})))'
pm pull -q --tls-verify=false "docker://127.0.0.1:${registry_port[comfypak]}/bench/comfypak:latest" >/dev/null
for tool in dockerfile comfypak; do
  image=localhost/bench/dockerfile:latest
  [ "$tool" = comfypak ] && image="127.0.0.1:${registry_port[comfypak]}/bench/comfypak:latest"
  pm run --rm --network none --entrypoint /opt/comfyui/venv/bin/python "$image" -c "$list_dists" \
    >"$work/dists-$tool.txt" || die "cannot list the distributions of the $tool image"
done

echo
echo "comfypak vs Dockerfile ($([ "$live" = 1 ] && echo "live: public index, torch family from it, no flash-attn/sageattention" || echo "fixture indexes, wheels at real size / $scale")); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "comfypak build ${split_args[*]:-(default split threshold)}"
echo "Dockerfile: one RUN pip install per pak file$([ "$frontend_in" = pak4 ] && echo ", the front-end packages (pak9) in the pak4 RUN as ComfyUI's requirements.txt has them")"
echo "scenarios: volatile = comfyui-frontend-package $volatile_from -> $volatile_to, deps = $deps_package $deps_from -> $deps_to, torch = ${torch_from[*]} -> ${torch_to[*]}"
echo
"$py" "$helper" table "$results"
table_printed=1
echo
"$py" "$helper" dists "$work/dists-dockerfile.txt" "$work/dists-comfypak.txt" dockerfile comfypak
echo
echo "comfypak's own stage times per scenario (build output: time line, layers installed, bytecode):"
for scenario in "${scenarios[@]}"; do
  log="$work/comfypak-build-$scenario.log"
  printf '  %-10s %s\n' "$scenario" "$(grep -E '^time: ' "$log" | head -n 1)"
  grep -E '(installed .* in [0-9.]+s|\.pyc in [0-9.]+s|reused from the layer cache)' "$log" | sed 's/^/      /' | head -n 12 || true
done
awk -F '\t' '$2 > used { used = $2; at = $1 } least == "" || $3 < least { least = $3; lat = $1 }
  END { printf "disk: at most %.1f GB in BENCH_DIR (after %s), least free %.1f GB (after %s)\n", used / 1e9, at, least / 1e9, lat }' "$work/disk.tsv"
if [ -n "${LOG_DIR:-}" ]; then
  mkdir -p "$LOG_DIR"
  cp "$work"/comfypak-build-*.log "$work"/podman-build-*.log "$results" "$work/disk.tsv" "$LOG_DIR"/ 2>/dev/null || true
  echo "logs: $LOG_DIR"
fi
if [ "${KEEP:-0}" = 1 ]; then
  echo "kept: $work"
fi
