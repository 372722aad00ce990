//! The public HTTP API: routes, authentication, request parsing and the single error mapping.
//!
//! Handlers validate input, call `cluster` for writes and read barriers, and read the applied
//! state through `state::read`. Nothing imports this module; it must not reach into Raft or the
//! store directly.
//!
//! Every public route is registered in one place, [`router`], through `utoipa_axum::routes!`
//! from its handler's `#[utoipa::path]`: the axum router and the OpenAPI document
//! (`GET /api/v1/openapi.json`, [`openapi()`]) come from the same list and cannot drift. Every
//! request passes [`observe::observe`] (request id, span, metrics).

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod dashboard;
pub mod error;
pub mod guard;
pub mod jobs;
pub mod keys;
pub mod netaddr;
pub mod observe;
pub mod openapi;
pub mod ratelimit;
pub mod tenants;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::Router;
use raftcron_client::ErrorCode;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use crate::cluster::Cluster;
use error::ApiError;

/// Largest public request body: a job's 100 KB body, 8 KB of headers and JSON overhead.
pub const MAX_API_BODY: usize = 256 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub cluster: Cluster,
    pub allow_private_targets: bool,
    /// Client addresses, allowlists, rate limits and key-use tracking.
    pub guard: guard::Guard,
    /// Seals job secrets before they are proposed; opens bodies for answers.
    pub keyring: std::sync::Arc<crate::crypto::Keyring>,
    /// How far re-sealing after a master-key rotation has got (on the leader).
    pub reseal: crate::reseal::Progress,
    /// This node's metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
}

/// Default and largest page sizes of list routes.
pub const PAGE_SIZE_DEFAULT: u32 = 50;
pub const PAGE_SIZE_MAX: u32 = 500;

/// Checks `page` (1 or more) and `page_size` (1 to [`PAGE_SIZE_MAX`]); fills defaults.
pub fn check_page(page: Option<u32>, page_size: Option<u32>) -> Result<(u32, u32), ApiError> {
    let page = page.unwrap_or(1);
    let page_size = page_size.unwrap_or(PAGE_SIZE_DEFAULT);
    if page == 0 {
        return Err(ApiError::validation("page: must be 1 or more"));
    }
    if page_size == 0 || page_size > PAGE_SIZE_MAX {
        return Err(ApiError::validation(format!("page_size: must be between 1 and {PAGE_SIZE_MAX}")));
    }
    Ok((page, page_size))
}

/// `Json<T>` whose rejections use the API's error body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(ApiError::from(r as JsonRejection)),
        }
    }
}

/// Every public route with its OpenAPI operation: the one list of the public API.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .merge(jobs::routes())
        .merge(keys::routes())
        .merge(tenants::routes())
        .merge(audit::routes())
        .merge(backup::routes())
        .merge(cluster::routes())
        .merge(observe::routes())
        .merge(openapi::routes())
}

/// The OpenAPI document of the public API, as [`router`] registers it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = router().into_openapi();
    openapi::finish(&mut doc);
    doc
}

/// The public router (`/api/v1/*`, `/healthz`, `/readyz`, `/metrics`).
pub fn routes(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let (router, _) = router().split_for_parts();
    // The dashboard's static files are not part of the API description.
    router
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .layer(from_fn_with_state(metrics, observe::observe))
        .with_state(state)
}

async fn not_found() -> Response {
    ApiError::not_found("no such route").into_response()
}

async fn method_not_allowed() -> Response {
    let mut r = ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route").into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}
