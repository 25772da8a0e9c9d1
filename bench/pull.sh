#!/usr/bin/env bash
# bench/pull.sh: pull time of the real stable + deps layers from a local registry (Debian's
# docker-registry on 127.0.0.1) into containers-storage (skopeo copy, overlay driver, a store
# of its own), for five packings of the same installed layers, in one run:
#   gzip, one layer per stack layer    (--split-threshold off: the stable layer is one stream)
#   gzip, a layer per large distribution (--split-threshold $THRESHOLD, default 32MiB)
#   zstd, one layer per stack layer    (--compression zstd)
#   zstd, a layer per large distribution (--split-threshold $THRESHOLD --compression zstd)
#   gzip level 0, one layer per stack layer (stored blocks: the pull without decompression
#                                      work, the floor for any compression; as large as the tar)
# and the ratios against the first (goal: zstd <= 0.5).
#
#   COMFYPAK_LIVE=1 bench/pull.sh                  # real layers: bench/real-stack.sh (torch 2.14 CUDA closure + impact-was)
#   WORK=/big/dir COMFYPAK_LIVE=1 bench/pull.sh    # keep downloads and packs (bench/torch-bump.sh shares them)
#   COMFYPAK_LIVE=1 bench/pull.sh --small          # real wheels without torch (bench/pull-small/: about 300 MB
#                                                  # of wheels, 4 GB of disk at the peak)
#   PULL_STORE=/dev/shm/pull-store SETTLE_S=0 COMFYPAK_LIVE=1 bench/pull.sh --small
#                                                  # the pulled stores on tmpfs: no disk under the
#                                                  # writes, so decompression is what differs
#   bench/pull.sh --fixture                        # sanity check: the offline fixture build (tiny layers), no network
#                                                  # (FIXTURES_BIN: a built comfypak-fixtures, else built here)
#
# Each pull goes into a fresh store. With --fixture the previous store is moved aside (deleted
# at the end); real stores (GBs each) are deleted, then `sync` and a pause of SETTLE_S (61)
# seconds before the next timed pull: ext4 without a journal skips inodes freed in the last
# 60 s at every new inode (bench/README.md, "Reading the numbers"). Each packing's layout is
# deleted once pushed (KEEP_IMAGES=1 keeps them); DROP_TREES=1 also deletes the installed
# layers and the cache's unpacked store before the pulls (the next run installs again). The
# five are pulled in turn, RUNS times (default 2), and medians are compared. skopeo decompresses a gzip layer
# with one thread per layer stream, and pulls several layers at once: splitting a rank into
# several streams lets the pull use more cores.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
threshold="${THRESHOLD:-32MiB}"
runs="${RUNS:-2}"
mode=real
[ "${1:-}" = --fixture ] && mode=fixture
if [ "${1:-}" = --small ]; then
  # Real wheels, without the torch closure: fits in about 4 GB of disk.
  export STABLE_PAK="$repo/bench/pull-small/stable.txt" DEPS_PAK="$repo/bench/pull-small/deps.txt"
fi

for tool in skopeo curl python3; do
  if ! command -v "$tool" > /dev/null; then echo "$tool not found" >&2; exit 2; fi
done
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
  work=$(mktemp -d "${TMPDIR:-/tmp}/comfypak-bench-pull.XXXXXX")
fi

if [ "$mode" = fixture ]; then
  export COMFYPAK_LIVE=1  # real-stack.sh's guard; nothing here reaches the network
  source "$repo/bench/real-stack.sh"
  # The offline build of the shipped stack (as scripts/build-offline.sh does it), x86_64.
  if [ ! -f "$work/fixture/pylock.toml" ]; then
    fixtures="${FIXTURES_BIN:-}"
    if [ -z "$fixtures" ]; then
      cargo build --release --quiet -p comfypak-testkit --bin comfypak-fixtures
      fixtures="${CARGO_TARGET_DIR:-$repo/target}/release/comfypak-fixtures"
    fi
    for spec in pypi-snapshot:pypi pytorch-cu130:pytorch-cu130 perf-wheels:perf-wheels; do
      "$fixtures" write "fixtures/indexes/${spec%%:*}.json" "$work/fixture/indexes/${spec##*:}" > /dev/null
    done
    i="$work/fixture/indexes"
    SOURCE_DATE_EPOCH=1700000000 COMFYPAK_CACHE_DIR="$work/fixture/cache" "$comfypak" --quiet build \
      --stack pak --no-layer nodes --lock "$work/fixture/pylock.toml" --out "$work/fixture/build" \
      --index "pypi=file://$i/pypi/simple/" --index "pytorch-cu130=file://$i/pytorch-cu130/simple/" \
      --index "perf-wheels=file://$i/perf-wheels/files/"
  fi
  # Its fixture wheels are 1-3 kB: 1500 B splits out the larger ones (about 25 per platform).
  threshold="${THRESHOLD:-1500}"
  mkdir -p "$work/F"
  ln -sfn "$repo/pak" "$work/F/stack"
  ln -sfn "$work/fixture/pylock.toml" "$work/F/pylock.toml"
  ln -sfn "$work/fixture/build" "$work/F/build"
  name=F
  # The lock was resolved without the nodes layer (as build-offline.sh does).
  platform=(--platform x86_64 --no-layer nodes)
