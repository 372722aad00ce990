#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use uuid::Uuid;

use super::*;
use crate::clock::{ManualClock, SystemClock};
use crate::ids::{JobId, TenantId};

/// 2026-03-29T01:30:00Z in milliseconds.
const AT_MS: i64 = 1_774_747_800_000;
/// The delay unit of most tests: a job delay of 10 "seconds" lasts 100 ms.
const UNIT: Duration = Duration::from_millis(10);

/// One scripted answer of the test server.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    delay: Option<Duration>,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: None, delay: None }
    }

    fn retry_after(self, value: &str) -> Reply {
        self.header("retry-after", value)
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = Some(body.into());
        self
    }

    fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

/// One request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name} header"))
    }
}

struct Shared {
    script: Vec<Reply>,
    seen: Mutex<Vec<Seen>>,
}

/// A server on 127.0.0.1 that records every request and answers the n-th with `script[n]`
/// (the last reply once the script is used up). `{base}` in a reply's header values stands for
/// the server's own `http://127.0.0.1:<port>`.
struct Target {
    port: u16,
    shared: Arc<Shared>,
}

impl Target {
    async fn start(mut script: Vec<Reply>) -> Target {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for reply in &mut script {
            for (_, value) in &mut reply.headers {
                *value = value.replace("{base}", &format!("http://127.0.0.1:{port}"));
            }
        }
        let shared = Arc::new(Shared { script, seen: Mutex::new(Vec::new()) });
        let app = Router::new().fallback(answer).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Target { port, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let reply = {
        let mut seen = shared.seen.lock().unwrap();
        let n = seen.len();
        seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
            headers: parts.headers,
            body,
            at,
        });
        shared.script[n.min(shared.script.len() - 1)].clone()
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut resp = Response::new(Body::from(reply.body.unwrap_or_default()));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
    }
    resp
}

fn spec(url: String) -> JobSpec {
    JobSpec { cron_expression: "* * * * *".to_string(), ..JobSpec::example(&url) }
}

fn fire_of(spec: JobSpec) -> Fire {
    let id = JobId(Uuid::parse_str("0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908").unwrap());
    let job = JobRecord { id, tenant: TenantId::default_tenant(), spec, created_at_ms: 0, updated_at_ms: 0 };
    Fire { job, fire_id: FireId::scheduled(id, AT_MS), scheduled_at_ms: AT_MS, retry_until_ms: None }
}

/// [`super::redirect_target`] with the plain SSRF guard.
fn redirect_target(
    current: &Url,
    location: &str,
    status: u16,
    method: &Method,
    allow_private: bool,
) -> Result<Hop, String> {
    super::redirect_target(current, location, status, method, &|u| ssrf::check_url(u, allow_private).map(|_| ()))
}

fn executor() -> Executor {
    Executor::new(true, Metrics::new().unwrap()).unwrap().with_delay_unit(UNIT)
}

async fn run(executor: &Executor, fire: &Fire) -> RunRecord {
    // Every test's worst case is a few seconds; this bound turns a hang into a failure.
    tokio::time::timeout(
        Duration::from_secs(30),
        executor.fire_while(fire, &executor.prepare(fire), &SystemClock::default(), 7, &|| true),
    )
    .await
    .expect("the executor hung")
}

