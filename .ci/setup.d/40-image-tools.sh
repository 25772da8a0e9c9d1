# Image tools the pack and push tests check real outputs with (Debian packages):
#   skopeo          inspect / copy OCI layouts, docker archives and registry images
#   umoci           unpack an OCI layout into a rootfs
#   oci-image-tool  validate an OCI image layout against the image spec
#   docker-registry the reference registry server (run on 127.0.0.1 by tests/it/push.rs)
#   htpasswd        (apache2-utils) bcrypt password file for the registry's basic auth test
#   openssl         key, certificate and RS256 signatures for the registry's token auth test
# Sourced by .ci/run with `set -euo pipefail`; idempotent.
image_tools_missing=""
for tool in skopeo umoci oci-image-tool docker-registry htpasswd openssl; do
  command -v "$tool" >/dev/null 2>&1 || image_tools_missing="$image_tools_missing $tool"
done
if [ -n "$image_tools_missing" ]; then
  echo "installing image tools:$image_tools_missing"
  apt_marker="${TMPDIR:-/tmp}/comfypak-apt-updated"
  if [ ! -e "$apt_marker" ]; then
    apt-get update -qq
    touch "$apt_marker"
  fi
  # docker-registry's post-install starts a service where one can; tests start their own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    skopeo umoci oci-image-tool docker-registry apache2-utils openssl >/dev/null
fi
unset image_tools_missing tool
# Where the tests find the registry server binary (Debian names it docker-registry).
COMFYPAK_DOCKER_REGISTRY_BIN="${COMFYPAK_DOCKER_REGISTRY_BIN:-$(command -v docker-registry)}"
export COMFYPAK_DOCKER_REGISTRY_BIN
