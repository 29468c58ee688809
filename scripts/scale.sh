#!/usr/bin/env bash
# The control plane at scale, live: K real agents (release build), each in its own network
# namespace on one bridge, every one seeded with node 0; measures the time until every agent
# reaches every other, then an idle window: CPU, memory, TCP sockets, control-port bytes and
# connection churn per agent. Prints one JSON object on stdout (progress on stderr). Every
# namespace, the bridge and every agent are removed on exit (Ctrl-C included); nothing in the
# root namespace is touched.
#   scripts/scale.sh --nodes 30                      30 agents, 300 s timeout, 30 s idle
#   scripts/scale.sh --nodes 100 --timeout 900 --json
#   scripts/scale.sh --nodes 3 --idle-secs 2 --json  a cheap smoke run
#   scripts/scale.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root scripts/scale.sh
ensure_packages ip:iproute2 sysctl:procps nft:nftables >&2
target=${CARGO_TARGET_DIR:-target}
echo "==> building (cargo build --release)" >&2
cargo build --release --quiet -p overlay-agent -p overlay-cni -p overlay-examples --bins
SCALE_INVOKED_AS="sudo scripts/scale.sh${*:+ $*}" \
  SCALE_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo '+changes')" \
  exec "$target/release/scale_live" "$@"
