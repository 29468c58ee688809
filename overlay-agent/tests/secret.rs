//! End to end, as root: authenticated membership (`--secret-file`).
//!
//! - Three agents holding the cluster secret converge and carry pod traffic; a fourth with
//!   another secret is refused (counted on the agent it dials), is never listed by the
//!   others, and lists nobody itself.
//! - Rotation: three agents move from an old to a new secret through the three steps
//!   (`[old, new]`, `[new, old]`, `[new]`), one node at a time, while a pod stream runs.
//!   After each file rewrite the agent is seen to reload it, then is restarted so that its
//!   connections are handshaken again under the new secrets; every pair of agents not being
//!   restarted reaches each other at every check, every restarted agent is back with direct
//!   connections to both others, no handshake is ever refused, and the stream arrives intact.

mod common;

use common::transfer;
use overlay_agent::auth::Secret;
use overlay_testbed::{stream, wait, Binaries, Cluster};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const GOOD: &str = "good-cluster-secret-0123456789";
const WRONG: &str = "wrong-cluster-secret-987654321";
const OLD: &str = "old-cluster-secret-abcdefghijk";
const NEW: &str = "new-cluster-secret-lmnopqrstuv";
/// Stream rate: a few MB/s keeps a debug build and a busy 2-core machine comfortable.
const RATE: u64 = 2 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(60);

fn cluster(tag: &str, nodes: usize) -> Cluster {
    overlay_testbed::require_root();
    let bins = Binaries::next_to(env!("CARGO_BIN_EXE_overlay-agent")).expect("binaries built");
    Cluster::new(&overlay_testbed::unique_prefix(tag), nodes, bins).expect("cluster")
}

fn secret_path(c: &Cluster, i: usize) -> PathBuf {
    c.workdir.join(format!("node{i}.secret"))
}

fn write_secret(path: &Path, lines: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    // Written to a temporary file and renamed, as a kubelet updates a mounted Secret.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, lines.join("\n") + "\n").expect("secret written");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::rename(&tmp, path).expect("secret replaced");
}

/// Starts node `i`'s agent with its own secret file.
fn start_with_secret(c: &mut Cluster, i: usize) {
    c.agent_args = vec![
        "--secret-file".into(),
        secret_path(c, i).to_string_lossy().into_owned(),
    ];
    c.start_agent(i)
        .unwrap_or_else(|e| panic!("node{i} starts: {e}"));
}

fn peer<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["peers"].as_array()?.iter().find(|p| p["name"] == name)
}

fn reaches(s: &Value, j: usize) -> bool {
    peer(s, &Cluster::node_name(j))
        .is_some_and(|p| p["reachable"] == true && !p["subnet"].is_null())
}

fn connected(s: &Value, j: usize) -> bool {
    let name = Cluster::node_name(j);
    s["connections"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["peer"] == name.as_str()))
}

