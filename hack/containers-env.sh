# shellcheck shell=bash
# Sourced by the scripts that build or run images (hack/image-check.sh, hack/kube-lab/images.sh):
# containers_env DIR DRIVER writes project-local storage and engine configuration under DIR and
# exports it, so buildah and podman touch nothing of the machine's own.
#   runc: crun refuses this VM's hybrid cgroup layout; no default ulimits: root here may lack
#   CAP_SYS_RESOURCE; netns none: podman never makes a bridge in the root namespace.
containers_env() {
  local dir=$1 driver=$2
  mkdir -p "$dir/storage" "$dir/run" "$dir/tmp"
  cat >"$dir/storage.conf" <<CONF
[storage]
driver = "$driver"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
  cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = []
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$dir/tmp"
CONF
  export CONTAINERS_STORAGE_CONF="$dir/storage.conf" CONTAINERS_CONF="$dir/containers.conf"
  export BUILDAH_ISOLATION=chroot
}
