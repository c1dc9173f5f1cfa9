#!/usr/bin/env bash
# What must pass before a change lands: formatting, lints (Rust and shell), every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

make lint
make test
