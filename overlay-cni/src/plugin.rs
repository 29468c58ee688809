//! The commands, from environment and stdin to the text for stdout.

use crate::agent::AgentClient;
use crate::chain;
use crate::env::{CniEnv, Command};
use crate::error::{Error, ErrorReply};
use crate::mismatch::Mismatch;
use crate::netconf::{BadConfig, NetConf, MAX_NETCONF_LEN};
use crate::netns::PodNetns;
use crate::result::{CniResult, VersionInfo};
use crate::wiring::{self, Attachment};
use std::io::Read;
use std::time::Duration;

/// Runs one invocation: `env` looks up CNI_* variables, `stdin` holds the configuration.
///
/// Returns what to print on stdout: the result (ADD), the versions (VERSION) or nothing
/// (DEL, CHECK, GC, STATUS); on failure the error object to print before exiting non-zero,
/// in the configuration's `cniVersion` once that is known.
pub fn run(
    env: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Result<Option<String>, ErrorReply> {
    let env = CniEnv::read(env).map_err(|e| e.reply())?;
    if env.command == Command::Version {
        return serde_json::to_string(&VersionInfo::ours(&version_asked(stdin)))
            .map(Some)
            .map_err(|e| Error::Internal(e).reply());
    }
    let conf = NetConf::read(stdin).map_err(|e| e.reply())?;
    let answered = match env.command {
        Command::Add => add(&env, &conf).map(Some),
        Command::Del => del(&env, &conf).map(|()| None),
        Command::Check => check(&env, &conf).map(|()| None),
        Command::Gc => gc(&conf).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        Command::Version => Ok(None),
    };
    answered.map_err(|e| e.with_version(&conf.cni_version))
}

/// VERSION answers in the `cniVersion` of its input (`{"cniVersion":"1.1.0"}` from libcni),
/// or in the plugin's newest version when the input names none.
fn version_asked(stdin: &mut dyn Read) -> String {
    let mut bytes = Vec::new();
    let _ = stdin.take(MAX_NETCONF_LEN).read_to_end(&mut bytes);
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| crate::CNI_VERSION.to_owned())
}

fn attachment(env: &CniEnv, conf: &NetConf) -> Attachment {
    Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone().unwrap_or_default(),
        bridge: conf.bridge.clone(),
    }
}

/// ADD: address from the agent, then the wiring; on a wiring failure the address is released.
/// The answer is this plugin's result, appended to the `prevResult` when there is one.
fn add(env: &CniEnv, conf: &NetConf) -> Result<String, ErrorReply> {
    let att = attachment(env, conf);
    // A pod namespace that does not exist fails before an address is taken for it.
    PodNetns::open_pod(&att.netns).map_err(|e| e.reply())?;
    let agent = AgentClient::new(conf.api, conf.agent_wait);
    let allocation = agent
        .allocate(&env.container_id, &env.ifname)
        .map_err(|e| e.reply())?;
    let mtu = conf.mtu.unwrap_or(allocation.mtu);
    let wired = match wiring::wire(&att, &allocation, mtu) {
        Ok(w) => w,
        Err(e) => {
            let mut reply = e.reply();
            if let Err(release) = agent.release(&env.container_id, &env.ifname) {
                reply.add_detail(&format!("releasing the address failed too: {release}"));
            }
            return Err(reply);
        }
    };
    let ours = CniResult::for_pod(&conf.cni_version, &wired, &allocation, &att.netns, mtu);
    chain::add_result(conf.prev_result.as_ref(), ours)
        .to_json()
        .map_err(|e| Error::Internal(e).reply())
}

/// DEL: interfaces first (so an address is never reused while still configured), then the
/// address. Everything already gone counts as done. A `prevResult` is not needed.
fn del(env: &CniEnv, conf: &NetConf) -> Result<(), ErrorReply> {
    wiring::unwire(&env.container_id, &env.ifname, env.netns.as_deref()).map_err(|e| e.reply())?;
    AgentClient::new(conf.api, conf.agent_wait)
        .release(&env.container_id, &env.ifname)
        .map_err(|e| e.reply())
}

/// CHECK: the agent still holds the address, the `prevResult` lists what this plugin made
/// and agrees with the agent, and the node and the pod are wired that way.
fn check(env: &CniEnv, conf: &NetConf) -> Result<(), ErrorReply> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| Error::Config(BadConfig::CheckWithoutPrevResult).reply())?;
    let att = attachment(env, conf);
    let allocation = AgentClient::new(conf.api, conf.agent_wait)
        .get(&env.container_id, &env.ifname)
        .map_err(|e| e.reply())?
        .ok_or_else(|| {
            Error::Check(Mismatch::NotHeld {
                container_id: env.container_id.clone(),
                ifname: env.ifname.clone(),
            })
            .reply()
        })?;
    let expected = chain::expected(
        prev,
        &env.container_id,
        &env.ifname,
        &att.netns,
        &allocation,
    )
    .map_err(|e| e.reply())?;
    wiring::check(&att, &allocation, &expected).map_err(|e| e.reply())
}

/// GC (1.1.0): releases what attachments not in `cni.dev/valid-attachments` hold.
fn gc(conf: &NetConf) -> Result<(), ErrorReply> {
    needs_1_1(Command::Gc, conf)?;
    let valid = conf.valid_attachments.as_deref().ok_or_else(|| {
        // Without the list every attachment would look stale: refuse rather than guess.
        Error::Config(BadConfig::GcWithoutValidAttachments).reply()
    })?;
    let agent = AgentClient::new(conf.api, conf.agent_wait);
    crate::gc::collect(&agent, &conf.bridge, valid)
        .map(|_| ())
        .map_err(|e| e.reply())
}

/// Longest STATUS probe of the agent: one attempt, no waiting for it to come up.
const STATUS_WAIT: Duration = Duration::ZERO;

/// STATUS (1.1.0): succeeds when the agent is ready (`GET /readyz`), else code 50.
fn status(conf: &NetConf) -> Result<(), ErrorReply> {
    needs_1_1(Command::Status, conf)?;
    AgentClient::new(conf.api, STATUS_WAIT)
        .ready()
        .map_err(|e| {
            let problem = match e.details() {
                d if d.is_empty() => e.to_string(),
                d => format!("{e} ({d})"),
            };
            Error::NotAvailable {
                api: conf.api.to_string(),
                problem,
            }
            .reply()
        })
}

fn needs_1_1(command: Command, conf: &NetConf) -> Result<(), ErrorReply> {
    if crate::at_least_1_1(&conf.cni_version) {
        Ok(())
    } else {
        Err(Error::CommandVersion {
            command: command.name(),
            version: conf.cni_version.clone(),
        }
        .reply())
    }
}
