//! Jobs: the stored record, its validation and partial updates.
//!
//! Validation turns the wire request into a [`JobSpec`] whose every field is within the limits
//! of the jobs API reference; a [`JobSpec`] that exists is valid. It reports every problem at
//! once, each naming its field. It must not read the clock or the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use raftcron_client::{CreateJob, UpdateJob};

use crate::crypto::{CryptoError, Keyring};
use crate::ids::{JobId, TenantId};
use crate::model::schedule::Schedule;
use crate::model::secret::{field_aad, header_field, Secret};
use zeroize::Zeroizing;

pub const NAME_MAX_CHARS: usize = 100;
pub const URL_MAX_BYTES: usize = 2048;
pub const HEADERS_MAX_BYTES: usize = 8 * 1024;
pub const HEADERS_MAX_COUNT: usize = 64;
pub const BODY_MAX_BYTES: usize = 100 * 1024;
pub const TIMEOUT_RANGE: (u32, u32) = (1, 120);
pub const TIMEOUT_DEFAULT: u32 = 30;
pub const RETRIES_RANGE: (u32, u32) = (0, 10);
pub const RETRIES_DEFAULT: u32 = 3;
pub const RETRY_DELAY_RANGE: (u32, u32) = (10, 3600);
pub const RETRY_DELAY_DEFAULT: u32 = 60;
pub const NOTIFY_AFTER_RANGE: (u32, u32) = (1, 10);
pub const NOTIFY_AFTER_DEFAULT: u32 = 1;
pub const DEADLINE_RANGE: (u32, u32) = (10, 86_400);
pub const DEADLINE_DEFAULT: u32 = 300;
pub const FOLLOW_REDIRECTS_RANGE: (u32, u32) = (0, 5);
pub const FOLLOW_REDIRECTS_DEFAULT: u32 = 0;

/// Whether a slot may start while the job's previous run is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    /// A slot due while the previous run is in flight is recorded as skipped.
    Forbid,
}

impl ConcurrencyPolicy {
    pub fn parse(s: &str) -> Option<ConcurrencyPolicy> {
        match s {
            "allow" => Some(ConcurrencyPolicy::Allow),
            "forbid" => Some(ConcurrencyPolicy::Forbid),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyPolicy::Allow => "allow",
            ConcurrencyPolicy::Forbid => "forbid",
        }
    }
}

/// What happens to a slot whose sender died between sending and recording the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Delivery {
    /// Re-sent once by the next owner, with the same Idempotency-Key.
    #[default]
    AtLeastOnce,
    /// Recorded as `unknown` and not re-sent.
    AtMostOnce,
}

impl Delivery {
    pub fn parse(s: &str) -> Option<Delivery> {
        match s {
            "at_least_once" => Some(Delivery::AtLeastOnce),
            "at_most_once" => Some(Delivery::AtMostOnce),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at_least_once",
            Delivery::AtMostOnce => "at_most_once",
        }
    }
}

/// Header names raftcron sets itself or that would break the request if a job set them.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "idempotency-key",
    "user-agent",
];

/// The HTTP methods a job may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl HttpMethod {
    pub fn parse(s: &str) -> Option<HttpMethod> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Some(HttpMethod::Get),
            "POST" => Some(HttpMethod::Post),
            "PUT" => Some(HttpMethod::Put),
            "PATCH" => Some(HttpMethod::Patch),
            "DELETE" => Some(HttpMethod::Delete),
            "HEAD" => Some(HttpMethod::Head),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Head => "HEAD",
        }
    }

    fn allows_body(self) -> bool {
        !matches!(self, HttpMethod::Get | HttpMethod::Head)
    }
}

/// Everything a user sets on a job. Constructed only through validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub url: String,
    pub method: HttpMethod,
    pub cron_expression: String,
    pub timezone: String,
    /// Header names and values, in name order. Values are secrets, sealed before they are
    /// stored (see [`Secret`]): never log them.
    pub headers: Vec<(String, Secret)>,
    /// Sealed like header values.
    pub body: Option<Secret>,
    pub timeout_seconds: u32,
    pub max_retries: u32,
    pub retry_delay_seconds: u32,
    pub is_active: bool,
    pub notify_on_failure: bool,
    pub notify_after_failures: u32,
    pub starting_deadline_seconds: u32,
    pub concurrency_policy: ConcurrencyPolicy,
    pub delivery: Delivery,
    /// How many redirects one attempt follows (each hop re-checked by the SSRF guard); 0: none.
    pub follow_redirects: u32,
}

