# qemu-user for the aarch64 half of the target-runtime tests (tests/it/runtime.rs, check.rs):
# installs qemu-user-static, mounts binfmt_misc and registers qemu-aarch64 with the F flag from
# /usr/lib/binfmt.d/qemu-aarch64.conf, where this machine lets us (root, binfmt_misc
# available). comfypak itself never registers it; this is test-machine setup. Exports
# COMFYPAK_TEST_AARCH64=1 when aarch64 programs run here, else 0 with the reason printed.
# Sourced by .ci/run with `set -euo pipefail`; idempotent.
qemu_reason=""
if [ "$(uname -m)" = aarch64 ]; then
  COMFYPAK_TEST_AARCH64=1
else
  if [ ! -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    echo "installing qemu-user-static"
    apt_marker="${TMPDIR:-/tmp}/comfypak-apt-updated"
    if [ ! -e "$apt_marker" ]; then
      apt-get update -qq
      touch "$apt_marker"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null ||
      qemu_reason="qemu-user-static could not be installed"
    unset apt_marker
  fi
  if [ -z "$qemu_reason" ] && [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
      qemu_reason="binfmt_misc cannot be mounted here"
  fi
  if [ -z "$qemu_reason" ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    sed -n '/^:/p' /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register 2>/dev/null ||
      qemu_reason="qemu-aarch64 cannot be registered with binfmt_misc here"
  fi
  if [ -z "$qemu_reason" ] && ! grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    qemu_reason="qemu-aarch64 is registered without the F flag"
  fi
  if [ -z "$qemu_reason" ]; then
    COMFYPAK_TEST_AARCH64=1
  else
    echo "note: no aarch64 runtime tests: $qemu_reason"
    COMFYPAK_TEST_AARCH64=0
  fi
fi
export COMFYPAK_TEST_AARCH64
echo "aarch64 programs run here: $COMFYPAK_TEST_AARCH64"
unset qemu_reason
