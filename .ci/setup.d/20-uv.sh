# uv, the PEP 751 reader the resolve tests check pylock.toml with (tests/it/resolve_lock.rs), and
# the baseline bench/resolve.sh times comfypak against. Installed from the Python package index
# into the CI tools venv. Sourced by .ci/run with `set -euo pipefail` after the venv exists
# ($TOOLS, $COMFYPAK_ORACLE_PYTHON); idempotent.
uv_venv="${TOOLS:-${COMFYPAK_CI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/comfypak-ci}}/venv"
if [ ! -x "$uv_venv/bin/python" ]; then
  python3 -m venv "$uv_venv"
fi
if ! "$uv_venv/bin/uv" --version 2>/dev/null | grep -Eq '^uv 0\.(9|[1-9][0-9])\.|^uv [1-9]'; then
  "$uv_venv/bin/python" -m pip install --quiet --disable-pip-version-check 'uv>=0.9,<0.10'
fi
COMFYPAK_UV="$uv_venv/bin/uv"
export COMFYPAK_UV
"$COMFYPAK_UV" --version
unset uv_venv
