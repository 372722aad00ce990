//! The jobs API on a real cluster: validation of create and update bodies, defaults, masking of
//! header values, pagination, and the JSON answers of unknown ids, methods and routes.
//! One cluster serves every check (requests rotate over the three nodes).

mod common;

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use common::{job, job_id, Api, RawRequest, Resp, TestCluster};
use serde_json::{json, Value};

/// A request body of the validation table.
enum Body {
    Json(Value),
    /// Raw bytes with an optional Content-Type.
    Raw(Option<&'static str>, Vec<u8>),
}

/// One invalid request: what it is, its body, the expected status and code, and the words the
/// message must contain (field names).
struct Case {
    what: &'static str,
    body: Body,
    status: u16,
    code: &'static str,
    mentions: &'static [&'static str],
}

/// The valid create body the cases start from.
fn base() -> Value {
    json!({
        "name": "validation",
        "url": "https://example.com/hook",
        "method": "POST",
        "cron_expression": "0 0 1 1 *",
    })
}

/// `base()` with `key` set to `value`.
fn with(key: &str, value: Value) -> Body {
    let mut b = base();
    b[key] = value;
    Body::Json(b)
}

/// `base()` with several keys set.
fn with_all(pairs: &[(&str, Value)]) -> Body {
    let mut b = base();
    for (k, v) in pairs {
        b[*k] = v.clone();
    }
    Body::Json(b)
}

fn without(key: &str) -> Body {
    let mut b = base();
    if let Some(o) = b.as_object_mut() {
        o.remove(key);
    }
    Body::Json(b)
}

