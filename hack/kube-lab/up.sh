#!/usr/bin/env bash
# make kube-up: a one-node Kubernetes cluster in the lab's own network namespace (kl-net) and
# a private mount namespace. Installs what is missing (containerd, runc, CNI plugins, buildah),
# builds etcd and the Kubernetes binary once (cached), builds and imports the images, starts
# the node (inner.sh), and installs kube-dns (CoreDNS with the kubernetes plugin) behind the
# kube-dns Service at 10.96.0.10. Prints how to reach it; make kube-down removes all of it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/kube-lab/env.sh
. "$here/env.sh"
start=$SECONDS
step() { printf -- '-- kube-lab: %s (%ss)\n' "$1" "$((SECONDS - start))"; }

[ "$(id -u)" -eq 0 ] || { echo "kube-lab: needs root (namespaces, cgroups, containerd)" >&2; exit 1; }
if [ -e "/run/netns/$NS" ] || [ -e "$S" ]; then
  echo "kube-lab: a lab is already up (/run/netns/$NS or $S exists); make kube-down first" >&2
  exit 1
fi

step "packages"
"$KUBE_LAB_ROOT/hack/deps.sh" containerd=containerd runc=runc ctr=containerd \
  /usr/lib/cni/bridge=containernetworking-plugins conntrack=conntrack nsenter=util-linux \
  envsubst=gettext-base openssl=openssl curl=curl iptables=iptables nft=nftables gcc=gcc
