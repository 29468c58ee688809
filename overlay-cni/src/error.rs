//! What can go wrong, the CNI error code each failure maps to, and the error JSON the
//! runtime reads on stdout.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// CNI error codes (spec 1.1.0, "Error" section) and the one plugin-specific code we use.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Container unknown or does not exist (the runtime needs no cleanup).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The plugin is not available, i.e. cannot service ADD requests (STATUS, spec 1.1.0).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Internal error (the code libcni uses for "anything else").
    pub const INTERNAL: u32 = 999;
}

/// Why a command failed. The doc comment of a variant is its message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CNI_* environment variable is missing or malformed.
    #[error("environment variable {name} {problem}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Stdin could not be read.
    #[error("reading the network configuration from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// The network configuration is not JSON of the expected shape.
    #[error("decoding the network configuration: {0}")]
    Decode(crate::netconf::Undecodable),
    /// The network configuration decodes but a value is unusable.
    #[error("invalid network configuration: {0}")]
    Config(crate::netconf::BadConfig),
    /// The configuration asks for a CNI version this plugin does not speak.
    #[error("cniVersion {0:?} is not supported (supported: {supported})", supported = crate::SUPPORTED_VERSIONS.join(", "))]
    Version(String),
    /// A command that the configuration's CNI version does not have (GC, STATUS before 1.1.0).
    #[error("CNI_COMMAND={command} needs cniVersion {needs} or later; the configuration has {version:?}", needs = crate::VERSION_1_1)]
    CommandVersion {
        /// The command.
        command: &'static str,
        /// The configuration's cniVersion.
        version: String,
    },
    /// STATUS: the agent cannot attach pods now (not running, or no block yet).
    #[error("the overlay agent at {api} cannot attach pods now: {problem}")]
    NotAvailable {
        /// The agent's API address.
        api: String,
        /// What the readiness probe saw.
        problem: String,
    },
    /// GC could not remove everything stale (what it could remove, it removed).
    #[error("garbage collection left {} stale resource(s): {}", .0.len(), .0.join("; "))]
    Gc(Vec<String>),
    /// The pod's network namespace cannot be used.
    #[error("network namespace {path:?}: {problem}")]
    Netns {
        /// CNI_NETNS.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The agent did not answer in time (not running, restarting, or without a block yet).
    #[error(
        "the overlay agent at {api} did not answer {request} within {secs:.1} s; try again later",
        secs = .waited.as_secs_f64()
    )]
    AgentUnavailable {
        /// The agent's API address.
        api: String,
        /// Method and path that were awaited.
        request: String,
        /// How long the plugin waited.
        waited: Duration,
        /// The last failure seen, as text (goes into `details`).
        last: String,
    },
    /// The agent answered with an error.
    #[error("the overlay agent at {api} refused {request}: HTTP {status}: {message}")]
    AgentRefused {
        /// The agent's API address.
        api: String,
        /// Method and path.
        request: String,
        /// HTTP status.
        status: u16,
        /// The agent's error text.
        message: String,
    },
    /// A request to the agent could not be sent (and retrying would not help).
    #[error("could not send {request} to the overlay agent at {api}: {problem}")]
    AgentRequest {
        /// The agent's API address.
        api: String,
        /// Method and path.
        request: String,
        /// What went wrong.
        problem: crate::agent::NoAnswer,
    },
    /// The agent answered something the plugin cannot use.
    #[error("the overlay agent at {api} answered {request} with {problem}")]
    AgentAnswer {
        /// The agent's API address.
        api: String,
        /// Method and path.
        request: String,
        /// What is wrong with the answer.
        problem: String,
    },
    /// A netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    /// Wiring went wrong in a way netlink did not report (a device missing after creation...).
    #[error("{0}")]
    Wiring(crate::wiring::WiringError),
    /// CHECK found the pod's network not as ADD left it.
    #[error("check failed: {0}")]
    Check(crate::mismatch::Mismatch),
    /// A result this plugin built could not be serialized.
    #[error("internal error: {0}")]
    Internal(serde_json::Error),
    /// The plugin panicked (the panic's message).
    #[error("internal error: panic: {0}")]
    Panic(String),
    /// Another failure, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What the plugin was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The CNI error code for this failure.
    pub fn code(&self) -> u32 {
        match self {
            Error::Env { .. } => code::INVALID_ENV,
            Error::Stdin(_) => code::IO,
            Error::Decode(_) => code::DECODE,
            Error::Config(_) => code::INVALID_CONFIG,
            Error::Version(_) | Error::CommandVersion { .. } => code::INCOMPATIBLE_VERSION,
            Error::NotAvailable { .. } => code::NOT_AVAILABLE,
            Error::Netns { .. } => code::UNKNOWN_CONTAINER,
            Error::AgentUnavailable { .. } => code::TRY_AGAIN_LATER,
            Error::Io { .. } => code::IO,
            Error::AgentRefused { .. }
            | Error::AgentRequest { .. }
            | Error::AgentAnswer { .. }
            | Error::Netlink(_)
            | Error::Wiring(_)
            | Error::Check(_)
            | Error::Internal(_)
            | Error::Panic(_)
            | Error::Gc(_) => code::INTERNAL,
        }
    }

    /// Extra text for the `details` field.
    pub fn details(&self) -> String {
        match self {
            Error::AgentUnavailable { last, .. } => format!("last attempt: {last}"),
            _ => String::new(),
        }
    }

    /// The error JSON for this failure (with the plugin's newest version; see
    /// [`ErrorReply::with_version`]).
    pub fn reply(&self) -> ErrorReply {
        ErrorReply {
            cni_version: crate::CNI_VERSION.to_owned(),
            code: self.code(),
            msg: self.to_string(),
            details: self.details(),
        }
    }
}

