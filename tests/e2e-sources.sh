#!/usr/bin/env bash
# The end-to-end source-build check: the real stack's `nodes` paks (pak/pak7.txt, pak/pak8.txt:
# sdists with no wheel for CPython 3.14, and `git+https` lines) built by comfypak from the public
# index, in the target runtime of a build base, and imported by the base's CPython 3.14.
#
#   1. the build base: scripts/python-root.sh --build (Debian testing + python3.14, a C/C++
#      toolchain, cmake, ninja, python3.14-dev) plus the shared libraries the built and
#      published wheels load at import (libGL, libxcb, ... for opencv-python), cached;
#   2. local git mirrors of pak7's `git+https` repositories (tests/e2e/git-mirrors.py: a
#      snapshot of the same repository where COMFYPAK_E2E_GIT_SNAPSHOTS has one, else the
#      index's sdist of the same project committed into a repository, else a stand-in package
#      of that name, each said so), served by `git http-backend` on 127.0.0.1; git reaches them
#      through its own `url.<mirror>.insteadOf` (GIT_CONFIG_COUNT/KEY/VALUE), so the stack and
#      the lock keep the public URLs;
#   3. build A, clean (empty build caches): `comfypak build` of tests/e2e/sources-stack.toml
#      (pak7 + pak8 in one layer, x86_64, torch from the public index as in tests/e2e.sh); the
#      build time of every source package;
#   4. `comfypak check` in comfypak's sandbox (no network): every top-level module of every
#      installed distribution imported, every console script run;
#   5. build B, warm: the same caches and a fresh lock, so every source is asked for again;
#      it must take every one from the build cache (0 builds);
#   6. build C, clean again (new empty build caches; only downloads are shared; `comfypak
#      resolve`, which builds the sources, without installing or packing): which built
#      wheels are byte-identical to A's, and for those that are not, what differs inside
#      (file by file, and the zip entries' metadata).
# Builds A and C use their own cache folders; downloads (wheels, sdists, index pages) come from
# one shared folder, so torch is fetched once.
#
# Needs root (debootstrap, chroot, mounts), debootstrap, git, python3 (3.11+), unshare, the
# network (the Debian mirror apt uses, the public Python index), ~25 GB of disk and a long time
# (dlib is a long C++ build; it is built twice). Runs only with COMFYPAK_E2E=1. Settings:
#   COMFYPAK_E2E_CACHE     cache folder (default ~/.cache/comfypak-e2e-sources): the build base,
#                          the shared downloads, the work folder of the last run
#   COMFYPAK_E2E_DOWNLOADS a comfypak cache folder whose downloads (wheels/, sources/, pages/,
#                          metadata/) and unpacked wheels (unpacked/) the run shares (default:
#                          COMFYPAK_E2E_CACHE/downloads)
#   COMFYPAK_E2E_GIT_SNAPSHOTS  a folder of bare repositories OWNER+NAME/repo to mirror
#   COMFYPAK_E2E_DROP      project names to leave out of the pak copies (space-separated),
#                          each printed; for a shorter run, never silently
#   COMFYPAK_E2E_KEEP=1    keep the work folder (builds, images) after a passing run
#   COMFYPAK_BIN           a comfypak binary to use instead of `cargo build --release`
# Exit status: 0 when every step passed; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
E2E=$REPO/tests/e2e

if [ "${COMFYPAK_E2E:-0}" != 1 ]; then
  echo "e2e-sources: skipped (set COMFYPAK_E2E=1: it needs root, the network and a long time)"
  exit 0
fi

START=$(date +%s)
step() {
  printf '\n=== [%s +%ss] %s\n' "$(date -u +%H:%M:%S)" $(($(date +%s) - START)) "$1"
}
fail() {
  printf 'e2e-sources: FAILED: %s\n' "$*" >&2
  exit 1
}

step "preflight"
[ "$(id -u)" = 0 ] || fail "run as root: debootstrap, chroot and the sandbox's mounts need it"
for tool in debootstrap git python3 unshare chroot; do
  command -v "$tool" >/dev/null 2>&1 || fail "missing tool: $tool"
