# Settings every kube-lab script shares (sourced, never run). Names start with kl- so nothing
# here can be mistaken for the host's own, and kube-down removes exactly these.
# shellcheck shell=bash disable=SC2034
KUBE_LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KUBE_LAB_ROOT=$(cd "$KUBE_LAB_DIR/../.." && pwd)
KUBE_LAB_CACHE=${KUBE_LAB_CACHE:-$KUBE_LAB_ROOT/.cache/kube-lab}
BIN=$KUBE_LAB_CACHE/bin        # etcd, kube and its command-name links (build.sh)
IMAGES=$KUBE_LAB_CACHE/images  # OCI archives (images.sh)
S=$KUBE_LAB_CACHE/state        # everything a running lab writes; kube-down removes it
NS=kl-net                      # the lab's network namespace: the node
NODE=kl-node
NODE_IP=10.79.0.2
# Two resolvers outside the cluster, on the node: the "internet" (kubelet's resolv.conf) and a
# second one whose answers show that a stub-domain or Corefile change took effect.
UPSTREAM_IP=10.79.0.53
STUB_IP=10.79.0.54
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/12
KUBE_DNS_IP=10.96.0.10
CGROOT=kl-kube                 # cgroup v1 root for pods, in every hierarchy
CTRD_SOCK=$S/containerd/run/containerd.sock
KUBECONFIG=$S/admin.kubeconfig
# Global sysctls kubelet sets at start; inside the lab's mount namespace each is shadowed by a
# file, so the VM keeps its values (name=value kubelet wants).
KUBELET_SYSCTLS=(vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1
  kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000)
IMAGE_TAG=kube-lab
NODE_CACHE_IMAGE=localhost/node-cache:$IMAGE_TAG

# Runs COMMAND until it succeeds or SECONDS pass; polling is the wait, the deadline the bound.
wait_for() { # SECONDS WHAT COMMAND...
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "kube-lab: no $what after ${limit}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

in_lab() { nsenter --net="/run/netns/$NS" -- "$@"; }
lab_kubectl() { in_lab "$BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }
