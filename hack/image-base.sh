#!/usr/bin/env bash
# Assembles a stand-in for the distroless-iptables base from Debian packages, offline from any
# container registry: iptables (legacy and nft) with its libraries, nft (nftables; the real
# base ships it for kube-proxy's nftables mode, and -firewall-backend=auto/nftables need it to
# see and write tables), dash for the
# iptables-wrapper script (images/base-local/iptables-wrapper), /tmp, and distroless' passwd
# and group entries. Packages come through apt-get download (the machine's own apt sources);
# dpkg-deb -x runs no package scripts, so the iptables links the alternatives system would make
# are made here, pointing at the wrapper. Writes OUT_DIR/image/rootfs.tar beside a copy of
# images/base-local/Dockerfile, which turns it into an image (that folder is the build context).
#
#   hack/image-base.sh OUT_DIR
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
debs="$out/debs"
rootfs="$out/rootfs"

packages=(iptables libip4tc2 libip6tc2 libxtables12 libnftnl11 libmnl0 libnetfilter-conntrack3
  libnfnetlink0 libc6 libgcc-s1 gcc-12-base netbase dash
  nftables libnftables1 libjansson4 libgmp10 libedit2 libbsd0 libmd0 libtinfo6)

mkdir -p "$debs"
missing=()
for p in "${packages[@]}"; do
  compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! (cd "$debs" && apt-get download -qq "${missing[@]}" >/dev/null 2>&1); then
    apt-get update -qq >&2
    (cd "$debs" && apt-get download -qq "${missing[@]}" >&2)
  fi
fi

rm -rf "$rootfs"
mkdir -p "$rootfs"
for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$rootfs"
done
# Documentation and manuals are not needed at run time.
rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/info" \
  "$rootfs/usr/share/lintian" "$rootfs/usr/share/locale" "$rootfs"/usr/lib/*-linux-gnu/gconv

install -d -m 1777 "$rootfs/tmp"
install -d -m 0755 "$rootfs/run" "$rootfs/etc" "$rootfs/bin" "$rootfs/usr/sbin"
ln -sf dash "$rootfs/bin/sh"
install -m 0755 "$root/images/base-local/iptables-wrapper" "$rootfs/usr/sbin/iptables-wrapper"
for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf iptables-wrapper "$rootfs/usr/sbin/$cmd"
done
# distroless' users: root and nonroot (65532).
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

mkdir -p "$out/image"
tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$out/image/rootfs.tar" .
cp "$root/images/base-local/Dockerfile" "$out/image/Dockerfile"
echo "$out/image"
