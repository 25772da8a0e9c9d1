#!/usr/bin/env bash
# Packing one layer: `comfypak pack` (parallel gzip -6, src/pack/gzip.rs) vs
# `tar --sort=name ... | gzip -6` of the same tree, in one run, ratios printed (target: time
# <= 0.6x on 2 cores, size within 1%); then the same pack with RAYON_NUM_THREADS=1, whose
# layer blob must equal the parallel one byte for byte; and zstd (level 3) for comparison.
# Prints the machine's load average: the ratio is only meaningful when the cores are free.
# Not a test.
#
#   bench/pack.sh [LAYER_DIR]
#
# LAYER_DIR: an installed layer (e.g. build/layers/deps from `comfypak install --layer deps`).
# Without it, a deps-like tree is generated: many small .py files, some MiB-sized binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

layer="${1:-}"
if [ -z "$layer" ]; then
  layer="$work/layers/deps"
  site="$layer/opt/comfyui/venv/lib/python3.14/site-packages"
  python3 - "$site" <<'PY'
import os, random, sys
site = sys.argv[1]
rng = random.Random(7)
words = ["def", "return", "import", "self", "value", "class", "for", "in", "if", "else", "None", "numpy", "array", "shape", "dtype"]
for p in range(60):
    pkg = os.path.join(site, f"pkg{p:02d}")
    for m in range(120):
        d = os.path.join(pkg, f"sub{m % 6}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"mod{m:03d}.py"), "w") as f:
            for _ in range(rng.randrange(20, 200)):
                f.write(" ".join(rng.choice(words) for _ in range(8)) + "\n")
    # native-looking blobs: half compressible, half random
    with open(os.path.join(pkg, f"_native{p}.so"), "wb") as f:
        f.write(bytes(rng.getrandbits(8) for _ in range(256 * 1024)))
        f.write(bytes((i * 31) % 251 for i in range(1024 * 1024)))
    os.chmod(os.path.join(pkg, f"_native{p}.so"), 0o755)
PY
fi
size=$(du -sb "$layer" | cut -f1)
files=$(find "$layer" -type f | wc -l)

cargo build --release --quiet --bin comfypak
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/comfypak"

# A one-layer stack pointing at the tree.
stack="$work/pak"
mkdir -p "$stack" "$work/build/layers"
echo "" > "$stack/pak2.txt"
cat > "$stack/stack.toml" <<TOML
[stack]
name = "bench"
index-dir = "$PWD/indexes"
[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/comfyui/venv"
[indexes]
default = ["pypi"]
[[layer]]
name = "deps"
paks = ["pak2.txt"]
TOML
ln -sfn "$(cd "$layer" && pwd)" "$work/build/layers/deps"
# pack reads the layer order and venv from a lock: resolve the empty pak file, offline.
"$bin" --quiet resolve --stack "$stack" --output "$work/pylock.toml" --offline --cache-dir "$work/cache"
lock=(--lock "$work/pylock.toml")

now() { date +%s.%N; }
# Warm the page cache so both sides read from memory.
tar -cf - -C "$layer" . > /dev/null

# The layer blob of an image layout: its largest blob (configs and manifests are tiny).
layer_blob() { find "$1/blobs/sha256" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

t0=$(now)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - -C "$layer" . \
  | gzip -6 -n > "$work/tar.tar.gz"
t1=$(now)
SOURCE_DATE_EPOCH=0 "$bin" pack --quiet --stack "$stack" "${lock[@]}" --out "$work/build" --output "$work/image"
t2=$(now)
SOURCE_DATE_EPOCH=0 RAYON_NUM_THREADS=1 "$bin" pack --quiet --stack "$stack" "${lock[@]}" --out "$work/build" \
  --output "$work/image-1"
t3=$(now)
SOURCE_DATE_EPOCH=0 "$bin" pack --quiet --stack "$stack" "${lock[@]}" --out "$work/build" --output "$work/image-zstd" \
  --compression zstd
t4=$(now)

tar_s=$(echo "$t1 - $t0" | bc -l)
pack_s=$(echo "$t2 - $t1" | bc -l)
one_s=$(echo "$t3 - $t2" | bc -l)
zstd_s=$(echo "$t4 - $t3" | bc -l)
tar_bytes=$(stat -c %s "$work/tar.tar.gz")
blob=$(layer_blob "$work/image")
blob1=$(layer_blob "$work/image-1")
pack_bytes=$(stat -c %s "$blob")
zstd_bytes=$(stat -c %s "$(layer_blob "$work/image-zstd")")
if cmp -s "$blob" "$blob1"; then same="identical"; else same="DIFFERENT"; fi
printf 'machine: %s cores, load average %s before, %s after\n' "$(nproc)" "$load_before" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'tree: %s files, %s bytes\n' "$files" "$size"
printf 'tar --sort=name | gzip -6      : %7.2f s  %s bytes\n' "$tar_s" "$tar_bytes"
printf 'comfypak pack (gzip 6)         : %7.2f s  %s bytes\n' "$pack_s" "$pack_bytes"
printf 'comfypak pack, 1 thread        : %7.2f s  %s (%s)\n' "$one_s" "$same" "$(basename "$blob1")"
printf 'comfypak pack (zstd 3)         : %7.2f s  %s bytes\n' "$zstd_s" "$zstd_bytes"
printf 'ratio comfypak/tar+gzip, time  : %.2fx (target <= 0.6x on 2 free cores)\n' \
  "$(echo "$pack_s / $tar_s" | bc -l)"
printf 'ratio comfypak/tar+gzip, size  : %.4f (target within 1%%)\n' \
  "$(echo "$pack_bytes / $tar_bytes" | bc -l)"
printf 'ratio 1 thread / all threads   : %.2fx\n' "$(echo "$one_s / $pack_s" | bc -l)"
[ "$same" = identical ] || { echo "error: the 1-thread layer differs from the parallel one" >&2; exit 1; }
