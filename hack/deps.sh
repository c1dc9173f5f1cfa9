#!/usr/bin/env bash
# Installs Debian packages when the commands they provide are missing; does nothing when all
# are present. Needs root for apt-get. Without arguments: what the tests, the demo and the
# benchmarks use. With arguments: COMMAND=PACKAGE pairs (hack/image-tools.sh passes its own).
#
#   hack/deps.sh [COMMAND=PACKAGE ...]
set -euo pipefail

declare -A needed=()
if [ "$#" -eq 0 ]; then
  set -- iptables=iptables nft=nftables ip=iproute2 dig=dnsutils pgrep=procps shellcheck=shellcheck curl=curl
fi
for pair in "$@"; do
  needed[${pair%%=*}]=${pair#*=}
done

missing=()
for cmd in "${!needed[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needed[$cmd]}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "hack/deps.sh: missing packages ${missing[*]}; run as root to install them" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "hack/deps.sh: missing packages ${missing[*]} and no apt-get to install them" >&2
  exit 1
fi
echo "hack/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# No recommends: for podman they would drag in systemd, dbus and python.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
