#!/usr/bin/env bash
# Regenerates images/node-cache/node-cache.symbol-order: the functions node-cache runs from its
# start to its idle state, which build-node-cache.sh asks the linker (lld,
# --symbol-ordering-file) to place first and together. The kernel maps a binary's pages in
# 64 KiB blocks around each page touched, so functions used at start scattered over the whole
# binary made most of it resident; packed together they take a few blocks (issue 13).
#
# It builds node-cache as the image does but with symbols, runs it under valgrind's callgrind
# in a throwaway network namespace with the addon's flags (a stub domain, a short sync interval
# so the periodic re-check is seen, one metrics scrape, SIGTERM's teardown; CoreDNS starts a
# second late, so the probes meet a refused port first, as they do at native speed), and
# writes the names of every function that ran, in the order callgrind lists them, then what
# callgrind cannot see: the static C library's start-up code and IFUNC resolvers, and every
# CPU variant of the string functions it saw (valgrind's CPU is not the machine's). Needs root, valgrind,
# curl and the CoreDNS of hack/coredns.sh. Run it after a change of dependencies or of the
# toolchain (a name the binary no longer has is ignored; a function missing from the list is
# placed after the listed ones: either way the binary is right, only less compact).
#
#   hack/symbol-order.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
order="$root/images/node-cache/node-cache.symbol-order"
if [ "$(id -u)" -ne 0 ]; then
  echo "hack/symbol-order.sh: needs root (a network namespace, the interface and rules)" >&2
  exit 1
fi
command -v valgrind >/dev/null 2>&1 || {
  echo "hack/symbol-order.sh: valgrind is missing (Debian: apt-get install valgrind)" >&2
  exit 1
}
coredns="$(hack/coredns.sh | tail -n1)"

work="$(mktemp -d)"
chmod 755 "$work"
ns="symorder$$"
pid=""
cleanup() {
  set +e
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  ip netns delete "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "hack/symbol-order.sh: building node-cache with symbols" >&2
NODE_CACHE_KEEP_SYMBOLS=1 images/node-cache/build-node-cache.sh amd64 "$work/bin" >/dev/null

ip netns add "$ns"
ip -n "$ns" link set lo up
sed -e 's/__PILLAR__DNS__DOMAIN__/cluster.local/' \
  -e 's/__PILLAR__LOCAL__DNS__/169.254.20.10/g' \
  -e 's/__PILLAR__DNS__SERVER__/10.96.0.10/g' templates/Corefile.base >"$work/Corefile.base"
mkdir -p "$work/kube-dns"
echo '{"stub.example": ["10.0.0.53"]}' >"$work/kube-dns/stubDomains"
cat >"$work/coredns-late" <<EOF
#!/bin/sh
case "\$1" in -plugins | -version) exec "$coredns" "\$@" ;; esac
sleep 1
exec "$coredns" "\$@"
EOF
chmod 755 "$work/coredns-late"

echo "hack/symbol-order.sh: running it under callgrind" >&2
KUBE_DNS_UPSTREAM_SERVICE_HOST=10.0.0.1 ip netns exec "$ns" \
  valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$work/callgrind.out" \
  "$work/bin/node-cache" -localip 169.254.20.10,10.96.0.10 -upstreamsvc kube-dns-upstream \
  -basecorefile "$work/Corefile.base" -conf "$work/Corefile" -kubednscm "$work/kube-dns" \
  -pidfile "$work/node-cache.pid" -coredns-binary "$work/coredns-late" -syncinterval 2s \
  -metrics-listen-address 127.0.0.1:9353 >"$work/log" 2>&1 &
pid=$!
deadline=$((SECONDS + 60))
until grep -q "rules in place" "$work/log"; do
  if [ "$SECONDS" -gt "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "hack/symbol-order.sh: node-cache did not get its rules in place:" >&2
    cat "$work/log" >&2
    exit 1
  fi
  sleep 0.2
done
# The periodic re-check runs twice (-syncinterval 2s) before the scrape and the teardown.
sleep 5
ip netns exec "$ns" curl -sf -m 10 -o /dev/null http://127.0.0.1:9353/metrics
kill -TERM "$pid"
wait "$pid" || true
pid=""

# Every function callgrind saw run, called (fn=) or calling (cfn=), once, first seen first;
# then the C library's start-up, IFUNC resolvers and the siblings of the string functions seen
# (__strrchr_avx2 brings __strrchr_evex, __strrchr_sse2, ...).
sed -n 's/^c\{0,1\}fn=//p' "$work/callgrind.out" | sed "s/'[0-9]*$//" | grep -v '^0x\|^(' >"$work/ran"
nm --defined-only "$work/bin/node-cache" | awk '{ print $3 }' | sort -u >"$work/symbols"
variant='_\(avx\|evex\|sse\|ssse\|erms\|unaligned\)'
# valgrind runs its own strcmp, strlen, ... (never the C library's): those always.
{
  sed -n "s/^\(__[a-z0-9]*\)$variant.*/\1_/p" "$work/ran"
  printf '__%s_\n' strcmp strncmp strlen strnlen strchr strrchr memchr rawmemchr memcmp memcpy memmove memset
} | sort -u >"$work/string-functions"
{
  cat "$work/ran"
  grep -x '_start\|__libc_start_main.*\|__libc_setup_tls\|__libc_init_secure\|_dl_relocate_static_pie\|apply_irel\|_dl_non_dynamic_init\|__libc_init_first\|__libc_early_init\|__tunables_init\|init_cpu_features.*\|update_active.*\|handle_amd\|handle_intel\|intel_check_word.*\|init_cacheinfo\|.*_ifunc' "$work/symbols" || true
  grep -F -f "$work/string-functions" "$work/symbols" | grep "$variant" || true
} | awk 'NF && !seen[$0]++' >"$work/order"
n=$(wc -l <"$work/order")
if [ "$n" -lt 1000 ]; then
  echo "hack/symbol-order.sh: only $n functions recorded; keeping the old list" >&2
  exit 1
fi
mv "$work/order" "$order"
echo "hack/symbol-order.sh: $n functions in ${order#"$root"/}" >&2
