#!/usr/bin/env bash
# Container cold start with and without bytecode: `podman run --rm --network none` of a fresh
# container that imports every top-level module of the `deps` layer, for an image built with
# bytecode (comfypak's default) and one built with --no-compile, alternating, on x86_64 and, under
# qemu-user, on linux/arm64. Prints the median of each and the ratio with/without (goal <= 0.5).
#
#   COMFYPAK_LIVE=1 bench/coldstart.sh X86_ROOT [ARM64_ROOT]
#
# X86_ROOT / ARM64_ROOT: Debian roots with python3.14 (scripts/python-root.sh [--arch arm64]).
# The deps layer is not the default stack's (that needs the torch closure, several GB per
# architecture): it is ComfyUI's torch-free requirements (pak/pak4.txt without torch, its family
# and the packages that import it), from the public index; the `base` layer holds numpy and
# pillow. Each image is the base root (a directory layer packed by comfypak) plus comfypak's
# layers, as a docker archive loaded into podman. Needs root, podman with the setup of
# .ci/setup.d/60-podman.sh, qemu-aarch64 registered (45-qemu.sh) for arm64.
# Each round also times a fresh container of the with-bytecode image running `python -c pass`
# (the container start and interpreter start that bytecode cannot shorten), printed beside the
# ratio with that start taken off both sides. Every run's time is printed, in run order.
# Settings: RUNS (default 5 per image), ARM_RUNS (default RUNS: the runs under qemu, where one
# import of the deps layer takes minutes on a loaded machine), COMFYPAK_BIN (a comfypak binary
# instead of the release build), KEEP=1 (keep the work folder and the images).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
[ "${COMFYPAK_LIVE:-}" = 1 ] || { echo "coldstart.sh reads the public index: set COMFYPAK_LIVE=1" >&2; exit 2; }
X86_ROOT=${1:?usage: COMFYPAK_LIVE=1 bench/coldstart.sh X86_ROOT [ARM64_ROOT]}
ARM_ROOT=${2:-}
RUNS=${RUNS:-5}
command -v podman >/dev/null || { echo "coldstart.sh needs podman (.ci/setup.d/60-podman.sh)" >&2; exit 2; }
if [ -n "${COMFYPAK_BIN:-}" ]; then
  COMFYPAK=$COMFYPAK_BIN
else
  cargo build --release --locked --bin comfypak 2>&1 | tail -n 1
  COMFYPAK=${CARGO_TARGET_DIR:-$REPO/target}/release/comfypak
fi
WORK=$(mktemp -d)
TAG=coldstart-$$
cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then
    podman images --format '{{.Repository}}:{{.Tag}}' | grep ":$TAG\$" | xargs -r podman rmi --force >/dev/null 2>&1 || true
    rm -rf "$WORK"
  else
    echo "kept: $WORK and the images tagged $TAG"
  fi
}
trap cleanup EXIT
export COMFYPAK_CACHE_DIR=${COMFYPAK_CACHE_DIR:-$WORK/cache} SOURCE_DATE_EPOCH=1700000000

ARCHS=(x86_64)
declare -A ROOT=([x86_64]=$X86_ROOT)
if [ -n "$ARM_ROOT" ]; then
  ARCHS+=(aarch64)
  ROOT[aarch64]=$ARM_ROOT
fi
platforms=""
for arch in "${ARCHS[@]}"; do platforms="$platforms\"manylinux_2_39_$arch\", "; done

mkdir -p "$WORK/pak"
printf 'numpy\npillow\n' >"$WORK/pak/base.txt"
# pak4.txt without the torch family and what imports torch (kornia, spandrel, comfy-kitchen,
# comfy-aimdo, torchsde), nor the OpenGL/window bindings (PyOpenGL, glfw: need a display), nor
# av (its wheel holds a library compressed 477:1, which comfypak's zip-bomb limit of 200 refuses).
grep -v -i -E '^(torch|torchsde|torchvision|torchaudio|kornia|spandrel|comfy-kitchen|comfy-aimdo|pyopengl|glfw|av)([<>=~! ;]|$)' \
  "$REPO/pak/pak4.txt" >"$WORK/pak/deps.txt"
cat >"$WORK/pak/stack.toml" <<EOF
[stack]
name = "coldstart-bench"
index-dir = "$REPO/indexes"

[target]
python = "3.14"
platforms = [${platforms%, }]
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

bases=()
for arch in "${ARCHS[@]}"; do bases+=(--base "$arch=${ROOT[$arch]}"); done
echo "== builds (${ARCHS[*]}): with bytecode, and --no-compile"
"$COMFYPAK" build --stack "$WORK/pak" --lock "$WORK/pylock.toml" --out "$WORK/with" "${bases[@]}" \
  >"$WORK/with.log" 2>&1 || { tail -n 30 "$WORK/with.log" >&2; exit 1; }
grep '^==> layer' "$WORK/with.log" | sed 's/^==> /  /' || true
"$COMFYPAK" build --stack "$WORK/pak" --lock "$WORK/pylock.toml" --out "$WORK/without" --frozen \
  --no-compile "${bases[@]}" >"$WORK/without.log" 2>&1 || { tail -n 30 "$WORK/without.log" >&2; exit 1; }
grep -c '^\[\[packages\]\]' "$WORK/pylock.toml" | sed 's/^/  packages in the lock: /'

