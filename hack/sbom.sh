#!/usr/bin/env bash
# Writes a CycloneDX 1.5 JSON SBOM of the node-cache image (make sbom) and prints its path and
# component count. Three parts, each read from what the image is built from:
#   - the agent's crates: `cargo metadata --locked --offline` for the host target, the normal (non-dev, non-build)
#     dependency closure of the node-cache binary's package, as Cargo.lock pins it;
#   - CoreDNS and its Go modules: `go version -m` of the pinned CoreDNS binary hack/coredns.sh
#     builds (its main module reads "(devel)", so CoreDNS's own version is COREDNS_VERSION);
#   - the base's Debian packages: the list hack/image-base.sh downloads, each at the version
#     its .deb carries (from .cache/image-check when the image was built, else apt's candidate,
#     which is what apt-get download fetches).
#
#   hack/sbom.sh [OUT]        (default .cache/sbom/node-cache.cdx.json; .cache is git-ignored)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-$root/.cache/sbom/node-cache.cdx.json}"
mkdir -p "$(dirname "$out")"
coredns_version="${COREDNS_VERSION:-v1.14.7}"
version="${NODE_CACHE_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo v0.1.0)}"
coredns_bin="$(hack/coredns.sh | tail -n1)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cargo metadata --locked --offline --filter-platform "$(rustc -vV | sed -n "s/^host: //p")" --format-version 1 >"$tmp/cargo.json"
go version -m "$coredns_bin" >"$tmp/go.txt"
# The base's package list, as hack/image-base.sh declares it (one source of truth).
sed -n '/^packages=(/,/)/p' hack/image-base.sh | tr -d '()' | sed 's/^packages=//' |
  tr -s ' \n' '\n' | grep -v '^$' >"$tmp/debs.txt"
: >"$tmp/debver.txt"
while read -r p; do
  deb="$(compgen -G ".cache/image-check/base/debs/${p}_*.deb" | head -n1 || true)"
  if [ -n "$deb" ]; then
    v="$(dpkg-deb -f "$deb" Version)"
    a="$(dpkg-deb -f "$deb" Architecture)"
  else
    v="$(apt-cache policy "$p" | awk '/Candidate:/ { print $2 }')"
    a="$(dpkg --print-architecture)"
  fi
  if [ -z "$v" ] || [ "$v" = "(none)" ]; then
    echo "hack/sbom.sh: Debian package $p: no version (no .deb and no apt candidate)" >&2
    exit 1
  fi
  printf '%s %s %s\n' "$p" "$v" "$a" >>"$tmp/debver.txt"
done <"$tmp/debs.txt"

python3 - "$tmp" "$out" "$version" "$coredns_version" <<'PY'
import json, sys, uuid
tmp, out, version, coredns_version = sys.argv[1:]
meta = json.load(open(f"{tmp}/cargo.json"))
pkgs = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
agent = next(p for p in meta["packages"] if p["name"] == "node-cache" and
             any(t["kind"] == ["bin"] for t in p["targets"]))
# Normal dependencies only, walked from the agent's package: what is linked into the binary.
seen, todo = set(), [agent["id"]]
while todo:
    i = todo.pop()
    if i in seen:
        continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] is None for k in d["dep_kinds"]):
            todo.append(d["pkg"])
comps = []
for i in sorted(seen, key=lambda i: (pkgs[i]["name"], pkgs[i]["version"])):
    p = pkgs[i]
    local = p["source"] is None
    c = {"type": "application" if i == agent["id"] else "library",
         "name": p["name"], "version": p["version"],
         "purl": f"pkg:cargo/{p['name']}@{p['version']}",
         "properties": [{"name": "node-cache:part", "value": "agent"}]}
    if p.get("license"):
        c["licenses"] = [{"expression": p["license"]}]
    if local:
        c["properties"].append({"name": "node-cache:source", "value": "workspace"})
    comps.append(c)
gomods = []
for line in open(f"{tmp}/go.txt"):
    f = line.strip().split("\t")
    if f[0] == "dep" and len(f) >= 3:
        gomods.append((f[1], f[2]))
    elif f[0] == "=>" and gomods:
        gomods[-1] = (f[1], f[2])  # a replace directive: the module actually built
comps.append({"type": "application", "name": "coredns", "version": coredns_version,
              "purl": f"pkg:golang/github.com/coredns/coredns@{coredns_version}",
              "properties": [{"name": "node-cache:part", "value": "coredns"}]})
for path, v in sorted(gomods):
    comps.append({"type": "library", "name": path, "version": v,
                  "purl": f"pkg:golang/{path}@{v}",
                  "properties": [{"name": "node-cache:part", "value": "coredns"}]})
for line in open(f"{tmp}/debver.txt"):
    name, v, arch = line.split()
    comps.append({"type": "library", "name": name, "version": v,
                  "purl": f"pkg:deb/debian/{name}@{v}?arch={arch}",
                  "properties": [{"name": "node-cache:part", "value": "base"}]})
bom = {"bomFormat": "CycloneDX", "specVersion": "1.5",
       "serialNumber": f"urn:uuid:{uuid.uuid4()}", "version": 1,
       "metadata": {"component": {"type": "container", "name": "k8s-dns-node-cache",
                                  "version": version}},
       "components": comps}
json.dump(bom, open(out, "w"), indent=1, sort_keys=True)
parts = {}
for c in comps:
    k = c["properties"][0]["value"]
    parts[k] = parts.get(k, 0) + 1
print(f"{out}: {len(comps)} components (agent crates {parts.get('agent', 0)}, "
      f"coredns + Go modules {parts.get('coredns', 0)}, Debian packages {parts.get('base', 0)})")
PY