/// A validated partial update: `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub method: Option<HttpMethod>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    pub headers: Option<Vec<(String, Secret)>>,
    /// `Some(None)` clears the body.
    pub body: Option<Option<Secret>>,
    pub timeout_seconds: Option<u32>,
    pub max_retries: Option<u32>,
    pub retry_delay_seconds: Option<u32>,
    pub is_active: Option<bool>,
    pub notify_on_failure: Option<bool>,
    pub notify_after_failures: Option<u32>,
    pub starting_deadline_seconds: Option<u32>,
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    pub delivery: Option<Delivery>,
    pub follow_redirects: Option<u32>,
}

impl JobPatch {
    /// The names of the fields it changes (for the audit trail; never values).
    pub fn fields(&self) -> Vec<&'static str> {
        let present = [
            ("name", self.name.is_some()),
            ("url", self.url.is_some()),
            ("method", self.method.is_some()),
            ("cron_expression", self.cron_expression.is_some()),
            ("timezone", self.timezone.is_some()),
            ("headers", self.headers.is_some()),
            ("body", self.body.is_some()),
            ("timeout_seconds", self.timeout_seconds.is_some()),
            ("max_retries", self.max_retries.is_some()),
            ("retry_delay_seconds", self.retry_delay_seconds.is_some()),
            ("is_active", self.is_active.is_some()),
            ("notify_on_failure", self.notify_on_failure.is_some()),
            ("notify_after_failures", self.notify_after_failures.is_some()),
            ("starting_deadline_seconds", self.starting_deadline_seconds.is_some()),
            ("concurrency_policy", self.concurrency_policy.is_some()),
            ("delivery", self.delivery.is_some()),
            ("follow_redirects", self.follow_redirects.is_some()),
        ];
        present.into_iter().filter(|(_, p)| *p).map(|(n, _)| n).collect()
    }
}

/// A job's header values and body: `(headers, body)`.
pub type SealedSecrets = (Vec<(String, Secret)>, Option<Secret>);

