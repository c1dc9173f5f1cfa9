#!/usr/bin/env bash
# Builds the pinned, unmodified CoreDNS for one ARCH (upstream's names) into OUT_DIR with Go's
# ordinary client, static (CGO_ENABLED=0) like upstream's release binaries. Used by the
# Dockerfile's Go stage; hack/coredns.sh is the host's equivalent for amd64.
#
#   images/node-cache/build-coredns.sh ARCH VERSION OUT_DIR
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 ARCH VERSION OUT_DIR" >&2
  exit 2
fi
arch="$1"
version="$2"
out="$3"

case "$arch" in
  amd64 | arm64 | ppc64le | s390x) goarm="" ;;
  arm) goarm=7 ;;
  *)
    echo "build-coredns.sh: unknown ARCH '$arch' (amd64 arm arm64 ppc64le s390x)" >&2
    exit 2
    ;;
esac
command -v go >/dev/null 2>&1 || {
  echo "build-coredns.sh: 'go' is not on PATH" >&2
  exit 1
}

gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
# A cross build cannot use GOBIN: go install puts it under bin/linux_ARCH instead.
GOPATH="$gopath" GOMODCACHE="$(go env GOMODCACHE)" CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOARM="$goarm" \
  go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$version"
bin="$gopath/bin/coredns"
[ -x "$bin" ] || bin="$gopath/bin/linux_$arch/coredns"
mkdir -p "$out"
cp "$bin" "$out/coredns"
echo "$out/coredns"
