#!/usr/bin/env bash
# make kube-down: removes everything kube-up made and says what it removed: the lab's processes
# (those in its network or mount namespace or its pod cgroups, found by namespace and cgroup, so
# no other process on the VM is touched), its cgroups, its network namespace (and with it every
# link, address, rule and namespace sysctl of the node), its mounts (all inside its private
# mount namespace, gone with its last process) and its state folder. Then checks that none of
# it is left and that the VM-wide sysctls kubelet would set kept their values. Safe to run
# when no lab, or half a lab, is up. Exits non-zero if anything is left.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/kube-lab/env.sh
. "$here/env.sh"

[ "$(id -u)" -eq 0 ] || { echo "kube-lab: needs root" >&2; exit 1; }
if [ ! -e "/run/netns/$NS" ] && [ ! -e "$S" ] && ! compgen -G "/sys/fs/cgroup/*/$CGROOT" >/dev/null; then
  echo "kube-down: no lab to remove"
  exit 0
fi

netns_ino=$(stat -L -c %i "/run/netns/$NS" 2>/dev/null || true)
inner=$(cat "$S/inner.pid" 2>/dev/null || true)
mntns=""
[ -n "$inner" ] && mntns=$(readlink "/proc/$inner/ns/mnt" 2>/dev/null || true)
# The lab's mount namespace differs from ours; never treat ours as the lab's.
[ "$mntns" = "$(readlink /proc/self/ns/mnt)" ] && mntns=""

# What the node held, for the record.
if [ -n "$netns_ino" ]; then
  links=$(ip -n "$NS" -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | paste -sd' ' -)
  rules=$(in_lab iptables-save 2>/dev/null | grep -c '^-A' || true)
  ours=$(in_lab iptables-save 2>/dev/null | grep -c 'NodeLocal DNS Cache' || true)
  tables=$(in_lab nft list tables 2>/dev/null | awk '{ print $2 "/" $3 }' | paste -sd' ' -)
fi

lab_pids() { # every process of the lab: in its network or mount namespace, or in its pod cgroups
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    if { [ -n "$netns_ino" ] && [ "$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null)" = "$netns_ino" ]; } ||
      { [ -n "$mntns" ] && [ "$(readlink "/proc/$p/ns/mnt" 2>/dev/null)" = "$mntns" ]; }; then
      echo "$p"
    fi
  done
  find /sys/fs/cgroup/*/"$CGROOT" -name cgroup.procs -exec cat {} + 2>/dev/null
}
pid_of() { cat "$S/pids/$1" 2>/dev/null; }
comms() { local p; for p in "$@"; do cat "/proc/$p/comm" 2>/dev/null; done | sort | uniq -c | awk '{ printf "%s%s(%s)", sep, $2, $1; sep=" " }'; }

mapfile -t before < <(lab_pids | sort -un)
killed=$(comms "${before[@]}")
# kubelet first, so nothing restarts the containers; then the containers; then the rest.
kubelet=$(pid_of kubelet)
[ -n "$kubelet" ] && kill "$kubelet" 2>/dev/null
find /sys/fs/cgroup/*/"$CGROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un | xargs -r kill -9 2>/dev/null
daemons=()
for name in kubelet kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd upstream-dns containerd; do
  p=$(pid_of "$name")
  [ -n "$p" ] && kill "$p" 2>/dev/null && daemons+=("$p")
done
# The daemons get a moment to exit cleanly (etcd and containerd flush their files); the rest
# (containerd's shims, the pause processes, inner.sh) only go with the state they served.
daemons_gone() { local p; for p in "${daemons[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
wait_for 10 "exit of the lab's daemons after SIGTERM" daemons_gone 2>/dev/null
lab_pids | sort -un | xargs -r kill -9 2>/dev/null
gone() { [ -z "$(lab_pids)" ]; }
wait_for 10 "exit of the lab's processes after SIGKILL" gone

# cgroups, deepest first; a cgroup is removable once its last process has been reaped.
cgroups=$(find /sys/fs/cgroup/*/"$CGROOT" -type d 2>/dev/null | wc -l)
rm_cgroups() {
  find /sys/fs/cgroup/*/"$CGROOT" -depth -type d -exec rmdir {} \; 2>/dev/null
  ! compgen -G "/sys/fs/cgroup/*/$CGROOT" >/dev/null
}
wait_for 10 "removal of the cgroups /sys/fs/cgroup/*/$CGROOT" rm_cgroups

[ -n "$netns_ino" ] && ip netns delete "$NS"

# The VM-wide sysctls kubelet sets were shadowed inside the lab; they must not have moved.
sysctl_moved=""
if [ -f "$S/sysctl-before" ]; then
  while IFS='=' read -r key value; do
    now=$(cat "/proc/sys/$key")
    [ "$now" = "$value" ] || sysctl_moved+=" $key: $value -> $now"
  done <"$S/sysctl-before"
fi
rm -rf "$S"

echo "kube-down: removed"
echo "  processes:         ${#before[@]} ${killed:+($killed)}"
echo "  cgroups:           $cgroups under /sys/fs/cgroup/*/$CGROOT"
if [ -n "$netns_ino" ]; then
  echo "  network namespace: $NS with links: ${links:-none}; $rules iptables rules ($ours node-cache), nft tables: ${tables:-none}"
fi
echo "  mounts:            the lab's private mount namespace (sysfs, /run, /var/log, /var/lib overlay, ${#KUBELET_SYSCTLS[@]} sysctl shadows, containerd's), gone with its last process"
echo "  state:             $S"

# ---- nothing left ----
left=()
[ -n "$(lab_pids)" ] && left+=("processes: $(lab_pids | sort -un | paste -sd' ' -)")
compgen -G "/sys/fs/cgroup/*/$CGROOT" >/dev/null && left+=("cgroups: $(compgen -G "/sys/fs/cgroup/*/$CGROOT" | paste -sd' ' -)")
[ -e "/run/netns/$NS" ] && left+=("network namespace $NS")
m=$(grep -E -e "$KUBE_LAB_CACHE/state|/run/netns/$NS" /proc/self/mountinfo | awk '{ print $5 }' | paste -sd' ' -)
[ -n "$m" ] && left+=("mounts: $m")
l=$(ip -o link show | grep -E ' kl-' | awk -F': ' '{ print $2 }' | paste -sd' ' -)
[ -n "$l" ] && left+=("links in the root namespace: $l")
[ -n "$sysctl_moved" ] && left+=("sysctls changed:$sysctl_moved")
if [ "${#left[@]}" -gt 0 ]; then
  printf 'kube-down: LEFT BEHIND: %s\n' "${left[@]}" >&2
  exit 1
fi
echo "kube-down: nothing left (processes, namespaces, cgroups, mounts, links, rules, sysctls checked)"
