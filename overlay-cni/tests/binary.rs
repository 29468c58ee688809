//! The real `overlay-cni` binary, run as root with `ip netns exec` inside a node namespace
//! the test creates (so the agent address it dials is that namespace's loopback).

mod common;

use overlay_testbed::{require_root, unique_prefix, Netns};
use serde_json::Value;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_overlay-cni");

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {:?}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts a CNI error with `code`; returns its message.
    fn cni_error(&self, code: u64) -> String {
        assert!(!self.ok, "expected a failure, got {:?}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        let version = v["cniVersion"].as_str().unwrap_or_default();
        assert!(overlay_cni::SUPPORTED_VERSIONS.contains(&version), "{v}");
        assert!(v["details"].is_string(), "{v}");
        v["msg"].as_str().expect("msg").to_owned()
    }
}

/// Runs the plugin inside `node` with exactly `env` and `stdin`.
fn plugin(node: &Netns, env: &[(&str, String)], stdin: &str) -> Outcome {
    let mut cmd = node.command(BIN);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn plugin");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("plugin output");
    Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn env(command: &str, id: &str, netns: &Netns) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.to_owned()),
        ("CNI_CONTAINERID", id.to_owned()),
        ("CNI_NETNS", netns.path().display().to_string()),
        ("CNI_IFNAME", "eth0".to_owned()),
        ("CNI_PATH", "/opt/cni/bin".to_owned()),
    ]
}

fn netconf(api_port: u16, wait: u64) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"overlay","type":"overlay-cni","api":"127.0.0.1:{api_port}","agentWaitSeconds":{wait}}}"#
    )
}

