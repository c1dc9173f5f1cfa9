#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for FUZZ_SECONDS seconds (default 60).
# A crash fails the script: every crashing target is named with its input (the artifact), after
# all targets have run. Replay an artifact with `fuzz/target/<host triple>/release/TARGET FILE`
# (or `cargo fuzz run --fuzz-dir fuzz -s none TARGET FILE`), and keep it as a regression test:
# crates/corefile/tests/fuzz_regressions/TARGET/, crates/node-cache/tests/fuzz_regressions.rs.
#
#   FUZZ_SECONDS=600 hack/fuzz.sh            # every target, ten minutes each
#   FUZZ_TARGETS="render" hack/fuzz.sh       # some targets only
#
# Stable Rust is enough: without a sanitizer (`-s none`) cargo-fuzz passes only stable rustc
# flags (sanitizer-coverage through -Cpasses/-Cllvm-args). AddressSanitizer, cargo-fuzz's
# default, would need nightly; the code under test forbids `unsafe`, so it would find little
# beyond what overflow checks and panics find. Debug assertions (`-a`, overflow checks
# included) are on. Everything built, the corpora and the artifacts stay under fuzz/ (ignored
# by git); the seed corpora are made at each run from crates/corefile/tests/fixtures and
# manifests/nodelocaldns.yaml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
FIXTURES="$ROOT/crates/corefile/tests/fixtures"
MANIFEST="$ROOT/manifests/nodelocaldns.yaml"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_TARGETS="${FUZZ_TARGETS:-kube_dns render flags}"
CARGO="${CARGO:-cargo}"
CARGO_FUZZ_VERSION=0.13.2

BUILD_FLAGS=(--fuzz-dir "$FUZZ_DIR" --target-dir "$FUZZ_DIR/target" --sanitizer none
  --debug-assertions)

log() { echo "fuzz: $*" >&2; }

if ! [[ "$FUZZ_SECONDS" =~ ^[1-9][0-9]*$ ]]; then
  log "FUZZ_SECONDS=\"$FUZZ_SECONDS\" is not a number of seconds"
  exit 2
fi

for target in $FUZZ_TARGETS; do
  case "$target" in
    kube_dns | render | flags) ;;
    *)
      log "unknown target \"$target\" in FUZZ_TARGETS (kube_dns, render, flags)"
      exit 2
      ;;
  esac
done

install_cargo_fuzz() {
  if "$CARGO" fuzz --version >/dev/null 2>&1; then
    return
  fi
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  "$CARGO" install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
}

# seed_file DIR NAME: stdin becomes DIR/NAME.
seed_file() { cat >"$1/$2"; }

# The kube_dns target: a presence byte (bit 0 stubDomains, bit 1 upstreamNameservers), the
# stubDomains value, NUL, the upstreamNameservers value.
seed_kube_dns() {
  local dir="$1" case name stub upstream presence
  for case in "$FIXTURES"/*/; do
    name="$(basename "$case")"
    stub="$case/stubDomains" upstream="$case/upstreamNameservers" presence=0
    [[ -f "$stub" ]] && presence=$((presence | 1))
    [[ -f "$upstream" ]] && presence=$((presence | 2))
    {
      printf '%b' "\\0$presence"
      if [[ -f "$stub" ]]; then cat "$stub"; fi
      printf '\0'
      if [[ -f "$upstream" ]]; then cat "$upstream"; fi
    } | seed_file "$dir" "$name"
  done
}

# The render target: params, NUL, stubDomains, NUL, upstreamNameservers, NUL, the template.
seed_render() {
  local dir="$1" case file
  for case in "$FIXTURES"/*/; do
    {
      for file in params stubDomains upstreamNameservers; do
        if [[ -f "$case/$file" ]]; then cat "$case/$file"; fi
        printf '\0'
      done
      cat "$case/Corefile.base"
    } | seed_file "$dir" "$(basename "$case")"
  done
}

# The flags target: the arguments, NUL-separated. The DaemonSet's own argv (placeholders
# filled as the operator's sed fills them), and a few spellings more.
seed_flags() {
  local dir="$1" argv
  argv="$(sed -n 's/^ *args: *\[\(.*\)\] *$/\1/p' "$MANIFEST" | head -n1 |
    sed -e 's/__PILLAR__LOCAL__DNS__/169.254.20.10/; s/__PILLAR__DNS__SERVER__/10.96.0.10/' \
      -e 's/^ *"//; s/" *$//; s/" *, *"/\n/g')"
  if [[ -z "$argv" ]]; then
    log "no args: line in $MANIFEST to seed the flags target from"
    exit 1
  fi
  printf '%s' "$argv" | tr '\n' '\0' | seed_file "$dir" manifest
  local -a extra=(
    '-localip=fd00::10 -setupinterface=false -setupiptables=false -skipteardown'
    '--localip 169.254.20.10 -syncinterval 1h30m -health-port=8081 -dns.port 5353 -quiet'
    '-localip 169.254.20.10 -interfacename nodelocaldns -kubednscm /etc/kube-dns -- x'
    '-version -plugins=true -metrics-listen-address [::1]:9353 -coredns-binary /coredns'
    '-h'
  )
  local i
  for i in "${!extra[@]}"; do
    printf '%s' "${extra[$i]}" | tr ' ' '\0' | seed_file "$dir" "extra-$i"
  done
}

install_cargo_fuzz
started=$SECONDS
log "building the fuzz targets"
(cd "$ROOT" && "$CARGO" fuzz build "${BUILD_FLAGS[@]}")
log "built in $((SECONDS - started)) s"
# Where cargo fuzz build puts the targets: it builds for the host triple, in release mode. The
# binaries run directly, so that sources edited meanwhile do not trigger a rebuild mid-run.
bin_dir="$FUZZ_DIR/target/$(rustc -vV | sed -n 's/^host: //p')/release"

failed=()
for target in $FUZZ_TARGETS; do
  seeds="$FUZZ_DIR/seeds/$target" corpus="$FUZZ_DIR/corpus/$target"
  artifacts="$FUZZ_DIR/artifacts/$target" logfile="$FUZZ_DIR/artifacts/$target.log"
  rm -rf "$seeds"
  mkdir -p "$seeds" "$corpus" "$artifacts"
  "seed_$target" "$seeds"
  marker="$(mktemp)"
  log "$target: ${FUZZ_SECONDS} s, log in ${logfile#"$ROOT"/}"
  status=0
  "$bin_dir/$target" "$corpus" "$seeds" -artifact_prefix="$artifacts/" \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$logfile" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logfile" | tail -n1)"
  log "$target: ${runs:-?} runs, ${rate:-?} exec/s, exit $status"
  if ((status != 0)); then
    new="$(find "$artifacts" -type f -newer "$marker" | sort)"
    tail -n 40 "$logfile" >&2
    log "$target: CRASH, input: ${new:-none saved (see the log)}"
    failed+=("$target")
  fi
  rm -f "$marker"
done

log "done in $((SECONDS - started)) s"
if ((${#failed[@]} > 0)); then
  log "crashed: ${failed[*]} (inputs under fuzz/artifacts/)"
  exit 1
fi