done
CACHE=${COMFYPAK_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-e2e-sources}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
DOWNLOADS=${COMFYPAK_E2E_DOWNLOADS:-$CACHE/downloads}
mkdir -p "$DOWNLOADS"
DOWNLOADS=$(cd "$DOWNLOADS" && pwd)
WORK=$CACHE/work
PYPI_URL=$(sed -n 's/^url[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$REPO/indexes/pypi.toml" | head -n 1)
[ -n "$PYPI_URL" ] || fail "no url in indexes/pypi.toml"
echo "cache:        $CACHE (downloads shared with: $DOWNLOADS)"
echo "python index: $PYPI_URL (also for pytorch-cu130: its Linux x86_64 torch is the cu130 build)"
df -h "$CACHE" | tail -n 1 | awk '{print "disk free:    " $4 " on " $6}'

step "comfypak binary"
if [ -n "${COMFYPAK_BIN:-}" ]; then
  COMFYPAK=$COMFYPAK_BIN
else
  cargo build --release --locked --bin comfypak 2>&1 | tail -n 3
  COMFYPAK=${CARGO_TARGET_DIR:-$REPO/target}/release/comfypak
fi
[ -x "$COMFYPAK" ] || fail "$COMFYPAK is not an executable"

# ---------------------------------------------------------------------------------------------
# The build base, which is also the base the check imports in. Beyond --build's toolchain:
#   libgl1 libglib2.0-0t64 libxcb1 libx11-6 libxext6 libsm6 libxrender1
#                    opencv-python (insightface's) loads them at import; the manylinux policy
#                    lets wheels expect them from the system
#   libgomp1 libatomic1  GNU OpenMP and libatomic, which wheels built with GCC may load
RUNTIME_PACKAGES="libgl1 libglib2.0-0t64 libxcb1 libx11-6 libxext6 libsm6 libxrender1 libgomp1 libatomic1"
step "build base"
ROOT=$(bash "$REPO/scripts/python-root.sh" --build --packages "$RUNTIME_PACKAGES" "$CACHE" | tail -n 1)
[ -x "$ROOT/usr/bin/python3.14" ] || fail "no python3.14 in the build base $ROOT"
echo "build base: $ROOT ($(du -sh "$ROOT" | cut -f1)); $(chroot "$ROOT" gcc --version | head -n 1); $(chroot "$ROOT" cmake --version | head -n 1)"

# ---------------------------------------------------------------------------------------------
step "stack"
rm -rf --one-file-system "$WORK"
mkdir -p "$WORK/stack"
STACK=$WORK/stack
cp "$E2E/sources-stack.toml" "$STACK/stack.toml"
ln -s "$REPO/indexes" "$STACK/indexes"
python3 - "$REPO/pak" "$STACK" "${COMFYPAK_E2E_DROP:-}" <<'PY'
import json, re, sys, pathlib, tomllib
pak_dir, stack, drop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3].split()
# The shipped stack's accepted RECORD slips apply to the same wheels here: copied, not repeated.
shipped = tomllib.loads((pak_dir / "stack.toml").read_text())
with open(stack / "stack.toml", "a") as f:
    for entry in shipped.get("install", {}).get("record-mismatch", []):
        f.write("\n[[install.record-mismatch]]\n")
        f.writelines(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())
        print(f"record-mismatch from pak/stack.toml: {entry['wheel']}: {entry['file']}")
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
drop = {norm(d) for d in drop}
seen = set()
for layer in tomllib.loads((stack / "stack.toml").read_text())["layer"]:
    for pak in layer["paks"]:
        out = []
        for number, line in enumerate((pak_dir / pak).read_text().splitlines(), 1):
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if m and not line.lstrip().startswith(("#", "-")) and norm(m.group(1)) in drop:
                out.append(f"# left out by COMFYPAK_E2E_DROP: {line}")
                print(f"LEFT OUT (COMFYPAK_E2E_DROP): pak/{pak}:{number} {line.strip()}")
                seen.add(norm(m.group(1)))
                continue
            out.append(line)
        (stack / pak).write_text("\n".join(out) + "\n")
        print(f"layer {layer['name']}: pak/{pak}")
if drop - seen:
    sys.exit(f"COMFYPAK_E2E_DROP names {', '.join(sorted(drop - seen))}, which no pak file lists")
PY
cat "$STACK"/pak7.txt "$STACK"/pak8.txt | grep -v '^#' | sed 's/^/  /'

# ---------------------------------------------------------------------------------------------
step "git mirrors"
MIRROR_ARGS=(--index "$PYPI_URL")
[ -z "${COMFYPAK_E2E_GIT_SNAPSHOTS:-}" ] || MIRROR_ARGS+=(--snapshots "$COMFYPAK_E2E_GIT_SNAPSHOTS")
python3 "$E2E/git-mirrors.py" "$WORK/mirrors" "$STACK/pak7.txt" "$STACK/pak8.txt" "${MIRROR_ARGS[@]}" \
  >"$WORK/mirrors.log" 2>&1 &
MIRRORS=$!
trap 'kill "$MIRRORS" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q '^ready$' "$WORK/mirrors.log" && break
  kill -0 "$MIRRORS" 2>/dev/null || { cat "$WORK/mirrors.log"; fail "git-mirrors.py stopped"; }
  sleep 0.5
