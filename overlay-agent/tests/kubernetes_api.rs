//! The `k8s` feature against hand-written API objects: k8s-openapi/kube-rs parse them to the
//! same facts as the plain logic, and the whole [`Session`] (list, watch, status patch with
//! retry) runs through kube-rs's real HTTP client against a fake API server on loopback that
//! serves the fixtures. No real cluster: see docs/operations.md ("Kubernetes") for what that leaves unexercised.
#![cfg(feature = "k8s")]

mod fake_kube;

use fake_kube::{FakeApi, PatchSeen};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::core::{ObjectList, WatchEvent as KubeWatchEvent};
use overlay_agent::control::{Command, ControlHandle, Readiness};
use overlay_agent::kubernetes::time::parse_rfc3339;
use overlay_agent::kubernetes::{
    network_available_patch, ApiNode, ApiNodeList, NodeFacts, Session,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubernetes");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[test]
fn k8s_openapi_types_give_the_same_facts_as_the_plain_logic() {
    let text = fixture("nodes.json");
    let typed: ObjectList<Node> = serde_json::from_str(&text).expect("kube ObjectList<Node>");
    let plain: ApiNodeList = serde_json::from_str(&text).expect("plain NodeList");
    let a: Vec<NodeFacts> = typed.items.iter().map(NodeFacts::from).collect();
    let b: Vec<NodeFacts> = plain.items.iter().map(NodeFacts::from).collect();
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
    let mut kinds = Vec::new();
    for line in fixture("watch-events.jsonl").lines() {
        let typed: KubeWatchEvent<Node> = serde_json::from_str(line).expect("kube WatchEvent");
        let plain: Value = serde_json::from_str(line).expect("json");
        let plain: ApiNode = serde_json::from_value(plain["object"].clone()).expect("node");
        match typed {
            KubeWatchEvent::Added(n) | KubeWatchEvent::Modified(n) | KubeWatchEvent::Deleted(n) => {
                assert_eq!(NodeFacts::from(&n), NodeFacts::from(&plain));
                kinds.push("object");
            }
            KubeWatchEvent::Bookmark(_) => kinds.push("bookmark"),
            KubeWatchEvent::Error(e) => panic!("error event {e:?}"),
        }
    }
    assert_eq!(kinds, ["object", "object", "bookmark", "object", "object"]);
}

#[test]
fn the_status_patch_request_is_a_strategic_merge_of_the_status_subresource() {
    let body = network_available_patch(parse_rfc3339("2025-03-04T09:21:00Z").expect("time"));
    let req = kube::core::Request::new("/api/v1/nodes")
        .patch_subresource(
            "status",
            "cp-1",
            &PatchParams::default(),
            &Patch::Strategic(&body),
        )
        .expect("request");
    assert_eq!(req.method().as_str(), "PATCH");
    assert_eq!(req.uri().path(), "/api/v1/nodes/cp-1/status");
    assert_eq!(
        req.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/strategic-merge-patch+json")
    );
    let sent: Value = serde_json::from_slice(req.body()).expect("json body");
    let want: Value =
        serde_json::from_str(&fixture("network-available-patch.json")).expect("fixture");
    assert_eq!(sent, want);
}

/// The fake API server serving the fixture's NodeList on loopback, and a client of it.
async fn fake_api() -> (Arc<FakeApi>, kube::Client) {
    let fake = FakeApi::new(serde_json::from_str(&fixture("nodes.json")).expect("json"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = fake.serve(listener);
    (fake, FakeApi::client(&url))
}

async fn next_command(rx: &mut mpsc::Receiver<Command>) -> Command {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a command within 10 s")
        .expect("channel open")
}

/// Checks `p` is the status patch of Node `name`, made about now.
fn assert_is_the_status_patch(p: &PatchSeen, name: &str) {
    assert_eq!(p.path, format!("/api/v1/nodes/{name}/status"));
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let at = p.body["status"]["conditions"][0]["lastTransitionTime"]
        .as_str()
        .and_then(parse_rfc3339)
        .expect("lastTransitionTime");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(at.abs_diff(now as i64) < 120, "the time of the patch");
    assert_eq!(p.body, network_available_patch(at));
}

/// `node` with `NetworkUnavailable` set to `status`.
fn with_network_unavailable(mut node: Value, status: &str) -> Value {
    for c in node["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
    {
        if c["type"] == "NetworkUnavailable" {
            c["status"] = json!(status);
            c["reason"] = json!("NoRouteCreated");
        }
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lists_watches_and_clears_network_unavailable_through_kube_rs() {
    let (fake, client) = fake_api().await;
    let cluster = "10.32.0.0/12".parse().expect("cidr");
    let session = Session::with_client(client, "cp-1", 6783, cluster, 24)
        .await
        .expect("connects");
    let claim = session.claim().expect("podCIDR");
    assert_eq!(claim.block, "10.32.0.0/24".parse().expect("cidr"));
    assert_eq!(
        i64::from(claim.epoch),
        parse_rfc3339("2025-03-04T09:00:12Z").expect("time")
    );
    assert_eq!(
        session.seeds(),
        [addr("192.0.2.11:6783"), addr("192.0.2.12:6783")]
    );
    assert_eq!(session.advertise_ip(), Some([192, 0, 2, 10].into()));

    let (tx, mut commands) = mpsc::channel(64);
    let ready = Readiness::default();
    let task = session.spawn(ControlHandle::new(tx), ready.clone());
    fake.wait_watchers(1).await;

    // ADDED worker-3, MODIFIED worker-1 (new InternalIP), BOOKMARK.
    let lines: Vec<String> = fixture("watch-events.jsonl")
        .lines()
        .map(str::to_owned)
        .collect();
    for line in &lines[..3] {
        fake.send_raw(line.clone());
    }
    let got = [
        next_command(&mut commands).await,
        next_command(&mut commands).await,
        next_command(&mut commands).await,
    ];
    let shown = format!("{got:?}");
    assert!(
        matches!(got[0], Command::AddTarget(a) if a == addr("192.0.2.13:6783")),
        "{shown}"
    );
    assert!(
        matches!(got[1], Command::AddTarget(a) if a == addr("192.0.2.21:6783")),
        "{shown}"
    );
    assert!(
        matches!(got[2], Command::RemoveTarget(a) if a == addr("192.0.2.11:6783")),
        "{shown}"
    );

    // Not ready: no patch.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(fake.patches().is_empty(), "patched before ready");

    // Ready: the first patch fails (500), the retry after the backoff succeeds.
    fake.fail_patches.store(1, Ordering::SeqCst);
    ready.set(true);
    let p = fake.wait_patches(2, 10).await;
    assert_is_the_status_patch(&p[0], "cp-1");
    assert_is_the_status_patch(&p[1], "cp-1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.patches().len(), 2, "no patch once cleared");

    // The watch shows the cleared condition (fixture), then DELETED worker-2.
    fake.send_raw(lines[3].clone());
    fake.send_raw(lines[4].clone());
    let got = next_command(&mut commands).await;
    assert!(
        matches!(got, Command::RemoveTarget(a) if a == addr("192.0.2.12:6783")),
        "{got:?}"
    );

    // Someone sets NetworkUnavailable=True again: it is cleared again.
    let cp = fake.node("cp-1").expect("cp-1");
    fake.apply("MODIFIED", with_network_unavailable(cp, "True"));
    let p = fake.wait_patches(3, 10).await;
    assert_is_the_status_patch(&p[2], "cp-1");

    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_node_or_a_pod_cidr_outside_the_cluster_stops_the_start_with_one_line() {
    let (_fake, client) = fake_api().await;
    let cluster = "10.32.0.0/12".parse().expect("cidr");
    let e = Session::with_client(client.clone(), "not-a-node", 6783, cluster, 24)
        .await
        .expect_err("no such node");
    assert!(
        e.to_string()
            .starts_with("the Kubernetes API lists no Node named \"not-a-node\""),
        "{e}"
    );
    let e = Session::with_client(
        client,
        "worker-1",
        6783,
        "10.244.0.0/16".parse().expect("cidr"),
        24,
    )
    .await
    .expect_err("outside the cluster range");
    assert!(
        e.to_string().starts_with(
            "spec.podCIDR 10.32.1.0/24 of Node worker-1 is not inside --cluster-cidr 10.244.0.0/16"
        ),
        "{e}"
    );
}