#[tokio::test]
async fn success_on_the_first_attempt_sends_the_job_and_the_raftcron_headers() {
    let target = Target::start(vec![Reply::status(200).body("all good")]).await;
    let mut s = spec(target.url("/hook?x=1"));
    s.method = HttpMethod::Post;
    s.headers =
        vec![("Content-Type".to_string(), "application/json".into()), ("X-Custom".to_string(), "custom value".into())];
    s.body = Some(r#"{"hello":"world"}"#.into());
    let fire = fire_of(s);

    let before = SystemClock::default().now_ms();
    let rec = run(&executor(), &fire).await;
    let after = SystemClock::default().now_ms();

    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.http_status, Some(200));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.error, None);
    assert_eq!(rec.body_prefix.as_deref(), Some("all good"));
    assert_eq!(rec.fire_id, fire.fire_id);
    assert_eq!(rec.scheduled_at_ms, AT_MS);
    assert_eq!(rec.node, Some(7));
    let (started, finished) = (rec.started_at_ms.unwrap(), rec.finished_at_ms.unwrap());
    assert!(before <= started && started <= finished && finished <= after);

    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook?x=1");
    assert_eq!(req.body, br#"{"hello":"world"}"#);
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("x-custom"), "custom value");
    assert_eq!(req.header("idempotency-key"), fire.fire_id.to_string());
    assert_eq!(req.header("idempotency-key"), "860140b07f1f09e3dc782636a04ac2b7");
    assert_eq!(req.header("x-raftcron-job-id"), "0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908");
    assert_eq!(req.header("x-raftcron-scheduled-at"), "2026-03-29T01:30:00.000Z");
    let parsed = chrono::DateTime::parse_from_rfc3339(req.header("x-raftcron-scheduled-at")).unwrap();
    assert_eq!(parsed.timestamp_millis(), AT_MS);
    assert_eq!(req.header("x-raftcron-attempt"), "1");
    assert_eq!(req.header("user-agent"), format!("raftcron/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(req.headers.get_all("user-agent").iter().count(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_idempotency_key() {
    let target = Target::start(vec![Reply::status(500), Reply::status(500), Reply::status(200).body("third")]).await;
    let mut s = spec(target.url("/"));
    s.max_retries = 3;
    let fire = fire_of(s);

    let rec = run(&executor(), &fire).await;

    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.http_status, Some(200));
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.error, None);
    assert_eq!(rec.body_prefix.as_deref(), Some("third"));
    let seen = target.seen();
    assert_eq!(seen.len(), 3);
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(req.header("idempotency-key"), fire.fire_id.to_string());
        assert_eq!(req.header("x-raftcron-attempt"), (i + 1).to_string());
        assert_eq!(req.header("x-raftcron-scheduled-at"), "2026-03-29T01:30:00.000Z");
    }
    // The job's delay (10 units) separates the attempts.
    for pair in seen.windows(2) {
        assert!(pair[1].at - pair[0].at >= UNIT * 10, "{:?}", pair[1].at - pair[0].at);
    }
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let target = Target::start(vec![Reply::status(503)]).await;
    let mut s = spec(target.url("/"));
    s.max_retries = 1;

    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, Some(503));
    assert_eq!(rec.attempts, 2);
    assert!(rec.error.as_deref().unwrap().contains("503"), "{:?}", rec.error);
    assert_eq!(target.seen().len(), 2);
}

#[tokio::test]
async fn a_sender_that_lost_its_lease_makes_no_new_attempt() {
    let target = Target::start(vec![Reply::status(503)]).await;
    let mut s = spec(target.url("/"));
    s.max_retries = 3;
    let held = std::sync::atomic::AtomicBool::new(true);
    // The lease runs out during the first attempt's wait.
    let may_retry = || held.swap(false, std::sync::atomic::Ordering::SeqCst);
    let fire = fire_of(s);
    let rec = tokio::time::timeout(
        Duration::from_secs(30),
        executor().fire_while(&fire, &executor().prepare(&fire), &SystemClock::default(), 7, &may_retry),
    )
    .await
    .expect("the executor hung");
    assert_eq!((rec.status, rec.attempts), (RunStatus::Failed, 2), "one retry while the lease held, then none");
    assert_eq!(target.seen().len(), 2);
}

#[tokio::test]
async fn no_retries_means_one_attempt() {
    let target = Target::start(vec![Reply::status(500)]).await;
    let rec = run(&executor(), &fire_of(spec(target.url("/")))).await;
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.attempts, 1);
    assert_eq!(target.seen().len(), 1);
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let target = Target::start(vec![Reply::status(429).retry_after("1"), Reply::status(200)]).await;
    let mut s = spec(target.url("/"));
    s.max_retries = 1;
    // Unhonoured, the job's delay would be 100 units (1 s).
    s.retry_delay_seconds = 100;

    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.attempts, 2);
    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= UNIT, "{gap:?}");
    assert!(gap < UNIT * 50, "Retry-After: 1 was not honoured: {gap:?}");
}

