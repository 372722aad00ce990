//! The OpenAPI document, request ids, metrics and JSON logs on a real 1-node cluster.
//!
//! The document served at `GET /api/v1/openapi.json` is the reference: every documented
//! operation answers (never 405), every undocumented method on a documented path is a 405, and
//! the JSON answers of the calls below (successes and errors) validate against the schemas the
//! document gives for their operation and status, `$ref`s resolved into its components.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::*;
use serde_json::{json, Value};

/// The document and a validator per schema.
struct Doc {
    doc: Value,
}

impl Doc {
    /// The JSON schema the document gives for `method path` answering `status`.
    fn schema(&self, method: &str, path: &str, status: u16) -> Result<Option<Value>> {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        ensure!(op.is_object(), "{method} {path} is not documented");
        let resp = &op["responses"][status.to_string()];
        ensure!(resp.is_object(), "{method} {path} does not document status {status}: {}", op["responses"]);
        Ok(resp["content"]["application/json"]["schema"].as_object().map(|s| Value::Object(s.clone())))
    }

    /// Validates `instance` against `schema`, resolving `#/components/...` in the document.
    fn check(&self, schema: &Value, instance: &Value, what: &str) -> Result<()> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::draft202012::new(&root).map_err(|e| anyhow!("{what}: bad schema: {e}"))?;
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        ensure!(errors.is_empty(), "{what}: answer does not match the document: {errors:?}\n{instance}");
        Ok(())
    }

    /// Checks an answer of `method path` (a template) against its documented status and schema.
    fn answer(&self, method: &str, path: &str, r: &Resp) -> Result<()> {
        let what = format!("{} ({} {path} -> {})", r.request, method, r.status);
        match self.schema(method, path, r.status).with_context(|| what.clone())? {
            Some(schema) => {
                ensure!(
                    r.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")),
                    "{what}: content type {:?}",
                    r.content_type
                );
                self.check(&schema, &r.json, &what)
            }
            None => Ok(()),
        }
    }

    fn error_body(&self, r: &Resp) -> Result<()> {
        self.check(&json!({"$ref": "#/components/schemas/ErrorBody"}), &r.json, &r.request)
    }
}