done
grep -q '^ready$' "$WORK/mirrors.log" || fail "git-mirrors.py not ready after 5 minutes"
grep '^mirror ' "$WORK/mirrors.log"
MIRROR_URL=$(sed -n 's/^url //p' "$WORK/mirrors.log")
HOSTS=$(sed -n 's#^mirror \([^/]*\)/.*#\1#p' "$WORK/mirrors.log" | sort -u)
[ "$(echo "$HOSTS" | wc -l)" = 1 ] || fail "git lines on more than one host: $HOSTS"
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.$MIRROR_URL.insteadOf" GIT_CONFIG_VALUE_0="https://$HOSTS/"
echo "git: url.$MIRROR_URL.insteadOf = https://$HOSTS/ (through GIT_CONFIG_COUNT/KEY/VALUE)"

# A cache folder of its own (empty build caches), sharing only the downloads and the unpacked
# wheels (both content-addressed by sha256, so a built wheel of other bytes is another entry).
fresh_cache() {
  rm -rf --one-file-system "$1"
  mkdir -p "$1" "$DOWNLOADS"/{wheels,sources,pages,metadata,unpacked}
  for d in wheels sources pages metadata unpacked; do ln -s "$DOWNLOADS/$d" "$1/$d"; done
}

# The per-source lines of a build log, as a table; and the counts.
build_table() {
  python3 - "$1" <<'PY'
import re, sys
built = cached = 0
rows = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.match(r"^(\S+): (\S+\.whl) (built|from the build cache) in ([0-9.]+)s$", line.strip())
    if m:
        rows.append(m.groups())
        built += m.group(3) == "built"
        cached += m.group(3) != "built"
print(f"  {'package':<20} {'wheel':<70} {'how':<16} {'seconds':>8}")
for name, wheel, how, secs in sorted(rows, key=lambda r: -float(r[3])):
    print(f"  {name:<20} {wheel:<70} {'built' if how == 'built' else 'build cache':<16} {float(secs):>8.1f}")
print(f"sources: {built} built, {cached} from the build cache")
PY
}

run_build() { # NAME CACHE OUT: a build with a fresh lock
  local name=$1 cache=$2 out=$3 t0 rc
  t0=$(date +%s)
  set +e
  "$COMFYPAK" build --stack "$STACK" --out "$out" --lock "$WORK/pylock-$name.toml" --base "$ROOT" \
    --no-compile --allow-overwrite --index "pytorch-cu130=$PYPI_URL" --cache-dir "$cache" \
    >"$WORK/build-$name.log" 2>&1
  rc=$?
  set -e
  grep -v '^fetched ' "$WORK/build-$name.log" | grep -v '^warning: overwritten' | tail -n 40
  [ "$rc" = 0 ] || fail "build $name (exit $rc; log: $WORK/build-$name.log)"
  echo "build $name: $(($(date +%s) - t0))s"
  build_table "$WORK/build-$name.log" | tee "$WORK/table-$name.txt"
}

# ---------------------------------------------------------------------------------------------
step "build A (clean build caches)"
fresh_cache "$WORK/cache-a"
run_build A "$WORK/cache-a" "$WORK/out-a"

step "check (imports of build A in the sandbox)"
set +e
"$COMFYPAK" check --stack "$STACK" --out "$WORK/out-a" --base "$ROOT" --cache-dir "$WORK/cache-a" \
  >"$WORK/check.log" 2>&1
CHECK_RC=$?
set -e
grep -v '^  .*: [0-9]* modules from' "$WORK/check.log" | tail -n 40
# The image and the layers are large (torch): only the logs are kept from here on.
rm -rf --one-file-system "$WORK/out-a"

step "build B (warm: the same caches, a fresh lock)"
run_build B "$WORK/cache-a" "$WORK/out-b"
rm -rf --one-file-system "$WORK/out-b"
WARM_BUILT=$(sed -n 's/^sources: \([0-9]*\) built.*/\1/p' "$WORK/table-B.txt")

# Build C only needs the built wheels, which `resolve` makes (sources are built while
# resolving): no install, no image.
step "build C (clean build caches again; resolve only)"
fresh_cache "$WORK/cache-c"
t0=$(date +%s)
"$COMFYPAK" resolve --stack "$STACK" -o "$WORK/pylock-C.toml" --base "$ROOT" \
  --index "pytorch-cu130=$PYPI_URL" --cache-dir "$WORK/cache-c" >"$WORK/build-C.log" 2>&1 ||
  fail "build C (log: $WORK/build-C.log)"
echo "build C: $(($(date +%s) - t0))s"
build_table "$WORK/build-C.log" | tee "$WORK/table-C.txt"

step "byte-identity of the built wheels (A against C)"
python3 - "$WORK/pylock-A.toml" "$WORK/pylock-C.toml" "$DOWNLOADS/wheels" <<'PY' | tee "$WORK/identity.txt"
import hashlib, pathlib, sys, tomllib, zipfile
lock_a, lock_c, wheels = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])