else
  source "$repo/bench/real-stack.sh"
  prepare_real A "$TORCH_A" "$VISION_A"
  name=A
  platform=()
fi

pack_one() { # OUT THRESHOLD COMPRESSION [LEVEL]
  local out=$1 t=$2 c=$3 level=(${4:+--level "$4"})
  local stamp="$name $t $c ${4:-} $(sha256sum "$comfypak" | cut -c1-16)"
  if [ -f "$work/$out/index.json" ] && [ "$(cat "$work/$out.stamp" 2> /dev/null)" = "$stamp" ]; then
    return 0
  fi
  SOURCE_DATE_EPOCH=1700000000 "$comfypak" --quiet pack --stack "$work/$name/stack" \
    --lock "$work/$name/pylock.toml" --out "$work/$name/build" --output "$work/$out" \
    "${platform[@]}" --split-threshold "$t" --compression "$c" "${level[@]}"
  echo "$stamp" > "$work/$out.stamp"
}
size_of() { # LAYOUT -> compressed bytes and layer count of its manifest's layers
  python3 - "$1" << 'PY'
import json, sys
d = sys.argv[1]
i = json.load(open(d + "/index.json"))
m = json.load(open(d + "/blobs/sha256/" + i["manifests"][0]["digest"].split(":")[1]))
print(sum(l["size"] for l in m["layers"]), len(m["layers"]))
PY
}
# gzip-stored (level 0: stored blocks, no inflate work, only a CRC) is the floor: what the pull
# costs with decompression taken out. No compression can pull faster than it.
kinds=(gzip-single gzip-split zstd zstd-split gzip-stored)
declare -A args=(
  [gzip-single]="off gzip"
  [gzip-split]="$threshold gzip"
  [zstd]="off zstd"
  [zstd-split]="$threshold zstd"
  [gzip-stored]="off gzip 0"
)

