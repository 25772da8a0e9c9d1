# The Debian testing roots with CPython 3.14 that the target-runtime tests run (tests/it/runtime.rs
# and the `comfypak check` tests): debootstrap minbase + python3.14 (~130 MB, about 3 minutes
# the first time), made by scripts/python-root.sh and cached under $TOOLS/python-root; exported
# as COMFYPAK_TEST_PYTHON_ROOT. Where aarch64 programs run (COMFYPAK_TEST_AARCH64=1 from
# 45-qemu.sh) also the arm64 root (unpacked on the host, nothing run under qemu: under a
# minute), exported as COMFYPAK_TEST_PYTHON_ROOT_AARCH64. Sourced by .ci/run with
# `set -euo pipefail`; idempotent.
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap"
  apt_marker="${TMPDIR:-/tmp}/comfypak-apt-updated"
  if [ ! -e "$apt_marker" ]; then
    apt-get update -qq
    touch "$apt_marker"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  unset apt_marker
fi
python_root_started=$(date +%s)
COMFYPAK_TEST_PYTHON_ROOT=$(bash scripts/python-root.sh "${TOOLS:-${COMFYPAK_CI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-ci}}/python-root" | tail -n 1)
export COMFYPAK_TEST_PYTHON_ROOT
echo "python root: $COMFYPAK_TEST_PYTHON_ROOT ($(($(date +%s) - python_root_started))s)"
if [ "${COMFYPAK_TEST_AARCH64:-0}" = 1 ]; then
  python_root_started=$(date +%s)
  COMFYPAK_TEST_PYTHON_ROOT_AARCH64=$(bash scripts/python-root.sh --arch arm64 "${TOOLS:-${COMFYPAK_CI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-ci}}/python-root" | tail -n 1)
  export COMFYPAK_TEST_PYTHON_ROOT_AARCH64
  echo "arm64 python root: $COMFYPAK_TEST_PYTHON_ROOT_AARCH64 ($(($(date +%s) - python_root_started))s)"
fi
# The build bases of the C-extension tests (tests/it/source_cext.rs): the same roots plus gcc,
# cmake and the Python headers (scripts/python-root.sh --build; ~0.6 GB and a few minutes each
# the first time, cached beside the plain roots), exported as COMFYPAK_TEST_BUILD_ROOT and,
# where aarch64 programs run, COMFYPAK_TEST_BUILD_ROOT_AARCH64.
python_root_started=$(date +%s)
COMFYPAK_TEST_BUILD_ROOT=$(bash scripts/python-root.sh --build "${TOOLS:-${COMFYPAK_CI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-ci}}/python-root" | tail -n 1)
export COMFYPAK_TEST_BUILD_ROOT
echo "build base: $COMFYPAK_TEST_BUILD_ROOT ($(($(date +%s) - python_root_started))s)"
if [ "${COMFYPAK_TEST_AARCH64:-0}" = 1 ]; then
  python_root_started=$(date +%s)
  COMFYPAK_TEST_BUILD_ROOT_AARCH64=$(bash scripts/python-root.sh --build --arch arm64 "${TOOLS:-${COMFYPAK_CI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-ci}}/python-root" | tail -n 1)
  export COMFYPAK_TEST_BUILD_ROOT_AARCH64
  echo "arm64 build base: $COMFYPAK_TEST_BUILD_ROOT_AARCH64 ($(($(date +%s) - python_root_started))s)"
fi
unset python_root_started
