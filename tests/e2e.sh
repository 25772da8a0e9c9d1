#!/usr/bin/env bash
# The end-to-end runtime check, on both architectures: a real CPython 3.14 (the image's own, for
# x86_64 natively and for aarch64 under qemu-user) imports what `comfypak build` installed.
#
#   1. a minimal Debian testing root with python3.14 per architecture (scripts/python-root.sh,
#      cached: amd64 by debootstrap, arm64 unpacked on the host);
#   2. a two-platform OCI base image of them: comfypak packs each root as an image.toml
#      [[directory]] layer (one image per architecture, as a directory layer holds one root),
#      and the two images go into one layout as an image index, as `skopeo copy --all` of a
#      multi-arch base gives;
#   3. `comfypak build` of the e2e stack (tests/e2e/stack.toml: the default stack's stable, deps
#      and volatile pak files, manylinux x86_64 and aarch64) from the public index on top of that
#      base, twice, each without the layer cache (both install, compile and pack every layer),
#      and the two images' digests compared;
#   4. `comfypak check` of every platform: in comfypak's sandbox (no network; aarch64 under
#      qemu-user through binfmt_misc) the image's python imports every top-level module of every
#      installed distribution and runs every console script with --help / --version (under
#      qemu: imports only, unless COMFYPAK_E2E_QEMU_SCRIPTS=1); the allowed failures are
#      tests/e2e/stack.toml's [check.allow];
#   5. each platform's image in a real container runtime: `comfypak pack --platform ARCH
#      --format docker-archive`, `podman load`, and `podman run --rm --network none --platform
#      linux/ARCH IMAGE` running the same check (comfypak's check.py) with the python of the
#      shipped pak/image.toml's entrypoint, as the image's user (1000, not root), the check
#      folder and a new named volume at /data (the image's HOME) the only places it writes. (Under
#      qemu the podman run imports only, as the sandbox check does there by default: each
#      console script is a slow interpreter start.)
# The venv skeleton is proven by both checks: check.py refuses a python that is not a venv's.
#
# Needs root (debootstrap, chroot, mounts), debootstrap, skopeo, unshare, podman (set up by
# .ci/setup.d/60-podman.sh), qemu-aarch64 registered with binfmt_misc (45-qemu.sh) for aarch64,
# the network (the Debian mirror apt uses here, and the public Python index) and disk: about
# 30 GB per platform built at once (wheels ~4.5 GB, their unpacked trees ~13 GB, the two
# builds' images ~5 GB each, podman's copy of the image). Install the tools with
# `COMFYPAK_E2E=1 . .ci/setup.d/90-e2e.sh` and `. .ci/setup.d/60-podman.sh`.
# Settings (environment):
#   COMFYPAK_E2E_CACHE      cache folder (default ~/.cache/comfypak-e2e): the Debian roots, the
#                           comfypak cache (wheels, unpacked trees, bytecode), the last run's work
#   COMFYPAK_E2E_PLATFORMS  the architectures to build (default "x86_64 aarch64": the stack's
#                           two platforms at once); one of them builds a one-platform copy of
#                           the stack, for a machine without the disk for both (run x86_64
#                           first: aarch64 then takes most of its bytecode from the bytecode
#                           cache instead of compiling it under qemu)
#   COMFYPAK_E2E_WHEELS     a folder for the downloaded wheels (the comfypak cache's wheels/ is
#                           linked to it), e.g. the wheels/ of a COMFYPAK_CACHE_DIR shared with
#                           other runs on this machine
#   COMFYPAK_E2E_WARM_BYTECODE  1 (default): an aarch64-only run on an x86_64 host first
#                           compiles the same stack's bytecode with the host's python (see
#                           the step "bytecode cache from x86_64"); 0: compile it under qemu
#   COMFYPAK_E2E_TRIM=1     drop the comfypak cache's unpacked wheel trees (and each build's
#                           layer folders) once both checks no longer need them, before podman
#                           loads the images: about 13 GB less at the peak per platform
#   COMFYPAK_E2E_PODMAN_BESIDE=1  run the podman step beside the sandbox check instead of
#                           after it (for a run under qemu, where each takes hours of a core);
#                           needs the disk for both at once: the trim waits for both
#   COMFYPAK_E2E_QEMU_SCRIPTS=1  the sandbox check under qemu runs the console scripts too
#                           (default: imports only there; hours for the default stack's 89)
#   COMFYPAK_E2E_PROGRESS_S  how often (seconds, a multiple of 5; default 300) the log says
#                           where the sandbox check is (its phase, N of M, what runs, what
#                           failed so far), from the check's own progress file
#   COMFYPAK_E2E_SUITE      Debian suite with python3.14 (default: testing)
#   COMFYPAK_E2E_MIRROR     Debian mirror URL (default: the first Debian one in apt's sources)
#   COMFYPAK_BIN            a comfypak binary to use instead of `cargo build --release`
# Exit status: 0 when every step passed and nothing failed to import; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
E2E=$REPO/tests/e2e