#[tokio::test]
async fn retry_after_is_capped_at_the_jobs_delay() {
    let target = Target::start(vec![Reply::status(429).retry_after("1000"), Reply::status(204)]).await;
    let mut s = spec(target.url("/"));
    s.max_retries = 1;
    s.retry_delay_seconds = 10;

    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.http_status, Some(204));
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.body_prefix, None);
    let seen = target.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= UNIT * 10, "{gap:?}");
    // Uncapped, Retry-After: 1000 would be 10 s.
    assert!(gap < Duration::from_secs(5), "Retry-After was not capped: {gap:?}");
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let target = Target::start(vec![Reply::status(404).body("no such hook")]).await;
    let mut s = spec(target.url("/missing"));
    s.max_retries = 3;

    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, Some(404));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.error.as_deref(), Some("target answered HTTP 404"));
    assert_eq!(rec.body_prefix.as_deref(), Some("no such hook"));
    assert_eq!(target.seen().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = Target::start(vec![Reply::status(302).header("location", "/elsewhere"), Reply::status(200)]).await;
    let mut s = spec(target.url("/start"));
    s.max_retries = 3;

    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, Some(302));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.error.as_deref(), Some("target answered HTTP 302 (redirects are not followed)"));
    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/start");
}

#[tokio::test]
async fn a_slow_target_times_out_and_is_retried() {
    let target = Target::start(vec![Reply::status(200).delay(Duration::from_secs(5))]).await;
    let mut s = spec(target.url("/slow"));
    s.timeout_seconds = 1;
    s.max_retries = 1;

    let started = Instant::now();
    let rec = run(&executor(), &fire_of(s)).await;
    let took = started.elapsed();

    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, None);
    assert_eq!(rec.attempts, 2);
    assert!(rec.error.as_deref().unwrap().contains("timed out"), "{:?}", rec.error);
    assert_eq!(target.seen().len(), 2);
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn connection_refused_is_retried_and_reported() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut s = spec(format!("http://127.0.0.1:{port}/"));
    s.max_retries = 2;
    s.retry_delay_seconds = 1;

    let started = Instant::now();
    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, None);
    assert_eq!(rec.attempts, 3);
    let error = rec.error.unwrap();
    assert!(error.starts_with("connection failed"), "{error}");
    assert!(started.elapsed() >= UNIT * 2);
}

#[tokio::test]
async fn no_retry_starts_at_or_after_the_next_slot() {
    let target = Target::start(vec![Reply::status(500)]).await;
    let mut s = spec(target.url("/"));
    s.max_retries = 3;
    s.retry_delay_seconds = 10;
    let mut fire = fire_of(s);
    fire.retry_until_ms = Some(SystemClock::default().now_ms() + 50);

    let started = Instant::now();
    // The real delay unit: a retry would come 10 s later, well past the next slot.
    let rec = run(&Executor::new(true, Metrics::new().unwrap()).unwrap(), &fire).await;

    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.http_status, Some(500));
    assert_eq!(target.seen().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_next_slot_bound_is_exclusive() {
    // On a clock that stands still, a retry 10 units (100 ms) away may start only if the next
    // slot is strictly later than that.
    let clock = ManualClock::new(AT_MS);
    for (until, attempts) in [(AT_MS + 100, 1), (AT_MS + 101, 2)] {
        let target = Target::start(vec![Reply::status(500)]).await;
        let mut s = spec(target.url("/"));
        s.max_retries = 1;
        let mut fire = fire_of(s);
        fire.retry_until_ms = Some(until);

        let rec = tokio::time::timeout(
            Duration::from_secs(30),
            executor().fire_while(&fire, &executor().prepare(&fire), &clock, 7, &|| true),
        )
        .await
        .unwrap();

        assert_eq!(rec.attempts, attempts, "retry until {until}");
        assert_eq!(target.seen().len(), attempts as usize);
        assert_eq!(rec.started_at_ms, Some(AT_MS));
        assert_eq!(rec.finished_at_ms, Some(AT_MS));
    }
}

#[tokio::test]
async fn a_large_body_is_cut_to_the_prefix() {
    let target = Target::start(vec![Reply::status(200).body(vec![b'a'; 3 * BODY_PREFIX_BYTES])]).await;
    let rec = run(&executor(), &fire_of(spec(target.url("/")))).await;
    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.body_prefix.unwrap(), "a".repeat(BODY_PREFIX_BYTES));
}

