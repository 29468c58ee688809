//! `GET /status` and its views, and the dial-target controls `POST /connect`, `POST /forget`.
//!
//! Every status answer is JSON unless the request says `?format=text` (or accepts only
//! `text/plain`): then it is the text `overlay-agent status` prints.

use super::{blocking, ApiState, Failure, STATUS_WAIT};
use crate::config::{self, PeerAddr};
use crate::status::{self, connections, ipam, routes, Status};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use overlay_proto::api::{HeldAllocation, TargetRequest, TargetResponse};
use serde::{Deserialize, Serialize};

/// The query string of status requests.
#[derive(Debug, Deserialize)]
pub(super) struct FormatQuery {
    format: Option<String>,
}

/// How to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
}

fn format(query: &FormatQuery, headers: &HeaderMap) -> Result<Format, Failure> {
    match query.format.as_deref() {
        Some("json") => return Ok(Format::Json),
        Some("text") => return Ok(Format::Text),
        Some(other) => {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("unknown format {other:?}: use json or text"),
            ))
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let text_only = accept.contains("text/plain") && !accept.contains("json");
    Ok(if text_only {
        Format::Text
    } else {
        Format::Json
    })
}

fn answer<T: Serialize>(format: Format, value: &T, text: impl FnOnce(&T) -> String) -> Response {
    match format {
        Format::Json => Json(value).into_response(),
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text(value),
        )
            .into_response(),
    }
}

async fn snapshot(s: &ApiState) -> Result<Status, Failure> {
    s.control.status(STATUS_WAIT).await.ok_or_else(|| {
        Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the control plane did not answer".into(),
        )
    })
}

/// `GET /status`.
pub(super) async fn status(
    State(s): State<ApiState>,
    Query(q): Query<FormatQuery>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let format = format(&q, &headers)?;
    let status = snapshot(&s).await?;
    Ok(answer(format, &status, status::render))
}

/// `GET /status/{view}`: `peers`, `connections`, `routes` or `ipam`.
pub(super) async fn view(
    State(s): State<ApiState>,
    Path(view): Path<String>,
    Query(q): Query<FormatQuery>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let format = format(&q, &headers)?;
    let status = snapshot(&s).await?;
    Ok(match view.as_str() {
        "peers" => answer(format, &status.peers, |p| status::render_peers(p)),
        "connections" => answer(format, &connections::connections(&status), |c| {
            connections::render(c)
        }),
        "routes" => answer(format, &routes::routes(&status), |r| routes::render(r)),
        "ipam" => {
            let store = s.ipam.clone();
            let held = if status.subnet.is_some() {
                blocking(move || store.list()).await.map_or_else(
                    |_| Vec::new(),
                    |(_, held)| {
                        held.into_iter()
                            .filter_map(|(key, addr)| HeldAllocation::from_key(&key, addr))
                            .collect()
                    },
                )
            } else {
                Vec::new()
            };
            answer(format, &ipam::ipam(&status, held), ipam::render)
        }
        other => {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("no status view {other:?}: use peers, connections, routes or ipam"),
            ))
        }
    })
}

async fn resolve(
    body: Result<Json<TargetRequest>, JsonRejection>,
) -> Result<std::net::SocketAddr, Failure> {
    let Json(req) = body.map_err(|e| Failure(StatusCode::BAD_REQUEST, e.body_text()))?;
    let peer: PeerAddr = config::parse_peer(&req.address)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("{:?}: {e}", req.address)))?;
    config::resolve_peer(&peer)
        .await
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))
}

fn driver_gone() -> Failure {
    Failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "the control plane is stopping".into(),
    )
}

/// `POST /connect`: dial this address too (kept until forgotten or the agent stops).
pub(super) async fn connect(
    State(s): State<ApiState>,
    body: Result<Json<TargetRequest>, JsonRejection>,
) -> Result<Json<TargetResponse>, Failure> {
    let address = resolve(body).await?;
    if !s.control.add_target(address).await {
        return Err(driver_gone());
    }
    tracing::info!(%address, "target added through the API");
    Ok(Json(TargetResponse { address }))
}

/// `POST /forget`: stop dialing this address on its own account (a peer that gossip says is
/// there is still dialed; an established connection is not closed).
pub(super) async fn forget(
    State(s): State<ApiState>,
    body: Result<Json<TargetRequest>, JsonRejection>,
) -> Result<Json<TargetResponse>, Failure> {
    let address = resolve(body).await?;
    if !s.control.remove_target(address).await {
        return Err(driver_gone());
    }
    tracing::info!(%address, "target forgotten through the API");
    Ok(Json(TargetResponse { address }))
}