START=$(date +%s)
STEP_NAME=""
STEP_START=$START
TIMES=()
end_step() {
  if [ -n "$STEP_NAME" ]; then
    local now
    now=$(date +%s)
    TIMES+=("$(printf '%-36s %5ss' "$STEP_NAME" $((now - STEP_START)))")
    printf -- '--- %s: %ss\n' "$STEP_NAME" $((now - STEP_START))
  fi
}
step() {
  end_step
  STEP_NAME=$1
  STEP_START=$(date +%s)
  printf '\n=== [%s +%ss] %s\n' "$(date -u +%H:%M:%S)" $((STEP_START - START)) "$1"
}
fail() {
  printf 'e2e: FAILED: %s\n' "$*" >&2
  exit 1
}
oci_arch() { case "$1" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) fail "unknown architecture $1" ;; esac; }

# ---------------------------------------------------------------------------------------------
step "preflight"
[ "$(id -u)" = 0 ] || fail "run as root: debootstrap, chroot and the mounts of the check need it"
missing=""
for tool in debootstrap skopeo unshare chroot python3 podman; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] || fail "missing tools:$missing; install them with: COMFYPAK_E2E=1 . .ci/setup.d/90-e2e.sh"

read -r -a ARCHS <<<"${COMFYPAK_E2E_PLATFORMS:-x86_64 aarch64}"
[ ${#ARCHS[@]} -gt 0 ] || fail "COMFYPAK_E2E_PLATFORMS is empty"
for arch in "${ARCHS[@]}"; do
  case "$arch" in
    x86_64) ;;
    aarch64)
      handler=/proc/sys/fs/binfmt_misc/qemu-aarch64
      if [ "$(uname -m)" != aarch64 ] && ! grep -qs '^enabled' "$handler"; then
        fail "aarch64 needs qemu-aarch64 registered with binfmt_misc (flag F): . .ci/setup.d/45-qemu.sh"
      fi
      ;;
    *) fail "COMFYPAK_E2E_PLATFORMS: $arch is not x86_64 or aarch64" ;;
  esac
done

CACHE=${COMFYPAK_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-e2e}
SUITE=${COMFYPAK_E2E_SUITE:-testing}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
WORK=$CACHE/work
COMFYPAK_CACHE=$CACHE/comfypak
mkdir -p "$COMFYPAK_CACHE"
if [ -n "${COMFYPAK_E2E_WHEELS:-}" ]; then
  mkdir -p "$COMFYPAK_E2E_WHEELS"
  WHEELS=$(cd "$COMFYPAK_E2E_WHEELS" && pwd)
  if [ ! -L "$COMFYPAK_CACHE/wheels" ] || [ "$(readlink "$COMFYPAK_CACHE/wheels")" != "$WHEELS" ]; then
    [ ! -d "$COMFYPAK_CACHE/wheels" ] || [ -L "$COMFYPAK_CACHE/wheels" ] ||
      fail "$COMFYPAK_CACHE/wheels is a folder: move its wheels to $WHEELS, then run again"
    rm -f "$COMFYPAK_CACHE/wheels"
    ln -s "$WHEELS" "$COMFYPAK_CACHE/wheels"
  fi
fi

