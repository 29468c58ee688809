#!/usr/bin/env bash
# The main job: a local three-node overlay cluster in network namespaces, a pod on each node,
# pings between pods on different nodes, each agent's status, then teardown.
#   scripts/demo.sh          run it and remove everything
#   scripts/demo.sh --keep   leave the cluster up (and print how to look around)
#   scripts/demo.sh --down   remove a cluster left up
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root scripts/demo.sh
ensure_packages ip:iproute2 ping:iputils-ping sysctl:procps nft:nftables
echo "==> building (cargo build --release)"
cargo build --release --quiet --workspace --bins
exec target/release/cluster "$@"
