//! Configuration of `overlay-agent run`: flags > environment (`OVERLAY_<FLAG>`) > TOML file
//! (`--config`) > defaults, then validated.
//!
//! Every invalid value is reported as one line naming the field, the value and where it came
//! from ([`ConfigError`]); the binary exits with code 2 on any of them.

mod args;
mod discover;
mod effective;
mod layers;
mod parse;
#[cfg(test)]
mod tests;

pub use args::RunArgs;
pub use discover::{default_advertise_ip, resolve_peer, ResolveError};
pub use layers::{FileError, Origin};
pub use parse::{peer as parse_peer, AdvertiseSpec, Invalid, PeerAddr, DEFAULT_PEER_PORT};

use ipnet::Ipv4Net;
use layers::{Layer, Raw};
use overlay_proto::node::ActiveView;
use overlay_proto::PeerName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest accepted `--subnet-prefix` (a /31 or /32 block leaves no pod address).
pub const MAX_SUBNET_PREFIX: u8 = 30;

/// The validated configuration of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Peer name.
    pub name: PeerName,
    /// TCP and UDP listen address.
    pub listen: SocketAddr,
    /// The advertised address (its IP is discovered at start when not given).
    pub advertise: AdvertiseSpec,
    /// Seed peers.
    pub peers: Vec<PeerAddr>,
    /// The overlay range.
    pub cluster: Ipv4Net,
    /// Block size each node claims.
    pub subnet_prefix: u8,
    /// TUN device name.
    pub iface: String,
    /// Local HTTP API address.
    pub api: SocketAddr,
    /// Prometheus `/metrics` address.
    pub metrics: SocketAddr,
    /// State directory.
    pub state_dir: PathBuf,
    /// How long a peer must be unreachable before its block may be taken over.
    pub reclaim_after: Duration,
    /// The active view: peers preferred, most connections held.
    pub view: ActiveView,
    /// Discovery, block and readiness through the Kubernetes API ([`crate::kubernetes`]).
    pub kubernetes: bool,
    /// Masquerade pod traffic leaving the cluster range to the node's address
    /// ([`crate::egress`]).
    pub masquerade: bool,
    /// The cluster secret file (`--secret-file`, see [`crate::auth`]): only peers holding
    /// one of its secrets may connect.
    pub secret_file: Option<PathBuf>,
    /// Seal every data datagram (`--encrypt`, needs `secret_file`): see
    /// [`crate::datapath::Encryption`] and [`crate::control::keys`].
    pub encrypt: bool,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name `--log-format` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Where each configuration key's value came from.
pub type Origins = std::collections::BTreeMap<&'static str, Origin>;

/// Why the configuration is not usable. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid --{field} {value:?}{origin}: {reason}")]
    Invalid {
        /// The flag name.
        field: &'static str,
        /// The value as given.
        value: String,
        /// Where it was given.
        origin: Origin,
        /// What is wrong.
        reason: Invalid,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: layers::FileError,
    },
    /// The hostname is not usable as a peer name.
    #[error("the hostname {0:?} is not a valid peer name; set one with --name")]
    Hostname(String),
    /// The hostname cannot be read.
    #[error("cannot read the hostname; set a peer name with --name")]
    NoHostname,
    /// `--encrypt` without `--secret-file`.
    #[error("--encrypt needs --secret-file")]
    EncryptWithoutSecret,
    /// `--kubernetes` in an agent built without the `k8s` feature.
    #[error("--kubernetes needs an overlay-agent built with the `k8s` feature (cargo build --release -p overlay-agent --features k8s); this one was built without it")]
    KubernetesNotBuilt,
    /// The secret file cannot be used.
    #[error("--secret-file {}: {reason}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret).
        reason: crate::auth::SecretError,
    },
}

/// Where [`Config::resolve`] reads the environment.
#[derive(Clone, Copy)]
pub struct Environment<'a> {
    /// Looks up an environment variable.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// This machine's hostname (the default name).
    pub hostname: Option<&'a str>,
}

impl std::fmt::Debug for Environment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

struct Sources {
    layers: [Layer; 3],
}

impl Sources {
    /// The value of `key` from the first source that has it.
    fn get(&self, key: &'static str) -> Option<(Raw, Origin)> {
        self.layers.iter().find_map(|l| l.get(key).cloned())
    }

    /// Parses `key` from the first source that has it, else `default`.
    fn parse<T>(
        &self,
        key: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, Invalid>,
    ) -> Result<T, ConfigError> {
        let (value, origin) = match self.get(key) {
            Some((raw, origin)) => (raw.into_one(), origin),
            None => (default.to_owned(), Origin::Default),
        };
        parse(&value).map_err(|reason| invalid(key, value, origin, reason))
    }
}

fn invalid(field: &'static str, value: String, origin: Origin, reason: Invalid) -> ConfigError {
    ConfigError::Invalid {
        field,
        value,
        origin,
        reason,
    }
}

impl Config {
    /// Reads the configuration from `args`, the process environment and the config file.
    pub fn load(args: &RunArgs) -> Result<Config, ConfigError> {
        let var = |name: &str| std::env::var(name).ok();
        let hostname = parse::hostname();
        Config::resolve(
            args,
            Environment {
                var: &var,
                hostname: hostname.as_deref(),
            },
        )
    }

    /// Reads the configuration as [`Config::load`] and renders it for `--check-config`: the
    /// effective values as a TOML file `--config` reads back, each with its origin.
    pub fn check(args: &RunArgs) -> Result<String, ConfigError> {
        let var = |name: &str| std::env::var(name).ok();
        let hostname = parse::hostname();
        Config::explain(
            args,
            Environment {
                var: &var,
                hostname: hostname.as_deref(),
            },
        )
    }

