#!/usr/bin/env bash
# (Re)starts the lab's kube-proxy in MODE (iptables or nftables) and records that mode in the
# kube-proxy ConfigMap (kubeadm's layout), where hack/install.sh looks for it. Runs inside the
# lab's namespaces: inner.sh calls it, and from the host
#   nsenter --target "$(cat .cache/kube-lab/state/inner.pid)" --mount --net -- "$PWD/hack/kube-lab/proxy.sh" MODE
# (an absolute path: nsenter --mount starts in the namespace's /).
# The previous kube-proxy's rules are removed (kube-proxy --cleanup) before the new one starts,
# so two modes never program the node at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/kube-lab/env.sh
. "$here/env.sh"

mode=${1:-}
case $mode in
  iptables | nftables) ;;
  *) echo "proxy.sh: unknown kube-proxy mode '$mode' (iptables, nftables)" >&2; exit 2 ;;
esac
pidfile=$S/pids/kube-proxy
log=$S/logs/kube-proxy.log

if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    wait_for 20 "exit of kube-proxy (pid $pid)" eval "! kill -0 $pid 2>/dev/null"
  fi
  rm -f "$pidfile"
fi
"$BIN/kube" kube-proxy --cleanup --v=0 >>"$S/logs/kube-proxy-cleanup.log" 2>&1 || true

export PROXY_MODE=$mode S KUBECONFIG NODE POD_CIDR
# shellcheck disable=SC2016 # the variable names envsubst fills in
envsubst '${PROXY_MODE} ${KUBECONFIG} ${NODE} ${POD_CIDR}' <"$here/conf/kube-proxy.yaml" >"$S/kube-proxy.yaml"
echo "---- proxy.sh: mode $mode" >>"$log"
nice -n 5 "$BIN/kube" kube-proxy --config="$S/kube-proxy.yaml" --v=1 >>"$log" 2>&1 &
echo $! >"$pidfile"
healthy() {
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "proxy.sh: kube-proxy exited; see $log" >&2; exit 1; }
  curl -sf -o /dev/null http://127.0.0.1:10256/healthz
}
wait_for 60 "kube-proxy healthz in $mode mode" healthy
"$BIN/kubectl" --kubeconfig "$KUBECONFIG" -n kube-system create configmap kube-proxy \
  --from-file=config.conf="$S/kube-proxy.yaml" --dry-run=client -o yaml |
  "$BIN/kubectl" --kubeconfig "$KUBECONFIG" apply -f - >/dev/null
echo "proxy.sh: kube-proxy in $mode mode (pid $(cat "$pidfile"))"