#[tokio::test]
async fn the_prefix_is_utf8_and_never_longer_than_the_limit() {
    // A 2-byte character straddles the limit: the partial character is dropped.
    let mut body = "a".repeat(BODY_PREFIX_BYTES - 1).into_bytes();
    body.extend_from_slice("éééé".as_bytes());
    let target = Target::start(vec![Reply::status(200).body(body)]).await;
    let rec = run(&executor(), &fire_of(spec(target.url("/")))).await;
    assert_eq!(rec.body_prefix.unwrap(), "a".repeat(BODY_PREFIX_BYTES - 1));
}

#[test]
fn body_prefix_replaces_invalid_bytes_within_the_limit() {
    assert_eq!(body_prefix(b""), None);
    assert_eq!(body_prefix(b"ok\xffok").as_deref(), Some("ok\u{fffd}ok"));
    // Each invalid byte becomes a 3-byte replacement character: the text is cut again.
    let text = body_prefix(&[0xff; BODY_PREFIX_BYTES + 10]).unwrap();
    assert!(text.len() <= BODY_PREFIX_BYTES);
    assert_eq!(text, "\u{fffd}".repeat(BODY_PREFIX_BYTES / 3));
}

#[tokio::test]
async fn a_private_target_is_refused_without_traffic() {
    let target = Target::start(vec![Reply::status(200)]).await;
    let metrics = Metrics::new().unwrap();
    let guarded = Executor::new(false, metrics.clone()).unwrap().with_delay_unit(UNIT);
    for url in [target.url("/"), format!("http://localhost:{}/", target.port)] {
        let mut s = spec(url.clone());
        s.max_retries = 3;

        let rec = run(&guarded, &fire_of(s)).await;

        assert_eq!(rec.status, RunStatus::Failed, "{url}");
        assert_eq!(rec.attempts, 1, "{url}");
        assert_eq!(rec.http_status, None, "{url}");
        let error = rec.error.unwrap();
        assert!(error.starts_with("target refused: "), "{error}");
        assert!(error.contains("127.0.0.1") || error.contains("localhost"), "{error}");
    }
    assert!(target.seen().is_empty());
    let error = run(&guarded, &fire_of(spec(target.url("/")))).await.error.unwrap();
    assert_eq!(error, "target refused: 127.0.0.1 is not a public address");
    assert!(target.seen().is_empty());
    // Every refusal counts: IP literals and local names alike.
    assert_eq!(metrics.executor.ssrf_refusals.get(), 3);
    assert_eq!(metrics.executor.retries.get(), 0);
}

#[tokio::test]
async fn retries_and_attempt_durations_are_counted() {
    let target = Target::start(vec![Reply::status(503), Reply::status(200)]).await;
    let metrics = Metrics::new().unwrap();
    let executor = Executor::new(true, metrics.clone()).unwrap().with_delay_unit(UNIT);
    let mut s = spec(target.url("/"));
    s.max_retries = 2;
    let rec = run(&executor, &fire_of(s)).await;
    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(metrics.executor.retries.get(), 1);
    assert_eq!(metrics.executor.request_duration.get_sample_count(), 2);
    assert_eq!(metrics.executor.ssrf_refusals.get(), 0);
}

#[tokio::test]
async fn a_url_the_guard_refuses_in_shape_fails_even_with_private_targets_allowed() {
    let target = Target::start(vec![Reply::status(200)]).await;
    let url = format!("http://user:secret@127.0.0.1:{}/", target.port);
    let rec = run(&executor(), &fire_of(spec(url))).await;
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.attempts, 1);
    assert!(rec.error.unwrap().contains("user info"));
    assert!(target.seen().is_empty());
}

