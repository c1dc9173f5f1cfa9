#!/usr/bin/env bash
# Builds the pinned, unmodified CoreDNS for one ARCH (upstream's names) into OUT_DIR with only
# the plugins of coredns-plugins.txt compiled in: CoreDNS's documented way to choose plugins
# (its release source with plugin.cfg replaced, `go generate`, `go build`), static
# (CGO_ENABLED=0) and stripped as upstream's release binaries are. Used by the Dockerfile's Go
# stage and by hack/coredns.sh, so the image and the tests run the same build.
#
#   images/node-cache/build-coredns.sh ARCH VERSION OUT_DIR
#
# COREDNS_PLUGINS_FILE names the plugin list (default: coredns-plugins.txt beside this script);
# COREDNS_BUILD_DIR is where the source is copied and generated (default: a temporary
# directory, removed afterwards).
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 ARCH VERSION OUT_DIR" >&2
  exit 2
fi
arch="$1"
version="$2"
out="$3"
plugins_file="${COREDNS_PLUGINS_FILE:-$(dirname "${BASH_SOURCE[0]}")/coredns-plugins.txt}"

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
[ -r "$plugins_file" ] || {
  echo "build-coredns.sh: plugin list $plugins_file: not readable" >&2
  exit 1
}

# The names of the list: comments and blank lines dropped, one name a line.
wanted=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$plugins_file" | sort)
if [ -n "$(uniq -d <<<"$wanted")" ]; then
  echo "build-coredns.sh: $plugins_file names $(uniq -d <<<"$wanted" | tr '\n' ' ')more than once" >&2
  exit 1
fi

# The release source as the module proxy serves it (its go.sum pins every dependency).
src=$(go mod download -json "github.com/coredns/coredns@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -f "$src/plugin.cfg" ]; then
  echo "build-coredns.sh: go mod download github.com/coredns/coredns@$version gave no source directory" >&2
  exit 1
fi

if [ -n "${COREDNS_BUILD_DIR:-}" ]; then
  work="$COREDNS_BUILD_DIR"
  rm -rf "$work"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
# The module cache is read-only; go generate writes into the copy.
cp -R "$src/." "$work/"
chmod -R u+w "$work"

# plugin.cfg's line order is the order plugins see a query, so keep upstream's lines, in
# upstream's order, for the names we want; a name upstream does not have is a typo.
awk -F: 'NR == FNR { want[$0] = 1; next }
  /^#/ || NF < 2 { next }
  ($1 in want) { print; seen[$1] = 1 }
  END { for (name in want) if (!(name in seen)) { print name > "/dev/stderr"; bad = 1 } exit bad }' \
  <(printf '%s\n' "$wanted") "$src/plugin.cfg" >"$work/plugin.cfg" 2>"$work/unknown-plugins" || {
  echo "build-coredns.sh: $plugins_file: not plugins of CoreDNS $version's plugin.cfg:" \
    "$(tr '\n' ' ' <"$work/unknown-plugins")" >&2
  exit 1
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$work"
# Generation runs on the build machine; only the build targets ARCH. No VCS stamp: the copy
# may sit inside another repository's work tree (this one's .cache/).
go generate coredns.go
CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOARM="$goarm" \
  go build -buildvcs=false -trimpath -tags grpcnotrace -ldflags "-s -w" -o "$out/coredns" .
echo "$out/coredns"
