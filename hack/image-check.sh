#!/usr/bin/env bash
# The offline image check (make image-check): no registry, no Docker engine. It
#   1. installs buildah/podman from Debian when missing (hack/image-tools.sh),
#   2. builds a static /node-cache and the pinned CoreDNS with the scripts the Dockerfile's
#      compile stages run (images/node-cache/build-*.sh; CoreDNS through hack/coredns.sh,
#      cached per version and plugin list),
#   3. assembles a stand-in for the distroless-iptables base from Debian packages
#      (hack/image-base.sh) and builds the image's final stage from images/node-cache/Dockerfile
#      with BINARIES=prebuilt and that base, in project-local storage under .cache/image-check,
#   4. runs the image with podman and checks: -version prints both versions; /coredns runs;
#      iptables/ip6tables work inside with NET_ADMIN (nft by default, legacy when the
#      namespace's legacy tables hold kubelet's hint chain) and fail without it; and, in a
#      node/pod/kube-dns/upstream topology of network namespaces made here, node-cache in the
#      container (sharing the node namespace, as hostNetwork does) answers a pod's queries at
#      both local IPs, then tears its rules and interface down on SIGTERM.
# Traffic stays inside the namespaces it creates (unique names); everything is removed on exit.
# Needs root. Prints one line per check; exits non-zero if any failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$root/.cache/image-check"
version="${NODE_CACHE_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo v0.1.0)}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
coredns_version="${COREDNS_VERSION:-v1.14.7}"
image="localhost/node-cache:image-check"
base="localhost/node-cache-base-local:latest"

if [ "$(id -u)" -ne 0 ]; then
  echo "hack/image-check.sh: needs root (network namespaces, podman with NET_ADMIN)" >&2
  exit 1
fi

start=$SECONDS
failed=0
pass() { printf 'PASS %-44s %s\n' "$1" "${2:-}"; }
fail() {
  printf 'FAIL %-44s %s\n' "$1" "${2:-}"
  failed=1
}
step() { printf -- '-- %s (%ss)\n' "$1" "$((SECONDS - start))"; }

# ---- tools and project-local container configuration ----
step "tools"
hack/deps.sh
hack/image-tools.sh
# shellcheck source=hack/containers-env.sh
. hack/containers-env.sh
containers_env "$work" overlay

# ---- binaries ----
step "binaries"
ctx="$work/context"
mkdir -p "$ctx"
NODE_CACHE_VERSION="$version" images/node-cache/build-node-cache.sh amd64 "$ctx" >/dev/null
# hack/coredns.sh builds with the Go stage's own script and plugin list (and caches by both).
coredns="$(COREDNS_VERSION="$coredns_version" hack/coredns.sh | tail -n1)"
cp "$coredns" "$ctx/coredns"

# ---- images ----
step "base image from Debian packages"
base_ctx="$(hack/image-base.sh "$work/base" | tail -n1)"
buildah bud --quiet --pull=never --network none --layers=false -t "$base" -f "$base_ctx/Dockerfile" "$base_ctx" >/dev/null
# The SBOM (make sbom) of what was just built: it must name CoreDNS at its pinned version and
# the crates Cargo.lock links into the agent.
step "SBOM"
sbom="$work/sbom.cdx.json"
if COREDNS_VERSION="$coredns_version" NODE_CACHE_VERSION="$version" hack/sbom.sh "$sbom" >/dev/null &&
  sbom_check="$(python3 - "$sbom" "$coredns_version" <<'PY'
import json, sys
bom = json.load(open(sys.argv[1]))
names = {(c["name"], c["version"]) for c in bom["components"]}
crates = [c for c in bom["components"] if c["purl"].startswith("pkg:cargo/")]
assert ("coredns", sys.argv[2]) in names, f"no coredns {sys.argv[2]}"
assert any(c["name"] == "node-cache" for c in crates), "no node-cache crate"
assert any(c["name"] == "tokio" for c in crates), "no tokio crate"
print(f"coredns {sys.argv[2]}, {len(crates)} crates, {len(bom['components'])} components")
PY
)"; then
  pass "SBOM lists CoreDNS's version and the crates" "$sbom_check"
else
  fail "SBOM lists CoreDNS's version and the crates"
fi
step "final stage from images/node-cache/Dockerfile"
t0=$SECONDS
buildah bud --quiet --pull=never --network none --layers=false \
  --build-arg BASEIMAGE="$base" --build-arg BINARIES=prebuilt \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg COREDNS_VERSION="$coredns_version" --build-arg TARGETARCH=amd64 \
  -t "$image" -f images/node-cache/Dockerfile "$ctx" >/dev/null
