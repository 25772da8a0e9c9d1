#!/usr/bin/env bash
# The end-to-end runtime check: a real CPython 3.14 imports what `comfypak build` installed.
#
#   1. a minimal Debian testing root with python3.14 (debootstrap, cached);
#   2. an OCI base image of it, packed by comfypak itself (a stack layer holding the venv
#      skeleton, and the root as an image.toml [[directory]] layer);
#   3. `comfypak build` of the e2e stack (tests/e2e/stack.toml: the default stack's stable, deps
#      and volatile pak files, x86_64 only) from the public index on top of that base, twice,
#      and the two images' digests compared;
#   4. `umoci unpack` of the image (the venv skeleton `build --base` wrote is in it), and
#      `comfypak check`: in comfypak's sandbox (no network) the image's python imports every
#      top-level module of every installed distribution and runs every console script with
#      --help / --version; the allowed failures are tests/e2e/stack.toml's [check.allow];
#   5. the image in a real container runtime: `comfypak pack --format docker-archive`,
#      `podman load`, and `podman run --rm --network none IMAGE` running the same check
#      (comfypak's check.py) with the python of the shipped pak/image.toml's entrypoint, as the
#      image's user (1000, not root), the check folder the only place it writes.
# (aarch64: the stack is x86_64 only; tests/it/podman.rs runs the fixture stack's image under
# qemu with `podman run --platform linux/arm64` in CI.)
#
# Needs root (debootstrap, chroot, mounts), debootstrap, umoci, skopeo, unshare, podman (set up
# by .ci/setup.d/60-podman.sh), the network (the Debian mirror apt uses here, and the public
# Python index), ~30 GB of disk. Install the tools with `COMFYPAK_E2E=1 . .ci/setup.d/90-e2e.sh`
# and `. .ci/setup.d/60-podman.sh`. Settings (environment):
#   COMFYPAK_E2E_CACHE   cache folder (default ~/.cache/comfypak-e2e): the Debian root, the
#                        comfypak cache (wheels), and the work folder of the last run
#   COMFYPAK_E2E_SUITE   Debian suite with python3.14 (default: testing)
#   COMFYPAK_E2E_MIRROR  Debian mirror URL (default: the first Debian one in apt's sources)
#   COMFYPAK_E2E_REFRESH_ROOT=1  rebuild the cached Debian root
#   COMFYPAK_BIN         a comfypak binary to use instead of `cargo build --release`
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
    TIMES+=("$(printf '%-30s %4ss' "$STEP_NAME" $((now - STEP_START)))")
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

# ---------------------------------------------------------------------------------------------
step "preflight"
[ "$(id -u)" = 0 ] || fail "run as root: debootstrap, chroot and the mounts of the check need it"
missing=""
for tool in debootstrap umoci skopeo unshare chroot python3 podman; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] || fail "missing tools:$missing; install them with: COMFYPAK_E2E=1 . .ci/setup.d/90-e2e.sh"

CACHE=${COMFYPAK_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-e2e}
SUITE=${COMFYPAK_E2E_SUITE:-testing}
WORK=$CACHE/work
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
WORK=$CACHE/work
COMFYPAK_CACHE=$CACHE/comfypak

# The Debian mirror: the one this machine's apt uses (deb822 .sources or one-line .list), so
# the repository names no mirror host.
debian_mirror() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  # URIs of Debian's main archive: a path ending in /debian (not debian-security, not ports).
  sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' \
    -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
    "${files[@]}" | tr ' ' '\n' | grep -E '^(https?|file)://.*/debian/?$' | head -n 1 | sed 's#/$##'
}
MIRROR=${COMFYPAK_E2E_MIRROR:-$(debian_mirror)}
[ -n "$MIRROR" ] || fail "no Debian mirror in /etc/apt/sources.list(.d); set COMFYPAK_E2E_MIRROR=URL"

