//! What every public request passes through on its way in and out: its request id, the tracing
//! span that carries it, and the API metrics; and `GET /metrics`, which refreshes the gauges of
//! Raft state and disk use and renders every series.
//!
//! The request id is the client's `X-Request-Id` when it is sane (1 to 128 characters of
//! `[A-Za-z0-9._:-]`), else a fresh UUID; it goes back in the `X-Request-Id` response header and
//! is a field of the `request` span, so every log line of the request carries it. This module
//! never logs a header value or a key. Metric labels are the matched route template (never the
//! raw path), one of a fixed set of methods, and the status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::metrics::Metrics;

/// The request id header, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = crate::request_id::MAX_LEN;
/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

pub use crate::request_id::sane as sane_request_id;

/// The `method` label: the method, or `other` for methods outside the fixed set.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware: request id, span, metrics.
pub async fn observe(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = match req.headers().get(&REQUEST_ID).and_then(sane_request_id) {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, |m| m.as_str()).to_owned();
    let method = method_label(req.method());
    // At the error level, so the span (and the id) is on the request's lines whatever the filter
    // lets through: a span below the filter's level would be dropped with its fields.
    let span = tracing::error_span!("request", request_id = %id, method, route = %route);
    let mut response = crate::request_id::scope(id.clone(), next.run(req).instrument(span.clone())).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics.api.request(&route, method, status, elapsed.as_secs_f64());
    if status == 429 {
        metrics.api.rate_limited.inc();
    }
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed.as_millis() as u64, "answered"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// Every metric of this node in the Prometheus text format (no key needed).
#[utoipa::path(
    get,
    path = "/metrics", operation_id = "metrics",
    tag = "probes",
    responses((status = 200, description = "Every series in the Prometheus text format (docs/observability.md)",
        body = String, content_type = "text/plain"))
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let lease = crate::state::firing::lease(&state.cluster.store)
        .ok()
        .flatten()
        .unwrap_or(crate::scheduler::SchedulerConfig::default().lease);
    state.metrics.set_raft(&state.cluster.raft.view().gauges(lease));
    let store = state.cluster.store.clone();
    if let Ok(bytes) = tokio::task::spawn_blocking(move || store.disk_usage_bytes()).await {
        state.metrics.set_storage_size(bytes);
    }
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_request_ids_are_taken() {
        for ok in ["abc", "0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908", "a.b:c_d-e", &"x".repeat(128)] {
            assert_eq!(sane_request_id(&HeaderValue::from_str(ok).unwrap()), Some(ok));
        }
        for bad in ["", "a b", "a\"b", "<script>", "a/b", "é", &"x".repeat(129)] {
            let Ok(v) = HeaderValue::from_str(bad) else { continue };
            assert_eq!(sane_request_id(&v), None, "{bad:?}");
        }
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"PROPFIND").unwrap()), "other");
    }
}
