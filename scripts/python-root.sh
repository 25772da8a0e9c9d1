#!/usr/bin/env bash
# Builds a small Debian root with CPython 3.14 (Debian testing, minbase + python3.14 and any
# extra packages), cached, for use as a comfypak base (`--base DIR` or `[base] root = "DIR"`).
#
#   scripts/python-root.sh [--arch amd64|arm64] [--packages "pkg ..."] [--build] OUTPUT_PARENT
#
# --build makes a build base instead: the same root plus what source builds (PEP 517 backends
# compiling C/C++ extensions: dlib, insightface, groundingdino-py, ...) need from the system:
#   build-essential  gcc, g++, make and the C library's headers
#   cmake            dlib's setup.py drives a CMake build
#   ninja-build      torch's cpp_extension builds with ninja when it finds it (else one file at a time)
#   python3.14-dev   Python.h and the python3.14-config of the target interpreter
#   pkg-config       backends that look their libraries up with it
#   git              setuptools-scm and friends read the version of a git checkout with it
# It lives at OUTPUT_PARENT/build-root-SUITE-ARCH-KEY, apart from the plain roots (neither removes
# the other).
#
# Prints the root's path on the last line of stdout. The root lives at
# OUTPUT_PARENT/root-SUITE-ARCH-KEY, where KEY hashes the suite, mirror, architecture and package
# list; a complete root carries a `.python-root-complete` marker and is reused as it is, a
# partial one (an interrupted run) is removed and built again. Needs root and debootstrap. The
# foreign architecture (arm64 on x86_64) is unpacked on the host (debootstrap --foreign resolves
# and downloads the packages; every .deb is extracted without running maintainer scripts; only
# the standard library's bytecode is compiled under qemu), a minute or two instead of the hour
# the second stage takes under qemu; it needs qemu-user registered with binfmt_misc (flag F),
# which this script checks and never registers. A foreign root also gets the links
# update-alternatives would have made (awk, which, pager, ...; in a build base cc, c++, cpp:
# CMake and make call cc), as a root made by Debian's own second stage has them.
# Settings (environment):
#   PYTHON_ROOT_SUITE   Debian suite with python3.14 (default: testing)
#   PYTHON_ROOT_MIRROR  Debian mirror URL (default: the first Debian one in apt's sources)
set -euo pipefail

ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
EXTRA=""
BUILD=""
while [ $# -gt 1 ]; do
  case "$1" in
    --arch) ARCH=$2; shift 2 ;;
    --packages) EXTRA=$2; shift 2 ;;
    --build) BUILD=1; shift ;;
    *) echo "python-root.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# = 1 ] || { echo "usage: python-root.sh [--arch amd64|arm64] [--packages LIST] [--build] OUTPUT_PARENT" >&2; exit 2; }
OUT=$1
SUITE=${PYTHON_ROOT_SUITE:-testing}

debian_mirror() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' \
    -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
    "${files[@]}" | tr ' ' '\n' | grep -E '^(https?|file)://.*/debian/?$' | head -n 1 | sed 's#/$##'
}
MIRROR=${PYTHON_ROOT_MIRROR:-$(debian_mirror)}
[ -n "$MIRROR" ] || { echo "python-root.sh: no Debian mirror in apt's sources; set PYTHON_ROOT_MIRROR" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "python-root.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }

PACKAGES="python3.14 $EXTRA"
PREFIX=root
if [ -n "$BUILD" ]; then
  PACKAGES="$PACKAGES build-essential cmake ninja-build python3.14-dev pkg-config git ca-certificates"
  PREFIX=build-root
fi
PACKAGES=$(echo $PACKAGES)
FOREIGN=""
HOST_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
if [ "$ARCH" != "$HOST_ARCH" ]; then
  case "$ARCH" in arm64) qemu=qemu-aarch64 ;; amd64) qemu=qemu-x86_64 ;; *) qemu=qemu-$ARCH ;; esac
  handler=/proc/sys/fs/binfmt_misc/$qemu
  if [ ! -e "$handler" ] || ! grep -q '^enabled' "$handler" || ! grep -q '^flags:.*F' "$handler"; then
    echo "python-root.sh: $ARCH needs $qemu registered with binfmt_misc (flag F):" >&2
    echo "  apt-get install qemu-user-static binfmt-support  (or: .ci/setup.d/45-qemu.sh)" >&2
    exit 1
  fi
  FOREIGN=1
