//! The API over real HTTP on 127.0.0.1:0, with a stand-in for the control-plane driver.

use super::*;
use crate::control::Command;
use crate::state::StateDir;
use crate::status::Status;
use serde_json::{json, Value};
use std::collections::HashSet;
use tokio::sync::{mpsc, oneshot};

struct Server {
    base: String,
    ipam: Arc<IpamStore>,
    ready: Readiness,
    dir: StateDir,
    /// Targets the stand-in driver was asked to add (`true`) or remove (`false`).
    targets: Arc<std::sync::Mutex<Vec<(bool, std::net::SocketAddr)>>>,
    _tmp: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

fn sample_status() -> Status {
    serde_json::from_value(json!({
        "name": "node-a", "instance": "00000000000000ff", "ready": true,
        "cluster": "10.32.0.0/12", "subnet": "10.32.3.0/24", "address": "10.32.3.1",
        "advertise": "192.168.1.10:6783", "mtu": 1418,
        "peers": [{"name": "node-b", "address": "192.168.1.11:6783", "subnet": null,
                   "reachable": false, "next_hop": null, "hops": 0, "connected": false,
                   "left": false, "instance": "0000000000000001"}],
        "connections": [], "targets": [], "rejected_connections": 0, "datapath": {}
    }))
    .expect("valid status")
}

/// Starts the API; `driver` says whether a stand-in driver answers status requests.
async fn start(driver: bool) -> Server {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = StateDir::open(tmp.path()).expect("state dir");
    let ipam = Arc::new(IpamStore::open(&dir).expect("store"));
    let (tx, mut rx) = mpsc::channel::<Command>(8);
    let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
    if driver {
        let targets = targets.clone();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Command::Status(reply) => {
                        let _ = reply.send(sample_status());
                    }
                    Command::AddTarget(a) => targets.lock().expect("lock").push((true, a)),
                    Command::RemoveTarget(a) => targets.lock().expect("lock").push((false, a)),
                }
            }
        });
    }
    let ready = Readiness::default();
    let state = ApiState {
        control: ControlHandle::new(tx),
        ipam: ipam.clone(),
        ready: ready.clone(),
        cluster: "10.32.0.0/12".parse().expect("cidr"),
        mtu: 1418,
        trace: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        base,
        ipam,
        ready,
        dir,
        targets,
        _tmp: tmp,
        _stop: stop,
    }
}

/// One HTTP request; returns the status code and the body.
async fn call(method: &str, url: String, body: Option<&str>) -> (u16, String) {
    let method = method.to_owned();
    let body = body.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let req = ureq::request(&method, &url).timeout(Duration::from_secs(10));
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b),
            None => req.call(),
        };
        match res {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {url}: {e}"),
        }
    })
    .await
    .expect("request task")
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<ApiError>(body)
        .unwrap_or_else(|e| panic!("not an ApiError ({e}): {body}"))
        .error
}

async fn post(s: &Server, container: &str, ifname: &str) -> (u16, String) {
    let body = json!({"container_id": container, "ifname": ifname}).to_string();
    call("POST", format!("{}/ipam/allocations", s.base), Some(&body)).await
}

#[tokio::test]
async fn health_and_readiness() {
    let s = start(true).await;
    assert_eq!(
        call("GET", format!("{}/healthz", s.base), None).await.0,
        200
    );
    assert_eq!(call("GET", format!("{}/readyz", s.base), None).await.0, 503);
    s.ready.set(true);
    assert_eq!(call("GET", format!("{}/readyz", s.base), None).await.0, 200);
}

#[tokio::test]
async fn status_is_the_drivers_snapshot_as_json() {
    let s = start(true).await;
    let (code, body) = call("GET", format!("{}/status", s.base), None).await;
    assert_eq!(code, 200);
    let v = json_of(&body);
    assert_eq!(v["name"], "node-a");
    assert_eq!(v["subnet"], "10.32.3.0/24");
    assert_eq!(v["address"], "10.32.3.1");
    assert_eq!(v["peers"][0]["hops"], 0);
    assert_eq!(v["peers"][0]["next_hop"], Value::Null);
}