pass "image builds offline" "$image ($((SECONDS - t0))s)"

# ---- scratch state, removed on exit ----
tag="ncimg$$$RANDOM"
tmp="$(mktemp -d)"
namespaces=()
pids=()
containers=()
cleanup() {
  set +e
  for c in "${containers[@]}"; do timeout 20 podman rm -f -t 2 "$c" >/dev/null 2>&1; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  for n in "${namespaces[@]}"; do ip netns delete "$n" 2>/dev/null; done
  rm -rf "$tmp"
  # containers/storage leaves its layer mounts (and the graph root's own bind mount) in place
  # after the tools exit; take them all down, deepest first, so no mount outlives the check.
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do umount "$m"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

netns() {
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}
run() { timeout 30 podman run --rm --pull=never "$@"; }

# ---- 1. versions ----
step "checks"
out="$(run --network none "$image" -version 2>&1)" || true
if grep -qx "node-cache $version" <<<"$out" && grep -qx "CoreDNS-${coredns_version#v}" <<<"$out"; then
  pass "/node-cache -version prints both versions" "$(tr '\n' ' ' <<<"$out")"
else
  fail "/node-cache -version prints both versions" "got: $out"
fi
out="$(run --network none --entrypoint /coredns "$image" -version 2>&1)" || true
if grep -q "CoreDNS-${coredns_version#v}" <<<"$out"; then
  pass "/coredns runs" "$(head -n1 <<<"$out")"
else
  fail "/coredns runs" "got: $out"
fi
labels="$(podman image inspect --format '{{index .Labels "org.opencontainers.image.version"}} {{index .Labels "org.opencontainers.image.revision"}}' "$image")"
if [ "$labels" = "$version $revision" ]; then
  pass "OCI labels carry version and revision" "$labels"
else
  fail "OCI labels carry version and revision" "got: $labels"
fi

# ---- 2. iptables inside the container ----
rule=(-t raw -A OUTPUT -p udp --dport 5353 -m comment --comment image-check -j NOTRACK)
netns "$tag-ipt"
for cmd in iptables ip6tables; do
  if run --cap-add NET_ADMIN --network "ns:/run/netns/$tag-ipt" --entrypoint "/usr/sbin/$cmd" "$image" "${rule[@]}" >/dev/null 2>&1 &&
    ip netns exec "$tag-ipt" "${cmd}-nft-save" -t raw 2>/dev/null | grep -q 'image-check'; then
    pass "$cmd with NET_ADMIN (no kubelet hint: nft)" "rule seen by ${cmd}-nft-save outside"
  else
    fail "$cmd with NET_ADMIN (no kubelet hint: nft)"
  fi
done
# nft: -firewall-backend=nftables/auto write and read tables with it, as the real base allows.
if run --cap-add NET_ADMIN --network "ns:/run/netns/$tag-ipt" --entrypoint /usr/sbin/nft "$image" \
  add table inet image-check >/dev/null 2>&1 &&
  ip netns exec "$tag-ipt" nft list tables 2>/dev/null | grep -qx 'table inet image-check'; then
  pass "nft with NET_ADMIN" "table seen by nft outside"
else
  fail "nft with NET_ADMIN"
fi
netns "$tag-leg"
ip netns exec "$tag-leg" iptables-legacy -t mangle -N KUBE-IPTABLES-HINT
if run --cap-add NET_ADMIN --network "ns:/run/netns/$tag-leg" --entrypoint /usr/sbin/iptables "$image" "${rule[@]}" >/dev/null 2>&1 &&
  ip netns exec "$tag-leg" iptables-legacy-save -t raw 2>/dev/null | grep -q 'image-check'; then
  pass "iptables follows a legacy kubelet hint" "rule seen by iptables-legacy-save outside"
else
  fail "iptables follows a legacy kubelet hint"
fi
if out="$(run --network "ns:/run/netns/$tag-ipt" --entrypoint /usr/sbin/iptables "$image" -t raw -S 2>&1)"; then
  fail "iptables without NET_ADMIN is refused" "it listed: $out"
else
  pass "iptables without NET_ADMIN is refused" "$(head -n1 <<<"$out")"
fi

# ---- 3. a node in miniature (addresses as crates/testbed/src/topology.rs) ----
#   pod 10.244.0.2 --- node --- kube-dns pod 10.244.1.2 (kube-proxy-style DNAT 10.96.0.10/.11)
#                        `----- upstream 10.244.2.2
node="$tag-node" pod="$tag-pod" kdns="$tag-kdns" up="$tag-up"
for n in "$node" "$pod" "$kdns" "$up"; do netns "$n"; done
veth() { # NS_A IF_A IP_A NS_B IF_B IP_B
  ip link add name "$2" netns "$1" type veth peer name "$5" netns "$4"
  ip -n "$1" addr add "$3/24" dev "$2"
  ip -n "$4" addr add "$6/24" dev "$5"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}
veth "$node" vpod 10.244.0.1 "$pod" eth0 10.244.0.2
veth "$node" vkdns 10.244.1.1 "$kdns" eth0 10.244.1.2
veth "$node" vup 10.244.2.1 "$up" eth0 10.244.2.2
ip -n "$pod" route add default via 10.244.0.1
ip -n "$kdns" route add default via 10.244.1.1
ip -n "$up" route add default via 10.244.2.1
ip -n "$node" route add 10.96.0.0/12 via 10.244.1.2
ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1
# kubelet's hint chain and kube-proxy's DNAT, with the node's own iptables (the wrapper in the
# image must pick the same backend).
ip netns exec "$node" iptables -t mangle -N KUBE-IPTABLES-HINT
for svc in 10.96.0.10 10.96.0.11; do
  for chain in PREROUTING OUTPUT; do
    for proto in udp tcp; do
      ip netns exec "$node" iptables -t nat -A "$chain" -d "$svc/32" -p "$proto" --dport 53 \
        -j DNAT --to-destination 10.244.1.2:53
    done
  done
done
cat >"$tmp/kube-dns.Corefile" <<'EOF'
.:53 {
    bind 10.244.1.2
    errors
    hosts {
        10.0.0.1 kubernetes.default.svc.cluster.local
        ttl 30
        fallthrough
    }
    forward . 10.244.2.2
}
EOF
cat >"$tmp/upstream.Corefile" <<'EOF'
.:53 {
    bind 10.244.2.2
    errors
    hosts {
        192.0.2.80 www.example.com
        ttl 30
    }
}
EOF
ip netns exec "$kdns" "$coredns" -conf "$tmp/kube-dns.Corefile" >"$tmp/kube-dns.log" 2>&1 &
pids+=("$!")
ip netns exec "$up" "$coredns" -conf "$tmp/upstream.Corefile" >"$tmp/upstream.log" 2>&1 &
pids+=("$!")
printf 'nameserver 10.244.2.2\n' >"$tmp/resolv.conf"

# The node-local-dns ConfigMap as the addon's iptables-mode sed recipe fills it.
mkdir -p "$tmp/coredns"
grep -v '^#' templates/Corefile.base |
  sed -e 's/__PILLAR__LOCAL__DNS__/169.254.20.10/g' -e 's/__PILLAR__DNS__DOMAIN__/cluster.local/g' \
    -e 's/__PILLAR__DNS__SERVER__/10.96.0.10/g' >"$tmp/coredns/Corefile.base"
touch "$tmp/xtables.lock"

dig_pod() { # SERVER NAME [dig options]
  ip netns exec "$pod" timeout 5 dig +short +time=1 +tries=1 "@$1" "$2" "${@:3}" 2>/dev/null | head -n1
}
wait_for() { # SECONDS COMMAND...: true once COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
answers() { [ "$(dig_pod "$1" "$2")" = "$3" ]; }
if wait_for 20 answers 10.244.1.2 kubernetes.default.svc.cluster.local 10.0.0.1; then
  pass "topology: kube-dns and upstream answer"
else
  fail "topology: kube-dns and upstream answer"
fi

dnat_packets() {
  ip netns exec "$node" iptables-save -c -t nat |
    awk '/-A PREROUTING -d 10.96.0.10\/32/ { gsub(/[][]/, "", $1); split($1, c, ":"); n += c[1] } END { print n + 0 }'
}
before="$(dnat_packets)"
cname="$tag-agent"
containers+=("$cname")
t0=$SECONDS
# The manifest's securityContext: read-only root, no new privileges, its capabilities only.
caps="$(awk '/capabilities:/ {c=1} c && /^ *- [A-Z_]+/ && prev ~ /add:|- [A-Z]/ {print $2} {prev=$0} /volumeMounts:/ {c=0}' \
  manifests/nodelocaldns.yaml | grep -v '^ALL$' | paste -sd, -)"
podman run -d --pull=never --name "$cname" --network "ns:/run/netns/$node" \
  --cap-drop ALL --cap-add "$caps" --read-only --security-opt no-new-privileges \
  --tmpfs /run/node-cache:rw,size=1m \
  -e KUBE_DNS_UPSTREAM_SERVICE_HOST=10.96.0.11 \
  -v "$tmp/coredns:/etc/coredns:ro" -v "$tmp/xtables.lock:/run/xtables.lock" \
  -v "$tmp/resolv.conf:/etc/resolv.conf:ro" \
  "$image" -localip 169.254.20.10,10.96.0.10 -conf /run/node-cache/Corefile \
  -upstreamsvc kube-dns-upstream -pidfile /run/node-cache/node-cache.pid >/dev/null
rules() { ip netns exec "$node" iptables-save 2>/dev/null | grep -c 'NodeLocal DNS Cache' || true; }
has_rules() { [ "$(rules)" -eq 24 ]; }
if wait_for 20 answers 169.254.20.10 kubernetes.default.svc.cluster.local 10.0.0.1 && wait_for 10 has_rules; then
  pass "node-cache in the container answers" "first answer and 24 rules in $((SECONDS - t0))s"
else
  fail "node-cache in the container answers" "rules: $(rules); log: $(podman logs "$cname" 2>&1 | tail -n5 | tr '\n' ' ')"
fi
coredns_user="$(podman top "$cname" user comm 2>/dev/null | awk '$2 == "coredns" {print $1}')"
if [ "$coredns_user" = 65532 ] || [ "$coredns_user" = nonroot ]; then
  pass "CoreDNS runs unprivileged in the container" "user $coredns_user, capabilities $caps for node-cache"
else
  fail "CoreDNS runs unprivileged in the container" "user '${coredns_user}'"
fi
for q in "169.254.20.10 kubernetes.default.svc.cluster.local 10.0.0.1" \
  "10.96.0.10 kubernetes.default.svc.cluster.local 10.0.0.1" \
  "10.96.0.10 www.example.com 192.0.2.80"; do
  read -r server name want <<<"$q"
  got="$(dig_pod "$server" "$name")"
  got_tcp="$(dig_pod "$server" "$name" +tcp)"
  if [ "$got" = "$want" ] && [ "$got_tcp" = "$want" ]; then
    pass "pod query @$server $name" "$got (udp and tcp)"
  else
    fail "pod query @$server $name" "udp: '$got' tcp: '$got_tcp', want $want"
  fi
done
after="$(dnat_packets)"
if [ "$after" = "$before" ]; then
  pass "kube-dns IP answered by node-cache, not DNAT" "DNAT packets from pods: $before -> $after"
else
  fail "kube-dns IP answered by node-cache, not DNAT" "DNAT packets from pods: $before -> $after"
fi
mode="$(timeout 10 podman exec "$cname" /usr/sbin/iptables-wrapper 2>/dev/null || echo '?')"
if [ "$mode" = "$(iptables --version | sed -n 's/.*(\(nf_tables\|legacy\)).*/\1/p' | sed 's/nf_tables/nft/')" ]; then
  pass "wrapper picked the node's iptables backend" "$mode"
else
  fail "wrapper picked the node's iptables backend" "got $mode"
fi

timeout 30 podman stop -t 15 "$cname" >/dev/null 2>&1 || true
code="$(podman inspect --format '{{.State.ExitCode}}' "$cname" 2>/dev/null || echo '?')"
left_rules="$(rules)"
left_link="$(ip -n "$node" -br addr 2>/dev/null | grep -c '169.254.20.10' || true)"
if [ "$code" = 0 ] && [ "$left_rules" -eq 0 ] && [ "$left_link" -eq 0 ]; then
  pass "SIGTERM: exit 0, rules and interface gone"
else
  fail "SIGTERM: exit 0, rules and interface gone" "exit $code, $left_rules rules, $left_link links left"
fi

size="$(podman image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.1f", $1 / 1e6 }')"
# make bench prints it beside the memory figures.
echo "$size" >"$work/image-size"
echo "image-check: $size MB image, $((SECONDS - start))s"
if [ "$failed" -ne 0 ]; then
  echo "image-check: FAILED" >&2
  exit 1
fi
echo "image-check: all checks passed"