/// A job as the state machine stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub tenant: TenantId,
    pub spec: JobSpec,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One field's problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Every problem found in a request, in field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push(FieldError { field, message: message.into() });
    }

    fn range(&mut self, field: &'static str, v: Option<u32>, (lo, hi): (u32, u32), default: u32) -> u32 {
        match v {
            Some(v) if v < lo || v > hi => {
                self.add(field, format!("must be between {lo} and {hi}, got {v}"));
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}

impl JobSpec {
    /// Validates a create request, filling in defaults.
    pub fn from_create(req: CreateJob) -> Result<JobSpec, ValidationErrors> {
        let mut p = Problems::default();
        let name = check_name(&mut p, req.name);
        let url = check_url(&mut p, req.url);
        let method = check_method(&mut p, &req.method).unwrap_or(HttpMethod::Get);
        let timezone = req.timezone.unwrap_or_else(|| "UTC".to_string());
        check_schedule(&mut p, &req.cron_expression, &timezone);
        let headers = check_headers(&mut p, req.headers.unwrap_or_default());
        let body = check_body(&mut p, req.body, method);
        let spec = JobSpec {
            name,
            url,
            method,
            cron_expression: req.cron_expression.trim().to_string(),
            timezone,
            headers,
            body,
            timeout_seconds: p.range("timeout_seconds", req.timeout_seconds, TIMEOUT_RANGE, TIMEOUT_DEFAULT),
            max_retries: p.range("max_retries", req.max_retries, RETRIES_RANGE, RETRIES_DEFAULT),
            retry_delay_seconds: p.range(
                "retry_delay_seconds",
                req.retry_delay_seconds,
                RETRY_DELAY_RANGE,
                RETRY_DELAY_DEFAULT,
            ),
            is_active: req.is_active.unwrap_or(true),
            notify_on_failure: req.notify_on_failure.unwrap_or(true),
            notify_after_failures: p.range(
                "notify_after_failures",
                req.notify_after_failures,
                NOTIFY_AFTER_RANGE,
                NOTIFY_AFTER_DEFAULT,
            ),
            starting_deadline_seconds: p.range(
                "starting_deadline_seconds",
                req.starting_deadline_seconds,
                DEADLINE_RANGE,
                DEADLINE_DEFAULT,
            ),
            concurrency_policy: req
                .concurrency_policy
                .as_deref()
                .map_or(ConcurrencyPolicy::Allow, |v| check_policy(&mut p, v).unwrap_or_default()),
            delivery: req
                .delivery
                .as_deref()
                .map_or(Delivery::AtLeastOnce, |v| check_delivery(&mut p, v).unwrap_or_default()),
            follow_redirects: p.range(
                "follow_redirects",
                req.follow_redirects,
                FOLLOW_REDIRECTS_RANGE,
                FOLLOW_REDIRECTS_DEFAULT,
            ),
        };
        p.finish(spec)
    }

    /// Validates an update against the current spec and returns the patch to propose.
    /// The merged result is checked as a whole (a new zone must suit the current expression).
    pub fn validate_update(&self, req: UpdateJob) -> Result<JobPatch, ValidationErrors> {
        let mut p = Problems::default();
        let mut patch = JobPatch {
            name: req.name.map(|n| check_name(&mut p, n)),
            url: req.url.map(|u| check_url(&mut p, u)),
            method: match req.method {
                Some(m) => check_method(&mut p, &m),
                None => None,
            },
            ..JobPatch::default()
        };
        if req.cron_expression.is_some() || req.timezone.is_some() {
            let expr = req.cron_expression.as_deref().unwrap_or(&self.cron_expression);
            let tz = req.timezone.as_deref().unwrap_or(&self.timezone);
            check_schedule(&mut p, expr, tz);
            patch.cron_expression = req.cron_expression.map(|e| e.trim().to_string());
            patch.timezone = req.timezone;
        }
        patch.headers = req.headers.map(|h| check_headers(&mut p, h));
        let method = patch.method.unwrap_or(self.method);
        match req.body {
            Some(b) => patch.body = Some(check_body(&mut p, Some(b), method)),
            None if self.body.is_some() && !method.allows_body() => {
                p.add("body", format!("{} requests carry no body; clear it with \"body\": \"\"", method.as_str()))
            }
            None => {}
        }
        patch.timeout_seconds =
            req.timeout_seconds.map(|v| p.range("timeout_seconds", Some(v), TIMEOUT_RANGE, TIMEOUT_DEFAULT));
        patch.max_retries = req.max_retries.map(|v| p.range("max_retries", Some(v), RETRIES_RANGE, RETRIES_DEFAULT));
        patch.retry_delay_seconds = req
            .retry_delay_seconds
            .map(|v| p.range("retry_delay_seconds", Some(v), RETRY_DELAY_RANGE, RETRY_DELAY_DEFAULT));
        patch.is_active = req.is_active;
        patch.notify_on_failure = req.notify_on_failure;
        patch.notify_after_failures = req
            .notify_after_failures
            .map(|v| p.range("notify_after_failures", Some(v), NOTIFY_AFTER_RANGE, NOTIFY_AFTER_DEFAULT));
        patch.starting_deadline_seconds = req
            .starting_deadline_seconds
            .map(|v| p.range("starting_deadline_seconds", Some(v), DEADLINE_RANGE, DEADLINE_DEFAULT));
        patch.concurrency_policy = match req.concurrency_policy.as_deref() {
            Some(v) => check_policy(&mut p, v),
            None => None,
        };
        patch.delivery = match req.delivery.as_deref() {
            Some(v) => check_delivery(&mut p, v),
            None => None,
        };
        patch.follow_redirects = req
            .follow_redirects
            .map(|v| p.range("follow_redirects", Some(v), FOLLOW_REDIRECTS_RANGE, FOLLOW_REDIRECTS_DEFAULT));
        p.finish(patch)
    }

    /// Applies a validated patch. Deterministic: used by the state machine.
    pub fn apply(&mut self, patch: JobPatch) {
        let JobPatch {
            name,
            url,
            method,
            cron_expression,
            timezone,
            headers,
            body,
            timeout_seconds,
            max_retries,
            retry_delay_seconds,
            is_active,
            notify_on_failure,
            notify_after_failures,
            starting_deadline_seconds,
            concurrency_policy,
            delivery,
            follow_redirects,
        } = patch;
        set(&mut self.name, name);
        set(&mut self.url, url);
        set(&mut self.method, method);
        set(&mut self.cron_expression, cron_expression);
        set(&mut self.timezone, timezone);
        set(&mut self.headers, headers);
        set(&mut self.body, body);
        set(&mut self.timeout_seconds, timeout_seconds);
        set(&mut self.max_retries, max_retries);
        set(&mut self.retry_delay_seconds, retry_delay_seconds);
        set(&mut self.is_active, is_active);
        set(&mut self.notify_on_failure, notify_on_failure);
        set(&mut self.notify_after_failures, notify_after_failures);
        set(&mut self.starting_deadline_seconds, starting_deadline_seconds);
        set(&mut self.concurrency_policy, concurrency_policy);
        set(&mut self.delivery, delivery);
        set(&mut self.follow_redirects, follow_redirects);
    }

    /// The parsed schedule. A stored spec was validated, so this fails only if a later release
    /// tightened the syntax; callers treat that as "never fires".
    pub fn schedule(&self) -> Option<Schedule> {
        Schedule::parse(&self.cron_expression, &self.timezone).ok()
    }

    /// The starting deadline in milliseconds.
    pub fn deadline_ms(&self) -> i64 {
        i64::from(self.starting_deadline_seconds) * 1000
    }

    /// Seals every plaintext secret (header values, body) for job `id` of `tenant`.
    pub fn seal(&mut self, keyring: &Keyring, tenant: &TenantId, id: JobId) -> Result<(), CryptoError> {
        for (name, value) in &mut self.headers {
            let aad = field_aad(tenant, id, &header_field(name));
            *value = value.clone().sealed(keyring, &aad)?;
        }
        if let Some(body) = self.body.take() {
            self.body = Some(body.sealed(keyring, &field_aad(tenant, id, "body"))?);
        }
        Ok(())
    }

    /// Whether any secret is plaintext or sealed under a key other than `keyring`'s current one.
    pub fn has_stale_secrets(&self, keyring: &Keyring) -> bool {
        self.headers.iter().any(|(_, v)| v.stale(keyring)) || self.body.as_ref().is_some_and(|b| b.stale(keyring))
    }

    /// The secrets sealed again under the current key: `(headers, body)`.
    pub fn resealed_secrets(
        &self,
        keyring: &Keyring,
        tenant: &TenantId,
        id: JobId,
    ) -> Result<SealedSecrets, CryptoError> {
        let headers = self
            .headers
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.resealed(keyring, &field_aad(tenant, id, &header_field(n)))?)))
            .collect::<Result<Vec<_>, CryptoError>>()?;
        let body = match &self.body {
            Some(b) => Some(b.resealed(keyring, &field_aad(tenant, id, "body"))?),
            None => None,
        };
        Ok((headers, body))
    }

    /// The plaintext body (for API answers and sending).
    pub fn open_body(
        &self,
        keyring: Option<&Keyring>,
        tenant: &TenantId,
        id: JobId,
    ) -> Result<Option<Zeroizing<String>>, String> {
        self.body.as_ref().map(|b| b.open(keyring, &field_aad(tenant, id, "body"))).transpose()
    }

    /// The plaintext header values (for sending only).
    pub fn open_headers(
        &self,
        keyring: Option<&Keyring>,
        tenant: &TenantId,
        id: JobId,
    ) -> Result<Vec<(String, Zeroizing<String>)>, String> {
        self.headers
            .iter()
            .map(|(n, v)| {
                v.open(keyring, &field_aad(tenant, id, &header_field(n)))
                    .map(|p| (n.clone(), p))
                    .map_err(|e| format!("header {n}: {e}"))
            })
            .collect()
    }

    /// Header names with masked values, for API answers.
    pub fn masked_headers(&self) -> BTreeMap<String, String> {
        self.headers.iter().map(|(k, _)| (k.clone(), raftcron_client::MASKED_VALUE.to_string())).collect()
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn check_name(p: &mut Problems, name: String) -> String {
    let trimmed = name.trim().to_string();
    let chars = trimmed.chars().count();
    if chars == 0 {
        p.add("name", "must not be empty");
    } else if chars > NAME_MAX_CHARS {
        p.add("name", format!("must be at most {NAME_MAX_CHARS} characters, got {chars}"));
    } else if trimmed.chars().any(char::is_control) {
        p.add("name", "must not contain control characters");
    }
    trimmed
}

fn check_url(p: &mut Problems, raw: String) -> String {
    let raw = raw.trim().to_string();
    if raw.len() > URL_MAX_BYTES {
        p.add("url", format!("must be at most {URL_MAX_BYTES} bytes"));
        return raw;
    }
    match url::Url::parse(&raw) {
        Err(e) => p.add("url", format!("is not a valid URL: {e}")),
        Ok(u) => {
            if u.scheme() != "http" && u.scheme() != "https" {
                p.add("url", format!("scheme must be http or https, got {:?}", u.scheme()));
            } else if u.host_str().is_none_or(str::is_empty) {
                p.add("url", "must have a host");
            } else if !u.username().is_empty() || u.password().is_some() {
                p.add("url", "must not carry user info (user:password@); use a header instead");
            } else if u.fragment().is_some() {
                p.add("url", "must not have a #fragment");
            }
        }
    }
    raw
}

fn check_method(p: &mut Problems, m: &str) -> Option<HttpMethod> {
    let parsed = HttpMethod::parse(m.trim());
    if parsed.is_none() {
        p.add("method", format!("must be one of GET, POST, PUT, PATCH, DELETE, HEAD, got {m:?}"));
    }
    parsed
}

fn check_schedule(p: &mut Problems, expr: &str, tz: &str) {
    if let Err(e) = Schedule::parse(expr.trim(), tz) {
        let field = e.request_field();
        let text = e.to_string();
        let message = text.strip_prefix(&format!("{field}: ")).unwrap_or(&text).to_string();
        p.add(field, message);
    }
}

fn check_headers(p: &mut Problems, headers: BTreeMap<String, String>) -> Vec<(String, Secret)> {
    if headers.len() > HEADERS_MAX_COUNT {
        p.add("headers", format!("at most {HEADERS_MAX_COUNT} headers, got {}", headers.len()));
    }
    let total: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > HEADERS_MAX_BYTES {
        p.add("headers", format!("must total at most {HEADERS_MAX_BYTES} bytes, got {total}"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in &headers {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            p.add("headers", format!("{name:?} is not a valid header name"));
        } else if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-raftcron-") {
            p.add("headers", format!("{name:?} is set by raftcron and cannot be overridden"));
        } else if !seen.insert(lower) {
            p.add("headers", format!("{name:?} is given twice (names are case-insensitive)"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            p.add("headers", format!("the value of {name:?} must not contain CR, LF or NUL"));
        }
    }
    headers.into_iter().map(|(k, v)| (k, Secret::Plain(v))).collect()
}

fn check_policy(p: &mut Problems, v: &str) -> Option<ConcurrencyPolicy> {
    let parsed = ConcurrencyPolicy::parse(v);
    if parsed.is_none() {
        p.add("concurrency_policy", format!("must be \"allow\" or \"forbid\", got {v:?}"));
    }
    parsed
}

fn check_delivery(p: &mut Problems, v: &str) -> Option<Delivery> {
    let parsed = Delivery::parse(v);
    if parsed.is_none() {
        p.add("delivery", format!("must be \"at_least_once\" or \"at_most_once\", got {v:?}"));
    }
    parsed
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_body(p: &mut Problems, body: Option<String>, method: HttpMethod) -> Option<Secret> {
    let body = body.filter(|b| !b.is_empty())?;
    if body.len() > BODY_MAX_BYTES {
        p.add("body", format!("must be at most {BODY_MAX_BYTES} bytes, got {}", body.len()));
    } else if !method.allows_body() {
        p.add("body", format!("{} requests carry no body", method.as_str()));
    }
    Some(Secret::Plain(body))
}

#[cfg(test)]
impl JobSpec {
    /// A quiet test job: GET `url` every second, 5 s timeout, no retries, no notifications.
    pub(crate) fn example(url: &str) -> JobSpec {
        JobSpec {
            name: "test job".to_string(),
            url: url.to_string(),
            method: HttpMethod::Get,
            cron_expression: "* * * * * *".to_string(),
            timezone: "UTC".to_string(),
            headers: Vec::new(),
            body: None,
            timeout_seconds: 5,
            max_retries: 0,
            retry_delay_seconds: 10,
            is_active: true,
            notify_on_failure: false,
            notify_after_failures: 1,
            starting_deadline_seconds: DEADLINE_DEFAULT,
            concurrency_policy: ConcurrencyPolicy::Allow,
            delivery: Delivery::AtLeastOnce,
            follow_redirects: 0,
        }
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