    /// [`Config::check`] with the environment `env`.
    pub fn explain(args: &RunArgs, env: Environment<'_>) -> Result<String, ConfigError> {
        let sources = Sources::read(args, env)?;
        let config = Config::validate(&sources, env.hostname)?;
        let origins = layers::KEYS
            .iter()
            .filter_map(|&key| sources.get(key).map(|(_, origin)| (key, origin)))
            .collect();
        Ok(effective::render(&config, &origins))
    }

    /// Reads the configuration from `args`, `env` and the config file named by either.
    pub fn resolve(args: &RunArgs, env: Environment<'_>) -> Result<Config, ConfigError> {
        let sources = Sources::read(args, env)?;
        Config::validate(&sources, env.hostname)
    }
}

impl Sources {
    /// The flags, the environment and the config file named by either.
    fn read(args: &RunArgs, env: Environment<'_>) -> Result<Sources, ConfigError> {
        let file_path = args.config.clone().or_else(|| {
            (env.var)("OVERLAY_CONFIG")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        });
        let file = match file_path {
            Some(path) => layers::from_file(&path)?,
            None => Layer::new(),
        };
        Ok(Sources {
            layers: [layers::from_flags(args), layers::from_env(env.var), file],
        })
    }
}

impl Config {
    fn validate(s: &Sources, hostname: Option<&str>) -> Result<Config, ConfigError> {
        let name = match s.get("name") {
            Some((raw, origin)) => {
                let value = raw.into_one();
                PeerName::new(value.trim()).map_err(|e| invalid("name", value, origin, e.into()))?
            }
            None => {
                let host = hostname.ok_or(ConfigError::NoHostname)?;
                PeerName::new(host).map_err(|_| ConfigError::Hostname(host.to_owned()))?
            }
        };
        let listen = s.parse("listen", "0.0.0.0:6783", parse::socket_addr)?;
        let advertise = match s.get("advertise") {
            Some((raw, origin)) => {
                let value = raw.into_one();
                parse::advertise(&value, listen.port())
                    .map_err(|reason| invalid("advertise", value, origin, reason))?
            }
            None => AdvertiseSpec {
                ip: None,
                port: listen.port(),
            },
        };
        let peers = match s.get("peer") {
            Some((raw, origin)) => raw
                .into_list()
                .into_iter()
                .map(|p| parse::peer(&p).map_err(|r| invalid("peer", p, origin.clone(), r)))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let cluster = s.parse("cluster-cidr", "10.32.0.0/12", |v| {
            let net: Ipv4Net = v.trim().parse().map_err(|_| Invalid::Cidr)?;
            if net.trunc() != net {
                return Err(Invalid::NotNetworkAddress(net.trunc()));
            }
            Ok(net)
        })?;
        let subnet_prefix = s.parse("subnet-prefix", "24", |v| {
            let range = Invalid::SubnetPrefix {
                cluster,
                max: MAX_SUBNET_PREFIX,
            };
            let n: u8 = v.trim().parse().map_err(|_| range.clone())?;
            if n < cluster.prefix_len() || n > MAX_SUBNET_PREFIX {
                return Err(range);
            }
            Ok(n)
        })?;
        let iface = s.parse("iface", "ovl0", parse::ifname)?;
        let api = s.parse("api", "127.0.0.1:6784", parse::socket_addr)?;
        let metrics = s.parse("metrics", "0.0.0.0:6782", parse::socket_addr)?;
        let state_dir = s.parse("state-dir", "/var/lib/overlay", |v| {
            if v.trim().is_empty() {
                Err(Invalid::Empty)
            } else {
                Ok(PathBuf::from(v))
            }
        })?;
        let reclaim_after = s.parse("reclaim-after", "24h", |v| match parse::duration(v)? {
            d if d.is_zero() => Err(Invalid::ZeroDuration),
            d => Ok(d),
        })?;
        let preferred = s.parse("active-view", "6", |v| parse::count(v, 1, 64))?;
        let max_connections = s.parse("max-connections", "32", |v| {
            parse::count(v, preferred.max(2), 1024)
        })?;
        let view = ActiveView {
            preferred,
            max_connections,
        };
        let encrypt = s.parse("encrypt", "false", parse::boolean)?;
        let secret_file = match s.get("secret-file") {
            None => None,
            Some(_) => Some(s.parse("secret-file", "", |v| match v.trim() {
                "" => Err(Invalid::Empty),
                v => Ok(PathBuf::from(v)),
            })?),
        };
        if encrypt && secret_file.is_none() {
            // The data keys come from the agents' authenticated identity keys.
            return Err(ConfigError::EncryptWithoutSecret);
        }
        if let Some(path) = &secret_file {
            crate::auth::SecretSet::load(path).map_err(|reason| ConfigError::SecretFile {
                path: path.clone(),
                reason,
            })?;
        }
        let kubernetes = s.parse("kubernetes", "false", parse::boolean)?;
        if kubernetes && !cfg!(feature = "k8s") {
            return Err(ConfigError::KubernetesNotBuilt);
        }
        let masquerade = s.parse("masquerade", "true", parse::boolean)?;
        let log_format = s.parse("log-format", "text", |v| match v.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(Invalid::LogFormat),
        })?;
        Ok(Config {
            name,
            listen,
            advertise,
            peers,
            cluster,
            subnet_prefix,
            iface,
            api,
            metrics,
            state_dir,
            reclaim_after,
            view,
            kubernetes,
            masquerade,
            secret_file,
            encrypt,
            log_format,
        })
    }
}