fn node(tag: &str) -> Netns {
    Netns::create(&format!("{}n", unique_prefix(tag))).expect("node namespace")
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn version_prints_the_supported_versions() {
    require_root();
    let n = node("bv");
    let out = plugin(&n, &[("CNI_COMMAND", "VERSION".into())], "");
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
    assert_eq!(
        out.json(),
        serde_json::json!({"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]})
    );
    // As libcni asks: the answer is in the version of the question.
    let out = plugin(
        &n,
        &[("CNI_COMMAND", "VERSION".into())],
        r#"{"cniVersion":"1.0.0"}"#,
    );
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
    assert_eq!(out.json()["cniVersion"], "1.0.0");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn status_and_gc_need_1_1_and_gc_needs_the_valid_attachments() {
    require_root();
    let n = node("bs");
    let status = [("CNI_COMMAND", "STATUS".to_owned())];
    let gc = [("CNI_COMMAND", "GC".to_owned())];
    let conf_1_0 = r#"{"cniVersion":"1.0.0","name":"overlay","type":"overlay-cni"}"#;
    for env in [&status, &gc] {
        let out = plugin(&n, env, conf_1_0);
        assert!(
            out.cni_error(1).contains("needs cniVersion 1.1.0"),
            "{}",
            out.stdout
        );
        assert_eq!(
            out.json()["cniVersion"],
            "1.0.0",
            "answered in the config's version"
        );
    }
    // Without the list, every attachment would look stale: nothing is touched.
    let conf_1_1 =
        r#"{"cniVersion":"1.1.0","name":"overlay","type":"overlay-cni","api":"127.0.0.1:6784"}"#;
    let out = plugin(&n, &gc, conf_1_1);
    assert!(out.cni_error(7).contains("cni.dev/valid-attachments"));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn status_without_an_agent_is_code_50_at_once() {
    require_root();
    let n = node("bq");
    let start = Instant::now();
    let out = plugin(
        &n,
        &[("CNI_COMMAND", "STATUS".into())],
        r#"{"cniVersion":"1.1.0","name":"overlay","type":"overlay-cni","agentWaitSeconds":30}"#,
    );
    let msg = out.cni_error(50);
    assert!(msg.contains("127.0.0.1:6784"), "{msg}");
    assert!(out.stdout.contains("refused"), "{}", out.stdout);
    assert_eq!(out.json()["cniVersion"], "1.1.0");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a probe does not wait for the agent: {:?}",
        start.elapsed()
    );
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn bad_environment_is_code_4() {
    require_root();
    let n = node("be");
    let pod = Netns::create(&format!("{}p", n.name())).expect("pod");
    let conf = netconf(6784, 0);
    let out = plugin(&n, &[], &conf);
    assert!(out.cni_error(4).contains("CNI_COMMAND"));
    let mut e = env("ADD", "abc", &pod);
    e.retain(|(k, _)| *k != "CNI_CONTAINERID");
    assert!(plugin(&n, &e, &conf)
        .cni_error(4)
        .contains("CNI_CONTAINERID"));
    let mut e = env("ADD", "abc", &pod);
    e[3].1 = "bad/name".into();
    assert!(plugin(&n, &e, &conf).cni_error(4).contains("CNI_IFNAME"));
    let e = env("FROB", "abc", &pod);
    assert!(plugin(&n, &e, &conf).cni_error(4).contains("FROB"));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn bad_netconf_is_code_6_or_7_and_unknown_versions_code_1() {
    require_root();
    let n = node("bn");
    let pod = Netns::create(&format!("{}p", n.name())).expect("pod");
    let e = env("ADD", "abc", &pod);
    assert!(plugin(&n, &e, "{not json")
        .cni_error(6)
        .contains("decoding"));
    let msg = plugin(
        &n,
        &e,
        r#"{"cniVersion":"1.0.0","name":"o","type":"t","mtu":9}"#,
    )
    .cni_error(7);
    assert!(msg.contains("mtu"), "{msg}");
    let msg = plugin(&n, &e, r#"{"cniVersion":"0.3.1","name":"o","type":"t"}"#).cni_error(1);
    assert!(msg.contains("0.3.1"), "{msg}");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn add_without_an_agent_fails_with_code_11_after_the_wait() {
    require_root();
    let n = node("bw");
    let pod = Netns::create(&format!("{}p", n.name())).expect("pod");
    // Nothing listens on this port in the fresh node namespace.
    let start = Instant::now();
    let out = plugin(&n, &env("ADD", "abc", &pod), &netconf(6784, 2));
    let took = start.elapsed();
    let msg = out.cni_error(11);
    assert!(
        msg.contains("127.0.0.1:6784") && msg.contains("POST /ipam/allocations"),
        "{msg}"
    );
    assert_eq!(
        out.json()["cniVersion"],
        "1.0.0",
        "answered in the config's version"
    );
    assert!(
        out.json()["details"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{}",
        out.stdout
    );
    assert!(
        took >= Duration::from_secs(2),
        "waited for the agent: {took:?}"
    );
    assert!(took < Duration::from_secs(20), "but bounded: {took:?}");
    assert!(
        pod.ip(&["link", "show", "dev", "eth0"]).is_err(),
        "nothing wired"
    );
    // DEL waits the same way: the address must be released, so it cannot just succeed.
    let out = plugin(&n, &env("DEL", "abc", &pod), &netconf(6784, 0));
    out.cni_error(11);
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn add_into_something_that_is_no_pod_namespace_is_code_3() {
    require_root();
    let n = node("ns");
    let pod = Netns::create(&format!("{}p", n.name())).expect("pod");
    // No agent listens: the namespace is checked before any address is asked for.
    let mut e = env("ADD", "ctr-3", &pod);
    e[2].1 = "/var/run/netns/does-not-exist-overlay-cni".into();
    plugin(&n, &e, &netconf(6784, 5)).cni_error(3);
    e[2].1 = "/proc/self/status".into();
    assert!(plugin(&n, &e, &netconf(6784, 5))
        .cni_error(3)
        .contains("not a network namespace"));
    e[2].1 = "/proc/self/ns/net".into();
    assert!(plugin(&n, &e, &netconf(6784, 5))
        .cni_error(3)
        .contains("node's own"));
}
