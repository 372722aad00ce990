//! Authentication: who is calling, from the key in the request.
//!
//! Accepted: `Authorization: Bearer <key>`, `Authorization: ApiKey <key>`,
//! `Authorization: Basic base64(<key>:)` and `X-Api-Key: <key>`. A key in the query string is
//! refused (it would land in proxy and access logs). Keys are looked up by their SHA-256, so
//! the comparison is on a hash the caller cannot steer byte by byte. This module never logs a
//! key or a header value.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::clock::Clock;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;

use raftcron_client::ErrorCode;

use crate::ids::TenantId;
use crate::metrics::AuthFailure;
use crate::model::apikey::{self, ApiKeyRecord, Scope};
use crate::model::audit::Actor;
use crate::state::read;

/// Query parameters that look like a key; their presence is a 400.
const KEY_QUERY_PARAMS: [&str; 6] = ["api_key", "apikey", "key", "token", "access_token", "x-api-key"];

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKeyRecord,
    /// The client's address (after trusted proxies).
    pub client_ip: IpAddr,
}

impl Caller {
    /// 403 unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.has(scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::AccessDenied,
                format!("API key does not have access to this resource: it lacks the {} scope", scope.as_str()),
            ))
        }
    }

    /// Who this caller is, for the audit trail.
    pub fn actor(&self) -> Actor {
        Actor {
            key_id: Some(self.key.id),
            prefix: self.key.prefix.clone(),
            tenant: self.key.tenant.clone(),
            client_ip: Some(self.client_ip.to_string()),
        }
    }

    /// The tenant a request acts in: the key's own, or (`cluster:admin` only) the one asked for.
    pub fn tenant_for(&self, asked: Option<&str>) -> Result<TenantId, ApiError> {
        match asked {
            None => Ok(self.key.tenant.clone()),
            Some(t) if t == self.key.tenant.0 => Ok(self.key.tenant.clone()),
            Some(t) => {
                self.require(Scope::ClusterAdmin)?;
                crate::model::tenant::check_id(t).map_err(ApiError::validation)?;
                Ok(TenantId(t.to_string()))
            }
        }
    }
}

/// Extracts the one key a request presents, or explains why there is none.
pub fn presented_key(headers: &HeaderMap, query: Option<&str>) -> Result<String, ApiError> {
    if let Some(q) = query {
        for pair in q.split('&') {
            let name = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
            if KEY_QUERY_PARAMS.contains(&name.as_str()) {
                return Err(ApiError::bad_request(
                    "API keys are not accepted in the query string; send them in the Authorization or X-Api-Key header",
                ));
            }
        }
    }
    let mut found: Vec<String> = Vec::new();
    for value in headers.get_all(header::AUTHORIZATION) {
        let v = value.to_str().map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        found.push(parse_authorization(v)?);
    }
    for value in headers.get_all("x-api-key") {
        let v = value.to_str().map_err(|_| ApiError::unauthenticated("malformed X-Api-Key header"))?;
        let v = v.trim();
        if v.is_empty() {
            return Err(ApiError::unauthenticated("empty X-Api-Key header"));
        }
        found.push(v.to_string());
    }
    found.dedup();
    match found.len() {
        0 => Err(ApiError::unauthenticated("API key authentication is required")),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::bad_request("the request carries more than one different API key")),
    }
}

fn parse_authorization(v: &str) -> Result<String, ApiError> {
    let (scheme, rest) = v.split_once(' ').ok_or_else(|| {
        ApiError::unauthenticated(
            "malformed Authorization header: expected \"Bearer <key>\", \"ApiKey <key>\" or \"Basic ...\"",
        )
    })?;
    let token = rest.trim();
    if token.is_empty() {
        return Err(ApiError::unauthenticated("empty credentials in the Authorization header"));
    }
    match scheme {
        "Bearer" | "ApiKey" => Ok(token.to_string()),
        "Basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|_| ApiError::unauthenticated("malformed Basic credentials: not base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| ApiError::unauthenticated("malformed Basic credentials: not UTF-8"))?;
            let (user, _password) = text
                .split_once(':')
                .ok_or_else(|| ApiError::unauthenticated("malformed Basic credentials: expected \"<key>:\""))?;
            if user.is_empty() {
                return Err(ApiError::unauthenticated("malformed Basic credentials: the key goes in the user name"));
            }
            Ok(user.to_string())
        }
        _ => Err(ApiError::unauthenticated("unsupported Authorization scheme: use Bearer, ApiKey or Basic")),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(a)| a.ip());
        let client_ip = state.guard.client_ip(peer, &parts.headers);
        match authenticate(parts, state, client_ip) {
            Ok(caller) => {
                state.guard.admit(&caller, &state.cluster)?;
                Ok(caller)
            }
            Err(Refused { error, reason }) => {
                if let Some(reason) = reason {
                    state.metrics.api.auth_failure(reason);
                    tracing::info!(reason = reason.as_str(), client_ip = %client_ip, "authentication failed");
                }
                match error.code {
                    ErrorCode::AuthenticationRequired => Err(state.guard.failed(client_ip, error)),
                    _ => Err(error),
                }
            }
        }
    }
}

