//! Prometheus metrics on `--metrics`: `GET /metrics` answers the OpenMetrics text format.
//!
//! Nothing is counted for metrics on the way: every scrape asks the control-plane driver for
//! a [`Status`] (whose data-path counters are the per-thread relaxed atomics summed at that
//! moment) and reads the pod-address usage from the [`IpamStore`], then [`encode`]s that
//! snapshot into a fresh registry. The data path pays nothing for being scraped, and the label
//! sets are bounded by the peers in the topology. Every family is listed in
//! docs/operations.md ("Metrics").
//!
//! # Layout
//! - this file: the HTTP side (router, handler, server with graceful stop).
//! - [`families`]: the snapshot and its encoding, one function per group of families.

mod families;

pub use families::{encode, IpamUsage, Snapshot};

use crate::control::ControlHandle;
use crate::ipam_store::IpamStore;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The content type of the answer (what [`prometheus_client::encoding::text`] writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest wait for the control plane to answer a scrape.
const STATUS_WAIT: Duration = Duration::from_secs(2);

/// What a scrape reads.
#[derive(Debug, Clone)]
pub struct MetricsState {
    /// The control-plane driver (status snapshots).
    pub control: ControlHandle,
    /// Pod address allocations.
    pub ipam: Arc<IpamStore>,
}

/// The metrics routes: `GET /metrics`, 404 for anything else.
pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only GET /metrics here\n") })
        .with_state(state)
}

/// Serves metrics on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: MetricsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::api::serve_routes(listener, router(state), shutdown).await
}

/// A running metrics server; [`MetricsServer::stop`] ends it.
#[derive(Debug)]
pub struct MetricsServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    /// Binds `addr` (a failure names `--metrics`) and starts serving.
    pub async fn start(addr: SocketAddr, state: MetricsState) -> anyhow::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr} (--metrics): {e}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        Ok(MetricsServer { stop, task })
    }

    /// Stops serving; waits up to `wait` for open scrapes to finish.
    pub async fn stop(self, wait: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(wait, self.task).await.is_err() {
            tracing::warn!("the metrics server did not stop within {wait:?}");
        }
    }
}

async fn metrics(State(s): State<MetricsState>) -> Response {
    let Some(status) = s.control.status(STATUS_WAIT).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the control plane did not answer\n",
        )
            .into_response();
    };
    let (allocated, capacity) = s.ipam.usage();
    let snapshot = Snapshot {
        status,
        ipam: IpamUsage {
            allocated: allocated as u64,
            capacity: capacity as u64,
        },
    };
    match encode(&snapshot) {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
