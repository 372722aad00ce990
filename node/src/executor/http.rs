//! Sends one occurrence of a job: the request, its retries, and the outcome.
//!
//! Every attempt sends the job's method, URL, headers and body, plus
//! `Idempotency-Key: <fire id>` (the same on every retry and re-send), `X-Raftcron-Job-Id`,
//! `X-Raftcron-Scheduled-At` (RFC 3339, UTC), `X-Raftcron-Attempt` (1, 2, ...) and
//! `User-Agent: raftcron/<version>`. Each attempt, redirects included, is bounded by the job's
//! `timeout_seconds`.
//!
//! After the first attempt come at most `max_retries` retries, each `retry_delay_seconds` after
//! the previous attempt ended. Retries follow connection errors, timeouts, 5xx and 429; a
//! `Retry-After` in seconds on a 5xx or 429 shortens the delay (never beyond the job's delay).
//! No retry starts at or after [`Fire::retry_until_ms`] (the job's next slot, on the [`Clock`]
//! passed in). Delays are counted in [`Executor::with_delay_unit`] units (one second but in
//! tests). A 2xx answer is a success; any other answer is a failure naming the status.
//!
//! Redirects: the HTTP client never follows them itself. With `follow_redirects` at 0 (the
//! default) a 3xx is a failure like any other answer. Otherwise an attempt follows up to that
//! many 301, 302, 303, 307 and 308 answers with a `Location` by hand (see `next_hop`): the
//! Location is resolved against the current URL, each hop goes through the SSRF guard again, an
//! https-to-http downgrade is refused, 301/302/303 turn the request into a GET without body
//! (HEAD stays HEAD) and 307/308 keep the method and body. Every hop carries the same
//! Idempotency-Key and raftcron headers; the job's own headers go only to the origin of the job's
//! URL (another origin gets just `Content-Type` with a kept body), and the `Content-*` headers go
//! away with a dropped body. One redirect too many, or one that may not be followed, fails the run
//! at once (no retry) with the status of that answer. A retry starts again from the job's URL.
//!
//! The run keeps the first [`BODY_PREFIX_BYTES`] of the last response body at most, as UTF-8
//! (invalid sequences replaced).
//!
//! What does not depend on the instant (the job's URL through the SSRF guard, the raftcron
//! header values) is made ahead by [`Executor::prepare`], so that at a whole second, when every
//! job of a node's shards goes out at once, a fire's work is mostly the send itself. Secrets are
//! not part of it: the job's header values and body are opened per attempt.
//!
//! No proxy from the environment is used; the client connects through the SSRF-guarded resolver
//! unless private targets are allowed, and a URL the guard refuses fails the run at once (no
//! retry, no network traffic for IP literals and local names). Header values and bodies are
//! never logged.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use url::Url;

use crate::clock::{ms_to_utc, Clock};
use crate::crypto::Keyring;
use crate::executor::ssrf::{self, GuardedResolver, SsrfError};
use crate::metrics::Metrics;
use crate::model::job::{HttpMethod, JobRecord, JobSpec};
use crate::model::run::{RunRecord, RunStatus, BODY_PREFIX_BYTES};
use crate::model::slot::FireId;

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("raftcron/", env!("CARGO_PKG_VERSION"));

/// The outbound HTTP client of a node.
#[derive(Debug, Clone)]
pub struct Executor {
    client: reqwest::Client,
    allow_private: bool,
    /// Opens the job's sealed header values and body at the last moment.
    keyring: Option<std::sync::Arc<Keyring>>,
    /// What one second of `retry_delay_seconds` or `Retry-After` lasts (one second but in tests).
    delay_unit: Duration,
    metrics: Metrics,
}

/// One occurrence to send.
#[derive(Debug, Clone)]
pub struct Fire {
    pub job: JobRecord,
    pub fire_id: FireId,
    pub scheduled_at_ms: i64,
    /// No retry starts at or after this instant (the job's next slot).
    pub retry_until_ms: Option<i64>,
}

/// The part of a fire's requests that does not depend on the instant it is sent at: made ahead
/// of the slot (see [`Executor::prepare`]) so that the work at a whole second, when every job of
/// a node's shards is sent at once, is only the send. It holds no secret: the job's header values
/// and body are opened per attempt, at the last moment.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The job's URL through the SSRF guard, or why the guard refused it.
    target: Result<Url, String>,
    idempotency_key: HeaderValue,
    job_id: HeaderValue,
    scheduled_at: HeaderValue,
}

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static JOB_ID: HeaderName = HeaderName::from_static("x-raftcron-job-id");
static SCHEDULED_AT: HeaderName = HeaderName::from_static("x-raftcron-scheduled-at");
static ATTEMPT: HeaderName = HeaderName::from_static("x-raftcron-attempt");

