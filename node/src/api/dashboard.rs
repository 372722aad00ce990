//! The web dashboard every node serves at `/`: one HTML page, its script, stylesheet and icon,
//! compiled into the binary (`node/assets/dashboard/`), so there is nothing to build or deploy.
//!
//! This module owns static assets and their headers only. It reads no state and takes no key:
//! the page signs in inside the browser and calls the public API like any other client, so
//! every scope check stays where it is. Invariants: no inline script or style and no request to
//! another origin (the Content-Security-Policy below forbids both, and the tests check the
//! assets); every answer carries the security headers, including 304s.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;

/// Only this origin, no inline code, no plugins, no framing, no form submissions (the sign-in
/// form is handled by the script; a submission would put the key in a URL), and DOM sinks that
/// take strings as code refused outright.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'";

/// Revalidate on every load (cheap: a 304 by `ETag`), so a rolling upgrade never mixes a new
/// page with an old script.
const CACHE_CONTROL: &str = "no-cache";

/// One embedded file and its validator.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// The hash of `body`, computed at compile time.
    hash: u64,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        Asset { body, content_type, hash: fnv1a(body) }
    }

    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

/// FNV-1a (64 bits): a cache validator, not a security hash.
const fn fnv1a(mut bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    while let [first, rest @ ..] = bytes {
        h = (h ^ *first as u64).wrapping_mul(0x0100_0000_01b3);
        bytes = rest;
    }
    h
}

static INDEX: Asset = Asset::new(include_bytes!("../../assets/dashboard/index.html"), "text/html; charset=utf-8");
static SCRIPT: Asset = Asset::new(include_bytes!("../../assets/dashboard/app.js"), "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(include_bytes!("../../assets/dashboard/style.css"), "text/css; charset=utf-8");
static ICON: Asset = Asset::new(include_bytes!("../../assets/dashboard/icon.svg"), "image/svg+xml");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route("/ui/app.js", get(|h: HeaderMap| async move { serve(&SCRIPT, &h) }))
        .route("/ui/style.css", get(|h: HeaderMap| async move { serve(&STYLE, &h) }))
        .route("/ui/icon.svg", get(|h: HeaderMap| async move { serve(&ICON, &h) }))
}

/// Whether `If-None-Match` names `etag` (or `*`); weak validators match too (RFC 9110 13.1.2).
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        },
    )
}

/// The headers of every dashboard answer.
pub fn security_headers() -> [(HeaderName, HeaderValue); 8] {
    [
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
        (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin")),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL)),
    ]
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let mut headers = HeaderMap::new();
    headers.extend(security_headers());
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if not_modified(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &Asset) -> &'static str {
        std::str::from_utf8(a.body).expect("assets are UTF-8")
    }

    #[test]
    fn html_has_no_inline_code_and_loads_only_local_files() {
        let html = text(&INDEX);
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or_default();
            assert!(open.contains("src=\"/ui/"), "inline or foreign script: <script{open}>");
            assert!(tag.split('>').nth(1).is_some_and(|rest| rest.starts_with("</script")), "script with a body");
        }
        assert!(!html.contains("<style") && !html.contains("javascript:"));
        // Attribute names of every tag: no event handlers, no inline style.
        for tag in html.split('<').skip(1).filter_map(|t| t.split('>').next()) {
            for attr in tag.split_whitespace().skip(1).map(|a| a.split('=').next().unwrap_or_default()) {
                assert!(!attr.starts_with("on") && attr != "style", "inline code in <{tag}>");
            }
        }
    }

    #[test]
    fn assets_name_no_other_origin() {
        for a in [&INDEX, &SCRIPT, &STYLE, &ICON] {
            let t = text(a).replace("http://www.w3.org/2000/svg", "");
            for needle in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!t.contains(needle), "{needle} in an asset ({})", a.content_type);
            }
        }
    }

    #[test]
    fn script_keeps_the_key_in_session_storage_only() {
        let js = text(&SCRIPT);
        for banned in
            ["localStorage", "document.cookie", "innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "console."]
        {
            assert!(!js.contains(banned), "app.js uses {banned}");
        }
        assert!(js.contains("sessionStorage") && js.contains("history.replaceState"));
    }

    #[test]
    fn etags_validate() {
        let etag = &SCRIPT.etag();
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", W/{etag}")).expect("valid"));
        assert!(not_modified(&h, etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, etag));
        assert_ne!(INDEX.etag(), SCRIPT.etag());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
