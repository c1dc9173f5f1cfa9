#!/usr/bin/env bash
# The pinned, unmodified upstream CoreDNS, built with Go's ordinary client; prints the binary's
# absolute path as the last line. Override the pin with COREDNS_VERSION=vX.Y.Z.
#
#   hack/coredns.sh          node-cache's build: only the plugins of
#                            images/node-cache/coredns-plugins.txt, built by the image's own
#                            script (images/node-cache/build-coredns.sh). Cached under
#                            .cache/coredns/<version>-<hash of the list and that script>/.
#   hack/coredns.sh --full   the release build with every plugin (`kubernetes` included), for
#                            the real-cluster lab's kube-dns. Cached under .cache/coredns/<version>/.
#
# A second run does nothing; a changed plugin list rebuilds.
set -euo pipefail

COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins_file="$root/images/node-cache/coredns-plugins.txt"
build_script="$root/images/node-cache/build-coredns.sh"

full=0
case "${1:-}" in
  "") ;;
  --full) full=1 ;;
  *)
    echo "hack/coredns.sh: unknown argument '$1' (usage: hack/coredns.sh [--full])" >&2
    exit 2
    ;;
esac

if [ "$full" = 1 ]; then
  dest="$root/.cache/coredns/$COREDNS_VERSION"
else
  hash=$(cat "$plugins_file" "$build_script" | sha256sum | cut -c1-12)
  dest="$root/.cache/coredns/$COREDNS_VERSION-$hash"
fi
bin="$dest/coredns"

installed_version() {
  "$bin" -version 2>/dev/null | head -n1
}

if [ -x "$bin" ] && [ "$(installed_version)" = "CoreDNS-${COREDNS_VERSION#v}" ]; then
  echo "$bin"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "hack/coredns.sh: 'go' is not on PATH; it is needed to build CoreDNS $COREDNS_VERSION" >&2
  exit 1
fi
mkdir -p "$dest"
if [ "$full" = 1 ]; then
  echo "hack/coredns.sh: installing CoreDNS $COREDNS_VERSION (every plugin) with go install (a few minutes)" >&2
  # Static, like upstream's release binaries, so the same file runs in a distroless image.
  CGO_ENABLED=0 GOBIN="$dest" go install "github.com/coredns/coredns@$COREDNS_VERSION" >&2
else
  echo "hack/coredns.sh: building CoreDNS $COREDNS_VERSION with the plugins of ${plugins_file#"$root"/} (a few minutes)" >&2
  # Built into a temporary name first: an interrupted build never leaves a binary that the
  # check above would take for a finished one.
  rm -rf "$dest/partial"
  COREDNS_PLUGINS_FILE="$plugins_file" COREDNS_BUILD_DIR="$dest/src" \
    "$build_script" amd64 "$COREDNS_VERSION" "$dest/partial" >&2
  rm -rf "$dest/src"
  want=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$plugins_file" | sort)
  have=$("$dest/partial/coredns" -plugins | sed '/^$/d' | sort)
  if [ "$want" != "$have" ]; then
    echo "hack/coredns.sh: the build's -plugins differ from ${plugins_file#"$root"/}:" >&2
    diff <(echo "$want") <(echo "$have") >&2 || true
    exit 1
  fi
  mv "$dest/partial/coredns" "$bin"
  rmdir "$dest/partial"
fi
if [ "$(installed_version)" != "CoreDNS-${COREDNS_VERSION#v}" ]; then
  echo "hack/coredns.sh: $bin does not report CoreDNS-${COREDNS_VERSION#v}" >&2
  exit 1
fi
echo "$bin"