# Where each pull's containers-storage goes (PULL_STORE: e.g. on tmpfs, to take the disk's
# writes out of the measurement); emptied before each pull, removed at the end. skopeo's
# temporary copies of the blobs (TMPDIR, else /var/tmp) go in it too, at $store/tmp.
store="${PULL_STORE:-$work/pull-store}"
case "$store" in /*) ;; *) echo "PULL_STORE must be an absolute path: $store" >&2; exit 2 ;; esac
rm -rf "$work/pull-registry"
start_registry "$work/pull-registry"
mkdir -p "$work/pull-trash"
# containers-storage leaves its overlay graph root mounted: unmount before moving or deleting.
unmount_stores() {
  findmnt -rn -o TARGET | grep -e "^$work/pull-" -e "^$store/" | sort -r | xargs -r -n1 umount 2> /dev/null || true
}
cleanup() {
  kill "$registry_pid" 2> /dev/null || true
  unmount_stores
  rm -rf "$work/pull-trash" "$store" "$work/pull-registry"
  if [ -z "${WORK:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# Each packing is pushed as soon as it is made; in real mode its layout is deleted after the
# push unless KEEP_IMAGES=1 (the registry holds the only other copy: the four compressed real
# images are about 4 x 3.5 GB, the stored one 6.4 GB, twice over with the layouts).
declare -A sizes
for kind in "${kinds[@]}"; do
  read -r t c level <<< "${args[$kind]}"
  out="image-$name-$kind"
  pack_one "$out" "$t" "$c" "$level"
  sizes[$kind]=$(size_of "$work/$out")
  "$comfypak" --quiet push --insecure "$work/$out" "$registry/pull/$kind:latest"
  if [ "$mode" = real ] && [ "${KEEP_IMAGES:-}" != 1 ]; then rm -rf "${work:?}/$out" "$work/$out.stamp"; fi
done
if [ "$mode" = real ] && [ "${DROP_TREES:-}" = 1 ]; then
  # The registry holds what the pulls read: the installed layers and the unpacked store under
  # them (about 10 GB) are not needed any more on a machine short of disk.
  rm -rf "${work:?}/$name/build" "$real_cache/unpacked"
fi
echo "disk after the pushes: $(df -h --output=avail "$work" | tail -1) free" >&2

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# The previous store: in fixture mode moved aside (deleted at the end); in real mode (GBs a
# store) deleted, then `sync` and a pause past ext4's 60 s window for freed inodes.
drop_store() {
  unmount_stores
  [ -e "$store" ] || return 0
  if [ "$mode" = real ]; then
    rm -rf "$store"
    sync
    sleep "${SETTLE_S:-61}"
  else
    mv "$store" "$(mktemp -d "$work/pull-trash/XXXXXX")/"
  fi
}
pull_once() { # KIND -> seconds (after drop_store)
  mkdir -p "$store/root" "$store/run" "$store/tmp"
  local t0 t1
  t0=$(now)
  TMPDIR="$store/tmp" skopeo --insecure-policy copy --quiet --src-tls-verify=false \
    "docker://$registry/pull/$1:latest" \
    "containers-storage:[overlay@$store/root+$store/run]pull/$1:latest" > /dev/null
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

declare -A times
loads=()
for _ in $(seq "$runs"); do
  for kind in "${kinds[@]}"; do
    drop_store
    loads+=("$(cut -d' ' -f1 /proc/loadavg)")
    times[$kind]="${times[$kind]:-} $(pull_once "$kind")"
  done
done

# What decompression alone costs: each packing's layer blobs, as the registry stores them,
# decompressed one after another by the reference tools (gzip -dc, zstd -dc) to /dev/null,
# after a `sync` (the last pull's files are written out first) and with the blobs read once
# beforehand (in the page cache): the CPU cost, not the disk's. A pull decompresses every
# layer at least once (containers-storage: once more to check the diff_id) and writes the
# files; this column separates the first from the rest.
decompress_s() { # KIND -> seconds
  python3 - "$registry" "$1" "$work/pull-registry/data/docker/registry/v2/blobs/sha256" << 'PY'
import json, subprocess, sys, time, urllib.request
registry, kind, blobs = sys.argv[1:]
accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
def get(reference):
    req = urllib.request.Request(f"http://{registry}/v2/pull/{kind}/manifests/{reference}", headers={"Accept": accept})
    return json.load(urllib.request.urlopen(req, timeout=60))
manifest = get("latest")
if "manifests" in manifest:
    manifest = get(manifest["manifests"][0]["digest"])
paths = [f"{blobs}/{l['digest'].split(':')[1][:2]}/{l['digest'].split(':')[1]}/data" for l in manifest["layers"]]
subprocess.run(["sync"], check=True)
for path in paths:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
started = time.monotonic()
for layer in manifest["layers"]:
    hex_ = layer["digest"].split(":")[1]
    tool = ["zstd", "-dcq"] if layer["mediaType"].endswith("zstd") else ["gzip", "-dc"]
    subprocess.run(tool + [f"{blobs}/{hex_[:2]}/{hex_}/data"], stdout=subprocess.DEVNULL, check=True)
print(f"{time.monotonic() - started:.2f}")
PY
}
declare -A decompress
for kind in "${kinds[@]}"; do
  if command -v gzip > /dev/null && command -v zstd > /dev/null; then
    decompress[$kind]=$(decompress_s "$kind")
  else
    decompress[$kind]=-
  fi
done

echo
echo "== pull into containers-storage (skopeo $(skopeo --version | cut -d' ' -f3), overlay on $(stat -f -c %T "$(dirname "$store")")), $mode layers, median of $runs, $(nproc) cores (the load before each pull is below)"
printf '%-12s %8s %14s %10s %8s %14s\n' kind layers "bytes" "pull s" ratio "decompress s"
base=$(echo "${times[gzip-single]}" | tr ' ' '\n' | grep . | median)
for kind in "${kinds[@]}"; do
  read -r bytes count <<< "${sizes[$kind]}"
  t=$(echo "${times[$kind]}" | tr ' ' '\n' | grep . | median)
  printf '%-12s %8s %14s %10.2f %8.2f %14s\n' "$kind" "$count" "$bytes" "$t" "$(echo "$t / $base" | bc -l)" "${decompress[$kind]}"
done
printf 'runs (s):'
for kind in "${kinds[@]}"; do printf ' %s:%s' "$kind" "${times[$kind]}"; done
echo
echo "load average (1 min) before each pull: ${loads[*]}"
