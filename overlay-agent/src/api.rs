//! The local HTTP API on `--api`: health, readiness, status, and pod address allocation for
//! the CNI plugin (the bodies are in [`overlay_proto::api`]).
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once the node holds a block and the data path is up, else 503 |
//! | `GET /status` | 200 [`Status`](crate::status::Status) JSON |
//! | `GET /status/{peers,connections,routes,ipam}` | 200 the view's JSON ([`crate::status`]) |
//! | `POST /connect` with [`TargetRequest`] | 200 [`TargetResponse`]: dial that address too |
//! | `POST /forget` with [`TargetRequest`] | 200 [`TargetResponse`]: stop dialing it |
//! | `POST /ipam/allocations` | 200 [`Allocation`] (same address again for the same key) |
//! | `GET /ipam/allocations/{container_id}/{ifname}` | 200 [`Allocation`], 404 when none |
//! | `DELETE /ipam/allocations/{container_id}/{ifname}` | 204 whether or not one was held |
//! | `GET /ipam/allocations` | 200 [`AllocationList`] (every address held, for CNI GC) |
//! | `POST /trace` | 200 [`TraceResult`](crate::trace::TraceResult) for a [`TraceRequest`](crate::trace::TraceRequest) |
//!
//! Status answers are JSON, or with `?format=text` the text `overlay-agent status` prints.
//! IPAM calls answer 503 while the node has no block, 400 for a malformed request, 507 when
//! the block is full; every error body is an [`ApiError`]. An allocation is persisted before
//! it is answered.

use crate::control::{ControlHandle, Readiness};
use crate::ipam_store::{Held, IpamError, IpamStore};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipnet::Ipv4Net;
use overlay_proto::api::{
    allocation_key, AllocateRequest, Allocation, AllocationList, ApiError, HeldAllocation,
};
#[cfg(doc)]
use overlay_proto::api::{TargetRequest, TargetResponse};
use overlay_proto::ipam::node_address;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Longest wait for the control plane to answer a status request.
const STATUS_WAIT: Duration = Duration::from_secs(2);
/// Largest request body accepted.
const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The control-plane driver.
    pub control: ControlHandle,
    /// Pod address allocations.
    pub ipam: Arc<IpamStore>,
    /// `/readyz`.
    pub ready: Readiness,
    /// The overlay range (in allocations).
    pub cluster: Ipv4Net,
    /// The overlay MTU (in allocations).
    pub mtu: u32,
    /// Runs `POST /trace` (none: the endpoint answers 503).
    pub trace: Option<crate::trace::Tracer>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(views::status))
        .route("/status/{view}", get(views::view))
        .route("/connect", post(views::connect))
        .route("/forget", post(views::forget))
        .route("/trace", post(trace))
        .route("/ipam/allocations", post(allocate).get(list))
        .route(
            "/ipam/allocations/{container_id}/{ifname}",
            get(get_allocation).delete(release),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_routes(listener, router(state), shutdown).await
}

/// Serves `routes` on `listener` until `shutdown` completes, letting requests under way end.
pub async fn serve_routes(
    listener: TcpListener,
    routes: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error answer: a status code and an [`ApiError`] body.
#[derive(Debug)]
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<IpamError> for Failure {
    fn from(e: IpamError) -> Self {
        let code = match e {
            IpamError::NoBlock => StatusCode::SERVICE_UNAVAILABLE,
            IpamError::Exhausted(_) => StatusCode::INSUFFICIENT_STORAGE,
            IpamError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(code, e.to_string())
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<ApiState>) -> (StatusCode, &'static str) {
    if s.ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no subnet claimed or data path not configured yet\n",
        )
    }
}

async fn trace(
    State(s): State<ApiState>,
    body: Result<Json<crate::trace::TraceRequest>, JsonRejection>,
) -> Result<Json<crate::trace::TraceResult>, Failure> {
    let Json(req) = body.map_err(|e| Failure(StatusCode::BAD_REQUEST, e.body_text()))?;
    crate::trace::api(s.trace.as_ref(), &s.control, req)
        .await
        .map(Json)
        .map_err(|(code, msg)| {
            Failure(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                msg,
            )
        })
}

async fn not_found() -> Failure {
    Failure(StatusCode::NOT_FOUND, "no such endpoint".into())
}

fn allocation(s: &ApiState, held: Held) -> Allocation {
    Allocation {
        address: Ipv4Net::new(held.address, held.block.prefix_len())
            .unwrap_or_else(|_| Ipv4Net::from(held.address)),
        gateway: node_address(held.block),
        cluster: s.cluster,
        mtu: s.mtu,
    }
}

/// Runs a (blocking, fsyncing) store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IpamError> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(Failure::from)
}

async fn allocate(
    State(s): State<ApiState>,
    body: Result<Json<AllocateRequest>, JsonRejection>,
) -> Result<Json<Allocation>, Failure> {
    let Json(req) = body.map_err(|e| Failure(StatusCode::BAD_REQUEST, e.body_text()))?;
    let key = req
        .key()
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))?;
    let ipam = s.ipam.clone();
    let held = blocking(move || ipam.allocate(&key)).await?;
    tracing::info!(key = %req.container_id, ifname = %req.ifname, address = %held.address, "pod address allocated");
    Ok(Json(allocation(&s, held)))
}

async fn list(State(s): State<ApiState>) -> Result<Json<AllocationList>, Failure> {
    let ipam = s.ipam.clone();
    let (block, held) = blocking(move || ipam.list()).await?;
    let allocations = held
        .into_iter()
        .filter_map(|(key, address)| HeldAllocation::from_key(&key, address))
        .collect();
    Ok(Json(AllocationList { block, allocations }))
}

async fn get_allocation(
    State(s): State<ApiState>,
    Path((container_id, ifname)): Path<(String, String)>,
) -> Result<Json<Allocation>, Failure> {
    let key = allocation_key(&container_id, &ifname)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))?;
    let ipam = s.ipam.clone();
    match blocking(move || ipam.get(&key)).await? {
        Some(held) => Ok(Json(allocation(&s, held))),
        None => Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no address held by {container_id}/{ifname}"),
        )),
    }
}

async fn release(
    State(s): State<ApiState>,
    Path((container_id, ifname)): Path<(String, String)>,
) -> Result<StatusCode, Failure> {
    let key = allocation_key(&container_id, &ifname)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))?;
    let ipam = s.ipam.clone();
    if let Some(address) = blocking(move || ipam.release(&key)).await? {
        tracing::info!(key = %container_id, %ifname, %address, "pod address released");
    }
    Ok(StatusCode::NO_CONTENT)
}

mod views;

#[cfg(test)]
mod tests;
