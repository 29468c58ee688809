#!/usr/bin/env bash
# The data-path benchmark: pod-to-pod throughput (iperf3, 1 and 4 TCP streams) and ping RTT
# through our overlay, through kernel VXLAN on an identical namespace underlay, through a
# TUN→TUN forwarder (copies every packet from one node's TUN to the other's, no tunnel), and
# over the bare underlay, interleaved over several runs, plus the wake-up latency of a blocked
# thread after 50 ms idle; prints a Markdown table with medians and ratios against kernel
# VXLAN. What the figures mean: docs/measurements.md. Everything runs in its own network
# namespaces and is removed on exit (Ctrl-C included); nothing in the root namespace is touched.
#   scripts/bench.sh                       5 runs of 5 s per iperf3 measurement
#   scripts/bench.sh --runs 1 --secs 2     a quick check
#   scripts/bench.sh --ablation            also each data-path offload switched off, one row each
#   scripts/bench.sh --baseline DIR        also the overlay-agent/overlay-cni of another build in
#                                          DIR (e.g. the previous commit's target/release), one row
#   scripts/bench.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root scripts/bench.sh
ensure_packages ip:iproute2 ss:iproute2 bridge:iproute2 ping:iputils-ping sysctl:procps iperf3:iperf3 nft:nftables
target=${CARGO_TARGET_DIR:-target}
echo "==> building (cargo build --release)" >&2
cargo build --release --quiet --workspace --bins
BENCH_INVOKED_AS="sudo scripts/bench.sh${*:+ $*}" \
  BENCH_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo '+changes')" \
  exec "$target/release/bench" "$@"