/// The CNI error object printed on stdout when a command fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReply {
    /// The configuration's cniVersion, or the plugin's newest when it is not known.
    pub cni_version: String,
    /// A [`code`] value.
    pub code: u32,
    /// One line for a person.
    pub msg: String,
    /// More context (may be empty).
    pub details: String,
}

impl ErrorReply {
    /// The same error, answered in `version` (the configuration's).
    pub fn with_version(mut self, version: &str) -> ErrorReply {
        version.clone_into(&mut self.cni_version);
        self
    }

    /// Adds a sentence to `details` (e.g. that cleaning up after the failure failed too).
    pub fn add_detail(&mut self, more: &str) {
        if !self.details.is_empty() {
            self.details.push_str("; ");
        }
        self.details.push_str(more);
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            // Serializing four plain fields cannot fail; keep a valid object regardless.
            format!(
                "{{\"cniVersion\":\"{}\",\"code\":{},\"msg\":\"internal error\",\"details\":\"\"}}",
                crate::CNI_VERSION,
                code::INTERNAL
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_four_cni_fields() {
        let e = Error::AgentUnavailable {
            api: "127.0.0.1:6784".into(),
            request: "POST /ipam/allocations".into(),
            waited: Duration::from_secs(2),
            last: "connection refused".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&e.reply().to_json()).expect("json");
        assert_eq!(v["cniVersion"], crate::CNI_VERSION);
        let v: serde_json::Value =
            serde_json::from_str(&e.reply().with_version("1.0.0").to_json()).expect("json");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 11);
        let msg = v["msg"].as_str().expect("msg");
        assert!(msg.contains("127.0.0.1:6784"), "{msg}");
        assert!(msg.contains("POST /ipam/allocations"), "{msg}");
        assert_eq!(v["details"], "last attempt: connection refused");
        assert_eq!(v.as_object().expect("object").len(), 4);
    }

    #[test]
    fn codes_follow_the_spec() {
        let env = Error::Env {
            name: "CNI_IFNAME",
            problem: "is missing".into(),
        };
        assert_eq!(env.code(), 4);
        assert_eq!(
            env.to_string(),
            "environment variable CNI_IFNAME is missing"
        );
        assert_eq!(
            Error::Decode(crate::netconf::Undecodable::TooLong).code(),
            6
        );
        assert_eq!(Error::Config(crate::netconf::BadConfig::NoName).code(), 7);
        assert_eq!(Error::Version("0.3.1".into()).code(), 1);
        assert!(Error::Version("0.3.1".into())
            .to_string()
            .contains("1.0.0, 1.1.0"));
        assert_eq!(
            Error::Check(crate::mismatch::Mismatch::BridgeDown("b".into())).code(),
            999
        );
        assert_eq!(Error::Panic("x".into()).code(), 999);
        assert_eq!(
            Error::Panic("boom".into()).to_string(),
            "internal error: panic: boom"
        );
        let gc_on_1_0 = Error::CommandVersion {
            command: "GC",
            version: "1.0.0".into(),
        };
        assert_eq!(gc_on_1_0.code(), 1);
        assert!(gc_on_1_0.to_string().contains("needs cniVersion 1.1.0"));
        let down = Error::NotAvailable {
            api: "127.0.0.1:6784".into(),
            problem: "connection refused".into(),
        };
        assert_eq!(down.code(), 50);
        let gc = Error::Gc(vec!["a".into(), "b".into()]);
        assert_eq!(
            gc.to_string(),
            "garbage collection left 2 stale resource(s): a; b"
        );
    }

    #[test]
    fn details_accumulate() {
        let mut r = Error::Panic("boom".into()).reply();
        assert_eq!(r.details, "");
        r.add_detail("a");
        r.add_detail("b");
        assert_eq!(r.details, "a; b");
    }
}