"$KUBE_LAB_ROOT/hack/image-tools.sh"
step "binaries and images"
# Side by side: each build has long single-threaded stretches (Go's and the LTO link, cgo-free
# package tails), which the other fills on two cores. Logs go to files; a failure prints its tail.
mkdir -p "$KUBE_LAB_CACHE"
"$here/build.sh" >"$KUBE_LAB_CACHE/build.log" 2>&1 &
build_pid=$!
images_rc=0
"$here/images.sh" >"$KUBE_LAB_CACHE/images.log" 2>&1 || images_rc=$?
build_rc=0
wait "$build_pid" || build_rc=$?
for part in build:$build_rc images:$images_rc; do
  name=${part%%:*} rc=${part#*:}
  grep -h '^kube-lab \(build\|images\)' "$KUBE_LAB_CACHE/$name.log" || true
  if [ "$rc" -ne 0 ]; then
    echo "kube-lab: $name.sh failed (exit $rc); tail of $KUBE_LAB_CACHE/$name.log:" >&2
    tail -n 30 "$KUBE_LAB_CACHE/$name.log" >&2
    exit 1
  fi
done
KUBE_LAB_COREDNS=$("$KUBE_LAB_ROOT/hack/coredns.sh" | tail -n1)
export KUBE_LAB_COREDNS

# From here on a failure leaves parts of a lab: take them down again.
up_failed() {
  local rc=$?
  [ "$rc" -eq 0 ] && return
  echo "kube-lab: kube-up failed (exit $rc); removing what it made" >&2
  "$here/down.sh" >&2 || true
  exit "$rc"
}
trap up_failed EXIT
trap 'exit 130' INT TERM
step "node"
mkdir -p "$S"/{logs,pids,pki/apiserver,etcd,kubelet,cni,cni-ipam,containerd}
# Fresh credentials each time; nothing secret is kept once the lab is down.
openssl genrsa -out "$S/pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$S/pki/sa.key" -pubout -out "$S/pki/sa.pub" 2>/dev/null
openssl rand -hex 16 >"$S/pki/token"
echo "$(cat "$S/pki/token"),admin,admin,system:masters" >"$S/pki/tokens.csv"
cat >"$KUBECONFIG" <<KC
apiVersion: v1
kind: Config
clusters: [{name: kube-lab, cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$S/pki/apiserver/apiserver.crt"}}]
users: [{name: admin, user: {token: "$(cat "$S/pki/token")"}}]
contexts: [{name: kube-lab, context: {cluster: kube-lab, user: admin}}]
current-context: kube-lab
KC
chmod 600 "$KUBECONFIG" "$S/pki/sa.key" "$S/pki/tokens.csv"

export S CTRD_SOCK CGROOT KUBE_DNS_IP POD_CIDR UPSTREAM_IP STUB_IP IMAGE_TAG
export POD_GATEWAY=${POD_CIDR%.*}.1
render() { # TEMPLATE OUT: only the lab's variables are replaced
  # shellcheck disable=SC2016
  envsubst '${S} ${CTRD_SOCK} ${CGROOT} ${KUBE_DNS_IP} ${POD_CIDR} ${POD_GATEWAY} ${UPSTREAM_IP} ${STUB_IP} ${IMAGE_TAG}' <"$1" >"$2"
}
render "$here/conf/containerd.toml" "$S/containerd.toml"
render "$here/conf/kubelet.yaml" "$S/kubelet.yaml"
render "$here/conf/10-kl-bridge.conflist" "$S/cni/10-kl-bridge.conflist"
render "$here/conf/upstream.Corefile" "$S/upstream.Corefile"
echo "nameserver $UPSTREAM_IP" >"$S/resolv.conf"

# Record the VM's values of the sysctls kubelet sets, so kube-down can show they never moved.
for kv in "${KUBELET_SYSCTLS[@]}"; do
  echo "${kv%%=*}=$(cat "/proc/sys/${kv%%=*}")"
done >"$S/sysctl-before"

# cgroup v1 root for the pods in every hierarchy (cgroups are VM-wide; kube-down removes them).
for h in /sys/fs/cgroup/*/; do
  [ -d "$h" ] || continue
  mkdir -p "$h$CGROOT"
  if [ -f "${h}cpuset.cpus" ]; then
    cat "${h}cpuset.cpus" >"$h$CGROOT/cpuset.cpus"
    cat "${h}cpuset.mems" >"$h$CGROOT/cpuset.mems"
  fi
done

# The node: lo and a veth pair (this kernel has no dummy links) carrying the node's addresses.
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add kl-eth0 type veth peer name kl-eth0p
ip -n "$NS" addr add "$NODE_IP/24" dev kl-eth0
ip -n "$NS" addr add "$UPSTREAM_IP/32" dev kl-eth0
ip -n "$NS" addr add "$STUB_IP/32" dev kl-eth0
ip -n "$NS" link set kl-eth0p up
ip -n "$NS" link set kl-eth0 up
ip -n "$NS" route add default via "${NODE_IP%.*}.1" dev kl-eth0 onlink
in_lab sysctl -qw net.ipv4.ip_forward=1
# br_netfilter's knob exists per namespace once the module is loaded (kube-proxy needs it for
# pod-to-Service traffic on the bridge).
in_lab sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
  echo "kube-lab: no net.bridge.bridge-nf-call-iptables (br_netfilter); pod-to-pod Service traffic may bypass kube-proxy" >&2

setsid unshare --mount --propagation slave -- nsenter --net="/run/netns/$NS" -- "$here/inner.sh" \
  >"$S/logs/inner.log" 2>&1 </dev/null &
inner_alive() {
  if [ -s "$S/inner.pid" ] && ! kill -0 "$(cat "$S/inner.pid")" 2>/dev/null; then
    echo "kube-lab: inner.sh exited; tail of $S/logs/inner.log:" >&2
    tail -n 20 "$S/logs/inner.log" >&2
    return 2
  fi
}
node_ready() {
  inner_alive || exit 1
  [ "$(lab_kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
wait_for 180 "Ready node $NODE" node_ready
step "node $NODE Ready"

for tar in "$IMAGES"/*.tar; do
  ctr -a "$CTRD_SOCK" -n k8s.io images import --all-platforms "$tar" >/dev/null
done
step "images imported"

sa_ready() { lab_kubectl -n kube-system get serviceaccount default >/dev/null 2>&1; }
wait_for 60 "kube-system's default ServiceAccount" sa_ready
lab_kubectl apply -f "$here/manifests/kube-dns.yaml" >/dev/null
lab_kubectl -n kube-system rollout status deployment/kube-dns --timeout=120s >/dev/null
step "kube-dns Ready behind $KUBE_DNS_IP"
trap - EXIT INT TERM

cat <<EOF
kube-lab: up in $((SECONDS - start))s. Node $NODE ($NODE_IP) in network namespace $NS.
  hack/kube-lab/kubectl get pods -A          # kubectl for the lab
  PATH=\$PWD/hack/kube-lab:\$PATH hack/install.sh --image $NODE_CACHE_IMAGE   # the addon, our image
  make kube-down                             # removes everything
EOF
