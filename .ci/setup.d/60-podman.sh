# podman and buildah (Debian packages), the container runtime that tests/e2e.sh and the benches
# (bench/vs-dockerfile.sh, bench/coldstart.sh) run images with. On the machines CI runs on, crun
# fails on the hybrid cgroup and podman's default rlimits are above what a container may raise,
# so this writes a containers.conf drop-in (test-machine setup, never part of the product):
#   [engine]     runtime = "runc"
#   [containers] default_ulimits = nofile and nproc capped at this shell's hard limits
# podman run, podman build and buildah all read it. Then it checks that
# `podman run --rm --network none` of the cached python root ($COMFYPAK_TEST_PYTHON_ROOT from
# 50-python-root.sh, imported once as an image) runs python3.14, and exports
#   COMFYPAK_TEST_PODMAN=1 when it does, else 0 with the reason printed;
#   COMFYPAK_TEST_PODMAN_IMAGE, the imported python root's image name (when it runs).
# Sourced by .ci/run with `set -euo pipefail`; idempotent (cheap when podman is installed).
podman_reason=""
podman_missing=""
for tool in podman buildah runc; do
  command -v "$tool" >/dev/null 2>&1 || podman_missing="$podman_missing $tool"
done
if [ -n "$podman_missing" ]; then
  echo "installing container tools:$podman_missing"
  apt_marker="${TMPDIR:-/tmp}/comfypak-apt-updated"
  if [ ! -e "$apt_marker" ]; then
    apt-get update -qq
    touch "$apt_marker"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman buildah runc uidmap >/dev/null || podman_reason="podman, buildah or runc could not be installed"
  unset apt_marker
fi

# The drop-in: system-wide when this shell may write /etc (CI runs as root), else per user.
if [ -z "$podman_reason" ]; then
  if [ "$(id -u)" = 0 ]; then
    podman_conf_dir=/etc/containers/containers.conf.d
  else
    podman_conf_dir="${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf.d"
  fi
  podman_nofile=20000
  podman_nproc=32768
  podman_hard=$(ulimit -Hn)
  if [ "$podman_hard" != unlimited ] && [ "$podman_hard" -lt "$podman_nofile" ]; then
    podman_nofile=$podman_hard
  fi
  podman_hard=$(ulimit -Hu)
  if [ "$podman_hard" != unlimited ] && [ "$podman_hard" -lt "$podman_nproc" ]; then
    podman_nproc=$podman_hard
  fi
  podman_conf=$(printf '%s\n' \
    '# Written by comfypak .ci/setup.d/60-podman.sh: crun fails on this machine (hybrid cgroup,' \
    '# rlimits it may not raise); runc with bounded rlimits works.' \
    '[containers]' \
    "default_ulimits = [\"nofile=$podman_nofile:$podman_nofile\", \"nproc=$podman_nproc:$podman_nproc\"]" \
    '' \
    '[engine]' \
    'runtime = "runc"')
  if [ "$(cat "$podman_conf_dir/60-comfypak-ci.conf" 2>/dev/null || true)" != "$podman_conf" ]; then
    if mkdir -p "$podman_conf_dir" &&
      printf '%s\n' "$podman_conf" >"$podman_conf_dir/60-comfypak-ci.conf.tmp" &&
      mv "$podman_conf_dir/60-comfypak-ci.conf.tmp" "$podman_conf_dir/60-comfypak-ci.conf"; then
      echo "wrote $podman_conf_dir/60-comfypak-ci.conf"
    else
      podman_reason="cannot write $podman_conf_dir/60-comfypak-ci.conf"
    fi
  fi
  unset podman_conf_dir podman_nofile podman_nproc podman_hard podman_conf
fi

# The check: the cached python root as an image (imported once, named after its cache folder).
COMFYPAK_TEST_PODMAN_IMAGE=""
if [ -z "$podman_reason" ]; then
  podman_root="${COMFYPAK_TEST_PYTHON_ROOT:-}"
  if [ -z "$podman_root" ] || [ ! -x "$podman_root/usr/bin/python3.14" ]; then
    podman_reason="no python root with /usr/bin/python3.14 (COMFYPAK_TEST_PYTHON_ROOT='$podman_root'; 50-python-root.sh makes it)"
  else
    COMFYPAK_TEST_PODMAN_IMAGE="localhost/comfypak-ci/python-root:$(basename "$podman_root" | sed 's/^root-//')"
    if ! podman image exists "$COMFYPAK_TEST_PODMAN_IMAGE" 2>/dev/null; then
      echo "importing $podman_root as $COMFYPAK_TEST_PODMAN_IMAGE"
      if ! tar -C "$podman_root" -c . |
        podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
          - "$COMFYPAK_TEST_PODMAN_IMAGE" >/dev/null; then
        podman_reason="podman import of $podman_root failed"
      fi
    fi
  fi
  if [ -z "$podman_reason" ]; then
    podman_out=$(timeout 120 podman run --rm --network none "$COMFYPAK_TEST_PODMAN_IMAGE" \
      /usr/bin/python3.14 -c 'import resource, sys; print(sys.version_info[:2], resource.getrlimit(resource.RLIMIT_NOFILE))' 2>&1) ||
      podman_reason="podman run --rm --network none $COMFYPAK_TEST_PODMAN_IMAGE failed: $(printf '%s' "$podman_out" | tail -n 3)"
    [ -n "$podman_reason" ] || echo "podman run: python $podman_out"
    unset podman_out
  fi
  unset podman_root
fi

if [ -z "$podman_reason" ]; then
  COMFYPAK_TEST_PODMAN=1
  podman --version
else
  echo "note: no podman tests: $podman_reason"
  COMFYPAK_TEST_PODMAN=0
  COMFYPAK_TEST_PODMAN_IMAGE=""
fi
export COMFYPAK_TEST_PODMAN COMFYPAK_TEST_PODMAN_IMAGE
echo "podman runs containers here: $COMFYPAK_TEST_PODMAN"
unset podman_reason podman_missing tool