/// Why [`authenticate`] refused: the answer, and the metric's reason when it is about the
/// credentials (not a storage failure).
struct Refused {
    error: ApiError,
    reason: Option<AuthFailure>,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused { error, reason: None }
    }
}

fn refused(reason: AuthFailure, error: ApiError) -> Refused {
    Refused { error, reason: Some(reason) }
}

/// Finds the key a request presents and checks it may be used now, from here.
fn authenticate(parts: &Parts, state: &AppState, client_ip: IpAddr) -> Result<Caller, Refused> {
    let token = presented_key(&parts.headers, parts.uri.query()).map_err(|e| {
        let none = !parts.headers.contains_key(header::AUTHORIZATION) && !parts.headers.contains_key("x-api-key");
        let reason = if none && e.code == ErrorCode::AuthenticationRequired {
            AuthFailure::Missing
        } else {
            AuthFailure::Malformed
        };
        refused(reason, e)
    })?;
    if apikey::check_shape(&token).is_err() {
        return Err(refused(AuthFailure::Invalid, ApiError::unauthenticated("invalid API key")));
    }
    let hash = apikey::hash(&token);
    let Some(key) = read::key_by_hash(&state.cluster.store, &hash).map_err(ApiError::from)? else {
        return Err(refused(AuthFailure::Invalid, ApiError::unauthenticated("invalid API key")));
    };
    if key.expired(state.cluster.clock().now_ms()) {
        return Err(refused(AuthFailure::Expired, ApiError::unauthenticated("API key expired")));
    }
    if !state.guard.allowed_from(&key, client_ip) {
        return Err(refused(
            AuthFailure::IpNotAllowed,
            ApiError::new(
                ErrorCode::AccessDenied,
                format!("API key may not be used from {client_ip} (its allowed_cidrs do not include it)"),
            ),
        ));
    }
    Ok(Caller { key, client_ip })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn every_scheme_yields_the_key() {
        let key = "rcn_example";
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        for h in [
            headers(&[("authorization", &format!("Bearer {key}"))]),
            headers(&[("authorization", &format!("ApiKey {key}"))]),
            headers(&[("authorization", &format!("Basic {basic}"))]),
            headers(&[("x-api-key", key)]),
            headers(&[("x-api-key", key), ("authorization", &format!("Bearer {key}"))]),
        ] {
            assert_eq!(presented_key(&h, None).unwrap(), key);
        }
    }

    #[test]
    fn malformed_credentials_are_refused() {
        let cases: Vec<HeaderMap> = vec![
            headers(&[]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("authorization", "bearer abc")]),
            headers(&[("authorization", "Basic !!!")]),
            headers(&[("authorization", "Basic Zm9v")]),
            headers(&[("authorization", "Digest abc")]),
            headers(&[("x-api-key", "")]),
        ];
        for h in cases {
            let e = presented_key(&h, None).unwrap_err();
            assert_eq!(e.code, raftcron_client::ErrorCode::AuthenticationRequired, "{h:?}");
        }
        let two = headers(&[("x-api-key", "a"), ("authorization", "Bearer b")]);
        assert_eq!(presented_key(&two, None).unwrap_err().code, raftcron_client::ErrorCode::BadRequest);
        let q = presented_key(&headers(&[("x-api-key", "a")]), Some("page=1&api_key=x")).unwrap_err();
        assert_eq!(q.code, raftcron_client::ErrorCode::BadRequest);
    }
}
