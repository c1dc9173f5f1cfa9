#!/usr/bin/env bash
# Builds the lab's images with buildah into OCI archives under $IMAGES (kube-up imports them
# into containerd): pause, the test pod (busybox-static and dnsload, the lab's DNS client and
# load generator), kube-dns (hack/coredns.sh's CoreDNS) and node-cache's own image from
# images/node-cache/Dockerfile the way `make image-check` builds it (prebuilt static binaries on
# the Debian-made stand-in for distroless-iptables). An archive is rebuilt only when what went
# into it changed; node-cache's binary is rebuilt from the working tree every time (cargo makes
# that a no-op when nothing changed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/kube-lab/env.sh
. "$here/env.sh"
root=$KUBE_LAB_ROOT
cd "$root"
work=$KUBE_LAB_CACHE/build
mkdir -p "$IMAGES" "$work/debs"
# As hack/image-check.sh, but vfs storage, which leaves no mounts behind.
# shellcheck source=hack/containers-env.sh
. "$root/hack/containers-env.sh"
containers_env "$work" vfs

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
# Writes IMAGE to $IMAGES/NAME.tar unless the archive's stamp already says HASH.
fresh() { [ -f "$IMAGES/$1.tar" ] && [ "$(cat "$IMAGES/$1.stamp" 2>/dev/null)" = "$2" ]; }
export_image() { # NAME IMAGE HASH
  rm -f "$IMAGES/$1.tar"
  buildah push -q "$2" "oci-archive:$IMAGES/$1.tar:$2" >/dev/null
  echo "$3" >"$IMAGES/$1.stamp"
  echo "kube-lab images: $2 ($(du -h "$IMAGES/$1.tar" | cut -f1))"
}
from_rootfs() { # IMAGE ROOTFS CONFIG-ARGS...: an image of exactly that folder
  local image=$1 rootfs=$2 c
  shift 2
  c=$(buildah from --pull=never scratch)
  buildah copy -q "$c" "$rootfs" / >/dev/null
  buildah config "$@" "$c"
  buildah commit -q --rm "$c" "$image" >/dev/null
}
debs() { # PACKAGE...: downloaded once into the build folder, never installed
  local missing=() p
  for p in "$@"; do compgen -G "$work/debs/${p}_*.deb" >/dev/null || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return
  if ! (cd "$work/debs" && apt-get download -qq "${missing[@]}" >/dev/null 2>&1); then
    apt-get update -qq >&2
    (cd "$work/debs" && apt-get download -qq "${missing[@]}" >&2)
  fi
}
static_rust() { # BIN PACKAGE: a static binary, in the target folder build-node-cache.sh uses
  CARGO_TARGET_DIR="$root/target/static" RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build -q --release --locked -p "$2" --bin "$1" --target x86_64-unknown-linux-gnu
  echo "$root/target/static/x86_64-unknown-linux-gnu/release/$1"
}

# ---- pause ----
h=$(hash_of "$here/images/pause.c")
if ! fresh pause "$h"; then
  rm -rf "$work/pause" && mkdir -p "$work/pause"
  gcc -Os -static -s -o "$work/pause/pause" "$here/images/pause.c"
  from_rootfs "localhost/kube-lab/pause:$IMAGE_TAG" "$work/pause" \
    --entrypoint '["/pause"]' --cmd '[]' --user 65535:65535
  export_image pause "localhost/kube-lab/pause:$IMAGE_TAG" "$h"
fi