#[tokio::test]
async fn trace_checks_its_request_and_needs_a_data_path() {
    let s = start(true).await;
    let url = || format!("{}/trace", s.base);
    for bad in [
        "{}",
        r#"{"destination":"10.32.1"}"#,
        r#"{"destination":"10.32.1.5","timeout_ms":0}"#,
        r#"{"destination":"10.32.1.5","timeout_ms":3600000}"#,
    ] {
        let (code, body) = call("POST", url(), Some(bad)).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(json_of(&body)["error"].is_string(), "{body}");
    }
    // No tracer in this API (no data path): 503 with a reason.
    let (code, body) = call("POST", url(), Some(r#"{"destination":"10.32.1.5"}"#)).await;
    assert_eq!(code, 503, "{body}");
    assert!(json_of(&body)["error"]
        .as_str()
        .is_some_and(|e| e.contains("trac")));
}

#[tokio::test]
async fn status_without_a_driver_is_503() {
    let s = start(false).await;
    let (code, body) = call("GET", format!("{}/status", s.base), None).await;
    assert_eq!(code, 503);
    assert!(error_of(&body).contains("did not answer"));
}

#[tokio::test]
async fn ipam_answers_503_until_the_node_has_a_block() {
    let s = start(true).await;
    let (code, body) = post(&s, "c1", "eth0").await;
    assert_eq!(code, 503);
    assert!(error_of(&body).contains("no subnet"));
    let url = format!("{}/ipam/allocations/c1/eth0", s.base);
    assert_eq!(call("GET", url.clone(), None).await.0, 503);
    assert_eq!(call("DELETE", url, None).await.0, 503);
}

#[tokio::test]
async fn allocate_get_release() {
    let s = start(true).await;
    s.ipam
        .set_block(Some("10.32.3.0/24".parse().expect("cidr")))
        .expect("block");
    let (code, body) = post(&s, "c1", "eth0").await;
    assert_eq!(code, 200, "{body}");
    let a: Allocation = serde_json::from_str(&body).expect("allocation");
    assert_eq!(a.address, "10.32.3.2/24".parse().expect("cidr"));
    assert_eq!(a.gateway, std::net::Ipv4Addr::new(10, 32, 3, 1));
    assert_eq!(a.cluster, "10.32.0.0/12".parse().expect("cidr"));
    assert_eq!(a.mtu, 1418);

    let (_, again) = post(&s, "c1", "eth0").await;
    assert_eq!(
        serde_json::from_str::<Allocation>(&again).expect("allocation"),
        a
    );
    let (_, other) = post(&s, "c2", "eth0").await;
    let other: Allocation = serde_json::from_str(&other).expect("allocation");
    assert_eq!(other.address, "10.32.3.3/24".parse().expect("cidr"));

    // Persisted before answering: a fresh store over the same directory has it.
    let reopened = IpamStore::open(&s.dir).expect("reopen");
    reopened
        .set_block(Some("10.32.3.0/24".parse().expect("cidr")))
        .expect("block");
    assert_eq!(reopened.len(), 2);

    let url = format!("{}/ipam/allocations/c1/eth0", s.base);
    let (code, body) = call("GET", url.clone(), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Allocation>(&body).expect("allocation"),
        a
    );
    assert_eq!(call("DELETE", url.clone(), None).await.0, 204);
    assert_eq!(
        call("DELETE", url.clone(), None).await.0,
        204,
        "DELETE is idempotent"
    );
    let (code, body) = call("GET", url, None).await;
    assert_eq!(code, 404);
    assert!(error_of(&body).contains("c1/eth0"));
}

#[tokio::test]
async fn list_shows_every_allocation_of_the_block() {
    let s = start(true).await;
    let url = format!("{}/ipam/allocations", s.base);
    assert_eq!(call("GET", url.clone(), None).await.0, 503, "no block yet");
    s.ipam
        .set_block(Some("10.32.3.0/24".parse().expect("cidr")))
        .expect("block");
    let (code, body) = call("GET", url.clone(), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        json_of(&body),
        json!({"block": "10.32.3.0/24", "allocations": []})
    );
    assert_eq!(post(&s, "c1", "eth0").await.0, 200);
    assert_eq!(post(&s, "c1", "net1").await.0, 200);
    let (code, body) = call("GET", url, None).await;
    assert_eq!(code, 200, "{body}");
    let list: AllocationList = serde_json::from_str(&body).expect("list");
    let entries: Vec<(String, String, String)> = list
        .allocations
        .iter()
        .map(|h| {
            (
                h.container_id.clone(),
                h.ifname.clone(),
                h.address.to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("c1".into(), "eth0".into(), "10.32.3.2".into()),
            ("c1".into(), "net1".into(), "10.32.3.3".into()),
        ]
    );
}

#[tokio::test]
async fn malformed_requests_are_400_with_an_api_error() {
    let s = start(true).await;
    s.ipam
        .set_block(Some("10.32.3.0/24".parse().expect("cidr")))
        .expect("block");
    let (code, body) = post(&s, "bad/id", "eth0").await;
    assert_eq!(code, 400);
    assert!(error_of(&body).contains("container id"));
    let (code, body) = post(&s, "c1", "much-too-long-ifname").await;
    assert_eq!(code, 400);
    assert!(error_of(&body).contains("interface name"));
    let url = format!("{}/ipam/allocations", s.base);
    let (code, body) = call("POST", url.clone(), Some("{\"container_id\": ")).await;
    assert_eq!(code, 400);
    error_of(&body);
    let (code, _) = call("POST", url, Some("{\"container_id\": \"c\"}")).await;
    assert_eq!(code, 400);
    let (code, body) = call(
        "GET",
        format!("{}/ipam/allocations/c%2F1/eth0", s.base),
        None,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = call("GET", format!("{}/nope", s.base), None).await;
    assert_eq!(code, 404);
    error_of(&body);
}

#[tokio::test]
async fn a_full_block_is_507() {
    let s = start(true).await;
    s.ipam
        .set_block(Some("10.32.3.0/30".parse().expect("cidr")))
        .expect("block");
    assert_eq!(post(&s, "c1", "eth0").await.0, 200);
    let (code, body) = post(&s, "c2", "eth0").await;
    assert_eq!(code, 507);
    assert!(error_of(&body).contains("in use"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http_allocations_get_distinct_addresses() {
    let s = start(true).await;
    s.ipam
        .set_block(Some("10.32.3.0/24".parse().expect("cidr")))
        .expect("block");
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let (code, body) = post(&s, &format!("c{i}"), "eth0").await;
                assert_eq!(code, 200, "{body}");
                serde_json::from_str::<Allocation>(&body)
                    .expect("allocation")
                    .address
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        assert!(
            seen.insert(t.await.expect("task")),
            "address handed out twice"
        );
    }
    assert_eq!(seen.len(), 48);
}

#[tokio::test]
async fn status_views_as_json_and_text() {
    let s = start(true).await;
    s.ipam
        .set_block(Some("10.32.3.0/24".parse().expect("cidr")))
        .expect("block");
    assert_eq!(post(&s, "abc", "eth0").await.0, 200);

    let get = |path: &str| call("GET", format!("{}{path}", s.base), None);
    let (code, body) = get("/status/peers").await;
    assert_eq!(code, 200);
    assert_eq!(json_of(&body)[0]["name"], "node-b");
    let (code, body) = get("/status/connections").await;
    assert_eq!((code, json_of(&body)), (200, json!([])));
    let (code, body) = get("/status/routes").await;
    assert_eq!(code, 200);
    let routes = json_of(&body);
    assert_eq!(routes[0]["destination"], "10.32.0.0/12");
    assert_eq!(routes[1]["destination"], "10.32.3.0/24");
    assert_eq!(routes[1]["local"], true);
    let (code, body) = get("/status/ipam").await;
    assert_eq!(code, 200);
    let ipam = json_of(&body);
    assert_eq!(ipam["allocated"], 1);
    assert_eq!(ipam["capacity"], 253);
    assert_eq!(ipam["allocations"][0]["address"], "10.32.3.2");

    let (code, body) = get("/status/ipam?format=text").await;
    assert_eq!(code, 200);
    assert!(body.contains(" Addresses: 1 of 253 allocated"), "{body}");
    let (code, body) = get("/status?format=text").await;
    assert_eq!(code, 200);
    assert!(body.contains("          Name: node-a"), "{body}");
    let (code, body) = get("/status/routes?format=text").await;
    assert_eq!(code, 200);
    assert!(body.starts_with("DESTINATION"), "{body}");

    let (code, body) = get("/status/nonsense").await;
    assert_eq!(code, 404);
    assert!(error_of(&body).contains("peers, connections, routes or ipam"));
    let (code, body) = get("/status?format=xml").await;
    assert_eq!(code, 400);
    assert!(error_of(&body).contains("unknown format"));
}

#[tokio::test]
async fn connect_and_forget_reach_the_driver() {
    let s = start(true).await;
    let (code, body) = call(
        "POST",
        format!("{}/connect", s.base),
        Some(r#"{"address": "10.1.2.3"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["address"], "10.1.2.3:6783");
    let (code, _) = call(
        "POST",
        format!("{}/forget", s.base),
        Some(r#"{"address": "10.1.2.3:7000"}"#),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        *s.targets.lock().expect("lock"),
        vec![
            (true, ([10, 1, 2, 3], 6783).into()),
            (false, ([10, 1, 2, 3], 7000).into())
        ]
    );

    for bad in [r#"{"address": "not a host!"}"#, r#"{"addr": "x"}"#, "nope"] {
        let (code, body) = call("POST", format!("{}/connect", s.base), Some(bad)).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(!error_of(&body).is_empty());
    }
    assert_eq!(s.targets.lock().expect("lock").len(), 2);
}
