#!/usr/bin/env bash
# Builds the lab's etcd and the multi-call Kubernetes binary (kube-apiserver, controller-manager,
# scheduler, kubelet, kube-proxy, kubectl) from the Go module proxy into $KUBE_LAB_CACHE/bin.
# The versions are the wrappers' go.mod files (the one place they are pinned); a binary is
# rebuilt only when its wrapper's go.mod, go.sum or main.go changed.
#
#   hack/kube-lab/build.sh [etcd|kube ...]   (default: both)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/kube-lab/env.sh
. "$here/env.sh"

export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || { echo "kube-lab build: no go on PATH (needs Go >= 1.26)" >&2; exit 1; }
mkdir -p "$BIN"

# The version a wrapper's go.mod requires for MODULE.
required_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$2"
}

# Content hash of a wrapper's inputs: the stamp beside the binary says what it was built from.
inputs_hash() {
  cat "$1/go.mod" "$1/go.sum" "$1/main.go" | sha256sum | cut -d' ' -f1
}

build_one() { # NAME WRAPPER_DIR LDFLAGS
  local name=$1 dir=$2 ldflags=$3 hash
  hash=$(inputs_hash "$dir")
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.stamp" 2>/dev/null)" = "$hash" ]; then
    echo "kube-lab build: $name up to date ($BIN/$name)"
    return
  fi
  echo "kube-lab build: building $name (cold: minutes; module cache $(go env GOMODCACHE))"
  local start=$SECONDS
  # Built in place with -mod=readonly: go.sum is committed, so a missing entry is an error, not
  # a silent network edit of the pin.
  (cd "$dir" && nice -n 19 go build -mod=readonly -trimpath -ldflags="$ldflags" -o "$BIN/$name.new" .)
  mv "$BIN/$name.new" "$BIN/$name"
  echo "$hash" >"$BIN/$name.stamp"
  echo "kube-lab build: $name built in $((SECONDS - start)) s"
}

build_etcd() {
  build_one etcd "$here/wrappers/etcdw" '-s -w'
}

build_kube() {
  local mod=$here/wrappers/kubew/go.mod ver minor v=k8s.io/component-base/version
  ver=$(required_version k8s.io/kubernetes "$mod")
  [ -n "$ver" ] || { echo "kube-lab build: $mod requires no k8s.io/kubernetes version" >&2; exit 1; }
  minor=${ver#v1.}
  minor=${minor%%.*}
  # Kubernetes tags its staging modules (k8s.io/api, client-go, ...) v0.Y.Z for vX.Y.Z; the
  # replace lines must all name that tag, so a bump cannot mix two releases.
  local staging=v0.${ver#v1.} mixed
  mixed=$(awk -v want="$staging" '$1 ~ /^k8s\.io\// && $2 == "=>" && $4 != want { print $1 " " $4 }' "$mod")
  if [ -n "$mixed" ]; then
    echo "kube-lab build: $mod requires k8s.io/kubernetes $ver but replaces these with another tag than $staging:" >&2
    echo "$mixed" >&2
    exit 1
  fi
  build_one kube "$here/wrappers/kubew" \
    "-s -w -X $v.gitVersion=$ver -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    ln -sfn kube "$BIN/$c"
  done
}

[ "$#" -gt 0 ] || set -- etcd kube
for what in "$@"; do
  case $what in
    etcd) build_etcd ;;
    kube) build_kube ;;
    *) echo "kube-lab build: unknown target '$what' (etcd, kube)" >&2; exit 2 ;;
  esac
done