#[test]
fn a_refusal_by_the_guarded_resolver_is_found_in_the_error_chain() {
    #[derive(Debug, thiserror::Error)]
    #[error("dns error")]
    struct Wrapper(#[source] Box<dyn std::error::Error + Send + Sync>);

    let refusal = SsrfError::NoPublicAddress("internal.example.com".to_string());
    let err = Wrapper(Box::new(Wrapper(Box::new(refusal.clone()))));
    assert_eq!(ssrf_cause(&err), Some(&refusal));
    assert_eq!(ssrf_cause(&Wrapper("other".into())), None);
}

/// A POST job with a body and two headers, following up to `limit` redirects.
fn posting(url: String, limit: u32) -> JobSpec {
    let mut s = spec(url);
    s.method = HttpMethod::Post;
    s.headers =
        vec![("Content-Type".to_string(), "application/json".into()), ("X-Custom".to_string(), "custom value".into())];
    s.body = Some(r#"{"hello":"world"}"#.into());
    s.follow_redirects = limit;
    s
}

fn redirect(status: u16, location: &str) -> Reply {
    Reply::status(status).header("location", location)
}

fn paths(target: &Target) -> Vec<String> {
    target.seen().into_iter().map(|s| s.path).collect()
}

#[tokio::test]
async fn a_302_within_the_limit_is_followed_as_a_get_with_the_same_headers() {
    let target =
        Target::start(vec![redirect(302, "/next?y=2").body("moved"), Reply::status(200).body("arrived")]).await;
    let mut s = posting(target.url("/start"), 1);
    s.max_retries = 3;
    let fire = fire_of(s);

    let rec = run(&executor(), &fire).await;

    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.http_status, Some(200));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.error, None);
    assert_eq!(rec.body_prefix.as_deref(), Some("arrived"));
    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", "/start"));
    assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("GET", "/next?y=2"));
    assert!(seen[1].body.is_empty());
    for req in &seen {
        assert_eq!(req.header("idempotency-key"), fire.fire_id.to_string());
        assert_eq!(req.header("x-raftcron-job-id"), "0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908");
        assert_eq!(req.header("x-raftcron-scheduled-at"), "2026-03-29T01:30:00.000Z");
        assert_eq!(req.header("x-raftcron-attempt"), "1");
        assert_eq!(req.header("user-agent"), format!("raftcron/{}", env!("CARGO_PKG_VERSION")));
        // Same origin: the job's headers go on.
        assert_eq!(req.header("x-custom"), "custom value");
    }
    // The body went away with the method, and its Content-Type with it.
    assert!(seen[1].headers.get("content-type").is_none());
}

#[tokio::test]
async fn a_307_or_308_keeps_the_method_and_the_body() {
    // A relative Location, then an absolute one.
    for (status, location) in [(307, "/again"), (308, "{base}/again")] {
        let target = Target::start(vec![redirect(status, location), Reply::status(201)]).await;
        let fire = fire_of(posting(target.url("/start"), 1));

        let rec = run(&executor(), &fire).await;

        assert_eq!(rec.status, RunStatus::Succeeded, "{status}");
        assert_eq!(rec.http_status, Some(201), "{status}");
        let seen = target.seen();
        assert_eq!(seen.len(), 2, "{status}");
        assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("POST", "/again"), "{status}");
        assert_eq!(seen[1].body, br#"{"hello":"world"}"#, "{status}");
        assert_eq!(seen[1].header("content-type"), "application/json", "{status}");
        assert_eq!(seen[1].header("idempotency-key"), fire.fire_id.to_string(), "{status}");
    }
}

#[tokio::test]
async fn exactly_the_limit_is_followed_and_one_more_fails_without_retry() {
    let script = || vec![redirect(302, "/b"), redirect(307, "/c"), Reply::status(204)];

    let target = Target::start(script()).await;
    let mut s = spec(target.url("/a"));
    s.follow_redirects = 2;
    let rec = run(&executor(), &fire_of(s)).await;
    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.http_status, Some(204));
    assert_eq!(paths(&target), ["/a", "/b", "/c"]);

    let target = Target::start(script()).await;
    let mut s = spec(target.url("/a"));
    s.follow_redirects = 1;
    s.max_retries = 3;
    let rec = run(&executor(), &fire_of(s)).await;
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, Some(307));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.error.as_deref(), Some("too many redirects (limit 1)"));
    assert_eq!(paths(&target), ["/a", "/b"]);
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_limit() {
    let target = Target::start(vec![redirect(301, "/loop").body("again")]).await;
    let mut s = spec(target.url("/loop"));
    s.follow_redirects = 5;

    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, Some(301));
    assert_eq!(rec.error.as_deref(), Some("too many redirects (limit 5)"));
    assert_eq!(rec.body_prefix.as_deref(), Some("again"));
    assert_eq!(target.seen().len(), 6);
}

