//! A whole overlay cluster in namespaces: nodes on an underlay, an agent per node, pods
//! attached with the real CNI plugin.
//!
//! Node `i` is named `node<i>`, has underlay address `10.99.0.(i+1)` and, by default, seeds
//! the agent of node `i-1` (a chain, so discovery is visible). Agents keep their default
//! ports (each node is its own namespace), state in `<workdir>/node<i>/`, output in
//! `<workdir>/node<i>.log`.

use crate::http::{self, Response};
use crate::netns::Netns;
use crate::process::Process;
use crate::underlay::Underlay;
use crate::wait;
use anyhow::{bail, Context};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Where the binaries under test are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `overlay-agent`.
    pub agent: PathBuf,
    /// `overlay-cni`.
    pub cni: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`; fails with a hint if either is missing.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Binaries> {
        let b = Binaries {
            agent: dir.join("overlay-agent"),
            cni: dir.join("overlay-cni"),
        };
        for p in [&b.agent, &b.cni] {
            if !p.exists() {
                bail!(
                    "{} is missing: build the workspace first (cargo build --workspace)",
                    p.display()
                );
            }
        }
        Ok(b)
    }

    /// The binaries next to `agent` (e.g. `env!("CARGO_BIN_EXE_overlay-agent")`).
    pub fn next_to(agent: &str) -> anyhow::Result<Binaries> {
        let dir = Path::new(agent)
            .parent()
            .context("agent path has no directory")?;
        Binaries::in_dir(dir)
    }
}

/// A pod: a namespace with an interface attached by the CNI plugin.
#[derive(Debug)]
pub struct Pod {
    /// The pod's namespace.
    pub netns: Netns,
    /// The node it runs on.
    pub node: usize,
    /// Its overlay address.
    pub ip: Ipv4Addr,
    /// The CNI container id.
    pub container_id: String,
    /// The CNI result.
    pub result: serde_json::Value,
}

/// A running cluster; everything is removed on drop.
#[derive(Debug)]
pub struct Cluster {
    /// Pods (dropped before the nodes).
    pub pods: Vec<Pod>,
    /// Agent processes by node (None when stopped).
    pub agents: Vec<Option<Process>>,
    /// The node namespaces and their underlay.
    pub underlay: Underlay,
    /// Binaries under test.
    pub bins: Binaries,
    /// State directories and logs.
    pub workdir: PathBuf,
    /// Seeds of each node (node indices).
    pub seeds: Vec<Vec<usize>>,
    /// Extra arguments for each agent.
    pub agent_args: Vec<String>,
    /// Environment variables set for each agent (in addition to this process's; a `None`
    /// value removes the variable).
    pub agent_env: Vec<(String, Option<String>)>,
    keep_workdir: bool,
}

/// The local API address inside each node.
pub const API: &str = "127.0.0.1:6784";

impl Cluster {
    /// Creates `nodes` node namespaces (chained seeds) without starting agents.
    pub fn new(prefix: &str, nodes: usize, bins: Binaries) -> anyhow::Result<Cluster> {
        let underlay = Underlay::new(prefix, nodes)?;
        let workdir = std::env::temp_dir().join(format!("overlay-{prefix}"));
        let _ = std::fs::remove_dir_all(&workdir);
        std::fs::create_dir_all(&workdir)?;
        Ok(Cluster {
            pods: Vec::new(),
            agents: (0..nodes).map(|_| None).collect(),
            underlay,
            bins,
            workdir,
            seeds: (0..nodes)
                .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                .collect(),
            agent_args: Vec::new(),
            agent_env: Vec::new(),
            keep_workdir: false,
        })
    }

    /// Node `i`'s namespace.
    pub fn node(&self, i: usize) -> &Netns {
        &self.underlay.nodes[i]
    }

    /// Node `i`'s peer name.
    pub fn node_name(i: usize) -> String {
        format!("node{i}")
    }

    /// Node `i`'s state directory.
    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.workdir.join(Self::node_name(i))
    }

    /// Node `i`'s agent log path.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.workdir.join(format!("{}.log", Self::node_name(i)))
    }

    /// Starts (or restarts) the agent of node `i`.
    pub fn start_agent(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut old) = self.agents[i].take() {
            old.kill();
        }
        let mut cmd = self.node(i).command(&self.bins.agent.to_string_lossy());
        cmd.args(["run", "--name", &Self::node_name(i)])
            .arg("--state-dir")
            .arg(self.state_dir(i));
        for s in &self.seeds[i] {
            cmd.args(["--peer", &Underlay::node_addr(*s).to_string()]);
        }
        cmd.args(&self.agent_args);
        for (key, value) in &self.agent_env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let p = Process::spawn(&Self::node_name(i), cmd, &self.log_path(i))?;
        self.agents[i] = Some(p);
        Ok(())
    }

    /// Starts every agent.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.agents.len() {
            self.start_agent(i)?;
        }
        Ok(())
    }

    /// Sends `signal` to node `i`'s agent and waits up to `timeout` for it to exit.
    pub fn stop_agent(
        &mut self,
        i: usize,
        signal: i32,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let mut p = self.agents[i]
            .take()
            .with_context(|| format!("node{i} has no agent running"))?;
        p.signal(signal)?;
        p.wait_timeout(timeout)
    }

    /// The agent's log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// An HTTP request to node `i`'s local API.
    pub fn api(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<Response> {
        let addr: SocketAddr = API.parse()?;
        http::request(self.node(i), addr, method, path, body)
    }

    /// Node `i`'s `/status` as JSON.
    pub fn status(&self, i: usize) -> anyhow::Result<serde_json::Value> {
        let r = self.api(i, "GET", "/status", None)?;
        if r.status != 200 {
            bail!("/status of node{i} answered {}: {}", r.status, r.body);
        }
        r.json()
    }

    /// The peer entry for `peer` in node `i`'s status.
    pub fn peer_status(&self, i: usize, peer: usize) -> anyhow::Result<serde_json::Value> {
        let status = self.status(i)?;
        let name = Self::node_name(peer);
        status["peers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name.as_str()))
            .cloned()
            .with_context(|| format!("node{i} does not list {name}: {status}"))
    }

    /// Waits until every running agent is ready, has a subnet, and reaches every other
    /// running agent; returns how long it took.
    pub fn wait_converged(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = std::time::Instant::now();
        let running: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].is_some())
            .collect();
        wait::until(
            "every agent to reach every other",
            timeout,
            Duration::from_millis(100),
            || {
                for &i in &running {
                    let s = self.status(i).map_err(|e| e.to_string())?;
                    if s["subnet"].is_null() || s["ready"] != true {
                        return Err(format!("node{i} has no subnet or is not ready"));
                    }
                    for &j in &running {
                        if i == j {
                            continue;
                        }
                        let name = Self::node_name(j);
                        let ok = s["peers"].as_array().is_some_and(|ps| {
                            ps.iter().any(|p| {
                                p["name"] == name.as_str()
                                    && p["reachable"] == true
                                    && !p["subnet"].is_null()
                            })
                        });
                        if !ok {
                            return Err(format!("node{i} does not reach {name} yet"));
                        }
                    }
                }
                Ok(Some(()))
            },
        )?;
        Ok(start.elapsed())
    }

    /// Runs the CNI plugin in node `node` with `command` for a pod namespace.
    pub fn cni(
        &self,
        node: usize,
        command: &str,
        container_id: &str,
        netns: &Path,
        netconf: &str,
    ) -> anyhow::Result<(bool, serde_json::Value)> {
        run_cni(
            self.cni_command(node, command, container_id, netns),
            netconf,
        )
    }

    /// The command that runs the CNI plugin in node `node` (see [`run_cni`]).
    pub fn cni_command(
        &self,
        node: usize,
        command: &str,
        container_id: &str,
        netns: &Path,
    ) -> std::process::Command {
        let dir = self
            .bins
            .cni
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut cmd = self.node(node).command(&self.bins.cni.to_string_lossy());
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", dir);
        cmd
    }

    /// The default netconf.
    pub fn netconf() -> String {
        r#"{"cniVersion":"1.0.0","name":"overlay","type":"overlay-cni"}"#.to_owned()
    }

    /// Creates a pod namespace on `node` and attaches it with CNI ADD; returns its index.
    pub fn add_pod(&mut self, node: usize) -> anyhow::Result<usize> {
        let k = self.pods.len();
        let netns = Netns::create(&format!("{}p{k}", self.underlay.prefix()))?;
        let container_id = format!("{}-pod{k}", self.underlay.prefix());
        let (ok, result) = self.cni(node, "ADD", &container_id, &netns.path(), &Self::netconf())?;
        if !ok {
            bail!("CNI ADD for pod{k} on node{node} failed: {result}");
        }
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("no ips[0].address in {result}"))?;
        self.pods.push(Pod {
            netns,
            node,
            ip,
            container_id,
            result,
        });
        Ok(k)
    }

    /// Keeps the working directory (state and logs) after drop, e.g. to inspect a failure.
    pub fn keep_workdir(&mut self) {
        self.keep_workdir = true;
    }

    /// Every agent's log, for a failure message.
    pub fn all_logs(&self) -> String {
        (0..self.agents.len())
            .map(|i| format!("--- node{i} ---\n{}", self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Leaves everything running and returns the commands that remove it.
    pub fn detach(self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pods
            .iter()
            .map(|p| p.netns.name().to_owned())
            .collect();
        names.extend(self.underlay.nodes.iter().map(|n| n.name().to_owned()));
        names.push(self.underlay.switch.name().to_owned());
        let workdir = self.workdir.clone();
        std::mem::forget(self);
        let mut cmds: Vec<String> = names
            .iter()
            .map(|n| format!("ip netns pids {n} | xargs -r kill; ip netns del {n}"))
            .collect();
        cmds.push(format!("rm -rf {}", workdir.display()));
        cmds
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in self.agents.iter_mut().flatten() {
            a.kill();
        }
        self.pods.clear();
        if !self.keep_workdir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}

/// Runs a CNI command with `netconf` on stdin; returns whether it succeeded and its JSON.
pub fn run_cni(
    mut cmd: std::process::Command,
    netconf: &str,
) -> anyhow::Result<(bool, serde_json::Value)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting overlay-cni")?;
    child
        .stdin
        .take()
        .context("cni stdin")?
        .write_all(netconf.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| {
            format!(
                "CNI printed no JSON: {text} (stderr: {})",
                String::from_utf8_lossy(&out.stderr)
            )
        })?
    };
    Ok((out.status.success(), json))
}
