#!/usr/bin/env bash
# Source builds: comfypak against `pip wheel --no-deps` of the same sdists, in the same build
# base, from one run.
#
#   COMFYPAK_LIVE=1 [PACKAGES="fvcore func-timeout ..."] bench/sources.sh
#
# The packages are the real stack's sdist-only ones (pak/pak7.txt, pak/pak8.txt); by default
# dlib fairscale func-timeout fvcore openai-whisper, and iopath, fvcore's sdist-only dependency,
# which comfypak builds with it. groundingdino-py is left out of the default: its setup.py
# imports torch without declaring it, so `pip wheel` cannot build it in isolation at all (pip
# users install torch first and pass --no-build-isolation; comfypak builds it with
# `[build.match-runtime]`, see tests/e2e-sources.sh).
#
# In the build base of scripts/python-root.sh --build (Debian testing + python3.14, gcc, cmake):
#   comfypak  `comfypak resolve` of a one-layer stack listing PACKAGES (resolution, the sdists'
#             metadata, the builds in the target runtime's sandbox); per package, the build time
#             comfypak prints;
#   pip       `pip wheel --no-deps NAME==VERSION` (the version comfypak
#             resolved), one package after another, run by the base's python3.14 in a chroot of
#             the same base (pip from its wheel; build isolation as pip does by default).
# Cold: both with empty caches (comfypak's whole cache folder; pip's --cache-dir), so both
# download the sdists and their build requirements. Warm: again with the caches of the cold
# run and a fresh lock (comfypak takes every wheel from its build cache; pip from its wheel
# cache). Builds get the same parallelism (MAKEFLAGS / CMAKE_BUILD_PARALLEL_LEVEL = cores).
# ROUNDS=N (default 1) repeats the cold pair N times, each with empty caches, in alternating
# order (comfypak then pip, then pip then comfypak, ...: with 2 rounds a drift of the machine's
# speed over the run cancels out of the sums); the cold ratio is of the sums over the rounds.
# Goals (issue 15): cold comfypak / pip <= 1.0x; warm comfypak / cold pip <= 0.05x (a rebuild
# with the cache against a rebuild without one, which is what an image build without a cache
# mount does); warm against pip's own warm cache is printed too.
#
# Needs root (chroot, mounts), debootstrap, python3, the network (public index, Debian mirror).
# Settings: PACKAGES, ROUNDS, BENCH_DIR (work folder, default /tmp/comfypak-bench-sources, removed at
# the end unless KEEP=1), COMFYPAK_BIN (else `cargo build --release`), BASE_CACHE (where the
# build base is cached, default ~/.cache/comfypak-ci/python-root), BUILD_TIMEOUT (comfypak's
# `[build] timeout`, default 2h: dlib's build under load took longer than the default 30m;
# pip has no limit).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
[ "${COMFYPAK_LIVE:-0}" = 1 ] || { echo "bench/sources.sh: set COMFYPAK_LIVE=1 (it builds from the public index)"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "bench/sources.sh: run as root (chroot and mounts)" >&2; exit 1; }
PACKAGES=${PACKAGES:-dlib fairscale func-timeout fvcore iopath openai-whisper}
W=${BENCH_DIR:-/tmp/comfypak-bench-sources}
PYPI_URL=$(sed -n 's/^url[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$REPO/indexes/pypi.toml" | head -n 1)
JOBS=$(nproc)
ROUNDS=${ROUNDS:-1}
case "$ROUNDS" in "" | *[!0-9]* | 0) echo "bench/sources.sh: ROUNDS must be a whole number >= 1, not '$ROUNDS'" >&2; exit 1 ;; esac
if [ -n "${COMFYPAK_BIN:-}" ]; then
  COMFYPAK=$COMFYPAK_BIN
else
  cargo build --release --locked --bin comfypak 2>&1 | tail -n 1
  COMFYPAK=${CARGO_TARGET_DIR:-$REPO/target}/release/comfypak
fi
ROOT=$(bash "$REPO/scripts/python-root.sh" --build "${BASE_CACHE:-$HOME/.cache/comfypak-ci/python-root}" | tail -n 1)
rm -rf --one-file-system "$W"
mkdir -p "$W/stack" "$W/pip"
echo "packages: $PACKAGES"
echo "build base: $ROOT; $JOBS cores; load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the comfypak side: a one-layer stack of PACKAGES, built on the build base -------------
printf '%s\n' $PACKAGES >"$W/stack/sources.txt"
cat >"$W/stack/stack.toml" <<EOF
[stack]
name = "bench-sources"
index-dir = "$REPO/indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/comfyui/venv"
torch-backend = "cu130"

[indexes]
default = ["pypi"]

[indexes.pins]
pytorch-cu130 = ["torch", "torchvision", "torchaudio", "triton", "cuda-*", "nvidia-*"]

[base]
path = "$ROOT"

