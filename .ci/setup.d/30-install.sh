# The pip oracle of tests/it/install_oracle.rs (and the compile test of tests/it/install.rs):
# `pip install --target` from the CI tools venv that .ci/run creates ($COMFYPAK_ORACLE_PYTHON,
# pip already installed there). Sourced by .ci/run with `set -euo pipefail`; idempotent.
if ! "$COMFYPAK_ORACLE_PYTHON" -m pip --version >/dev/null 2>&1; then
  "$COMFYPAK_ORACLE_PYTHON" -m ensurepip --upgrade >/dev/null
  "$COMFYPAK_ORACLE_PYTHON" -m pip install --quiet --disable-pip-version-check 'pip>=25'
fi
"$COMFYPAK_ORACLE_PYTHON" -m pip --version