fn refused(s: &Value, reason: &str) -> u64 {
    s["control_traffic"]["handshakes_refused"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn only_agents_holding_the_secret_join_and_a_wrong_one_is_refused() {
    let mut c = cluster("sw", 4);
    for i in 0..3 {
        write_secret(&secret_path(&c, i), &[GOOD]);
    }
    write_secret(&secret_path(&c, 3), &[WRONG]);
    // node3 seeds node2 (chained seeds); it also knows node0 directly.
    c.seeds[3] = vec![2, 0];
    for i in 0..4 {
        start_with_secret(&mut c, i);
    }
    wait::until(
        "the three good agents to reach each other, and node3 to be refused",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            for i in 0..3 {
                let s = c.status(i).map_err(|e| e.to_string())?;
                for j in (0..3).filter(|&j| j != i) {
                    if !reaches(&s, j) {
                        return Err(format!("node{i} does not reach node{j} yet"));
                    }
                }
            }
            let (s0, s2) = (
                c.status(0).map_err(|e| e.to_string())?,
                c.status(2).map_err(|e| e.to_string())?,
            );
            if refused(&s0, "bad_secret") == 0 || refused(&s2, "bad_secret") == 0 {
                return Err("no bad_secret refusal counted on node0 and node2 yet".into());
            }
            Ok(Some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));

    c.add_pod(0).expect("pod on node0");
    c.add_pod(2).expect("pod on node2");
    transfer(&c, 0, 1, 8);

    let good_fp = Secret::new(GOOD.as_bytes()).fingerprint().to_owned();
    let mut identities = Vec::new();
    for i in 0..3 {
        let s = c.status(i).expect("status");
        assert!(
            peer(&s, "node3").is_none(),
            "node{i} never lists the wrong-secret agent: {}",
            s["peers"]
        );
        assert_eq!(s["auth"]["secret_current"], good_fp.as_str());
        identities.push(s["auth"]["identity"].as_str().expect("identity").to_owned());
    }
    // Each connection shows the public key the peer proved in the handshake.
    let s0 = c.status(0).expect("status");
    for conn in s0["connections"].as_array().expect("connections") {
        let j: usize = conn["peer"].as_str().expect("peer")[4..]
            .parse()
            .expect("node index");
        assert_eq!(
            conn["identity"].as_str(),
            Some(identities[j].as_str()),
            "{conn}"
        );
    }
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), 3, "every agent has its own identity");
    let s3 = c.status(3).expect("status of node3");
    assert!(
        s3["peers"].as_array().is_none_or(|p| p.is_empty()),
        "the wrong-secret agent reaches nobody: {}",
        s3["peers"]
    );
    assert!(
        !c.log(0).contains(GOOD) && !c.log(3).contains(WRONG),
        "secrets never appear in logs"
    );
    let identity_file = c.state_dir(0).join("identity.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&identity_file)
            .expect("identity file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{}", identity_file.display());
}

/// Node `restarting` (if any) is excluded: every other pair must reach each other.
fn assert_no_partition(c: &Cluster, restarting: Option<usize>, when: &str) {
    let up: Vec<usize> = (0..3).filter(|&i| Some(i) != restarting).collect();
    for &i in &up {
        let s = c
            .status(i)
            .unwrap_or_else(|e| panic!("{when}: status of node{i}: {e}\n{}", c.all_logs()));
        for &j in up.iter().filter(|&&j| j != i) {
            assert!(
                reaches(&s, j),
                "{when}: node{i} lost node{j} (partition): {}\n{}",
                s["peers"],
                c.all_logs()
            );
        }
        assert_eq!(
            refused(&s, "bad_secret"),
            0,
            "{when}: node{i} refused a handshake during the rotation\n{}",
            c.all_logs()
        );
    }
}

/// Polls `pred` for up to `timeout`, checking the no-partition invariant at every poll.
fn wait_checking(
    c: &Cluster,
    what: &str,
    restarting: Option<usize>,
    timeout: Duration,
    pred: impl Fn(&Cluster) -> Result<bool, String>,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        assert_no_partition(c, restarting, what);
        match pred(c) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("timed out waiting for {what}: {e}\n{}", c.all_logs())
            }
            Err(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn rotating_the_secret_node_by_node_never_partitions_the_cluster() {
    let mut c = cluster("sr", 3);
    for i in 0..3 {
        write_secret(&secret_path(&c, i), &[OLD]);
        start_with_secret(&mut c, i);
    }
    common::converge(&c, Duration::from_secs(60));
    c.add_pod(0).expect("pod on node0");
    c.add_pod(2).expect("pod on node2");
    let s = stream::start(
        &c.pods[1].netns,
        c.pods[1].ip,
        &c.pods[0].netns,
        RATE,
        IO_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("stream: {e:#}\n{}", c.all_logs()));
    wait_checking(
        &c,
        "the stream to flow",
        None,
        Duration::from_secs(60),
        |_| Ok(s.received() >= 1 << 20),
    );

    let fp = |x: &str| Secret::new(x.as_bytes()).fingerprint().to_owned();
    let steps: [(&[&str], &str, Option<&str>); 3] = [
        (&[OLD, NEW], OLD, Some(NEW)),
        (&[NEW, OLD], NEW, Some(OLD)),
        (&[NEW], NEW, None),
    ];
    for (step, (lines, current, next)) in steps.iter().enumerate() {
        for i in 0..3 {
            let when = format!("step {} node{i}", step + 1);
            write_secret(&secret_path(&c, i), lines);
            let (want_cur, want_next) = (fp(current), next.map(fp));
            wait_checking(
                &c,
                &format!("{when}: the agent to reload its secret file"),
                None,
                Duration::from_secs(30),
                |c| {
                    let st = c.status(i).map_err(|e| e.to_string())?;
                    Ok(st["auth"]["secret_current"] == want_cur.as_str()
                        && st["auth"]["secret_next"].as_str() == want_next.as_deref())
                },
            );
            // Restart it: its connections are handshaken again under the new secrets.
            c.stop_agent(i, libc::SIGTERM, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{when}: stop: {e}\n{}", c.log(i)));
            assert_no_partition(&c, Some(i), &when);
            start_with_secret(&mut c, i);
            wait_checking(
                &c,
                &format!("{when}: the restarted agent connected directly to both others"),
                Some(i),
                Duration::from_secs(60),
                |c| {
                    for a in 0..3 {
                        let st = c.status(a).map_err(|e| e.to_string())?;
                        for b in (0..3).filter(|&b| b != a) {
                            if !reaches(&st, b) || !connected(&st, b) {
                                return Err(format!("node{a} has no connection to node{b}"));
                            }
                        }
                    }
                    Ok(true)
                },
            );
            // Hold a while with every pair checked, the stream still going.
            let from = s.received();
            wait_checking(
                &c,
                &format!("{when}: the stream to go on"),
                None,
                Duration::from_secs(60),
                |_| {
                    if !s.running() {
                        return Err("the stream stopped".into());
                    }
                    Ok(s.received() >= from + (512 << 10))
                },
            );
        }
    }
    assert_no_partition(&c, None, "after the rotation");
    let report = s
        .finish(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the stream failed: {e:#}\n{}", c.all_logs()));
    assert_eq!(report.received, report.sent, "every byte arrives");
    assert_eq!(
        report.sent_sha256, report.received_sha256,
        "checksums match"
    );
    eprintln!(
        "{} MiB checked over 9 restarts, stalls {:?}",
        report.received >> 20,
        report
            .stalls
            .iter()
            .map(|s| s.to.duration_since(s.from).as_secs_f64())
            .collect::<Vec<_>>()
    );
    for i in 0..3 {
        assert!(
            !c.log(i).contains(OLD) && !c.log(i).contains(NEW),
            "secrets never appear in logs"
        );
    }
}
