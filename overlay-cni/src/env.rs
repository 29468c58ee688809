//! The CNI_* environment variables the runtime sets, read and checked.

use crate::error::Error;
use overlay_proto::api::KeyError;
use std::path::PathBuf;

/// A CNI_COMMAND this plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container.
    Add,
    /// Detach the container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Report the supported versions.
    Version,
    /// Report whether the plugin can serve ADD (spec 1.1.0).
    Status,
    /// Release what attachments the runtime no longer knows hold (spec 1.1.0).
    Gc,
}

impl Command {
    /// The CNI_COMMAND value.
    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// True for the commands about the network as a whole rather than one attachment
    /// (no CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME).
    pub fn is_network_wide(self) -> bool {
        matches!(self, Command::Version | Command::Status | Command::Gc)
    }
}

/// The environment of one invocation, checked for the command it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// CNI_COMMAND.
    pub command: Command,
    /// CNI_CONTAINERID (empty for VERSION, STATUS and GC).
    pub container_id: String,
    /// CNI_NETNS: required for ADD and CHECK, optional for DEL, ignored for VERSION, STATUS
    /// and GC.
    pub netns: Option<PathBuf>,
    /// CNI_IFNAME (empty for VERSION, STATUS and GC).
    pub ifname: String,
    /// CNI_PATH: required for ADD and CHECK, optional otherwise (this plugin delegates to no
    /// other plugin).
    pub path: Option<String>,
}

impl CniEnv {
    /// Reads the variables through `get` (`std::env::var` in the binary, a map in tests).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, Error> {
        let nonempty = |name: &str| get(name).filter(|v| !v.is_empty());
        let command = match nonempty("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(Error::Env {
                    name: "CNI_COMMAND",
                    problem: format!(
                        "is {other:?}, not one of ADD, DEL, CHECK, GC, STATUS, VERSION"
                    ),
                })
            }
            None => return Err(missing("CNI_COMMAND")),
        };
        if command.is_network_wide() {
            return Ok(CniEnv {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                path: nonempty("CNI_PATH"),
            });
        }
        let container_id = nonempty("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
        let ifname = nonempty("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
        // The agent's key check covers both; the interface name also has to be one Linux takes.
        if let Err(e) = overlay_proto::api::allocation_key(&container_id, &ifname) {
            let name = match e {
                KeyError::ContainerId(_) => "CNI_CONTAINERID",
                KeyError::Ifname(_) => "CNI_IFNAME",
            };
            return Err(Error::Env {
                name,
                problem: e.to_string(),
            });
        }
        if let Err(e) = check_ifname(&ifname) {
            return Err(Error::Env {
                name: "CNI_IFNAME",
                problem: e.to_string(),
            });
        }
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        let path = nonempty("CNI_PATH");
        let needs_all = matches!(command, Command::Add | Command::Check);
        match &netns {
            None if needs_all => return Err(missing("CNI_NETNS")),
            Some(p) if !p.is_absolute() => {
                return Err(Error::Env {
                    name: "CNI_NETNS",
                    problem: format!("is {p:?}, not an absolute path"),
                })
            }
            _ => {}
        }
        if needs_all && path.is_none() {
            return Err(missing("CNI_PATH"));
        }
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            path,
        })
    }
}

fn missing(name: &'static str) -> Error {
    Error::Env {
        name,
        problem: "is missing or empty".to_owned(),
    }
}

/// A name Linux does not take for an interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an interface name (1 to 15 printable characters, no '/', ':' or spaces, not \".\" or \"..\")"
)]
pub struct BadIfname(pub String);

/// Checks that `name` is a Linux interface name (the kernel's `dev_valid_name`).
pub fn check_ifname(name: &str) -> Result<(), BadIfname> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(BadIfname(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<CniEnv, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        CniEnv::read(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/pod"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        ADD.iter().copied().filter(|(k, _)| *k != name).collect()
    }

    fn env_error(r: Result<CniEnv, Error>) -> (&'static str, String) {
        match r {
            Err(Error::Env { name, problem }) => (name, problem),
            other => panic!("expected an env error, got {other:?}"),
        }
    }

    #[test]
    fn add_reads_everything() {
        let env = read(ADD).expect("valid");
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id, "abc123");
        assert_eq!(env.netns, Some(PathBuf::from("/var/run/netns/pod")));
        assert_eq!(env.ifname, "eth0");
        assert_eq!(env.path.as_deref(), Some("/opt/cni/bin"));
    }

    #[test]
    fn version_status_and_gc_need_only_the_command() {
        for (name, command) in [
            ("VERSION", Command::Version),
            ("STATUS", Command::Status),
            ("GC", Command::Gc),
        ] {
            let env = read(&[("CNI_COMMAND", name)]).expect("valid");
            assert_eq!(env.command, command);
            assert_eq!(command.name(), name);
            assert!(env.container_id.is_empty() && env.netns.is_none());
        }
        let env = read(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")]).expect("valid");
        assert_eq!(env.path.as_deref(), Some("/opt/cni/bin"));
    }

    #[test]
    fn missing_variables_are_named() {
        for name in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_PATH",
        ] {
            let (n, problem) = env_error(read(&without(name)));
            assert_eq!(n, name);
            assert!(problem.contains("missing"), "{problem}");
        }
    }

    #[test]
    fn del_needs_no_netns_nor_path() {
        let mut vars = without("CNI_NETNS");
        vars.retain(|(k, _)| *k != "CNI_PATH");
        vars[0] = ("CNI_COMMAND", "DEL");
        let env = read(&vars).expect("valid");
        assert_eq!(env.command, Command::Del);
        assert_eq!(env.netns, None);
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut vars = ADD.to_vec();
        vars[0] = ("CNI_COMMAND", "INIT");
        assert_eq!(env_error(read(&vars)).0, "CNI_COMMAND");

        let mut vars = ADD.to_vec();
        vars[1] = ("CNI_CONTAINERID", "a/b");
        assert_eq!(env_error(read(&vars)).0, "CNI_CONTAINERID");

        for bad in ["a:b", "sixteen-chars-xx", "with space", ".."] {
            let mut vars = ADD.to_vec();
            vars[3] = ("CNI_IFNAME", bad);
            assert_eq!(env_error(read(&vars)).0, "CNI_IFNAME", "{bad}");
        }

        let mut vars = ADD.to_vec();
        vars[2] = ("CNI_NETNS", "relative/path");
        assert_eq!(env_error(read(&vars)).0, "CNI_NETNS");
    }
}
