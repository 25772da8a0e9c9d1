# The Debian testing root with CPython 3.14 that the target-runtime tests run (tests/it/runtime.rs
# and the `comfypak check` tests): debootstrap minbase + python3.14 (~130 MB, about 3 minutes
# the first time), made by scripts/python-root.sh and cached under $TOOLS/python-root; exported
# as COMFYPAK_TEST_PYTHON_ROOT. Sourced by .ci/run with `set -euo pipefail`; idempotent.
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
unset python_root_started
