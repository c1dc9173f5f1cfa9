#!/usr/bin/env bash
# make kube-e2e: brings a fresh lab up (make kube-up's script), runs the addon's end-to-end
# cases in it (crates/kube-e2e), and takes the lab down again whatever happened (make
# kube-down's script). Refuses to touch a lab that is already up. The last line is the cases'
# summary:  kube-e2e: N passed, M failed; surge rollout failed/sent A/B
# Exits non-zero if a case failed or the teardown left something behind.
#   KUBE_E2E_CASES=2a,2f   only those cases (setup always runs)
#   KUBE_LAB_KEEP=1        leave the lab up afterwards (make kube-down removes it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/kube-lab/env.sh
. "$here/env.sh"
start=$SECONDS

if [ -e "/run/netns/$NS" ] || [ -e "$S" ]; then
  echo "kube-e2e: a lab is already up; make kube-down first (kube-e2e runs in a fresh one)" >&2
  exit 1
fi
# Built before the lab is up, so a compile error costs no cluster start; Helm (case 2i) too.
cargo build -q --locked -p kube-e2e --bin kube-e2e
"$KUBE_LAB_ROOT/hack/helm.sh" >/dev/null
summary="kube-e2e: 0 passed, 1 failed; surge rollout failed/sent not measured (the lab did not come up)"
rc=1
finish() {
  local down_rc=0
  if [ -d "$S/logs" ]; then
    rm -rf "$KUBE_LAB_CACHE/last-logs"
    cp -r "$S/logs" "$KUBE_LAB_CACHE/last-logs" 2>/dev/null || true
  fi
  if [ "${KUBE_LAB_KEEP:-0}" = 1 ]; then
    echo "kube-e2e: KUBE_LAB_KEEP=1, the lab stays up (make kube-down)"
  else
    "$here/down.sh" || down_rc=$?
  fi
  echo "kube-e2e: $((SECONDS - start))s in all; component logs in $KUBE_LAB_CACHE/last-logs"
  echo "$summary"
  [ "$down_rc" -eq 0 ] || rc=1
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

"$here/up.sh"
export KUBE_LAB_ROOT KUBE_LAB_STATE=$S KUBE_LAB_NETNS=$NS KUBE_LAB_NODE_CACHE_IMAGE=$NODE_CACHE_IMAGE
set +e
"$KUBE_LAB_ROOT/target/debug/kube-e2e" | tee "$KUBE_LAB_CACHE/e2e.out"
rc=${PIPESTATUS[0]}
set -e
summary=$(grep '^kube-e2e: .* passed, .* failed' "$KUBE_LAB_CACHE/e2e.out" | tail -n1 || true)
[ -n "$summary" ] || summary="kube-e2e: 0 passed, 1 failed; surge rollout failed/sent not measured (the cases did not finish, exit $rc)"
