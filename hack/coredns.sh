#!/usr/bin/env bash
# Installs the pinned, unmodified upstream CoreDNS with Go's ordinary client and prints the
# binary's absolute path as the last line. Cached under .cache/coredns/<version>/ (git-ignored);
# a second run does nothing. Override the pin with COREDNS_VERSION=vX.Y.Z.
set -euo pipefail

COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cache/coredns/$COREDNS_VERSION"
bin="$dest/coredns"

installed_version() {
  "$bin" -version 2>/dev/null | head -n1
}

if [ ! -x "$bin" ] || [ "$(installed_version)" != "CoreDNS-${COREDNS_VERSION#v}" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "hack/coredns.sh: 'go' is not on PATH; it is needed to install CoreDNS $COREDNS_VERSION" >&2
    exit 1
  fi
  echo "hack/coredns.sh: installing CoreDNS $COREDNS_VERSION with go install (a few minutes)" >&2
  mkdir -p "$dest"
  # Static, like upstream's release binaries, so the same file runs in a distroless image.
  CGO_ENABLED=0 GOBIN="$dest" go install "github.com/coredns/coredns@$COREDNS_VERSION" >&2
  if [ "$(installed_version)" != "CoreDNS-${COREDNS_VERSION#v}" ]; then
    echo "hack/coredns.sh: $bin does not report CoreDNS-${COREDNS_VERSION#v}" >&2
    exit 1
  fi
fi
echo "$bin"