fi

# The foreign root is made another way (unpacked on the host), so it has its own key.
METHOD=python-root-v1
[ -z "$FOREIGN" ] || METHOD=python-root-v2-unpacked
# A foreign root with ca-certificates gets the CA bundle its postinst would make (below).
case " $PACKAGES " in *" ca-certificates "*) [ -z "$FOREIGN" ] || METHOD=$METHOD+ca-bundle ;; esac
# A foreign root gets the alternatives links its postinsts would make (below).
[ -z "$FOREIGN" ] || METHOD=$METHOD+alternatives
KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$ARCH" "$PACKAGES" "$METHOD" | sha256sum | cut -c1-12)
ROOT=$OUT/$PREFIX-$SUITE-$ARCH-$KEY
mkdir -p "$OUT"
if [ -f "$ROOT/.python-root-complete" ]; then
  echo "$ROOT"
  exit 0
fi
# Roots of this suite and architecture made from other package lists or mirrors go.
for old in "$OUT"/"$PREFIX"-"$SUITE"-"$ARCH"-*; do
  [ -e "$old" ] && rm -rf --one-file-system "$old"
done
echo "python-root.sh: debootstrap $SUITE $ARCH minbase + $PACKAGES from $MIRROR" >&2
LOG=$OUT/debootstrap-$PREFIX-$ARCH.log
if [ -n "$FOREIGN" ]; then
  # The foreign architecture: debootstrap's first stage resolves and downloads the package
  # closure and unpacks the essential set; every downloaded .deb is then unpacked on the host
  # (no maintainer scripts, nothing run under qemu: the second stage took over an hour there).
  # What the scripts would have made that Python needs: /etc/passwd and /etc/group.
  debootstrap --arch="$ARCH" --foreign --variant=minbase --include="${PACKAGES// /,}" \
    "$SUITE" "$ROOT.partial" "$MIRROR" >"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2
    echo "python-root.sh: debootstrap --foreign failed (log: $LOG)" >&2
    exit 1
  }
  for deb in "$ROOT.partial"/var/cache/apt/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$ROOT.partial" >>"$LOG" 2>&1 || {
      echo "python-root.sh: unpacking $deb failed (log: $LOG)" >&2
      exit 1
    }
  done
  for f in passwd group; do
    [ -s "$ROOT.partial/etc/$f" ] || cp "$ROOT.partial/usr/share/base-passwd/$f.master" "$ROOT.partial/etc/$f"
  done
  rm -rf "$ROOT.partial/debootstrap"
  # What ca-certificates' postinst would have made: /etc/ca-certificates.conf (every shipped
  # certificate enabled) and, by update-ca-certificates under qemu, the bundle
  # /etc/ssl/certs/ca-certificates.crt that TLS clients in the root read (pygit2 loads it at
  # import).
  if [ -x "$ROOT.partial/usr/sbin/update-ca-certificates" ]; then
    [ -s "$ROOT.partial/etc/ca-certificates.conf" ] ||
      (cd "$ROOT.partial/usr/share/ca-certificates" && find . -name '*.crt' | sed 's#^\./##' | LC_ALL=C sort) \
        >"$ROOT.partial/etc/ca-certificates.conf"
    chroot "$ROOT.partial" /usr/sbin/update-ca-certificates --fresh >>"$LOG" 2>&1 || {
      tail -n 30 "$LOG" >&2
      echo "python-root.sh: update-ca-certificates under qemu failed (log: $LOG)" >&2
      exit 1
    }
  fi
  # What update-alternatives in the postinsts would have made: the names scripts and, in a
  # build base, make, CMake, configure scripts and setup.py files call (cc and c++ before gcc
  # and g++, awk, which), as Debian makes them (LINK -> /etc/alternatives/NAME -> PATH), where
  # PATH exists (so a plain root gets awk and which, not cc).
  mkdir -p "$ROOT.partial/etc/alternatives"
  while read -r name link path; do
    [ -e "$ROOT.partial$path" ] || continue
    { [ -e "$ROOT.partial$link" ] || [ -L "$ROOT.partial$link" ]; } && continue
    ln -sfn "$path" "$ROOT.partial/etc/alternatives/$name"
    ln -s "/etc/alternatives/$name" "$ROOT.partial$link"
  done <<'ALTERNATIVES'
