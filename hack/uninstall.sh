#!/usr/bin/env bash
# Removes NodeLocal DNSCache (the objects of manifests/nodelocaldns.yaml and hack/install.sh
# --ha's twin) from the cluster kubectl points at, and explains how each node's state goes away.
#
#   hack/uninstall.sh [--dry-run] [--timeout DURATION]
#
# The DaemonSets go first, and the script waits for their pods to end: each node-cache gets
# SIGTERM and, as its last run, stops CoreDNS, deletes its iptables rules and then the
# nodelocaldns interface (unless it was started with -skipteardown). Pods using the kube-dns
# Service IP then reach kube-dns through kube-proxy again. The other objects go after.
# --dry-run prints the kubectl commands instead of running them.
set -euo pipefail

dry_run=0
timeout=120s
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --timeout)
      [ "$#" -ge 2 ] || { echo "hack/uninstall.sh: --timeout needs a value" >&2 && exit 2; }
      timeout="$2"
      shift
      ;;
    -h | --help)
      sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
      exit 2
      ;;
    *) echo "hack/uninstall.sh: unknown argument '$1'" >&2 && exit 2 ;;
  esac
  shift
done

run() {
  if [ "$dry_run" -eq 1 ]; then
    echo "$*"
  else
    "$@"
  fi
}

if [ "$dry_run" -eq 0 ] && ! command -v kubectl >/dev/null 2>&1; then
  echo "hack/uninstall.sh: kubectl is not on PATH (or use --dry-run to see the commands)" >&2
  exit 1
fi

cat >&2 <<'EOF'
hack/uninstall.sh: if kubelet's clusterDNS points at the link-local IP (IPVS mode), point it
back at the kube-dns Service IP on every node first, or pods lose DNS when node-cache goes.
EOF

ns=(--namespace kube-system --ignore-not-found)
# Both DaemonSets at once (node-local-dns-b is hack/install.sh --ha's twin): each pod that ends
# last on its node removes the node's rules and interface, whichever DaemonSet it belongs to.
run kubectl delete daemonset node-local-dns node-local-dns-b "${ns[@]}" --wait=true --timeout="$timeout"
# With no pod left kubectl wait reports "no matching resources": that is the goal, not an error.
run kubectl wait pods --namespace kube-system --selector 'k8s-app in (node-local-dns,node-local-dns-b)' \
  --for=delete --timeout="$timeout" ||
  echo "hack/uninstall.sh: (no node-local-dns pod left to wait for, or the wait timed out)" >&2
run kubectl delete service node-local-dns "${ns[@]}"
run kubectl delete service kube-dns-upstream "${ns[@]}"
run kubectl delete configmap node-local-dns "${ns[@]}"
run kubectl delete serviceaccount node-local-dns "${ns[@]}"
run kubectl delete rolebinding node-local-dns "${ns[@]}"
run kubectl delete role node-local-dns "${ns[@]}"

cat >&2 <<'EOF'
hack/uninstall.sh: done. Each node-cache removed its rules and interface on SIGTERM. A node
whose pod was killed (grace period exceeded, node down) may keep them; on such a node, as root:
  for t in iptables ip6tables; do
    for table in raw filter; do
      $t-save -t $table | grep -e '--comment "NodeLocal DNS Cache' | sed 's/^-A/-D/' |
        xargs -r -L1 $t -w -t $table
    done
  done
  ip link delete nodelocaldns
(or run node-cache once more with the same flags and stop it: its teardown removes every copy
of its rules, then the interface).
EOF
