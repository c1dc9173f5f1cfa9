#!/usr/bin/env bash
# Installs NodeLocal DNSCache with node-cache in the cluster kubectl points at: detects how
# kube-proxy runs and the kube-dns Service IP, fills manifests/nodelocaldns.yaml's placeholders
# the way the upstream addon's sed recipes do, sets the image, and applies it.
#
#   hack/install.sh [--dry-run] [--ha] [--mode iptables|nftables|ipvs] [--kube-dns-ip IP] [--local-ip IP]
#                   [--domain DOMAIN] [--image IMAGE] [--manifest FILE]
#
# --dry-run prints the rendered manifests instead of applying them (kubectl is needed only for
# what is left to detect). Every detected value can be given instead. --ha adds a second
# DaemonSet, node-local-dns-b, so every node runs two instances and either can be updated
# while the other serves. In kube-proxy's nftables mode node-cache binds both IPs as in
# iptables mode and keeps its rules in its own nftables table (-firewall-backend=nftables).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="$root/manifests/nodelocaldns.yaml"
dry_run=0
ha=0
mode=""
kube_dns_ip=""
local_ip="169.254.20.10"
domain="cluster.local"
image="${NODE_CACHE_IMAGE:-}"

die() {
  echo "hack/install.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --ha) ha=1 ;;
    --mode | --kube-dns-ip | --local-ip | --domain | --image | --manifest)
      [ "$#" -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --mode) mode="$2" ;;
        --kube-dns-ip) kube_dns_ip="$2" ;;
        --local-ip) local_ip="$2" ;;
        --domain) domain="$2" ;;
        --image) image="$2" ;;
        --manifest) manifest="$2" ;;
      esac
      shift
      ;;
    -h | --help) usage ;;
    *) echo "hack/install.sh: unknown argument '$1'" >&2 && usage ;;
  esac
  shift
done

need_kubectl() {
  command -v kubectl >/dev/null 2>&1 || die "kubectl is not on PATH; it is needed to $1 (or pass $2)"
}

# kube-proxy's mode from its ConfigMap (kubeadm's layout); empty means iptables on Linux.
if [ -z "$mode" ]; then
  need_kubectl "detect kube-proxy's mode" "--mode iptables|nftables|ipvs"
  config="$(kubectl -n kube-system get configmap kube-proxy -o 'jsonpath={.data.config\.conf}' 2>/dev/null || true)"
  mode="$(printf '%s\n' "$config" | sed -n 's/^mode:[[:space:]]*"\{0,1\}\([a-z]*\)"\{0,1\}[[:space:]]*$/\1/p' | head -n1)"
  mode="${mode:-iptables}"
  echo "hack/install.sh: kube-proxy mode: $mode" >&2
fi
case "$mode" in
  iptables | nftables | ipvs) ;;
  *) die "kube-proxy mode '$mode' is not one the addon supports here; pass --mode iptables, nftables or ipvs" ;;
esac

if [ -z "$kube_dns_ip" ]; then
  need_kubectl "read the kube-dns Service IP" "--kube-dns-ip IP"
  kube_dns_ip="$(kubectl -n kube-system get service kube-dns -o 'jsonpath={.spec.clusterIP}')" ||
    die "cannot read the kube-dns Service in kube-system; pass --kube-dns-ip"
  echo "hack/install.sh: kube-dns Service IP: $kube_dns_ip" >&2
fi

# Values go into sed expressions with '|' as the delimiter: accept only what they can be.
valid_ip() {
  [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || "$1" =~ ^[0-9a-fA-F:]+$ && "$1" == *:* ]]
}
valid_ip "$kube_dns_ip" || die "invalid kube-dns IP '$kube_dns_ip'"
valid_ip "$local_ip" || die "invalid local IP '$local_ip'"
[[ "$domain" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "invalid cluster domain '$domain'"
if [ -n "$image" ] && ! [[ "$image" =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]]; then
  die "invalid image reference '$image'"
fi
[ -r "$manifest" ] || die "cannot read $manifest"

# The upstream addon's recipes: in iptables mode node-cache also binds the kube-dns IP; in IPVS
# mode it binds the link-local IP only and forwards cluster names to kube-dns directly.
# nftables mode is iptables mode's recipe with node-cache's rules in nftables, beside
# kube-proxy's tables (not in iptables-nft, which a node without iptables may not have).
sed_args=(-e "s|__PILLAR__LOCAL__DNS__|$local_ip|g" -e "s|__PILLAR__DNS__DOMAIN__|$domain|g")
if [ "$mode" != ipvs ]; then
  sed_args+=(-e "s|__PILLAR__DNS__SERVER__|$kube_dns_ip|g")
  if [ "$mode" = nftables ]; then
    sed_args+=(-e 's|\(args: \[ "-localip", [^]]*\) \]|\1, "-firewall-backend=nftables" ]|')
  fi
else
  sed_args+=(-e "s|,__PILLAR__DNS__SERVER__||g" -e "s|__PILLAR__CLUSTER__DNS__|$kube_dns_ip|g")
fi
if [ -n "$image" ]; then
  sed_args+=(-e "s|^\([[:space:]]*image:[[:space:]]*\).*k8s-dns-node-cache.*$|\1$image|")
fi
rendered="$(sed "${sed_args[@]}" "$manifest")"
if [ "$mode" = nftables ] && ! grep -q '"-firewall-backend=nftables"' <<<"$rendered"; then
  die "found no node-cache args line in $manifest to add -firewall-backend nftables to"
fi

# The HA twin: the DaemonSet document again, with its own name and pod label (disjoint
# selectors, so neither DaemonSet adopts the other's pods). Everything it mounts and uses is
# shared. Only the top-level metadata name (two-space indent) and the k8s-app label change.
if [ "$ha" -eq 1 ]; then
  twin="$(printf '%s\n' "$rendered" | awk '
    /^---$/ { if (ds) print doc; doc = ""; ds = 0; next }
    { doc = doc $0 "\n" }
    /^kind: DaemonSet$/ { ds = 1 }
    END { if (ds) printf "%s", doc }' |
    sed -e 's|^  name: node-local-dns$|  name: node-local-dns-b|' \
        -e 's|k8s-app: node-local-dns$|k8s-app: node-local-dns-b|')"
  [ -n "$twin" ] || die "no DaemonSet in $manifest to make an HA twin of"
  rendered="$(printf '%s\n---\n%s' "$rendered" "$twin")"
fi

if [ "$dry_run" -eq 1 ]; then
  printf '%s\n' "$rendered"
  exit 0
fi

need_kubectl "apply the manifests" "--dry-run"
printf '%s\n' "$rendered" | kubectl apply -f -
if [ "$mode" = ipvs ]; then
  cat >&2 <<EOF
hack/install.sh: IPVS mode: node-cache listens on $local_ip only. Point pods at it with
kubelet's --cluster-dns=$local_ip (clusterDNS in the kubelet config) on every node.
EOF
fi
echo "hack/install.sh: watch the rollout with: kubectl -n kube-system rollout status daemonset/node-local-dns" >&2
