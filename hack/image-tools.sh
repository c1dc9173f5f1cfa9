#!/usr/bin/env bash
# Installs the container tools the packaging targets use when no Docker engine is present:
# buildah (build), podman + runc (run), skopeo (inspect/copy), from Debian without
# recommends. Does nothing when present.
set -euo pipefail

exec "$(dirname "${BASH_SOURCE[0]}")/deps.sh" buildah=buildah podman=podman runc=runc skopeo=skopeo