cc /usr/bin/cc /usr/bin/gcc
c++ /usr/bin/c++ /usr/bin/g++
c89 /usr/bin/c89 /usr/bin/c89-gcc
c99 /usr/bin/c99 /usr/bin/c99-gcc
cpp /usr/lib/cpp /usr/bin/cpp
awk /usr/bin/awk /usr/bin/mawk
nawk /usr/bin/nawk /usr/bin/mawk
which /usr/bin/which /usr/bin/which.debianutils
lzma /usr/bin/lzma /usr/bin/xz
unlzma /usr/bin/unlzma /usr/bin/unxz
lzcat /usr/bin/lzcat /usr/bin/xzcat
pager /usr/bin/pager /usr/bin/more
rmt /usr/sbin/rmt /usr/sbin/rmt-tar
ALTERNATIVES
  chroot "$ROOT.partial" /usr/bin/which python3.14 >>"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2
    echo "python-root.sh: the root's which (an alternatives link) does not run under qemu (log: $LOG)" >&2
    exit 1
  }
  if [ -n "$BUILD" ]; then
    chroot "$ROOT.partial" /usr/bin/cc --version >>"$LOG" 2>&1 || {
      tail -n 30 "$LOG" >&2
      echo "python-root.sh: the build base's cc does not run under qemu (log: $LOG)" >&2
      exit 1
    }
  fi
  # The first stage links /proc to the host's (for its chroot); a container mounts its own there.
  if [ -L "$ROOT.partial/proc" ]; then
    rm "$ROOT.partial/proc"
    mkdir "$ROOT.partial/proc"
  fi
  # What python3.14's postinst would have done (py3compile): the standard library's bytecode,
  # without which every start of the interpreter compiles what it imports (tens of seconds
  # under qemu, and nothing can write it in a read-only base). The one step run under qemu.
  chroot "$ROOT.partial" /usr/bin/python3.14 -E -S -m compileall -q -j 0 -x '/test/|/idlelib/' \
    /usr/lib/python3.14 >>"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2
    echo "python-root.sh: compiling the standard library under qemu failed (log: $LOG)" >&2
    exit 1
  }
else
  debootstrap --arch="$ARCH" --variant=minbase --include="${PACKAGES// /,}" \
    "$SUITE" "$ROOT.partial" "$MIRROR" >"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2
    echo "python-root.sh: debootstrap failed (log: $LOG)" >&2
    exit 1
  }
fi
# A base holds directories, files and links only: device nodes go (the sandbox mounts its own
# /dev). Downloaded .debs, apt lists, docs and man pages are not needed to run Python.
find "$ROOT.partial/dev" -mindepth 1 -delete
find "$ROOT.partial/var/cache/apt/archives" -name '*.deb' -delete
find "$ROOT.partial/var/lib/apt/lists" -mindepth 1 -type f -delete
rm -rf "$ROOT.partial/usr/share/doc" "$ROOT.partial/usr/share/man" "$ROOT.partial/usr/share/info" \
  "$ROOT.partial/usr/share/locale"
special=$(find "$ROOT.partial" -xdev \( -type b -o -type c -o -type p -o -type s \) | head -n 5)
[ -z "$special" ] || { echo "python-root.sh: special files left in the root: $special" >&2; exit 1; }
touch "$ROOT.partial/.python-root-complete"
mv "$ROOT.partial" "$ROOT"
echo "$ROOT"