#[tokio::test]
async fn a_retry_starts_again_from_the_jobs_url() {
    let target =
        Target::start(vec![redirect(302, "/b"), Reply::status(503), redirect(302, "/b"), Reply::status(200)]).await;
    let mut s = spec(target.url("/a"));
    s.follow_redirects = 1;
    s.max_retries = 1;

    let rec = run(&executor(), &fire_of(s)).await;

    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.attempts, 2);
    let seen = target.seen();
    let got: Vec<(&str, &str)> = seen.iter().map(|s| (s.path.as_str(), s.header("x-raftcron-attempt"))).collect();
    assert_eq!(got, [("/a", "1"), ("/b", "1"), ("/a", "2"), ("/b", "2")]);
}

#[tokio::test]
async fn a_3xx_that_is_no_redirect_fails_when_redirects_are_allowed() {
    for reply in [Reply::status(302), redirect(300, "/choice"), redirect(304, "/cached")] {
        let status = reply.status;
        let target = Target::start(vec![reply, Reply::status(200)]).await;
        let mut s = spec(target.url("/"));
        s.follow_redirects = 3;

        let rec = run(&executor(), &fire_of(s)).await;

        assert_eq!(rec.status, RunStatus::Failed, "{status}");
        assert_eq!(rec.http_status, Some(status));
        assert_eq!(rec.error, Some(format!("target answered HTTP {status} (no redirect to follow)")));
        assert_eq!(target.seen().len(), 1);
    }
}

#[tokio::test]
async fn another_origin_gets_the_raftcron_headers_but_not_the_jobs_headers() {
    let other = Target::start(vec![Reply::status(200)]).await;
    let first = Target::start(vec![redirect(307, &other.url("/landing"))]).await;
    let fire = fire_of(posting(first.url("/start"), 2));

    let rec = run(&executor(), &fire).await;

    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(first.seen()[0].header("x-custom"), "custom value");
    let seen = other.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/landing"));
    assert!(req.headers.get("x-custom").is_none(), "a job header went to another origin");
    // The kept body keeps its Content-Type.
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.body, br#"{"hello":"world"}"#);
    assert_eq!(req.header("idempotency-key"), fire.fire_id.to_string());
    assert_eq!(req.header("x-raftcron-job-id"), "0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908");
    assert_eq!(req.header("x-raftcron-attempt"), "1");
}

#[tokio::test]
async fn the_timeout_bounds_the_whole_attempt_redirects_included() {
    let target = Target::start(vec![redirect(302, "/slow").delay(Duration::from_millis(400))]).await;
    let mut s = spec(target.url("/slow"));
    s.timeout_seconds = 1;
    s.follow_redirects = 5;

    let started = Instant::now();
    let rec = run(&executor(), &fire_of(s)).await;
    let took = started.elapsed();

    // Per request, six hops of 400 ms would take 2.4 s and end on the redirect limit.
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.http_status, None);
    assert_eq!(rec.error.as_deref(), Some("timed out after 1 s"));
    assert!(target.seen().len() <= 3, "{}", target.seen().len());
    assert!(took < Duration::from_millis(2000), "{took:?}");

    // A hop gets only what is left of the attempt: 600 ms + 900 ms would fit two 1 s timeouts.
    let target = Target::start(vec![
        redirect(302, "/b").delay(Duration::from_millis(600)),
        Reply::status(200).delay(Duration::from_millis(900)),
    ])
    .await;
    let mut s = spec(target.url("/a"));
    s.timeout_seconds = 1;
    s.follow_redirects = 1;
    let rec = run(&executor(), &fire_of(s)).await;
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.error.as_deref(), Some("timed out after 1 s"));
    assert_eq!(paths(&target), ["/a", "/b"]);
}

