//! Executing a CNI network configuration list the way a runtime does (spec section 3).
//!
//! - **ADD**: each plugin in order; the previous plugin's result is the next one's
//!   `prevResult`; the last result is the attachment's result, which the caller keeps.
//! - **CHECK**: each plugin in order, each given the attachment's result as `prevResult`
//!   (skipped altogether when the list says `disableCheck`).
//! - **DEL**: each plugin in *reverse* order, each given the attachment's result (if any).
//! - **GC** (1.1.0): each plugin with `cni.dev/valid-attachments` (and, as libcni does, the
//!   same list as `cni.dev/attachments`); **STATUS** (1.1.0): each plugin.
//!
//! Each plugin gets the list's `cniVersion` and `name` plus its own configuration without
//! `capabilities`, and a `runtimeConfig` holding the capability arguments it declares (e.g.
//! `portMappings` for `portmap`). Every plugin of one operation runs with the same CNI_*
//! environment, inside the node's namespace (the runtime's), found by its `type` in the
//! `CNI_PATH` directories.

use crate::netns::Netns;
use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Where Debian's containernetworking-plugins package installs `portmap` and the others.
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/cni";

/// A network configuration list.
#[derive(Debug, Clone)]
pub struct Conflist {
    /// The list as JSON (`cniVersion`, `name`, `plugins`, optionally `disableCheck`).
    pub json: Value,
}

/// One attachment's parameters.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS.
    pub netns: PathBuf,
    /// CNI_IFNAME.
    pub ifname: String,
    /// Capability arguments the runtime offers (`{"portMappings": [...]}`), handed to each
    /// plugin that declares the capability.
    pub capability_args: Map<String, Value>,
}

/// A plugin that failed: which one, and what it printed.
#[derive(Debug, Clone)]
pub struct PluginFailure {
    /// The plugin's `type`.
    pub plugin: String,
    /// The CNI_COMMAND.
    pub command: String,
    /// Its error object (or `null` if it printed none).
    pub output: Value,
    /// Its standard error.
    pub stderr: String,
}

impl PluginFailure {
    /// The CNI error code, if the plugin printed an error object.
    pub fn code(&self) -> Option<u64> {
        self.output["code"].as_u64()
    }

    /// The error message, if any.
    pub fn msg(&self) -> &str {
        self.output["msg"].as_str().unwrap_or("")
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} failed: {} (stderr: {})",
            self.plugin,
            self.command,
            self.output,
            self.stderr.trim()
        )
    }
}

impl std::error::Error for PluginFailure {}

/// A runtime executing conflists inside one node namespace.
#[derive(Debug)]
pub struct Runtime<'a> {
    /// The node (the runtime's network namespace).
    pub node: &'a Netns,
    /// CNI_PATH: the directories searched for plugins, in order.
    pub plugin_dirs: Vec<PathBuf>,
}

impl Conflist {
    /// A list named `name` in `version` with `plugins` (each a plugin configuration object).
    pub fn new(version: &str, name: &str, plugins: Vec<Value>) -> Conflist {
        Conflist {
            json: json!({"cniVersion": version, "name": name, "plugins": plugins}),
        }
    }

    /// The plugin configuration objects.
    pub fn plugins(&self) -> Vec<Value> {
        self.json["plugins"].as_array().cloned().unwrap_or_default()
    }

