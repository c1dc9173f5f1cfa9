#!/usr/bin/env bash
# The lab's node, started by up.sh as
#   unshare --mount --propagation slave -- nsenter --net=/run/netns/kl-net -- inner.sh
# i.e. in the lab's network namespace and a private mount namespace. It fixes up that mount
# namespace (nothing of it is visible on the host), starts every component and then waits: its
# process is what kube-down and proxy.sh enter the namespaces through.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/kube-lab/env.sh
. "$here/env.sh"
echo $$ >"$S/inner.pid"
L=$S/logs

# ---- the private mount namespace ----
# `ip netns exec` would remount /sys and lose /sys/fs/cgroup; a fresh sysfs for this network
# namespace with the host's cgroup mounts put back keeps both right.
mkdir -p "$S/mnt/cgroup"
mount --rbind /sys/fs/cgroup "$S/mnt/cgroup"
mount -t sysfs kl-sysfs /sys
mount --rbind "$S/mnt/cgroup" /sys/fs/cgroup
umount -l "$S/mnt/cgroup"
# Runtime sockets, the shims' and kubelet's files: the lab's own /run.
mount -t tmpfs -o size=64m,mode=755 kl-run /run
mkdir -p "$S/varlog" "$S/varlib/upper" "$S/varlib/work"
mount --bind "$S/varlog" /var/log
# CNI's cache has a fixed home (/var/lib/cni); an overlay keeps every write under the state folder.
mount -t overlay kl-varlib -o "lowerdir=/var/lib,upperdir=$S/varlib/upper,workdir=$S/varlib/work" /var/lib
# kubelet sets these VM-wide sysctls; here each is a file holding the value it wants.
for kv in "${KUBELET_SYSCTLS[@]}"; do
  f=$S/sysctl/${kv%%=*}
  mkdir -p "$(dirname "$f")"
  echo "${kv#*=}" >"$f"
  mount --bind "$f" "/proc/sys/${kv%%=*}"
done

mkdir -p "$S/pids"
start() { # NAME COMMAND...
  local name=$1
  shift
  nice -n 5 "$@" >"$L/$name.log" 2>&1 &
  echo $! >"$S/pids/$name"
}
alive() { kill -0 "$(cat "$S/pids/$1")" 2>/dev/null; }
# Each wait also fails fast when the component it waits for has died.
ready() { # NAME COMMAND...
  local name=$1
  shift
  alive "$name" || { echo "inner: $name exited; tail of $L/$name.log:" >&2; tail -n 20 "$L/$name.log" >&2; exit 1; }
  "$@"
}

start upstream-dns "$KUBE_LAB_COREDNS" -conf "$S/upstream.Corefile"
start etcd "$BIN/etcd" --name kl --data-dir "$S/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster kl=http://127.0.0.1:2380 --unsafe-no-fsync --quota-backend-bytes=1073741824 \
  --log-level=warn
wait_for 30 "etcd health" ready etcd curl -sf -o /dev/null http://127.0.0.1:2379/health

start kube-apiserver "$BIN/kube" kube-apiserver \
  --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --advertise-address="$NODE_IP" \
  --secure-port=6443 --cert-dir="$S/pki/apiserver" --allow-privileged=true \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$S/pki/sa.pub" --service-account-signing-key-file="$S/pki/sa.key" \
  --token-auth-file="$S/pki/tokens.csv" --authorization-mode=Node,RBAC \
  --service-cluster-ip-range="$SERVICE_CIDR" --kubelet-preferred-address-types=InternalIP --v=1
start containerd containerd --config "$S/containerd.toml"
wait_for 30 "containerd socket" ready containerd test -S "$CTRD_SOCK"
api_ready() {
  [ -s "$S/pki/apiserver/apiserver.crt" ] &&
    curl -sf -o /dev/null --cacert "$S/pki/apiserver/apiserver.crt" \
      -H "Authorization: Bearer $(cat "$S/pki/token")" "https://$NODE_IP:6443/readyz"
}
wait_for 60 "kube-apiserver /readyz" ready kube-apiserver api_ready

start kube-controller-manager "$BIN/kube" kube-controller-manager --kubeconfig="$KUBECONFIG" \
  --bind-address=127.0.0.1 --cert-dir="$S/pki/kcm" --leader-elect=false --controllers='*' \
  --service-account-private-key-file="$S/pki/sa.key" --root-ca-file="$S/pki/apiserver/apiserver.crt" \
  --allocate-node-cidrs=true --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 \
  --service-cluster-ip-range="$SERVICE_CIDR" --cluster-name=kl --v=1
start kube-scheduler "$BIN/kube" kube-scheduler --kubeconfig="$KUBECONFIG" --bind-address=127.0.0.1 \
  --cert-dir="$S/pki/scheduler" --leader-elect=false --v=1
start kubelet "$BIN/kube" kubelet --config="$S/kubelet.yaml" --kubeconfig="$KUBECONFIG" \
  --root-dir="$S/kubelet" --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
"$here/proxy.sh" "${KUBE_LAB_PROXY_MODE:-iptables}"
echo "inner: all started"
# Stay as the namespaces' anchor until kube-down ends the lab.
wait