# The public Python index, read from the repository's definition at run time.
PYPI_URL=$(sed -n 's/^url[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$REPO/indexes/pypi.toml" | head -n 1)
[ -n "$PYPI_URL" ] || fail "no url in indexes/pypi.toml"

echo "cache:        $CACHE"
echo "debian:       $SUITE from $MIRROR"
echo "python index: $PYPI_URL (also for pytorch-cu130: its torch 2.11.0 for Linux x86_64 is the cu130 build)"
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
# What the root holds besides minbase (and why), and what is taken out of it.
#   python3.14       the interpreter under test (with libpython3.14-stdlib, tzdata, media-types)
#   ca-certificates  pygit2 loads the system's CA certificates at import
#   git              GitPython runs the `git` executable at import
#   libatomic1       slangpy's extension links libatomic.so.1 without bundling it
#   libgomp1         GNU OpenMP, which wheels built with -fopenmp may load from the system
#   libx11-6         slangpy's extension links libX11.so.6 (the manylinux policy lets wheels
#                    expect it from the system, like libGL, which nothing imported here needs:
#                    the cv2 that wins is the headless one)
BASE_PACKAGES="python3.14 ca-certificates git libatomic1 libgomp1 libx11-6"
step "debian root"
echo "$SUITE, minbase + $BASE_PACKAGES"
ROOT_KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$BASE_PACKAGES" "root-v1" | sha256sum | cut -c1-16)
ROOT=$CACHE/root-$SUITE-$ROOT_KEY
if [ "${COMFYPAK_E2E_REFRESH_ROOT:-0}" = 1 ] && [ -e "$ROOT" ]; then
  echo "COMFYPAK_E2E_REFRESH_ROOT=1: rebuilding $ROOT"
  rm -rf --one-file-system "$ROOT"
fi
if [ -f "$ROOT/.e2e-complete" ]; then
  echo "cached: $ROOT"
else
  # Roots of other package lists or older runs go.
  for old in "$CACHE"/root-*; do
    [ -e "$old" ] && rm -rf --one-file-system "$old"
  done
  debootstrap --variant=minbase --include="${BASE_PACKAGES// /,}" \
    "$SUITE" "$ROOT.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
    tail -n 30 "$CACHE/debootstrap.log" >&2
    fail "debootstrap $SUITE from $MIRROR (log: $CACHE/debootstrap.log)"
  }
  # A layer holds directories, files and links only: device nodes go (the check bind-mounts
  # /dev). Downloaded .debs, apt lists, docs and man pages are not needed to run Python.
  find "$ROOT.partial/dev" -mindepth 1 -delete
  find "$ROOT.partial/var/cache/apt/archives" -name '*.deb' -delete
  find "$ROOT.partial/var/lib/apt/lists" -mindepth 1 -type f -delete
  rm -rf "$ROOT.partial/usr/share/doc" "$ROOT.partial/usr/share/man" "$ROOT.partial/usr/share/info"
  special=$(find "$ROOT.partial" -xdev \( -type b -o -type c -o -type p -o -type s \) | head -n 5)
  [ -z "$special" ] || fail "special files left in the root: $special"
  touch "$ROOT.partial/.e2e-complete"
  mv "$ROOT.partial" "$ROOT"
fi
PYTHON_VERSION=$(chroot "$ROOT" /usr/bin/python3.14 -c 'import sys; print(sys.version.split()[0])')
echo "python3.14 in the root: $PYTHON_VERSION; $(chroot "$ROOT" /usr/bin/python3.14 -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION"))')"
du -sh "$ROOT" | awk '{print "root size: " $1}'

