//! The four commands, from environment and stdin to the text for stdout.

use crate::agent::AgentClient;
use crate::env::{CniEnv, Command};
use crate::error::{Error, ErrorReply};
use crate::netconf::NetConf;
use crate::netns::PodNetns;
use crate::result::{CniResult, VersionInfo};
use crate::wiring::{self, Attachment};
use std::io::Read;

/// Runs one invocation: `env` looks up CNI_* variables, `stdin` holds the configuration.
///
/// Returns what to print on stdout: the result (ADD), the versions (VERSION) or nothing
/// (DEL, CHECK); on failure the error object to print before exiting non-zero.
pub fn run(
    env: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Result<Option<String>, ErrorReply> {
    let env = CniEnv::read(env).map_err(|e| e.reply())?;
    if env.command == Command::Version {
        return serde_json::to_string(&VersionInfo::ours())
            .map(Some)
            .map_err(|e| internal(&e.to_string()));
    }
    let conf = NetConf::read(stdin).map_err(|e| e.reply())?;
    match env.command {
        Command::Add => add(&env, &conf).map(Some),
        Command::Del => del(&env, &conf).map(|()| None),
        Command::Check => check(&env, &conf).map(|()| None),
        Command::Version => Ok(None),
    }
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
    CniResult::for_pod(&conf.cni_version, &wired, &allocation, &att.netns)
        .to_json()
        .map_err(|e| internal(&e.to_string()))
}

/// DEL: interfaces first (so an address is never reused while still configured), then the
/// address. Everything already gone counts as done.
fn del(env: &CniEnv, conf: &NetConf) -> Result<(), ErrorReply> {
    wiring::unwire(&env.container_id, &env.ifname, env.netns.as_deref()).map_err(|e| e.reply())?;
    AgentClient::new(conf.api, conf.agent_wait)
        .release(&env.container_id, &env.ifname)
        .map_err(|e| e.reply())
}

/// CHECK: the agent still holds the address, and the wiring matches it.
fn check(env: &CniEnv, conf: &NetConf) -> Result<(), ErrorReply> {
    let att = attachment(env, conf);
    let allocation = AgentClient::new(conf.api, conf.agent_wait)
        .get(&env.container_id, &env.ifname)
        .map_err(|e| e.reply())?
        .ok_or_else(|| {
            Error::Check(format!(
                "the overlay agent holds no address for {}/{}",
                env.container_id, env.ifname
            ))
            .reply()
        })?;
    wiring::check(&att, &allocation).map_err(|e| e.reply())
}

fn internal(what: &str) -> ErrorReply {
    Error::Wiring(format!("internal error: {what}")).reply()
}