#[test]
fn next_hop_resolves_the_location_and_picks_the_method() {
    let (get, post, head) = (Method::GET, Method::POST, Method::HEAD);
    // (current, location, status, method) -> (url, method, keep_body)
    let cases: [(&str, &str, u16, &Method, &str, &Method, bool); 15] = [
        ("https://a.example/x/y?q=1", "/z", 302, &post, "https://a.example/z", &get, false),
        ("https://a.example/x/y", "z?k=v", 301, &post, "https://a.example/x/z?k=v", &get, false),
        ("https://a.example/x/y", "../up", 303, &get, "https://a.example/up", &get, false),
        ("https://a.example/x/y", "?only=query", 302, &get, "https://a.example/x/y?only=query", &get, false),
        ("https://a.example/x", "//b.example/p", 302, &get, "https://b.example/p", &get, false),
        ("https://a.example/x", "https://b.example:8443/p", 308, &post, "https://b.example:8443/p", &post, true),
        ("http://a.example/x", "https://a.example/x", 301, &get, "https://a.example/x", &get, false),
        ("http://a.example/x", "http://b.example/", 302, &get, "http://b.example/", &get, false),
        ("https://a.example/x", " /trimmed ", 302, &get, "https://a.example/trimmed", &get, false),
        ("https://a.example/x", "/h", 301, &head, "https://a.example/h", &head, false),
        ("https://a.example/x", "/h", 302, &head, "https://a.example/h", &head, false),
        ("https://a.example/x", "/h", 303, &head, "https://a.example/h", &head, false),
        ("https://a.example/x", "/p", 307, &post, "https://a.example/p", &post, true),
        ("https://a.example/x", "/p", 307, &Method::DELETE, "https://a.example/p", &Method::DELETE, true),
        ("https://a.example/x", "/p", 303, &Method::PUT, "https://a.example/p", &get, false),
    ];
    for (current, location, status, method, url, next_method, keep_body) in cases {
        let hop = next_hop(&Url::parse(current).unwrap(), location, status, method)
            .unwrap_or_else(|e| panic!("{current} -> {location} ({status}): {e}"));
        assert_eq!(hop.url.as_str(), url, "{current} -> {location} ({status})");
        assert_eq!(&hop.method, next_method, "{current} -> {location} ({status} {method})");
        assert_eq!(hop.keep_body, keep_body, "{current} -> {location} ({status} {method})");
    }
}

#[test]
fn next_hop_refuses_downgrades_bad_locations_and_other_statuses() {
    let cases = [
        ("https://a.example/x", "http://a.example/x", 302, "redirect from https to http refused"),
        ("https://a.example/x", "http://b.example/", 307, "redirect from https to http refused"),
        ("https://a.example/x", "http://[::1", 302, "redirect to an invalid Location: "),
        ("https://a.example/x", "/y", 300, "HTTP 300 is not a redirect"),
        ("https://a.example/x", "/y", 304, "HTTP 304 is not a redirect"),
        ("https://a.example/x", "/y", 200, "HTTP 200 is not a redirect"),
    ];
    for (current, location, status, error) in cases {
        let got = next_hop(&Url::parse(current).unwrap(), location, status, &Method::GET).unwrap_err();
        assert!(got.starts_with(error), "{current} -> {location} ({status}): {got}");
    }
}

