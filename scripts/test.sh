#!/usr/bin/env bash
# Every test of the project: unit, property and simulation tests, and the root tests that build
# network namespaces with real agents, the real CNI plugin and real traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root scripts/test.sh
ensure_packages ip:iproute2 sysctl:procps
# Root tests fail rather than skip here.
export OVERLAY_REQUIRE_ROOT=1
cargo build --workspace --bins
cargo test --workspace "$@"
