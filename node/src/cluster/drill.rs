//! `/internal/drill/*`: fault drills an operator (or the chaos suite) runs against one node.
//!
//! Today: `PUT /internal/drill/clock` with `{"offset_ms": N}` jumps this node's wall clock to
//! the system time plus N, as an NTP step or a bad RTC would. Served only with `--clock-drills`
//! and, like every `/internal` route, only with the cluster secret. This module must not touch
//! replicated state: a drill changes what one node believes, never what the cluster agreed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::clock::SystemClock;

/// The largest jump a drill may ask for (one day either way).
const MAX_OFFSET_MS: i64 = 86_400_000;

/// Body and answer of `PUT /internal/drill/clock`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockOffset {
    pub offset_ms: i64,
}

/// The drill routes (without the secret gate, which the caller layers over all of `/internal`).
pub fn routes(clock: SystemClock) -> Router {
    Router::new().route("/internal/drill/clock", put(set_clock).get(get_clock)).with_state(clock)
}

async fn set_clock(State(clock): State<SystemClock>, Json(body): Json<ClockOffset>) -> Response {
    if body.offset_ms.unsigned_abs() > MAX_OFFSET_MS.unsigned_abs() {
        return (StatusCode::BAD_REQUEST, "offset_ms: at most one day either way").into_response();
    }
    let before = clock.offset_ms();
    clock.set_offset_ms(body.offset_ms);
    tracing::warn!(before_ms = before, after_ms = body.offset_ms, "drill: wall clock jumped");
    Json(body).into_response()
}

async fn get_clock(State(clock): State<SystemClock>) -> Json<ClockOffset> {
    Json(ClockOffset { offset_ms: clock.offset_ms() })
}