# ---------------------------------------------------------------------------------------------
# The base image, packed by comfypak: a stack needs at least one layer with one pak file, so
# the base stack has one empty layer `venv` (an empty pak file), and its image.toml adds the
# Debian root as a [[directory]] layer on top. The venv skeleton is not the base's: `comfypak
# build --base` writes it into the lowest stack layer from the base's own python3.14.
step "base image"
rm -rf --one-file-system "$WORK"
mkdir -p "$WORK"
VENV=$(sed -n 's/^venv[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$E2E/stack.toml" | head -n 1)
[ -n "$VENV" ] || fail "no target.venv in tests/e2e/stack.toml"
BASE_STACK=$WORK/base-stack
mkdir -p "$BASE_STACK" "$WORK/base-layers/venv"
: >"$BASE_STACK/venv.txt"
cat >"$BASE_STACK/stack.toml" <<EOF
[stack]
name = "python314-base"
index-dir = "$REPO/indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "$VENV"

[indexes]
default = ["pypi"]

[[layer]]
name = "venv"
paks = ["venv.txt"]
EOF
cat >"$BASE_STACK/image.toml" <<EOF
[image]
labels = { "org.opencontainers.image.description" = "Debian $SUITE minbase + $BASE_PACKAGES (comfypak e2e base)" }

[[directory]]
name = "debian-root"
source = "$ROOT"
path = "/"
exclude = [".e2e-complete"]
EOF
# pack reads the layer order, venv and platforms from a lock: the empty stack's (no index asked).
"$COMFYPAK" resolve --stack "$BASE_STACK" -o "$BASE_STACK/pylock.toml" >/dev/null
"$COMFYPAK" pack --stack "$BASE_STACK" --lock "$BASE_STACK/pylock.toml" --layers "x86_64=$WORK/base-layers" --output "$WORK/base"
skopeo inspect --raw "oci:$WORK/base:latest" >/dev/null || fail "skopeo cannot read the base image"

# ---------------------------------------------------------------------------------------------
step "e2e stack"
STACK=$WORK/stack
mkdir -p "$STACK"
cp "$E2E/stack.toml" "$STACK/stack.toml"
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

# One run of the main job, into $OUT (the previous image there is the reuse reference). The
# pinned torch family comes from the public index: its Linux x86_64 torch is the cu130 build.
build() {
  "$COMFYPAK" build --stack "$STACK" --out "$OUT" --lock "$LOCK" --base "$WORK/base" \
    --allow-overwrite --index "pytorch-cu130=$PYPI_URL" --cache-dir "$COMFYPAK_CACHE"
}

# A build's output, with the ~180 `overwritten` warnings under cv2/ counted instead of listed.
show_build_log() {
  grep -v '^warning: overwritten: .*/cv2/' "$1" || true
  echo "(and $(grep -c '^warning: overwritten: .*/cv2/' "$1" || true) warnings about paths under cv2/ that the opencv variants share)"
}

# index digest, then `name digest size` for the manifest, config and each layer.
digests() {
  python3 - "$1" <<'PY'
import json, sys, pathlib
layout = pathlib.Path(sys.argv[1])
blob = lambda d: json.loads((layout / "blobs" / "sha256" / d.split(":", 1)[1]).read_text())
index = json.loads((layout / "index.json").read_text())
top = index["manifests"][0]
print(f"{'index.json':<16}{top['digest']}  (an {'image index' if 'index' in top['mediaType'] else 'image manifest'})")
manifests = [top]
if top["mediaType"].endswith("image.index.v1+json"):
    manifests = blob(top["digest"])["manifests"]
for m in manifests:
    manifest = blob(m["digest"])
    print(f"{'manifest':<16}{m['digest']}")
    print(f"{'config':<16}{manifest['config']['digest']}")
    for i, layer in enumerate(manifest["layers"]):
        name = layer.get("annotations", {}).get("io.comfypak.layer") or f"base-{i + 1}"
        print(f"{'layer ' + name:<16}{layer['digest']}  {layer['size']:>11} bytes")
PY
}

# ---------------------------------------------------------------------------------------------
step "build #1"
set +e
build >"$WORK/build-1.log" 2>&1
BUILD1_RC=$?
set -e
show_build_log "$WORK/build-1.log"
[ "$BUILD1_RC" = 0 ] || fail "comfypak build #1 (exit $BUILD1_RC)"
digests "$OUT/image" | tee "$WORK/digests-1.txt"
# Keep this image and these layers for the checks: build #2 replaces $OUT/image and the layers.
cp -al "$OUT/image" "$WORK/image-1"
mkdir -p "$WORK/check-out"
cp -al "$OUT/layers" "$WORK/check-out/layers"
skopeo inspect "oci:$WORK/image-1:latest" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("skopeo:", d["Digest"], d["Architecture"], len(d["Layers"]), "layers")'

# Build #2 runs beside the unpack and the check (they use other cores than its gzip).
step "build #2 (in the background)"
# Its own process group (set -m), so that a failure below can stop all of it.
set -m
(build >"$WORK/build-2.log" 2>&1; echo $? >"$WORK/build-2.rc") &
BUILD2=$!
set +m
trap 'kill -TERM -- "-$BUILD2" 2>/dev/null || true' EXIT

# ---------------------------------------------------------------------------------------------
step "umoci unpack"
BUNDLE=$WORK/bundle
umoci unpack --image "$WORK/image-1:latest" "$BUNDLE" >/dev/null
RFS=$BUNDLE/rootfs
du -sh "$RFS" | awk '{print "rootfs: " $1}'
# (bin/python links to /usr/bin/python3.14 of the image, so test the link, not its target.)
[ -L "$RFS$VENV/bin/python" ] && [ -f "$RFS$VENV/pyvenv.cfg" ] && [ -x "$RFS/usr/bin/python3.14" ] ||
  fail "the unpacked image lacks $VENV/bin/python, $VENV/pyvenv.cfg or /usr/bin/python3.14"

# ---------------------------------------------------------------------------------------------
step "runtime check"
echo "comfypak check: the layers of build #1 on the base, in comfypak's sandbox (no network)"
set +e
"$COMFYPAK" check --stack "$STACK" --out "$WORK/check-out" --base "$WORK/base" \
  --cache-dir "$COMFYPAK_CACHE" 2>&1 | tee "$WORK/check.log"
CHECK_RC=${PIPESTATUS[0]}
set -e

# ---------------------------------------------------------------------------------------------
step "podman run"
# Build #1's layers on the base as a docker archive, loaded into podman; check.py (what `comfypak
# check` runs in its sandbox) runs in a fresh container without network, with the image's python.
PODMAN_IMAGE=localhost/comfypak-e2e:e2e-$$
"$COMFYPAK" pack --stack "$STACK" --out "$WORK/check-out" --lock "$LOCK" --layers "x86_64=$WORK/check-out/layers" \
  --base "$WORK/base" --format docker-archive --name localhost/comfypak-e2e --tag "e2e-$$" \
  --output "$WORK/image-1.tar" >/dev/null
podman load --quiet -i "$WORK/image-1.tar"
rm -f "$WORK/image-1.tar"
mkdir -p "$WORK/podman-check"
cp "$REPO/src/runtime/check.py" "$WORK/podman-check/check.py"
chmod 0777 "$WORK/podman-check"
# The image runs as the shipped image.toml says (user, workdir, env); its entrypoint's python
# runs the check instead of ComfyUI's main.py.
ENTRY_PY=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["image"]["entrypoint"][0])' "$STACK/image.toml")
IMAGE_USER=$(podman image inspect --format '{{.Config.User}}' "$PODMAN_IMAGE")
echo "podman: $PODMAN_IMAGE runs as user $IMAGE_USER; the check with $ENTRY_PY"
[ "$IMAGE_USER" = "1000:1000" ] || fail "the image's user is '$IMAGE_USER', not pak/image.toml's 1000:1000"
set +e
podman run --rm --network none -v "$WORK/podman-check:/check" --entrypoint "$ENTRY_PY" "$PODMAN_IMAGE" \
  /check/check.py /check/result.json >"$WORK/podman.log" 2>&1