#[test]
fn each_hop_goes_through_the_ssrf_guard() {
    let public = Url::parse("https://hooks.example.com/start").unwrap();
    let refused = [
        ("http://127.0.0.1:8080/admin", "redirect target refused: 127.0.0.1 is not a public address"),
        (
            "https://169.254.169.254/latest/meta-data",
            "redirect target refused: 169.254.169.254 is not a public address",
        ),
        ("https://[::1]/", "redirect target refused: ::1 is not a public address"),
        ("https://10.1.2.3/", "redirect target refused: 10.1.2.3 is not a public address"),
        ("https://localhost/", "redirect target refused: host \"localhost\" is a local name"),
        ("https://intranet/", "redirect target refused: host \"intranet\" is a local name"),
    ];
    for (location, error) in refused {
        // HTTPS to keep the downgrade rule out of the way, except for the first.
        let current = if location.starts_with("http:") {
            Url::parse("http://hooks.example.com/").unwrap()
        } else {
            public.clone()
        };
        assert_eq!(redirect_target(&current, location, 302, &Method::GET, false).unwrap_err(), error, "{location}");
        // With private targets allowed the address checks are lifted.
        assert!(redirect_target(&current, location, 302, &Method::GET, true).is_ok(), "{location}");
    }
    // The checks that are never lifted.
    for (location, error) in [
        ("ftp://files.example.com/x", "redirect target refused: scheme must be http or https"),
        (
            "https://user:pw@other.example.com/",
            "redirect target refused: URLs with user info (user:password@) are not allowed",
        ),
    ] {
        for allow_private in [false, true] {
            assert_eq!(redirect_target(&public, location, 302, &Method::GET, allow_private).unwrap_err(), error);
        }
    }
    // A public hop passes, and the downgrade rule still applies.
    assert_eq!(
        redirect_target(&public, "https://other.example.com/p", 302, &Method::GET, false).unwrap().url.as_str(),
        "https://other.example.com/p"
    );
    assert_eq!(
        redirect_target(&public, "http://other.example.com/p", 302, &Method::GET, true).unwrap_err(),
        "redirect from https to http refused"
    );
}

#[test]
fn only_the_jobs_origin_gets_the_jobs_headers() {
    // (name, same origin, body dropped) -> forwarded
    let cases = [
        ("Authorization", true, false, true),
        ("Authorization", false, false, false),
        ("X-Api-Key", false, true, false),
        ("Content-Type", false, false, true),
        ("content-type", true, true, false),
        ("Content-Encoding", true, false, true),
        ("Content-Encoding", false, false, false),
        ("CONTENT-LANGUAGE", true, true, false),
        ("X-Custom", true, true, true),
    ];
    for (name, same_origin, body_dropped, forwarded) in cases {
        assert_eq!(forwards_header(name, same_origin, body_dropped), forwarded, "{name} {same_origin} {body_dropped}");
    }
}

#[tokio::test]
async fn a_fire_prepared_ahead_holds_no_secret_and_counts_a_refusal_only_when_it_is_sent() {
    let target = Target::start(vec![Reply::status(200)]).await;
    let mut s = spec(target.url("/"));
    s.headers = vec![("Authorization".to_string(), "Bearer prepared-secret-value".into())];
    s.body = Some("prepared-secret-body".into());
    let fire = fire_of(s);
    let executor = executor();

    // Made ahead of the slot: the guarded URL and the raftcron headers, never a secret.
    let prepared = executor.prepare(&fire);
    let shown = format!("{prepared:?}");
    assert!(!shown.contains("prepared-secret"), "{shown}");
    assert!(shown.contains(&fire.fire_id.to_string()), "{shown}");

    let rec = tokio::time::timeout(
        Duration::from_secs(30),
        executor.fire_while(&fire, &prepared, &SystemClock::default(), 7, &|| true),
    )
    .await
    .expect("the executor hung");
    assert_eq!(rec.status, RunStatus::Succeeded);
    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), "Bearer prepared-secret-value");
    assert_eq!(seen[0].body, b"prepared-secret-body");
    assert_eq!(seen[0].header("idempotency-key"), fire.fire_id.to_string());
    assert_eq!(seen[0].header("x-raftcron-scheduled-at"), "2026-03-29T01:30:00.000Z");
    assert_eq!(seen[0].header("x-raftcron-attempt"), "1");

    // A refused URL prepared for a slot that is then let go unsent is not a refusal yet.
    let metrics = Metrics::new().unwrap();
    let guarded = Executor::new(false, metrics.clone()).unwrap().with_delay_unit(UNIT);
    let refused = fire_of(spec(target.url("/")));
    let prepared = guarded.prepare(&refused);
    assert_eq!(metrics.executor.ssrf_refusals.get(), 0);
    let rec = guarded.fire_while(&refused, &prepared, &SystemClock::default(), 7, &|| true).await;
    assert_eq!(rec.error.as_deref(), Some("target refused: 127.0.0.1 is not a public address"));
    assert_eq!(metrics.executor.ssrf_refusals.get(), 1);
    assert_eq!(target.seen().len(), 1);
}
