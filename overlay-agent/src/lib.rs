//! The overlay agent: control plane (tokio), data path (dedicated threads), local API, CLI.
//!
//! # Layout
//! - [`cli`]: command-line entry (`run`, `status`, `connect`, `forget`, `reset`, `trace`).
//! - [`reset`]: `overlay-agent reset`, removing the persistent TUN device and state.
//! - [`config`]: flags > env > TOML file, validated.
//! - [`run`]: wires the pieces together and shuts them down.
//! - [`control`]: TCP connections and the [`overlay_proto::node::Node`] driver.
//! - [`api`]: the local HTTP API (health, status, IPAM for the CNI plugin).
//! - [`status`]: status JSON and its text view.
//! - [`metrics`]: Prometheus metrics on `--metrics`.
//! - [`trace`]: life of a packet (`overlay-agent trace`, `POST /trace`).
//! - [`ipam_store`]: pod address allocations, persisted.
//! - [`state`]: the state directory.
//! - [`datapath`]: TUN and UDP threads moving packets.
//! - [`drop_log`]: rate-limited warnings for data-path drops.
//! - [`netlink`]: device, address and route setup.
//! - [`egress`]: masquerading of pod traffic leaving the cluster range (nftables).
//! - [`kubernetes`]: peers, block and readiness from and to the Kubernetes API (`--kubernetes`).

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod datapath;
pub mod drop_log;
pub mod egress;
pub mod ipam_store;
pub mod kubernetes;
pub mod metrics;
pub mod netlink;
pub mod reset;
pub mod run;
pub mod state;
pub mod status;
pub mod trace;
