//! Raw values from the three sources — flags, environment, TOML file — in precedence order.

use super::args::RunArgs;
use super::ConfigError;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a value came from, so an error can say which one to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env(String),
    /// The TOML config file.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    /// Empty for flags and defaults, ` (from ...)` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag | Origin::Default => Ok(()),
            Origin::Env(var) => write!(f, " (from {var})"),
            Origin::File(path) => write!(f, " (from {})", path.display()),
        }
    }
}

/// A value as given, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// One value.
    One(String),
    /// A list (only `peer`).
    List(Vec<String>),
}

impl Raw {
    /// The value as a list; a single value is split at commas.
    pub fn into_list(self) -> Vec<String> {
        match self {
            Raw::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Raw::List(v) => v,
        }
    }

    /// The value as one string (a list is joined with commas, for messages).
    pub fn into_one(self) -> String {
        match self {
            Raw::One(s) => s,
            Raw::List(v) => v.join(","),
        }
    }
}

/// Every key, by flag name. The env variable is `OVERLAY_` + the upper-cased key.
pub const KEYS: &[&str] = &[
    "name",
    "listen",
    "advertise",
    "peer",
    "cluster-cidr",
    "subnet-prefix",
    "iface",
    "api",
    "metrics",
    "state-dir",
    "reclaim-after",
    "active-view",
    "max-connections",
    "secret-file",
    "encrypt",
    "kubernetes",
    "masquerade",
    "log-format",
];

/// The environment variables read for `key`, first match wins.
pub fn env_vars(key: &str) -> Vec<String> {
    if key == "peer" {
        return vec!["OVERLAY_PEERS".into(), "OVERLAY_PEER".into()];
    }
    vec![format!("OVERLAY_{}", key.to_uppercase().replace('-', "_"))]
}

/// One source's values by key.
pub type Layer = BTreeMap<&'static str, (Raw, Origin)>;

/// Values given as flags.
pub fn from_flags(args: &RunArgs) -> Layer {
    let mut layer = Layer::new();
    let mut put = |key: &'static str, value: &Option<String>| {
        if let Some(v) = value {
            layer.insert(key, (Raw::One(v.clone()), Origin::Flag));
        }
    };
    put("name", &args.name);
    put("listen", &args.listen);
    put("advertise", &args.advertise);
    put("cluster-cidr", &args.cluster_cidr);
    put("subnet-prefix", &args.subnet_prefix);
    put("iface", &args.iface);
    put("api", &args.api);
    put("metrics", &args.metrics);
    put("state-dir", &args.state_dir);
    put("reclaim-after", &args.reclaim_after);
    put("active-view", &args.active_view);
    put("max-connections", &args.max_connections);
    put("secret-file", &args.secret_file);
    put("masquerade", &args.masquerade);
    put("log-format", &args.log_format);
    if args.encrypt {
        layer.insert("encrypt", (Raw::One("true".into()), Origin::Flag));
    }
    if args.kubernetes {
        layer.insert("kubernetes", (Raw::One("true".into()), Origin::Flag));
    }
    if !args.peers.is_empty() {
        layer.insert("peer", (Raw::List(args.peers.clone()), Origin::Flag));
    }
    layer
}

/// Values given as environment variables; `var` looks one up. Empty values count as unset.
pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Layer {
    let mut layer = Layer::new();
    for &key in KEYS {
        for name in env_vars(key) {
            if let Some(v) = var(&name).filter(|v| !v.trim().is_empty()) {
                layer.insert(key, (Raw::One(v), Origin::Env(name)));
                break;
            }
        }
    }
    layer
}

/// What is wrong with the config file (its path is in [`ConfigError::File`]).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// `read(2)` failed or the content is not UTF-8
    #[error("{0}")]
    Read(std::io::Error),
    /// not TOML
    #[error("{}{message}", at_line(*line))]
    Syntax {
        /// The line of the error, from 1, when the parser says where.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// a key that is no setting
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    /// a list (of peers) with an item that is no string
    #[error("`{key}` must be a list of strings, found {found}")]
    NotAListOfStrings {
        /// The key as written.
        key: String,
        /// The TOML type of the offending item.
        found: &'static str,
    },
    /// a table, a date, or a list for a key that takes one value
    #[error("`{key}` must be a string, a number or a boolean, found {found}")]
    NotAValue {
        /// The key as written.
        key: String,
        /// The TOML type found.
        found: &'static str,
    },
    /// both spellings of the peer list
    #[error("both `peer` and `peers` are set")]
    PeerAndPeers,
}

/// `line N: ` when the line is known.
fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// Values of the TOML file at `path`.
pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: FileError::Read(e),
    })?;
    parse_file(path, &text)
}

/// Values of TOML `text` (read from `path`).
pub fn parse_file(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let file_err = |reason: FileError| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        file_err(FileError::Syntax {
            line,
            message: e.message().trim().to_owned(),
        })
    })?;
    let mut layer = Layer::new();
    for (key, value) in table {
        let canonical = match key.as_str() {
            "peers" => "peer",
            k => KEYS
                .iter()
                .copied()
                .find(|known| *known == k)
                .ok_or_else(|| file_err(FileError::UnknownKey(key.clone())))?,
        };
        let raw = match value {
            toml::Value::String(s) => Raw::One(s),
            toml::Value::Integer(i) => Raw::One(i.to_string()),
            toml::Value::Boolean(b) => Raw::One(b.to_string()),
            toml::Value::Array(items) if canonical == "peer" => Raw::List(
                items
                    .into_iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Ok(s),
                        other => Err(file_err(FileError::NotAListOfStrings {
                            key: key.clone(),
                            found: other.type_str(),
                        })),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(file_err(FileError::NotAValue {
                    key,
                    found: other.type_str(),
                }))
            }
        };
        if layer
            .insert(canonical, (raw, Origin::File(path.to_owned())))
            .is_some()
        {
            return Err(file_err(FileError::PeerAndPeers));
        }
    }
    Ok(layer)
}
