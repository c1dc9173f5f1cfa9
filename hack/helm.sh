#!/usr/bin/env bash
# Installs the pinned Helm with Go's ordinary client and prints the binary's absolute path as
# the last line. Cached under .cache/helm/<version>/ (git-ignored); a second run does nothing.
# Override the pin with HELM_VERSION=vX.Y.Z (a v3 release: the chart is apiVersion v2, which
# Helm 3 and 4 both read).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cache/helm/$HELM_VERSION"
bin="$dest/helm"

installed_version() {
  "$bin" version --template '{{ .Version }}' 2>/dev/null
}

if [ ! -x "$bin" ] || [ "$(installed_version)" != "$HELM_VERSION" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "hack/helm.sh: 'go' is not on PATH; it is needed to install Helm $HELM_VERSION" >&2
    exit 1
  fi
  echo "hack/helm.sh: installing Helm $HELM_VERSION with go install (a few minutes)" >&2
  mkdir -p "$dest"
  # `helm version` reads its version from these link-time variables; a plain go install
  # leaves them at the module's placeholder, and the check above would never match.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  CGO_ENABLED=0 GOBIN="$dest" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  if [ "$(installed_version)" != "$HELM_VERSION" ]; then
    echo "hack/helm.sh: $bin does not report $HELM_VERSION" >&2
    exit 1
  fi
fi
echo "$bin"
