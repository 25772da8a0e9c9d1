#!/usr/bin/env bash
# bench/torch-bump.sh: the bytes a push sends for a torch patch bump that keeps the nvidia-*
# pins, with one image layer per stack layer (`--split-threshold off`) against a layer per
# large distribution (`--split-threshold $THRESHOLD`, default 32MiB), in one run, against a
# local registry (Debian's docker-registry on 127.0.0.1).
#
#   COMFYPAK_LIVE=1 bench/torch-bump.sh          # TORCH_A/B, VISION_A/B, SET: bench/real-stack.sh
#   WORK=/big/dir COMFYPAK_LIVE=1 bench/torch-bump.sh   # keep the downloads and packs for the next run
#
# Two real locks (bench/real-stack.sh: torch 2.14.0 -> 2.14.1 with torchvision, the
# impact-was custom-node set as deps, x86_64), their layers installed; each image packed
# both ways (gzip); then, per way, the old image is pushed to an empty repository and the new
# one after it, and `comfypak push --json` says how many bytes went over the wire. The goal:
# after the bump, only the torch family's layers (and the small rest of the stable layer,
# where torchvision lives below the threshold) are sent.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
threshold="${THRESHOLD:-32MiB}"

if [ -n "${COMFYPAK_BIN:-}" ]; then
  comfypak=$(realpath "$COMFYPAK_BIN")
else
  echo "building comfypak (release)..." >&2
  cargo build --release --quiet --bin comfypak
  comfypak="${CARGO_TARGET_DIR:-$repo/target}/release/comfypak"
fi
if [ -n "${WORK:-}" ]; then
  work=$(mkdir -p "$WORK" && cd "$WORK" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/comfypak-bench-bump.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
# shellcheck source=bench/real-stack.sh
source "$repo/bench/real-stack.sh"

prepare_real A "$TORCH_A" "$VISION_A"
prepare_real B "$TORCH_B" "$VISION_B"
echo "== what the bump changes (comfypak diff, split at $threshold)"
"$comfypak" diff "$work/A/pylock.toml" "$work/B/pylock.toml" --color never \
  --split-threshold "$threshold" || true

sent() { python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_sent"])'; }
uploaded() { python3 -c 'import json,sys; print(sum(1 for b in json.load(sys.stdin)["blobs"] if b["outcome"].startswith("uploaded")))'; }
layers() { python3 -c 'import json,sys; i=json.load(open(sys.argv[1]+"/index.json")); m=i["manifests"][0]["digest"].split(":")[1]; print(len(json.load(open(sys.argv[1]+"/blobs/sha256/"+m))["layers"]))' "$1"; }

# One way at a time, each with a registry of its own that is removed afterwards; each image
# is deleted as soon as it is pushed (unless KEEP_IMAGES=1): the two ways' images and
# registries together need about 25 GB.
registry_pid=""
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2> /dev/null || true; fi
  if [ -z "${WORK:-}" ]; then rm -rf "$work"; else rm -rf "$work/registry"; fi
}
trap cleanup EXIT
declare -A first second count
drop_image() { # OUT: the layout, once pushed (unless KEEP_IMAGES=1)
  if [ "${KEEP_IMAGES:-}" != 1 ]; then rm -rf "${work:?}/$1" "$work/$1.stamp"; fi
}
for mode in off "$threshold"; do
  rm -rf "$work/registry"
  start_registry "$work/registry"
  pack_real A "image-A-$mode" "$mode" gzip
  out=$("$comfypak" push --insecure --json "$work/image-A-$mode" "$registry/bump:a")
  first[$mode]=$(echo "$out" | sent)
  drop_image "image-A-$mode"
  pack_real B "image-B-$mode" "$mode" gzip
  out=$("$comfypak" push --insecure --json "$work/image-B-$mode" "$registry/bump:b")
  second[$mode]=$(echo "$out" | sent)
  count[$mode]="$(echo "$out" | uploaded) (layers and config; the image has $(layers "$work/image-B-$mode") layers)"
  drop_image "image-B-$mode"
  kill "$registry_pid"
  wait "$registry_pid" 2> /dev/null || true
  registry_pid=""
  rm -rf "$work/registry"
done

echo
echo "== push bytes (local docker-registry on 127.0.0.1; the 2-core machine was shared with other work)"
printf '%-22s %16s %18s  %s\n' "layers" "first push" "push after bump" "blobs uploaded after bump"
for mode in off "$threshold"; do
  label="one per stack layer"
  [ "$mode" != off ] && label="split at $mode"
  printf '%-22s %16s %18s  %s\n' "$label" "${first[$mode]}" "${second[$mode]}" "${count[$mode]}"
done
python3 -c "import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); print(f'after the bump, split / not split: {b / a:.3f} ({b / 1e6:.1f} MB vs {a / 1e6:.1f} MB)')" \
  "${second[off]}" "${second[$threshold]}"