PODMAN_RUN_RC=$?
podman rmi --force "$PODMAN_IMAGE" >/dev/null 2>&1
set -e
[ "$PODMAN_RUN_RC" = 0 ] || { tail -n 20 "$WORK/podman.log"; fail "podman run of the image (exit $PODMAN_RUN_RC)"; }
set +e
python3 - "$WORK/podman-check/result.json" "$E2E/stack.toml" <<'PY' | tee "$WORK/podman-check.txt"
import json, sys, tomllib
r = json.load(open(sys.argv[1]))
allow = tomllib.load(open(sys.argv[2], "rb")).get("check", {}).get("allow", {})
bad_imports = [i for i in r["imports"] if not i["ok"]]
bad_scripts = [s for s in r["scripts"] if not s["ok"]]
allowed = [x for x in bad_imports if x["module"] in allow] + [x for x in bad_scripts if x["script"] in allow]
failed = [x for x in bad_imports if x["module"] not in allow] + [x for x in bad_scripts if x["script"] not in allow]
print(f"podman run (x86_64, as the image's user), python {r['python']} {r['executable']}: {len(r['distributions'])} distributions, "
      f"{sum(i['ok'] for i in r['imports'])} of {len(r['imports'])} modules imported, "
      f"{sum(s['ok'] for s in r['scripts'])} of {len(r['scripts'])} console scripts answered")
for x in allowed:
    print(f"  allowed: {x.get('module') or x.get('script')}: {allow[x.get('module') or x.get('script')][:100]}")
for x in failed:
    print(f"  FAILED: {x.get('module') or x.get('script')}: {(x.get('error') or x.get('broken') or x.get('tried'))!s:.200}")
sys.exit(1 if failed else 0)
PY
PODMAN_RC=${PIPESTATUS[0]}
set -e

# ---------------------------------------------------------------------------------------------
step "build #2 (waiting for it)"
wait "$BUILD2" || true
trap - EXIT
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
end_step
STEP_NAME=""

# ---------------------------------------------------------------------------------------------
echo
echo "=== e2e result"
echo "debian $SUITE root, python $PYTHON_VERSION; comfypak $("$COMFYPAK" --version | awk '{print $2}')"
sed -n -e '/^failed, allowed/,$p' "$WORK/check.log"
cat "$WORK/podman-check.txt"
echo "image ($OUT/image):"
sed 's/^/  /' "$WORK/digests-1.txt"
echo "build #1 and build #2 digests: $SAME"
echo "times:"
printf '  %s\n' "${TIMES[@]}"
echo "  total $(($(date +%s) - START))s"
[ "$SAME" = identical ] || fail "two builds of the same stack gave different digests"
[ "$CHECK_RC" = 0 ] || fail "the runtime check failed (see above; log: $WORK/check.log)"
[ "$PODMAN_RC" = 0 ] || fail "the check in podman failed (see above; result: $WORK/podman-check/result.json)"
# Passed: drop the 12 GB unpacked rootfs and image copy (a failed run keeps them to look at).
rm -rf --one-file-system "$BUNDLE" "$WORK/image-1" "$WORK/check-out"
echo "e2e: OK"