/// Calls `method path` (the template `tpl`) and checks the answer has `status` and matches the
/// document.
async fn call(
    doc: &Doc,
    api: &Api,
    method: &str,
    tpl: &str,
    path: &str,
    body: Option<&Value>,
    status: u16,
) -> Result<Resp> {
    let r = api.send(method, path, body).await?.expect(status)?;
    ensure!(r.headers.contains_key("x-request-id"), "{}: no X-Request-Id", r.request);
    doc.answer(method, tpl, &r)?;
    Ok(r)
}

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A loopback target that answers 200 to everything and counts what it got.
async fn start_sink() -> Result<(std::net::SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>)> {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, hits, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_what_the_node_answers() -> Result<()> {
    let (sink, hits, sink_task) = start_sink().await?;
    let c = TestCluster::start_with(1, &["--log-format", "json", "--allow-private-targets"]).await?;
    let api = c.client(1);
    let anon = api.anonymous();

    let r = anon.get("/api/v1/openapi.json").await?.expect(200)?;
    ensure!(
        r.json["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3: {}",
        truncate(&r.text, 200)
    );
    let doc = Doc { doc: r.json.clone() };
    doc.answer("GET", "/api/v1/openapi.json", &r)?;

    // The validator rejects what does not match (so a pass below means something).
    let bad = json!({"job": {"id": 5, "name": "x"}});
    ensure!(doc.check(&json!({"$ref": "#/components/schemas/JobEnvelope"}), &bad, "negative").is_err());
    ensure!(doc.check(&json!({"$ref": "#/components/schemas/ErrorBody"}), &json!({"error": "NOPE"}), "neg").is_err());

    // Every documented operation answers; every other method on a documented path is a 405.
    let paths: BTreeMap<String, Value> =
        doc.doc["paths"].as_object().context("paths")?.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    ensure!(paths.len() >= 17, "only {} paths documented", paths.len());
    let missing = "00000000-0000-4000-8000-000000000000";
    for (tpl, item) in &paths {
        let path = match tpl.as_str() {
            "/api/v1/cluster/nodes/{id}" => tpl.replace("{id}", "99"),
            "/api/v1/tenants/{id}" => tpl.replace("{id}", "no-such-tenant"),
            t => t.replace("{id}", missing),
        };
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let documented = item.get(method.to_lowercase()).is_some();
            let r = api.send(method, &path, None).await?;
            ensure!(r.headers.contains_key("x-request-id"), "{}: no X-Request-Id", r.request);
            if !documented {
                ensure!(r.status == 405, "{method} {tpl} is not documented but answered {}: {}", r.status, r.text);
                r.clone().expect_error(405, "METHOD_NOT_ALLOWED")?;
                continue;
            }
            ensure!(r.status != 405, "{method} {tpl} is documented but answered 405");
            ensure!(!(r.status == 404 && r.message() == "no such route"), "{method} {tpl} is documented but unrouted");
            if r.status >= 400 {
                doc.error_body(&r)?;
            }
            if doc.schema(method, tpl, r.status).is_ok() {
                doc.answer(method, tpl, &r)?;
            }
        }
    }

    // Probes and reads.
    call(&doc, &anon, "GET", "/healthz", "/healthz", None, 200).await?;
    call(&doc, &anon, "GET", "/readyz", "/readyz", None, 200).await?;
    for p in [
        "/api/v1/cluster",
        "/api/v1/cluster/shards",
        "/api/v1/jobs",
        "/api/v1/keys",
        "/api/v1/tenants",
        "/api/v1/audit",
    ] {
        call(&doc, &api, "GET", p, p, None, 200).await?;
    }
    call(&doc, &api, "GET", "/api/v1/jobs", "/api/v1/jobs?page=1&page_size=5&consistency=stale", None, 200).await?;

    // Jobs: create, read, change, runs, trigger, errors, delete.
    // A yearly schedule on the loopback sink: only the trigger below sends anything.
    let mut local = job("openapi-1");
    local["url"] = json!(format!("http://{sink}/hit"));
    let created = call(&doc, &api, "POST", "/api/v1/jobs", "/api/v1/jobs", Some(&local), 201).await?;
    let id = job_id(&created.field("job")?);
    let one = format!("/api/v1/jobs/{id}");
    call(&doc, &api, "GET", "/api/v1/jobs/{id}", &one, None, 200).await?;
    call(
        &doc,
        &api,
        "PATCH",
        "/api/v1/jobs/{id}",
        &one,
        Some(&json!({"name": "renamed", "headers": {"X-A": "b"}})),
        200,
    )
    .await?;
    call(&doc, &api, "GET", "/api/v1/jobs/{id}/runs", &format!("{one}/runs"), None, 200).await?;
    call(&doc, &api, "POST", "/api/v1/jobs/{id}/trigger", &format!("{one}/trigger"), None, 202).await?;
    call(&doc, &api, "GET", "/api/v1/jobs", "/api/v1/jobs", None, 200).await?;
    let mut bad_job = job("bad");
    bad_job["cron_expression"] = json!("not a schedule");
    call(&doc, &api, "POST", "/api/v1/jobs", "/api/v1/jobs", Some(&bad_job), 400).await?;
    call(&doc, &api, "POST", "/api/v1/jobs", "/api/v1/jobs", Some(&json!({"name": 1})), 400).await?;
    call(&doc, &api, "GET", "/api/v1/jobs", "/api/v1/jobs?page=0", None, 400).await?;
    call(&doc, &anon, "GET", "/api/v1/jobs", "/api/v1/jobs", None, 401).await?;
    call(&doc, &api, "GET", "/api/v1/jobs/{id}", &format!("/api/v1/jobs/{missing}"), None, 404).await?;

    // Keys: create (shown once), read, change, revoke; a narrow key is refused elsewhere.
    let new_key = json!({"name": "reader", "scopes": ["jobs:read"]});
    let k = call(&doc, &api, "POST", "/api/v1/keys", "/api/v1/keys", Some(&new_key), 201).await?;
    let key_id = k.json["api_key"]["id"].as_str().context("key id")?.to_string();
    let secret = k.json["api_key"]["key"].as_str().context("key")?.to_string();
    let kp = format!("/api/v1/keys/{key_id}");
    call(&doc, &api, "GET", "/api/v1/keys/{id}", &kp, None, 200).await?;
    call(&doc, &api, "PATCH", "/api/v1/keys/{id}", &kp, Some(&json!({"name": "reader-2", "expires_at": null})), 200)
        .await?;
    let narrow = api.with_auth(Auth::XApiKey(secret));
    call(&doc, &narrow, "GET", "/api/v1/jobs", "/api/v1/jobs", None, 200).await?;
    call(&doc, &narrow, "GET", "/api/v1/audit", "/api/v1/audit", None, 403).await?;
    call(&doc, &api, "DELETE", "/api/v1/keys/{id}", &kp, None, 204).await?;

    // Tenants.
    let t = json!({"id": "acme", "name": "Acme", "max_jobs": 10});
    call(&doc, &api, "POST", "/api/v1/tenants", "/api/v1/tenants", Some(&t), 201).await?;
    call(&doc, &api, "POST", "/api/v1/tenants", "/api/v1/tenants", Some(&t), 409).await?;
    call(&doc, &api, "GET", "/api/v1/tenants/{id}", "/api/v1/tenants/acme", None, 200).await?;
    call(&doc, &api, "PATCH", "/api/v1/tenants/{id}", "/api/v1/tenants/acme", Some(&json!({"max_jobs": null})), 200)
        .await?;
    call(&doc, &api, "DELETE", "/api/v1/tenants/{id}", "/api/v1/tenants/acme", None, 204).await?;
    call(&doc, &api, "GET", "/api/v1/audit", "/api/v1/audit?page_size=3", None, 200).await?;

    // Cluster membership errors (nothing is changed).
    call(
        &doc,
        &api,
        "POST",
        "/api/v1/cluster/nodes",
        "/api/v1/cluster/nodes",
        Some(&json!({"node_id": 0, "addr": "x"})),
        400,
    )
    .await?;
    // The triggered run reaches the sink and is recorded; then the job goes.
    wait_until("the triggered run to be recorded", WAIT, || {
        let api = api.clone();
        let (doc, runs) = (&doc, format!("{one}/runs"));
        async move {
            let r = call(doc, &api, "GET", "/api/v1/jobs/{id}/runs", &runs, None, 200).await?;
            ensure!(r.json["runs"][0]["status"] == "succeeded", "runs: {}", r.json["runs"]);
            Ok(())
        }
    })
    .await?;
    ensure!(hits.load(Ordering::SeqCst) >= 1, "the sink got nothing");
    call(&doc, &api, "DELETE", "/api/v1/jobs/{id}", &one, None, 200).await?;
    call(&doc, &api, "DELETE", "/api/v1/jobs/{id}", &one, None, 404).await?;

    // Request ids: a sane one is echoed, anything else is replaced, and the request's log lines
    // carry it.
    let tagged = RawRequest {
        method: "GET".into(),
        path: "/api/v1/jobs".into(),
        headers: vec![("X-Request-Id".into(), "req-openapi-42".into())],
        body: None,
    };
    let r = anon.raw(tagged.clone()).await?.expect(401)?;
    ensure!(r.headers.get("x-request-id").is_some_and(|v| v == "req-openapi-42"), "{:?}", r.headers);
    let mut insane = tagged.clone();
    insane.headers = vec![("X-Request-Id".into(), "not sane!".into())];
    let r = api.raw(insane).await?.expect(200)?;
    let fresh = r.headers.get("x-request-id").and_then(|v| v.to_str().ok()).context("no x-request-id")?;
    ensure!(fresh.len() == 36 && fresh != "not sane!", "unexpected request id {fresh:?}");

    // Metrics: every name the deploy files use, route templates as labels, counted failures.
    let m = anon.get("/metrics").await?.expect(200)?;
    ensure!(m.content_type.as_deref().is_some_and(|c| c.starts_with("text/plain")), "{:?}", m.content_type);
    for name in [
        "raftcron_raft_has_leader",
        "raftcron_raft_is_leader",
        "raftcron_raft_term",
        "raftcron_raft_commit_index",
        "raftcron_raft_applied_index",
        "raftcron_raft_voters",
        "raftcron_raft_reachable_voters",
        "raftcron_raft_proposals_total",
        "raftcron_raft_early_campaigns_total",
        "raftcron_raft_proposal_batch_size",
        "raftcron_raft_proposal_wait_seconds",
        "raftcron_raft_write_duration_seconds",
        "raftcron_raft_log_sync_duration_seconds",
        "raftcron_raft_apply_duration_seconds",
        "raftcron_raft_snapshots_total",
        "raftcron_raft_snapshot_duration_seconds",
        "raftcron_storage_size_bytes",
        "raftcron_scheduler_shards_owned",
        "raftcron_scheduler_lease_renewals_total",
        "raftcron_scheduler_lease_lapses_total",
        "raftcron_scheduler_claims_total",
        "raftcron_scheduler_fires_total",
        "raftcron_scheduler_fire_lateness_seconds",
        "raftcron_executor_request_duration_seconds",
        "raftcron_executor_retries_total",
        "raftcron_executor_ssrf_refusals_total",
        "raftcron_notify_alerts_total",
        "raftcron_api_requests_total",
        "raftcron_api_request_duration_seconds",
        "raftcron_api_auth_failures_total",
        "raftcron_api_rate_limited_total",
    ] {
        ensure!(m.text.contains(&format!("# TYPE {name} ")), "{name} is not exported");
    }
    let t = &m.text;
    for (series, at_least) in [
        ("raftcron_raft_has_leader", 1.0),
        ("raftcron_raft_is_leader", 1.0),
        ("raftcron_raft_voters", 1.0),
        ("raftcron_raft_reachable_voters", 1.0),
        ("raftcron_raft_proposals_total", 5.0),
        ("raftcron_raft_proposal_batch_size_count", 1.0),
        ("raftcron_raft_write_duration_seconds_count", 1.0),
        ("raftcron_raft_log_sync_duration_seconds_count", 1.0),
        ("raftcron_raft_apply_duration_seconds_count", 1.0),
        ("raftcron_storage_size_bytes", 1024.0),
        ("raftcron_api_auth_failures_total{reason=\"missing\"}", 2.0),
        ("raftcron_api_requests_total{method=\"GET\",route=\"/api/v1/jobs/{id}\",status=\"200\"}", 1.0),
        ("raftcron_api_requests_total{method=\"PUT\",route=\"/api/v1/jobs/{id}\",status=\"405\"}", 1.0),
        ("raftcron_scheduler_shards_owned", 1.0),
        ("raftcron_scheduler_lease_renewals_total", 1.0),
        ("raftcron_scheduler_claims_total", 1.0),
        ("raftcron_scheduler_fires_total{outcome=\"succeeded\"}", 1.0),
        ("raftcron_scheduler_fire_lateness_seconds_count", 1.0),
        ("raftcron_executor_request_duration_seconds_count", 1.0),
    ] {
        let v = metric_value(t, series).with_context(|| format!("no series {series}"))?;
        ensure!(v >= at_least, "{series} is {v}, expected at least {at_least}");
    }
    ensure!(!t.contains(&id) && !t.contains(missing), "a raw path or id became a label");
    ensure!(metric_value(t, "raftcron_raft_term").is_some_and(|v| v >= 1.0), "no term");

    // JSON logs: one object per line, and the request's lines carry its id.
    let log = c.log_text(1);
    let mut tagged_lines = 0;
    for line in log.lines().filter(|l| !l.starts_with("==== [harness]") && !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
        ensure!(v.is_object() && v["level"].is_string() && v["fields"].is_object(), "odd log line: {line}");
        ensure!(!line.contains(&c.admin_key), "a key in the log: {line}");
        if v["span"]["request_id"] == "req-openapi-42" && v["fields"]["message"] == "authentication failed" {
            tagged_lines += 1;
        }
    }
    if tagged_lines == 0 {
        bail!("no log line of the refused request carries its id; log:\n{log}");
    }
    sink_task.abort();
    c.stop()
}
