#!/usr/bin/env bash
# Fuzzes every decoder: runs each cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET seconds
# (default 180), one after the other, and prints per target the runs, the final coverage
# (libFuzzer's cov: edges and ft: features) and when coverage last grew, so a plateau shows.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs a nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if missing.
# JOBS=N runs N targets at a time (default 1). The committed seeds in fuzz/corpus/<target>
# are read, never written: the growing corpus lives in fuzz/target/corpus/<target>. A crash
# stops that target and leaves its input in fuzz/artifacts/<target>/ (reproduce with
# `cargo +nightly fuzz run <target> <file>`, from fuzz/); the script then exits 1.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET=${1:-180}
shift || true
JOBS=${JOBS:-1}

rustup run nightly rustc --version >/dev/null 2>&1 || {
  echo "a nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Longest input per target: enough for its format (large packets come from the targets'
# "grow" flags, so short inputs stand for 64 KiB ones).
max_len() {
  case "$1" in
    header) echo 64 ;;
    trace) echo 128 ;;
    hello | digest | message | frames) echo 4096 ;;
    gossip | split | coalesce) echo 8192 ;;
    cni_netconf | cni_prev_result) echo 4096 ;;
    *) echo 4096 ;;
  esac
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

echo "==> building ${#targets[@]} targets (debug assertions on)"
cargo +nightly fuzz build -a

logs=target/fuzz-logs
mkdir -p "$logs"

run_one() {
  local t=$1 start
  mkdir -p "target/corpus/$t"
  start=$(date +%s)
  # Each output line is prefixed with the seconds since the start, to see when coverage grew.
  cargo +nightly fuzz run -a "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 2>&1 |
    while IFS= read -r line; do echo "$(($(date +%s) - start)) $line"; done >"$logs/$t.log"
  # cargo fuzz's status is that of the pipe's first command.
  return "${PIPESTATUS[0]}"
}

failed=()
running=0
for t in "${targets[@]}"; do
  echo "==> $t: ${SECONDS_PER_TARGET}s, -max_len=$(max_len "$t")"
  if [ "$JOBS" -gt 1 ]; then
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
      wait -n || true
      running=$((running - 1))
    fi
  else
    run_one "$t" || true
  fi
done
wait || true

printf '\n%-16s %8s %12s %8s %8s %s\n' target seconds runs cov ft "cov last grew at"
for t in "${targets[@]}"; do
  log=$logs/$t.log
  if grep -q -E "panicked|ERROR: libFuzzer|SUMMARY: .*Sanitizer" "$log"; then
    failed+=("$t")
    printf '%-16s CRASH: see %s and fuzz/artifacts/%s/\n' "$t" "fuzz/$log" "$t"
    continue
  fi
  done_line=$(grep -E "#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
  runs=$(sed -n 's/.*stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  # When cov: last grew (ft: may still creep up on a plateau of cov:).
  last=$(grep -E "#[0-9]+[[:space:]]+(INITED|NEW)[[:space:]]" "$log" |
    awk '{ for (i = 1; i < NF; i++) if ($i == "cov:" && $(i + 1) != c) { c = $(i + 1); t = $1; r = $2 } }
         END { if (t != "") print t "s (" r ")" }' || true)
  secs=$(tail -1 "$log" | awk '{print $1}')
  printf '%-16s %8s %12s %8s %8s %s\n' "$t" "$secs" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${last:-none}"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]}" >&2
  exit 1
fi
