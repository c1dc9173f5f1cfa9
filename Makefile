# node-cache: a drop-in replacement for NodeLocal DNSCache's agent.
# The variables an operator or CI sets live here; the targets are in rules.mk (the layout of
# kubernetes/dns). `make help` lists every target.

BINARIES := node-cache

# Architecture to build for (upstream's names: amd64 arm arm64 ppc64le s390x).
ARCH ?= amd64
# Version stamped into the binary; defaults to `git describe`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0)
# Container registry (packaging targets, later).
REGISTRY ?= registry.example.invalid/dns
# Pinned upstream CoreDNS, built unmodified by hack/coredns.sh (plugins: images/node-cache/coredns-plugins.txt).
COREDNS_VERSION ?= v1.14.7
# VERBOSE=1 echoes every command.
VERBOSE ?= 0

include rules.mk
