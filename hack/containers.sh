#!/usr/bin/env bash
# Builds and pushes the node-cache images the way kubernetes/dns names them, with whichever
# engine is present: docker with buildx, else buildah. The Dockerfile's compile stages build
# the binaries for the target ARCH on the build machine's platform, so no emulation is needed.
#
#   hack/containers.sh build ARCH     REGISTRY/k8s-dns-node-cache-ARCH:VERSION
#   hack/containers.sh push ARCH      push it, then rewrite the manifest list (see below)
#                                     unless WRITE_MANIFEST=0
#   hack/containers.sh manifest       REGISTRY/k8s-dns-node-cache:VERSION from every per-ARCH
#                                     image of ALL_ARCH found in the registry
#   hack/containers.sh clean          remove the local images and the offline check's storage
#
# Environment (rules.mk exports it): REGISTRY, VERSION, ALL_ARCH, BASEIMAGE (empty: the
# Dockerfile's pinned distroless-iptables), COREDNS_VERSION, VERBOSE, ENGINE (docker|buildah;
# empty: detect).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

: "${REGISTRY:?REGISTRY is not set}"
: "${VERSION:?VERSION is not set}"
ALL_ARCH="${ALL_ARCH:-amd64 arm arm64 ppc64le s390x}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
VERBOSE="${VERBOSE:-0}"
name="k8s-dns-node-cache"
list="$REGISTRY/$name:$VERSION"

die() {
  echo "hack/containers.sh: $*" >&2
  exit 1
}

engine() {
  if [ -n "${ENGINE:-}" ]; then
    case "$ENGINE" in
      docker | buildah) echo "$ENGINE" ;;
      *) die "unknown ENGINE '$ENGINE' (docker or buildah)" ;;
    esac
  elif command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
    echo docker
  elif command -v buildah >/dev/null 2>&1; then
    echo buildah
  else
    die "no container engine: need docker with buildx, or buildah (hack/image-tools.sh installs buildah on Debian)"
  fi
}

platform() {
  case "$1" in
    amd64 | arm64 | ppc64le | s390x) echo "linux/$1" ;;
    arm) echo "linux/arm/v7" ;;
    *) die "unknown ARCH '$1' (one of: $ALL_ARCH)" ;;
  esac
}

image() { echo "$REGISTRY/$name-$1:$VERSION"; }

quiet() {
  if [ "$VERBOSE" = 1 ]; then
    "$@"
  else
    "$@" >/dev/null
  fi
}

build() {
  local arch="$1" platform img eng
  platform="$(platform "$arch")"
  img="$(image "$arch")"
  eng="$(engine)" || exit 1
  local args=(--platform "$platform" -f images/node-cache/Dockerfile -t "$img"
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    --build-arg "COREDNS_VERSION=$COREDNS_VERSION")
  [ -n "${BASEIMAGE:-}" ] && args+=(--build-arg "BASEIMAGE=$BASEIMAGE")
  echo "container: $img ($eng)"
  case "$eng" in
    docker) quiet docker buildx build --load "${args[@]}" . ;;
    buildah) quiet buildah bud --layers "${args[@]}" . ;;
  esac
}

exists_remote() {
  case "$(engine)" in
    docker) docker manifest inspect "$1" >/dev/null 2>&1 ;;
    buildah)
      command -v skopeo >/dev/null 2>&1 || die "skopeo is missing (needed to look up pushed images; hack/image-tools.sh installs it)"
      skopeo inspect --raw "docker://$1" >/dev/null 2>&1
      ;;
  esac
}

manifest() {
  local eng arches=() arch
  eng="$(engine)"
  for arch in $ALL_ARCH; do
    exists_remote "$(image "$arch")" && arches+=("$arch")
  done
  [ "${#arches[@]}" -gt 0 ] || die "no per-ARCH image of $name:$VERSION found in $REGISTRY"
  echo "manifest list: $list (${arches[*]})"
  case "$eng" in
    docker)
      docker manifest rm "$list" >/dev/null 2>&1 || true
      local imgs=()
      for arch in "${arches[@]}"; do imgs+=("$(image "$arch")"); done
      quiet docker manifest create "$list" "${imgs[@]}"
      for arch in "${arches[@]}"; do
        local variant=()
        [ "$arch" = arm ] && variant=(--variant v7)
        docker manifest annotate --os linux --arch "$arch" "${variant[@]}" "$list" "$(image "$arch")"
      done
      quiet docker manifest push --purge "$list"
      ;;
    buildah)
      buildah manifest rm "$list" >/dev/null 2>&1 || true
      quiet buildah manifest create "$list"
      for arch in "${arches[@]}"; do
        quiet buildah manifest add "$list" "docker://$(image "$arch")"
      done
      quiet buildah manifest push --all "$list" "docker://$list"
      ;;
  esac
}

push() {
  local img eng
  img="$(image "$1")"
  eng="$(engine)"
  echo "pushing: $img"
  case "$eng" in
    docker) quiet docker push "$img" ;;
    buildah) quiet buildah push "$img" "docker://$img" ;;
  esac
  # all-push writes the list once, after every ARCH.
  [ "${WRITE_MANIFEST:-1}" = 0 ] || manifest
}

clean() {
  local arch eng
  eng="$(engine 2>/dev/null || true)"
  for arch in $ALL_ARCH; do
    case "$eng" in
      docker) docker image rm "$(image "$arch")" >/dev/null 2>&1 || true ;;
      buildah) buildah rmi "$(image "$arch")" >/dev/null 2>&1 || true ;;
    esac
  done
  local work="$root/.cache/image-check"
  if [ -d "$work" ]; then
    if command -v buildah >/dev/null 2>&1 && [ -f "$work/storage.conf" ]; then
      CONTAINERS_STORAGE_CONF="$work/storage.conf" buildah rm --all >/dev/null 2>&1 || true
      CONTAINERS_STORAGE_CONF="$work/storage.conf" buildah rmi --all --force >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
  fi
  echo "images-clean: done"
}

case "${1:-}" in
  build | push)
    [ "$#" -eq 2 ] || die "usage: $0 $1 ARCH"
    "$1" "$2"
    ;;
  manifest) manifest ;;
  clean) clean ;;
  *) die "usage: $0 build ARCH | push ARCH | manifest | clean" ;;
esac