    /// The execution configuration of `plugin` (spec section 3): the list's `cniVersion`
    /// and `name` added, `capabilities` removed, `runtimeConfig` from the capability
    /// arguments it declares, `prevResult` when given, and `extra` keys (GC's lists).
    pub fn derive(
        &self,
        plugin: &Value,
        capability_args: &Map<String, Value>,
        prev_result: Option<&Value>,
        extra: &Map<String, Value>,
    ) -> Value {
        let mut conf = plugin.as_object().cloned().unwrap_or_default();
        let capabilities = conf.remove("capabilities");
        conf.insert("cniVersion".into(), self.json["cniVersion"].clone());
        conf.insert("name".into(), self.json["name"].clone());
        let runtime: Map<String, Value> = capabilities
            .as_ref()
            .and_then(Value::as_object)
            .map(|caps| {
                caps.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .filter_map(|(k, _)| Some((k.clone(), capability_args.get(k)?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        conf.extend(extra.clone());
        Value::Object(conf)
    }
}

impl<'a> Runtime<'a> {
    /// A runtime in `node` finding plugins in `plugin_dirs`.
    pub fn new(node: &'a Netns, plugin_dirs: Vec<PathBuf>) -> Runtime<'a> {
        Runtime { node, plugin_dirs }
    }

    /// ADD: every plugin in order; returns the attachment's result (the last plugin's).
    pub fn add(&self, list: &Conflist, att: &Attachment) -> anyhow::Result<Value> {
        let mut prev: Option<Value> = None;
        for plugin in list.plugins() {
            let conf = list.derive(&plugin, &att.capability_args, prev.as_ref(), &Map::new());
            let out = self.exec(&plugin, "ADD", Some(att), &conf)?;
            if !out.is_object() {
                bail!("{} ADD printed no result: {out}", plugin_type(&plugin));
            }
            prev = Some(out);
        }
        prev.context("the list has no plugins")
    }

    /// CHECK: every plugin in order with the attachment's `result`.
    pub fn check(&self, list: &Conflist, att: &Attachment, result: &Value) -> anyhow::Result<()> {
        if list.json["disableCheck"].as_bool() == Some(true) {
            return Ok(());
        }
        for plugin in list.plugins() {
            let conf = list.derive(&plugin, &att.capability_args, Some(result), &Map::new());
            self.exec(&plugin, "CHECK", Some(att), &conf)?;
        }
        Ok(())
    }

    /// DEL: every plugin in reverse order with the attachment's `result`, if known.
    pub fn del(
        &self,
        list: &Conflist,
        att: &Attachment,
        result: Option<&Value>,
    ) -> anyhow::Result<()> {
        for plugin in list.plugins().iter().rev() {
            let conf = list.derive(plugin, &att.capability_args, result, &Map::new());
            self.exec(plugin, "DEL", Some(att), &conf)?;
        }
        Ok(())
    }

    /// GC: every plugin, told which attachments (container id, ifname) are still valid.
    pub fn gc(&self, list: &Conflist, valid: &[(&str, &str)]) -> anyhow::Result<()> {
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
            .collect();
        let mut extra = Map::new();
        extra.insert("cni.dev/valid-attachments".into(), json!(attachments));
        extra.insert("cni.dev/attachments".into(), json!(attachments));
        for plugin in list.plugins() {
            let conf = list.derive(&plugin, &Map::new(), None, &extra);
            self.exec(&plugin, "GC", None, &conf)?;
        }
        Ok(())
    }

    /// STATUS: every plugin.
    pub fn status(&self, list: &Conflist) -> anyhow::Result<()> {
        for plugin in list.plugins() {
            let conf = list.derive(&plugin, &Map::new(), None, &Map::new());
            self.exec(&plugin, "STATUS", None, &conf)?;
        }
        Ok(())
    }

    /// The plugin binary for `kind`, from the first directory that has it.
    pub fn find(&self, kind: &str) -> anyhow::Result<PathBuf> {
        if kind.is_empty() || kind.contains('/') {
            bail!("plugin type {kind:?} is not a file name");
        }
        self.plugin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "plugin {kind} not found in {:?} (portmap and the other reference plugins come with the containernetworking-plugins package)",
                    self.plugin_dirs
                )
            })
    }

    /// Runs one plugin; returns its stdout as JSON (`null` when empty), or a
    /// [`PluginFailure`] when it exits non-zero.
    fn exec(
        &self,
        plugin: &Value,
        command: &str,
        att: Option<&Attachment>,
        conf: &Value,
    ) -> anyhow::Result<Value> {
        let kind = plugin_type(plugin);
        let binary = self.find(&kind)?;
        let path = std::env::join_paths(&self.plugin_dirs)?;
        let mut cmd = self.node.command(&binary.to_string_lossy());
        cmd.env("CNI_COMMAND", command).env("CNI_PATH", &path);
        if let Some(att) = att {
            cmd.env("CNI_CONTAINERID", &att.container_id)
                .env("CNI_NETNS", &att.netns)
                .env("CNI_IFNAME", &att.ifname);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        child
            .stdin
            .take()
            .context("plugin stdin")?
            .write_all(conf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{kind} {command} printed no JSON: {text}"))?
        };
        if !out.status.success() {
            return Err(PluginFailure {
                plugin: kind,
                command: command.to_owned(),
                output: json,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
            .into());
        }
        Ok(json)
    }
}

fn plugin_type(plugin: &Value) -> String {
    plugin["type"].as_str().unwrap_or_default().to_owned()
}

/// The directory of the binary at `path` (e.g. the overlay-cni under test).
pub fn dir_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_configuration_follows_the_spec() {
        let list = Conflist::new(
            "1.0.0",
            "overlay",
            vec![
                json!({"type": "overlay-cni", "mtu": 1400}),
                json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}, "snat": true}),
            ],
        );
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        caps.insert("bandwidth".into(), json!({"ingressRate": 1}));
        let plugins = list.plugins();
        let first = list.derive(&plugins[0], &caps, None, &Map::new());
        assert_eq!(
            first,
            json!({"type": "overlay-cni", "mtu": 1400, "cniVersion": "1.0.0", "name": "overlay"})
        );
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let second = list.derive(&plugins[1], &caps, Some(&prev), &Map::new());
        assert_eq!(
            second,
            json!({
                "type": "portmap", "snat": true, "cniVersion": "1.0.0", "name": "overlay",
                "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                "prevResult": prev
            }),
            "capabilities removed; only declared and offered ones in runtimeConfig"
        );
    }
}
