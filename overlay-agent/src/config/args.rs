//! The flags of `overlay-agent run`, as typed by the user (parsed and checked by [`super::Config`]).

use clap::Args;
use std::path::PathBuf;

const ENV_HELP: &str = "\
Every flag can also be set with an environment variable OVERLAY_<FLAG> (OVERLAY_NAME, \
OVERLAY_LISTEN, OVERLAY_PEERS (comma-separated), OVERLAY_CLUSTER_CIDR, OVERLAY_STATE_DIR, \
OVERLAY_RECLAIM_AFTER, OVERLAY_CONFIG, ...) or with a key of the TOML file given with --config \
(keys are the flag names: name = \"node1\", cluster-cidr = \"10.32.0.0/12\", \
peers = [\"10.0.0.1\", \"node2:6783\"], ...). Flags win over the environment, the environment \
over the file. An empty environment variable counts as unset.";

/// Flags of `overlay-agent run`. Every value is kept as typed; `None` means "not given as a flag".
#[derive(Debug, Clone, Default, Args)]
#[command(after_help = ENV_HELP)]
pub struct RunArgs {
    /// Peer name, unique in the cluster [default: the hostname]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// TCP control connections and UDP data, on the same port [default: 0.0.0.0:6783]
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,

    /// The underlay address other peers dial [default: the address of the interface towards the
    /// first peer, else the first non-loopback IPv4 address; the port of --listen]
    #[arg(long, value_name = "IP[:PORT]")]
    pub advertise: Option<String>,

    /// A seed peer, repeatable or comma-separated (port default 6783); the rest of the cluster
    /// is discovered by gossip
    #[arg(long = "peer", value_name = "HOST[:PORT]", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// The overlay address range [default: 10.32.0.0/12]
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr: Option<String>,

    /// Prefix length of the block each node claims from the cluster range [default: 24]
    #[arg(long, value_name = "N")]
    pub subnet_prefix: Option<String>,

    /// Name of the TUN device [default: ovl0]
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,

    /// HTTP status and IPAM API [default: 127.0.0.1:6784]
    #[arg(long, value_name = "IP:PORT")]
    pub api: Option<String>,

    /// Prometheus /metrics address [default: 0.0.0.0:6782]
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<String>,

    /// Where the subnet claim and pod address allocations are kept [default: /var/lib/overlay]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,

    /// How long a peer must be unreachable before its block may be taken over when no block is
    /// free, e.g. 24h, 90m, 1h30m [default: 24h]
    #[arg(long, value_name = "DURATION")]
    pub reclaim_after: Option<String>,

    /// How many peers this agent prefers to keep control connections with (its active view;
    /// others reach it through them) [default: 6]
    #[arg(long, value_name = "N")]
    pub active_view: Option<String>,

    /// Most control connections this agent holds, inbound and outbound; a peer dialing when
    /// there is no room is redirected to others [default: 32]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,

    /// Cluster secret file (one secret per line: current, then an optional next one; re-read
    /// every second); only peers holding it can join
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<String>,

    /// Encrypt the data path (AEAD per datagram, per-peer-pair keys from the authenticated
    /// handshakes; the overlay MTU is 28 bytes smaller); needs --secret-file
    #[arg(long)]
    pub encrypt: bool,

    /// Find peers (every other Node's InternalIP), this node's block (its spec.podCIDR) and
    /// report readiness (its NetworkUnavailable condition) through the Kubernetes API; --name
    /// must be the Node's name. Needs an agent built with the `k8s` feature
    #[arg(long)]
    pub kubernetes: bool,

    /// Masquerade traffic from pods to destinations outside the cluster range to the node's
    /// address (nftables table `ip overlay-egress`; needs the nft command); false turns it
    /// off [default: true]
    #[arg(long, value_name = "BOOL")]
    pub masquerade: Option<String>,

    /// Log format: text (for people) or json (one object per line, for collectors); the
    /// level filter is RUST_LOG (e.g. info, overlay_agent=debug) [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// TOML file with defaults for any of the flags above
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration, print the effective values (as a TOML file --config reads,
    /// each with where it came from) and exit: 0 when valid, 2 with one line naming the field
    /// when not
    #[arg(long)]
    pub check_config: bool,
}
