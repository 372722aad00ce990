//! The OpenAPI 3 description of the public API, served at `GET /api/v1/openapi.json`.
//!
//! The operations come from the handlers' `#[utoipa::path]` attributes as [`crate::api::router`]
//! registers them; the schemas from the wire types of `raftcron-client` (feature `openapi`).
//! This module adds what is common to every operation ([`finish`]): the three ways to present a
//! key (security schemes `bearer`, `basic` and `api_key`) on every operation outside the
//! `probes` tag, and the error answers every authenticated route can give, with the
//! [`raftcron_client::ErrorBody`] schema. It must not describe a route that the router does
//! not register: routes are added to the router through `routes!` only.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use raftcron_client::{ErrorBody, ErrorCode};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::observe::{MAX_REQUEST_ID_LEN, REQUEST_ID};
use crate::api::AppState;

/// The tag of the routes that need no key.
pub const PUBLIC_TAG: &str = "probes";

/// The document's fixed parts; the operations are added by the router.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "raftcron",
        description = "A highly available HTTP cron service. Every node serves the whole API; writes \
            are forwarded to the Raft leader. Reads are linearizable unless `?consistency=stale`. \
            Every answer carries `X-Request-Id` (the client's, when sane, else a fresh one). Every \
            non-2xx answer has the body `{\"error\": CODE, \"message\": ...}` (schema `ErrorBody`)."
    ),
    components(schemas(ErrorBody, ErrorCode, raftcron_client::Consistency)),
    tags(
        (name = "jobs", description = "Jobs: HTTP requests on a cron schedule"),
        (name = "runs", description = "The recorded occurrences of a job"),
        (name = "keys", description = "Scoped API keys"),
        (name = "tenants", description = "Namespaces of keys and jobs, with quotas (cluster:admin)"),
        (name = "audit", description = "The trail of changes (cluster:admin)"),
        (name = "cluster", description = "Membership, status and shard ownership"),
        (name = "probes", description = "Health, readiness, metrics and this document: no key needed"),
    )
)]
pub struct ApiDoc;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document (no key needed).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json", operation_id = "openapi",
    tag = "probes",
    responses((status = 200, description = "The OpenAPI 3 description of this API", body = Object))
)]
async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    // A pure function of the code: rendered once per process.
    let json = DOC.get_or_init(|| crate::api::openapi().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
}

/// The errors every operation that takes a key may answer, beyond its own.
const KEYED_ERRORS: [(u16, &str); 6] = [
    (400, "BAD_REQUEST: an API key in the query string, or two different keys"),
    (401, "AUTHENTICATION_REQUIRED: no key, or a malformed, unknown, expired or revoked key"),
    (403, "ACCESS_DENIED: the key lacks the scope, or its IP allowlist excludes the client"),
    (429, "RATE_LIMIT_EXCEEDED: the key's rate, or too many failed authentications; see Retry-After"),
    (500, "INTERNAL_ERROR: details are in the server log only"),
    (503, "NO_LEADER or UNAVAILABLE: retry shortly"),
];

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
}

fn keyed(op: &Operation) -> bool {
    !op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == PUBLIC_TAG))
}

/// The `X-Request-Id` every answer carries.
fn request_id_header() -> Header {
    let schema = ObjectBuilder::new().schema_type(Type::String).max_length(Some(MAX_REQUEST_ID_LEN));
    HeaderBuilder::new()
        .schema(schema)
        .description(Some("The request's id: the client's `X-Request-Id` when sane, else a fresh UUID"))
        .build()
}

/// Adds the security schemes, each keyed operation's security and its common error answers,
/// and `X-Request-Id` to every answer.
pub fn finish(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("`Authorization: Bearer <key>` (`Authorization: ApiKey <key>` is accepted too)"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Basic)
                .description(Some("The key as the user name, no password"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("X-Api-Key", "`X-Api-Key: <key>`"))),
    );
    let schemes = ["bearer", "basic", "api_key"];
    for item in doc.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for op in ops.into_iter().flatten() {
            if keyed(op) {
                op.security =
                    Some(schemes.iter().map(|s| SecurityRequirement::new(*s, Vec::<String>::new())).collect());
                for (status, description) in KEYED_ERRORS {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| error_response(description));
                }
            }
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(r) = response {
                    r.headers.insert(REQUEST_ID.as_str().to_string(), request_id_header());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    fn doc() -> Value {
        serde_json::to_value(crate::api::openapi()).unwrap()
    }

    fn refs(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.insert(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let d = doc();
        let mut all = BTreeSet::new();
        refs(&d, &mut all);
        assert!(all.len() > 20, "{all:?}");
        for r in all {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(d.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn the_document_lists_the_public_api() {
        let d = doc();
        assert!(d["openapi"].as_str().unwrap().starts_with("3."));
        let ops: BTreeSet<String> = d["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, item)| item.as_object().unwrap().keys().map(move |m| format!("{} {p}", m.to_uppercase())))
            .collect();
        // Spot checks only: the list itself is the router's (see `router_and_document_agree`).
        for op in [
            "GET /api/v1/jobs",
            "POST /api/v1/jobs",
            "PATCH /api/v1/jobs/{id}",
            "POST /api/v1/jobs/{id}/trigger",
            "GET /api/v1/jobs/{id}/runs",
            "DELETE /api/v1/keys/{id}",
            "GET /api/v1/tenants/{id}",
            "GET /api/v1/audit",
            "GET /api/v1/cluster/shards",
            "DELETE /api/v1/cluster/nodes/{id}",
            "GET /healthz",
            "GET /readyz",
            "GET /metrics",
            "GET /api/v1/openapi.json",
        ] {
            assert!(ops.contains(op), "{op} missing from {ops:?}");
        }
        let schemes = d["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["basic"]["scheme"], "basic");
        assert_eq!(schemes["api_key"]["name"], "X-Api-Key");
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = op["tags"].as_array().unwrap().iter().any(|t| t == super::PUBLIC_TAG);
                assert_eq!(op["security"].is_array(), !public, "{method} {path}");
                assert!(op["operationId"].is_string(), "{method} {path}");
                for (status, r) in op["responses"].as_object().unwrap() {
                    assert!(r["headers"]["x-request-id"].is_object(), "{method} {path} {status}");
                }
                if !public {
                    let e401 = &op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(e401, "#/components/schemas/ErrorBody", "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let d = doc();
        let mut seen = BTreeSet::new();
        for item in d["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap().to_string();
                assert!(seen.insert(id.clone()), "operationId {id} is used twice");
            }
        }
    }

    /// Routes reach the router only through `routes!`, which documents them: a route added
    /// with axum's own calls would be served without being listed.
    #[test]
    fn routes_are_registered_only_with_their_documentation() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("jobs.rs", include_str!("jobs.rs")),
            ("keys.rs", include_str!("keys.rs")),
            ("tenants.rs", include_str!("tenants.rs")),
            ("audit.rs", include_str!("audit.rs")),
            ("cluster.rs", include_str!("cluster.rs")),
            ("observe.rs", include_str!("observe.rs")),
            ("backup.rs", include_str!("backup.rs")),
        ];
        for (file, text) in sources {
            for needle in [".route(", "axum::routing", " Router::new()", "-> Router<"] {
                assert!(!text.contains(needle), "{file} registers a route outside routes!: {needle}");
            }
        }
    }
}