# The public Python index, read from the repository's definition at run time.
PYPI_URL=$(sed -n 's/^url[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$REPO/indexes/pypi.toml" | head -n 1)
[ -n "$PYPI_URL" ] || fail "no url in indexes/pypi.toml"

echo "platforms:    ${ARCHS[*]}"
echo "cache:        $CACHE"
echo "python index: $PYPI_URL (also for pytorch-cu130: its torch 2.11.0 for Linux x86_64 and aarch64 is the cu130 build)"
df -h "$CACHE" | tail -n 1 | awk '{print "disk free:    " $4 " on " $6}'

# ---------------------------------------------------------------------------------------------
step "comfypak binary"
if [ -n "${COMFYPAK_BIN:-}" ]; then
  COMFYPAK=$COMFYPAK_BIN
else
  cargo build --release --locked --bin comfypak 2>&1 | tail -n 3
  COMFYPAK=${CARGO_TARGET_DIR:-$REPO/target}/release/comfypak
fi
[ -x "$COMFYPAK" ] || fail "$COMFYPAK is not an executable"
"$COMFYPAK" --version

# ---------------------------------------------------------------------------------------------
# What the roots hold besides minbase (and why):
#   python3.14       the interpreter under test (with libpython3.14-stdlib, tzdata, media-types)
#   ca-certificates  pygit2 loads the system's CA certificates at import
#   git              GitPython runs the `git` executable at import
#   libatomic1       slangpy's extension links libatomic.so.1 without bundling it
#   libgomp1         GNU OpenMP, which wheels built with -fopenmp may load from the system
#   libx11-6         slangpy's extension links libX11.so.6 (the manylinux policy lets wheels
#                    expect it from the system, like libGL, which nothing imported here needs:
#                    the cv2 that wins is the headless one)
BASE_PACKAGES="ca-certificates git libatomic1 libgomp1 libx11-6"
# python_root OCI_ARCH: the cached root's folder (made by scripts/python-root.sh when missing).
python_root() {
  PYTHON_ROOT_SUITE=$SUITE PYTHON_ROOT_MIRROR=${COMFYPAK_E2E_MIRROR:-} \
    bash "$REPO/scripts/python-root.sh" --arch "$1" --packages "$BASE_PACKAGES" "$CACHE/roots" |
    tail -n 1
}
declare -A ROOT PYTHON_VERSION
for arch in "${ARCHS[@]}"; do
  step "debian root ($arch)"
  echo "$SUITE $(oci_arch "$arch"), minbase + python3.14 $BASE_PACKAGES"
  ROOT[$arch]=$(python_root "$(oci_arch "$arch")") || fail "scripts/python-root.sh --arch $(oci_arch "$arch") (log: $CACHE/roots/debootstrap-root-$(oci_arch "$arch").log)"
  [ -x "${ROOT[$arch]}/usr/bin/python3.14" ] || fail "no /usr/bin/python3.14 in ${ROOT[$arch]}"
  PYTHON_VERSION[$arch]=$(chroot "${ROOT[$arch]}" /usr/bin/python3.14 -c 'import sys; print(sys.version.split()[0])')
  echo "${ROOT[$arch]}: python ${PYTHON_VERSION[$arch]}; $(chroot "${ROOT[$arch]}" /usr/bin/python3.14 -c 'import os, platform; print(os.confstr("CS_GNU_LIBC_VERSION"), platform.machine())'); $(du -sh "${ROOT[$arch]}" | cut -f1)"
done

# ---------------------------------------------------------------------------------------------
# The base image, packed by comfypak: per architecture a stack of one empty layer `venv` (a
# stack needs a layer with a pak file) whose image.toml adds that architecture's root as a
# [[directory]] layer at /; then both images in one layout, as an image index. The venv
# skeleton is not the base's: `comfypak build --base` writes it into the lowest stack layer
# from the base's own python3.14.
step "base image"
rm -rf --one-file-system "$WORK"
mkdir -p "$WORK"
VENV=$(sed -n 's/^venv[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$E2E/stack.toml" | head -n 1)
[ -n "$VENV" ] || fail "no target.venv in tests/e2e/stack.toml"
for arch in "${ARCHS[@]}"; do
  BASE_STACK=$WORK/base-stack-$arch
  mkdir -p "$BASE_STACK" "$WORK/base-layers-$arch/venv"
  : >"$BASE_STACK/venv.txt"
  cat >"$BASE_STACK/stack.toml" <<EOF
[stack]
name = "python314-base"
index-dir = "$REPO/indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_$arch"]
venv = "$VENV"

[indexes]
default = ["pypi"]

[[layer]]
name = "venv"
paks = ["venv.txt"]
EOF
  cat >"$BASE_STACK/image.toml" <<EOF
[image]
labels = { "org.opencontainers.image.description" = "Debian $SUITE minbase + python3.14 $BASE_PACKAGES (comfypak e2e base)" }

[[directory]]
name = "debian-root"
source = "${ROOT[$arch]}"
path = "/"
exclude = [".python-root-complete"]
EOF
  # pack reads the layer order, venv and platforms from a lock: the empty stack's (no index asked).
  "$COMFYPAK" resolve --stack "$BASE_STACK" -o "$BASE_STACK/pylock.toml" >/dev/null
  "$COMFYPAK" pack --stack "$BASE_STACK" --lock "$BASE_STACK/pylock.toml" \
    --layers "$arch=$WORK/base-layers-$arch" --output "$WORK/base-$arch" >/dev/null
done
# One layout, one image index: the blobs linked, the index listing each platform's manifest.
python3 - "$WORK/base" "${ARCHS[@]/#/$WORK/base-}" <<'PY'
import hashlib, json, os, pathlib, sys
out, layouts = pathlib.Path(sys.argv[1]), [pathlib.Path(p) for p in sys.argv[2:]]
blobs = out / "blobs" / "sha256"
blobs.mkdir(parents=True)
read = lambda layout, digest: json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes())
manifests = []
for layout in layouts:
    for blob in (layout / "blobs" / "sha256").iterdir():
        if not (blobs / blob.name).exists():
            os.link(blob, blobs / blob.name)
    for d in json.loads((layout / "index.json").read_bytes())["manifests"]:
        found = read(layout, d["digest"])["manifests"] if d["mediaType"].endswith("index.v1+json") else [d]
        for m in found:
            if "platform" not in m:
                config = read(layout, read(layout, m["digest"])["config"]["digest"])
                m["platform"] = {"architecture": config["architecture"], "os": config["os"]}
            manifests.append({k: m[k] for k in ("mediaType", "digest", "size", "platform")})
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": manifests}, separators=(",", ":")).encode()
digest = hashlib.sha256(index).hexdigest()
(blobs / digest).write_bytes(index)
(out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
(out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
    "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
print("base:", f"sha256:{digest}", ", ".join(f"{m['platform']['architecture']} {m['digest'][:19]}" for m in manifests))
PY
skopeo inspect --raw "oci:$WORK/base:latest" >/dev/null || fail "skopeo cannot read the base image"
rm -rf --one-file-system "${ARCHS[@]/#/$WORK/base-layers-}"

# ---------------------------------------------------------------------------------------------
step "e2e stack"
STACK=$WORK/stack
mkdir -p "$STACK"
# The stack's platforms, or the one COMFYPAK_E2E_PLATFORMS names.
python3 - "$E2E/stack.toml" "$STACK/stack.toml" "${ARCHS[@]}" <<'PY'
import re, sys, tomllib
src, dst, archs = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(src).read()
platforms = tomllib.loads(text)["target"]["platforms"]
chosen = [p for p in platforms if any(p.endswith("_" + a) for a in archs)]
if len(chosen) != len(archs):
    sys.exit(f"tests/e2e/stack.toml's platforms {platforms} do not cover {archs}")
text, n = re.subn(r"(?m)^platforms = \[.*\]$", "platforms = [" + ", ".join(f'"{p}"' for p in chosen) + "]", text)
if n != 1:
    sys.exit("tests/e2e/stack.toml: no one-line `platforms = [...]` to choose from")
open(dst, "w").write(text)
print("platforms:", ", ".join(chosen))
PY
ln -s "$REPO/indexes" "$STACK/indexes"
# The shipped image settings (entrypoint, user 1000, workdir, env) and runtime-config layer.
cp "$REPO/pak/image.toml" "$STACK/image.toml"
cp -r "$REPO/pak/runtime-config" "$STACK/runtime-config"
# Copies of the default stack's pak files the e2e stack names, without tests/e2e/drop.txt's
# lines (compared by normalised name).
python3 - "$REPO/pak" "$STACK" "$E2E/drop.txt" <<'PY'
import re, sys, tomllib, pathlib
pak_dir, stack, drop_file = map(pathlib.Path, sys.argv[1:])
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
drop = {}
for line in drop_file.read_text().splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
        name, _, reason = line.partition(" ")
        drop[norm(name)] = reason.strip()
manifest = tomllib.loads((stack / "stack.toml").read_text())
dropped, matched = [], set()
for layer in manifest["layer"]:
    for pak in layer["paks"]:
        out = []
        for number, line in enumerate((pak_dir / pak).read_text().splitlines(), 1):
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if m and not line.lstrip().startswith(("#", "-")) and norm(m.group(1)) in drop:
                out.append(f"# dropped by tests/e2e/drop.txt: {line}")
                dropped.append(f"pak/{pak}:{number} {line.strip()}")
                matched.add(norm(m.group(1)))
                continue
            out.append(line)
        (stack / pak).write_text("\n".join(out) + "\n")
    print(f"layer {layer['name']}: {', '.join('pak/' + p for p in layer['paks'])}")
for d in dropped:
    print(f"dropped {d}")
missing = set(drop) - matched
if missing:
    sys.exit(f"tests/e2e/drop.txt names {', '.join(sorted(missing))}, which no pak file lists any more")
PY

# The default stack's wheels write some files twice: the four opencv variants all write cv2/
# (pak3 lists all four, and ultralytics, pixeloe, transparent-background and albumentations
# need two of them), and hydra-core and color-matcher both ship tests/__init__.py. So the build
# keeps the later package's file (--allow-overwrite), as pip would.
"$COMFYPAK" build --help | grep -q -- '--allow-overwrite' ||
  fail "this comfypak's build has no --allow-overwrite, which the default stack's wheels need"
OUT=$WORK/build
LOCK=$WORK/pylock.toml
# Where install wrote a platform's layers: OUT/layers for one platform, OUT/ARCH/layers for two.
layers_of() { if [ ${#ARCHS[@]} = 1 ]; then echo "$1/layers"; else echo "$1/$2/layers"; fi; }

# One run of the main job, into $OUT, without the layer cache: each build installs, compiles
# and packs every layer itself, so equal digests mean two builds gave the same bytes. The
# pinned torch family comes from the public index: its Linux torch is the cu130 build.
build() {
  "$COMFYPAK" build --stack "$STACK" --out "$OUT" --lock "$LOCK" --base "$WORK/base" \
    --no-layer-cache --compile-timeout 4h --allow-overwrite \
    --index "pytorch-cu130=$PYPI_URL" --cache-dir "$COMFYPAK_CACHE"
}

# A build's output, with the ~180 `overwritten` warnings under cv2/ counted instead of listed.
show_build_log() {
  grep -v '^warning: overwritten: .*/cv2/' "$1" || true
  echo "(and $(grep -c '^warning: overwritten: .*/cv2/' "$1" || true) warnings about paths under cv2/ that the opencv variants share)"
}

# index digest, then per platform `name digest size` for the manifest, config and each layer.
digests() {
  python3 - "$1" <<'PY'
import json, sys, pathlib
layout = pathlib.Path(sys.argv[1])
blob = lambda d: json.loads((layout / "blobs" / "sha256" / d.split(":", 1)[1]).read_text())
index = json.loads((layout / "index.json").read_text())
top = index["manifests"][0]
print(f"{'index.json':<24}{top['digest']}  (an {'image index' if 'index' in top['mediaType'] else 'image manifest'})")
manifests = [top]
if top["mediaType"].endswith("image.index.v1+json"):
    manifests = blob(top["digest"])["manifests"]
for m in manifests:
    manifest = blob(m["digest"])
    arch = m.get("platform", {}).get("architecture") or blob(manifest["config"]["digest"])["architecture"]
    total = sum(layer["size"] for layer in manifest["layers"])
    print(f"{arch + ' manifest':<24}{m['digest']}  ({len(manifest['layers'])} layers, {total} bytes)")
    print(f"{arch + ' config':<24}{manifest['config']['digest']}")
    for i, layer in enumerate(manifest["layers"]):
        notes = layer.get("annotations", {})
        name = notes.get("io.comfypak.layer") or f"base-{i + 1}"
        if "io.comfypak.distribution" in notes:  # a distribution's own part of a split layer
            name += "/" + notes["io.comfypak.distribution"]
        print(f"{arch + ' ' + name:<56}{layer['digest']}  {layer['size']:>11} bytes")
PY
}

# ---------------------------------------------------------------------------------------------
# An aarch64 run without x86_64 on an x86_64 host: the bytecode of every .py would be compiled
# by the aarch64 python under qemu (the stable layer's 5,833 files took 1,042 s here, the deps
# layer's 22,462 over an hour). A .pyc depends only on the source, its in-image name and the
# interpreter's bytecode fingerprint, the same for both architectures of one CPython, so the
# host's x86_64 python compiles the same stack first (resolved for x86_64, installed with
# --compile into a folder deleted after) and the aarch64 build takes the files from the
# bytecode cache, compiling under qemu only what differs. COMFYPAK_E2E_WARM_BYTECODE=0 skips
# it. Costs the x86_64 wheels (about 4 GB in the cache) and a few minutes.
if [ "${COMFYPAK_E2E_WARM_BYTECODE:-1}" = 1 ] && [ "$(uname -m)" = x86_64 ] &&
  [[ " ${ARCHS[*]} " == *" aarch64 "* ]] && [[ " ${ARCHS[*]} " != *" x86_64 "* ]]; then
  step "bytecode cache from x86_64"
  WARM_ROOT=$(python_root amd64) || fail "scripts/python-root.sh --arch amd64 (log: $CACHE/roots/debootstrap-root-amd64.log)"
  WARM=$WORK/warm-x86_64
  mkdir -p "$WARM"
  cp -a "$STACK" "$WARM/stack"
  sed -i 's/^platforms = \[.*\]$/platforms = ["manylinux_2_39_x86_64"]/' "$WARM/stack/stack.toml"
  grep -q '^platforms = \["manylinux_2_39_x86_64"\]$' "$WARM/stack/stack.toml" ||
    fail "could not point the warm-up's stack at x86_64"
  set +e
  {
    "$COMFYPAK" resolve --stack "$WARM/stack" -o "$WARM/pylock.toml" --base "$WARM_ROOT" \
      --index "pytorch-cu130=$PYPI_URL" --cache-dir "$COMFYPAK_CACHE" &&
      "$COMFYPAK" install --all --compile --lock "$WARM/pylock.toml" --out "$WARM/out" \
        --base "$WARM_ROOT" --allow-overwrite --index "pytorch-cu130=$PYPI_URL" \
        --cache-dir "$COMFYPAK_CACHE"
  } >"$WORK/warm-x86_64.log" 2>&1
  WARM_RC=$?
  set -e
  grep '^installed' "$WORK/warm-x86_64.log" || true
  echo "bytecode cache: $(du -sh "$COMFYPAK_CACHE/bytecode" | cut -f1)"
  [ "$WARM_RC" = 0 ] || { tail -n 20 "$WORK/warm-x86_64.log"; fail "the x86_64 bytecode warm-up (exit $WARM_RC)"; }
  rm -rf --one-file-system "$WARM"
  # The x86_64 wheels' unpacked trees are of no use to the aarch64 build (the pure wheels' are
  # unpacked again in seconds).
  if [ "${COMFYPAK_E2E_TRIM:-0}" = 1 ]; then
    rm -rf --one-file-system "$COMFYPAK_CACHE/unpacked"
  fi
fi

# ---------------------------------------------------------------------------------------------
step "build #1"
set +e
build >"$WORK/build-1.log" 2>&1
BUILD1_RC=$?
set -e
show_build_log "$WORK/build-1.log"
[ "$BUILD1_RC" = 0 ] || fail "comfypak build #1 (exit $BUILD1_RC)"
digests "$OUT/image" | tee "$WORK/digests-1.txt"
skopeo inspect --raw "oci:$OUT/image:latest" >/dev/null || fail "skopeo cannot read the built image"
for arch in "${ARCHS[@]}"; do
  skopeo inspect --override-arch "$(oci_arch "$arch")" "oci:$OUT/image:latest" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("skopeo:", d["Digest"], d["Architecture"], len(d["Layers"]), "layers")'
done
# Keep build #1's layers for the checks (build #2 replaces $OUT's), hard links only.
mkdir -p "$WORK/check-out"
for arch in "${ARCHS[@]}"; do
  from=$(layers_of "$OUT" "$arch")
  to=$(layers_of "$WORK/check-out" "$arch")
  mkdir -p "$(dirname "$to")"
  cp -al "$from" "$to"
  # The skeleton build wrote into the lowest layer, and the bytecode in each layer.
  lowest=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["layer"][0]["name"])' "$STACK/stack.toml")
  [ -L "$to/$lowest$VENV/bin/python" ] && [ -f "$to/$lowest$VENV/pyvenv.cfg" ] ||
    fail "$arch: the $lowest layer lacks $VENV/bin/python or $VENV/pyvenv.cfg"
  echo "$arch: $lowest$VENV/pyvenv.cfg: $(tr '\n' ' ' <"$to/$lowest$VENV/pyvenv.cfg"); bin/python -> $(readlink "$to/$lowest$VENV/bin/python")"
  for layer in "$to"/*; do
    echo "  $arch $(basename "$layer"): $(find "$layer" -name '*.py' -type f | wc -l) .py, $(find "$layer" -name '*.pyc' -type f | wc -l) .pyc"
  done
done

# ---------------------------------------------------------------------------------------------
# The podman step: each platform's image as a docker archive of build #1's layers on its base,
# loaded into podman; check.py (what `comfypak check` runs in its sandbox) runs in a fresh
# container without network, with the image's python.
ENTRY_PY=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["image"]["entrypoint"][0])' "$STACK/image.toml")
HOST_ARCH=$(uname -m)
# pack_archive ARCH: build #1's layers of ARCH on the base, as $WORK/image-ARCH.tar.
pack_archive() {
  "$COMFYPAK" pack --stack "$STACK" --out "$WORK/check-out" --lock "$LOCK" --platform "$1" \
    --layers "$1=$(layers_of "$WORK/check-out" "$1")" --base "$WORK/base" \
    --format docker-archive --name localhost/comfypak-e2e --tag "e2e-$$-$1" \
    --output "$WORK/image-$1.tar" >/dev/null
}
# podman_check ARCH: load ARCH's archive, run the check in a container, write the summary to
# $WORK/podman-check-ARCH.txt and its verdict (0, or 1 when something not allowed failed) to
# $WORK/podman-check-ARCH.rc; a step that breaks (load, run) ends the script through set -e.
podman_check() {
  local arch=$1 rc started
  PODMAN_IMAGE=localhost/comfypak-e2e:e2e-$$-$arch
  podman load --quiet -i "$WORK/image-$arch.tar"
  rm -f "$WORK/image-$arch.tar"
  mkdir -p "$WORK/podman-check-$arch"
  cp "$REPO/src/runtime/check.py" "$WORK/podman-check-$arch/check.py"
  chmod 0777 "$WORK/podman-check-$arch"
  # /data is the image's HOME and a volume of the shipped image.toml (inputs, outputs, the user
  # folder; what writes a cache under HOME at import needs it: cupy's kernel cache, numba's
  # cache=True functions in pymatting). The image carries it as an empty folder owned by its
  # user; a new named volume mounted there, as a user runs the image, starts out owned by the
  # user too.
  PODMAN_DATA=comfypak-e2e-data-$$-$arch
  podman volume create "$PODMAN_DATA" >/dev/null
  # The image runs as the shipped image.toml says (user, workdir, env); its entrypoint's python
  # runs the check instead of ComfyUI's main.py.
  IMAGE_USER=$(podman image inspect --format '{{.Config.User}}' "$PODMAN_IMAGE")
  IMAGE_ARCH=$(podman image inspect --format '{{.Architecture}}' "$PODMAN_IMAGE")
  echo "podman: $PODMAN_IMAGE ($IMAGE_ARCH) runs as user $IMAGE_USER; the check with $ENTRY_PY"
  [ "$IMAGE_USER" = "1000:1000" ] || fail "the image's user is '$IMAGE_USER', not pak/image.toml's 1000:1000"
  [ "$IMAGE_ARCH" = "$(oci_arch "$arch")" ] || fail "the $arch image says it is $IMAGE_ARCH"
  # Under qemu: imports only, and check.py's time limits 10 times longer (as comfypak check sets).
  ONLY=()
  SLOW=()
  if [ "$arch" != "$HOST_ARCH" ]; then
    ONLY=(--imports-only)
    SLOW=(-e COMFYPAK_CHECK_TIMEOUT_SCALE=10)
  fi
  started=$(date +%s)
  set +e
  podman run --rm --network none --platform "linux/$(oci_arch "$arch")" "${SLOW[@]}" \
    -v "$WORK/podman-check-$arch:/check" -v "$PODMAN_DATA:/data" --entrypoint "$ENTRY_PY" "$PODMAN_IMAGE" \
    /check/check.py "${ONLY[@]}" /check/result.json >"$WORK/podman-$arch.log" 2>&1
  rc=$?
  podman rmi --force "$PODMAN_IMAGE" >/dev/null 2>&1
  podman volume rm --force "$PODMAN_DATA" >/dev/null 2>&1
  set -e
  [ "$rc" = 0 ] || { tail -n 20 "$WORK/podman-$arch.log"; fail "podman run of the $arch image (exit $rc)"; }
  set +e
  python3 - "$WORK/podman-check-$arch/result.json" "$STACK/stack.toml" "$arch" $(($(date +%s) - started)) <<'PY' | tee "$WORK/podman-check-$arch.txt"
import json, sys, tomllib
r = json.load(open(sys.argv[1]))
allow = tomllib.load(open(sys.argv[2], "rb")).get("check", {}).get("allow", {})
arch, seconds = sys.argv[3], sys.argv[4]
bad_imports = [i for i in r["imports"] if not i["ok"]]
bad_scripts = [s for s in r["scripts"] if not s["ok"]]
allowed = [x for x in bad_imports if x["module"] in allow] + [x for x in bad_scripts if x["script"] in allow]
failed = [x for x in bad_imports if x["module"] not in allow] + [x for x in bad_scripts if x["script"] not in allow]
scripts = (f"{sum(s['ok'] for s in r['scripts'])} of {len(r['scripts'])} console scripts answered"
           if not r.get("imports_only") else "console scripts not run (imports only under qemu)")
print(f"podman run ({arch}, as the image's user, {seconds}s), python {r['python']} {r['executable']}: "
      f"{len(r['distributions'])} distributions, {sum(i['ok'] for i in r['imports'])} of {len(r['imports'])} "
      f"modules imported in {r['import_seconds']:.0f}s, {scripts}")
for x in allowed:
    print(f"  allowed: {x.get('module') or x.get('script')}: {allow[x.get('module') or x.get('script')][:100]}")
for x in failed:
    print(f"  FAILED: {x.get('module') or x.get('script')}: {(x.get('error') or x.get('broken') or x.get('tried'))!s:.200}")
sys.exit(1 if failed else 0)
PY
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  set -e
  echo "$rc" >"$WORK/podman-check-$arch.rc"
}
trim() {
  if [ "${COMFYPAK_E2E_TRIM:-0}" = 1 ]; then
    rm -rf --one-file-system "$WORK/check-out" "$COMFYPAK_CACHE/unpacked"
    echo "COMFYPAK_E2E_TRIM=1: removed the layer trees and the cache's unpacked wheels"
  fi
}

# Build #2 runs beside the check (the check's python uses a core its gzip does not). Build #1's
# image goes first: its digests are written down, and its blobs would double the disk peak.
step "build #2 (in the background)"
rm -rf --one-file-system "$OUT/image"
# Its own process group (set -m), so that a failure below can stop all of it.
set -m
(build >"$WORK/build-2.log" 2>&1; echo $? >"$WORK/build-2.rc") &
BUILD2=$!
set +m
trap 'kill -TERM -- "-$BUILD2" 2>/dev/null || true' EXIT

# COMFYPAK_E2E_PODMAN_BESIDE=1: the podman step runs now, beside the sandbox check, instead of
# after it: for a run under qemu, where the two checks each take hours of one core. The layer
# trees stay until both are done (no trim before podman loads its images).
PODMAN_BESIDE=${COMFYPAK_E2E_PODMAN_BESIDE:-0}
if [ "$PODMAN_BESIDE" = 1 ]; then
  step "podman run (${ARCHS[*]}, in the background)"
  set -m
  (
    (
      for arch in "${ARCHS[@]}"; do
        pack_archive "$arch"
        podman_check "$arch"
      done
    ) >"$WORK/podman.log" 2>&1
    echo $? >"$WORK/podman.rc"
  ) &
  PODMAN_BG=$!
  set +m
  trap 'kill -TERM -- "-$BUILD2" "-$PODMAN_BG" 2>/dev/null || true' EXIT
fi

# ---------------------------------------------------------------------------------------------
step "comfypak check (${ARCHS[*]})"
echo "comfypak check: build #1's layers on the base, in comfypak's sandbox (no network)"
# Under qemu the check imports only, unless COMFYPAK_E2E_QEMU_SCRIPTS=1: each console script is
# an interpreter start of its own, 2-12 minutes each there for those that import torch (89 of
# them: hours); the x86_64 check runs them all.
CHECK_RC=0
PROGRESS_S=${COMFYPAK_E2E_PROGRESS_S:-300}
[[ "$PROGRESS_S" =~ ^[1-9][0-9]*$ ]] && [ $((PROGRESS_S % 5)) = 0 ] ||
  fail "COMFYPAK_E2E_PROGRESS_S must be a positive multiple of 5 (seconds), not '$PROGRESS_S'"
check_progress() { # FILE ARCH: one line saying where a running check is
  python3 - "$1" "$2" <<'PY' || true
import json, sys, time
try:
    p = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(0)
line = f"{time.strftime('%H:%M:%S')} check ({sys.argv[2]}): {p['phase']}, {p['done']} of {p['total']} done"
if p.get("current"):
    line += ", " + ", ".join(p["current"]) + " running"
if p.get("failed"):
    line += f"; failed so far ({len(p['failed'])}): " + ", ".join(f["name"] for f in p["failed"])
print(line, flush=True)
PY
}
: >"$WORK/check.log"
for arch in "${ARCHS[@]}"; do
  ONLY=()
  if [ "$arch" != "$HOST_ARCH" ] && [ "${COMFYPAK_E2E_QEMU_SCRIPTS:-0}" != 1 ]; then
    ONLY=(--imports-only)
  fi
  set +e
  "$COMFYPAK" check --stack "$STACK" --out "$WORK/check-out" --base "$WORK/base" --lock "$LOCK" \
    --platform "$arch" "${ONLY[@]}" --timeout 14400 --cache-dir "$COMFYPAK_CACHE" >>"$WORK/check.log" 2>&1 &
  check_pid=$!
  # Where it is, every PROGRESS_S seconds: the check's own progress.json, in its work folder
  # (named by its pid and the platform) under the cache.
  waited=0
  while kill -0 "$check_pid" 2>/dev/null; do
    sleep 5
    waited=$((waited + 5))
    if [ $((waited % PROGRESS_S)) = 0 ]; then
      check_progress "$COMFYPAK_CACHE/runtime/check/$check_pid-$arch/progress.json" "$arch"
    fi
  done
  wait "$check_pid"
  rc=$?
  set -e
  [ "$rc" = 0 ] || CHECK_RC=$rc
done
# Per platform: the header, allowed failures, failures and the totals (not every distribution).
awk '/^distributions:$/ {skip = 1; next} /^[^ ]/ {skip = 0} !skip' "$WORK/check.log" | tee "$WORK/check-summary.txt"
[ "$(grep -c '^distributions ' "$WORK/check.log")" = "${#ARCHS[@]}" ] ||
  { tail -n 30 "$WORK/check.log"; fail "comfypak check did not report every platform (exit $CHECK_RC)"; }

# ---------------------------------------------------------------------------------------------
step "build #2 (waiting for it)"
wait "$BUILD2" || true
trap - EXIT
[ "${PODMAN_BESIDE:-0}" != 1 ] || trap 'kill -TERM -- "-$PODMAN_BG" 2>/dev/null || true' EXIT
show_build_log "$WORK/build-2.log"
BUILD2_RC=$(cat "$WORK/build-2.rc" 2>/dev/null || echo 1)
[ "$BUILD2_RC" = 0 ] || fail "build #2 failed (exit $BUILD2_RC)"
digests "$OUT/image" >"$WORK/digests-2.txt"
if cmp -s "$WORK/digests-1.txt" "$WORK/digests-2.txt"; then
  SAME="identical"
else
  diff "$WORK/digests-1.txt" "$WORK/digests-2.txt" || true
  SAME="DIFFERENT"
fi
echo "build #1 and build #2 digests: $SAME"

# ---------------------------------------------------------------------------------------------
if [ "$PODMAN_BESIDE" = 1 ]; then
  step "podman run (waiting for it)"
  wait "$PODMAN_BG" || true
  trap - EXIT
  cat "$WORK/podman.log"
  [ "$(cat "$WORK/podman.rc" 2>/dev/null || echo 1)" = 0 ] || fail "the podman step broke (log above)"
  rm -rf --one-file-system "$OUT"
  trim
else
  step "podman run (${ARCHS[*]})"
  # The OCI images are no longer needed (their digests are in digests-*.txt), nor, once the
  # archives are written, the layer trees.
  rm -rf --one-file-system "$OUT"
  for arch in "${ARCHS[@]}"; do
    pack_archive "$arch"
  done
  trim
  for arch in "${ARCHS[@]}"; do
    podman_check "$arch"
  done
fi
PODMAN_RC=0
for arch in "${ARCHS[@]}"; do
  [ "$(cat "$WORK/podman-check-$arch.rc" 2>/dev/null || echo 1)" = 0 ] || PODMAN_RC=1
done
end_step
STEP_NAME=""

# ---------------------------------------------------------------------------------------------
echo
echo "=== e2e result"
for arch in "${ARCHS[@]}"; do
  echo "$arch: debian $SUITE root, python ${PYTHON_VERSION[$arch]}"
done
echo "comfypak $("$COMFYPAK" --version | awk '{print $2}'); $(grep -c '^\[\[packages\]\]' "$LOCK") packages in the lock"
grep -E '^(check |distributions [0-9]|check: )' "$WORK/check-summary.txt" || true
for arch in "${ARCHS[@]}"; do
  cat "$WORK/podman-check-$arch.txt" 2>/dev/null || echo "podman run ($arch): no result"
done
echo "image (build #1):"
sed 's/^/  /' "$WORK/digests-1.txt"
echo "build #1 and build #2 digests: $SAME"
echo "times:"
printf '  %s\n' "${TIMES[@]}"
echo "  total $(($(date +%s) - START))s"
[ "$SAME" = identical ] || fail "two builds of the same stack gave different digests"
[ "$CHECK_RC" = 0 ] || fail "the runtime check failed (see above; log: $WORK/check.log)"
[ "$PODMAN_RC" = 0 ] || fail "the check in podman failed (see above; results: $WORK/podman-check-*/result.json)"
# Passed: drop the layer trees (a failed run keeps them to look at).
rm -rf --one-file-system "$WORK/check-out"
echo "e2e: OK"