def built(path):
    out = {}
    for p in tomllib.load(open(path, "rb")).get("packages", []):
        for w in p.get("tool", {}).get("comfypak", {}).get("built", []):
            kind = "git" if "vcs" in p else "sdist" if "sdist" in p else "directory"
            out[p["name"]] = (kind, w["name"], w["hashes"]["sha256"], w.get("size"))
    return out

def find(sha):
    hits = list(wheels.glob(f"*/{sha[:2]}/{sha}/*.whl"))
    return hits[0] if hits else None

a, c = built(lock_a), built(lock_c)
same = [n for n in a if n in c and a[n][2] == c[n][2]]
print(f"{'package':<20} {'from':<6} {'wheel':<62} {'identical':<10} sha256 (A / C)")
for name in sorted(set(a) | set(c)):
    ka, kc = a.get(name), c.get(name)
    if not ka or not kc:
        print(f"{name:<20} only in {'A' if ka else 'C'}")
        continue
    ident = "yes" if ka[2] == kc[2] else "NO"
    print(f"{name:<20} {ka[0]:<6} {ka[1]:<62} {ident:<10} {ka[2][:12]} / {kc[2][:12]}")
print(f"{len(same)} of {len(a)} built wheels byte-identical across two clean builds")
for name in sorted(n for n in a if n in c and a[n][2] != c[n][2]):
    pa, pc = find(a[name][2]), find(c[name][2])
    print(f"\n{name}: why the wheels differ")
    if not pa or not pc:
        print("  (a wheel is missing from the cache; cannot compare)")
        continue
    za, zc = zipfile.ZipFile(pa), zipfile.ZipFile(pc)
    ia = {i.filename: i for i in za.infolist()}
    ic = {i.filename: i for i in zc.infolist()}
    if set(ia) != set(ic):
        print(f"  files only in A: {sorted(set(ia) - set(ic))[:10]}")
        print(f"  files only in C: {sorted(set(ic) - set(ia))[:10]}")
    content = [f for f in ia if f in ic and za.read(f) != zc.read(f)]
    meta = [f for f in ia if f in ic and f not in content and
            (ia[f].date_time, ia[f].external_attr, ia[f].compress_type) !=
            (ic[f].date_time, ic[f].external_attr, ic[f].compress_type)]
    order = [i.filename for i in za.infolist()] != [i.filename for i in zc.infolist()]
    print(f"  {len(content)} of {len(ia)} files differ in content; {len(meta)} more only in zip "
          f"metadata (time, mode, compression); entry order {'differs' if order else 'same'}")
    for f in content[:8]:
        da, dc = za.read(f), zc.read(f)
        note = ""
        if f.endswith("RECORD"):
            ra = set(da.decode().splitlines()); rc = set(dc.decode().splitlines())
            note = "; RECORD rows differing: " + ", ".join(sorted(r.split(",")[0] for r in ra - rc)[:6])
        else:
            # The first differing byte, and printable context around it.
            i = next((k for k in range(min(len(da), len(dc))) if da[k] != dc[k]), min(len(da), len(dc)))
            ctx = lambda b: "".join(chr(x) if 32 <= x < 127 else "." for x in b[max(0, i - 24):i + 24])
            note = f"; sizes {len(da)}/{len(dc)}; first difference at byte {i}: A `{ctx(da)}` C `{ctx(dc)}`"
        print(f"  {f}{note}")
    for f in meta[:4]:
        print(f"  {f}: zip metadata A {ia[f].date_time} {oct(ia[f].external_attr >> 16)} / C {ic[f].date_time} {oct(ic[f].external_attr >> 16)}")
PY

# ---------------------------------------------------------------------------------------------
kill "$MIRRORS" 2>/dev/null || true
trap - EXIT
echo
echo "=== e2e-sources result"
grep '^mirror ' "$WORK/mirrors.log"
echo "build A (clean), per source package:"
cat "$WORK/table-A.txt"
echo "build B (warm, fresh lock):"
tail -n 1 "$WORK/table-B.txt"
echo "build C (clean) against A:"
tail -n 1 "$WORK/identity.txt"
grep -E '^(distributions|check:|FAILED|  [^ ].*: (import failed|console script))' "$WORK/check.log" || true
echo "total $(($(date +%s) - START))s"
[ "$CHECK_RC" = 0 ] || fail "comfypak check failed (log: $WORK/check.log)"
[ "$WARM_BUILT" = 0 ] || fail "the warm build built $WARM_BUILT sources instead of taking them from the build cache"
[ "${COMFYPAK_E2E_KEEP:-0}" = 1 ] || rm -rf --one-file-system "$WORK/cache-a" "$WORK/cache-c" "$WORK/mirrors"
echo "e2e-sources: OK"
