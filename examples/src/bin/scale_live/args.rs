//! Command-line arguments of `scale_live`.

use anyhow::{bail, Context};
use std::time::Duration;

/// The usage text (`--help`).
pub const USAGE: &str = "\
usage: scale_live [--nodes K] [--timeout S] [--idle-secs S] [--json] [--agent-arg ARG]...
                  [--keep-logs]
                  (as root; normally via scripts/scale.sh)

  --nodes K        agents to start, each in its own namespace on one bridge, all seeded
                   with node 0 (2..=253, default 10)
  --timeout S      longest wait for every agent to reach every other (default 300)
  --idle-secs S    length of the idle window measured after convergence (default 30)
  --json           print only the JSON object on stdout (progress stays on stderr)
  --agent-arg ARG  one more argument for every `overlay-agent run` (repeatable)
  --keep-logs      keep the agents' state and logs (the directory is named on stderr)

Prints one JSON object on stdout: convergence time, then per-agent CPU, memory, sockets,
control-plane bytes and connection churn over the idle window. Every namespace, bridge and
process it creates is removed on exit, Ctrl-C included.";

/// Largest `--nodes`: node addresses are 10.99.0.1..=10.99.0.253 on one /24.
pub const MAX_NODES: usize = 253;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Number of agents.
    pub nodes: usize,
    /// Longest wait for convergence.
    pub timeout: Duration,
    /// The idle window.
    pub idle: Duration,
    /// Only JSON on stdout.
    pub json: bool,
    /// Extra arguments for every agent.
    pub agent_args: Vec<String>,
    /// Keep the work directory.
    pub keep_logs: bool,
}

/// Parses the arguments; `Ok(None)` means `--help`.
pub fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut a = Args {
        nodes: 10,
        timeout: Duration::from_secs(300),
        idle: Duration::from_secs(30),
        json: false,
        agent_args: Vec::new(),
        keep_logs: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--nodes" => {
                a.nodes = value("--nodes")?
                    .parse()
                    .context("--nodes takes a whole number")?;
            }
            "--timeout" => a.timeout = seconds("--timeout", &value("--timeout")?)?,
            "--idle-secs" => a.idle = seconds("--idle-secs", &value("--idle-secs")?)?,
            "--json" => a.json = true,
            "--agent-arg" => a.agent_args.push(value("--agent-arg")?),
            "--keep-logs" => a.keep_logs = true,
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if !(2..=MAX_NODES).contains(&a.nodes) {
        bail!("--nodes must be between 2 and {MAX_NODES}");
    }
    if a.timeout.is_zero() || a.idle.is_zero() {
        bail!("--timeout and --idle-secs must be at least 1");
    }
    Ok(Some(a))
}

fn seconds(name: &str, v: &str) -> anyhow::Result<Duration> {
    let s: u64 = v
        .parse()
        .with_context(|| format!("{name} takes a whole number of seconds"))?;
    Ok(Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> anyhow::Result<Option<Args>> {
        parse(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse_str("").expect("ok").expect("args");
        assert_eq!(a.nodes, 10);
        assert_eq!(a.timeout, Duration::from_secs(300));
        assert_eq!(a.idle, Duration::from_secs(30));
        assert!(!a.json);
        let a = parse_str("--nodes 75 --timeout=900 --idle-secs 5 --json --agent-arg --masquerade --agent-arg=false")
            .expect("ok")
            .expect("args");
        assert_eq!(a.nodes, 75);
        assert_eq!(a.timeout, Duration::from_secs(900));
        assert_eq!(a.idle, Duration::from_secs(5));
        assert!(a.json);
        assert_eq!(a.agent_args, ["--masquerade", "false"]);
        assert!(parse_str("--help").expect("ok").is_none());
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "--nodes",
            "--nodes x",
            "--nodes 1",
            "--nodes 254",
            "--timeout -1",
            "--idle-secs 0",
            "--frobnicate",
        ] {
            assert!(parse_str(bad).is_err(), "{bad} is refused");
        }
    }
}