/// A VALIDATION_ERROR case naming `field`.
fn invalid(what: &'static str, body: Body, field: &'static [&'static str]) -> Case {
    Case { what, body, status: 400, code: "VALIDATION_ERROR", mentions: field }
}

/// An INVALID_JSON case.
fn bad_json(what: &'static str, body: Body, mentions: &'static [&'static str]) -> Case {
    Case { what, body, status: 400, code: "INVALID_JSON", mentions }
}

async fn send(api: &Api, method: &str, path: &str, body: &Body) -> Result<Resp> {
    match body {
        Body::Json(v) => api.send(method, path, Some(v)).await,
        Body::Raw(ct, bytes) => {
            let mut req = RawRequest {
                method: method.into(),
                path: path.into(),
                body: Some(bytes.clone()),
                ..Default::default()
            };
            if let Some(ct) = ct {
                req.headers.push(("Content-Type".into(), (*ct).into()));
            }
            api.raw(req).await
        }
    }
}

/// Sends every case (rotating over `apis`) and checks status, code and message.
async fn check_cases(apis: &[Api], method: &str, path: &str, cases: &[Case]) -> Result<()> {
    let mut problems = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let api = &apis[i % apis.len()];
        let r = send(api, method, path, &case.body).await?;
        let label = format!("{method} {path} [{}] on node {}", case.what, api.node_id);
        match r.clone().expect_error(case.status, case.code) {
            Err(e) => problems.push(format!("{label}: {e:#}")),
            Ok(r) => {
                for word in case.mentions {
                    // A validation message is "<field>: <why>; ...".
                    let needle = if case.code == "VALIDATION_ERROR" { format!("{word}:") } else { (*word).to_string() };
                    if !r.message().contains(&needle) {
                        problems.push(format!("{label}: the message does not name {word:?}: {:?}", r.message()));
                    }
                }
            }
        }
    }
    ensure!(problems.is_empty(), "{} of {} cases failed:\n  {}", problems.len(), cases.len(), problems.join("\n  "));
    Ok(())
}

fn create_cases() -> Vec<Case> {
    let big_headers = json!({"X-Big": "a".repeat(9 * 1024)});
    vec![
        bad_json("malformed JSON", Body::Raw(Some("application/json"), b"{\"name\": ".to_vec()), &[]),
        bad_json("not an object", Body::Json(json!(["a", "b"])), &[]),
        bad_json("unknown field", with("colour", json!("red")), &["colour"]),
        bad_json("missing required name", without("name"), &["name"]),
        bad_json("missing required cron_expression", without("cron_expression"), &["cron_expression"]),
        bad_json("wrong type: timeout_seconds as a string", with("timeout_seconds", json!("30")), &["timeout_seconds"]),
        bad_json("wrong type: is_active as a string", with("is_active", json!("yes")), &["is_active"]),
        bad_json("wrong type: headers as a list", with("headers", json!(["a"])), &["headers"]),
        bad_json("negative max_retries", with("max_retries", json!(-1)), &["max_retries"]),
        invalid("name too long", with("name", json!("n".repeat(101))), &["name"]),
        invalid("blank name", with("name", json!("   ")), &["name"]),
        invalid("url with ftp scheme", with("url", json!("ftp://example.com/file")), &["url"]),
        invalid("url with userinfo", with("url", json!("https://user:secret@example.com/hook")), &["url"]),
        invalid("url that is not a URL", with("url", json!("not a url")), &["url"]),
        invalid("method TRACE", with("method", json!("TRACE")), &["method"]),
        invalid("cron on the 30th of February", with("cron_expression", json!("0 0 30 2 *")), &["cron_expression"]),
        invalid("cron minute 61", with("cron_expression", json!("61 * * * *")), &["cron_expression"]),
        invalid("cron with 3 fields", with("cron_expression", json!("* * *")), &["cron_expression"]),
        invalid(
            "cron offset of a whole second",
            with("cron_expression", json!("* * * * * +1000ms")),
            &["cron_expression"],
        ),
        invalid("cron offset without a unit", with("cron_expression", json!("* * * * * +250")), &["cron_expression"]),
        invalid("unknown timezone", with("timezone", json!("Mars/Olympus_Mons")), &["timezone"]),
        invalid("headers over 8KB", with("headers", big_headers), &["headers"]),
        invalid("header value with CRLF", with("headers", json!({"X-Evil": "a\r\nInjected: yes"})), &["headers"]),
        invalid("reserved header Host", with("headers", json!({"Host": "evil.example"})), &["headers"]),
        invalid("body over 100KB", with("body", json!("b".repeat(100 * 1024 + 1))), &["body"]),
        Case {
            what: "request over 256KiB",
            body: with("body", json!("b".repeat(300 * 1024))),
            status: 413,
            code: "PAYLOAD_TOO_LARGE",
            mentions: &[],
        },
        invalid("timeout_seconds 0", with("timeout_seconds", json!(0)), &["timeout_seconds"]),
        invalid("timeout_seconds 121", with("timeout_seconds", json!(121)), &["timeout_seconds"]),
        invalid("max_retries 11", with("max_retries", json!(11)), &["max_retries"]),
        invalid("retry_delay_seconds 9", with("retry_delay_seconds", json!(9)), &["retry_delay_seconds"]),
        invalid("retry_delay_seconds 3601", with("retry_delay_seconds", json!(3601)), &["retry_delay_seconds"]),
        invalid("notify_after_failures 0", with("notify_after_failures", json!(0)), &["notify_after_failures"]),
        invalid("notify_after_failures 11", with("notify_after_failures", json!(11)), &["notify_after_failures"]),
        invalid("follow_redirects 6", with("follow_redirects", json!(6)), &["follow_redirects"]),
        bad_json("negative follow_redirects", with("follow_redirects", json!(-1)), &["follow_redirects"]),
        invalid("body with GET", with_all(&[("method", json!("GET")), ("body", json!("payload"))]), &["body"]),
        invalid("body with HEAD", with_all(&[("method", json!("HEAD")), ("body", json!("payload"))]), &["body"]),
        invalid(
            "several problems at once",
            with_all(&[("name", json!("")), ("timeout_seconds", json!(0)), ("max_retries", json!(11))]),
            &["name", "timeout_seconds", "max_retries"],
        ),
        Case {
            what: "no Content-Type",
            body: Body::Raw(None, serde_json::to_vec(&base()).unwrap_or_default()),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            mentions: &[],
        },
        Case {
            what: "Content-Type text/plain",
            body: Body::Raw(Some("text/plain"), serde_json::to_vec(&base()).unwrap_or_default()),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            mentions: &[],
        },
    ]
}

/// Invalid updates of a POST job that has a body.
fn patch_cases() -> Vec<Case> {
    let p = |v: Value| Body::Json(v);
    vec![
        bad_json("malformed JSON", Body::Raw(Some("application/json"), b"{\"name\"".to_vec()), &[]),
        bad_json("unknown field", p(json!({"colour": "red"})), &["colour"]),
        bad_json("wrong type: name as a number", p(json!({"name": 5})), &["name"]),
        bad_json("wrong type: max_retries as a string", p(json!({"max_retries": "3"})), &["max_retries"]),
        invalid("blank name", p(json!({"name": ""})), &["name"]),
        invalid("url with userinfo", p(json!({"url": "http://u:p@example.com/"})), &["url"]),
        invalid("method TRACE", p(json!({"method": "TRACE"})), &["method"]),
        invalid("method GET while the job has a body", p(json!({"method": "GET"})), &["body"]),
        invalid("cron minute 61", p(json!({"cron_expression": "61 * * * *"})), &["cron_expression"]),
        invalid("unknown timezone", p(json!({"timezone": "Nowhere/Nothing"})), &["timezone"]),
        invalid("header value with LF", p(json!({"headers": {"X-A": "a\nb"}})), &["headers"]),
        invalid("timeout_seconds 121", p(json!({"timeout_seconds": 121})), &["timeout_seconds"]),
        invalid("retry_delay_seconds 9", p(json!({"retry_delay_seconds": 9})), &["retry_delay_seconds"]),
        invalid("notify_after_failures 0", p(json!({"notify_after_failures": 0})), &["notify_after_failures"]),
        invalid("follow_redirects 6", p(json!({"follow_redirects": 6})), &["follow_redirects"]),
        Case {
            what: "no Content-Type",
            body: Body::Raw(None, b"{}".to_vec()),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            mentions: &[],
        },
    ]
}

fn as_u64(v: &Value, key: &str) -> Result<u64> {
    v.get(key).and_then(Value::as_u64).with_context(|| format!("{key} is not a number in {v}"))
}

#[tokio::test]
async fn jobs_api_validation() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let apis = c.clients();
    let api = &apis[0];

    // Pagination first, while the cluster holds exactly these 7 jobs.
    let mut ids = BTreeSet::new();
    for i in 0..7 {
        ids.insert(job_id(&apis[i % 3].create_job(&job(&format!("page-{i}"))).await?));
    }
    let mut seen = BTreeSet::new();
    for (page, want) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let r = apis[page % 3].get(&format!("/api/v1/jobs?page={page}&page_size=3")).await?.expect(200)?;
        assert_eq!(as_u64(&r.json, "total_count")?, 7, "page {page}: {}", r.text);
        assert_eq!(as_u64(&r.json, "page")?, page as u64);
        assert_eq!(as_u64(&r.json, "page_size")?, 3);
        let jobs = r.json["jobs"].as_array().context("jobs")?;
        assert_eq!(jobs.len(), want, "page {page}: {}", r.text);
        for j in jobs {
            assert!(seen.insert(job_id(j)), "job {} on two pages", job_id(j));
        }
    }
    assert_eq!(seen, ids, "the pages do not hold exactly the created jobs");
    let r = api.get("/api/v1/jobs").await?.expect(200)?;
    assert_eq!(as_u64(&r.json, "page")?, 1);
    assert_eq!(as_u64(&r.json, "page_size")?, 50);
    assert_eq!(r.json["jobs"].as_array().map(Vec::len), Some(7));
    let r = api.get("/api/v1/jobs?page_size=2&consistency=stale").await?.expect(200)?;
    assert_eq!(r.json["jobs"].as_array().map(Vec::len), Some(2));
    for q in ["page=0", "page_size=0", "page_size=501"] {
        let r = api.get(&format!("/api/v1/jobs?{q}")).await?.expect_error(400, "VALIDATION_ERROR")?;
        let field = q.split('=').next().unwrap_or_default();
        assert!(r.message().contains(field), "{q}: {}", r.message());
    }
    api.get("/api/v1/jobs?consistency=sometimes").await?.expect_error(400, "BAD_REQUEST")?;

    // Invalid creates: none may create anything.
    check_cases(&apis, "POST", "/api/v1/jobs", &create_cases()).await?;
    assert_eq!(api.all_jobs(false).await?.len(), 7, "an invalid create created a job");

    // Defaults on a minimal create.
    let minimal = api.create_job(&base()).await?;
    let id = job_id(&minimal);
    assert_eq!(id.len(), 36, "id is not a UUID: {minimal}");
    assert!(id.chars().all(|ch| ch == '-' || ch.is_ascii_hexdigit()), "id is not a UUID: {minimal}");
    let defaults = json!({
        "name": "validation", "url": "https://example.com/hook", "method": "POST",
        "cron_expression": "0 0 1 1 *", "timezone": "UTC", "headers": {}, "body": null,
        "timeout_seconds": 30, "max_retries": 3, "retry_delay_seconds": 60, "is_active": true,
        "notify_on_failure": true, "notify_after_failures": 1,
    });
    for (k, v) in defaults.as_object().context("defaults")? {
        assert_eq!(&minimal[k], v, "default of {k} in {minimal}");
    }
    let next = minimal["next_run_at"].as_str().context("next_run_at of an active job")?;
    let next = chrono::DateTime::parse_from_rfc3339(next).context("next_run_at is not RFC 3339")?;
    assert!(next > chrono::Utc::now(), "next_run_at {next} is not in the future");
    assert_eq!(next.format("%m-%d %H:%M:%S").to_string(), "01-01 00:00:00", "yearly schedule: {next}");
    for k in ["created_at", "updated_at"] {
        let t = minimal[k].as_str().with_context(|| format!("{k} in {minimal}"))?;
        chrono::DateTime::parse_from_rfc3339(t).with_context(|| format!("{k} = {t:?} is not RFC 3339"))?;
    }
    let got = apis[2].get_job(&id, false).await?.expect(200)?.field("job")?;
    assert_eq!(got, minimal);

    // A 6-field expression (with seconds) in a zone, every option set.
    let full = json!({
        "name": "full", "url": "http://example.com:8080/path?q=1", "method": "PUT",
        "cron_expression": "30 0 9 * * 1-5", "timezone": "Europe/Paris",
        "headers": {"Authorization": "Bearer s3cr3t-t0ken", "X-Trace": "trace-value-42"},
        "body": "{\"hello\":\"world\"}", "timeout_seconds": 120, "max_retries": 0,
        "retry_delay_seconds": 3600, "is_active": true, "notify_on_failure": false, "notify_after_failures": 10,
    });
    let r = apis[1].post("/api/v1/jobs", &full).await?.expect(201)?;
    assert!(!r.text.contains("s3cr3t-t0ken") && !r.text.contains("trace-value-42"), "header value leaked: {}", r.text);
    let created = r.field("job")?;
    assert_eq!(created["headers"], json!({"Authorization": "********", "X-Trace": "********"}));
    for k in ["name", "url", "method", "cron_expression", "timezone", "body", "timeout_seconds", "max_retries"] {
        assert_eq!(created[k], full[k], "{k}");
    }
    for k in ["retry_delay_seconds", "notify_on_failure", "notify_after_failures"] {
        assert_eq!(created[k], full[k], "{k}");
    }
    assert!(created["next_run_at"].is_string(), "{created}");
    let fid = job_id(&created);
    for a in &apis {
        let r = a.get_job(&fid, false).await?.expect(200)?;
        assert!(!r.text.contains("s3cr3t-t0ken"), "node {} leaked a header value: {}", a.node_id, r.text);
        assert_eq!(r.field("job")?, created);
        let r = a.get("/api/v1/jobs?page_size=500").await?.expect(200)?;
        assert!(!r.text.contains("s3cr3t-t0ken"), "node {} leaked a header value in the list", a.node_id);
    }

    // follow_redirects: 0 by default, echoed when set, and kept by an update that leaves it out.
    assert_eq!(minimal["follow_redirects"], 0, "{minimal}");
    let mut redirecting = job("redirecting");
    redirecting["follow_redirects"] = json!(2);
    let r = apis[2].create_job(&redirecting).await?;
    assert_eq!(r["follow_redirects"], 2, "{r}");
    let rid = job_id(&r);
    for a in &apis {
        assert_eq!(a.get_job(&rid, false).await?.expect(200)?.field("job")?["follow_redirects"], 2);
    }
    let r = api.patch(&format!("/api/v1/jobs/{rid}"), &json!({"max_retries": 1})).await?.expect(200)?.field("job")?;
    assert_eq!(r["follow_redirects"], 2, "{r}");
    let r =
        api.patch(&format!("/api/v1/jobs/{rid}"), &json!({"follow_redirects": 5})).await?.expect(200)?.field("job")?;
    assert_eq!(r["follow_redirects"], 5, "{r}");
    api.delete(&format!("/api/v1/jobs/{rid}")).await?.expect(200)?;

    // Paused: no next run; resuming gives one back.
    let mut paused = job("paused");
    paused["is_active"] = json!(false);
    let p = apis[2].create_job(&paused).await?;
    assert_eq!(p["is_active"], false);
    assert_eq!(p["next_run_at"], Value::Null, "{p}");
    let pid = job_id(&p);
    assert_eq!(api.get_job(&pid, false).await?.expect(200)?.field("job")?["next_run_at"], Value::Null);
    let resumed =
        api.patch(&format!("/api/v1/jobs/{pid}"), &json!({"is_active": true})).await?.expect(200)?.field("job")?;
    assert!(resumed["next_run_at"].is_string(), "{resumed}");

    // Invalid updates change nothing.
    check_cases(&apis, "PATCH", &format!("/api/v1/jobs/{fid}"), &patch_cases()).await?;
    let after = api.get_job(&fid, false).await?.expect(200)?.field("job")?;
    assert_eq!(after, created, "an invalid update changed the job");
    // A valid one: switch to GET and clear the body at once; new headers replace the old ones.
    let r = apis[1]
        .patch(&format!("/api/v1/jobs/{fid}"), &json!({"method": "GET", "body": "", "headers": {"X-New": "v"}}))
        .await?
        .expect(200)?;
    let updated = r.field("job")?;
    assert_eq!(updated["method"], "GET");
    assert_eq!(updated["body"], Value::Null);
    assert_eq!(updated["headers"], json!({"X-New": "********"}));
    assert_eq!(updated["name"], "full");

    // Unknown and malformed ids.
    let unknown = "0b5c8a6e-3f1d-4c2a-9e7b-5d4f3a2b1c0d";
    api.get_job(unknown, false).await?.expect_error(404, "NOT_FOUND")?;
    api.get_job(unknown, true).await?.expect_error(404, "NOT_FOUND")?;
    api.patch(&format!("/api/v1/jobs/{unknown}"), &json!({"name": "x"})).await?.expect_error(404, "NOT_FOUND")?;
    api.delete(&format!("/api/v1/jobs/{unknown}")).await?.expect_error(404, "NOT_FOUND")?;
    for bad in ["not-a-uuid", "12345", "0b5c8a6e-3f1d-4c2a-9e7b"] {
        api.get_job(bad, false).await?.expect_error(404, "NOT_FOUND")?;
        api.delete(&format!("/api/v1/jobs/{bad}")).await?.expect_error(404, "NOT_FOUND")?;
    }

    // Wrong methods and routes answer JSON too.
    api.send("PUT", "/api/v1/jobs", Some(&base())).await?.expect_error(405, "METHOD_NOT_ALLOWED")?;
    api.send("DELETE", "/api/v1/jobs", None).await?.expect_error(405, "METHOD_NOT_ALLOWED")?;
    api.send("PUT", &format!("/api/v1/jobs/{fid}"), Some(&base())).await?.expect_error(405, "METHOD_NOT_ALLOWED")?;
    api.send("POST", "/api/v1/cluster", Some(&json!({}))).await?.expect_error(405, "METHOD_NOT_ALLOWED")?;
    api.get("/api/v1/nothing-here").await?.expect_error(404, "NOT_FOUND")?;
    api.get("/api/v2/jobs").await?.expect_error(404, "NOT_FOUND")?;
    api.anonymous().get("/nothing-here").await?.expect_error(404, "NOT_FOUND")?;

    // Deleting works once, then 404.
    api.delete(&format!("/api/v1/jobs/{pid}")).await?.expect(200)?;
    apis[1].get_job(&pid, false).await?.expect_error(404, "NOT_FOUND")?;
    apis[2].delete(&format!("/api/v1/jobs/{pid}")).await?.expect_error(404, "NOT_FOUND")?;
    assert_eq!(api.all_jobs(false).await?.len(), 9);
    c.stop()
}