[build]
timeout = "${BUILD_TIMEOUT:-2h}"

[[layer]]
name = "sources"
paks = ["sources.txt"]
EOF
# cpu_run FILE CMD...: runs CMD and appends the CPU seconds (user, system) of it and every
# process under it that was waited for (the builds' compilers included) to FILE. CPU time
# says what each side's work costs whatever else the machine runs; wall time does not.
cpu_run() {
  python3 -c 'import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
used = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "a").write(f"{used.ru_utime:.1f} {used.ru_stime:.1f}\n")
sys.exit(code)' "$@"
}
comfypak_run() { # NAME: resolve with a fresh lock into $W/comfypak-NAME.log; prints seconds
  local t0 t1
  rm -f "$W/pylock.toml"
  t0=$(date +%s.%N)
  cpu_run "$W/comfypak-$1.cpu" "$COMFYPAK" resolve --stack "$W/stack" -o "$W/pylock.toml" --cache-dir "$W/comfypak-cache" \
    --index "pytorch-cu130=$PYPI_URL" >"$W/comfypak-$1.log" 2>&1 ||
    { tail -n 30 "$W/comfypak-$1.log" >&2; echo "bench/sources.sh: comfypak resolve ($1) failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

# ---- the pip side: pip from its wheel, run by the base's python3.14 in a chroot ------------
python3 - "$PYPI_URL" "$W/pip" <<'PY'
import hashlib, re, sys, urllib.parse, urllib.request
index, out = sys.argv[1].rstrip("/") + "/pip/", sys.argv[2]
page = urllib.request.urlopen(index, timeout=60).read().decode()
wheels = [h for h in re.findall(r'href="([^"]+)"', page) if re.search(r"/pip-[0-9.]+-py3-none-any\.whl#", h)]
url, frag = urllib.parse.urldefrag(urllib.parse.urljoin(index, wheels[-1]))
data = urllib.request.urlopen(url, timeout=120).read()
assert hashlib.sha256(data).hexdigest() == frag.split("sha256=")[1], "pip wheel hash"
open(f"{out}/pip.whl", "wb").write(data)
print("pip:", url.rsplit("/", 1)[1])
PY
# One pip command in a private mount namespace: the base with /proc, /dev, this host's DNS and
# CA bundle (the network goes through a TLS-inspecting proxy here) and $W/pip at /mnt.
# `--cpu FILE` first: its CPU time goes to FILE (cpu_run).
pip_in_base() {
  local measure=()
  if [ "$1" = --cpu ]; then measure=(cpu_run "$2"); shift 2; fi
  "${measure[@]}" unshare -m --propagation private sh -c '
    set -e
    root=$1; w=$2; shift 2
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
    mount --bind /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    mount --bind "$w" "$root/mnt"
    exec chroot "$root" env -i PATH=/usr/bin:/bin HOME=/mnt/home TMPDIR=/mnt/tmp LC_ALL=C.UTF-8 \
      MAKEFLAGS=-j'"$JOBS"' CMAKE_BUILD_PARALLEL_LEVEL='"$JOBS"' PIP_DISABLE_PIP_VERSION_CHECK=1 \
      SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$@"
  ' sh "$ROOT" "$W/pip" "$@"
}
mkdir -p "$W/pip/home" "$W/pip/tmp"
pip_run() { # NAME: one pip wheel per package into $W/pip-NAME.times; prints total seconds
  local total=0 t0 t1 spec
  : >"$W/pip-$1.times"
  for spec in $(cat "$W/specs.txt"); do
    rm -rf "$W/pip/out"
    t0=$(date +%s.%N)
    pip_in_base --cpu "$W/pip-$1.cpu" python3.14 /mnt/pip.whl/pip wheel --no-deps \
      --index-url "$PYPI_URL" --cache-dir /mnt/cache -w /mnt/out "$spec" >>"$W/pip-$1.log" 2>&1 ||
      { tail -n 30 "$W/pip-$1.log" >&2; echo "bench/sources.sh: pip wheel $spec ($1) failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "${spec%%==*} $(echo "$t1 - $t0" | bc)" >>"$W/pip-$1.times"
    total=$(echo "$total + $t1 - $t0" | bc)
  done
  echo "$total"
}

# ---- cold (ROUNDS pairs, alternating), then warm ------------------------------------------
# cold_round NAME FIRST: one cold pair with empty caches; FIRST (comfypak or pip) goes first.
# The wall seconds go to $W/wall-NAME ("comfypak S" and "pip S").
cold_round() {
  local c p
  rm -rf "$W/comfypak-cache" "$W/pip/cache"
  if [ "$2" = comfypak ] || [ ! -s "$W/specs.txt" ]; then
    c=$(comfypak_run "$1")
    write_specs
    p=$(pip_run "$1")
  else
    p=$(pip_run "$1")
    c=$(comfypak_run "$1")
  fi
  printf 'comfypak %s\npip %s\n' "$c" "$p" >"$W/wall-$1"
  echo "$1 ($2 first): comfypak ${c}s, pip ${p}s; load $(cut -d' ' -f1-3 /proc/loadavg)"
}
# What comfypak built (name==version), which pip builds too.
write_specs() {
  python3 - "$W/pylock.toml" >"$W/specs.txt" <<'PY'
import sys, tomllib
for p in tomllib.load(open(sys.argv[1], "rb"))["packages"]:
    if p.get("tool", {}).get("comfypak", {}).get("built"):
        print(f"{p['name']}=={p['version']}")
PY
}
rm -f "$W/specs.txt"
ROUND_NAMES=""
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then first=comfypak; else first=pip; fi
  cold_round "cold$r" "$first"
  if [ "$r" = 1 ]; then echo "comfypak built: $(tr '\n' ' ' <"$W/specs.txt")"; fi
  ROUND_NAMES="$ROUND_NAMES cold$r"
done
# Warm: the caches of the last cold round.
C_WARM=$(comfypak_run warm)
P_WARM=$(pip_run warm)
printf 'comfypak %s\npip %s\n' "$C_WARM" "$P_WARM" >"$W/wall-warm"

python3 - "$W" $ROUND_NAMES <<'PY'
import re, sys
w, rounds = sys.argv[1], sys.argv[2:]
def comfypak(name):
    out = {}
    for line in open(f"{w}/comfypak-{name}.log"):
        m = re.match(r"^(\S+): \S+\.whl (built|from the build cache) in ([0-9.]+)s$", line.strip())
        if m:
            out[m.group(1)] = float(m.group(3))
    return out
def pip(name):
    return {l.split()[0]: float(l.split()[1]) for l in open(f"{w}/pip-{name}.times")}
def wall(name):
    return {l.split()[0]: float(l.split()[1]) for l in open(f"{w}/wall-{name}")}
def cpu(side, name):
    rows = [list(map(float, l.split())) for l in open(f"{w}/{side}-{name}.cpu")]
    return sum(r[0] for r in rows), sum(r[1] for r in rows)
cw, pw = comfypak("warm"), pip("warm")
for name in rounds:
    cc, pc = comfypak(name), pip(name)
    print()
    print(f"{name}:")
    print(f"{'package':<16} {'comfypak cold':>14} {'pip cold':>9} {'ratio':>6} {'comfypak warm':>14} {'pip warm':>9}")
    for pkg in pc:
        c = cc.get(pkg, float("nan"))
        print(f"{pkg:<16} {c:>13.1f}s {pc[pkg]:>8.1f}s {c / pc[pkg]:>5.2f}x {cw.get(pkg, float('nan')):>13.1f}s {pw[pkg]:>8.1f}s")
    sb = sum(cc.get(n, 0) for n in pc)
    print(f"{'builds, summed':<16} {sb:>13.1f}s {sum(pc.values()):>8.1f}s {sb / sum(pc.values()):>5.2f}x {sum(cw.values()):>13.1f}s {sum(pw.values()):>8.1f}s")
    wc, ww = wall(name), wall("warm")
    print(f"{'whole command':<16} {wc['comfypak']:>13.1f}s {wc['pip']:>8.1f}s {wc['comfypak'] / wc['pip']:>5.2f}x {ww['comfypak']:>13.1f}s {ww['pip']:>8.1f}s")
print()
print("(comfypak's whole command also resolves every runtime dependency and prepares the sdists' metadata; pip's builds one named sdist at a time)")
for name in rounds + ["warm"]:
    cu, cs = cpu("comfypak", name)
    pu, ps = cpu("pip", name)
    print(f"CPU, {name}: comfypak {cu:.1f}s user + {cs:.1f}s system, pip {pu:.1f}s + {ps:.1f}s: {(cu + cs) / (pu + ps):.2f}x")
c_cold = sum(wall(n)["comfypak"] for n in rounds)
p_cold = sum(wall(n)["pip"] for n in rounds)
c_warm, p_warm = wall("warm")["comfypak"], wall("warm")["pip"]
p_cold_mean = p_cold / len(rounds)
per = ", ".join(f"{wall(n)['comfypak'] / wall(n)['pip']:.2f}x" for n in rounds)
print(f"cold:  comfypak / pip = {c_cold / p_cold:.2f}x over {len(rounds)} round(s) ({per}) (goal <= 1.0x: {'met' if c_cold / p_cold <= 1.0 else 'NOT met'})")
print(f"warm:  comfypak warm / pip cold = {c_warm / p_cold_mean:.3f}x (goal <= 0.05x: {'met' if c_warm / p_cold_mean <= 0.05 else 'NOT met'})")
print(f"       comfypak warm / pip warm (pip's wheel cache) = {c_warm / p_warm:.2f}x")
PY
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${KEEP:-0}" = 1 ] || rm -rf --one-file-system "$W"
