#!/usr/bin/env bash
# Builds a static /node-cache for one ARCH (upstream's names) into OUT_DIR. Used by the
# Dockerfile's Rust stage (with --install-toolchain, on a Debian-based Rust image) and by
# hack/image-check.sh and make build on the host. Static glibc (+crt-static) so it runs on a
# distroless base, and not position-independent (relocation-model=static): nothing is
# relocated at start, so no page of the binary is copied into private memory for it (half a
# MiB of RSS). The build goes to its own target dir (default target/node-cache-static) so the
# different RUSTFLAGS do not invalidate another build's cache. The version comes from
# NODE_CACHE_VERSION.
#
#   images/node-cache/build-node-cache.sh [--install-toolchain] ARCH OUT_DIR
set -euo pipefail

install_toolchain=0
if [ "${1:-}" = "--install-toolchain" ]; then
  install_toolchain=1
  shift
fi
if [ "$#" -ne 2 ]; then
  echo "usage: $0 [--install-toolchain] ARCH OUT_DIR" >&2
  exit 2
fi
arch="$1"
out="$2"

# ARCH -> Rust target, Debian cross-gcc prefix, Debian architecture.
case "$arch" in
  amd64) triple=x86_64-unknown-linux-gnu gcc=x86_64-linux-gnu debarch=amd64 ;;
  arm64) triple=aarch64-unknown-linux-gnu gcc=aarch64-linux-gnu debarch=arm64 ;;
  arm) triple=armv7-unknown-linux-gnueabihf gcc=arm-linux-gnueabihf debarch=armhf ;;
  ppc64le) triple=powerpc64le-unknown-linux-gnu gcc=powerpc64le-linux-gnu debarch=ppc64el ;;
  s390x) triple=s390x-unknown-linux-gnu gcc=s390x-linux-gnu debarch=s390x ;;
  *)
    echo "build-node-cache.sh: unknown ARCH '$arch' (amd64 arm arm64 ppc64le s390x)" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
host="$(rustc -vV | sed -n 's/^host: //p')"
cross=0
[ "$triple" != "$host" ] && cross=1

if [ "$install_toolchain" -eq 1 ]; then
  pkgs=()
  if [ "$cross" -eq 1 ]; then
    pkgs+=("gcc-$gcc" "libc6-dev-$debarch-cross")
  fi
  if [ "${#pkgs[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
  fi
  rustup target add "$triple"
fi

if ! rustup target list --installed 2>/dev/null | grep -qx "$triple" && [ "$triple" != "$host" ]; then
  echo "build-node-cache.sh: the Rust target $triple is not installed (rustup target add $triple)" >&2
  exit 1
fi
if [ "$cross" -eq 1 ]; then
  if ! command -v "$gcc-gcc" >/dev/null 2>&1; then
    echo "build-node-cache.sh: the cross linker $gcc-gcc is missing (Debian: gcc-$gcc libc6-dev-$debarch-cross)" >&2
    exit 1
  fi
  triple_env="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
  export "CARGO_TARGET_${triple_env}_LINKER=$gcc-gcc"
  export "CC_${triple//-/_}=$gcc-gcc"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/node-cache-static}"
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static"
cd "$root"
# The dist profile (Cargo.toml): optimised for size ("z"), one codegen unit, fat LTO; symbols
# stripped at node-cache's own link (NODE_CACHE_KEEP_SYMBOLS=1 keeps them, for
# hack/symbol-order.sh: every crate is compiled alike either way, so the names match).
# On x86_64 (linked by lld) the functions node-cache runs from start to idle go first and
# together (node-cache.symbol-order, from hack/symbol-order.sh): the kernel maps a binary's
# pages in 64 KiB blocks around each page touched, so scattered they made most of the binary
# resident. A stale list costs compactness, never correctness. The list is passed under a name
# carrying its hash, so a new list relinks node-cache alone.
final_args=()
if [ "${NODE_CACHE_KEEP_SYMBOLS:-0}" != 1 ]; then
  final_args+=(-C strip=symbols)
fi
order="$root/images/node-cache/node-cache.symbol-order"
if [ "$triple" = x86_64-unknown-linux-gnu ] && [ -s "$order" ]; then
  mkdir -p "$CARGO_TARGET_DIR"
  ordered="$CARGO_TARGET_DIR/node-cache.symbol-order.$(sha256sum "$order" | cut -c1-12)"
  [ -f "$ordered" ] || cp "$order" "$ordered"
  final_args+=(-C "link-arg=-Wl,--symbol-ordering-file=$ordered" -C "link-arg=-Wl,--no-warn-symbol-ordering")
fi
cargo rustc --profile dist --locked -p node-cache --bin node-cache --target "$triple" -- "${final_args[@]}"
mkdir -p "$out"
# A rename, so a running copy of the old binary is never written to ("Text file busy").
cp "$CARGO_TARGET_DIR/$triple/dist/node-cache" "$out/.node-cache.tmp"
mv -f "$out/.node-cache.tmp" "$out/node-cache"
echo "$out/node-cache"