/// A header value of text this module formats itself (ids, a timestamp): always visible ASCII.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl Executor {
    pub fn new(allow_private: bool, metrics: Metrics) -> Result<Executor, reqwest::Error> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(USER_AGENT);
        if !allow_private {
            b = b.dns_resolver(std::sync::Arc::new(GuardedResolver));
        }
        Ok(Executor { client: b.build()?, allow_private, keyring: None, delay_unit: Duration::from_secs(1), metrics })
    }

    /// Opens sealed secrets with `keyring`.
    pub fn with_keyring(mut self, keyring: std::sync::Arc<Keyring>) -> Executor {
        self.keyring = Some(keyring);
        self
    }

    /// Makes every second of retry delay (`retry_delay_seconds`, `Retry-After`) last `unit`
    /// instead; for tests. Timeouts are not scaled.
    pub fn with_delay_unit(mut self, unit: Duration) -> Executor {
        self.delay_unit = unit;
        self
    }

    /// What [`Executor::fire_while`] needs of `fire` that does not depend on the instant:
    /// the guarded URL and the raftcron headers.
    pub fn prepare(&self, fire: &Fire) -> Prepared {
        Prepared {
            // Counted as a refusal when an attempt finds it (`attempt`), not here: a prepared
            // slot may be let go unsent.
            target: ssrf::check_url(&fire.job.spec.url, self.allow_private).map_err(|e| format!("target refused: {e}")),
            idempotency_key: header_value(fire.fire_id.to_string()),
            job_id: header_value(fire.job.id.to_string()),
            scheduled_at: header_value(
                ms_to_utc(fire.scheduled_at_ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
        }
    }

    /// Sends `fire`, with its request parts made ahead by [`Executor::prepare`], retrying as the
    /// job allows, and returns the run to record. A retry starts only while `may_retry()` holds
    /// (the sender still holds its firing lease): a sender cut off from the cluster makes no new
    /// attempt once another node may have taken its slot over.
    pub async fn fire_while(
        &self,
        fire: &Fire,
        prepared: &Prepared,
        clock: &dyn Clock,
        node: u64,
        may_retry: &(dyn Fn() -> bool + Send + Sync),
    ) -> RunRecord {
        let spec = &fire.job.spec;
        let started = clock.now_ms();
        let mut attempt = 0u32;
        // Bounded: each pass makes one attempt, and there are at most `max_retries + 1`.
        let outcome = loop {
            attempt += 1;
            if attempt > 1 {
                self.metrics.executor.retries.inc();
            }
            let sent = std::time::Instant::now();
            let outcome = self.attempt(fire, prepared, attempt).await;
            self.metrics.executor.request_duration.observe(sent.elapsed().as_secs_f64());
            let Some(delay_seconds) = retry_delay_seconds(&outcome, spec) else { break outcome };
            if attempt > spec.max_retries {
                break outcome;
            }
            let delay = self.delay_unit.saturating_mul(delay_seconds);
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            if fire.retry_until_ms.is_some_and(|limit| clock.now_ms().saturating_add(delay_ms) >= limit) {
                break outcome;
            }
            tokio::time::sleep(delay).await;
            // The sleep may overshoot: check again, right before the retry starts.
            if fire.retry_until_ms.is_some_and(|limit| clock.now_ms() >= limit) {
                break outcome;
            }
            if !may_retry() {
                tracing::info!(fire_id = %fire.fire_id, attempt, "not retrying: this node no longer holds its firing lease");
                break outcome;
            }
        };
        let (status, http_status, error, body_prefix) = match outcome {
            Attempt::Done { http_status, body, .. } => {
                let ok = (200..300).contains(&http_status);
                let error = if ok {
                    None
                } else if (300..400).contains(&http_status) && spec.follow_redirects == 0 {
                    Some(format!("target answered HTTP {http_status} (redirects are not followed)"))
                } else if (300..400).contains(&http_status) {
                    Some(format!("target answered HTTP {http_status} (no redirect to follow)"))
                } else {
                    Some(format!("target answered HTTP {http_status}"))
                };
                (if ok { RunStatus::Succeeded } else { RunStatus::Failed }, Some(http_status), error, body)
            }
            Attempt::BadRedirect { http_status, error, body } => {
                (RunStatus::Failed, Some(http_status), Some(error), body)
            }
            Attempt::Transient(e) | Attempt::Refused(e) => (RunStatus::Failed, None, Some(e), None),
        };
        RunRecord {
            fire_id: fire.fire_id,
            scheduled_at_ms: fire.scheduled_at_ms,
            started_at_ms: Some(started),
            finished_at_ms: Some(clock.now_ms()),
            attempts: attempt,
            node: Some(node),
            status,
            http_status,
            error,
            body_prefix,
        }
    }

    /// One attempt: the request to the job's URL and the redirects it may follow.
    async fn attempt(&self, fire: &Fire, prepared: &Prepared, attempt: u32) -> Attempt {
        let spec = &fire.job.spec;
        let mut url = match &prepared.target {
            Ok(url) => url.clone(),
            Err(e) => {
                self.metrics.executor.ssrf_refusals.inc();
                return Attempt::Refused(e.clone());
            }
        };
        let origin = url.origin();
        let mut method = method_of(spec.method);
        // Opened per attempt and dropped (zeroized) with it.
        let keyring = self.keyring.as_deref();
        let (headers, mut body) = match (
            spec.open_headers(keyring, &fire.job.tenant, fire.job.id),
            spec.open_body(keyring, &fire.job.tenant, fire.job.id),
        ) {
            (Ok(h), Ok(b)) => (h, b),
            (Err(e), _) | (_, Err(e)) => return Attempt::Refused(format!("cannot open the job's secrets: {e}")),
        };
        let mut body_dropped = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(spec.timeout_seconds));
        let mut hops = 0u32;
        // Bounded: each pass sends one request, and a pass that does not return adds a hop, of
        // which there are at most `follow_redirects` (0-5).
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Attempt::Transient(format!("timed out after {} s", spec.timeout_seconds));
            }
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .timeout(remaining)
                .header(IDEMPOTENCY_KEY.clone(), prepared.idempotency_key.clone())
                .header(JOB_ID.clone(), prepared.job_id.clone())
                .header(SCHEDULED_AT.clone(), prepared.scheduled_at.clone())
                .header(ATTEMPT.clone(), HeaderValue::from(attempt));
            let same_origin = url.origin() == origin;
            for (name, value) in &headers {
                if forwards_header(name, same_origin, body_dropped) {
                    req = req.header(name.as_str(), value.as_str());
                }
            }
            if let Some(body) = &body {
                req = req.body(body.as_str().to_owned());
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    if ssrf_cause(&e).is_some() {
                        self.metrics.executor.ssrf_refusals.inc();
                    }
                    return classify_error(&e, spec.timeout_seconds);
                }
            };
            let http_status = resp.status().as_u16();
            let location = match resp.headers().get(reqwest::header::LOCATION) {
                Some(v) if spec.follow_redirects > 0 && is_redirect(http_status) => Some(v.as_bytes().to_vec()),
                _ => None,
            };
            let Some(location) = location else {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u32>().ok());
                let body = read_prefix(resp).await;
                return Attempt::Done { http_status, retry_after, body };
            };
            let hop = if hops >= spec.follow_redirects {
                Err(format!("too many redirects (limit {})", spec.follow_redirects))
            } else {
                std::str::from_utf8(&location).map_err(|_| "redirect Location is not valid UTF-8".to_string()).and_then(
                    |location| redirect_target(&url, location, http_status, &method, &|u| self.guard(u).map(|_| ())),
                )
            };
            match hop {
                Ok(hop) => {
                    hops += 1;
                    url = hop.url;
                    method = hop.method;
                    if !hop.keep_body {
                        body_dropped |= body.is_some() || hop.method_changed;
                        body = None;
                    }
                }
                Err(error) => {
                    let body = read_prefix(resp).await;
                    return Attempt::BadRedirect { http_status, error, body };
                }
            }
        }
    }
}