# ---- test pod: busybox (sh, nslookup, nc) and dnsload ----
debs busybox-static
dnsload=$(static_rust dnsload kube-e2e)
h=$(hash_of "$dnsload" "$work"/debs/busybox-static_*.deb)
if ! fresh testpod "$h"; then
  r=$work/testpod
  rm -rf "$r" && mkdir -p "$r"/{bin,tmp,etc,usr/local/bin}
  dpkg-deb --fsys-tarfile "$work"/debs/busybox-static_*.deb | tar -xO ./bin/busybox >"$r/bin/busybox"
  chmod 755 "$r/bin/busybox"
  for a in $("$r/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"; done
  cp "$dnsload" "$r/usr/local/bin/dnsload"
  chmod 1777 "$r/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
  from_rootfs "localhost/kube-lab/testpod:$IMAGE_TAG" "$r" \
    --env PATH=/usr/local/bin:/bin --cmd '["/bin/sh"]'
  export_image testpod "localhost/kube-lab/testpod:$IMAGE_TAG" "$h"
fi

# ---- kube-dns: the CoreDNS the tests use, alone in its image ----
coredns=$("$root/hack/coredns.sh" --full | tail -n1)
h=$(hash_of "$coredns")
if ! fresh kube-dns "$h"; then
  r=$work/kube-dns
  rm -rf "$r" && mkdir -p "$r/etc"
  cp "$coredns" "$r/coredns"
  from_rootfs "localhost/kube-lab/kube-dns:$IMAGE_TAG" "$r" --entrypoint '["/coredns"]' --cmd '[]'
  export_image kube-dns "localhost/kube-lab/kube-dns:$IMAGE_TAG" "$h"
fi

# ---- node-cache: images/node-cache/Dockerfile, as hack/image-check.sh builds it ----
# The version the binary reports is that of its own inputs (the last commit that changed them,
# -dirty while they have uncommitted changes), so a commit to the tests or docs does not
# recompile and repackage node-cache.
inputs=(Cargo.toml Cargo.lock templates images/node-cache crates ':!crates/kube-e2e'
  ':!crates/testbed' ':!crates/addon-manifests')
if [ -z "${NODE_CACHE_VERSION:-}" ] && last=$(git log -1 --format=%h -- "${inputs[@]}" 2>/dev/null) &&
  [ -n "$last" ]; then
  version=$last
  [ -z "$(git status --porcelain -- "${inputs[@]}")" ] || version=$last-dirty
else
  version=${NODE_CACHE_VERSION:-v0.1.0}
fi
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
coredns_version=${COREDNS_VERSION:-v1.14.7}
ctx=$work/node-cache-context
mkdir -p "$ctx"
NODE_CACHE_VERSION="$version" images/node-cache/build-node-cache.sh amd64 "$ctx" >/dev/null
# The image's CoreDNS as hack/image-check.sh takes it: hack/coredns.sh runs the Dockerfile's own
# Go-stage script with its plugin list (cached by both).
cp "$(COREDNS_VERSION="$coredns_version" hack/coredns.sh | tail -n1)" "$ctx/coredns"
# The base's inputs, not its rootfs.tar, which differs on every assembly (directory times).
h=$(hash_of "$ctx/node-cache" "$ctx/coredns" images/node-cache/Dockerfile images/base-local/* \
  hack/image-base.sh)
h=$h-$version
if ! fresh node-cache "$h"; then
  base_ctx=$(hack/image-base.sh "$work/base" | tail -n1)
  base=localhost/node-cache-base-local:latest
  buildah bud --quiet --pull=never --network none --layers=false -t "$base" \
    -f "$base_ctx/Dockerfile" "$base_ctx" >/dev/null
  buildah bud --quiet --pull=never --network none --layers=false \
    --build-arg BASEIMAGE="$base" --build-arg BINARIES=prebuilt \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    --build-arg COREDNS_VERSION="$coredns_version" --build-arg TARGETARCH=amd64 \
    -t "$NODE_CACHE_IMAGE" -f images/node-cache/Dockerfile "$ctx" >/dev/null
  export_image node-cache "$NODE_CACHE_IMAGE" "$h"
fi
# Images are kept only as archives: the build storage would otherwise grow with every build.
buildah rmi --all >/dev/null 2>&1 || true
echo "kube-lab images: $(find "$IMAGES" -name "*.tar" | wc -l) archives in $IMAGES (node-cache $version)"
