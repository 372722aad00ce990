//! Sends one occurrence of a job: the request, its retries, and the outcome.
//!
//! Every attempt carries `Idempotency-Key: <fire id>` (the same on every retry and re-send),
//! `X-Raftcron-Job-Id`, `X-Raftcron-Scheduled-At`, `X-Raftcron-Attempt` and
//! `User-Agent: raftcron/<version>`. Retries follow connection errors, timeouts, 5xx and 429
//! (honouring `Retry-After` up to the job's delay), and never run into the job's next slot.
//! Redirects are not followed; no proxy from the environment is used; the client connects
//! through the SSRF-guarded resolver unless private targets are allowed. Header values and
//! bodies are never logged.

use std::time::Duration;

use crate::clock::{ms_to_utc, Clock};
use crate::executor::ssrf::{self, GuardedResolver};
use crate::model::job::{HttpMethod, JobRecord};
use crate::model::run::{RunRecord, RunStatus, BODY_PREFIX_BYTES};
use crate::model::slot::FireId;

/// The outbound HTTP client of a node.
#[derive(Debug, Clone)]
pub struct Executor {
    client: reqwest::Client,
    allow_private: bool,
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

impl Executor {
    pub fn new(allow_private: bool) -> Result<Executor, reqwest::Error> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("raftcron/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            b = b.dns_resolver(std::sync::Arc::new(GuardedResolver));
        }
        Ok(Executor { client: b.build()?, allow_private })
    }

    /// Sends `fire`, retrying as the job allows, and returns the run to record.
    pub async fn fire(&self, fire: &Fire, clock: &dyn Clock, node: u64) -> RunRecord {
        let spec = &fire.job.spec;
        let started = clock.now_ms();
        let mut attempt = 0u32;
        let (status, http_status, error, body_prefix) = loop {
            attempt += 1;
            let outcome = self.attempt(fire, attempt).await;
            let retry_after = match &outcome {
                Attempt::Done { http_status, .. } if (200..300).contains(http_status) => None,
                Attempt::Done { http_status, retry_after, .. } if *http_status == 429 || *http_status >= 500 => {
                    Some(retry_after.unwrap_or(spec.retry_delay_seconds).min(spec.retry_delay_seconds))
                }
                Attempt::Done { .. } => None,
                Attempt::Transient(_) => Some(spec.retry_delay_seconds),
                Attempt::Refused(_) => None,
            };
            let next_start = clock.now_ms() + i64::from(retry_after.unwrap_or(0)) * 1000;
            let may_retry = retry_after.is_some()
                && attempt <= spec.max_retries
                && fire.retry_until_ms.is_none_or(|limit| next_start < limit);
            if !may_retry {
                break match outcome {
                    Attempt::Done { http_status, body, .. } => {
                        let ok = (200..300).contains(&http_status);
                        let err = (!ok).then(|| format!("target answered HTTP {http_status}"));
                        (if ok { RunStatus::Succeeded } else { RunStatus::Failed }, Some(http_status), err, body)
                    }
                    Attempt::Transient(e) | Attempt::Refused(e) => (RunStatus::Failed, None, Some(e), None),
                };
            }
            tokio::time::sleep(Duration::from_secs(u64::from(retry_after.unwrap_or(0)))).await;
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

    async fn attempt(&self, fire: &Fire, attempt: u32) -> Attempt {
        let spec = &fire.job.spec;
        if let Err(e) = ssrf::check_url(&spec.url, self.allow_private) {
            return Attempt::Refused(format!("target refused: {e}"));
        }
        let method = match spec.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
            HttpMethod::Head => reqwest::Method::HEAD,
        };
        let mut req = self
            .client
            .request(method, &spec.url)
            .timeout(Duration::from_secs(u64::from(spec.timeout_seconds)))
            .header("Idempotency-Key", fire.fire_id.to_string())
            .header("X-Raftcron-Job-Id", fire.job.id.to_string())
            .header(
                "X-Raftcron-Scheduled-At",
                ms_to_utc(fire.scheduled_at_ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
            .header("X-Raftcron-Attempt", attempt.to_string());
        for (name, value) in &spec.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &spec.body {
            req = req.body(body.clone());
        }
        match req.send().await {
            Ok(resp) => {
                let http_status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u32>().ok());
                let body = read_prefix(resp).await;
                Attempt::Done { http_status, retry_after, body }
            }
            Err(e) if e.is_timeout() => Attempt::Transient(format!("timed out after {} s", spec.timeout_seconds)),
            Err(e) if e.is_connect() => Attempt::Transient(format!("connection failed: {}", root_cause(&e))),
            Err(e) => Attempt::Transient(format!("request failed: {}", root_cause(&e))),
        }
    }
}

enum Attempt {
    Done { http_status: u16, retry_after: Option<u32>, body: Option<String> },
    Transient(String),
    Refused(String),
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn read_prefix(mut resp: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < BODY_PREFIX_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    if buf.is_empty() {
        return None;
    }
    buf.truncate(BODY_PREFIX_BYTES);
    Some(String::from_utf8_lossy(&buf).into_owned())
}