impl Executor {
    /// The SSRF guard on a URL (the job's, or a redirect's), counting refusals.
    fn guard(&self, url: &str) -> Result<Url, SsrfError> {
        ssrf::check_url(url, self.allow_private).inspect_err(|_| self.metrics.executor.ssrf_refusals.inc())
    }
}

fn method_of(m: HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Head => Method::HEAD,
    }
}

/// The statuses a job may follow: 301, 302, 303, 307 and 308.
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Where a redirect leads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    url: Url,
    method: Method,
    /// Whether the body (if any) is sent again.
    keep_body: bool,
    /// Whether the method changed (a 301, 302 or 303 to GET).
    method_changed: bool,
}

/// The request that follows a `status` answer with `location` to a `method` request for
/// `current`: 301, 302 and 303 become a GET without body (HEAD stays HEAD), 307 and 308 keep the
/// method and the body. Refuses other statuses, a Location that does not resolve against
/// `current`, and an https-to-http downgrade. Pure: the SSRF guard is [`redirect_target`]'s.
fn next_hop(current: &Url, location: &str, status: u16, method: &Method) -> Result<Hop, String> {
    let (next_method, keep_body) = match status {
        301..=303 if *method == Method::HEAD => (Method::HEAD, false),
        301..=303 => (Method::GET, false),
        307 | 308 => (method.clone(), true),
        _ => return Err(format!("HTTP {status} is not a redirect")),
    };
    let url = current.join(location.trim()).map_err(|e| format!("redirect to an invalid Location: {e}"))?;
    if current.scheme() == "https" && url.scheme() == "http" {
        return Err("redirect from https to http refused".to_string());
    }
    let method_changed = next_method != *method;
    Ok(Hop { url, method: next_method, keep_body, method_changed })
}