# The base image of each architecture: its root as a directory layer, packed by comfypak.
base_image() { # ARCH
  local arch=$1 dir=$WORK/base-$1
  mkdir -p "$dir/stack" "$dir/layers/empty"
  : >"$dir/stack/empty.txt"
  cat >"$dir/stack/stack.toml" <<EOF
[stack]
name = "base"
index-dir = "$REPO/indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_$arch"]
venv = "/opt/venv"

[indexes]
default = ["pypi"]

[[layer]]
name = "empty"
paks = ["empty.txt"]
EOF
  cat >"$dir/stack/image.toml" <<EOF
[[directory]]
name = "root"
source = "${ROOT[$arch]}"
path = "/"
exclude = [".python-root-complete"]
EOF
  "$COMFYPAK" resolve --stack "$dir/stack" -o "$dir/pylock.toml" >/dev/null
  "$COMFYPAK" pack --stack "$dir/stack" --lock "$dir/pylock.toml" --layers "$arch=$dir/layers" --output "$dir/image" >/dev/null
  echo "$dir/image"
}

# The deps layer's top-level modules that import (asked of `comfypak check` once, x86_64).
"$COMFYPAK" check --stack "$WORK/pak" --out "$WORK/with" --base "x86_64=$X86_ROOT" --platform x86_64 \
  --json >"$WORK/check.json" 2>"$WORK/check.log" || true
MODULES=$(python3 - "$WORK/check.json" "$WORK/with/x86_64/layers/deps" "$WORK/with/layers/deps" <<'PY'
import json, pathlib, sys
report = json.load(open(sys.argv[1]))[0]
deps = next(p for p in map(pathlib.Path, sys.argv[2:]) if p.is_dir())
site = next(deps.glob("opt/venv/lib/python3.*/site-packages"))
in_deps = {d.name.split("-")[0].lower().replace("_", "-") for d in site.glob("*.dist-info")}
mods = set()
for dist in report["distributions"]:
    if dist["name"].lower().replace("_", "-") in in_deps:
        mods.update(dist["modules"])
ok = {i["module"] for i in report["imports"] if i["ok"]}
print(" ".join(sorted(m for m in mods & ok if not m.startswith("_"))))
PY
)
echo "  deps layer: $(echo "$MODULES" | wc -w) top-level modules import: $MODULES" | fold -s -w 100
IMPORTS="import importlib; [importlib.import_module(m) for m in '$MODULES'.split()]"

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }
for arch in "${ARCHS[@]}"; do
  oci=$( [ "$arch" = x86_64 ] && echo amd64 || echo arm64 )
  base=$(base_image "$arch")
  for kind in with without; do
    layers=$WORK/$kind/$arch/layers
    [ -d "$layers" ] || layers=$WORK/$kind/layers
    "$COMFYPAK" pack --stack "$WORK/pak" --out "$WORK/$kind" --lock "$WORK/pylock.toml" --platform "$arch" \
      --layers "$arch=$layers" \
      --base "$base" --format docker-archive --name "localhost/coldstart-$kind-$arch" --tag "$TAG" \
      --output "$WORK/$kind-$arch.tar" >/dev/null
    podman load --quiet -i "$WORK/$kind-$arch.tar" >/dev/null
    rm -f "$WORK/$kind-$arch.tar"
  done
  runs=$RUNS
  [ "$arch" = x86_64 ] || runs=${ARM_RUNS:-$RUNS}
  : >"$WORK/with-$arch.times"
  : >"$WORK/without-$arch.times"
  : >"$WORK/empty-$arch.times"
  for run in $(seq "$runs"); do
    # empty: the with-bytecode image's container and interpreter start, importing nothing.
    for kind in with without empty; do
      image=$kind code=$IMPORTS
      [ "$kind" != empty ] || { image=with code=pass; }
      start=$(date +%s.%N)
      podman run --rm --network none --platform "linux/$oci" "localhost/coldstart-$image-$arch:$TAG" \
        /opt/venv/bin/python -c "$code" >/dev/null 2>"$WORK/run.err" ||
        { echo "podman run ($kind, $arch) failed:" >&2; tail -n 5 "$WORK/run.err" >&2; exit 1; }
      end=$(date +%s.%N)
      echo "$end - $start" | bc >>"$WORK/$kind-$arch.times"
    done
    echo "  $arch run $run: with $(tail -n 1 "$WORK/with-$arch.times" | xargs printf '%.2f')s, without $(tail -n 1 "$WORK/without-$arch.times" | xargs printf '%.2f')s, empty start $(tail -n 1 "$WORK/empty-$arch.times" | xargs printf '%.2f')s (load $(cut -d' ' -f1 /proc/loadavg))"
  done
  with=$(median <"$WORK/with-$arch.times")
  without=$(median <"$WORK/without-$arch.times")
  empty=$(median <"$WORK/empty-$arch.times")
  printf '%-8s cold start (median of %s fresh containers): with bytecode %ss, without %ss; ratio with/without: %.2f (goal <= 0.5)\n' \
    "$arch" "$runs" "$with" "$without" "$(echo "$with / $without" | bc -l)"
  printf '%-8s empty start (python -c pass) %ss; imports alone (start taken off): with %.2fs, without %.2fs, ratio %.2f\n' \
    "$arch" "$empty" "$(echo "$with - $empty" | bc -l)" "$(echo "$without - $empty" | bc -l)" \
    "$(echo "($with - $empty) / ($without - $empty)" | bc -l)"
done
