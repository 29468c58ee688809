#!/usr/bin/env bash
# Every test of the project: unit, property and simulation tests, the root tests that build
# network namespaces with real agents, the real CNI plugin and real traffic, and the
# docker-compose demo on the machine's Docker engine (scripts/test-compose.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root scripts/test.sh
# ping: the fast-path size sweep; nft: the agents masquerade pod egress; portmap: the CNI
# chaining tests; g++: libFuzzer, built into the fuzz targets.
ensure_packages ip:iproute2 sysctl:procps ping:iputils-ping nft:nftables /usr/lib/cni/portmap:containernetworking-plugins g++:g++
cargo build --workspace --bins
# As root every root-only test runs (built by another user they would show as ignored).
cargo test --workspace "$@"
# The fuzz targets (their own workspace, fuzz/) built on stable, every committed seed replayed.
cargo test --manifest-path fuzz/Cargo.toml
# Kubernetes: discovery with the k8s feature (kube-rs), and the manifests against the API schemas.
cargo test -p overlay-agent --features k8s --lib --test kubernetes --test kubernetes_api --test kubernetes_cluster
deploy/kubernetes/validate.sh
scripts/test-compose.sh
