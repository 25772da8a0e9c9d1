# bench/real-stack.sh: sourced by bench/torch-bump.sh and bench/pull.sh (not run by itself).
#
# A real two-layer stack for x86_64, from the public index only (its torch Linux wheels are
# the CUDA builds, with the nvidia-* closure): `stable` = torch==$TORCH_A and
# torchvision==$VISION_A, `deps` = the custom-node set bench/sets/$SET.txt. prepare_real NAME
# TORCH VISION resolves it (lock $work/NAME/pylock.toml), fetches its wheels into the cache
# ($COMFYPAK_CACHE_DIR when set, so several benchmarks share one download of torch and the
# nvidia-* wheels; else $work/cache) and installs both layers into $work/NAME/build/layers
# (hard links into that cache's unpacked store). Needs
# COMFYPAK_LIVE=1, $repo (the checkout), $work (kept between runs when WORK is set, so the
# downloads are paid once) and $comfypak (the release binary).
#
# STABLE_PAK / DEPS_PAK (requirement files) replace the stable layer's torch pins and the
# deps layer's set (bench/pull.sh --small uses bench/pull-small/).
#
# The default pair, torch 2.14.0 -> 2.14.1 with torchvision 0.29.0 -> 0.29.1, is a patch
# bump whose nvidia-* pins are the same (the scripts check it with `comfypak diff`).

TORCH_A="${TORCH_A:-2.14.0}"
VISION_A="${VISION_A:-0.29.0}"
TORCH_B="${TORCH_B:-2.14.1}"
VISION_B="${VISION_B:-0.29.1}"
SET="${SET:-impact-was}"

if [ "${COMFYPAK_LIVE:-}" != 1 ]; then
  echo "this benchmark downloads several GB from the public index: set COMFYPAK_LIVE=1" >&2
  exit 2
fi

real_cache="${COMFYPAK_CACHE_DIR:-$work/cache}"

real_index_url() { sed -n 's/^url *= *"\(.*\)"/\1/p' "$repo/indexes/$1.toml"; }

# real_stack NAME TORCH VISION: writes $work/NAME/stack.
real_stack() {
  local dir="$work/$1/stack"
  mkdir -p "$dir"
  if [ -n "${STABLE_PAK:-}" ]; then
    cp "$STABLE_PAK" "$dir/pak1.txt"
  else
    printf 'torch==%s\ntorchvision==%s\n' "$2" "$3" > "$dir/pak1.txt"
  fi
  cp "${DEPS_PAK:-$repo/bench/sets/$SET.txt}" "$dir/pak2.txt"
  # The shipped stack's header (target, indexes, pins) for x86_64 only, without the
  # perf-wheels source, then the two layers.
  {
    sed -n '/^\[\[layer\]\]/q;p' "$repo/pak/stack.toml" \
      | sed -e "s|^index-dir = .*|index-dir = \"$repo/indexes\"|" \
        -e 's|^platforms = .*|platforms = ["manylinux_2_39_x86_64"]|' \
        -e '/^perf-wheels = /d'
    printf '[[layer]]\nname = "stable"\npaks = ["pak1.txt"]\n\n'
    printf '[[layer]]\nname = "deps"\npaks = ["pak2.txt"]\n'
  } > "$dir/stack.toml"
}

# prepare_real NAME TORCH VISION: lock, wheels and installed layers (skipped when present).
prepare_real() {
  local name=$1 pypi
  pypi=$(real_index_url pypi)
  real_stack "$@"
  if [ ! -f "$work/$name/pylock.toml" ]; then
    "$comfypak" --quiet resolve --stack "$work/$name/stack" --output "$work/$name/pylock.toml" \
      --index "pytorch-cu130=$pypi" --cache-dir "$real_cache"
  fi
  if [ ! -d "$work/$name/build/layers/deps" ]; then
    "$comfypak" --quiet fetch --all --lock "$work/$name/pylock.toml" --cache-dir "$real_cache" \
      --index "pytorch-cu130=$pypi"
    "$comfypak" --quiet install --offline --all --lock "$work/$name/pylock.toml" \
      --cache-dir "$real_cache" --out "$work/$name/build" --allow-overwrite
  fi
}

# start_registry DIR: Debian's docker-registry on a free loopback port; sets $registry
# (HOST:PORT) and $registry_pid.
start_registry() {
  local dir=$1 bin="${COMFYPAK_DOCKER_REGISTRY_BIN:-$(command -v docker-registry || true)}"
  if [ -z "$bin" ]; then
    echo "docker-registry not found: set COMFYPAK_DOCKER_REGISTRY_BIN (apt-get install docker-registry)" >&2
    exit 2
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$dir/data" "$port" > "$dir/config.yml"
  "$bin" serve "$dir/config.yml" > "$dir/log" 2>&1 &
  registry_pid=$!
  registry="127.0.0.1:$port"
  for _ in $(seq 100); do
    if curl -fsS "http://$registry/v2/" > /dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "the registry did not start; its log:" >&2
  cat "$dir/log" >&2
  exit 1
}

# pack_real NAME OUT THRESHOLD COMPRESSION: packs $work/NAME's layers into $work/OUT (an OCI
# layout), with --split-threshold THRESHOLD (`off` or a size) and --compression COMPRESSION.
# An existing output packed with the same arguments is kept (packing is not what these
# benchmarks time).
pack_real() {
  local name=$1 out=$2 threshold=$3 compression=$4
  local stamp="$name $threshold $compression $(sha256sum "$comfypak" | cut -c1-16)"
  if [ -f "$work/$out/index.json" ] && [ "$(cat "$work/$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  SOURCE_DATE_EPOCH=1700000000 "$comfypak" --quiet pack --stack "$work/$name/stack" \
    --lock "$work/$name/pylock.toml" --out "$work/$name/build" --output "$work/$out" \
    --split-threshold "$threshold" --compression "$compression"
  echo "$stamp" > "$work/$out.stamp"
}