/// `next_hop`, then the SSRF guard (`guard`) on the new URL (the guarded resolver applies again
/// when the hop connects).
fn redirect_target(
    current: &Url,
    location: &str,
    status: u16,
    method: &Method,
    guard: &dyn Fn(&str) -> Result<(), SsrfError>,
) -> Result<Hop, String> {
    let hop = next_hop(current, location, status, method)?;
    guard(hop.url.as_str()).map_err(|e| format!("redirect target refused: {e}"))?;
    Ok(hop)
}

/// Whether a job header goes on a request: every header goes to the origin of the job's URL,
/// another origin gets only `Content-Type` (header values are secrets), and once a redirect
/// dropped the body, no `Content-*` header goes at all.
fn forwards_header(name: &str, same_origin: bool, body_dropped: bool) -> bool {
    let content = name.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("content-"));
    if body_dropped && content {
        return false;
    }
    same_origin || name.eq_ignore_ascii_case("content-type")
}

/// The outcome of one attempt.
enum Attempt {
    /// The target answered (any status).
    Done { http_status: u16, retry_after: Option<u32>, body: Option<String> },
    /// No answer, worth another try: connection error, timeout.
    Transient(String),
    /// Not sent, or refused for good: the SSRF guard said no, or the request cannot be built.
    Refused(String),
    /// The target answered with a redirect that may not be followed (too many, downgrade,
    /// refused by the SSRF guard, bad Location): not retried.
    BadRedirect { http_status: u16, error: String, body: Option<String> },
}

/// The delay, in seconds, before the next attempt, or `None` when the outcome is not retried.
fn retry_delay_seconds(outcome: &Attempt, spec: &JobSpec) -> Option<u32> {
    let delay = spec.retry_delay_seconds;
    match outcome {
        Attempt::Done { http_status, retry_after, .. } if *http_status == 429 || *http_status >= 500 => {
            Some(retry_after.map_or(delay, |s| s.min(delay)))
        }
        Attempt::Done { .. } | Attempt::Refused(_) | Attempt::BadRedirect { .. } => None,
        Attempt::Transient(_) => Some(delay),
    }
}

fn classify_error(e: &reqwest::Error, timeout_seconds: u32) -> Attempt {
    if let Some(refused) = ssrf_cause(e) {
        // The guarded resolver dropped every address of the host name.
        return Attempt::Refused(format!("target refused: {refused}"));
    }
    if e.is_builder() {
        return Attempt::Refused(format!("invalid request: {}", root_cause(e)));
    }
    if e.is_timeout() {
        return Attempt::Transient(format!("timed out after {timeout_seconds} s"));
    }
    if e.is_connect() {
        return Attempt::Transient(format!("connection failed: {}", root_cause(e)));
    }
    Attempt::Transient(format!("request failed: {}", root_cause(e)))
}

/// The SSRF guard's refusal somewhere in an error's chain of causes.
fn ssrf_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a SsrfError> {
    let mut cur = Some(e);
    // Bounded: error chains are finite, and no real one is deeper than a few links.
    for _ in 0..32 {
        let err = cur?;
        if let Some(refused) = err.downcast_ref::<SsrfError>() {
            return Some(refused);
        }
        cur = err.source();
    }
    None
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    for _ in 0..32 {
        match cur.source() {
            Some(next) => cur = next,
            None => break,
        }
    }
    cur.to_string()
}

/// Reads at most [`BODY_PREFIX_BYTES`] of the body (a read error or timeout ends it early).
async fn read_prefix(mut resp: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < BODY_PREFIX_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body_prefix(&buf)
}

/// The kept prefix of a body: UTF-8 (invalid sequences replaced), at most [`BODY_PREFIX_BYTES`]
/// bytes, cut at a character boundary.
fn body_prefix(bytes: &[u8]) -> Option<String> {
    let bytes = bytes.get(..BODY_PREFIX_BYTES).unwrap_or(bytes);
    if bytes.is_empty() {
        return None;
    }
    // Replacement characters take 3 bytes and may stand for 1: cut again after decoding.
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > BODY_PREFIX_BYTES {
        let cut = (0..=BODY_PREFIX_BYTES).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
    }
    Some(text)
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
