//! A fake Kubernetes API server for the `k8s` tests, just enough for the agent: `GET
//! /api/v1/nodes` (a list, or with `watch=true` a stream of the watch events the test sends,
//! to every watcher), `PATCH /api/v1/nodes/{name}/status` (recorded; the first
//! `fail_patches` answered 500; conditions merged by `type` as a strategic merge does).

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::Router;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// One status patch as received.
#[derive(Debug, Clone)]
pub struct PatchSeen {
    /// The request path.
    pub path: String,
    /// Its content type.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Value,
}

/// The fake server's state.
#[derive(Debug)]
pub struct FakeApi {
    list: Mutex<Value>,
    events: broadcast::Sender<String>,
    watchers: AtomicUsize,
    patches: Mutex<Vec<PatchSeen>>,
    /// Patches still to answer with 500.
    pub fail_patches: AtomicU32,
}

/// Counts a watch stream while it is open.
struct Watching(Arc<FakeApi>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeApi {
    /// A server whose Nodes are those of `list` (a NodeList).
    pub fn new(list: Value) -> Arc<FakeApi> {
        Arc::new(FakeApi {
            list: Mutex::new(list),
            events: broadcast::channel(256).0,
            watchers: AtomicUsize::new(0),
            patches: Mutex::new(Vec::new()),
            fail_patches: AtomicU32::new(0),
        })
    }

    /// Serves on `listener`; returns the server's URL.
    pub fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) -> String {
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/api/v1/nodes", get(list_or_watch))
            .route("/api/v1/nodes/{name}/status", patch(patch_status))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// A kube-rs client of the server at `url` (plain HTTP, no credentials).
    pub fn client(url: &str) -> kube::Client {
        kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client")
    }

    /// Sends one watch line (`{"type": ..., "object": ...}`) to every open watch.
    pub fn send_raw(&self, line: String) {
        let _ = self.events.send(line);
    }

    /// Applies `node` to the list (`ADDED`/`MODIFIED` replace or add it, `DELETED` removes it)
    /// and sends the event to every open watch.
    pub fn apply(&self, kind: &str, mut node: Value) {
        node["kind"] = json!("Node");
        node["apiVersion"] = json!("v1");
        {
            let mut list = self.list.lock().expect("lock");
            let items = list["items"].as_array_mut().expect("items");
            items.retain(|n| n["metadata"]["name"] != node["metadata"]["name"]);
            if kind != "DELETED" {
                items.push(node.clone());
            }
        }
        self.send_raw(json!({"type": kind, "object": node}).to_string());
    }

    /// The Node named `name` as the server has it now.
    pub fn node(&self, name: &str) -> Option<Value> {
        let list = self.list.lock().expect("lock");
        list["items"]
            .as_array()
            .and_then(|items| items.iter().find(|n| n["metadata"]["name"] == name))
            .cloned()
    }

    /// The patches received so far.
    pub fn patches(&self) -> Vec<PatchSeen> {
        self.patches.lock().expect("lock").clone()
    }

    /// Waits up to `secs` for at least `n` patches.
    pub async fn wait_patches(&self, n: usize, secs: u64) -> Vec<PatchSeen> {
        for _ in 0..secs * 20 {
            let p = self.patches();
            if p.len() >= n {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fewer than {n} patches within {secs} s: {:?}",
            self.patches()
        );
    }

    /// Waits up to 20 s until `n` watches are open.
    pub async fn wait_watchers(&self, n: usize) {
        for _ in 0..400 {
            if self.watchers.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} watches open within 20 s");
    }
}

async fn list_or_watch(State(fake): State<Arc<FakeApi>>, RawQuery(query): RawQuery) -> Response {
    if query.unwrap_or_default().contains("watch=true") {
        let rx = fake.events.subscribe();
        fake.watchers.fetch_add(1, Ordering::SeqCst);
        let guard = Watching(fake.clone());
        let stream = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            loop {
                match rx.recv().await {
                    Ok(line) => {
                        let chunk = Ok::<_, Infallible>(Bytes::from(line + "\n"));
                        return Some((chunk, (rx, guard)));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    let list = fake.list.lock().expect("lock").clone();
    axum::Json(list).into_response()
}

async fn patch_status(
    State(fake): State<Arc<FakeApi>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.patches.lock().expect("lock").push(PatchSeen {
        path: format!("/api/v1/nodes/{name}/status"),
        content_type,
        body: patch.clone(),
    });
    if fake
        .fail_patches
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "etcdserver: request timed out",
            "reason": "InternalError", "code": 500});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(status)).into_response();
    }
    let mut list = fake.list.lock().expect("lock");
    let Some(node) = list["items"].as_array_mut().and_then(|items| {
        items
            .iter_mut()
            .find(|n| n["metadata"]["name"] == name.as_str())
    }) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !node["status"]["conditions"].is_array() {
        node["status"]["conditions"] = json!([]);
    }
    let conditions = node["status"]["conditions"]
        .as_array_mut()
        .expect("conditions");
    for new in patch["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match conditions.iter_mut().find(|c| c["type"] == new["type"]) {
            Some(old) => {
                for (k, v) in new.as_object().expect("object") {
                    old[k] = v.clone();
                }
            }
            None => conditions.push(new.clone()),
        }
    }
    let mut node = node.clone();
    node["kind"] = json!("Node");
    node["apiVersion"] = json!("v1");
    axum::Json(node).into_response()
}
